"""Prediction sets: a differential diagnosis with a stated coverage.

Instead of one class, name every class the picture could plausibly be: split conformal
prediction (Vovk et al. 2005; Angelopoulos & Bates 2021), class-conditional ("Mondrian")
so that each diagnosis, rare ones included, is covered at the stated rate rather than
only on average over a set dominated by nevi. For each class c, the threshold t_c is the
floor((n_c + 1) alpha)-th smallest probability the model gave class c on the n_c
validation pictures of class c; a picture's set holds every class whose probability
reaches its threshold, plus the most probable class (so no set is empty). If validation
pictures and new pictures are exchangeable, the set holds a lesion's true class with
probability at least 1 - alpha for every class. A class with too few validation
pictures for that (n_c + 1 < 1 / alpha) is always in the set.

The thresholds are fitted on the probabilities the model served on validation (stored in
``evaluation.json``, so no model run) and recorded in the manifest, whose digest the
loader checks. Coverage measured on validation is optimistic (the thresholds were fitted
there), so the report also splits validation in halves (fit on one, measure on the other)
and measures the held-out test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import read_manifest, write_json, write_manifest
from .classes import CLASS_NAMES, MALIGNANT_MASK
from .evaluation import stored_scores
from .model_files import PREDICTION_SETS_FILE

DEFAULT_ALPHA = 0.1
# thresholds sit this far below their calibration probability (two units of the stored rounding)
MARGIN = 2e-5


def class_thresholds(probs: np.ndarray, y: np.ndarray, alpha: float, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Per class, the probability a picture must give it to enter the set.

    Placed :data:`MARGIN` below the order statistic that the guarantee needs, not on it:
    the stored probabilities are rounded to 5 decimals, and a served probability a
    rounding unit lower than the stored one must not drop a calibration picture out of
    its set.
    """
    thresholds = np.zeros(n_classes)
    for c in range(n_classes):
        scores = np.sort(probs[y == c, c])
        k = int(np.floor((len(scores) + 1) * alpha))
        if k >= 1:
            thresholds[c] = max(scores[k - 1] - MARGIN, 0.0)
    return thresholds


