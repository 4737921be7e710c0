"""Streamlit entry point: `streamlit run app.py`.

The server serves the pages of ``app_navigation.py`` and, from the moment it starts,
loads the model on a background thread, so the first user's first picture does not
wait for the model to be read and traced (see ``skin_model.preload``)."""

import streamlit as st

from app_pages.server import load_model_at_server_start

app = st.App("app_navigation.py", lifespan=load_model_at_server_start)
