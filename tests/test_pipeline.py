"""Decoded-image cache and tf.data pipelines."""

from __future__ import annotations

import numpy as np

from skin_model.manifest import Manifest
from skin_model.pipeline import augment, dermoscope_field, load_arrays, make_dataset, mixup_batch


def test_load_arrays_caches(synthetic_manifest: Manifest, tmp_path) -> None:
    rows = synthetic_manifest.kept("train")
    x, y = load_arrays(rows, 32, cache_dir=tmp_path, progress=False)
    assert x.shape == (len(rows), 32, 32, 3) and x.dtype == np.uint8
    assert len(list(tmp_path.glob("*.npz"))) == 1
    x2, y2 = load_arrays(rows, 32, cache_dir=tmp_path, progress=False)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_concurrent_cache_writers_all_succeed(synthetic_manifest: Manifest, tmp_path) -> None:
    """Several processes (e.g. training workers on one machine) may fill the same cache
    at once; each must get its arrays and leave one complete cache file."""
    from concurrent.futures import ThreadPoolExecutor

    rows = synthetic_manifest.kept("train")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: load_arrays(rows, 24, cache_dir=tmp_path, progress=False), range(4)))
    for x, y in results[1:]:
        assert np.array_equal(x, results[0][0]) and np.array_equal(y, results[0][1])
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.glob("images-24-*.npz")).name]


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


