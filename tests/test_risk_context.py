"""What a malignant risk has meant on held-out lesions: neighbours and bins by hand."""

from __future__ import annotations

import numpy as np
import pytest

from skin_model.case_report import risk_meaning_finding
from skin_model.classes import CLASS_NAMES
from skin_model.risk_context import RiskContext
from skin_model.subgroups import wilson_interval


def _context() -> RiskContext:
    risks = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.95, 1.0])
    return RiskContext("val", risks, np.array([False, False, True, True, True, True, True]))


def test_the_closest_lesions_and_how_many_were_malignant() -> None:
    around = _context().around(0.33, k=3)  # 0.3, 0.4, then 0.2 (0.13 away) before 0.5 (0.17)
    assert around["lesions"] == 3 and (around["risk_low"], around["risk_high"]) == (0.2, 0.4)
    assert around["malignant"] == 2 and around["share"] == pytest.approx(2 / 3)
    assert around["ci95"] == wilson_interval(2, 3)
    assert _context().around(0.5, k=100)["lesions"] == 7  # never more than there are


def test_risk_bins_count_every_lesion_once() -> None:
    rows = _context().table()
    assert [r["risk"] for r in rows] == ["10%-20%", "20%-30%", "30%-50%", "50%-70%", "90%-100%"]
    assert [r["lesions"] for r in rows] == [1, 1, 2, 1, 2]  # bins hold their lower edge; 1.0 the last one
    assert sum(r["lesions"] for r in _context().table((0.0, 0.5, 1.0))) == 7
    assert rows[2]["malignant"] == 1.0 and rows[0]["malignant"] == 0.0


def test_built_from_the_stored_scores_and_worded_for_people() -> None:
    probs = np.zeros((4, len(CLASS_NAMES)))
    probs[:, CLASS_NAMES.index("melanoma")] = [0.9, 0.1, 0.6, 0.2]
    probs[:, CLASS_NAMES.index("nevus")] = 1 - probs[:, CLASS_NAMES.index("melanoma")]
    y = [CLASS_NAMES.index(n) for n in ("melanoma", "nevus", "nevus", "basal cell carcinoma")]
    context = RiskContext.from_evaluation({"val": {"scores": {"probs": probs.tolist(), "y_true": y}}})
    np.testing.assert_allclose(context.risks, [0.9, 0.1, 0.6, 0.2])
    assert context.malignant.tolist() == [True, False, False, True] and context.prevalence == 0.5
    assert RiskContext.from_evaluation({"val": {}}) is None and RiskContext.from_evaluation(None) is None
    finding = risk_meaning_finding(0.15, context)
    assert finding.headline == "What a malignant risk of 15% has meant:"
    assert "of the 4 validation lesions whose risk was closest to it (10%-90%), 2 were malignant (50%" in finding.detail
    assert "Malignant lesions made up 50% of all 4 validation lesions" in finding.detail
