"""Metrics for a set of predictions, all from scikit-learn, as JSON-ready data.

Every result carries the name of the split it was computed on; classes absent from
that split get ``None`` for metrics that need positives (AUC, AP, recall).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
from sklearn import metrics

from .classes import CLASS_NAMES, MALIGNANT_MASK, malignant_score

CURVE_POINTS = 101
# malignant scores closer than this are the same score (see threshold_for_sensitivity)
SAME_SCORE = 1e-6


def threshold_rule(target: float) -> str:
    """How :func:`threshold_for_sensitivity` chose a threshold, in words for manifests."""
    return (
        f"fewest flagged validation images with >= {target:.0%} malignant sensitivity; halfway between the "
        "lowest malignant score it must catch and the next lower score"
    )


def threshold_for_sensitivity(y_malignant: np.ndarray, score: np.ndarray, target: float = 0.9) -> float:
    """A threshold whose sensitivity (score >= threshold) reaches ``target`` while
    flagging as few images as possible: as specific as possible while catching at least
    ``target`` of malignant lesions.

    It sits halfway between the score of the last positive it must catch and the next
    lower score, not on that score: the same images are flagged, but a rounding-level
    change of the boundary image's score (another CPU, the folded model) can no longer
    move it to the other side. Scores within :data:`SAME_SCORE` of each other count as
    one score and are flagged together: an int8 model's probabilities are multiples of
    1/256, and summing the same ones in another order differs by 1e-8."""
    score = np.asarray(score, np.float64)
    positives = np.sort(score[y_malignant.astype(bool)])[::-1]
    if len(positives) == 0:
        return 0.5
    k = int(np.ceil(target * len(positives))) - 1
    flagged = score >= positives[k] - SAME_SCORE
    if flagged.all():
        return float(score.min())
    return float((score[flagged].min() + score[~flagged].max()) / 2)


def malignant_operating_point(y_true: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Sensitivity, specificity and confusion counts of the benign/malignant call at
    ``threshold`` (for the app's threshold explorer)."""
    y_mal = MALIGNANT_MASK[np.asarray(y_true)]
    flagged = malignant_score(np.asarray(probs)) >= threshold
    tp, fn = int((flagged & y_mal).sum()), int((~flagged & y_mal).sum())
    fp, tn = int((flagged & ~y_mal).sum()), int((~flagged & ~y_mal).sum())
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
    }


def sensitivity_at_specificity(y: np.ndarray, score: np.ndarray, specificity: float = 0.8) -> float | None:
    """Best sensitivity among operating points with specificity >= ``specificity``
    (the ISIC challenge's secondary metric)."""
    if y.min() == y.max():
        return None
    fpr, tpr, _ = metrics.roc_curve(y, score)
    ok = fpr <= 1 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def _resample(curve_x: np.ndarray, curve_y: np.ndarray) -> dict[str, list[float]]:
    """A curve at CURVE_POINTS evenly spaced x values (small JSON, smooth plots)."""
    grid = np.linspace(0, 1, CURVE_POINTS)
    order = np.argsort(curve_x, kind="stable")
    return {"x": grid.round(4).tolist(), "y": np.interp(grid, curve_x[order], curve_y[order]).round(4).tolist()}


