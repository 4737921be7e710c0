"""Check the model on your own labelled pictures before trusting it.

A clinic's dermatoscope, patients and lighting are not the ones the model was
validated on, and its published figures need not hold there. ``python -m skin_model
validate FOLDER`` reads pictures filed by diagnosis (``FOLDER/<class>/*``; class
folders named as the model's classes, or by their ISIC / HAM10000 codes such as
``MEL`` or ``bkl``; or any layout with ``--labels CSV``; the app's "Your pictures"
page takes a zip), runs the model on them exactly as ``predict`` does, and sets the
figures, with 95 % bootstrap intervals so a small folder does not pass for a verdict,
beside the model's own figures on its validation and test pictures of the same
classes weighted to the same case mix, so that the comparison is like for like.

Pictures the model trained on would flatter it, so each one is checked against the
audit's manifest of the model's data (same bytes, same ISIC id in the file name, or a
perceptual hash within :data:`COPY_MAX_BITS` bits of a training picture) and left out
of the figures, and named in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bundle import ModelBundle, load_bundle
from .classes import CLASS_NAMES, malignant_score
from .labelled_pictures import (
    seen_in_training,
)

BOOTSTRAP = 1000
SPLITS = ("val", "test")


def _interval(values: list[float]) -> list[float] | None:
    return np.percentile(values, [2.5, 97.5]).round(4).tolist() if values else None


def figures_of(
    y: np.ndarray, probs: np.ndarray, threshold: float, weights: np.ndarray | None = None
) -> dict[str, float | None]:
    """Balanced accuracy (mean recall of the classes present), macro AUC (one class
    against the others, mean over the classes present), malignant AUC and the
    referral's sensitivity and specificity at ``threshold``; None where the pictures
    cannot give a figure (e.g. no benign lesion). ``weights`` per picture let one set
    of pictures stand in for another case mix (None: all equal)."""
    from sklearn import metrics

    from .classes import MALIGNANT_MASK

    y = np.asarray(y)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    malignant = MALIGNANT_MASK[y]
    score = malignant_score(probs)
    referred = score >= threshold
    present = [k for k in range(len(CLASS_NAMES)) if (y == k).any()]
    recalls = [float((probs[y == k].argmax(1) == k).mean()) for k in present]
    aucs = [metrics.roc_auc_score(y == k, probs[:, k], sample_weight=w) for k in present if (y != k).any()]
    both = 0 < malignant.sum() < len(y)
    return {
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "malignant_auc": float(metrics.roc_auc_score(malignant, score, sample_weight=w)) if both else None,
        "referral_sensitivity": float(np.average(referred[malignant], weights=w[malignant]))
        if malignant.any()
        else None,
        "referral_specificity": float(np.average(~referred[~malignant], weights=w[~malignant]))
        if (~malignant).any()
        else None,
    }


def headline_figures(
    y: np.ndarray, probs: np.ndarray, threshold: float, bootstrap: int = BOOTSTRAP, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """:func:`figures_of` with a 95 % percentile bootstrap interval for each."""
    y = np.asarray(y)
    point = figures_of(y, probs, threshold)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(y), len(y))
        draws.append(figures_of(y[idx], probs[idx], threshold))
    return {
        key: {
            "value": None if value is None else round(value, 4),
            "ci95": None if value is None else _interval([d[key] for d in draws if d[key] is not None]),
        }
        for key, value in point.items()
    }


def matched_model_figures(
    evaluation: dict[str, Any], split: str, counts: dict[str, int], threshold: float
) -> dict[str, Any]:
    """The model's own figures on ``split`` (probabilities stored in its evaluation),
    on its pictures of the classes in ``counts`` only and weighted to that case mix:
    AUCs, sensitivity and specificity depend on which lesions are being told apart
    (melanoma against nevus is harder than against the nine classes), so a folder
    of two classes is compared with the model on those two. ``missing``: classes of
    yours the split has no picture of (left out of its figures)."""
    from .evaluation import stored_scores

    stored = stored_scores(evaluation, split)
    if stored is None:
        return {"figures": dict.fromkeys(FIGURE_TITLES), "pictures": 0, "missing": sorted(counts)}
    probs, y = stored
    wanted = {CLASS_NAMES.index(name): n for name, n in counts.items()}
    have = {k: int((y == k).sum()) for k in wanted if (y == k).any()}
    keep = np.isin(y, list(have))
    total = sum(wanted[k] for k in have)
    kept_total = sum(have.values())
    weights = np.array([(wanted[k] / total) / (have[k] / kept_total) for k in y[keep]])
    figures = figures_of(y[keep], probs[keep], threshold, weights) if keep.any() else dict.fromkeys(FIGURE_TITLES)
    return {
        "figures": {k: None if v is None else round(v, 4) for k, v in figures.items()},
        "pictures": int(keep.sum()),
        "missing": sorted(CLASS_NAMES[k] for k in wanted if k not in have),
    }


def compare(yours: dict[str, Any], reference: dict[str, float | None]) -> dict[str, str]:
    """Per figure: 'lower' / 'higher' when the reference lies outside your interval,
    'consistent' inside it, '' when either is missing."""
    verdicts = {}
    for key, figure in yours.items():
        ref, ci = reference.get(key), figure["ci95"]
        if ref is None or ci is None:
            verdicts[key] = ""
        elif ref > ci[1]:
            verdicts[key] = "lower"
        elif ref < ci[0]:
            verdicts[key] = "higher"
        else:
            verdicts[key] = "consistent"
    return verdicts


FIGURE_TITLES = {
    "balanced_accuracy": "balanced accuracy",
    "macro_auc": "macro AUC",
    "malignant_auc": "malignant AUC",
    "referral_sensitivity": "referral sensitivity",
    "referral_specificity": "referral specificity",
}


def figure_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline figure: yours with its interval, the model's validation and
    test values, and how yours compares with validation."""
    rows = []
    for key, title in FIGURE_TITLES.items():
        figure = report["figures"][key]
        rows.append(
            {
                "figure": title,
                "your pictures": figure["value"],
                "95% CI": None if figure["ci95"] is None else f"{figure['ci95'][0]:.3f}-{figure['ci95'][1]:.3f}",
                "model, validation": report["model_figures"]["val"].get(key),
                "model, test": report["model_figures"]["test"].get(key),
                "against validation": report["against_validation"].get(key, ""),
            }
        )
    return rows


