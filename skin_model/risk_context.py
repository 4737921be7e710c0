"""What a malignant risk has meant: how many held-out lesions with a similar risk were
malignant.

The malignant risk is a sum of class probabilities from a model trained with balanced
classes, not a calibrated probability: on validation, lesions given 30-50 % were
malignant 20 % of the time. So next to the number, the app says what it has meant on
validation: of the validation lesions whose risk lay closest to this picture's, how many
were malignant (with a 95 % Wilson interval), and how common malignancy was there, since
the same risk means less where malignant lesions are rarer than among these pictures.
Computed from the probabilities stored in ``evaluation.json``: no model run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .classes import MALIGNANT_MASK, malignant_score
from .evaluation import stored_scores
from .subgroups import wilson_interval

# how many held-out lesions with the closest risk a picture's risk is read against
NEIGHBOURS = 60
# risk bins of the calibration table on the Model card
RISK_BINS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


@dataclass(frozen=True)
class RiskContext:
    """The malignant risks of one split's lesions and whether each was malignant."""

    split: str
    risks: np.ndarray
    malignant: np.ndarray

    @classmethod
    def from_evaluation(cls, evaluation: dict[str, Any] | None, split: str = "val") -> RiskContext | None:
        """From the scores an ``evaluation.json`` stores (None without them)."""
        stored = stored_scores(evaluation, split)
        if stored is None:
            return None
        probs, y = stored
        return cls(split, malignant_score(probs), MALIGNANT_MASK[y])

    @property
    def prevalence(self) -> float:
        return float(self.malignant.mean())

    def around(self, risk: float, k: int = NEIGHBOURS) -> dict[str, Any]:
        """The ``k`` lesions whose risk lies closest to ``risk`` (ties: lower index first):
        their risk range and how many of them were malignant."""
        nearest = np.argsort(np.abs(self.risks - risk), kind="stable")[: min(k, len(self.risks))]
        count = int(self.malignant[nearest].sum())
        return {
            "lesions": len(nearest),
            "risk_low": float(self.risks[nearest].min()),
            "risk_high": float(self.risks[nearest].max()),
            "malignant": count,
            "share": count / len(nearest),
            "ci95": wilson_interval(count, len(nearest)),
        }

    def table(self, bins: tuple[float, ...] = RISK_BINS) -> list[dict[str, Any]]:
        """Per risk bin: lesions, their mean risk and the share that was malignant."""
        rows = []
        for low, high in itertools.pairwise(bins):
            inside = (self.risks >= low) & ((self.risks < high) | (high == bins[-1]))
            if inside.any():
                count = int(self.malignant[inside].sum())
                rows.append(
                    {
                        "risk": f"{low:.0%}-{high:.0%}",
                        "lesions": int(inside.sum()),
                        "mean risk": round(float(self.risks[inside].mean()), 3),
                        "malignant": round(count / int(inside.sum()), 3),
                        "ci95": wilson_interval(count, int(inside.sum())),
                    }
                )
        return rows
