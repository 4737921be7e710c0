"""Shared pieces of every page: the model and reports loaded once per server, state kept
between reruns, file helpers and fixed texts.

Pages stay thin: anything about models, metrics or images is done by ``skin_model``;
these modules only load it once and draw it.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from skin_model import artifact as artifact_io
from skin_model import preload
from skin_model.bundle import ModelBundle
from skin_model.case_report import DISCLAIMER as REPORT_DISCLAIMER
from skin_model.cases import CASES_REPORT_FILE
from skin_model.conformal import (
    PREDICTION_SETS_FILE,
)
from skin_model.follow_up import PhotoToPhoto
from skin_model.model_files import (
    COLLECTION_TRANSFER_FILE,
    EXPLANATION_CHECK_FILE,
    HEATMAP_LESION_FILE,
    RELIABILITY_REPORT_FILE,
    TRUST_TRANSFER_FILE,
)
from skin_model.model_queue import ModelQueue
from skin_model.paths import AUDIT_DIR, TRAINED_MODELS_DIR
from skin_model.robustness import COMPRESSION_REPORT_FILE
from skin_model.robustness import REPORT_FILE as ROBUSTNESS_FILE
from skin_model.sources import DataNotFoundError, resolve_data_dir
from skin_model.subgroups import SUBGROUPS_FILE

DISCLAIMER = f"**{REPORT_DISCLAIMER.headline}** {REPORT_DISCLAIMER.detail}"


def keep_tensorflow_state_between_reruns() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every script run.

    Streamlit's script runner does that to reset "stateful modules"; with Keras 3 it also
    clears TensorFlow's kernel cache, so the cached, already-traced model rebuilt all its
    CPU kernels on the first call of every rerun, and every upload paid for it.
    The shared model is read-only (see ``load_model_bundle``), so there is nothing to reset.
    The replacement keeps the rest of Streamlit's clean-up (closing matplotlib figures).
    Idempotent; if a Streamlit release moves the hook, it does nothing.
    """
    from streamlit.runtime.scriptrunner import script_runner

    original = getattr(script_runner, "_clean_problem_modules", None)
    if original is None or getattr(original, "keeps_keras", False):
        return

    def clean_problem_modules_except_keras() -> None:
        import sys

        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            with contextlib.suppress(Exception):
                plt.close("all")

    clean_problem_modules_except_keras.keeps_keras = True  # type: ignore[attr-defined]
    script_runner._clean_problem_modules = clean_problem_modules_except_keras


def png_bytes(image) -> bytes:
    """A PIL image as PNG file contents (for download buttons)."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy file contents (for download buttons)."""
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def show_disclaimer() -> None:
    st.warning(DISCLAIMER, icon=":material/warning:")


@st.cache_resource(show_spinner="Loading the model…")
def load_model_bundle(model_dir: str | None = None) -> ModelBundle:
    """The verified model with its predictor, explainer, reliability check and
    similar-case index, loaded once per server process and shared by all sessions (none
    of them holds per-user state). The default model's load starts with the server
    (``app.py``); this waits for it."""
    # the predictor's traced pass also yields the reliability check's inputs and the
    # Grad-CAM map; the explainer serves the other methods (traced when first asked for).
    # Not frozen: a few ms less per upload would cost more start-up time and memory.
    bundle = preload.app_bundle(model_dir)
    # TensorFlow and the model are ~450k long-lived Python objects; Streamlit runs a
    # full gc.collect after every script run, which scanned them all on every rerun.
    # Freezing moves everything alive now out of the collector's sight.
    gc.freeze()
    return bundle


@st.cache_resource
def model_queue() -> ModelQueue:
    """The server's one model worker, shared by every session: pictures' answers before
    the checks that follow them (see :mod:`skin_model.model_queue`)."""
    return ModelQueue()


def model_bundle_or_stop() -> ModelBundle:
    """:func:`load_model_bundle`, or the reason it failed shown on the page, which then stops."""
    try:
        return load_model_bundle()
    except artifact_io.ArtifactError as exc:
        st.error(f"The model could not be loaded: {exc}")
        st.stop()


def read_json(path: Path) -> Any:
    return artifact_io.read_report(path.parent, path.name)


@st.cache_data
def read_model_report(path: str) -> Any:
    """A JSON report beside a model (or None), read once per server process like the
    model itself, not on every rerun."""
    return read_json(Path(path))


def data_picture(relative_path: str):
    """A picture of the data set (path relative to its root), when the data set is on
    this machine, else None."""
    from skin_model.images import ImageLoadError, load_image

    try:
        path = resolve_data_dir(None) / relative_path
        return load_image(path).image if path.is_file() else None
    except (DataNotFoundError, ImageLoadError):
        return None


@st.cache_data
def model_summaries() -> list[dict[str, Any]]:
    """Manifest and evaluation of every shipped model (weights not needed)."""
    out = []
    default = None
    with contextlib.suppress(artifact_io.ArtifactError):
        default = artifact_io.default_model_dir().name
    for path in artifact_io.list_model_dirs(TRAINED_MODELS_DIR):
        manifest = json.loads((path / artifact_io.MANIFEST_FILE).read_text())
        out.append(
            {
                "name": path.name,
                "path": str(path),
                "default": path.name == default,
                "manifest": manifest,
                "evaluation": artifact_io.read_evaluation(path),
                "reliability": read_json(path / RELIABILITY_REPORT_FILE),
                "trust_transfer": read_json(path / TRUST_TRANSFER_FILE),
                "collection_transfer": read_json(path / COLLECTION_TRANSFER_FILE),
                "heatmap_lesion": read_json(path / HEATMAP_LESION_FILE),
                "explanation_check": read_json(path / EXPLANATION_CHECK_FILE),
                "cases": read_json(path / CASES_REPORT_FILE),
                "robustness": read_json(path / ROBUSTNESS_FILE),
                "compression": read_json(path / COMPRESSION_REPORT_FILE),
                "subgroups": read_json(path / SUBGROUPS_FILE),
                "prediction_sets": read_json(path / PREDICTION_SETS_FILE),
                "history": pd.read_csv(path / artifact_io.HISTORY_FILE)
                if (path / artifact_io.HISTORY_FILE).is_file()
                else None,
            }
        )
    return sorted(out, key=lambda m: (not m["default"], m["name"]))


@st.cache_data
def load_audit() -> dict[str, Any] | None:
    return read_json(AUDIT_DIR / "audit.json")


@st.cache_data
def load_manifest_table() -> pd.DataFrame | None:
    path = AUDIT_DIR / "manifest.csv"
    return pd.read_csv(path) if path.is_file() else None


# the picture formats the uploaders accept (the loader reads them all; see skin_model.images)
IMAGE_TYPES = ["jpg", "jpeg", "png", "heic", "heif", "avif", "bmp", "tif", "tiff", "webp"]


@st.cache_data
def photo_to_photo(model_dir: str) -> PhotoToPhoto | None:
    """How much the model's answer differed between two photos of one validation lesion."""
    path = Path(model_dir)
    fingerprint = (read_json(path / artifact_io.MANIFEST_FILE) or {}).get("data_fingerprint")
    evaluation = read_json(path / artifact_io.EVALUATION_FILE)
    return PhotoToPhoto.from_stored(load_manifest_table(), evaluation, fingerprint)


def asset(path: str) -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / path
