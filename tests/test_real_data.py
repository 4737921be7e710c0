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
    assert "seborrheic keratosis" in val["classes_not_described"]  # ISIC 2017 records no patients


def test_validate_on_the_test_split_reproduces_the_shipped_test_scores(real_data_dir: Path, tmp_path: Path) -> None:
    """Filed by class like a clinic's folder, the test split gives `validate` the shipped
    evaluation's test figures exactly, and a training picture among them is left out."""
    import json

    import numpy as np
    import pandas as pd

    from skin_model.artifact import default_model_dir, load_artifact
    from skin_model.classes import CLASS_NAMES
    from skin_model.evaluation import stored_split_scores
    from skin_model.labelled_pictures import read_labelled_folder
    from skin_model.local_validation import validate_folder
    from skin_model.paths import AUDIT_DIR

    audit = pd.read_csv(AUDIT_DIR / "manifest.csv")
    artifact = load_artifact(default_model_dir())
    evaluation = json.loads((artifact.path / "evaluation.json").read_text())
    rows, _, stored = stored_split_scores(audit, evaluation, "test", artifact.manifest["data_fingerprint"])
    names = []
    for row in rows.itertuples():
        target = tmp_path / row.final_label / Path(row.path).name
        target.parent.mkdir(exist_ok=True)
        target.symlink_to(real_data_dir / row.path)
        names.append(f"{row.final_label}/{target.name}")
    trained = audit[audit["split"] == "train"].iloc[0]
    (tmp_path / trained.final_label).mkdir(exist_ok=True)
    (tmp_path / trained.final_label / "archive copy.jpg").symlink_to(real_data_dir / trained.path)

    report, table = validate_folder(read_labelled_folder(tmp_path), artifact, audit, progress=False, bootstrap=50)
    by_name = table.set_index("file")
    assert by_name.loc[f"{trained.final_label}/archive copy.jpg", "seen_in_training"]
    # look-alikes: test pictures within a few pHash bits of a training picture of another lesion are left
    # out too (blurry nevi look alike); a handful, and never for the same bytes or ISIC id
    look_alike = by_name.loc[names, "seen_in_training"].astype(bool).to_numpy()
    assert set(by_name.loc[names, "seen_in_training"][look_alike]) <= {"a near-identical copy of a training picture"}
    assert look_alike.mean() < 0.05
    assert report["seen_in_training"] == 1 + look_alike.sum() and report["evaluated"] == len(rows) - look_alike.sum()
    served = by_name.loc[names, list(CLASS_NAMES)].to_numpy(float)
    np.testing.assert_allclose(served, stored, atol=2e-4)
    # the figures are those of the stored test scores of the pictures evaluated
    from sklearn.metrics import balanced_accuracy_score

    y = np.array([CLASS_NAMES.index(label) for label in rows["final_label"]])[~look_alike]
    expected = balanced_accuracy_score(y, stored[~look_alike].argmax(1))
    assert report["figures"]["balanced_accuracy"]["value"] == pytest.approx(expected, abs=2e-4)


def test_the_three_collections_and_a_test_split_that_measures_every_class(real_findings: dict) -> None:
    """HAM10000 joins as a third collection: the seed set's HAM pictures and shared lesions
    are found, no lesion straddles a split, and test holds 30 pictures of every class."""
    found = real_findings["collections"]
    assert found["collections"] == ["ham10000", "isic2017", "seed"]
    assert found["overlaps"]["seed in ham10000"]["same_picture"] >= 1200
    lesions = found["lesions_across_collections"]
    assert lesions["ham10000_pictures_sharing_a_lesion_with_seed"] >= 1300
    assert lesions["groups_on_two_sides_of_a_split"] == 0
    test = real_findings["class_counts"]["after"]["test"]
    assert sum(test.values()) >= 1500 and min(test.values()) >= 30
    assert found["masks"]["with_mask"] >= 9800 and not found["masks"]["size_mismatch"]
