"""How the model does for different patients: by sex, age, body site and how the
diagnosis was confirmed, on held-out pictures whose patients HAM10000's metadata
describes.

A dermatologist asks "does it work for my patient?", and pooled figures cannot answer:
a model can be good on the trunk and poor on the face, or right about lesions a
pathologist confirmed and less so about those diagnosed by consensus. The metadata
describes only part of the data (HAM10000 has no squamous cell carcinoma or seborrheic
keratosis class, and the other collections carry no patient data), so every report says
which pictures and classes it rests on, and groups too small to read are marked, with
95 % Wilson intervals on the referral rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .classes import CLASS_NAMES, MALIGNANT_MASK, malignant_score
from .evaluation import by_collection
from .model_files import SUBGROUPS_FILE  # noqa: F401  (the registry's name)

# Age bands wide enough to hold a few dozen held-out lesions each.
AGE_BANDS = ((0, 45, "under 45"), (45, 60, "45-59"), (60, 75, "60-74"), (75, 200, "75 and over"))
# HAM10000's body sites, grouped as a clinician would.
BODY_SITES = {
    "face": "head and neck",
    "scalp": "head and neck",
    "ear": "head and neck",
    "neck": "head and neck",
    "back": "trunk",
    "chest": "trunk",
    "abdomen": "trunk",
    "trunk": "trunk",
    "upper extremity": "arms",
    "lower extremity": "legs",
    "hand": "hands and feet",
    "foot": "hands and feet",
    "acral": "hands and feet",
    "genital": "genital",
}
CONFIRMATION = {
    "histo": "histopathology",
    "follow_up": "follow-up",
    "consensus": "expert consensus",
    "confocal": "confocal microscopy",
}
ATTRIBUTES = {"sex": "sex", "age": "age", "site": "body site", "confirmation": "diagnosis confirmed by"}
# Below this many pictures a group's figures are shown but marked as too few to read.
MIN_IMAGES = 20


def age_band(age: float | None) -> str | None:
    """The band of an age in years (None when unrecorded)."""
    if age is None or pd.isna(age):
        return None
    return next(label for low, high, label in AGE_BANDS if low <= age < high)


def read_patient_metadata(path: str | Path) -> pd.DataFrame:
    """HAM10000's metadata as one row per ISIC image id: ``sex``, ``age``, ``site`` and
    ``confirmation`` in the groups above (None where unrecorded)."""
    table = pd.read_csv(path)
    columns = {
        "sex": table["sex"].where(table["sex"].isin(["female", "male"])),
        "age": pd.Series([age_band(a) for a in table["age"]]),
        "site": table["localization"].map(BODY_SITES),
        "confirmation": table["dx_type"].map(CONFIRMATION),
    }
    return pd.DataFrame(
        {name: [v if isinstance(v, str) else None for v in column] for name, column in columns.items()},
        index=table["image_id"].to_numpy(),
        dtype=object,
    )


def patient_groups(isic_ids: list[str | None], metadata: pd.DataFrame) -> pd.DataFrame:
    """The metadata row of each picture, in order; all None for pictures it does not describe."""
    known = [i if i in metadata.index else None for i in isic_ids]
    rows = metadata.reindex([k if k is not None else "" for k in known]).astype(object)
    rows = rows.where(rows.notna(), None)
    rows.index = range(len(isic_ids))
    rows["described"] = [k is not None for k in known]
    return rows


def wilson_interval(successes: int, trials: int) -> list[float] | None:
    """95 % Wilson score interval of a proportion (None without trials)."""
    if trials == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def subgroup_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    groups: pd.DataFrame,
    malignant_threshold: float,
    class_names: tuple[str, ...] = CLASS_NAMES,
    min_images: int = MIN_IMAGES,
) -> dict[str, Any]:
    """Per attribute and group, on the described pictures only: the metrics of
    :func:`skin_model.evaluation.by_collection` (balanced accuracy over the classes the
    group holds, malignant AUC, referral sensitivity and specificity at the shipped
    threshold) plus counts, Wilson intervals of the two referral rates and a ``small``
    mark below ``min_images`` pictures."""
    y_true = np.asarray(y_true)
    described = groups["described"].to_numpy(bool)
    flagged = malignant_score(probs) >= malignant_threshold
    report: dict[str, Any] = {
        "images": len(y_true),
        "described": int(described.sum()),
        "classes_described": sorted({class_names[k] for k in y_true[described]}),
        "classes_not_described": sorted({class_names[k] for k in y_true} - {class_names[k] for k in y_true[described]}),
        "attributes": {},
    }
    for attribute in ATTRIBUTES:
        values = groups[attribute].to_numpy(object)
        inside = described & np.array([v is not None for v in values])
        if not inside.any():
            continue
        metrics = by_collection(y_true[inside], probs[inside], values[inside], malignant_threshold, class_names)
        for name, row in metrics.items():
            member = inside & (values == name)
            malignant = MALIGNANT_MASK[y_true[member]]
            caught = int(flagged[member][malignant].sum())
            cleared = int((~flagged[member][~malignant]).sum())
            row |= {
                "malignant_images": int(malignant.sum()),
                "benign_images": int((~malignant).sum()),
                "malignant_sensitivity_ci95": wilson_interval(caught, int(malignant.sum())),
                "malignant_specificity_ci95": wilson_interval(cleared, int((~malignant).sum())),
                "small": row["n_images"] < min_images,
            }
        by_size = sorted(metrics, key=lambda g: -metrics[g]["n_images"])
        order = [label for *_, label in AGE_BANDS] if attribute == "age" else by_size
        report["attributes"][attribute] = {name: metrics[name] for name in order if name in metrics}
    return report


def validation_groups(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The validation split's part of a ``subgroups.json`` report (None without one)."""
    return ((report or {}).get("splits") or {}).get("val")


def describe_group(split_report: dict[str, Any], attribute: str, group: str) -> str | None:
    """One line on how the model did for one patient group of a split's report (None if
    the report has no such group), for a clinician who gave that detail of the patient."""
    g = split_report.get("attributes", {}).get(attribute, {}).get(group)
    if g is None:
        return None

    def rate(value: float | None, ci: list[float] | None, what: str) -> str | None:
        return None if value is None else f"{what} {value:.0%} (95 % CI {ci[0]:.0%}-{ci[1]:.0%})"

    parts = [
        f"class named with balanced accuracy {g['balanced_accuracy']:.2f}",
        rate(g["malignant_sensitivity"], g["malignant_sensitivity_ci95"], "malignant referred"),
        rate(g["malignant_specificity"], g["malignant_specificity_ci95"], "benign not referred"),
    ]
    few = f"; only {g['n_images']} lesions, read with care" if g["small"] else ""
    return (
        f"{ATTRIBUTES[attribute]}: {group} ({g['n_images']} lesions, {g['malignant_images']} malignant): "
        + ", ".join(p for p in parts if p)
        + few
    )


def patient_context(report: dict[str, Any] | None, chosen: dict[str, str]) -> tuple[str, list[str]] | None:
    """How the model did on validation lesions of patients like the one described by
    ``chosen`` (attribute -> group): the figures' scope in words and one line per detail
    given, or None when there is nothing to quote."""
    val = validation_groups(report)
    lines = [describe_group(val, attribute, group) for attribute, group in chosen.items()] if val else []
    lines = [line for line in lines if line]
    if not lines:
        return None
    scope = (
        f"validation lesions that HAM10000's patient records describe: {', '.join(val['classes_described'])}; "
        f"there are no such figures for {', '.join(val['classes_not_described'])}"
    )
    return scope, lines
