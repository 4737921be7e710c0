"""Has the lesion itself changed? Two outlines of one lesion compared measurement by
measurement, each change set against how much two photos of one unchanged lesion differ.

The spread comes from HAM10000 lesions photographed more than once (one lesion id,
usually one visit): every pair of their pictures is two photos of an unchanged lesion,
outlined by the shipped segmenter (``benchmarks/segmentation.py`` stores the spread
beside it). A change counts when it exceeds what :data:`SPREAD_QUANTILE` of those pairs
reach. Sizes are compared as ratios (log scale), since zoom and framing scale them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .case_report import Finding
from .lesion_measures import LesionMeasures

SPREAD_QUANTILE = 0.9
# measurement -> (how a change is taken, words for it)
COMPARED = {
    "area_share": ("ratio", "area"),
    "max_diameter_px": ("ratio", "largest diameter"),
    "asymmetry_major": ("difference", "asymmetry about the long axis"),
    "asymmetry_minor": ("difference", "asymmetry about the short axis"),
    "border_irregularity": ("difference", "border irregularity"),
    "colours": ("difference", "number of ABCD colours"),
}


def change_of(measure: str, earlier: float, later: float) -> float:
    """The change of one measurement: |log(later / earlier)| for sizes, |later - earlier|
    for the rest."""
    kind, _ = COMPARED[measure]
    if kind == "ratio":
        return abs(float(np.log(max(later, 1e-9) / max(earlier, 1e-9))))
    return abs(float(later) - float(earlier))


def photo_to_photo_spread(lesion_ids: list[str], measures: list[LesionMeasures | None]) -> dict[str, Any]:
    """Per measurement, the :data:`SPREAD_QUANTILE` quantile of its change over every pair
    of pictures of one lesion (pictures without an outline left out)."""
    by_lesion: dict[str, list[LesionMeasures]] = {}
    for lesion, measured in zip(lesion_ids, measures, strict=True):
        if isinstance(lesion, str) and lesion and measured is not None:
            by_lesion.setdefault(lesion, []).append(measured)
    pairs = [pair for group in by_lesion.values() for pair in itertools.combinations(group, 2)]
    spread = {
        name: round(
            float(
                np.quantile([change_of(name, getattr(a, name), getattr(b, name)) for a, b in pairs], SPREAD_QUANTILE)
            ),
            4,
        )
        if pairs
        else None
        for name in COMPARED
    }
    return {
        "quantile": SPREAD_QUANTILE,
        "pairs": len(pairs),
        "lesions": sum(len(g) >= 2 for g in by_lesion.values()),
    } | {"spread": spread}


@dataclass(frozen=True)
class MeasureChange:
    measure: str
    words: str
    earlier: float
    later: float
    change: float
    spread: float | None

    @property
    def stands_out(self) -> bool:
        return self.spread is not None and self.change > self.spread

    def text(self) -> str:
        direction = "grew" if self.later > self.earlier else "shrank" if self.later < self.earlier else "stayed"
        if COMPARED[self.measure][0] == "ratio":
            return f"{self.words} {direction} by a factor of {max(self.later, 1e-9) / max(self.earlier, 1e-9):.2f}"
        return f"{self.words} went from {self.earlier:g} to {self.later:g}"


def compare_lesions(
    earlier: LesionMeasures, later: LesionMeasures, report: dict[str, Any] | None
) -> tuple[list[MeasureChange], Finding]:
    """Each measurement's change and whether it stands out, with a summary finding."""
    spread = (report or {}).get("spread", {})
    changes = [
        MeasureChange(
            name,
            words,
            float(getattr(earlier, name)),
            float(getattr(later, name)),
            change_of(name, getattr(earlier, name), getattr(later, name)),
            spread.get(name),
        )
        for name, (_, words) in COMPARED.items()
    ]
    if not spread:
        return changes, Finding(
            "note", "The outlines were measured, but without a photo-to-photo spread to weigh them."
        )
    changed = [c for c in changes if c.stands_out]
    pairs = (report or {}).get("pairs", 0)
    basis = (
        f"A change counts when it is larger than {SPREAD_QUANTILE:.0%} of the changes between two photos of one "
        f"unchanged lesion ({pairs} pairs of HAM10000 pictures, outlined by the same model). Zoom and framing change "
        "sizes too: take both pictures at the same magnification."
    )
    if not changed:
        return changes, Finding("note", "The outline did not change beyond photo-to-photo spread.", basis)
    listed = "; ".join(c.text() for c in changed)
    return changes, Finding("caution", f"The outline changed: {listed}.", basis)
