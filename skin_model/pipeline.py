"""Model input: the one resize used everywhere, a decoded-image cache, and the
tf.data pipelines (augmentation happens here, after splitting, on training data only).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from .classes import CLASS_NAMES
from .images import load_image

CACHE_ENV_VAR = "SKIN_CACHE_DIR"
RESIZE_METHOD = "PIL bilinear (antialiased) resize of the whole upright RGB image to size x size"
# The one geometry rule, for every caller (training, evaluation, app, command line,
# exports): the whole upright picture, whatever its size and shape, is squashed to the
# square input; nothing is cropped away. The seed set's pictures already are 4:3
# pictures squashed to squares and ISIC 2017's are squares, so HAM10000's 4:3 pictures
# and a user's photo of any shape land in the same geometry; training stretches crops
# by up to a third either way (``augment(aspect=...)``) so a photo cropped square
# before it arrives gets the same answer.
GEOMETRY_RULE = (
    "the whole upright picture squashed to the square input (no crop, any aspect ratio); "
    "training stretches its crops by up to a third either way"
)


def to_model_input(image: Image.Image, size: int) -> np.ndarray:
    """uint8 (size, size, 3) array: the exact resize used in training and inference."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def default_cache_dir() -> Path:
    """``$SKIN_CACHE_DIR`` or ``~/.cache/skin_model``."""
    return Path(os.environ.get(CACHE_ENV_VAR, Path.home() / ".cache" / "skin_model"))


RESAVE_QUALITY = (30, 95)  # ``train --resave``: JPEG qualities of the saved-again copies
RESAVE_SMALLER = (0.5, 1.0)  # the share of its side a copy keeps, half of the time