def calibration(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top-1 confidence, and the reliability bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    bins, ece = [], 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            acc, conf = float(correct[inside].mean()), float(confidence[inside].mean())
            ece += inside.mean() * abs(acc - conf)
            bins.append(
                {
                    "lower": round(lo, 2),
                    "upper": round(hi, 2),
                    "count": int(inside.sum()),
                    "accuracy": round(acc, 4),
                    "confidence": round(conf, 4),
                }
            )
    return {"ece": round(float(ece), 4), "bins": bins}


def _macro_auc(y_true: np.ndarray, probs: np.ndarray) -> float | None:
    aucs = [
        metrics.roc_auc_score(y_true == k, probs[:, k])
        for k in range(probs.shape[1])
        if 0 < (y_true == k).sum() < len(y_true)
    ]
    return float(np.mean(aucs)) if aucs else None


def _malignant_auc(y_true: np.ndarray, probs: np.ndarray) -> float | None:
    y_malignant = MALIGNANT_MASK[y_true]
    if not 0 < y_malignant.sum() < len(y_true):
        return None
    return float(metrics.roc_auc_score(y_malignant, malignant_score(probs)))


def bootstrap_intervals(
    y_true: np.ndarray, probs: np.ndarray, n: int = 1000, seed: int = 0
) -> dict[str, list[float] | None]:
    """95% percentile bootstrap intervals for balanced accuracy and macro AUC."""
    rng = np.random.default_rng(seed)
    pred = probs.argmax(axis=1)
    bal, auc = [], []
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        bal.append(metrics.balanced_accuracy_score(y_true[idx], pred[idx]))
        value = _macro_auc(y_true[idx], probs[idx])
        if value is not None:
            auc.append(value)

    def ci(values: list[float]) -> list[float] | None:
        return np.percentile(values, [2.5, 97.5]).round(4).tolist() if values else None

    return {"balanced_accuracy": ci(bal), "macro_auc": ci(auc)}


def paired_bootstrap_difference(
    y_true: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, n: int = 1000, seed: int = 0
) -> dict[str, dict[str, float | list[float]] | None]:
    """Model A minus model B on the same images, with a 95% paired-bootstrap interval
    for balanced accuracy, macro AUC and malignant AUC. Each resample draws the same
    images for both models, so the interval reflects their disagreement rather than
    the noise of the split that two separate intervals would add up."""
    y_true = np.asarray(y_true)
    scores = {
        "balanced_accuracy": lambda y, p: metrics.balanced_accuracy_score(y, p.argmax(axis=1)),
        "macro_auc": _macro_auc,
        "malignant_auc": _malignant_auc,
    }
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(y_true), len(y_true)) for _ in range(n)]
    result: dict[str, dict[str, float | list[float]] | None] = {}
    with warnings.catch_warnings():  # a resample may lack classes a model predicts: expected
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        for name, score in scores.items():
            a, b = score(y_true, probs_a), score(y_true, probs_b)
            if a is None or b is None:
                result[name] = None
                continue
            diffs = []
            for idx in draws:
                da, db = score(y_true[idx], probs_a[idx]), score(y_true[idx], probs_b[idx])
                if da is not None and db is not None:
                    diffs.append(da - db)
            result[name] = {
                "a": round(float(a), 4),
                "b": round(float(b), 4),
                "difference": round(float(a - b), 4),
                "ci95": np.percentile(diffs, [2.5, 97.5]).round(4).tolist(),
            }
    return result


