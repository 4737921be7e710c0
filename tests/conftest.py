"""Shared fixtures: a planted synthetic data set, and the real one when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skin_model.manifest import Manifest, build_manifest

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
    return Path(REAL_DATA)