def saved_again(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The picture as another clinic's camera or archive might have stored it: half of
    the time shrunk to 50-100 % of its side, then saved as JPEG at a quality of 30-95
    (chroma subsampled, PIL's default), at the picture's own resolution. Done before
    the resize to the model's input, where a real re-save happens: compressing the
    already resized picture (``camera_degrade``) leaves other traces, and the model had
    learnt to tell a collection's own quality from them."""
    import io

    image = image.convert("RGB")
    if rng.random() < 0.5:
        share = rng.uniform(*RESAVE_SMALLER)
        smaller = (max(1, round(image.width * share)), max(1, round(image.height * share)))
        image = image.resize(smaller, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(RESAVE_QUALITY[0], RESAVE_QUALITY[1] + 1)))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def load_arrays(
    rows: pd.DataFrame,
    size: int,
    cache_dir: Path | None = None,
    progress: bool = True,
    resaved_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize the images of manifest ``rows`` into ``(x uint8, y int)``;
    with ``resaved_seed``, each picture :func:`saved_again` first (a generator seeded
    by the seed and the picture's position), the copies ``train --resave`` learns from.

    The result is cached as .npz keyed by the files' content hashes, labels and
    size, so later epochs and runs skip JPEG decoding entirely.
    """
    key_src = "|".join(f"{h}:{lab}" for h, lab in zip(rows["sha256"], rows["final_label"], strict=True))
    variant = "" if resaved_seed is None else f"resaved{resaved_seed}|"
    key = hashlib.sha256(f"{variant}{size}|{key_src}".encode()).hexdigest()[:24]
    cache = (cache_dir or default_cache_dir()) / f"images-{size}-{key}.npz"
    if cache.exists():
        with np.load(cache) as data:
            return data["x"], data["y"]
    x = np.zeros((len(rows), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(tqdm(rows["path"], desc=f"decoding {len(rows)} images", disable=not progress)):
        image = load_image(path).image
        if resaved_seed is not None:
            image = saved_again(image, np.random.default_rng([resaved_seed, i]))
        x[i] = to_model_input(image, size)
    y = np.array([CLASS_NAMES.index(lab) for lab in rows["final_label"]], dtype=np.int32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file of its own, then an atomic rename: several processes filling the
    # same cache at once (training workers on one machine) each finish, and a reader
    # never sees a half-written file
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f"{cache.stem}.", suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return x, y


def load_masks(rows: pd.DataFrame, size: int, cache_dir: Path | None = None, progress: bool = True) -> np.ndarray:
    """The lesion masks of ``rows`` (column ``mask_path``) squashed to (n, size, size)
    uint8 (0-255) as their pictures are, cached by the pictures' content hashes like
    the pictures themselves."""
    key = hashlib.sha256(f"masks|{size}|{'|'.join(rows['sha256'])}".encode()).hexdigest()[:24]
    cache = (cache_dir or default_cache_dir()) / f"masks-{size}-{key}.npy"
    if cache.exists():
        return np.load(cache)
    out = np.zeros((len(rows), size, size), np.uint8)
    for i, path in enumerate(tqdm(rows["mask_path"], desc=f"decoding {len(rows)} masks", disable=not progress)):
        out[i] = np.asarray(load_image(path).image.convert("L").resize((size, size), Image.Resampling.BILINEAR))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


CAMERA_JPEG_QUALITY = (30, 95)
# ``train --jpeg``: from below the ISIC 2017 pictures' quality (about 75) to the seed set's (about 95)
JPEG_QUALITY = (40, 95)
CAMERA_EXPOSURE = (0.75, 1.25)
CAMERA_WHITE_BALANCE = 0.1  # each channel's gain within 1 +- this
CAMERA_RESOLUTION = (0.5, 1.0)  # share of the side the picture passes through
# A dermoscope's round field of view: its radius as a share of the picture's side (the
# corners lie at 0.71, so the larger radii darken the corners only), how far its centre
# strays from the picture's, the width of its soft edge, and the grey level outside it.
FIELD_RADIUS = (0.42, 0.8)
FIELD_CENTRE_SHIFT = 0.08
FIELD_EDGE = (0.01, 0.06)
FIELD_OUTSIDE_LEVEL = (0.0, 30.0)


def light_change(image, seeds):
    """Another light or white balance on the same photo (float 0-255 in and out): an
    exposure factor in :data:`CAMERA_EXPOSURE` and a gain per channel within
    :data:`CAMERA_WHITE_BALANCE`. ``seeds``: 2 stateless seed pairs."""
    import tensorflow as tf

    exposure = tf.random.stateless_uniform([], seeds[0], *CAMERA_EXPOSURE)
    gains = tf.random.stateless_uniform([3], seeds[1], 1 - CAMERA_WHITE_BALANCE, 1 + CAMERA_WHITE_BALANCE)
    return tf.clip_by_value(image * exposure * gains, 0.0, 255.0)


def camera_degrade(image, seeds):
    """What another camera or another save does to a photo (float 0-255 in and out):
    an exposure and white-balance change, a pass through 50-100 % of the resolution, and
    JPEG re-compression at quality 30-95. ``seeds``: 4 stateless seed pairs."""
    import tensorflow as tf

    size = tf.shape(image)[0]
    image = light_change(image, seeds[:2])
    side = tf.cast(tf.cast(size, tf.float32) * tf.random.stateless_uniform([], seeds[2], *CAMERA_RESOLUTION), tf.int32)
    image = tf.image.resize(tf.image.resize(image, tf.stack([side, side]), antialias=True), tf.stack([size, size]))
    image = tf.image.stateless_random_jpeg_quality(
        tf.clip_by_value(image, 0.0, 255.0) / 255.0, *CAMERA_JPEG_QUALITY, seed=seeds[3]
    )
    return tf.reshape(image * 255.0, tf.shape(image))


def dermoscope_field(image, seeds):
    """The picture seen through another dermoscope's round field of view (float 0-255 in
    and out): dark outside a circle of random radius and centre, with a soft edge.

    Dermoscopes differ in how much of their dark round rim reaches the picture: the
    collections show it on a minority of pictures, in different shares, and a new
    clinic's dermoscope may show it on every picture or none. Training with random rims
    keeps the rim from standing in for a collection and its class mix, and keeps the
    evidence off the corners (the "microscope" augmentation of the SIIM-ISIC 2020
    melanoma challenge's winning solutions).
    ``seeds``: 4 stateless seed pairs."""
    import tensorflow as tf

    side = tf.cast(tf.shape(image)[0], tf.float32)
    radius = tf.random.stateless_uniform([], seeds[0], *FIELD_RADIUS) * side
    centre = side / 2 + tf.random.stateless_uniform([2], seeds[1], -FIELD_CENTRE_SHIFT, FIELD_CENTRE_SHIFT) * side
    edge = tf.random.stateless_uniform([], seeds[2], *FIELD_EDGE) * side + 1.0
    outside_level = tf.random.stateless_uniform([], seeds[3], *FIELD_OUTSIDE_LEVEL)
    coords = tf.range(side) + 0.5
    distance = tf.sqrt((coords[:, None] - centre[0]) ** 2 + (coords[None, :] - centre[1]) ** 2)
    inside = tf.clip_by_value((radius - distance) / edge + 0.5, 0.0, 1.0)[..., None]
    return image * inside + outside_level * (1.0 - inside)


def _sometimes(image, probability: float, pick_seed, change):
    """``change(image)`` with the given probability, else ``image`` (stateless: the draw
    is fixed by ``pick_seed``)."""
    import tensorflow as tf

    return tf.cond(tf.random.stateless_uniform([], pick_seed) < probability, lambda: change(image), lambda: image)


def _random_crop_shape(size, seeds, zoom: float, aspect: float, channels: int = 3):
    """The shape of :func:`augment`'s random crop: a side of 1 - ``zoom`` to all of the
    picture's, stretched by up to 1 + ``aspect`` either way (capped at the picture)."""
    import tensorflow as tf

    scale = tf.random.stateless_uniform([], seeds[3], 1.0 - zoom, 1.0)
    side = tf.cast(size, tf.float32) * scale
    if aspect > 0:
        # a stretch by up to 1 + aspect either way (seeds derived from the last one, apart from the others')
        log_ratio = tf.random.stateless_uniform([], tf.random.split(seeds[7], 15)[13], -1.0, 1.0) * tf.math.log1p(
            aspect
        )
        ratio = tf.exp(log_ratio)
        crop_h = tf.minimum(side * tf.sqrt(ratio), tf.cast(size, tf.float32))
        crop_w = tf.minimum(side / tf.sqrt(ratio), tf.cast(size, tf.float32))
        crop_shape = tf.stack([tf.cast(crop_h, tf.int32), tf.cast(crop_w, tf.int32), channels])
    else:
        crop = tf.cast(side, tf.int32)
        crop_shape = tf.stack([crop, crop, channels])
    return crop_shape


def augment(
    image,
    seed_pair,
    zoom: float = 0.15,
    jitter: float = 0.1,
    low_res: float = 0.0,
    camera: float = 0.0,
    jpeg: float = 0.0,
    light: float = 0.0,
    aspect: float = 0.0,
    field: float = 0.0,
    mask=None,
):
    """Random flips, 90-degree rotations, zoom-crop and colour jitter (float 0-255 in
    and out). Dermoscopy has no canonical orientation, so all eight symmetries are valid.
    ``aspect``: the crop's shape is stretched by up to ``1 + aspect`` either way before
    it is resized to the square input, so that a picture squashed to a square (the seed
    set, from 4:3) and one kept at its own shape say the same (see :data:`GEOMETRY_RULE`).
    ``low_res``: the probability of passing the picture through a lower resolution
    (60-100 % of its side and back), so sharpness, which differs between the image
    collections, says less about where a picture came from. ``camera``: the probability
    of :func:`camera_degrade` (exposure, white balance, resolution, JPEG), the changes a
    second photo of the lesion may bring, which the untrained model's answer did not
    survive (see ``skin_model.robustness``). ``jpeg``: the probability of JPEG
    re-compression alone at quality :data:`JPEG_QUALITY`; the two image collections were
    saved at different qualities (seed set about 95, ISIC 2017 about 75, and ISIC 2017
    holds only three classes), so without it the model can read the class off the
    compression (``benchmarks/jpeg_shortcut.py``). ``light``: the probability of
    :func:`light_change` alone (exposure and white balance, no resolution or JPEG change).
    ``field``: the probability of :func:`dermoscope_field` (another dermoscope's round
    field of view), applied before the camera change so its edge is compressed too.
    ``mask`` (float (size, size, 1), the lesion mask of ``train --lesion-focus``) takes
    the same flips, turn and crop as the picture and none of the capture changes; then
    the result is ``(image, mask)``. The draws are those of the picture alone."""
    import tensorflow as tf

    seeds = tf.random.split(seed_pair, 8)
    image, mask = _random_geometry(image, mask, seeds, zoom, aspect)
    image = _capture_changes(image, seeds[7], low_res=low_res, field=field, camera=camera, jpeg=jpeg, light=light)
    image = image / 255.0
    image = tf.image.stateless_random_brightness(image, jitter, seeds[5])
    image = tf.image.stateless_random_contrast(image, 1 - 2 * jitter, 1 + 2 * jitter, seeds[6])
    image = tf.image.stateless_random_saturation(image, 1 - 2 * jitter, 1 + 2 * jitter, seeds[7])
    image = tf.clip_by_value(image, 0.0, 1.0) * 255.0
    return image if mask is None else (image, mask)


def _random_geometry(image, mask, seeds, zoom: float, aspect: float):
    """The flips, quarter turn and stretched crop of :func:`augment`, resized back to the
    square input; the mask (or None) takes exactly the picture's."""
    import tensorflow as tf

    size = tf.shape(image)[0]
    if mask is not None:
        image = tf.concat([image, mask], axis=-1)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    image = tf.image.stateless_random_flip_up_down(image, seeds[1])
    k = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    crop_shape = _random_crop_shape(size, seeds, zoom, aspect, 3 if mask is None else 4)
    image = tf.image.stateless_random_crop(image, crop_shape, seeds[4])
    image = tf.image.resize(image, tf.stack([size, size]))
    if mask is None:
        return image, None
    return tf.reshape(image[..., :3], [size, size, 3]), tf.reshape(image[..., 3:], [size, size, 1])


def _capture_changes(image, last_seed, low_res: float, field: float, camera: float, jpeg: float, light: float):
    """The capture changes of :func:`augment`, each with its probability. Every option
    draws from seeds of its own, split off ``last_seed``, so switching one on leaves
    the draws of the others (and of a run without any) as they were."""
    import tensorflow as tf

    size = tf.shape(image)[0]
    if low_res > 0:
        pick, side_seed = tf.unstack(tf.random.split(last_seed, 2))
        side = tf.cast(tf.cast(size, tf.float32) * tf.random.stateless_uniform([], side_seed, 0.6, 1.0), tf.int32)
        smaller = tf.stack([side, side])
        image = _sometimes(
            image,
            low_res,
            pick,
            lambda x: tf.image.resize(tf.image.resize(x, smaller, antialias=True), tf.stack([size, size])),
        )
    if field > 0:
        pick, *field_seeds = tf.unstack(tf.random.split(last_seed, 20)[15:20])
        image = _sometimes(image, field, pick, lambda x: dermoscope_field(x, field_seeds))
    if camera > 0:
        pick, *degrade_seeds = tf.unstack(tf.random.split(last_seed, 8)[3:8])
        image = _sometimes(image, camera, pick, lambda x: camera_degrade(x, degrade_seeds))
    if jpeg > 0:
        pick, quality_seed = tf.unstack(tf.random.split(last_seed, 10)[8:10])

        def recompress(x):
            unit = tf.clip_by_value(x, 0.0, 255.0) / 255.0
            return tf.image.stateless_random_jpeg_quality(unit, *JPEG_QUALITY, seed=quality_seed) * 255.0

        image = tf.reshape(_sometimes(image, jpeg, pick, recompress), [size, size, 3])
    if light > 0:
        pick, *light_seeds = tf.unstack(tf.random.split(last_seed, 13)[10:13])
        image = _sometimes(image, light, pick, lambda x: light_change(x, light_seeds))
    return image


def mixup_batch(images, labels, weights, seed_pair, alpha: float):
    """Mixup within a batch: image ``i`` becomes ``lam * image_i + (1 - lam) * image_j``
    with ``j`` its mirror in the (already shuffled) batch and ``lam ~ Beta(alpha, alpha)``
    per image; its one-hot label and its sample weight are mixed the same way. A
    regulariser for small training sets: the model cannot fit each picture exactly."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    seeds = tf.random.split(seed_pair, 2)
    a = tf.random.stateless_gamma([n], seeds[0], alpha)
    b = tf.random.stateless_gamma([n], seeds[1], alpha)
    lam = a / (a + b)

    def mix(t):
        share = tf.reshape(lam, [-1] + [1] * (len(t.shape) - 1))  # broadcast over the non-batch axes
        return share * t + (1 - share) * tf.reverse(t, [0])

    return mix(images), mix(labels), mix(weights), lam


def _element_augmenter(seed: int, resave: float, with_masks: bool, options: dict):
    """The training map of :func:`make_dataset`: one element (picture or its saved-again
    copy, mask, label, weight) and its index in, the augmented element out, seeded by
    the run's seed and the index so a run is reproducible."""
    import tensorflow as tf

    def augment_element(elem, idx):
        seed_pair = tf.stack([tf.constant(seed, tf.int64), idx])
        image = elem[0]
        if resave > 0:
            # a seed pair of its own (offset), so the augmentation's draws stay those of a run without it
            pick = tf.random.stateless_uniform([], seed_pair + tf.constant([0, 1 << 40], tf.int64)) < resave
            image = image[tf.cast(pick, tf.int32)]
        mask = tf.cast(elem[1], tf.float32) / 255.0 if with_masks else None
        out = augment(tf.cast(image, tf.float32), seed_pair, mask=mask, **options)
        return (out, *elem[2:]) if with_masks else (out, *elem[1:])

    return augment_element


def make_dataset(
    x: np.ndarray,
    y: np.ndarray | None = None,
    batch_size: int = 32,
    training: bool = False,
    seed: int = 0,
    sample_weights: np.ndarray | None = None,
    mixup_alpha: float | None = None,
    zoom: float = 0.15,
    low_res: float = 0.0,
    camera: float = 0.0,
    jpeg: float = 0.0,
    light: float = 0.0,
    aspect: float = 0.0,
    field: float = 0.0,
    resaved: np.ndarray | None = None,
    resave: float = 0.0,
    masks: np.ndarray | None = None,
):
    """A batched, prefetched tf.data pipeline over in-memory uint8 images.

    Training shuffles each epoch and augments with stateless ops seeded per
    element, so a run is reproducible for a given seed; ``zoom`` is the largest
    fraction of the side the random crop may cut off, ``low_res`` the probability of
    a lower-resolution pass, ``camera`` that of a camera change, ``jpeg`` that of a
    JPEG re-compression, ``light`` that of a light change and ``field`` that of another
    dermoscope's field of view (see :func:`augment`).
    ``resaved``: the same pictures :func:`saved_again` (row for row), taken instead of
    the stored picture with probability ``resave`` (training only).
    ``masks``: uint8 (n, h, w) lesion masks row for row (255 where no mask is known),
    augmented with their pictures; the elements are then ``((image, mask 0-1), ...)``
    (training only, for ``train --lesion-focus``).
    """
    import tensorflow as tf

    if masks is not None and not training:
        raise ValueError("lesion masks are for training datasets only")
    if masks is not None and mixup_alpha:
        raise ValueError("mixup and lesion masks do not go together (a mixed picture has no one lesion)")

    if resave > 0 and training:
        if resaved is None or resaved.shape != x.shape:
            raise ValueError("resave needs the saved-again copies of the same pictures")
        x = np.stack([x, resaved], axis=1)  # (n, 2, h, w, 3): each element carries both versions
    parts: list = [x] + ([] if y is None else [y]) + ([] if sample_weights is None else [sample_weights])
    with_masks = masks is not None
    if with_masks:
        parts.insert(1, masks[..., None])
    ds = tf.data.Dataset.from_tensor_slices(tuple(parts))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        counter = tf.data.Dataset.counter()
        ds = tf.data.Dataset.zip((ds, counter))
        options = dict(zoom=zoom, low_res=low_res, camera=camera, jpeg=jpeg, light=light, aspect=aspect, field=field)
        ds = ds.map(_element_augmenter(seed, resave, with_masks, options), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda *e: (tf.cast(e[0], tf.float32), *e[1:]), num_parallel_calls=tf.data.AUTOTUNE)
    if len(parts) == 1:
        ds = ds.map(lambda *e: e[0])
    ds = ds.batch(batch_size)
    if training and mixup_alpha:
        if len(parts) != 3:
            raise ValueError("mixup needs one-hot labels and sample weights")
        ds = ds.enumerate().map(
            lambda i, e: mixup_batch(*e, tf.stack([tf.constant(seed + 1, tf.int64), i]), mixup_alpha)[:3],
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)
