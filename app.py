"""Streamlit entry point: `streamlit run app.py`."""

import streamlit as st

from pages.common import keep_tensorflow_state_between_reruns

keep_tensorflow_state_between_reruns()
st.set_page_config(page_title="Skin lesion decision support (demo)", page_icon=":material/biotech:", layout="wide")

pages = [
    st.Page("pages/diagnose.py", title="Diagnose", icon=":material/biotech:", default=True),
    st.Page("pages/follow_up.py", title="Follow-up", icon=":material/compare:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("pages/your_pictures.py", title="Your pictures", icon=":material/fact_check:"),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/dataset:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
]
st.navigation(pages).run()
