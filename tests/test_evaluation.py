"""Metrics checked against values computed by hand on small fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from skin_model.classes import CLASS_NAMES
from skin_model.evaluation import (
    calibration,
    evaluate_predictions,
    malignant_operating_point,
    malignant_score,
    paired_bootstrap_difference,
    sensitivity_at_specificity,
    threshold_for_sensitivity,
)

MEL, NV, BCC = CLASS_NAMES.index("melanoma"), CLASS_NAMES.index("nevus"), CLASS_NAMES.index("basal cell carcinoma")


def _probs(rows: list[dict[int, float]]) -> np.ndarray:
    out = np.zeros((len(rows), len(CLASS_NAMES)))
    for i, row in enumerate(rows):
        for k, p in row.items():
            out[i, k] = p
    return out


# 6 images: 3 melanoma, 3 nevus; predictions: 2 mel right, 1 mel called nevus, 2 nevus right, 1 nevus called mel
Y = np.array([MEL, MEL, MEL, NV, NV, NV])
P = _probs(
    [
        {MEL: 0.9, NV: 0.1},
        {MEL: 0.7, NV: 0.3},
        {MEL: 0.4, NV: 0.6},
        {MEL: 0.2, NV: 0.8},
        {MEL: 0.1, NV: 0.9},
        {MEL: 0.6, NV: 0.4},
    ]
)


def test_headline_metrics_by_hand() -> None:
    ev = evaluate_predictions(Y, P, "test", malignant_threshold=0.5, bootstrap=0)
    assert ev["split"] == "test" and ev["n_images"] == 6
    assert ev["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert ev["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2, abs=1e-4)
    mel = ev["per_class"]["melanoma"]
    assert mel["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert mel["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert mel["specificity"] == pytest.approx(2 / 3, abs=1e-4)
    assert mel["support"] == 3
    # melanoma scores: positives .9 .7 .4, negatives .2 .1 .6 -> pairs ranked right: 3+3+2 of 9
    assert mel["roc_auc"] == pytest.approx(8 / 9, abs=1e-4)
    assert ev["per_class"]["dermatofibroma"]["roc_auc"] is None  # absent class
    assert ev["confusion_matrix"][MEL][MEL] == 2 and ev["confusion_matrix"][MEL][NV] == 1
    assert ev["confusion_matrix"][NV][MEL] == 1
    # melanoma is malignant, nevus benign: the malignant score is the melanoma probability here
    assert ev["malignant"]["roc_auc"] == pytest.approx(8 / 9, abs=1e-4)
    assert ev["malignant"]["confusion"] == {"tp": 2, "fn": 1, "fp": 1, "tn": 2}
    assert ev["scores"]["y_true"] == Y.tolist()


def test_metrics_by_collection_by_hand() -> None:
    """Collection a: two melanomas (one called nevus) and two nevi; b: a basal cell
    carcinoma and a nevus called melanoma. Each prediction puts 0.9 on its class, but
    the last only 0.6."""
    from skin_model.evaluation import by_collection

    mel, nev, bcc = (CLASS_NAMES.index(n) for n in ("melanoma", "nevus", "basal cell carcinoma"))
    y = np.array([mel, mel, nev, nev, bcc, nev])
    pred = np.array([mel, nev, nev, nev, bcc, mel])
    probs = np.full((6, len(CLASS_NAMES)), 0.1 / (len(CLASS_NAMES) - 1))
    probs[np.arange(6), pred] = 0.9
    probs[5, mel] = 0.6
    groups = by_collection(y, probs, np.array(["a"] * 4 + ["b"] * 2), malignant_threshold=0.5)
    a, b = groups["a"], groups["b"]
    assert (a["n_images"], a["classes_present"]) == (4, ["melanoma", "nevus"])
    assert (a["accuracy"], a["balanced_accuracy"], a["melanoma_sensitivity"]) == (0.75, 0.75, 0.5)
    # malignant scores 0.94, 0.05, 0.05, 0.05: one pair won, two tied, of four
    assert (a["malignant_auc"], a["malignant_sensitivity"], a["malignant_specificity"]) == (0.75, 0.5, 1.0)
    assert (b["accuracy"], b["balanced_accuracy"], b["melanoma_sensitivity"]) == (0.5, 0.5, None)
    # scores 0.94 (carcinoma) and 0.64 (nevus): ranked right, both referred at 0.5
    assert (b["malignant_auc"], b["malignant_sensitivity"], b["malignant_specificity"]) == (1.0, 1.0, 0.0)


def test_malignant_score_sums_the_malignant_classes() -> None:
    probs = _probs([{MEL: 0.2, BCC: 0.3, NV: 0.5}])
    assert malignant_score(probs)[0] == pytest.approx(0.5)


def test_threshold_keeps_target_sensitivity() -> None:
    y = np.array([1, 1, 1, 1, 0, 0])
    score = np.array([0.9, 0.8, 0.3, 0.2, 0.5, 0.1])
    t = threshold_for_sensitivity(y, score, target=0.75)
    # 3 of 4 positives must be caught (down to 0.3); the next lower score is 0.2
    assert t == pytest.approx(0.25)
    assert ((score >= t) == [1, 1, 1, 0, 1, 0]).all()
    # a rounding-level change of the boundary score does not change what is flagged
    nudged = score - np.array([0, 0, 1e-6, 0, 0, 0])
    assert ((nudged >= t) == (score >= t)).all()
    # the lowest positive as the boundary: nothing below it, so the threshold is that score
    assert threshold_for_sensitivity(np.array([1, 1, 0]), np.array([0.2, 0.9, 0.5]), 1.0) == pytest.approx(0.2)
    # an int8 model's scores: the same sum of 1/256 steps comes out 2e-8 apart in float32;
    # the benign picture scoring "0.30660588" ties with the boundary positives at 0.3066059
    # and is flagged with them, the threshold halfway to the next lower score
    tied = np.array([0.3372665, 0.3066059, 0.3066059, 0.30660588, 0.3027733], np.float32)
    t = threshold_for_sensitivity(np.array([1, 1, 1, 0, 0]), tied, 1.0)
    assert t == pytest.approx((0.30660588 + 0.3027733) / 2, abs=1e-7)
    assert ((tied >= t) == [1, 1, 1, 1, 0]).all()
    point = malignant_operating_point(np.array([MEL, MEL, NV]), _probs([{MEL: 0.9}, {MEL: 0.2}, {MEL: 0.4}]), 0.3)
    assert (point["tp"], point["fn"], point["fp"], point["tn"]) == (1, 1, 1, 0)


def test_sensitivity_at_80_specificity_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.3, 0.8, 0.2, 0.1, 0.05, 0.01])
    # specificity >= 0.8 allows one false positive of 5: at threshold 0.3 both positives
    # (0.9, 0.3) are caught with one false positive (0.8) -> sensitivity 1.0
    assert sensitivity_at_specificity(y, score, 0.8) == pytest.approx(1.0)
    # specificity >= 0.9 allows none: only 0.9 is above every negative -> 0.5
    assert sensitivity_at_specificity(y, score, 0.9) == pytest.approx(0.5)


def test_ece_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    # bin (0.8, 0.9]: conf .9, acc 1 -> gap .1 (weight .5); bin (0.5, 0.6]: conf .6, acc .5 -> gap .1 (weight .5)
    assert calibration(y, probs)["ece"] == pytest.approx(0.1, abs=1e-4)


def test_paired_bootstrap_difference_by_hand() -> None:
    perfect = _probs([{int(y): 1.0} for y in Y])
    diff = paired_bootstrap_difference(Y, P, perfect, n=200)
    # P: 2 of 3 right in each class; melanoma scores beat 8 of the 9 nevus scores
    assert diff["balanced_accuracy"]["a"] == pytest.approx(2 / 3, abs=1e-4)
    assert diff["balanced_accuracy"]["difference"] == pytest.approx(-1 / 3, abs=1e-4)
    assert diff["malignant_auc"]["difference"] == pytest.approx(8 / 9 - 1, abs=1e-4)
    # the perfect model is never worse on any resample, and usually better
    low, high = diff["balanced_accuracy"]["ci95"]
    assert high <= 0 and low < 0
    same = paired_bootstrap_difference(Y, P, P.copy(), n=50)
    assert all(v["difference"] == 0 and v["ci95"] == [0, 0] for v in same.values())
    benign_only = paired_bootstrap_difference(np.array([NV, NV]), P[3:5], P[3:5], n=10)
    assert benign_only["malignant_auc"] is None and benign_only["macro_auc"] is None


def _table():
    import pandas as pd

    return pd.DataFrame(
        {
            "path": [f"pics/{k}.jpg" for k in range(6)],
            "isic_id": [f"ISIC_{k}" for k in range(6)],
            "sha256": [f"h{k}" for k in range(6)],
            "final_label": ["melanoma", "nevus", "melanoma", "nevus", "melanoma", "melanoma"],
            "split": ["val", "train", "val", "val", "excluded", "val"],
        }
    )


def test_stored_scores_follow_the_split_rows_and_refuse_other_data() -> None:
    from skin_model.evaluation import stored_split_scores
    from skin_model.manifest import table_fingerprint

    table = _table()
    mel, nev = CLASS_NAMES.index("melanoma"), CLASS_NAMES.index("nevus")
    probs = np.full((4, len(CLASS_NAMES)), 0.0)
    evaluation = {"val": {"scores": {"y_true": [mel, mel, nev, mel], "probs": probs.tolist()}}}
    rows, y, stored = stored_split_scores(table, evaluation, "val", table_fingerprint(table))
    assert rows["isic_id"].tolist() == ["ISIC_0", "ISIC_2", "ISIC_3", "ISIC_5"]  # table order, kept val rows only
    assert y.tolist() == [mel, mel, nev, mel] and stored.shape == (4, len(CLASS_NAMES))
    with pytest.raises(ValueError, match="fingerprint"):
        stored_split_scores(table, evaluation, "val", "another")
    relabelled = table.assign(final_label=["melanoma", "nevus", "nevus", "melanoma", "melanoma", "melanoma"])
    with pytest.raises(ValueError, match="do not follow"):
        stored_split_scores(relabelled, evaluation, "val", table_fingerprint(relabelled))
    with pytest.raises(ValueError, match="no scores"):
        stored_split_scores(table, {}, "test", table_fingerprint(table))


def test_confused_pictures_are_one_cell_most_confident_first() -> None:
    """Three melanomas answered nevus (0.6, 0.9, 0.7) and one answered melanoma: the
    cell lists the three, 0.9 first, with the melanoma probability and the risk."""
    import pandas as pd

    from skin_model.evaluation import confused_pictures

    mel, nev = CLASS_NAMES.index("melanoma"), CLASS_NAMES.index("nevus")
    rows = pd.DataFrame({"isic_id": ["a", "b", "c", "d", "e"], "path": ["pa", "pb", "pc", "pd", "pe"]})
    y = np.array([mel, mel, mel, mel, nev])
    probs = np.zeros((5, len(CLASS_NAMES)))
    for k, (p_nev, p_mel) in enumerate([(0.6, 0.4), (0.9, 0.1), (0.2, 0.8), (0.7, 0.3), (0.95, 0.05)]):
        probs[k, nev], probs[k, mel] = p_nev, p_mel
    cell = confused_pictures(rows, y, probs, mel, nev)
    assert cell["isic_id"].tolist() == ["b", "d", "a"]
    assert cell["answered"].tolist() == [0.9, 0.7, 0.6]
    assert cell["true class"].tolist() == pytest.approx([0.1, 0.3, 0.4])
    assert cell["malignant risk"].tolist() == pytest.approx([0.1, 0.3, 0.4])  # melanoma is the only malignant mass
    assert confused_pictures(rows, y, probs, nev, mel).empty
