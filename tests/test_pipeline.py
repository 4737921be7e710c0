"""Decoded-image cache and tf.data pipelines."""

from __future__ import annotations

import numpy as np

from skin_model.manifest import Manifest
from skin_model.pipeline import augment, load_arrays, make_dataset


def test_load_arrays_caches(synthetic_manifest: Manifest, tmp_path) -> None:
    rows = synthetic_manifest.kept("train")
    x, y = load_arrays(rows, 32, cache_dir=tmp_path, progress=False)
    assert x.shape == (len(rows), 32, 32, 3) and x.dtype == np.uint8
    assert len(list(tmp_path.glob("*.npz"))) == 1
    x2, y2 = load_arrays(rows, 32, cache_dir=tmp_path, progress=False)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_training_pipeline_is_seeded_and_shaped() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(10, 24, 24, 3), dtype=np.uint8)
    y = np.arange(10) % 3
    batches = [b for b in make_dataset(x, y, batch_size=4, training=True, seed=5)]
    again = [b for b in make_dataset(x, y, batch_size=4, training=True, seed=5)]
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert all(np.allclose(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    values = np.concatenate([b[0].numpy() for b in batches])
    assert values.min() >= 0 and values.max() <= 255


def test_eval_pipeline_keeps_pixels() -> None:
    x = np.full((3, 16, 16, 3), 77, dtype=np.uint8)
    batch = next(iter(make_dataset(x, batch_size=8)))
    assert np.all(batch.numpy() == 77.0)


def test_augment_keeps_size_and_range() -> None:
    import tensorflow as tf

    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (40, 40, 3)), tf.float32)
    out = augment(image, tf.constant([1, 2], tf.int64))
    assert out.shape == (40, 40, 3)
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
