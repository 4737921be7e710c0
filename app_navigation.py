"""The app's pages: the script Streamlit runs for every session and rerun.

`streamlit run app.py` serves it (app.py loads the model as the server starts); tests run
it directly in Streamlit's test runner."""

import streamlit as st

from app_pages.common import keep_tensorflow_state_between_reruns

keep_tensorflow_state_between_reruns()
st.set_page_config(page_title="Skin lesion decision support (demo)", page_icon=":material/biotech:", layout="wide")

pages = [
    st.Page("app_pages/diagnose.py", title="Diagnose", icon=":material/biotech:", default=True),
    st.Page("app_pages/follow_up.py", title="Follow-up", icon=":material/compare:"),
    st.Page("app_pages/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("app_pages/your_pictures.py", title="Your pictures", icon=":material/fact_check:"),
    st.Page("app_pages/dataset.py", title="Dataset", icon=":material/dataset:"),
    st.Page("app_pages/model_card.py", title="Model card", icon=":material/description:"),
]
st.navigation(pages).run()
