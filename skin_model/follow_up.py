"""Has the lesion changed? Two pictures of one lesion, read by the model and set against
how much two photos of one lesion differ anyway.

The model was never trained to compare pictures: it reads each on its own. What it can
say honestly is its answer on each and how far its malignant risk moved, measured
against the photo-to-photo spread of that risk: on validation, HAM10000 lists several
photos of some lesions (one lesion id, usually one visit); every pair of them is two
photos of an unchanged lesion, and how often such a pair differs by at least the change
seen says whether the change stands out from that spread. Computed from the
probabilities stored in ``evaluation.json`` and the audit's manifest (no model run).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .case_report import Finding
from .classes import CLASS_NAMES, malignant_score, plain_name
from .inference import Diagnosis

# a change of the risk that fewer than this share of same-lesion photo pairs reach stands out
STANDS_OUT_BELOW = 0.1


@dataclass(frozen=True)
class PhotoToPhoto:
    """How much the model's answer differed between two photos of one lesion."""

    risk_differences: np.ndarray  # |risk a - risk b| per pair of photos of one lesion, sorted
    same_top_class: float  # share of those pairs answered with the same class
    lesions: int
    classes: tuple[str, ...]  # the diagnoses of the lesions the pairs come from
    split: str = "val"

    @classmethod
    def from_scores(cls, lesion_ids: list[str], y: np.ndarray, probs: np.ndarray, split: str = "val") -> PhotoToPhoto:
        """Every pair of pictures sharing a lesion id (empty ids are no lesion)."""
        risk, top = malignant_score(probs), probs.argmax(axis=1)
        by_lesion: dict[str, list[int]] = {}
        for index, lesion in enumerate(lesion_ids):
            if isinstance(lesion, str) and lesion:
                by_lesion.setdefault(lesion, []).append(index)
        pairs = [pair for members in by_lesion.values() for pair in itertools.combinations(members, 2)]
        a, b = (np.array([p[k] for p in pairs], int) for k in (0, 1))
        return cls(
            np.sort(np.abs(risk[a] - risk[b])),
            float((top[a] == top[b]).mean()) if pairs else float("nan"),
            sum(len(m) >= 2 for m in by_lesion.values()),
            tuple(sorted({CLASS_NAMES[y[m[0]]] for m in by_lesion.values() if len(m) >= 2})),
            split,
        )

    @classmethod
    def from_stored(cls, table, evaluation: dict[str, Any] | None, data_fingerprint: str | None) -> PhotoToPhoto | None:
        """From the audit's manifest ``table`` and a model's stored validation scores;
        None when they do not belong together or hold no pair."""
        from .evaluation import stored_split_scores

        try:
            rows, y, probs = stored_split_scores(table, evaluation or {}, "val", data_fingerprint)
        except ValueError:
            return None
        spread = cls.from_scores(rows["lesion_id"].tolist(), y, probs)
        return spread if len(spread.risk_differences) else None

    @property
    def pairs(self) -> int:
        return len(self.risk_differences)

    def share_at_least(self, difference: float) -> float:
        """The share of same-lesion pairs whose risks differed by ``difference`` or more."""
        return float((self.risk_differences >= difference - 1e-12).mean())


def compare(earlier: Diagnosis, later: Diagnosis, spread: PhotoToPhoto | None) -> list[Finding]:
    """What can be said about two pictures of one lesion, most important first."""
    flagged = [name for name, r in (("earlier", earlier), ("later", later)) if r.out_of_distribution]
    if flagged:
        return [
            Finding(
                "not_a_lesion",
                "No comparison:",
                f"the {flagged[0]} picture does not look like a dermoscopic lesion image."
                if len(flagged) == 1
                else "neither picture looks like a dermoscopic lesion image.",
            )
        ]
    findings = []
    before, after = earlier.malignant_probability, later.malignant_probability
    change = f"Malignant risk {before:.0%} → {after:.0%} ({100 * (after - before):+.0f} percentage points)."
    if later.high_risk and not earlier.high_risk:
        findings.append(
            Finding(
                "high_risk",
                change,
                f"The later picture crossed the referral threshold ({later.malignant_threshold:.0%})."
                " Refer to a dermatologist.",
            )
        )
    elif later.high_risk:
        findings.append(Finding("high_risk", change, "Both pictures are above the referral threshold: refer."))
    else:
        findings.append(Finding("note", change))
    if spread is not None:
        share = spread.share_at_least(abs(after - before))
        context = (
            f"Between two photos of one lesion the model's risk moved this much or more in {share:.0%} of "
            f"{spread.pairs} validation pairs ({spread.lesions} lesions: {', '.join(spread.classes)}; median "
            f"{100 * float(np.median(spread.risk_differences)):.0f} points)."
        )
        if share < STANDS_OUT_BELOW:
            findings.append(Finding("caution", "The change stands out from photo-to-photo differences.", context))
        else:
            findings.append(
                Finding(
                    "note",
                    "The change is within photo-to-photo differences:",
                    context + " The model cannot tell this change of the lesion from a change of the photo.",
                )
            )
    if earlier.predicted_class != later.predicted_class:
        agreement = (
            ""
            if spread is None
            else f" Two photos of one lesion got the same class in {spread.same_top_class:.0%} of validation pairs."
        )
        findings.append(
            Finding(
                "note",
                f"Most probable class: {plain_name(earlier.predicted_class)} → {plain_name(later.predicted_class)}.",
                agreement.strip(),
            )
        )
    if earlier.prediction_set is not None and later.prediction_set is not None:
        added = [n for n in later.prediction_set if n not in earlier.prediction_set]
        dropped = [n for n in earlier.prediction_set if n not in later.prediction_set]
        if added or dropped:
            parts = [f"now also {', '.join(map(plain_name, added))}" if added else ""]
            parts.append(f"no longer {', '.join(map(plain_name, dropped))}" if dropped else "")
            findings.append(Finding("note", "Differential:", "; ".join(p for p in parts if p) + "."))
    findings.append(
        Finding(
            "note",
            "The model reads each picture on its own.",
            "Judging change (size, shape, colour, new structures) is a dermatologist's task, best with pictures "
            "taken the same way (same dermatoscope, magnification and light).",
        )
    )
    return findings
