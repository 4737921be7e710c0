"""Follow-up: the photo-to-photo spread of the malignant risk from same-lesion pairs, and
what is said about two pictures of one lesion, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skin_model.classes import CLASS_NAMES
from skin_model.follow_up import PhotoToPhoto, compare
from skin_model.inference import Diagnosis

C = len(CLASS_NAMES)
MEL, NEV, BCC = (CLASS_NAMES.index(n) for n in ("melanoma", "nevus", "basal cell carcinoma"))


def _probs(risk: float, top: int) -> np.ndarray:
    """A picture whose malignant risk is ``risk``, put on melanoma or nevus, with ``top`` most probable."""
    row = np.zeros(C)
    row[MEL], row[NEV] = risk, 1 - risk
    if top not in (MEL, NEV):  # move the risk to another malignant class
        row[top], row[MEL] = risk, 0.0
    return row


def _diagnosis(risk: float, top: int, threshold: float = 0.3, **extra) -> Diagnosis:
    return Diagnosis(_probs(risk, top), risk, threshold, **extra)


def test_spread_from_every_pair_of_photos_of_one_lesion() -> None:
    # lesion A: three photos (3 pairs), lesion B: two (1 pair), C and a picture without a lesion id: none
    lesions = ["A", "A", "A", "B", "B", "C", float("nan")]
    risks = [0.1, 0.3, 0.6, 0.8, 0.7, 0.5, 0.9]
    tops = [NEV, NEV, MEL, BCC, MEL, MEL, MEL]
    probs = np.array([_probs(r, t) for r, t in zip(risks, tops, strict=True)])
    y = np.array([NEV, NEV, NEV, BCC, BCC, MEL, MEL])
    spread = PhotoToPhoto.from_scores(lesions, y, probs)
    np.testing.assert_allclose(spread.risk_differences, [0.1, 0.2, 0.3, 0.5])  # |0.8-0.7|, |.1-.3|, |.3-.6|, |.1-.6|
    assert spread.pairs == 4 and spread.lesions == 2
    assert spread.same_top_class == 0.25  # only photos 1 and 2 of lesion A share their answer
    assert spread.classes == ("basal cell carcinoma", "nevus")
    assert spread.share_at_least(0.3) == 0.5 and spread.share_at_least(0.0) == 1.0
    assert spread.share_at_least(0.51) == 0.0


def test_spread_from_the_shipped_model_and_audit() -> None:
    """All same-lesion pairs of the shipped validation split, counted independently."""
    import json

    from skin_model.artifact import default_model_dir
    from skin_model.paths import AUDIT_DIR

    table = pd.read_csv(AUDIT_DIR / "manifest.csv")
    model = default_model_dir()
    evaluation = json.loads((model / "evaluation.json").read_text())
    fingerprint = json.loads((model / "manifest.json").read_text())["data_fingerprint"]
    spread = PhotoToPhoto.from_stored(table, evaluation, fingerprint)
    sizes = table[table["split"] == "val"].groupby("lesion_id").size()
    assert spread.pairs == int((sizes * (sizes - 1) // 2).sum()) and spread.lesions == int((sizes >= 2).sum())
    assert (np.diff(spread.risk_differences) >= 0).all() and 0 <= spread.same_top_class <= 1
    assert PhotoToPhoto.from_stored(table, evaluation, "another fingerprint") is None


def test_what_is_said_about_two_pictures() -> None:
    spread = PhotoToPhoto(np.array([0.0, 0.05, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]), 0.8, 7, ("nevus",))
    # risk 10 % -> 65 %: across the threshold; 0.55 or more in 2 of 10 pairs: within the spread
    said = compare(_diagnosis(0.1, NEV), _diagnosis(0.65, MEL), spread)
    assert [f.kind for f in said] == ["high_risk", "note", "note", "note"]
    assert said[0].headline == "Malignant risk 10% → 65% (+55 percentage points)."
    assert "crossed the referral threshold (30%)" in said[0].detail
    assert said[1].headline.startswith("The change is within") and "in 20% of 10 validation pairs" in said[1].detail
    assert said[2].headline == "Most probable class: Mole (melanocytic nevus) → Melanoma."
    assert "same class in 80% of validation pairs" in said[2].detail
    assert said[3].headline == "The model reads each picture on its own."
    # 10 % -> 85 %: no pair moved 75 points: it stands out; both low-risk answers stay unreferred
    assert compare(_diagnosis(0.1, NEV), _diagnosis(0.85, NEV, threshold=0.9), spread)[1].kind == "caution"
    steady = compare(_diagnosis(0.1, NEV), _diagnosis(0.12, NEV), spread)
    assert steady[0].kind == "note" and len(steady) == 3  # no class change to report
    assert compare(_diagnosis(0.5, MEL), _diagnosis(0.6, MEL), None)[0].detail.startswith("Both pictures are above")


def test_differential_changes_and_pictures_that_are_not_lesions() -> None:
    earlier = _diagnosis(0.1, NEV, prediction_set=["nevus", "melanoma"])
    later = _diagnosis(0.2, NEV, prediction_set=["nevus", "seborrheic keratosis"])
    [differential] = [f for f in compare(earlier, later, None) if f.headline == "Differential:"]
    assert differential.detail == "now also Seborrheic keratosis; no longer Melanoma."
    odd = _diagnosis(0.2, NEV, out_of_distribution=True)
    [only] = compare(earlier, odd, None)
    assert only.kind == "not_a_lesion" and "the later picture does not look like" in only.detail
    assert compare(odd, odd, None)[0].detail == "neither picture looks like a dermoscopic lesion image."


def test_share_counts_pairs_at_exactly_the_change() -> None:
    spread = PhotoToPhoto(np.array([0.1, 0.2, 0.3]), 1.0, 3, ("nevus",))
    assert spread.share_at_least(0.2) == pytest.approx(2 / 3)
