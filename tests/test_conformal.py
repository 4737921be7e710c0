"""Prediction sets: thresholds by hand, the coverage guarantee on exchangeable data,
the report's figures, and the `sets` command end to end on a tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_model.case_report import prediction_set_finding
from skin_model.classes import CLASS_NAMES
from skin_model.conformal import (
    MARGIN,
    PREDICTION_SETS_FILE,
    PredictionSets,
    class_thresholds,
    coverage_shortfalls,
    set_mask,
    set_report,
    split_half_coverage,
)

from .conftest import run_cli
from .synthetic import jpeg_bytes, smooth_picture

C = len(CLASS_NAMES)


def _probs_for(scores: list[float], c: int) -> np.ndarray:
    """Rows giving class ``c`` each of ``scores``, the rest shared by the other classes."""
    rows = np.tile((1 - np.asarray(scores))[:, None] / (C - 1), (1, C))
    rows[:, c] = scores
    return rows


def test_thresholds_by_hand() -> None:
    nine = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6]  # (9 + 1) * 0.1 = 1: the lowest
    nineteen = list(np.linspace(0.05, 0.95, 19))  # (19 + 1) * 0.1 = 2: the second lowest
    probs = np.vstack([_probs_for(nine, 0), _probs_for(nineteen, 1), _probs_for([0.5, 0.6, 0.7], 2)])
    y = np.array([0] * 9 + [1] * 19 + [2] * 3)
    t = class_thresholds(probs, y, alpha=0.1)
    assert t[0] == pytest.approx(0.1 - MARGIN)
    assert t[1] == pytest.approx(0.1 - MARGIN)
    assert t[2] == 0.0  # 3 pictures cannot give 90 %: the class is always in the set
    assert (t[3:] == 0.0).all()  # no validation pictures at all
    # on its own calibration pictures every class is covered at least 1 - alpha
    covered = set_mask(probs, t)[np.arange(len(y)), y]
    assert covered[y == 0].mean() >= 0.9 - 1e-9 and covered[y == 1].mean() >= 0.9 - 1e-9


def test_the_most_probable_class_is_always_in_the_set() -> None:
    probs = np.full((1, C), 0.5 / (C - 1))
    probs[0, 4] = 0.5
    thresholds = np.full(C, 0.9)  # nothing reaches them
    assert set_mask(probs, thresholds)[0].tolist() == [k == 4 for k in range(C)]
    sets = PredictionSets(0.1, np.array([0.05] * C))
    row = np.array([0.06, 0.01, 0.01, 0.3, 0.4, 0.07, 0.08, 0.04, 0.03])
    assert sets.members(row) == [
        ["nevus", "melanoma", "seborrheic keratosis", "pigmented benign keratosis", "actinic keratosis"]
    ]  # most probable first, those reaching 0.05


def _exchangeable(seed: int, n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy classifier's probabilities on pictures of every class (logits: 1.5 for the true class + noise)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per_class)
    logits = rng.normal(size=(len(y), C)) + 1.5 * np.eye(C)[y]
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True), y


def test_coverage_holds_per_class_on_exchangeable_pictures() -> None:
    """Fit on one draw, measure on a fresh one, 200 times: each class is covered at
    least 90 % on average, and not much more (at most 1 / (n + 1) above for a continuous score)."""
    per_class = []
    for seed in range(200):
        calibration, y_cal = _exchangeable(seed, 30)
        fresh, y_new = _exchangeable(10_000 + seed, 30)
        covered = set_mask(fresh, class_thresholds(calibration, y_cal, 0.1))[np.arange(len(y_new)), y_new]
        per_class.append([covered[y_new == c].mean() for c in range(C)])
    mean = np.mean(per_class, axis=0)
    assert (mean >= 0.9 - 0.01).all() and (mean <= 0.9 + 1 / 31 + 0.01).all(), mean
    probs, y = _exchangeable(7, 30)
    halves = split_half_coverage(probs, y, 0.1, repeats=50)
    assert halves == split_half_coverage(probs, y, 0.1, repeats=50)  # seeded
    # 15 pictures per class and half: the 1st of 15 gives at least 1 - 1/16
    assert 0.9 <= halves["coverage_mean"] <= 0.9 + 1 / 16 + 0.01 and halves["mean_size"] > 1


def test_set_report_by_hand() -> None:
    probs = np.zeros((4, C))
    # melanoma picture: melanoma 0.6, nevus 0.4 -> both in; nevus picture: nevus 0.9 -> alone
    probs[0, [3, 4]] = [0.6, 0.4]
    probs[1, [4, 0]] = [0.9, 0.1]
    # nevus picture answered melanoma, nevus below its threshold -> missed
    probs[2, [3, 4]] = [0.8, 0.2]
    # dermatofibroma picture: dermatofibroma alone
    probs[3, [2, 8]] = [0.7, 0.3]
    thresholds = np.full(C, 0.35)
    r = set_report(probs, np.array([3, 4, 4, 2]), thresholds)
    assert r["coverage"] == 0.75 and r["mean_size"] == 1.25 and r["size_counts"] == {"1": 3, "2": 1}
    assert r["per_class"] == {
        "dermatofibroma": {"images": 1, "covered": 1},
        "melanoma": {"images": 1, "covered": 1},
        "nevus": {"images": 2, "covered": 1},
    }
    assert r["single_class_share"] == 0.75 and r["single_class_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    # the one malignant lesion's set names melanoma; of three benign ones, one set does (picture 3)
    assert r["malignant_with_a_malignant_class"] == 1.0
    assert r["benign_with_a_malignant_class"] == pytest.approx(1 / 3, abs=1e-4)


def test_only_shortfalls_beyond_chance_are_flagged() -> None:
    report = {
        "per_class": {
            "squamous cell carcinoma": {"images": 9, "covered": 4},  # P(X <= 4 | 9, 0.9) = 0.0009
            "dermatofibroma": {"images": 15, "covered": 12},  # P(X <= 12 | 15, 0.9) = 0.18
            "nevus": {"images": 16, "covered": 16},
        }
    }
    assert list(coverage_shortfalls(report, 0.1)) == ["squamous cell carcinoma"]


def test_finding_names_the_differential_and_its_measured_coverage() -> None:
    report = {
        "val_split_halves": {"coverage_mean": 0.924, "repeats": 200},
        "test": {"coverage": 0.868, "images": 74, "mean_size": 2.18},
    }
    finding = prediction_set_finding(["melanoma", "nevus"], 0.9, report)
    assert finding.headline == "Differential at 90% coverage: Melanoma, Mole (melanocytic nevus)."
    assert "1 of them malignant or pre-malignant" in finding.detail
    assert "92% of validation pictures" in finding.detail and "87% of the 74 test pictures" in finding.detail
    assert "; all benign." in prediction_set_finding(["nevus", "dermatofibroma"], 0.9, None).detail
    alone = prediction_set_finding(["melanoma"], 0.9, None).detail
    assert alone == "The only class the model cannot rule out at that coverage (malignant or pre-malignant)."


def test_training_fits_the_sets_and_evaluate_keeps_them_in_step(
    tiny_model_dir: Path, synthetic_data: tuple[Path, dict], tmp_path: Path
) -> None:
    from skin_model.artifact import load_artifact, read_report

    artifact = load_artifact(tiny_model_dir)
    probs, y = (np.asarray(artifact.evaluation()["val"]["scores"][k]) for k in ("probs", "y_true"))
    sets = PredictionSets.from_manifest(artifact.manifest)
    assert sets is not None and sets.alpha == 0.1  # fitted by `train` from the validation scores it stored
    np.testing.assert_allclose(sets.thresholds, class_thresholds(probs, y, 0.1), atol=1e-6)
    assert read_report(tiny_model_dir, PREDICTION_SETS_FILE)["val"]["images"] == len(y)

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    run_cli("sets", "--model", str(model), "--alpha", "0.3")
    data = str(synthetic_data[0])
    result = run_cli("evaluate", "--model", str(model), "--data", data, "--split", "val", "--quiet")
    assert "refitted the prediction sets" in result.stdout
    refitted = load_artifact(model)
    assert PredictionSets.from_manifest(refitted.manifest).alpha == 0.3  # the coverage asked for is kept
    probs, y = (np.asarray(refitted.evaluation()["val"]["scores"][k]) for k in ("probs", "y_true"))
    np.testing.assert_allclose(
        PredictionSets.from_manifest(refitted.manifest).thresholds, class_thresholds(probs, y, 0.3), atol=1e-6
    )


def test_sets_command_records_thresholds_the_loader_verifies_and_predict_uses(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from skin_model.artifact import load_artifact, read_report
    from skin_model.inference import Predictor, diagnose

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    result = run_cli("sets", "--model", str(model), "--alpha", "0.2")
    assert "the set held the true class for" in result.stdout
    artifact = load_artifact(model)  # the manifest's digest covers the new entries
    sets = PredictionSets.from_manifest(artifact.manifest)
    assert sets.alpha == 0.2 and len(sets.thresholds) == C
    evaluation = artifact.evaluation()
    probs, y = (np.asarray(evaluation["val"]["scores"][k]) for k in ("probs", "y_true"))
    np.testing.assert_allclose(sets.thresholds, class_thresholds(probs, y, 0.2), atol=1e-6)
    assert read_report(model, PREDICTION_SETS_FILE)["val"]["coverage"] >= 0.8

    pictures = []
    for k in range(3):
        pictures.append(tmp_path / f"p{k}.jpg")
        pictures[-1].write_bytes(jpeg_bytes(smooth_picture(20 + k, 96)))
    out = tmp_path / "preds.csv"
    run_cli("predict", "--model", str(model), *map(str, pictures), "--output", str(out), "--quiet")
    table = pd.read_csv(out)
    predictor = Predictor.from_artifact(artifact)
    for path, listed, top in zip(pictures, table["prediction_set"], table["predicted_class"], strict=True):
        expected = diagnose(predictor, Image.open(path), artifact.malignant_threshold, prediction_sets=sets)
        assert listed == "; ".join(expected.prediction_set) and listed.split("; ")[0] == top

    (model / "evaluation.json").unlink()
    refused = run_cli("sets", "--model", str(model), check=False)
    assert refused.returncode == 1 and "run `evaluate` first" in refused.stderr
