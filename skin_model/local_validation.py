"""Check the model on your own labelled pictures before trusting it.

A clinic's dermatoscope, patients and lighting are not the ones the model was
validated on, and its published figures need not hold there. ``python -m skin_model
validate FOLDER`` reads pictures filed by diagnosis (``FOLDER/<class>/*``; class
folders named as the model's classes, or by their ISIC / HAM10000 codes such as
``MEL`` or ``bkl``), runs the shipped model on them exactly as ``predict`` does, and
sets the figures beside the model's own validation and test figures, with 95 %
bootstrap intervals so a small folder does not pass for a verdict.

Pictures the model trained on would flatter it, so each one is checked against the
audit's manifest of the model's data (same bytes, same ISIC id in the file name, or a
perceptual hash within :data:`COPY_MAX_BITS` bits of a training picture) and left out
of the figures, and named in the report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .classes import CLASS_NAMES, HAM10000_CODES, ISIC2019_CODES, malignant_score
from .sources import IMAGE_SUFFIXES, isic_id_of

# A perceptual hash this close to a training picture's marks a copy: on the audit's
# 4,080 pictures, 31 of some 8 million pairs from different duplicate groups came this
# close, so the rule leaves out a handful of look-alikes rather than keep a copy.
COPY_MAX_BITS = 4
BOOTSTRAP = 1000
READ_SUFFIXES = IMAGE_SUFFIXES | {".heic", ".heif", ".avif"}


def _normalised(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


FOLDER_NAMES: dict[str, str] = {
    **{_normalised(name): name for name in CLASS_NAMES},
    **{_normalised(code): name for code, name in ISIC2019_CODES.items()},
    **{_normalised(code): name for code, name in HAM10000_CODES.items()},
    "akiec": "actinic keratosis",
    "sk": "seborrheic keratosis",
    "nevi": "nevus",
    "naevus": "nevus",
    "melanocytic nevus": "nevus",
    "vascular lesions": "vascular lesion",
}


def class_of_folder(name: str) -> str | None:
    """The class a folder name stands for (case, spaces, ``_`` and ``-`` ignored), or None."""
    return FOLDER_NAMES.get(_normalised(name))


def _unknown_folders_error(unknown: list[str]) -> ValueError:
    return ValueError(
        f"folders that name no class: {', '.join(unknown)}; name each folder after one of "
        f"{', '.join(CLASS_NAMES)} (or its ISIC code, e.g. MEL, NV, BKL)"
    )


def read_labelled_folder(root: str | Path) -> pd.DataFrame:
    """``source`` (the file's path), ``name``, ``label`` for every picture in
    ``root/<class folder>/`` (any depth below it). Raises ValueError naming the folders
    that are no class (a typo must not drop a diagnosis silently) or when no picture
    is found."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if class_of_folder(p.name) is None]
    if unknown:
        raise _unknown_folders_error(unknown)
    rows = []
    for folder in folders:
        label = class_of_folder(folder.name)
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in READ_SUFFIXES):
            name = file.relative_to(root).as_posix()
            if not any(part.startswith(".") for part in name.split("/")):
                rows.append({"source": file, "name": name, "label": label})
    if not rows:
        raise ValueError(f"no pictures found in class folders under {root}")
    return pd.DataFrame(rows, columns=["source", "name", "label"])


def read_labelled_zip(members: list[tuple[str, bytes]]) -> pd.DataFrame:
    """The same table for the files of a zip archive (:func:`skin_model.images.zip_members`),
    ``source`` holding each file's bytes: a file's class is the first folder on its
    path that names one, so ``MEL/a.jpg`` and ``my clinic/MEL/a.jpg`` both read as
    melanoma. Every file must lie in a class folder (else ValueError naming the folders)."""
    rows, unknown = [], set()
    for name, data in members:
        *folders, _ = name.split("/")
        label = next((class_of_folder(f) for f in folders if class_of_folder(f)), None)
        if label is None:
            unknown.add("/".join(folders) or "(top level)")
        else:
            rows.append({"source": data, "name": name, "label": label})
    if unknown:
        raise _unknown_folders_error(sorted(unknown))
    if not rows:
        raise ValueError("no pictures found in class folders in the archive")
    return pd.DataFrame(rows, columns=["source", "name", "label"])


def picture_hashes(source: str | Path | bytes) -> tuple[str, str | None]:
    """(SHA-256 of the bytes, perceptual hash or None when the picture cannot be read)."""
    from .hashing import content_hash, perceptual_hash
    from .images import ImageLoadError, load_image

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        return content_hash(data), perceptual_hash(load_image(data).image)
    except ImageLoadError:
        return content_hash(data), None


def _popcount(x: np.ndarray) -> np.ndarray:
    count = np.zeros(x.shape, np.uint8)
    for bit in range(64):
        count += ((x >> np.uint64(bit)) & np.uint64(1)).astype(np.uint8)
    return count