def conclusion(report: dict[str, Any]) -> tuple[str, str]:
    """(kind, sentence): 'lower' when some figure is below validation beyond chance,
    'uncertain' for fewer than 100 pictures, else 'consistent'."""
    lower = [FIGURE_TITLES[k] for k, v in report.get("against_validation", {}).items() if v == "lower"]
    if lower:
        return "lower", (
            f"Lower than on the model's validation split beyond chance: {', '.join(lower)}. Do not rely on the "
            "model's published figures for pictures like these."
        )
    if report["evaluated"] < 100:
        return "uncertain", (
            "No figure differs from validation beyond chance, but with fewer than 100 pictures the intervals are "
            "wide: a real gap of several points could hide in them."
        )
    return "consistent", "No figure is lower than on the model's validation split beyond chance."


def export_title(path: Path, manifest: dict[str, Any]) -> str:
    """ "model_int8.tflite (int8 tflite export of effnet_lite2)" """
    quantization = manifest.get("quantization", "none")
    kind = manifest["format"] if quantization == "none" else f"{quantization} {manifest['format']}"
    return f"{Path(path).name} ({kind} export of {manifest.get('source_model', 'an unknown model')})"


def comparison_note(report: dict[str, Any]) -> str:
    """What the model's columns are: its own pictures of your classes, weighted to your mix."""
    from .case_report import percent_pair

    pictures = report["model_pictures"]
    is_export, source = "export_source" in report, report.get("export_source")
    if is_export and source is None:
        return "The model's columns: not available: the model the export was made from is not at hand."
    note = (
        f"The model's columns: its validation ({pictures['val']}) and test ({pictures['test']}) pictures of your "
        "classes only, weighted to your case mix, so the comparison is like for like."
    )
    if source:
        note += (
            f" They are the Keras model the export was made from ({source}): the export's parity check (`export`) "
            "gives how far it is from it."
        )
    own, model = report["referral_threshold"], report["model_referral_threshold"]
    if source and own != model:
        # a float32 export's refitted threshold differs from the model's by 1e-6: not two
        # thresholds that read alike
        own_text, model_text = percent_pair(own, model, fewest=1)
        if own_text == model_text:
            note += (
                " Your pictures are referred at the export's own threshold, fitted on its validation probabilities: "
                f"the model's ({model_text}) to two decimals."
            )
        else:
            note += (
                f" Your pictures are referred at the export's own threshold ({own_text}, fitted on its "
                f"validation probabilities), the model's columns at the model's ({model_text})."
            )
    for split, title in (("val", "validation"), ("test", "test")):
        if report["model_missing_classes"][split]:
            note += f" Its {title} split has no {', '.join(report['model_missing_classes'][split])}."
    return note


def missed_malignant(table: pd.DataFrame) -> pd.DataFrame:
    """The evaluated malignant or pre-malignant lesions the model did not refer for
    their risk (the misses a referral tool must not hide), highest risk first."""
    from .classes import MALIGNANT_CLASSES

    evaluated = table[table["evaluated"].astype(bool)]
    referred = evaluated["high_malignant_risk"].astype(bool)
    missed = evaluated[evaluated["true_class"].isin(MALIGNANT_CLASSES) & ~referred]
    columns = ["file", "true_class", "predicted_class", "malignant_probability", "advice"]
    return missed.sort_values("malignant_probability", ascending=False)[columns].reset_index(drop=True)


