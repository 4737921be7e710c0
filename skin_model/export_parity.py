"""How far an export's answers are from the Keras model's on the same pictures: the parity
report (largest probability difference, answers and referral decisions that turned) and its
summary in words, which `export` prints and stores in the export's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import ModelArtifact, write_json
from .classes import CLASS_NAMES
from .export import load_exported, manifest_path


def check_export(
    artifact: ModelArtifact,
    export: Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    tta: bool | None = None,
    val_collections: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compare an export with the Keras model on ``splits`` (name -> images, labels),
    record the parity in the export's manifest and, when validation is among them,
    refit the malignant referral threshold (the model's rule) and the prediction sets
    (the source's coverage) on the export's own validation probabilities, the test
    split, if given, measured with them. ``val_collections``: each validation picture's
    collection, which a per-collection referral rule needs. Returns ``{"parity": ..., "prediction_sets":
    report or None}``."""
    from .conformal import DEFAULT_ALPHA, fit_prediction_sets
    from .inference import Predictor

    keras_predictor, export_predictor = Predictor.from_artifact(artifact, tta=tta), load_exported(export)
    reference, served = {}, {}
    for split, (x, y) in splits.items():
        reference[split] = keras_answers(keras_predictor, artifact, x)
        served[split] = (export_predictor.predict_arrays(x), np.asarray(y))
    path = manifest_path(export)
    manifest = json.loads(path.read_text())
    if "val" in served:
        manifest |= refitted_threshold(artifact, *served["val"], collections=val_collections)
    thresholds = (artifact.malignant_threshold, float(manifest["malignant_threshold"]))
    parity = {
        split: parity_report(probs, served[split][0], served[split][1], answered=answered, thresholds=thresholds)
        for split, (probs, answered) in reference.items()
    }
    manifest["parity"] = parity
    sets = None
    if "val" in served:
        alpha = float(artifact.manifest.get("prediction_set_alpha", DEFAULT_ALPHA))
        sets = fit_prediction_sets(served["val"], served.get("test"), alpha)
        manifest |= sets["manifest"] | {
            "prediction_set_fitted_on": "this export's own validation probabilities",
            "prediction_sets": sets["report"],
        }
    write_json(path, manifest)
    return {"parity": parity, "prediction_sets": None if sets is None else sets["report"]}