def seen_in_training(files: pd.DataFrame, audit_table: pd.DataFrame) -> pd.Series:
    """Why each picture counts as one the model trained on ('' when it does not):
    ``files`` has ``name``, ``sha256`` and ``phash`` (None if unreadable);
    ``audit_table`` is the audit's manifest of the model's data (its ``train`` rows)."""
    train = audit_table[audit_table["split"] == "train"]
    shas = set(train["sha256"])
    ids = set(train["isic_id"].dropna())
    hashes = np.array([int(h, 16) for h in train["phash"].dropna()], dtype=np.uint64)
    reasons = []
    for name, sha, phash in zip(files["name"], files["sha256"], files["phash"], strict=True):
        isic_id = isic_id_of(Path(name).name)
        if sha in shas:
            reasons.append("identical to a training picture")
        elif isic_id is not None and isic_id in ids:
            reasons.append(f"{isic_id} is a training picture")
        elif (
            isinstance(phash, str)
            and len(hashes)
            and _popcount(hashes ^ np.uint64(int(phash, 16))).min() <= COPY_MAX_BITS
        ):
            reasons.append("a near-identical copy of a training picture")
        else:
            reasons.append("")
    return pd.Series(reasons, index=files.index, dtype=object)


def _interval(values: list[float]) -> list[float] | None:
    return np.percentile(values, [2.5, 97.5]).round(4).tolist() if values else None


