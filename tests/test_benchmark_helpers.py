"""The benchmark scripts' own arithmetic and picture sets, checked without running them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_load_summary_by_hand() -> None:
    from app_load import percentile, round_pictures, summary

    assert percentile([3.0, 1.0, 2.0, 10.0], 95) == 10.0
    assert percentile([3.0, 1.0, 2.0, 10.0], 50) == 3.0  # nearest rank of 1.5 rounds to 2 (0-based)
    assert percentile([], 95) is None
    assert round_pictures(Path("unused"), 2, 3, [Path(f"p{k}.jpg") for k in range(45)]) == [
        Path("p40.jpg"),
        Path("p41.jpg"),
        Path("p42.jpg"),
    ]  # each round the next pictures of the folder, wrapping round
    results = [
        {"page_ready_s": 1.0, "result_s": 2.0, "checks_s": 2.5, "errors": []},
        {"page_ready_s": 3.0, "result_s": None, "checks_s": None, "errors": ["TimeoutError: waited 180 s"]},
        {"page_ready_s": 2.0, "result_s": 4.0, "checks_s": 6.0, "errors": []},
    ]
    s = summary(results)
    assert (s["sessions"], s["answered"]) == (3, 2)
    assert (s["page_ready_s_median"], s["result_s_median"]) == (2.0, 3.0)
    assert (s["checks_s_median"], s["checks_s_p95"]) == (4.25, 6.0)
    assert s["errors"] == ["TimeoutError: waited 180 s"]


def test_non_lesion_benchmark_holds_at_least_a_hundred_distinct_pictures() -> None:
    pytest.importorskip("skimage", reason="scikit-image ships the photographs (requirements-dev.txt)")
    pytest.importorskip("matplotlib", reason="matplotlib draws the charts (requirements-dev.txt)")
    from non_lesion import near_lesion_pictures, non_lesion_pictures

    groups = non_lesion_pictures()
    pictures = [p for group in groups.values() for p in group.values()]
    assert len(pictures) >= 100
    assert {"package photos", "photo crops", "faces", "charts", "drawn"} <= set(groups)
    assert len({np.asarray(p.convert("RGB").resize((32, 32))).tobytes() for p in pictures}) == len(pictures)
    from PIL import Image

    lesion = Image.new("RGB", (200, 150), (180, 120, 100))
    near = near_lesion_pictures([lesion])
    assert near["zoomed-out lesions"]["zoomed-out lesion 0"].size == (200, 150)


def test_summarise_heat_against_masks_by_hand() -> None:
    from heatmap_lesion import flip_averaged, summarise

    found = [
        {"heat_inside_lesion": 0.8, "lesion_share": 0.2, "hottest_point_inside": True},
        {"heat_inside_lesion": 0.4, "lesion_share": 0.3, "hottest_point_inside": False},
    ]
    s = summarise(found)
    assert (s["pointing_game"], s["heat_inside_lesion"], s["lesion_share"]) == (0.5, 0.6, 0.25)
    assert s["heat_inside_lesion_95ci"][0] >= 0.4 and s["heat_inside_lesion_95ci"][1] <= 0.8
    # a map that follows the picture's own bright corner flips back onto it in every view
    image = np.zeros((8, 8, 3), np.float32)
    image[0, 0] = 255

    def brightest(x: np.ndarray, target: int) -> np.ndarray:
        return x.max(axis=-1) / 255

    averaged = flip_averaged(brightest)(image, 0)
    assert averaged[0, 0] == 1.0 and averaged.sum() == 1.0