def by_collection(
    y_true: np.ndarray,
    probs: np.ndarray,
    collections: np.ndarray,
    malignant_threshold: float,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> dict[str, dict[str, Any]]:
    """Headline metrics within each image collection of a split. When collections hold
    different classes (here ISIC 2017 brings only melanoma, nevus and seborrheic
    keratosis), a model can learn a collection's look instead of the lesion; the
    pooled figures hide that, these show it. Balanced accuracy is over the classes the
    collection holds; malignant sensitivity/specificity at the shipped threshold."""
    y_true, collections = np.asarray(y_true), np.asarray(collections)
    out = {}
    for name in sorted(set(collections.tolist())):
        inside = collections == name
        y, p = y_true[inside], probs[inside]
        pred = p.argmax(axis=1)
        present = sorted(set(y.tolist()))
        y_mal = MALIGNANT_MASK[y]
        flagged = malignant_score(p) >= malignant_threshold
        melanoma = class_names.index("melanoma")
        out[name] = {
            "n_images": int(inside.sum()),
            "classes_present": [class_names[k] for k in present],
            "accuracy": round(float(metrics.accuracy_score(y, pred)), 4),
            # mean recall over the classes the collection holds (balanced accuracy there)
            "balanced_accuracy": round(float(metrics.recall_score(y, pred, labels=present, average="macro")), 4),
            "malignant_auc": round(_malignant_auc(y, p), 4) if 0 < y_mal.sum() < len(y) else None,
            "malignant_sensitivity": round(float(flagged[y_mal].mean()), 4) if y_mal.any() else None,
            "malignant_specificity": round(float((~flagged)[~y_mal].mean()), 4) if (~y_mal).any() else None,
            "melanoma_sensitivity": round(float(np.mean(pred[y == melanoma] == melanoma)), 4)
            if (y == melanoma).any()
            else None,
        }
    return out


def malignant_figures(y_true: np.ndarray, probs: np.ndarray, malignant_threshold: float) -> dict[str, Any]:
    """Benign against malignant: AUC, sensitivity and specificity at the referral
    threshold, sensitivity at 80 % specificity, the confusion counts and the ROC curve."""
    y_mal = MALIGNANT_MASK[y_true].astype(int)
    score = malignant_score(probs)
    flagged = score >= malignant_threshold
    has_both_mal = 0 < y_mal.sum() < len(y_mal)
    malignant = {
        "threshold": round(float(malignant_threshold), 4),
        "roc_auc": round(_malignant_auc(y_true, probs), 4) if has_both_mal else None,
        "sensitivity": round(float(flagged[y_mal == 1].mean()), 4) if y_mal.any() else None,
        "specificity": round(float((~flagged)[y_mal == 0].mean()), 4) if (y_mal == 0).any() else None,
        "sensitivity_at_80_specificity": sensitivity_at_specificity(y_mal, score),
        "confusion": {
            "tp": int((flagged & (y_mal == 1)).sum()),
            "fn": int((~flagged & (y_mal == 1)).sum()),
            "fp": int((flagged & (y_mal == 0)).sum()),
            "tn": int((~flagged & (y_mal == 0)).sum()),
        },
    }
    if has_both_mal:
        fpr, tpr, _ = metrics.roc_curve(y_mal, score)
        malignant["roc"] = _resample(fpr, tpr)
    return malignant


def evaluate_predictions(
    y_true: np.ndarray,
    probs: np.ndarray,
    split: str,
    malignant_threshold: float,
    class_names: tuple[str, ...] = CLASS_NAMES,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """Every metric the app and the model card show, for one split."""
    y_true = np.asarray(y_true)
    pred = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    present = [k for k in labels if (y_true == k).any()]
    prec, rec, f1, support = metrics.precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    cm = metrics.confusion_matrix(y_true, pred, labels=labels)
    per_class, roc, pr = {}, {}, {}
    for k, name in enumerate(class_names):
        positive = y_true == k
        has_both = 0 < positive.sum() < len(y_true)
        tn = cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]
        negatives = cm.sum() - cm[k].sum()
        per_class[name] = {
            "precision": round(float(prec[k]), 4),
            "recall": round(float(rec[k]), 4) if positive.any() else None,
            "specificity": round(float(tn / negatives), 4) if negatives else None,
            "f1": round(float(f1[k]), 4) if positive.any() else None,
            "support": int(support[k]),
            "roc_auc": round(float(metrics.roc_auc_score(positive, probs[:, k])), 4) if has_both else None,
            "average_precision": round(float(metrics.average_precision_score(positive, probs[:, k])), 4)
            if has_both
            else None,
            "sensitivity_at_80_specificity": sensitivity_at_specificity(positive, probs[:, k]),
        }
        if has_both:
            fpr, tpr, _ = metrics.roc_curve(positive, probs[:, k])
            roc[name] = _resample(fpr, tpr)
            precision_c, recall_c, _ = metrics.precision_recall_curve(positive, probs[:, k])
            pr[name] = {
                "recall": recall_c.round(4).tolist()[:: max(1, len(recall_c) // CURVE_POINTS)],
                "precision": precision_c.round(4).tolist()[:: max(1, len(recall_c) // CURVE_POINTS)],
            }

    malignant = malignant_figures(y_true, probs, malignant_threshold)
    macro_auc = _macro_auc(y_true, probs)
    return {
        "split": split,
        "n_images": len(y_true),
        "classes_present": [class_names[k] for k in present],
        "accuracy": round(float(metrics.accuracy_score(y_true, pred)), 4),
        "balanced_accuracy": round(float(metrics.balanced_accuracy_score(y_true, pred)), 4),
        "macro_precision": round(float(np.mean(prec[present])), 4),
        "macro_recall": round(float(np.mean(rec[present])), 4),
        "macro_f1": round(float(np.mean(f1[present])), 4),
        "weighted_precision": round(float(np.average(prec, weights=support)), 4),
        "weighted_recall": round(float(np.average(rec, weights=support)), 4),
        "weighted_f1": round(float(np.average(f1, weights=support)), 4),
        "macro_auc": round(macro_auc, 4) if macro_auc is not None else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "roc_curves": roc,
        "pr_curves": pr,
        "malignant": malignant,
        "calibration": calibration(y_true, probs),
        "bootstrap_95ci": bootstrap_intervals(y_true, probs, n=bootstrap) if bootstrap else None,
        # Raw scores so the app can explore thresholds without the data set.
        "scores": {"y_true": y_true.tolist(), "probs": probs.round(5).tolist()},
    }


def stored_scores(evaluation: dict[str, Any] | None, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(probabilities, labels) an ``evaluation.json`` stores for ``split``, or None."""
    scores = ((evaluation or {}).get(split) or {}).get("scores")
    if not scores:
        return None
    return np.asarray(scores["probs"], dtype=float), np.asarray(scores["y_true"], dtype=int)


def stored_split_scores(table, evaluation: dict[str, Any], split: str, data_fingerprint: str | None):
    """The kept rows of ``split`` in a manifest ``table`` with the labels and
    probabilities the model's evaluation stored for them, row by row: ``(rows, y, probs)``.
    No model run and no image needed. Raises ValueError when the table is not the data
    the model was evaluated on (fingerprint) or the stored labels do not follow its rows."""
    from .manifest import kept_rows, table_fingerprint

    if table_fingerprint(table) != data_fingerprint:
        raise ValueError("the data's fingerprint differs from the one the model was evaluated on")
    stored = stored_scores(evaluation, split)
    if stored is None:
        raise ValueError(f"the model's evaluation stores no scores for the {split} split")
    probs, stored_y = stored
    rows = kept_rows(table, split)
    y = np.array([CLASS_NAMES.index(label) for label in rows["final_label"]])
    if y.tolist() != stored_y.tolist():
        raise ValueError(f"the stored {split} labels do not follow the split's rows")
    return rows, y, probs


def confused_pictures(rows, y: np.ndarray, probs: np.ndarray, true_class: int, predicted_class: int):
    """The pictures of class ``true_class`` answered ``predicted_class`` (most confident
    first), with their ISIC id, path, the two classes' probabilities and the malignant
    risk: one cell of the confusion matrix, picture by picture."""
    import pandas as pd

    picked = (y == true_class) & (probs.argmax(axis=1) == predicted_class)
    out = pd.DataFrame(
        {
            "isic_id": rows["isic_id"].to_numpy()[picked],
            "path": rows["path"].to_numpy()[picked],
            "answered": probs[picked, predicted_class],
            "true class": probs[picked, true_class],
            "malignant risk": malignant_score(probs[picked]),
        }
    )
    return out.sort_values("answered", ascending=False, kind="stable").reset_index(drop=True)


def summary_table(evaluation: dict[str, Any]) -> str:
    """A printable per-split, per-class table of the headline metrics."""
    import pandas as pd

    lines = []
    for split in ("val", "test"):
        if split not in evaluation:
            continue
        ev = evaluation[split]
        lines.append(
            f"== {split} split: {ev['n_images']} images | accuracy {ev['accuracy']:.3f} | balanced accuracy "
            f"{ev['balanced_accuracy']:.3f} | macro AUC {ev['macro_auc']} | malignant AUC "
            f"{ev['malignant']['roc_auc']} (sens {ev['malignant']['sensitivity']}, spec "
            f"{ev['malignant']['specificity']} at threshold {ev['malignant']['threshold']}) | ECE "
            f"{ev['calibration']['ece']} =="
        )
        table = pd.DataFrame(ev["per_class"]).T[
            ["support", "precision", "recall", "specificity", "f1", "roc_auc", "average_precision"]
        ]
        lines.append(table.to_string())
        lines.append("")
    return "\n".join(lines)


def metrics_summary(evaluation: dict[str, Any], splits: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """A manifest's headline figures of each evaluated split among ``splits``: balanced
    accuracy, macro AUC, accuracy and malignant AUC."""
    return {
        split: {k: evaluation[split][k] for k in ("balanced_accuracy", "macro_auc", "accuracy")}
        | {"malignant_auc": evaluation[split]["malignant"]["roc_auc"]}
        for split in splits
        if split in evaluation
    }
