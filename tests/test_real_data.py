"""The audit on the shared data set (skipped with a reason where it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skin_model.audit import audit_findings
from skin_model.manifest import build_manifest


@pytest.fixture(scope="module")
def real_manifest(real_data_dir: Path):
    return build_manifest(real_data_dir, progress=False)


@pytest.fixture(scope="module")
def real_findings(real_manifest) -> dict:
    return audit_findings(real_manifest)


def test_finds_cross_class_duplicates_and_leaks(real_findings: dict) -> None:
    assert len(real_findings["cross_class_duplicate_groups"]) >= 150
    leaks = real_findings["train_test_leaks"]
    assert sum(leak["kind"] != "same lesion" for leak in leaks) >= 18
    assert not real_findings["unreadable"]


def test_clean_splits_have_no_leak(real_findings: dict) -> None:
    after = real_findings["class_counts"]["after"]
    assert sum(after["test"].values()) > 0
    assert after["train"]["seborrheic keratosis"] > 100  # learnable thanks to ISIC 2017


def test_no_real_lesion_is_screened_out_as_not_a_photo(real_manifest, tmp_path: Path) -> None:
    """The image screens (blank / colourless / noise) must pass every cleaned lesion image."""
    from skin_model.pipeline import load_arrays
    from skin_model.reliability import screen_image

    x, _ = load_arrays(real_manifest.kept(), 224, cache_dir=tmp_path, progress=False)
    flagged = [reason for reason in map(screen_image, x) if reason is not None]
    assert flagged == []


def test_subgroup_benchmark_aligns_the_shipped_scores_with_the_patients(real_data_dir: Path, tmp_path: Path) -> None:
    """The benchmark finds the shipped model's split by its fingerprint and labels, and
    every described validation picture lands in one group per attribute it records."""
    import json
    import subprocess
    import sys

    out = tmp_path / "subgroups.json"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "subgroups.py"), "--data", str(real_data_dir), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    val = json.loads(out.read_text())["splits"]["val"]
    assert 0 < val["described"] < val["images"]
    assert sum(g["n_images"] for g in val["attributes"]["sex"].values()) <= val["described"]
    assert sum(g["n_images"] for g in val["attributes"]["confirmation"].values()) == val["described"]
    assert "melanoma" in val["classes_not_described"]
