"""skin_model: data, training, evaluation, explanation and inference for a
dermoscopy decision-support demo. No Streamlit in here: the app is a view over it."""

__version__ = "0.1.0"