def format_report(report: dict[str, Any]) -> str:
    """The printed summary of ``python -m skin_model validate``."""
    lines = [
        f"Model: {report['model']}.",
        f"{report['pictures']} pictures: {report['evaluated']} evaluated, {report['unreadable']} unreadable, "
        f"{report['seen_in_training']} left out as pictures the model trained on.",
    ]
    if not report["evaluated"]:
        return "\n".join(lines)
    counts = ", ".join(f"{name} {n}" for name, n in report["per_class_counts"].items())
    lines.append(f"Diagnoses: {counts}.")
    lines += ["", f"{'':22}{'your pictures (95 % CI)':>28}{'model, validation':>20}{'model, test':>14}"]
    for row in figure_rows(report):
        value = row["your pictures"]
        yours = "n/a" if value is None else f"{value:.3f}" + (f" ({row['95% CI']})" if row["95% CI"] else "")
        refs = [row[c] for c in ("model, validation", "model, test")]
        ref_text = [f"{r:.3f}" if r is not None else "-" for r in refs]
        verdict = row["against validation"]
        flag = f"  {verdict} than validation" if verdict in ("lower", "higher") else ""
        lines.append(f"{row['figure']:22}{yours:>28}{ref_text[0]:>20}{ref_text[1]:>14}{flag}")
    lines.append(comparison_note(report))
    lines.append("")
    if report.get("prediction_sets"):
        sets = report["prediction_sets"]
        lines.append(
            f"Differential at {sets['coverage_target']:.0%} coverage held the true diagnosis for "
            f"{sets['coverage']:.1%} of your pictures ({sets['mean_size']:.2f} classes on average)."
        )
    missed = report.get("missed_malignant", [])
    lines.append(
        # two decimals: the risks below print with one, and 27.9 % must read as below 27.94 %
        "Malignant or pre-malignant lesions not referred for their risk (below the referral threshold of "
        f"{report['referral_threshold']:.2%}): {len(missed)}."
    )
    lines += [
        # one decimal of a percent: a risk just under a 27.94 % threshold must not read as "0.28"
        f"  {m['file']}: {m['true_class']}, answered {m['predicted_class']}, malignant risk "
        f"{m['malignant_probability']:.1%}" + (f" ({m['advice']})" if m["advice"] else "")
        for m in missed
    ]
    lines.append(conclusion(report)[1])
    return "\n".join(lines)


