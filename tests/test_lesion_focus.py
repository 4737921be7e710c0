"""Training that keeps the class evidence on the lesion (``train --lesion-focus``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skin_model.artifact import load_artifact


def test_outside_share_by_hand() -> None:
    """Two feature channels on a 2x2 grid, a head that maps channel 0 to class 0 and
    channel 1 (negatively) to class 1; the lesion is the grid's top row."""
    from skin_model.lesion_focus import outside_lesion_share

    features = np.zeros((2, 2, 2, 2), np.float32)
    features[0, :, :, 0] = [[3.0, 1.0], [2.0, 2.0]]  # class-0 map: 4 inside, 4 outside
    features[1, :, :, 1] = [[1.0, 0.0], [0.0, -5.0]]  # class-1 map is -channel 1: only +5 outside survives relu
    kernel = np.array([[1.0, 0.0], [0.0, -1.0]], np.float32)
    masks = np.zeros((2, 4, 4, 1), np.float32)
    masks[:, :2] = 1.0  # top half of the picture = top row of the grid
    labels = np.eye(2, dtype=np.float32)
    share = np.asarray(outside_lesion_share(features, kernel, masks, labels))
    np.testing.assert_allclose(share, [4.0 / 8.0, 5.0 / 5.0], rtol=1e-5)
    everywhere = np.ones_like(masks)  # a picture without a mask: no constraint
    np.testing.assert_allclose(np.asarray(outside_lesion_share(features, kernel, everywhere, labels)), 0.0, atol=1e-6)


def test_augment_moves_the_mask_with_the_picture() -> None:
    """A bright square planted in the picture and marked in the mask stays under the
    mask through flips, turns, the stretched crop and the resize, for every seed; with
    the mask or without, the picture's draws are the same."""
    import tensorflow as tf

    from skin_model.pipeline import augment

    image = np.full((48, 48, 3), 40.0, np.float32)
    image[6:18, 26:40] = 230.0
    mask = np.zeros((48, 48, 1), np.float32)
    mask[6:18, 26:40] = 1.0
    for seed in range(8):
        pair = tf.constant([seed, 5], tf.int64)
        options = dict(zoom=0.3, aspect=0.33, camera=0.5)
        out, moved = augment(tf.constant(image), pair, mask=tf.constant(mask), **options)
        alone = augment(tf.constant(image), pair, **options)
        np.testing.assert_allclose(out.numpy(), alone.numpy(), atol=1e-3)
        bright = out.numpy().mean(-1) > 135
        marked = moved.numpy()[..., 0] > 0.5
        assert marked.sum() > 50
        assert (bright & marked).sum() / (bright | marked).sum() > 0.8


def _planted(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pictures whose class shows twice: a lesion of the class's colour in one half
    (marked by the mask) and a corner patch of the same colour outside it."""
    x = np.full((n, 32, 32, 3), 90, np.uint8)
    y = rng.integers(0, 2, n)
    masks = np.zeros((n, 32, 32), np.uint8)
    for i, label in enumerate(y):
        colour = (200, 60, 60) if label else (60, 60, 200)
        top = rng.integers(0, 2) * 16
        x[i, top + 4 : top + 12, 10:22] = colour
        masks[i, top + 4 : top + 12, 10:22] = 255
        x[i, 28:32, 0:4] = colour  # the spurious cue, in a corner
    return x, y, masks


def test_focus_moves_the_activation_map_onto_the_lesion(tmp_path: Path) -> None:
    """The same seeded training with and without the focus term: with it, the share of
    the true class's map outside the planted lesions ends lower. The trainer takes the
    checkpoint callback that ``train --resume`` relies on."""
    import keras

    from skin_model.lesion_focus import lesion_focus_trainer, outside_lesion_share
    from skin_model.models import tiny_cnn
    from skin_model.pipeline import make_dataset

    x, y, masks = _planted(64, np.random.default_rng(0))
    onehot = np.eye(9, dtype=np.float32)[y]
    shares = {}
    for weight in (0.0, 5.0):
        keras.utils.set_random_seed(3)
        model = tiny_cnn(32)
        trainer = lesion_focus_trainer(model, weight)
        trainer.compile(optimizer=keras.optimizers.Adam(3e-3), loss="categorical_crossentropy")
        data = make_dataset(x, onehot, 16, training=True, seed=1, sample_weights=np.ones(64, np.float32), masks=masks)
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / f"backup{weight}"), delete_checkpoint=False)
        trainer.fit(data, epochs=6, verbose=0, callbacks=[backup])
        assert [w.shape for w in trainer.get_weights()] == [w.shape for w in model.get_weights()]
        taps = keras.Model(model.inputs, model.get_layer("gap").input)
        share = outside_lesion_share(
            taps(x.astype(np.float32)),
            model.get_layer("probabilities").kernel,
            masks[..., None].astype(np.float32) / 255.0,
            onehot,
        )
        shares[weight] = float(np.mean(share))
    assert shares[5.0] < shares[0.0] - 0.1, shares


def test_trainer_refuses_a_model_without_a_pooled_head() -> None:
    from skin_model.lesion_focus import lesion_focus_trainer
    from skin_model.models import seed_cnn

    with pytest.raises(ValueError, match="activation map"):
        lesion_focus_trainer(seed_cnn(32), 1.0)


def test_focus_masks_fill_pictures_without_a_mask(tmp_path: Path) -> None:
    from PIL import Image

    from skin_model.lesion_focus import focus_masks

    mask = np.zeros((60, 80), np.uint8)
    mask[20:40, 20:60] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    rows = pd.DataFrame(
        {
            "sha256": ["a", "b", "c"],
            "mask_path": [None, str(tmp_path / "m.png"), str(tmp_path / "m.png")],
            "final_label": ["nevus", "melanoma", "actinic keratosis"],
        }
    )
    out = focus_masks(rows, 16, cache_dir=tmp_path / "cache", progress=False)
    assert out.shape == (3, 16, 16)
    assert (out[0] == 255).all()
    assert 0 < (out[1] > 127).mean() < 0.5
    assert np.array_equal(out[2], out[1])
    exempted = focus_masks(rows, 16, cache_dir=tmp_path / "cache", progress=False, exempt=("actinic keratosis",))
    assert np.array_equal(exempted[:2], out[:2])
    assert (exempted[2] == 255).all()  # the exempt class's picture is left unconstrained


def test_train_with_lesion_focus_records_it(synthetic_manifest, tmp_path: Path) -> None:
    """The option reaches a real training run (the synthetic pictures have no masks, so
    the term is zero) and the manifest records it; mixup is refused beside it."""
    from skin_model.training import TrainConfig, train

    common = dict(arch="tiny_cnn", epochs=1, patience=5, bootstrap=0, warmup_epochs=1)
    out = tmp_path / "focus"
    train(TrainConfig(**common, lesion_focus=1.0), synthetic_manifest, out, cache_dir=tmp_path / "c", progress=False)
    artifact = load_artifact(out)
    assert artifact.manifest["training_config"]["lesion_focus"] == 1.0
    with pytest.raises(ValueError, match="mixup"):
        train(TrainConfig(**common, lesion_focus=1.0, mixup_alpha=0.4), synthetic_manifest, tmp_path / "x")
    with pytest.raises(ValueError, match="unknown class"):
        train(
            TrainConfig(**common, lesion_focus=1.0, lesion_focus_exempt="keratosis"), synthetic_manifest, tmp_path / "y"
        )
    with pytest.raises(ValueError, match="only applies"):
        train(TrainConfig(**common, lesion_focus_exempt="actinic keratosis"), synthetic_manifest, tmp_path / "z")
