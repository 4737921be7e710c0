"""Streamlit entry point: `streamlit run app.py`."""

import streamlit as st

from pages.common import keep_tensorflow_state_between_reruns

keep_tensorflow_state_between_reruns()
st.set_page_config(page_title="Skin lesion decision support (demo)", page_icon="🔬", layout="wide")

pages = [
    st.Page("pages/diagnose.py", title="Diagnose", icon="🔬", default=True),
    st.Page("pages/follow_up.py", title="Follow-up", icon="🔁"),
    st.Page("pages/evaluation.py", title="Evaluation", icon="📊"),
    st.Page("pages/your_pictures.py", title="Your pictures", icon="🧪"),
    st.Page("pages/dataset.py", title="Dataset", icon="🗂️"),
    st.Page("pages/model_card.py", title="Model card", icon="📄"),
]
st.navigation(pages).run()