@dataclass(frozen=True)
class SourceModel:
    """What ``validate`` needs of the model an export was made from: its manifest (data
    fingerprint) and stored evaluation (the model's columns); its weights are not loaded."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.name)

    def evaluation(self) -> dict[str, Any] | None:
        from .artifact import read_evaluation

        return read_evaluation(self.path)


def export_source(export_manifest: dict[str, Any], models_dir: Path | None = None) -> SourceModel | None:
    """The model folder an export was made from (same name and manifest checksum, the
    manifest unedited), among the trained models, or None when it is not at hand."""
    from .artifact import ArtifactError, list_model_dirs, manifest_digest, read_manifest
    from .paths import TRAINED_MODELS_DIR

    name, checksum = export_manifest.get("source_model"), export_manifest.get("source_manifest_sha256")
    for folder in list_model_dirs(models_dir or TRAINED_MODELS_DIR):
        try:
            manifest = read_manifest(folder)
        except ArtifactError:
            continue
        if manifest.get("name") == name and manifest.get("manifest_sha256") == checksum == manifest_digest(manifest):
            return SourceModel(folder, manifest)
    return None


def _training_check(fingerprint_ok: bool, artifact) -> str:
    if fingerprint_ok:
        return "made against the audit of the model's data"
    if artifact is None:
        return "not made: the model this export was made from is not at hand"
    return "not made: the audit of the data this model was trained on is not at hand"


def _measured_figures(table: pd.DataFrame, y: np.ndarray, probs: np.ndarray, threshold: float, sets, bootstrap: int):
    """The figures of the evaluated pictures: headline figures with intervals, accuracy,
    confusion matrix, missed malignant pictures, per-class recall, prediction sets."""
    from sklearn.metrics import confusion_matrix

    from .conformal import set_report

    out: dict[str, Any] = {"figures": headline_figures(y, probs, threshold, bootstrap)}
    out["accuracy"] = round(float((probs.argmax(1) == y).mean()), 4)
    out["confusion_matrix"] = confusion_matrix(y, probs.argmax(1), labels=list(range(len(CLASS_NAMES)))).tolist()
    out["missed_malignant"] = missed_malignant(table).to_dict("records")
    out["per_class_recall"] = {
        name: round(float((probs[y == k].argmax(1) == k).mean()), 4)
        for k, name in enumerate(CLASS_NAMES)
        if (y == k).any()
    }
    if sets is not None:
        measured = set_report(probs, y, sets.thresholds)
        out["prediction_sets"] = {
            "coverage_target": sets.coverage,
            "coverage": measured["coverage"],
            "mean_size": measured["mean_size"],
        }
    return out


def validate_folder(
    rows: pd.DataFrame,
    artifact,
    audit_table: pd.DataFrame | None,
    progress: bool = True,
    bootstrap: int = BOOTSTRAP,
    bundle: ModelBundle | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run a model on labelled pictures (:func:`read_labelled_folder`,
    :func:`read_labelled_csv` or :func:`read_labelled_zip`) as ``predict`` does, and
    measure it on the readable pictures it did not train on. ``audit_table``: the
    audit's manifest of the model's data, or None when it is not at hand (the report
    then says the training check could not be made). Returns (report, per-picture
    table). ``bundle``: the loaded model that answers (the app's, or an export with its
    own referral threshold and prediction sets, the one a clinic would deploy); None
    loads ``artifact``'s. For an export, ``artifact`` is the model it was made from
    (:func:`export_source`), whose stored figures fill the model's columns and whose data
    the training check uses, or None when it is not at hand. ``on_progress(done,
    total)`` follows the model's batches."""
    from .file_predictions import predict_files, predictions_table
    from .manifest import table_fingerprint

    rows = rows.reset_index(drop=True)
    bundle = bundle or load_bundle(artifact.path)
    threshold = bundle.malignant_threshold
    results = predict_files(
        bundle.predictor,
        list(zip(rows["source"], rows["name"], strict=True)),
        progress=progress,
        reliability=bundle.reliability,
        cases=bundle.cases,
        malignant_threshold=threshold,
        prediction_sets=bundle.prediction_sets,
        on_progress=on_progress,
        fingerprint=True,
    )
    files = pd.DataFrame(
        {"name": rows["name"], "sha256": [r.sha256 for r in results], "phash": [r.phash for r in results]}
    )
    source_manifest = artifact.manifest if artifact is not None else {}
    fingerprint_ok = audit_table is not None and table_fingerprint(audit_table) == source_manifest.get(
        "data_fingerprint"
    )
    seen = seen_in_training(files, audit_table) if fingerprint_ok else pd.Series("", index=rows.index, dtype=object)
    table = predictions_table(results)
    table.insert(1, "true_class", rows["label"])
    table.insert(2, "seen_in_training", seen)
    ok = (table["status"] == "ok").to_numpy()
    used = ok & (seen == "").to_numpy()
    table.insert(3, "evaluated", used)
    table["correct"] = np.where(ok, table["predicted_class"] == table["true_class"], None)
    y = np.array([CLASS_NAMES.index(label) for label in rows["label"][used]], dtype=int)
    probs = table.loc[used, list(CLASS_NAMES)].to_numpy(float)
    evaluation = (artifact.evaluation() if artifact is not None else None) or {}
    report: dict[str, Any] = {
        "model": export_title(bundle.source, bundle.manifest) if bundle.is_export else artifact.name,
        "pictures": len(rows),
        "unreadable": int((~ok).sum()),
        "seen_in_training": int((seen != "").sum()),
        "training_check": _training_check(fingerprint_ok, artifact),
        "evaluated": int(used.sum()),
        "per_class_counts": {name: int((y == k).sum()) for k, name in enumerate(CLASS_NAMES) if (y == k).any()},
    }
    if bundle.is_export:
        report["export_source"] = artifact.name if artifact is not None else None  # whose figures the columns are
    # the model's columns are the source model's own figures, at its own threshold (an
    # export's threshold is refitted on the export's probabilities, see skin_model.export)
    model_threshold = float(source_manifest.get("malignant_threshold", threshold))
    report["referral_threshold"], report["model_referral_threshold"] = threshold, model_threshold
    counts = report["per_class_counts"]
    matched = {split: matched_model_figures(evaluation, split, counts, model_threshold) for split in SPLITS}
    report["model_figures"] = {split: matched[split]["figures"] for split in SPLITS}
    report["model_pictures"] = {split: matched[split]["pictures"] for split in SPLITS}
    report["model_missing_classes"] = {split: matched[split]["missing"] for split in SPLITS}
    if used.any():
        report |= _measured_figures(table, y, probs, threshold, bundle.prediction_sets, bootstrap)
        report["against_validation"] = compare(report["figures"], report["model_figures"]["val"])
    return report, table
