"""Figures by patient group: metadata grouping, alignment with the pictures, and the
per-group metrics and Wilson intervals checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skin_model.classes import CLASS_NAMES
from skin_model.subgroups import (
    age_band,
    describe_group,
    patient_groups,
    read_patient_metadata,
    subgroup_report,
    wilson_interval,
)

BCC, NEVUS, MEL, DF = (CLASS_NAMES.index(c) for c in ("basal cell carcinoma", "nevus", "melanoma", "dermatofibroma"))


def _metadata_csv(tmp_path: Path) -> Path:
    path = tmp_path / "HAM10000_metadata.csv"
    pd.DataFrame(
        {
            "lesion_id": ["HAM_1", "HAM_1", "HAM_2", "HAM_3", "HAM_4"],
            "image_id": ["ISIC_1", "ISIC_2", "ISIC_3", "ISIC_4", "ISIC_5"],
            "dx": ["bcc", "bcc", "nv", "df", "mel"],
            "dx_type": ["histo", "histo", "follow_up", "consensus", "histo"],
            "age": [44.0, 44.0, 45.0, None, 80.0],
            "sex": ["female", "female", "male", "unknown", "male"],
            "localization": ["face", "face", "lower extremity", "unknown", "acral"],
        }
    ).to_csv(path, index=False)
    return path


def test_ages_fall_in_their_bands() -> None:
    assert [age_band(a) for a in (0, 44.9, 45, 59, 60, 74, 75, 95)] == [
        "under 45",
        "under 45",
        "45-59",
        "45-59",
        "60-74",
        "60-74",
        "75 and over",
        "75 and over",
    ]
    assert age_band(None) is None and age_band(float("nan")) is None


def test_metadata_is_grouped_and_unrecorded_values_stay_empty(tmp_path: Path) -> None:
    table = read_patient_metadata(_metadata_csv(tmp_path))
    assert table.loc["ISIC_1"].tolist() == ["female", "under 45", "head and neck", "histopathology"]
    assert table.loc["ISIC_3"].tolist() == ["male", "45-59", "legs", "follow-up"]
    assert table.loc["ISIC_4"].tolist() == [None, None, None, "expert consensus"]  # sex, age, site unrecorded
    assert table.loc["ISIC_5", "site"] == "hands and feet"


def test_pictures_get_their_patients_row_in_order(tmp_path: Path) -> None:
    table = read_patient_metadata(_metadata_csv(tmp_path))
    groups = patient_groups(["ISIC_3", None, "ISIC_9", "ISIC_1"], table)
    assert groups["described"].tolist() == [True, False, False, True]
    assert groups["sex"].tolist() == ["male", None, None, "female"]
    assert groups["site"].tolist() == ["legs", None, None, "head and neck"]


def test_wilson_interval_by_hand() -> None:
    """(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) with z = 1.96, for 9 of 10."""
    z, k, n = 1.959964, 9, 10
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    expected = [(centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)]  # 0.5958, 0.9821
    assert wilson_interval(k, n) == pytest.approx(expected, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_per_group_figures_by_hand() -> None:
    """Six described pictures (four women, two men) and one undescribed. Threshold 0.5
    on the malignant risk: the women's two carcinomas are referred and one of their two
    benign lesions is too; the men's melanoma is missed."""
    rows = [  # (true class, {class: probability}) -> answer, malignant risk
        (BCC, {BCC: 0.9, DF: 0.1}),  # BCC, 0.9
        (BCC, {BCC: 0.3, MEL: 0.3, NEVUS: 0.4}),  # nevus, 0.6
        (NEVUS, {NEVUS: 0.4, BCC: 0.3, MEL: 0.3}),  # nevus, 0.6
        (DF, {DF: 0.9, BCC: 0.1}),  # DF, 0.1
        (MEL, {MEL: 0.3, NEVUS: 0.7}),  # nevus, 0.3
        (NEVUS, {NEVUS: 0.8, BCC: 0.2}),  # nevus, 0.2
        (MEL, {MEL: 0.9, NEVUS: 0.1}),  # undescribed
    ]
    y = np.array([label for label, _ in rows])
    probs = np.zeros((len(rows), len(CLASS_NAMES)))
    for i, (_, p) in enumerate(rows):
        for k, v in p.items():
            probs[i, k] = v
    groups = pd.DataFrame(
        {
            "sex": ["female", "female", "female", "female", "male", "male", None],
            "age": ["60-74"] * 6 + [None],
            "site": [None] * 7,
            "confirmation": [None] * 7,
            "described": [True] * 6 + [False],
        }
    )
    report = subgroup_report(y, probs, groups, 0.5, min_images=3)
    assert report["images"] == 7 and report["described"] == 6
    assert report["classes_not_described"] == []  # the undescribed melanoma has a described twin
    assert "site" not in report["attributes"]  # no picture records it

    women, men = report["attributes"]["sex"]["female"], report["attributes"]["sex"]["male"]
    assert (women["n_images"], women["malignant_images"], women["benign_images"]) == (4, 2, 2)
    assert women["malignant_sensitivity"] == 1.0 and women["malignant_specificity"] == 0.5
    assert women["malignant_sensitivity_ci95"] == wilson_interval(2, 2)
    assert women["malignant_specificity_ci95"] == wilson_interval(1, 2)
    # answers BCC, nevus (wrong), nevus, DF: recall BCC 1/2, nevus 1/1, DF 1/1
    assert women["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-4)
    # malignant risks 0.9, 0.6 against benign 0.6, 0.1: 3 pairs won and one tie of 4
    assert women["malignant_auc"] == pytest.approx(3.5 / 4) and not women["small"]
    assert men["malignant_sensitivity"] == 0.0 and men["malignant_specificity"] == 1.0 and men["small"]
    assert men["balanced_accuracy"] == 0.5 and men["malignant_auc"] == 1.0  # 0.3 still ranks above 0.2
    assert list(report["attributes"]["age"]) == ["60-74"]

    low, high = wilson_interval(1, 2)
    assert describe_group(report, "sex", "female") == (
        "sex: female (4 lesions, 2 malignant): class named with balanced accuracy 0.83, malignant referred 100% "
        f"(95 % CI {wilson_interval(2, 2)[0]:.0%}-100%), benign not referred 50% (95 % CI {low:.0%}-{high:.0%})"
    )
    assert describe_group(report, "sex", "male").endswith("; only 2 lesions, read with care")
    assert describe_group(report, "site", "legs") is None
