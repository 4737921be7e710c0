"""Do the reliability check and the referral threshold carry to a new clinic's camera?

Both are fitted on pooled validation pictures of three collections, each photographed,
cropped and saved its own way. A new clinic is a fourth way. The honest estimate of
what it would see is leave-one-collection-out: fit without a collection, then measure
on that collection. This module holds those measurements and the threshold rules they
choose between; it fits nothing that ships (``calibrate`` does).

Referral threshold rules (malignant score >= threshold means "refer"):

- ``pooled``: the fewest flagged pooled validation pictures with >= target sensitivity
  (:func:`skin_model.evaluation.threshold_for_sensitivity`).
- ``weakest collection``: the lowest of the per-collection thresholds, so every
  collection's validation pictures reach the target on their own; it trades
  specificity for sensitivity where the model is weakest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .evaluation import threshold_for_sensitivity, threshold_rule
from .reliability import LESION_DETECTOR_QUANTILE, LayeredDensity, LesionDetector
from .subgroups import wilson_interval

POOLED_RULE = "pooled"
WEAKEST_RULE = "weakest-collection"
# the rule a model's threshold is fitted by when its manifest names none (models trained
# before the rules existed were fitted on pooled validation)
LEGACY_RULE = POOLED_RULE
# A collection with fewer malignant validation pictures cannot set a threshold of its own
MIN_POSITIVES = 10


def weakest_collection_threshold(
    y_malignant: np.ndarray, score: np.ndarray, collections: np.ndarray, target: float = 0.9
) -> float:
    """The lowest per-collection threshold reaching ``target`` sensitivity (collections
    with fewer than :data:`MIN_POSITIVES` malignant pictures are left out; with none
    left, the pooled threshold)."""
    thresholds = [
        threshold_for_sensitivity(y_malignant[collections == c], score[collections == c], target)
        for c in np.unique(collections)
        if y_malignant[collections == c].sum() >= MIN_POSITIVES
    ]
    return min(thresholds) if thresholds else threshold_for_sensitivity(y_malignant, score, target)


RULES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, float], float]] = {
    POOLED_RULE: lambda y, s, c, t: threshold_for_sensitivity(y, s, t),
    WEAKEST_RULE: weakest_collection_threshold,
}


def fit_referral_threshold(
    rule: str, y_malignant: np.ndarray, score: np.ndarray, collections: np.ndarray, target: float = 0.9
) -> float:
    """The referral threshold ``rule`` fits on validation pictures."""
    if rule not in RULES:
        raise ValueError(f"unknown referral rule {rule!r}; choose from {', '.join(RULES)}")
    return RULES[rule](np.asarray(y_malignant, bool), np.asarray(score, np.float64), np.asarray(collections), target)


def referral_rule_text(rule: str, target: float) -> str:
    """How ``rule`` chose a threshold, in words for manifests and the model card."""
    if rule == WEAKEST_RULE:
        return (
            f"the lowest of the per-collection thresholds, each the fewest flagged validation images of one "
            f"collection with >= {target:.0%} malignant sensitivity, so every collection reaches it on its own"
        )
    return threshold_rule(target)


def referral_figures(y_malignant: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity and specificity of "refer when score >= threshold", with their 95 %
    Wilson intervals and counts."""
    y_malignant = np.asarray(y_malignant, bool)
    flagged = np.asarray(score) >= threshold
    caught, positives = int((flagged & y_malignant).sum()), int(y_malignant.sum())
    cleared, negatives = int((~flagged & ~y_malignant).sum()), int((~y_malignant).sum())
    return {
        "sensitivity": round(caught / positives, 4) if positives else None,
        "sensitivity_95ci": wilson_interval(caught, positives),
        "specificity": round(cleared / negatives, 4) if negatives else None,
        "specificity_95ci": wilson_interval(cleared, negatives),
        "malignant": positives,
        "benign": negatives,
    }


Scores = tuple[np.ndarray, np.ndarray, np.ndarray]  # (malignant truth, malignant score, collection)


def threshold_transfer_report(val: Scores, test: Scores, target: float = 0.9) -> dict[str, Any]:
    """For each rule: its threshold fitted on pooled validation, the test split's
    referral figures overall and within each collection, and leave-one-collection-out
    (the rule refitted on the other collections' validation pictures, applied to the
    held-out collection's test pictures)."""
    y_val, s_val, c_val = (np.asarray(a) for a in val)
    y_test, s_test, c_test = (np.asarray(a) for a in test)
    report: dict[str, Any] = {"target_sensitivity": target, "rules": {}}
    for rule, fit in RULES.items():
        threshold = fit(y_val, s_val, c_val, target)
        within = {c: referral_figures(y_test[c_test == c], s_test[c_test == c], threshold) for c in np.unique(c_test)}
        held_out = {}
        for c in np.unique(c_test):
            others = c_val != c
            refitted = fit(y_val[others], s_val[others], c_val[others], target)
            held_out[str(c)] = {"threshold": round(refitted, 4)} | referral_figures(
                y_test[c_test == c], s_test[c_test == c], refitted
            )
        report["rules"][rule] = {
            "threshold": round(threshold, 4),
            "test": referral_figures(y_test, s_test, threshold),
            "test_by_collection": {str(c): f for c, f in within.items()},
            "leave_one_collection_out": held_out,
        }
    return report


