"""Shared fixtures: a planted synthetic data set, and the real one when present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skin_model.artifact import load_artifact
from skin_model.manifest import Manifest, build_manifest
from skin_model.training import TrainConfig, train

from .synthetic import make_dataset

REAL_DATA = os.environ.get("SKIN_DATA_DIR")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("data")
    planted = make_dataset(root)
    return root, planted


@pytest.fixture(scope="session")
def synthetic_manifest(synthetic_data: tuple[Path, dict[str, object]]) -> Manifest:
    return build_manifest(synthetic_data[0], progress=False)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not REAL_DATA:
        pytest.skip("real data set not available: SKIN_DATA_DIR is not set")
    if not Path(REAL_DATA).is_dir():
        pytest.skip(f"real data set not available: SKIN_DATA_DIR={REAL_DATA} is not a directory")
    # absolute, so links and subprocesses made from another working directory still reach it
    return Path(REAL_DATA).resolve()


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m skin_model ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "skin_model", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="session")
def tiny_model_dir(synthetic_manifest: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch tiny CNN trained on the synthetic data set, saved as an artifact."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    config = TrainConfig(arch="tiny_cnn", epochs=2, batch_size=16, patience=5, bootstrap=20, warmup_epochs=1)
    train(config, synthetic_manifest, out, cache_dir=out.parent / "cache", progress=False)
    return out


@pytest.fixture(scope="session")
def calibrated_dir(tiny_model_dir: Path, synthetic_manifest: Manifest, tmp_path_factory) -> Path:
    """The tiny model with fitted reliability settings (temperature, OOD, abstention)."""
    from skin_model.workflows import fit_reliability

    out = tmp_path_factory.mktemp("calibrated") / "tiny"
    shutil.copytree(tiny_model_dir, out)
    result = fit_reliability(load_artifact(out), synthetic_manifest, cache_dir=out.parent / "cache", progress=False)
    assert set(result["report"]) == {"fitted_on", "val", "test"}
    return out


# Tests slower than a few seconds each on two cores (the app's pages, model training,
# exports, the real browser): left out of the quick set, `pytest -m "not slow"`.
SLOW_MODULES = frozenset({"test_app", "test_browser", "test_export", "test_int8_bias", "test_cli", "test_backbone"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by what a test needs: ``real_data`` (the shared data set), ``browser``
    (Chromium and a served app) and ``slow`` (see SLOW_MODULES), so that
    ``pytest -m "not slow and not real_data and not browser"`` runs the quick set."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if "real_data_dir" in getattr(item, "fixturenames", ()) or module == "test_real_data":
            item.add_marker(pytest.mark.real_data)
        if module == "test_browser":
            item.add_marker(pytest.mark.browser)
        if module in SLOW_MODULES or "tiny_model_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
