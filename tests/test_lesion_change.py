"""Comparing two outlines of one lesion: each change against the photo-to-photo spread,
checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from skin_model.lesion_change import change_of, compare_lesions, photo_to_photo_spread
from skin_model.lesion_measures import LesionMeasures
from skin_model.segmentation import draw_outline, outline


def measures(area: float, diameter: float, asym: float = 0.1, border: float = 0.05, colours: int = 2) -> LesionMeasures:
    return LesionMeasures(area, diameter, None, asym, asym, border, colours, ("light brown", "dark brown")[:colours])


def test_change_of_sizes_is_a_log_ratio_and_of_the_rest_a_difference() -> None:
    assert change_of("area_share", 0.1, 0.2) == pytest.approx(math.log(2))
    assert change_of("max_diameter_px", 40, 20) == pytest.approx(math.log(2))
    assert change_of("colours", 2, 4) == 2
    assert change_of("border_irregularity", 0.1, 0.05) == pytest.approx(0.05)


def test_spread_is_the_quantile_over_pairs_of_one_lesion() -> None:
    """Lesion a has three photos (three pairs), b two (one pair), c one (none): the area
    spread is the 90 % quantile of the four pairs' log ratios."""
    ids = ["a", "a", "a", "b", "b", "c", ""]
    found = [measures(0.1, 10), measures(0.2, 10), measures(0.1, 10), measures(0.3, 10), measures(0.3, 10)]
    found += [measures(0.5, 10), measures(0.9, 10)]
    report = photo_to_photo_spread(ids, found)
    expected = np.quantile([math.log(2), 0.0, math.log(2), 0.0], 0.9)
    assert report["pairs"] == 4 and report["lesions"] == 2
    assert report["spread"]["area_share"] == pytest.approx(expected, abs=1e-4)
    assert report["spread"]["colours"] == 0


def test_compare_names_only_changes_beyond_the_spread() -> None:
    spread = {
        "pairs": 10,
        "spread": {
            "area_share": 0.2,
            "max_diameter_px": 0.2,
            "asymmetry_major": 0.1,
            "asymmetry_minor": 0.1,
            "border_irregularity": 0.1,
            "colours": 1,
        },
    }
    changes, finding = compare_lesions(measures(0.10, 40), measures(0.20, 42), spread)
    changed = {c.measure for c in changes if c.stands_out}
    assert changed == {"area_share"}  # log 2 = 0.69 > 0.2; diameter log(42/40) = 0.05 < 0.2
    assert finding.kind == "caution" and "area grew by a factor of 2.00" in finding.headline
    _, same = compare_lesions(measures(0.10, 40), measures(0.11, 41), spread)
    assert same.kind == "note" and "did not change" in same.headline
    _, unknown = compare_lesions(measures(0.10, 40), measures(0.30, 80), None)
    assert "without a photo-to-photo spread" in unknown.headline


def test_outline_is_the_mask_edge_and_is_drawn_at_any_size() -> None:
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    edge = outline(mask, width=1)
    assert edge.sum() == 36 and edge[5, 5] and not edge[10, 10]  # a 10x10 square's ring
    picture = Image.new("RGB", (40, 40), (0, 0, 0))
    drawn = np.asarray(draw_outline(picture, mask, colour=(255, 0, 0)))  # mask stretched to the picture first
    assert drawn[10:30, 10:30, 0].max() == 255 and drawn[20, 20, 0] == 0 and drawn[2, 2, 0] == 0