def weakest_sensitivity(rule_report: dict[str, Any], part: str) -> float:
    """The lowest sensitivity over collections in ``part`` ("test_by_collection" or
    "leave_one_collection_out") of one rule's report."""
    return min(f["sensitivity"] for f in rule_report[part].values() if f["sensitivity"] is not None)


def best_rule(report: dict[str, Any]) -> str:
    """The rule whose sensitivity is highest where it is weakest (leave-one-collection-out
    first, then within each collection's test pictures)."""
    return max(
        report["rules"],
        key=lambda r: (
            weakest_sensitivity(report["rules"][r], "leave_one_collection_out"),
            weakest_sensitivity(report["rules"][r], "test_by_collection"),
        ),
    )


def _rate(flags: np.ndarray) -> dict[str, Any]:
    flags = np.asarray(flags, bool)
    return {
        "refused": int(flags.sum()),
        "n": len(flags),
        "rate": round(float(flags.mean()), 4) if len(flags) else None,
        "rate_95ci": wilson_interval(int(flags.sum()), len(flags)),
    }


# (features per layer, label, collection, refused by the image screens)
Features = tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]


def _subset(features: list[np.ndarray], keep: np.ndarray) -> list[np.ndarray]:
    return [f[keep] for f in features]


# fit(training features per layer, training labels, validation features per layer) -> refuses(features) -> flags
Refuses = Callable[[list[np.ndarray]], np.ndarray]
DetectorFit = Callable[[list[np.ndarray], np.ndarray, list[np.ndarray]], Refuses]


def distance_detector(layers: list[str], quantile: float = 0.95) -> DetectorFit:
    """The feature distance (:class:`skin_model.reliability.LayeredDensity`), refusing
    above the ``quantile`` of validation distances."""

    def fit(train: list[np.ndarray], y: np.ndarray, val: list[np.ndarray]) -> Refuses:
        density = LayeredDensity.fit(layers, train, y)
        density.calibrate(val, quantile)
        return density.is_outlier

    return fit


def lesion_detector(layer_index: int, others: np.ndarray, quantile: float = LESION_DETECTOR_QUANTILE) -> DetectorFit:
    """The lesion detector (:class:`skin_model.reliability.LesionDetector`) on one tap,
    learning from ``others`` (features of generated non-lesion pictures)."""

    def fit(train: list[np.ndarray], y: np.ndarray, val: list[np.ndarray]) -> Refuses:
        detector = LesionDetector.fit("tap", train[layer_index], others)
        detector.calibrate(val[layer_index], quantile)
        return lambda features: detector.is_outlier(features[layer_index])

    return fit


def ood_transfer_report(
    fit_detector: DetectorFit,
    train: Features,
    val: Features,
    test: Features,
    other: dict[str, tuple[list[np.ndarray], np.ndarray]],
) -> dict[str, Any]:
    """Refusals of a detector (with the image screens, given as a flag per picture):

    - ``within_collection``: fitted on all collections, each collection's test pictures;
    - ``leave_one_collection_out``: fitted on the other collections' training and
      validation pictures, then the held-out collection's validation and test pictures
      (the classifier itself did train on that collection, so this is optimistic for a
      truly new camera);
    - ``other``: for each group of pictures that are not lesions (features per layer,
      screened flags), the share the detector fitted on all collections refuses, and
      the lowest share any held-out detector refuses."""
    f_train, y_train, c_train, _ = train
    f_val, _, c_val, screened_val = val
    f_test, _, c_test, screened_test = test

    def fitted(keep_train: np.ndarray, keep_val: np.ndarray) -> Refuses:
        return fit_detector(_subset(f_train, keep_train), y_train[keep_train], _subset(f_val, keep_val))

    def refused(refuses: Refuses, features: list[np.ndarray], screened: np.ndarray) -> np.ndarray:
        return np.asarray(screened, bool) | refuses(features)

    everywhere = fitted(np.ones(len(y_train), bool), np.ones(len(c_val), bool))
    test_refused = refused(everywhere, f_test, screened_test)
    report: dict[str, Any] = {
        "test": _rate(test_refused),
        "within_collection": {str(c): _rate(test_refused[c_test == c]) for c in np.unique(c_test)},
        "leave_one_collection_out": {},
        "other": {group: _rate(refused(everywhere, *pictures)) for group, pictures in other.items()},
    }
    for c in np.unique(c_test):
        held_out = fitted(c_train != c, c_val != c)
        flags = np.concatenate(
            [
                refused(held_out, _subset(f_val, c_val == c), np.asarray(screened_val)[c_val == c]),
                refused(held_out, _subset(f_test, c_test == c), np.asarray(screened_test)[c_test == c]),
            ]
        )
        report["leave_one_collection_out"][str(c)] = _rate(flags) | {
            "other_rates": {group: round(float(refused(held_out, *p).mean()), 4) for group, p in other.items()}
        }
    for group, figures in report["other"].items():
        figures["lowest_rate_leaving_one_out"] = min(
            r["other_rates"][group] for r in report["leave_one_collection_out"].values()
        )
    return report