def set_mask(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean (n, classes): class c is in picture i's set. The top class always is."""
    probs = np.atleast_2d(probs)
    mask = probs >= thresholds[None, :]
    mask[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return mask


def set_report(probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """How the sets did on labelled pictures: how often they held the true class
    (overall and per class), their sizes, and what they say about malignancy."""
    mask = set_mask(probs, thresholds)
    covered = mask[np.arange(len(y)), y]
    size = mask.sum(axis=1)
    malignant = MALIGNANT_MASK[y]
    names_malignant = (mask & MALIGNANT_MASK[None, :]).any(axis=1)
    single = size == 1
    return {
        "images": len(y),
        "coverage": round(float(covered.mean()), 4),
        "per_class": {
            CLASS_NAMES[c]: {"images": int((y == c).sum()), "covered": int(covered[y == c].sum())}
            for c in range(len(CLASS_NAMES))
            if (y == c).any()
        },
        "mean_size": round(float(size.mean()), 3),
        "size_counts": {str(k): int((size == k).sum()) for k in range(1, len(CLASS_NAMES) + 1) if (size == k).any()},
        "single_class_share": round(float(single.mean()), 4),
        "single_class_accuracy": round(float(covered[single].mean()), 4) if single.any() else None,
        "malignant_with_a_malignant_class": round(float(names_malignant[malignant].mean()), 4)
        if malignant.any()
        else None,
        "benign_with_a_malignant_class": round(float(names_malignant[~malignant].mean()), 4)
        if (~malignant).any()
        else None,
    }


def split_half_coverage(
    probs: np.ndarray, y: np.ndarray, alpha: float, repeats: int = 200, seed: int = 0
) -> dict[str, float]:
    """Validation coverage without fitting and measuring on the same pictures: fit on a
    random half (stratified by class), measure on the other, ``repeats`` times."""
    rng = np.random.default_rng(seed)
    coverages, sizes = [], []
    for _ in range(repeats):
        fit = np.zeros(len(y), bool)
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            fit[rng.permutation(members)[: len(members) // 2]] = True
        mask = set_mask(probs[~fit], class_thresholds(probs[fit], y[fit], alpha))
        coverages.append(mask[np.arange(int((~fit).sum())), y[~fit]].mean())
        sizes.append(mask.sum(axis=1).mean())
    return {
        "repeats": repeats,
        "coverage_mean": round(float(np.mean(coverages)), 4),
        "coverage_5th_percentile": round(float(np.percentile(coverages, 5)), 4),
        "mean_size": round(float(np.mean(sizes)), 3),
    }


def coverage_shortfalls(split_report: dict[str, Any], alpha: float, level: float = 0.05) -> dict[str, dict[str, int]]:
    """The classes of a :func:`set_report` whose sets held the true class so much less
    often than 1 - alpha that chance would do it with probability below ``level``
    (one-sided binomial test): a per-class shortfall on 9 pictures is not evidence by
    itself, 4 of 9 is."""
    from scipy.stats import binom

    return {
        name: counts
        for name, counts in split_report.get("per_class", {}).items()
        if binom.cdf(counts["covered"], counts["images"], 1 - alpha) < level
    }


@dataclass(frozen=True)
class PredictionSets:
    """A model's fitted set thresholds (see the module docstring)."""

    alpha: float
    thresholds: np.ndarray

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> PredictionSets | None:
        """None for a model whose manifest records no prediction sets."""
        if "prediction_set_thresholds" not in manifest:
            return None
        return cls(float(manifest["prediction_set_alpha"]), np.asarray(manifest["prediction_set_thresholds"], float))

    @property
    def coverage(self) -> float:
        return 1 - self.alpha

    def members(self, probs: np.ndarray) -> list[list[str]]:
        """Each picture's set, most probable class first."""
        probs = np.atleast_2d(probs)
        mask = set_mask(probs, self.thresholds)
        return [[CLASS_NAMES[c] for c in np.argsort(-p) if m[c]] for p, m in zip(probs, mask, strict=True)]


def fit_prediction_sets(
    val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None, alpha: float = DEFAULT_ALPHA
) -> dict[str, Any]:
    """Thresholds from validation ``(probs, y)``, the manifest entries recording them
    and the report: validation in-sample and by split halves, and the test split."""
    probs, y = val
    thresholds = class_thresholds(probs, y, alpha)
    report: dict[str, Any] = {
        "alpha": alpha,
        "fitted_on": "val",
        "val": set_report(probs, y, thresholds),
        "val_split_halves": split_half_coverage(probs, y, alpha),
    }
    if test is not None:
        report["test"] = set_report(*test, thresholds)
    entries = {
        "prediction_set_alpha": alpha,
        "prediction_set_thresholds": [round(float(t), 6) for t in thresholds],
        "prediction_set_rule": f"class-conditional split conformal on the validation split's served probabilities: "
        f"a class is in a picture's set when its probability reaches the class's threshold (the "
        f"floor((n+1)*{alpha})-th smallest probability of that class on its n validation pictures, less "
        f"{MARGIN}); the most probable class always is",
    }
    return {"manifest": entries, "report": report}


def fit_from_evaluation(evaluation: dict[str, Any] | None, alpha: float = DEFAULT_ALPHA) -> dict[str, Any] | None:
    """:func:`fit_prediction_sets` on a model's stored validation (and test) scores;
    None when its evaluation stores no validation scores."""
    val = stored_scores(evaluation, "val")
    return None if val is None else fit_prediction_sets(val, stored_scores(evaluation, "test"), alpha)


def record_prediction_sets(model_dir: str | Path, model_name: str, result: dict[str, Any]) -> None:
    """Write ``prediction_sets.json`` beside a model and its thresholds into its manifest."""
    model_dir = Path(model_dir)
    write_json(model_dir / PREDICTION_SETS_FILE, {"model": model_name, **result["report"]})
    write_manifest(model_dir, read_manifest(model_dir) | result["manifest"])
