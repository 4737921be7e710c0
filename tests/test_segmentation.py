"""The lesion segmenter: overlap figures against hand counts, masks back at the
picture's own size, a tiny model that learns drawn lesions, and a resumed run that
repeats an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from skin_model.artifact import ArtifactError
from skin_model.segmentation import (
    Segmenter,
    dice,
    jaccard,
    largest_region,
    mask_of,
    read_segmenter_manifest,
    save_segmenter,
)


def test_dice_and_jaccard_match_hand_counts() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[:2, 1:3] = True  # 4 pixels, 2 shared
    assert dice(a, b) == pytest.approx(2 * 2 / 8)
    assert jaccard(a, b) == pytest.approx(2 / 6)
    assert dice(a, a) == jaccard(a, a) == 1.0
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0  # nothing to find, nothing found
    assert dice(a, np.zeros((4, 4))) == 0.0


def test_largest_region_drops_specks_and_fills_holes() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[6, 6] = False  # a hole
    mask[16:18, 16:18] = True  # a speck
    kept = largest_region(mask)
    assert kept[6, 6] and not kept[16:18, 16:18].any() and kept.sum() == 100
    assert not largest_region(np.zeros((5, 5), bool)).any()


def test_mask_of_stretches_back_to_the_picture_shape() -> None:
    """A square map of a lesion in the left half comes back on the left half of a wide
    picture (the squash undone), at the picture's width and height."""
    probability = np.zeros((32, 32), np.float32)
    probability[8:24, 2:14] = 1.0
    mask = mask_of(probability, (200, 100))
    assert mask.shape == (100, 200)
    columns = np.flatnonzero(mask.any(axis=0))
    assert 10 <= columns.min() <= 16 and 84 <= columns.max() <= 90


def drawn_lesion(seed: int, size: tuple[int, int] = (72, 56)) -> tuple[Image.Image, np.ndarray]:
    """Skin-coloured noise with one dark ellipse of random size and place; its mask."""
    rng = np.random.default_rng(seed)
    w, h = size
    skin = np.clip(rng.normal([205, 160, 140], 12, (h, w, 3)), 0, 255).astype(np.uint8)
    picture = Image.fromarray(skin)
    mask = Image.new("L", size, 0)
    rx, ry = rng.uniform(0.15, 0.3) * w, rng.uniform(0.15, 0.3) * h
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    box = (cx - rx, cy - ry, cx + rx, cy + ry)
    colour = tuple(int(c) for c in rng.uniform([70, 40, 30], [130, 90, 70]))
    ImageDraw.Draw(picture).ellipse(box, fill=colour)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return picture, np.asarray(mask) >= 128


def drawn_arrays(seeds: range, size: int) -> tuple[np.ndarray, np.ndarray]:
    from skin_model.pipeline import to_model_input

    pictures = [drawn_lesion(s) for s in seeds]
    x = np.stack([to_model_input(p, size) for p, _ in pictures])
    masks = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((size, size))) for _, m in pictures])
    return x, masks


@pytest.fixture(scope="module")
def tiny_segmenter_run(tmp_path_factory) -> tuple[object, dict, Path]:
    from skin_model.segmentation_training import SegmenterConfig, fit_segmenter

    config = SegmenterConfig(arch="tiny_unet", input_size=32, epochs=10, batch_size=16, learning_rate=1e-2, camera=0.0)
    data = {"train": drawn_arrays(range(240), 32), "val": drawn_arrays(range(1000, 1030), 32)}
    out = tmp_path_factory.mktemp("segmenter")
    model, state, _ = fit_segmenter(config, data, out, resume=False, progress=False)
    return model, state, out


@pytest.mark.slow
def test_tiny_segmenter_finds_drawn_lesions(tiny_segmenter_run) -> None:
    """Trained in the test on drawn lesions, the tiny network outlines new ones, at their
    own (non-square) size, with a mean Dice of 0.9 or more; a picture without a lesion
    gives an empty mask, not a crash."""
    model, state, _ = tiny_segmenter_run
    segmenter = Segmenter(model, {"input_size": 32})
    scores = []
    for seed in range(2000, 2020):
        picture, truth = drawn_lesion(seed)
        found = segmenter.segment(picture)
        assert found.mask.shape == truth.shape
        scores.append(dice(found.mask, truth))
    assert np.mean(scores) >= 0.9, scores
    blank = Image.fromarray(np.full((56, 72, 3), (205, 160, 140), np.uint8))
    assert not segmenter.segment(blank).found
    assert len(state["history"]) == 10


