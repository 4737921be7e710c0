"""skin_model: data, training, evaluation, explanation and inference for a
dermoscopy decision-support demo. No Streamlit in here: the app is a view over it."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) hides real output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