def headline_figures(
    y: np.ndarray, probs: np.ndarray, threshold: float, bootstrap: int = BOOTSTRAP, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Balanced accuracy, macro AUC, malignant AUC and the referral's sensitivity and
    specificity at ``threshold``, each with a 95 % percentile bootstrap interval
    (None where the pictures cannot give the figure, e.g. no benign lesion)."""
    from sklearn import metrics

    from .classes import MALIGNANT_MASK
    from .evaluation import _macro_auc

    y = np.asarray(y)
    malignant = MALIGNANT_MASK[y]
    score = malignant_score(probs)
    referred = score >= threshold

    def figures(idx: np.ndarray) -> dict[str, float | None]:
        yy, pp, mm, rr = y[idx], probs[idx], malignant[idx], referred[idx]
        both = 0 < mm.sum() < len(mm)
        return {
            "balanced_accuracy": float(metrics.balanced_accuracy_score(yy, pp.argmax(1))),
            "macro_auc": _macro_auc(yy, pp),
            "malignant_auc": float(metrics.roc_auc_score(mm, score[idx])) if both else None,
            "referral_sensitivity": float(rr[mm].mean()) if mm.any() else None,
            "referral_specificity": float((~rr[~mm]).mean()) if (~mm).any() else None,
        }

    import warnings

    with warnings.catch_warnings():  # a resample may lack a class the model answers
        warnings.simplefilter("ignore", UserWarning)
        point = figures(np.arange(len(y)))
        rng = np.random.default_rng(seed)
        draws = [figures(rng.integers(0, len(y), len(y))) for _ in range(bootstrap)]
    return {
        key: {
            "value": None if value is None else round(value, 4),
            "ci95": None if value is None else _interval([d[key] for d in draws if d[key] is not None]),
        }
        for key, value in point.items()
    }


def model_figures(evaluation: dict[str, Any], split: str) -> dict[str, float | None]:
    """The same headline figures from a model's ``evaluation.json`` for ``split``."""
    ev = evaluation.get(split) or {}
    mal = ev.get("malignant") or {}
    return {
        "balanced_accuracy": ev.get("balanced_accuracy"),
        "macro_auc": ev.get("macro_auc"),
        "malignant_auc": mal.get("roc_auc"),
        "referral_sensitivity": mal.get("sensitivity"),
        "referral_specificity": mal.get("specificity"),
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


def format_report(report: dict[str, Any]) -> str:
    """The printed summary of :func:`skin_model.cli` ``validate``'s report."""
    lines = [
        f"{report['pictures']} pictures: {report['evaluated']} evaluated, {report['unreadable']} unreadable, "
        f"{report['seen_in_training']} left out as pictures the model trained on.",
    ]
    if not report["evaluated"]:
        return "\n".join(lines)
    counts = ", ".join(f"{name} {n}" for name, n in report["per_class_counts"].items())
    lines.append(f"Diagnoses: {counts}.")
    header = f"{'':22}{'your pictures (95 % CI)':>28}{'model, validation':>20}{'model, test':>14}"
    lines += ["", header]
    for key, title in FIGURE_TITLES.items():
        figure = report["figures"][key]
        if figure["value"] is None:
            yours = "n/a"
        else:
            ci = figure["ci95"]
            yours = f"{figure['value']:.3f} ({ci[0]:.3f}-{ci[1]:.3f})" if ci else f"{figure['value']:.3f}"
        refs = [report["model_figures"][s].get(key) for s in ("val", "test")]
        ref_text = [f"{r:.3f}" if r is not None else "-" for r in refs]
        verdict = report["against_validation"].get(key)
        flag = {"lower": "  lower than validation", "higher": "  higher than validation"}.get(verdict, "")
        lines.append(f"{title:22}{yours:>28}{ref_text[0]:>20}{ref_text[1]:>14}{flag}")
    lines.append("")
    if report.get("prediction_sets"):
        sets = report["prediction_sets"]
        lines.append(
            f"Differential at {sets['coverage_target']:.0%} coverage held the true diagnosis for "
            f"{sets['coverage']:.1%} of your pictures ({sets['mean_size']:.2f} classes on average)."
        )
    lower = [FIGURE_TITLES[k] for k, v in report["against_validation"].items() if v == "lower"]
    if lower:
        lines.append(
            f"Lower than on the model's validation split beyond chance: {', '.join(lower)}. Do not rely on the "
            "model's published figures for pictures like these."
        )
    elif report["evaluated"] < 100:
        lines.append(
            "No figure differs from validation beyond chance, but with fewer than 100 pictures the intervals are "
            "wide: a real gap of several points could hide in them."
        )
    else:
        lines.append("No figure is lower than on the model's validation split beyond chance.")
    return "\n".join(lines)


def validate_folder(
    rows: pd.DataFrame,
    artifact,
    audit_table: pd.DataFrame | None,
    progress: bool = True,
    bootstrap: int = BOOTSTRAP,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run a model folder's artifact on labelled pictures (:func:`read_labelled_folder`
    or :func:`read_labelled_zip`) as ``predict`` does, and measure it on the readable pictures it did not train on.
    ``audit_table``: the audit's manifest of the model's data, or None when it is not
    at hand (the report then says the training check could not be made). Returns
    (report, per-picture table)."""
    from .cases import CaseIndex
    from .conformal import PredictionSets, set_report
    from .inference import Predictor, predict_files, predictions_table
    from .manifest import table_fingerprint
    from .reliability import ReliabilityCheck

    rows = rows.reset_index(drop=True)
    hashes = [picture_hashes(source) for source in rows["source"]]
    files = pd.DataFrame({"name": rows["name"], "sha256": [h[0] for h in hashes], "phash": [h[1] for h in hashes]})
    fingerprint_ok = audit_table is not None and table_fingerprint(audit_table) == artifact.manifest.get(
        "data_fingerprint"
    )
    seen = seen_in_training(files, audit_table) if fingerprint_ok else pd.Series("", index=rows.index, dtype=object)
    sets = PredictionSets.from_manifest(artifact.manifest)
    results = predict_files(
        Predictor.from_artifact(artifact),
        list(zip(rows["source"], rows["name"], strict=True)),
        progress=progress,
        reliability=ReliabilityCheck.from_artifact(artifact),
        cases=CaseIndex.from_artifact(artifact),
        malignant_threshold=artifact.malignant_threshold,
        prediction_sets=sets,
    )
    table = predictions_table(results)
    table.insert(1, "true_class", rows["label"])
    table.insert(2, "seen_in_training", seen)
    ok = (table["status"] == "ok").to_numpy()
    used = ok & (seen == "").to_numpy()
    table.insert(3, "evaluated", used)
    table["correct"] = np.where(ok, table["predicted_class"] == table["true_class"], None)
    y = np.array([CLASS_NAMES.index(label) for label in rows["label"][used]], dtype=int)
    probs = table.loc[used, list(CLASS_NAMES)].to_numpy(float)
    evaluation = artifact.evaluation() or {}
    report: dict[str, Any] = {
        "model": artifact.name,
        "pictures": len(rows),
        "unreadable": int((~ok).sum()),
        "seen_in_training": int((seen != "").sum()),
        "training_check": "made against the audit of the model's data"
        if fingerprint_ok
        else "not made: the audit of the data this model was trained on is not at hand",
        "evaluated": int(used.sum()),
        "per_class_counts": {name: int((y == k).sum()) for k, name in enumerate(CLASS_NAMES) if (y == k).any()},
        "model_figures": {split: model_figures(evaluation, split) for split in ("val", "test")},
    }
    if used.any():
        report["figures"] = headline_figures(y, probs, artifact.malignant_threshold, bootstrap)
        report["against_validation"] = compare(report["figures"], report["model_figures"]["val"])
        report["accuracy"] = round(float((probs.argmax(1) == y).mean()), 4)
        report["per_class_recall"] = {
            name: round(float((probs[y == k].argmax(1) == k).mean()), 4)
            for k, name in enumerate(CLASS_NAMES)
            if (y == k).any()
        }
        if sets is not None:
            measured = set_report(probs, y, sets.thresholds)
            report["prediction_sets"] = {
                "coverage_target": sets.coverage,
                "coverage": measured["coverage"],
                "mean_size": measured["mean_size"],
            }
    return report, table