@pytest.mark.slow
def test_resumed_segmenter_run_repeats_the_uninterrupted_one(tiny_segmenter_run, tmp_path, monkeypatch) -> None:
    """Stopped after its third epoch and resumed, a run ends with the weights and history
    of the run that was never stopped."""
    import skin_model.segmentation_training as st

    model, state, _ = tiny_segmenter_run
    config = st.SegmenterConfig(
        arch="tiny_unet", input_size=32, epochs=10, batch_size=16, learning_rate=1e-2, camera=0.0
    )
    data = {"train": drawn_arrays(range(240), 32), "val": drawn_arrays(range(1000, 1030), 32)}
    original = st._epoch_end

    def stop_after_third(model_, checkpoint, state_, score, loss):
        original(model_, checkpoint, state_, score, loss)
        if state_["epoch"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(st, "_epoch_end", stop_after_third)
    with pytest.raises(KeyboardInterrupt):
        st.fit_segmenter(config, data, tmp_path, resume=False, progress=False)
    monkeypatch.setattr(st, "_epoch_end", original)
    resumed, resumed_state, _ = st.fit_segmenter(config, data, tmp_path, resume=True, progress=False)
    assert [h["val_dice"] for h in resumed_state["history"]] == pytest.approx(
        [h["val_dice"] for h in state["history"]], abs=1e-6
    )
    for a, b in zip(resumed.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_segmenter_folder_is_verified_on_load(tiny_segmenter_run, tmp_path) -> None:
    model, _, _ = tiny_segmenter_run
    folder = save_segmenter(model, tmp_path / "seg", {"name": "seg", "input_size": 32})
    loaded = Segmenter.load(folder)
    x = drawn_arrays(range(5), 32)[0]
    np.testing.assert_allclose(
        loaded.probabilities(x), Segmenter(model, {"input_size": 32}).probabilities(x), atol=1e-5
    )
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace('"input_size": 32', '"input_size": 64'))
    with pytest.raises(ArtifactError, match="checksum"):
        read_segmenter_manifest(folder)


@pytest.mark.slow
def test_segment_command_writes_masks_and_measurements(tiny_segmenter_run, tmp_path, capsys) -> None:
    """``segment`` on a folder: a mask at each readable picture's own size and
    orientation, measurements for the drawn lesion, "no lesion found" for a blank frame,
    and a status for a zero-byte file, all in one CSV."""
    import pandas as pd

    from skin_model.cli import main

    model, _, _ = tiny_segmenter_run
    folder = save_segmenter(model, tmp_path / "seg", {"name": "seg", "input_size": 32})
    pictures = tmp_path / "pictures"
    (pictures / "clinic").mkdir(parents=True)
    lesion, truth = drawn_lesion(2100)
    lesion.save(pictures / "clinic" / "lesion.png")
    Image.fromarray(np.full((40, 90, 3), (205, 160, 140), np.uint8)).save(pictures / "blank.png")
    (pictures / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert (
        main(["segment", str(pictures), "--output", str(out), "--segmenter", str(folder), "--fov-mm", "10", "--quiet"])
        == 0
    )
    table = pd.read_csv(out / "measurements.csv").set_index("file")
    assert table.loc["clinic/lesion.png", "status"] == "ok" and table.loc["clinic/lesion.png", "lesion_found"]
    mask = np.asarray(Image.open(out / table.loc["clinic/lesion.png", "mask_file"])) >= 128
    assert mask.shape == truth.shape and dice(mask, truth) >= 0.85
    assert table.loc["clinic/lesion.png", "area_share"] == pytest.approx(mask.mean(), abs=1e-3)
    assert table.loc["blank.png", "status"] == "no lesion found"
    assert np.asarray(Image.open(out / "blank_mask.png")).shape == (40, 90)
    assert table.loc["empty.jpg", "status"].startswith("unreadable") and "empty" in table.loc["empty.jpg", "status"]
    assert "3 files: lesion outlined 1, no lesion found 1, unreadable 1" in capsys.readouterr().out
    assert table.loc["clinic/lesion.png", "colours"] >= 1 and pd.isna(table.loc["empty.jpg", "colours"])


def test_segmentation_sentence_quotes_the_benchmark() -> None:
    from skin_model.card_text import segmentation_sentence

    figures = {
        "pictures": 1022,
        "dice": 0.9012,
        "dice_95ci": [0.89, 0.91],
        "jaccard": 0.83,
        "jaccard_95ci": [0.82, 0.84],
    }
    report = {
        "segmenter": "lesion_lite0",
        "overlap": {
            "as stored": figures | {"thresholded_jaccard": 0.79},
            "JPEG 75": figures | {"dice": 0.899, "jaccard": 0.829, "thresholded_jaccard": 0.78},
        },
        "outline_time": {"median_ms": 21.4},
    }
    text = segmentation_sentence(report)
    assert "1,022 test pictures" in text and "Dice 0.901 (0.89-0.91)" in text and "Jaccard 0.830 (0.82-0.84)" in text
    assert "JPEG 75: Dice 0.899, Jaccard 0.829" in text and text.endswith("21 ms per picture.")
