"""Lesion measurements against hand computations on drawn shapes."""

from __future__ import annotations

import numpy as np
import pytest

from skin_model.lesion_measures import ABCD_COLOURS, MEANINGS, max_diameter, measure_lesion


def _rectangle(height: int, width: int, size: int = 100) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[10 : 10 + height, 30 : 30 + width] = True
    return mask


def test_a_rectangle_is_symmetric_and_convex() -> None:
    found = measure_lesion(_rectangle(20, 40), field_of_view_mm=10.0)
    assert found.area_share == 0.08  # 800 of 10,000 pixels
    assert found.max_diameter_px == pytest.approx(np.hypot(19, 39), abs=0.01)  # corner centres
    assert found.max_diameter_mm == pytest.approx(np.hypot(19, 39) * 10 / 100, abs=0.01)
    assert (found.asymmetry_major, found.asymmetry_minor) == (0.0, 0.0)
    assert found.border_irregularity == 0.0


def test_a_notch_makes_the_border_irregular_by_the_hulls_missing_share() -> None:
    mask = np.zeros((60, 60), bool)
    mask[10:30, 10:30] = True
    mask[10:15, 10:15] = False  # a 5x5 corner cut away: 375 pixels
    # the hull of the pixel squares cuts that corner by a diagonal: 400 - 25 / 2
    assert measure_lesion(mask).border_irregularity == pytest.approx(1 - 375 / 387.5, abs=1e-4)


def test_a_t_shape_is_symmetric_about_its_stem_only() -> None:
    """A 30x10 bar over a 10x20 stem (500 pixels, centre of mass on row 10.5). Mirrored
    about the horizontal line there, 280 pixels land outside: the bar's 200 beside the
    stem and the stem's 80 lowest; about the stem's axis, none."""
    mask = np.zeros((40, 40), bool)
    mask[0:10, 0:30] = True
    mask[10:30, 10:20] = True
    found = measure_lesion(mask)
    assert sorted([found.asymmetry_major, found.asymmetry_minor]) == [0.0, 0.56]


def test_colours_count_those_covering_five_percent() -> None:
    mask = _rectangle(20, 50)
    picture = np.zeros((100, 100, 3), np.uint8)
    picture[10:30, 30:55] = ABCD_COLOURS["black"]
    picture[10:30, 55:80] = (150, 100, 10)  # nearest to light brown
    picture[10:12, 30:40] = ABCD_COLOURS["red"]  # 20 of 1,000 pixels: 2 %, not counted
    found = measure_lesion(mask, picture)
    assert found.colours == 2 and found.colour_names == ("light brown", "black")
    assert found.as_row()["colour_names"] == "light brown; black"


def test_no_lesion_and_thin_lines() -> None:
    assert measure_lesion(np.zeros((50, 50), bool)) is None
    line = np.zeros((50, 50), bool)
    line[5, 3:43] = True  # 40 pixels in a row: collinear, no hull
    assert max_diameter(line) == 39.0
    assert measure_lesion(line).border_irregularity == 0.0


def test_every_measurement_has_a_meaning() -> None:
    found = measure_lesion(_rectangle(20, 40))
    assert set(MEANINGS) == set(found.as_row()) - {"colour_names"}