def test_mixup_mixes_images_labels_and_weights_alike() -> None:
    """Each mixed image is lam * its own + (1 - lam) * its mirror in the batch, and its
    label and weight carry the same proportions (checked on flat images whose pixel value
    names the source)."""
    import tensorflow as tf

    n = 6
    images = np.stack([np.full((4, 4, 3), 10.0 * (i + 1), np.float32) for i in range(n)])
    labels = np.eye(9, dtype=np.float32)[[0, 1, 2, 3, 4, 5]]
    weights = np.arange(1, n + 1, dtype=np.float32)
    mixed, mixed_labels, mixed_weights, lam = (
        t.numpy() for t in mixup_batch(images, labels, weights, tf.constant([3, 4], tf.int64), alpha=0.4)
    )
    assert ((lam >= 0) & (lam <= 1)).all() and np.ptp(lam) > 0.05  # drawn per image
    for i in range(n):
        j = n - 1 - i
        np.testing.assert_allclose(mixed[i], lam[i] * images[i] + (1 - lam[i]) * images[j], rtol=1e-5)
        np.testing.assert_allclose(mixed_labels[i, i], lam[i] if i != j else 1.0, rtol=1e-5)
        np.testing.assert_allclose(mixed_labels[i, j], 1 - lam[i], rtol=1e-5)
        np.testing.assert_allclose(mixed_labels[i].sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(mixed_weights[i], lam[i] * weights[i] + (1 - lam[i]) * weights[j], rtol=1e-5)


def test_training_pipeline_with_mixup_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    y = np.eye(9, dtype=np.float32)[rng.integers(0, 9, 8)]
    w = np.ones(8, np.float32)
    runs = [list(make_dataset(x, y, 4, training=True, seed=5, sample_weights=w, mixup_alpha=0.4)) for _ in range(2)]
    for batch_a, batch_b in zip(*runs, strict=True):
        for a, b in zip(batch_a, batch_b, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    soft = np.concatenate([batch[1].numpy() for batch in runs[0]])
    assert (soft.max(axis=1) < 0.999).any()  # labels were mixed
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)


def test_zoom_sets_how_much_the_training_crop_cuts_off() -> None:
    """A frame with a bright border a quarter of the side wide: with zoom 0 every
    augmented image keeps the whole frame (75 % bright); with zoom 0.5 the crops cut
    into it and some end up inside the dark centre."""
    x = np.full((48, 40, 40, 3), 230, np.uint8)
    x[:, 10:30, 10:30] = 20

    def bright_fraction(zoom: float) -> np.ndarray:
        images = np.concatenate([b.numpy() for b in make_dataset(x, batch_size=16, training=True, seed=3, zoom=zoom)])
        return (images.mean(axis=-1) > 127).mean(axis=(1, 2))

    whole = bright_fraction(0.0)
    np.testing.assert_allclose(whole, 0.75, atol=0.03)
    cropped = bright_fraction(0.5)
    assert cropped.mean() < 0.65 and cropped.min() < 0.5


def test_low_res_passes_blur_fine_detail_in_the_chosen_share_of_pictures() -> None:
    """A one-pixel checkerboard keeps its pixel-to-pixel contrast through flips and
    rotations; a lower-resolution pass smears it. With probability 1 every picture loses
    most of it; with 0.5 some do, and the others come out exactly as without the option
    (the pass draws on seeds of its own)."""
    board = (np.indices((40, 40)).sum(axis=0) % 2 * 255).astype(np.uint8)
    x = np.repeat(board[None, :, :, None], 3, axis=-1).repeat(48, axis=0)

    def augmented(low_res: float) -> np.ndarray:
        ds = make_dataset(x, batch_size=16, training=True, seed=3, zoom=0.0, low_res=low_res)
        return np.concatenate([b.numpy() for b in ds])

    def detail(images: np.ndarray) -> np.ndarray:
        return np.abs(np.diff(images.mean(axis=-1), axis=2)).mean(axis=(1, 2)) / 255

    plain, always, half = augmented(0.0), augmented(1.0), augmented(0.5)
    assert detail(plain).min() > 0.5
    assert detail(always).max() < 0.5 * detail(plain).min()
    kept = detail(half) > 0.5
    assert 10 <= kept.sum() <= 38 and (detail(half)[~kept] < 0.5 * detail(plain).min()).all()
    np.testing.assert_array_equal(half[kept], plain[kept])


def test_jpeg_recompression_in_the_chosen_share_of_pictures() -> None:
    """JPEG at quality 40-95 cannot keep pixel-level colour noise (it stores colour at
    half resolution and drops fine detail), so a re-compressed noise picture differs
    from the plain one by several grey levels on average; with 0.5 some pictures are
    re-compressed and the others come out exactly as without the option."""
    x = np.random.default_rng(0).integers(0, 256, (48, 40, 40, 3), dtype=np.uint8)

    def augmented(jpeg: float) -> np.ndarray:
        ds = make_dataset(x, batch_size=16, training=True, seed=3, zoom=0.0, jpeg=jpeg)
        return np.concatenate([b.numpy() for b in ds])

    def change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.abs(a - b).mean(axis=(1, 2, 3))

    plain, always, half = augmented(0.0), augmented(1.0), augmented(0.5)
    assert always.shape == plain.shape
    assert (change(always, plain) > 10).all()
    same = (half == plain).all(axis=(1, 2, 3))
    assert 10 <= same.sum() <= 38 and (change(half[~same], plain[~same]) > 10).all()


def test_light_change_scales_each_channel_within_its_ranges_and_reaches_the_chosen_share() -> None:
    """light_change multiplies the picture by one exposure factor (0.75-1.25) and a gain
    per channel (0.9-1.1): each channel's ratio to the original lies in 0.675-1.375 and
    the channels' ratios differ. In training, light=0.5 changes some pictures and leaves
    the others exactly as without the option."""
    import tensorflow as tf

    from skin_model.pipeline import CAMERA_EXPOSURE, CAMERA_WHITE_BALANCE, light_change

    picture = tf.constant(np.full((8, 8, 3), 100.0, np.float32))
    ratios = []
    for k in range(20):
        out = light_change(picture, tf.random.split(tf.constant([k, 1], tf.int64), 2)).numpy()
        ratio = out[0, 0] / 100.0
        assert np.allclose(out, out[0, 0])  # one factor per channel, the same everywhere
        ratios.append(ratio)
    ratios = np.array(ratios)
    low = CAMERA_EXPOSURE[0] * (1 - CAMERA_WHITE_BALANCE)
    high = CAMERA_EXPOSURE[1] * (1 + CAMERA_WHITE_BALANCE)
    assert (ratios >= low - 1e-6).all() and (ratios <= high + 1e-6).all()
    assert ratios.mean(axis=1).std() > 0.05  # the exposure varies between draws
    assert (ratios.max(axis=1) - ratios.min(axis=1)).mean() > 0.02  # and so does the balance

    x = np.random.default_rng(1).integers(30, 200, (48, 40, 40, 3), dtype=np.uint8)

    def augmented(light: float) -> np.ndarray:
        return np.concatenate([b.numpy() for b in make_dataset(x, batch_size=16, training=True, seed=3, light=light)])

    plain, half = augmented(0.0), augmented(0.5)
    same = (half == plain).all(axis=(1, 2, 3))
    assert 10 <= same.sum() <= 38


def test_saved_again_copies_are_jpeg_at_the_pictures_own_shape_and_seeded() -> None:
    """A copy keeps the picture's orientation and shape (shrunk by at most half), loses
    pixel noise to the JPEG save, and the same generator seed gives the same copy."""
    from PIL import Image

    from skin_model.pipeline import saved_again

    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    copies = [saved_again(picture, np.random.default_rng([7, i])) for i in range(12)]
    for copy in copies:
        assert copy.mode == "RGB" and 100 <= copy.width <= 200 and abs(copy.width / copy.height - 4 / 3) < 0.03
    assert any(c.size == (200, 150) for c in copies) and any(c.size != (200, 150) for c in copies)
    full = [c for c in copies if c.size == (200, 150)]
    assert all(np.abs(np.asarray(c, float) - np.asarray(picture, float)).mean() > 10 for c in full)
    again = saved_again(picture, np.random.default_rng([7, 0]))
    assert np.array_equal(np.asarray(again), np.asarray(copies[0]))


def test_load_arrays_caches_the_saved_again_copies_apart(synthetic_manifest: Manifest, tmp_path) -> None:
    rows = synthetic_manifest.kept("train")
    stored, y = load_arrays(rows, 32, cache_dir=tmp_path, progress=False)
    copies, y2 = load_arrays(rows, 32, cache_dir=tmp_path, progress=False, resaved_seed=3)
    assert np.array_equal(y, y2) and copies.shape == stored.shape and not np.array_equal(copies, stored)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert np.array_equal(load_arrays(rows, 32, cache_dir=tmp_path, progress=False, resaved_seed=3)[0], copies)


def test_resave_trains_on_the_saved_again_copy_in_the_chosen_share_of_pictures() -> None:
    """With resave 0.5 each element is the stored picture or its copy (here told apart
    by their grey levels), about half each, the same draws in a second pass; the
    augmentation's other draws are those of a run without the option."""
    x = np.zeros((64, 16, 16, 3), np.uint8)
    copies = np.full_like(x, 200)

    def means(resave: float) -> np.ndarray:
        ds = make_dataset(x, batch_size=16, training=True, seed=3, zoom=0.0, resaved=copies, resave=resave)
        return np.concatenate([b.numpy() for b in ds]).mean(axis=(1, 2, 3))

    half = means(0.5)
    from_copy = half > 100
    assert 16 <= from_copy.sum() <= 48
    assert np.array_equal(half, means(0.5))
    assert (means(0.0) < 100).all() and (means(1.0) > 100).all()
    try:
        make_dataset(x, batch_size=16, training=True, resave=0.5)
    except ValueError as error:
        assert "saved-again" in str(error)
    else:
        raise AssertionError("resave without copies must be refused")


def test_dermoscope_field_darkens_outside_a_circle_only() -> None:
    """On a flat picture the field of view leaves the centre as it was, darkens pixels
    farther from the centre than any drawn radius plus shift plus edge to the outside
    level, never brightens, and is the same for the same seeds."""
    import tensorflow as tf

    from skin_model.pipeline import FIELD_CENTRE_SHIFT, FIELD_EDGE, FIELD_OUTSIDE_LEVEL, FIELD_RADIUS

    side = 101
    image = tf.fill([side, side, 3], 200.0)
    rows, cols = np.mgrid[0:side, 0:side] + 0.5
    distance = np.hypot(rows - side / 2, cols - side / 2)
    far = FIELD_RADIUS[1] + FIELD_CENTRE_SHIFT * np.sqrt(2) + FIELD_EDGE[1]
    near = FIELD_RADIUS[0] - FIELD_CENTRE_SHIFT * np.sqrt(2) - FIELD_EDGE[1]
    darkened = []
    for k in range(12):
        seeds = tf.random.split(tf.constant([k, 7], tf.int64), 4)
        out = dermoscope_field(image, seeds).numpy()
        np.testing.assert_array_equal(out, dermoscope_field(image, seeds).numpy())
        assert out.max() <= 200.0 + 1e-3
        np.testing.assert_allclose(out[distance < near * side - 1], 200.0, atol=1e-3)
        assert (out[distance > far * side + 1] <= FIELD_OUTSIDE_LEVEL[1] + 1e-3).all()
        darkened.append(out[0, 0, 0] < 100)
    assert 0 < sum(darkened) < 12  # some fields reach past the corners, others do not


def test_augment_with_field_darkens_some_corners() -> None:
    """``augment(field=1)`` draws a field of view on every picture: over a few seeds, the
    corners of a flat bright grey picture come out dark on some, never the centre (the
    colour jitter moves a flat grey picture by at most a tenth of the range)."""
    import tensorflow as tf

    image = tf.fill([64, 64, 3], 200.0)
    outs = [augment(image, tf.constant([s, 3], tf.int64), field=1.0).numpy() for s in range(10)]
    assert all(o[32, 32].min() > 170 for o in outs)
    assert sum(o[0, 0].max() < 90 for o in outs) >= 3
    plain = [augment(image, tf.constant([s, 3], tf.int64)).numpy() for s in range(10)]
    assert all(o[0, 0].min() > 170 for o in plain)