def keras_answers(predictor, artifact: ModelArtifact, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Keras model's probabilities for ``x`` and which of them it answers rather
    than calling itself unsure, by the rule the app and ``predict`` apply: calibrated
    single-view confidence at or above the model's abstention cut-off (a model without
    reliability settings: top probability at or above
    :data:`skin_model.inference.UNSURE_BELOW`)."""
    from .inference import UNSURE_BELOW
    from .reliability import apply_temperature

    temperature, cut = artifact.manifest.get("temperature"), artifact.manifest.get("abstain_below")
    if predictor.feature_layers and temperature is not None and cut is not None:
        probs, single, _ = predictor.predict_with_features(x)
        return probs, apply_temperature(single, temperature).max(axis=1) >= cut
    probs = predictor.predict_arrays(x)
    return probs, probs.max(axis=1) >= UNSURE_BELOW


def refitted_threshold(
    artifact: ModelArtifact, val_probs: np.ndarray, y_val: np.ndarray, collections: np.ndarray | None = None
) -> dict[str, Any]:
    """Manifest entries for the export's malignant referral threshold, fitted by the
    source model's rule and sensitivity target on the export's validation
    probabilities (and the pictures' ``collections``, for a per-collection rule), with
    the source's threshold kept beside it."""
    from .classes import MALIGNANT_MASK, malignant_score
    from .transfer import LEGACY_RULE, fit_referral_threshold, referral_rule_text

    target = float(artifact.manifest.get("training_config", {}).get("malignant_sensitivity_target", 0.9))
    rule = artifact.manifest.get("referral_rule", LEGACY_RULE)
    if collections is None:
        collections = np.zeros(len(y_val), int)  # one collection: every rule is the pooled one
    y_mal = MALIGNANT_MASK[np.asarray(y_val)]
    threshold = fit_referral_threshold(rule, y_mal, malignant_score(val_probs), collections, target)
    return {
        "malignant_threshold": threshold,  # unrounded: it lies halfway between two scores 1e-6 apart or more
        "malignant_threshold_rule": referral_rule_text(rule, target),
        "malignant_threshold_fitted_on": "this export's own validation probabilities",
        "source_malignant_threshold": artifact.malignant_threshold,
    }


def parity_report(
    reference: np.ndarray,
    exported: np.ndarray,
    y: np.ndarray,
    bootstrap: int = 1000,
    answered: np.ndarray | None = None,
    thresholds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Accuracy and balanced accuracy of the Keras model and of the export on the same
    images (with labels ``y``), how far their probabilities differ, and the export minus
    Keras with a paired-bootstrap 95 % interval: on a small split one changed answer
    moves balanced accuracy by points, and the interval says how much of a gap that is.

    ``answered`` (the pictures Keras answers rather than calling itself unsure, see
    :func:`keras_answers`) adds the agreement on those: a changed answer where the app
    would have said "unsure" anyway matters less than one it would have given.
    ``thresholds`` (Keras's, the export's) adds the referral decisions each makes and
    how many the export changes."""
    import warnings

    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from .evaluation import paired_bootstrap_difference

    def scores(probs: np.ndarray) -> dict[str, float]:
        predicted = probs.argmax(axis=1)
        with warnings.catch_warnings():  # a split may lack a class the model predicts
            warnings.simplefilter("ignore", UserWarning)
            balanced = balanced_accuracy_score(y, predicted)
        return {
            "accuracy": round(float(accuracy_score(y, predicted)), 4),
            "balanced_accuracy": round(float(balanced), 4),
        }

    keras_top, export_top = reference.argmax(1), exported.argmax(1)
    agree = keras_top == export_top
    report = {
        "images": len(y),
        "keras": scores(reference),
        "export": scores(exported),
        "max_abs_probability_difference": round(float(np.abs(reference - exported).max()), 6),
        "top1_agreement": round(float(agree.mean()), 4),
        "export_minus_keras": paired_bootstrap_difference(y, exported, reference, n=bootstrap),
    }
    report["answers_turned"] = answers_turned(y, keras_top, export_top)
    if answered is not None:
        answered = np.asarray(answered, bool)
        report["answered"] = {
            "images": int(answered.sum()),
            "top1_agreement": round(float(agree[answered].mean()), 4) if answered.any() else None,
            "answers_changed": int((~agree & answered).sum()),
        }
    if thresholds is not None:
        report["referral"] = referral_changes(y, reference, exported, *thresholds)
    return report


def answers_turned(y: np.ndarray, keras_top: np.ndarray, export_top: np.ndarray) -> dict[str, Any]:
    """How many answers the export turns from right to wrong and from wrong to right,
    the exact McNemar test of whether it turns more one way than chance would, and how
    much balanced accuracy one turned answer moves on this split (an answer in its
    largest class, in its smallest; None for no pictures). On a small split a
    balanced-accuracy gap is a few turned answers; these say how many, and whether
    they lean one way."""
    from scipy.stats import binomtest

    y = np.asarray(y)
    keras_right, export_right = keras_top == y, export_top == y
    lost = int((keras_right & ~export_right).sum())
    gained = int((export_right & ~keras_right).sum())
    counts = np.bincount(y, minlength=len(CLASS_NAMES))
    present = counts[counts > 0]
    return {
        "right_to_wrong": lost,
        "wrong_to_right": gained,
        "mcnemar_exact_p": round(float(binomtest(lost, lost + gained, 0.5).pvalue), 4) if lost + gained else 1.0,
        "balanced_accuracy_per_answer": [
            round(1 / (len(present) * int(present.max())), 4),
            round(1 / (len(present) * int(present.min())), 4),
        ]
        if len(present)
        else None,
    }


def referral_changes(
    y: np.ndarray, reference: np.ndarray, exported: np.ndarray, keras_threshold: float, export_threshold: float
) -> dict[str, Any]:
    """The referral decision (malignant score at or above its threshold) of Keras and of
    the export on the same pictures: each one's operating point, and how many
    decisions the export turns each way."""
    from .classes import malignant_score
    from .evaluation import malignant_operating_point

    keras_refers = malignant_score(reference) >= keras_threshold
    export_refers = malignant_score(exported) >= export_threshold
    return {
        "keras": malignant_operating_point(y, reference, keras_threshold),
        "export": malignant_operating_point(y, exported, export_threshold),
        "decisions_changed": int((keras_refers != export_refers).sum()),
        "export_refers_more": int((export_refers & ~keras_refers).sum()),
        "export_refers_fewer": int((keras_refers & ~export_refers).sum()),
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _points(share: float) -> str:
    """A share of balanced accuracy in points, to two significant figures (0.04, 0.89,
    7.1, 33, 100)."""
    points = 100 * share
    return f"{points:.2g}" if points < 10 else f"{points:.0f}"


def parity_summary(parity: dict[str, Any]) -> list[str]:
    """One line per split of :func:`check_export`'s parity, in words: what a deployer
    asks first is whether the export changes answers the model gives with confidence,
    and referral decisions."""
    from .case_report import split_title

    lines = []
    for split, report in parity.items():
        words = [f"{split_title(split)} ({report['images']} pictures): top-1 agreement {report['top1_agreement']:.1%}"]
        turned = report.get("answers_turned")
        if turned is not None and turned["balanced_accuracy_per_answer"] is not None:
            largest, smallest = (_points(step) for step in turned["balanced_accuracy_per_answer"])
            words.append(
                f"{_count(turned['right_to_wrong'], 'answer')} turned from right to wrong and "
                f"{turned['wrong_to_right']} from wrong to right (exact McNemar p = {turned['mcnemar_exact_p']:.3g}); "
                f"one turned answer moves balanced accuracy by {largest} to {smallest} points here"
            )
        answered = report.get("answered")
        if answered is not None:
            words.append(
                f"{answered['answers_changed']} changed of the {answered['images']} answers Keras gives "
                "without calling itself unsure"
            )
        referral = report.get("referral")
        if referral is not None:
            keras, export = referral["keras"], referral["export"]
            words.append(
                f"{_count(referral['decisions_changed'], 'referral decision')} changed "
                f"({referral['export_refers_more']} more "
                f"referred, {referral['export_refers_fewer']} fewer); referral sensitivity / specificity "
                f"{export['sensitivity']:.3f} / {export['specificity']:.3f} at the export's threshold "
                f"{export['threshold']:.1%} (Keras {keras['sensitivity']:.3f} / {keras['specificity']:.3f} "
                f"at {keras['threshold']:.1%})"
            )
        lines.append("; ".join(words))
    return lines
