"""Training and measuring the lesion segmenter on HAM10000's expert masks.

The splits are the classifier's (pictures of one lesion on one side, across collections),
restricted to the pictures that come with a mask; pictures and masks go through the same
geometry rule as the classifier (squashed to the square input) and the same capture
changes (exposure, white balance, resolution, JPEG, another dermoscope's field of view),
so the mask does not depend on the camera any more than the diagnosis should.

A run is resumable: after every epoch the weights, the optimizer's state, the best weights
so far and the history are stored in ``<out>/checkpoint/``; each epoch's order and
augmentation are drawn from (seed, epoch), so a resumed run repeats what an uninterrupted
one would have done.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from .checkpoint import TrainingCheckpoint
from .images import load_image
from .manifest import Manifest
from .pipeline import (
    GEOMETRY_RULE,
    camera_degrade,
    dermoscope_field,
    load_arrays,
    load_masks,
    to_model_input,
)
from .segmentation import MASK_LEVEL, Segmenter, dice, jaccard, mask_of, save_segmenter
from .train_config import option

THRESHOLDED_JACCARD_BELOW = 0.65  # the ISIC 2018 challenge's score counts a picture below this as 0


@dataclass
class SegmenterConfig:
    """Every setting of a segmentation run (saved in the segmenter's manifest); the
    ``train-segmenter`` flags are generated from these."""

    arch: str = option("lite0_unet", "lite0_unet (ImageNet EfficientNet-Lite0 encoder) or tiny_unet (tests)")
    input_size: int = option(192, "square input size in pixels (a multiple of 32)")
    epochs: int = option(8, "epochs (the best on validation Dice is kept)")
    batch_size: int = option(16, "pictures per step")
    learning_rate: float = option(1e-3, "peak learning rate of the cosine schedule", flag="--lr")
    weight_decay: float = option(1e-4, "AdamW's decoupled weight decay")
    camera: float = option(0.6, "probability of another camera's exposure, resolution and JPEG", metavar="P")
    field: float = option(0.2, "probability of another dermoscope's round field of view", metavar="P")
    zoom: float = option(0.2, "random crops keep between 1 - ZOOM and all of each side")
    train_limit: int | None = option(None, "at most N training pictures (quick runs)", kind=int, metavar="N")
    seed: int = option(1337, "random seed of weights, order and augmentation")


def mask_rows(manifest: Manifest, split: str) -> pd.DataFrame:
    """The kept pictures of ``split`` that come with an expert lesion mask."""
    rows = manifest.kept(split)
    if "mask_path" not in rows:
        return rows.iloc[:0]
    return rows[rows["mask_path"].notna()].reset_index(drop=True)


def _joint_augment(image, mask, seed_pair, config: SegmenterConfig):
    """The same flips, quarter turns and crop on picture and mask; capture changes on
    the picture only (float 0-255 in and out)."""
    import tensorflow as tf

    size = tf.shape(image)[0]
    seeds = tf.random.split(seed_pair, 9)
    both = tf.concat([image, mask[..., None]], axis=-1)
    both = tf.image.stateless_random_flip_left_right(both, seeds[0])
    both = tf.image.stateless_random_flip_up_down(both, seeds[1])
    both = tf.image.rot90(both, tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32))
    side = tf.cast(
        tf.cast(size, tf.float32) * tf.random.stateless_uniform([], seeds[3], 1 - config.zoom, 1.0), tf.int32
    )
    both = tf.image.stateless_random_crop(both, tf.stack([side, side, 4]), seeds[4])
    both = tf.image.resize(both, tf.stack([size, size]))
    image, mask = both[..., :3], both[..., 3]
    if config.field > 0:
        field_seeds = tf.unstack(tf.random.split(seeds[5], 4))
        use = tf.random.stateless_uniform([], seeds[6]) < config.field
        image = tf.cond(use, lambda: dermoscope_field(image, field_seeds), lambda: image)
    if config.camera > 0:
        camera_seeds = tf.unstack(tf.random.split(seeds[7], 4))
        use = tf.random.stateless_uniform([], seeds[8]) < config.camera
        image = tf.cond(use, lambda: camera_degrade(image, camera_seeds), lambda: image)
    return tf.reshape(image, [size, size, 3]), tf.reshape(mask, [size, size, 1])


def segmentation_dataset(x: np.ndarray, masks: np.ndarray, config: SegmenterConfig, epoch: int):
    """One epoch's batches: order and augmentation drawn from (seed, epoch) alone."""
    import tensorflow as tf

    order = np.random.default_rng([config.seed, epoch]).permutation(len(x))
    ds = tf.data.Dataset.from_tensor_slices((x[order], masks[order], np.arange(len(x))))

    def prepare(image, mask, index):
        seed_pair = tf.stack([tf.constant(config.seed * 1000 + epoch, tf.int64), tf.cast(index, tf.int64)])
        image, mask = _joint_augment(tf.cast(image, tf.float32), tf.cast(mask, tf.float32) / 255.0, seed_pair, config)
        return image, mask

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(config.batch_size).prefetch(2)


def dice_bce_loss(truth, predicted):
    """Binary cross-entropy plus one minus the soft Dice of the batch: the first learns
    every pixel, the second keeps small lesions from being drowned by the skin around them."""
    import keras

    bce = keras.losses.binary_crossentropy(truth, predicted)
    overlap = keras.ops.sum(truth * predicted)
    soft_dice = (2.0 * overlap + 1.0) / (keras.ops.sum(truth) + keras.ops.sum(predicted) + 1.0)
    return keras.ops.mean(bce) + 1.0 - soft_dice


def _compile(model, config: SegmenterConfig, steps_per_epoch: int) -> None:
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    model.compile(optimizer=optimizer, loss=dice_bce_loss)
    optimizer.build(model.trainable_variables)


def square_dice(model, x: np.ndarray, masks: np.ndarray) -> float:
    """Mean Dice on the square inputs (the per-epoch selection score)."""
    probs = model.predict(np.asarray(x, np.float32), batch_size=64, verbose=0)[..., 0]
    return float(np.mean([dice(p >= 0.5, m >= MASK_LEVEL) for p, m in zip(probs, masks, strict=True)]))


def _restore(model, checkpoint: TrainingCheckpoint) -> dict[str, Any]:
    """Weights and optimizer state of the last completed epoch, and the run's progress."""
    state = checkpoint.read_json("progress.json") or {"epoch": 0, "history": [], "best": -1.0, "best_epoch": -1}
    if state["epoch"] > 0:
        model.set_weights(checkpoint.read_weights(f"last{state['epoch']}.npz"))
        optimizer = checkpoint.read_weights(f"optimizer{state['epoch']}.npz")
        for variable, value in zip(model.optimizer.variables, optimizer, strict=True):
            variable.assign(value)
    return state


def _epoch_end(model, checkpoint: TrainingCheckpoint, state: dict, score: float, loss: float) -> None:
    """Record an epoch: the weights and optimizer state under the epoch's number, then the
    progress record that names them (the commit point: a run stopped before it repeats the
    epoch from the previous epoch's files, which are removed only after it)."""
    state["history"].append({"loss": loss, "val_dice": score})
    if score > state["best"]:
        state["best"], state["best_epoch"] = score, state["epoch"]
        checkpoint.write_weights("best.npz", model.get_weights())
    state["epoch"] += 1
    checkpoint.write_weights(f"last{state['epoch']}.npz", model.get_weights())
    checkpoint.write_weights(f"optimizer{state['epoch']}.npz", [v.numpy() for v in model.optimizer.variables])
    checkpoint.write_json("progress.json", state)
    for stale in (f"last{state['epoch'] - 1}.npz", f"optimizer{state['epoch'] - 1}.npz"):
        (checkpoint.dir / stale).unlink(missing_ok=True)


def fit_segmenter(
    config: SegmenterConfig, data: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path, resume: bool, progress: bool
):
    """Train on ``data['train']``, keep the epoch with the best validation Dice; returns
    the model and the run's progress record."""
    import keras

    from .segmenter_model import build_segmenter

    keras.utils.set_random_seed(config.seed)
    x, masks = data["train"]
    model = build_segmenter(config.arch, config.input_size)
    _compile(model, config, int(np.ceil(len(x) / config.batch_size)))
    checkpoint = TrainingCheckpoint(out_dir, asdict(config), resume)
    state = _restore(model, checkpoint)
    if state["epoch"]:
        print(f"  resuming after epoch {state['epoch']} of {config.epochs}")
    for epoch in range(state["epoch"], config.epochs):
        print(f"Epoch {epoch + 1}/{config.epochs}")
        fitted = model.fit(segmentation_dataset(x, masks, config, epoch), epochs=1, verbose=1 if progress else 2)
        score = square_dice(model, *data["val"])
        print(f"  validation Dice {score:.4f}")
        _epoch_end(model, checkpoint, state, score, float(fitted.history["loss"][-1]))
    model.set_weights(checkpoint.read_weights("best.npz"))
    return model, state, checkpoint


def measure_segmenter(
    segmenter: Segmenter, rows: pd.DataFrame, change=None, bootstrap: int = 1000, progress: bool = False
) -> dict[str, Any]:
    """Dice and Jaccard at each picture's own size (the mask as :meth:`Segmenter.segment`
    returns it), means with 95 % bootstrap intervals, and the ISIC 2018 thresholded
    Jaccard; ``change`` (picture -> picture) is applied first (a re-save, a smaller copy)."""
    scores = []
    for picture, truth_path in tqdm(
        zip(rows["path"], rows["mask_path"], strict=True), total=len(rows), disable=not progress
    ):
        image = load_image(picture).image
        truth = np.asarray(load_image(truth_path).image.convert("L")) >= MASK_LEVEL
        seen = change(image) if change else image
        probability = segmenter.probabilities(to_model_input(seen, segmenter.input_size)[None])[0]
        predicted = mask_of(probability, image.size)
        scores.append((dice(predicted, truth), jaccard(predicted, truth)))
    values = np.array(scores)
    rng = np.random.default_rng(0)
    draws = np.array([values[rng.integers(0, len(values), len(values))].mean(axis=0) for _ in range(bootstrap)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    thresholded = np.where(values[:, 1] < THRESHOLDED_JACCARD_BELOW, 0.0, values[:, 1])
    return {
        "pictures": len(values),
        "dice": round(float(values[:, 0].mean()), 4),
        "dice_95ci": [round(float(low[0]), 4), round(float(high[0]), 4)],
        "jaccard": round(float(values[:, 1].mean()), 4),
        "jaccard_95ci": [round(float(low[1]), 4), round(float(high[1]), 4)],
        "thresholded_jaccard": round(float(thresholded.mean()), 4),
    }


def train_segmenter(
    config: SegmenterConfig, manifest: Manifest, out_dir: Path, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train, select on validation, measure validation and test at the pictures' own
    size, and write the segmenter folder; returns its manifest."""
    started = time.perf_counter()
    rows = {split: mask_rows(manifest, split) for split in ("train", "val", "test")}
    if config.train_limit:
        rows["train"] = rows["train"].iloc[: config.train_limit]
    if len(rows["train"]) == 0 or len(rows["val"]) == 0:
        raise ValueError("no training or validation pictures with a lesion mask in this data set")
    size = config.input_size
    data = {}
    for split in ("train", "val"):
        data[split] = (
            load_arrays(rows[split], size, progress=progress)[0],
            load_masks(rows[split], size, progress=progress),
        )
    model, state, checkpoint = fit_segmenter(config, data, out_dir, resume, progress)
    wall = time.perf_counter() - started
    segmenter = Segmenter(model, {"input_size": size})
    figures = {split: measure_segmenter(segmenter, rows[split], progress=progress) for split in ("val", "test")}
    record = {
        "name": Path(out_dir).name,
        "architecture": config.arch,
        "input_size": size,
        "geometry": GEOMETRY_RULE,
        "mask_rule": "lesion probability >= 0.5 on the square input, stretched back to the picture's size; "
        "the largest region kept, its holes filled",
        "training_config": asdict(config),
        "data_fingerprint": manifest.fingerprint(),
        "split_sizes": {split: len(r) for split, r in rows.items()},
        "training_wall_time_s": round(wall, 1),
        "best_epoch": state["best_epoch"] + 1,
        "history": state["history"],
        "metrics": figures,
    }
    save_segmenter(model, Path(out_dir), record)
    checkpoint.finish()
    return record
