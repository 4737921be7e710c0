"""Workflows: the steps that load data, run a saved model over it and write what they
find beside the model (its evaluation, its reliability settings, its similar-case index).
They sit above prediction, reliability and evaluation, and nothing below imports them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import artifact as artifact_io
from .cases import CASES_FILE, CASES_LAYER, CASES_REPORT_FILE, SIMILAR_K, CaseIndex, agreement_report, majority
from .evaluation import by_collection, calibration, evaluate_predictions, metrics_summary
from .inference import Predictor, reliability_advice
from .pipeline import load_arrays
from .reliability import (
    LESION_DETECTOR_QUANTILE,
    RELIABILITY_FILE,
    LayeredDensity,
    LesionDetector,
    ReliabilityCheck,
    abstention_threshold,
    apply_temperature,
    coverage_report,
    fit_temperature,
)
from .sources import collections_of
from .taps import feature_layers, forward_with_features
from .test_time_views import DEFAULT_TTA_VIEWS


def evaluate_artifact(
    artifact,
    manifest,
    splits: tuple[str, ...] = ("val", "test"),
    tta: bool | None = None,
    cache_dir=None,
    progress: bool = True,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """Evaluate a loaded model artifact on manifest splits (images it never trained on)."""
    predictor = Predictor.from_artifact(artifact, tta=tta)
    results: dict[str, Any] = {"model": artifact.name}
    for split in splits:
        rows = manifest.kept(split)
        if not len(rows):
            continue
        x, y = load_arrays(rows, artifact.input_size, cache_dir, progress)
        probs = predictor.predict_arrays(x)
        results[split] = evaluate_predictions(y, probs, split, artifact.malignant_threshold, bootstrap=bootstrap)
        results[split]["by_collection"] = by_collection(y, probs, collections_of(rows), artifact.malignant_threshold)
    return results


def refit_referral_threshold(artifact, table, rule: str, target: float | None = None, bootstrap: int = 1000) -> dict:
    """Refit a saved model's referral threshold by ``rule`` on its stored validation
    scores (no model run) and re-evaluate its stored splits at the new threshold: the
    manifest's threshold, rule and metrics summary and ``evaluation.json`` are
    rewritten. ``table``: the manifest table the model was evaluated on (its fingerprint
    is checked). Returns the old and new thresholds and the rule in words."""
    from .classes import MALIGNANT_MASK, malignant_score
    from .evaluation import stored_split_scores
    from .model_files import EVALUATION_FILE
    from .transfer import fit_referral_threshold, referral_rule_text

    manifest = artifact_io.read_manifest(artifact.path)
    config = dict(manifest.get("training_config", {}))
    target = float(target if target is not None else config.get("malignant_sensitivity_target", 0.9))
    evaluation = artifact.evaluation() or {}
    fingerprint = manifest.get("data_fingerprint")
    rows, y_val, p_val = stored_split_scores(table, evaluation, "val", fingerprint)
    threshold = fit_referral_threshold(
        rule, MALIGNANT_MASK[y_val], malignant_score(p_val), collections_of(rows), target
    )
    for split in ("val", "test"):
        if split in evaluation:
            rows, y, probs = stored_split_scores(table, evaluation, split, fingerprint)
            evaluation[split] = evaluate_predictions(y, probs, split, threshold, bootstrap=bootstrap)
            evaluation[split]["by_collection"] = by_collection(y, probs, collections_of(rows), threshold)
    artifact_io.write_json(artifact.path / EVALUATION_FILE, evaluation)
    config |= {"referral_rule": rule, "malignant_sensitivity_target": target}
    entries = {
        "malignant_threshold": threshold,  # unrounded: see threshold_for_sensitivity
        "malignant_threshold_rule": referral_rule_text(rule, target),
        "referral_rule": rule,
        "training_config": config,
        "metrics_summary": manifest.get("metrics_summary", {}) | metrics_summary(evaluation, ("val", "test")),
    }
    artifact_io.write_manifest(artifact.path, manifest | entries)
    return {
        "old_threshold": artifact.malignant_threshold,
        "threshold": threshold,
        "rule": entries["malignant_threshold_rule"],
    }


OUTLIER_PICTURES = 1000  # generated non-lesion pictures the lesion detector learns from


def fit_lesion_detector(forward, size: int, layer: str, train_lesions: np.ndarray, val_lesions: np.ndarray):
    """The lesion detector on ``layer``'s pooled features (``forward`` returns them
    first after the probabilities): training lesions against generated non-lesion
    pictures, its threshold on validation lesions."""
    from .outlier_pictures import outlier_pictures
    from .pipeline import to_model_input

    x = np.stack([to_model_input(picture, size) for picture in outlier_pictures(OUTLIER_PICTURES, size)])
    others = np.concatenate([forward(np.asarray(x[i : i + 64], np.float32))[1].numpy() for i in range(0, len(x), 64)])
    detector = LesionDetector.fit(layer, train_lesions, others)
    detector.calibrate(val_lesions)
    return detector


def fit_reliability(artifact, manifest, cache_dir=None, progress: bool = True) -> dict:
    """Fit temperature, the OOD detector and the abstention cut-off for a saved model on
    its training/validation splits, save them beside it and record them (with a
    checksum) in its manifest; returns the manifest entries and test-split figures."""
    layers = feature_layers(artifact.model)
    forward = forward_with_features(artifact.model, layers, artifact.input_size)

    def run(split: str) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        x, y = load_arrays(manifest.kept(split), artifact.input_size, cache_dir, progress)
        outs = [forward(np.asarray(x[i : i + 64], np.float32)) for i in range(0, len(x), 64)]
        probs = np.concatenate([o[0].numpy() for o in outs])
        return probs, [np.concatenate([o[k].numpy() for o in outs]) for k in range(1, len(layers) + 1)], y

    _, f_train, y_train = run("train")
    p_val, f_val, y_val = run("val")
    density = LayeredDensity.fit(layers, f_train, y_train)
    density.calibrate(f_val)
    detector = fit_lesion_detector(forward, artifact.input_size, layers[0], f_train[0], f_val[0])
    temperature = fit_temperature(p_val, y_val)
    cut = abstention_threshold(apply_temperature(p_val, temperature), y_val)
    path = artifact.path / RELIABILITY_FILE
    density.save(path, extra=detector.arrays())
    entries = {
        "temperature": round(temperature, 4),
        "ood_threshold": round(density.threshold, 4),
        "lesion_detector_threshold": round(detector.threshold, 6),
        "abstain_below": round(cut, 4),
        "reliability_file": RELIABILITY_FILE,
        "reliability_sha256": artifact_io.sha256_of(path),
        "ood_layers": layers,
        "reliability_rule": f"answer only if a lesion (the image screens pass, and a logistic regression on "
        f"{layers[0]}'s pooled features, lesions against {OUTLIER_PICTURES} generated non-lesion pictures, gives a "
        f"probability of not being a lesion at or below its {LESION_DETECTOR_QUANTILE:.0%} quantile on validation "
        "lesions) and calibrated top probability >= abstain_below (the lowest cut-off giving >= 80% accuracy on "
        "the answered validation images); the Mahalanobis distance over ood_layers is reported as unfamiliarity",
    }
    report: dict = {"fitted_on": "train (features), val (temperature, thresholds)"}
    for split, (p, f, y) in {"val": (p_val, f_val, y_val), "test": run("test")}.items():
        calibrated = apply_temperature(p, temperature)
        report[split] = {
            "ece_before": calibration(y, p)["ece"],
            "ece_after": calibration(y, calibrated)["ece"],
            "ood_false_rejection": round(float(detector.is_outlier(f[0]).mean()), 4),
            "unfamiliar": round(float(density.is_outlier(f).mean()), 4),
            **coverage_report(calibrated, y, cut, detector.is_outlier(f[0])),
        }
    artifact_io.write_manifest(artifact.path, artifact_io.read_manifest(artifact.path) | entries)
    return {"manifest": entries, "report": report}


def fit_cases(artifact, manifest, cache_dir=None, progress: bool = True) -> dict:
    """Index the training images of ``manifest`` (cleaned splits) for a saved model,
    save the index beside it with its checksum in the model's manifest, and measure on
    validation and test how the cases' majority relates to the model's answers (also
    among the answers the reliability check lets through, when the model has one)."""
    reliability = ReliabilityCheck.from_artifact(artifact)
    layers = reliability.density.layers if reliability is not None else [CASES_LAYER]
    if CASES_LAYER not in layers:
        layers = [*layers, CASES_LAYER]
    at = layers.index(CASES_LAYER)
    tta = bool(artifact.manifest.get("tta", False))

    def run(split: str, use_tta: bool):
        rows = manifest.kept(split)
        x, y = load_arrays(rows, artifact.input_size, cache_dir, progress)
        views = artifact.manifest.get("tta_views", DEFAULT_TTA_VIEWS)
        predictor = Predictor(artifact.model, artifact.input_size, use_tta, layers, views=views)
        probs, single, features = predictor.predict_with_features(x)
        return rows, x, y, probs, single, features

    rows, _, _, _, _, features = run("train", False)
    index = CaseIndex.build(features[at], rows, manifest.data_dir)
    path = artifact.path / CASES_FILE
    index.save(path)
    report: dict[str, object] = {"fitted_on": f"train ({len(index)} images)", "k": SIMILAR_K}
    for split in ("val", "test"):
        _, x, y, probs, single, features = run(split, tta)
        predicted = probs.argmax(axis=1)
        majorities = [majority(cases) for cases in index.nearest(features[at])]
        report[split] = agreement_report(predicted, y, majorities)
        if reliability is not None and reliability.density.layers == layers:
            checked = reliability.check(x, outputs=(single, features))
            answered = np.array([a == "" for a in reliability_advice(checked, reliability.abstain_below)])
            report[split]["among_answered"] = agreement_report(
                predicted[answered], y[answered], [m for m, a in zip(majorities, answered, strict=True) if a]
            )
    entries = {
        "cases_file": CASES_FILE,
        "cases_sha256": artifact_io.sha256_of(path),
        "cases_layer": CASES_LAYER,
        "cases_k": SIMILAR_K,
    }
    artifact_io.write_manifest(artifact.path, artifact_io.read_manifest(artifact.path) | entries)
    result = {"manifest": entries, "report": report}
    artifact_io.write_json(artifact.path / CASES_REPORT_FILE, result)
    return result
