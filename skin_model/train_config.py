"""The training configuration and what it decides about the loss: each run's settings
(saved in the model's manifest), the per-picture class weights and the loss."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .classes import CLASS_NAMES
from .models import DEFAULT_INPUT_SIZE


def option(default: Any, help: str, flag: str | None = None, kind: type | None = None, metavar: str | None = None):
    """A training setting: its default, and the ``train`` flag that sets it (its name,
    help text, and the type of a setting whose default is None). The command line is
    generated from these, so a default and its help live in one place."""
    meta = {"help": help, "flag": flag, "kind": kind, "metavar": metavar}
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a training run; saved in the model's manifest."""

    arch: str = option(
        "skinnet", "skinnet, effnet_lite0 or effnet_lite2 (ImageNet-pretrained), seed_cnn, or tiny_cnn (tests)"
    )
    input_size: int | None = option(None, "square input size in pixels (default per architecture)", kind=int)
    epochs: int = option(40, "epochs at most")
    batch_size: int = option(32, "pictures per step")
    learning_rate: float = option(2e-3, "peak learning rate", flag="--lr")
    weight_decay: float = option(1e-4, "AdamW's decoupled weight decay (per step, times the rate)")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy")
    class_balanced: bool = option(True, "do not weight classes by inverse frequency", flag="--no-class-balance")
    patience: int = option(10, "epochs without improvement before stopping")
    warmup_epochs: int = option(2, "epochs of linear learning-rate warm-up before the cosine decay")
    seed: int = option(1337, "random seed of weights, shuffling and augmentation")
    malignant_sensitivity_target: float = option(
        0.9, "validation malignant sensitivity the referral threshold is fitted for", flag="--sensitivity-target"
    )
    referral_rule: str = option(
        "weakest-collection",
        "how the referral threshold is fitted on validation: pooled (the pooled pictures reach the sensitivity "
        "target) or weakest-collection (every image collection reaches it on its own)",
        metavar="RULE",
    )
    tta: bool = option(False, "evaluate with 8-view test-time augmentation")
    tta_views: str = option(
        "turns_and_centre",
        "the 8 test-time views: turns_and_centre (4 quarter turns of the picture and of its central 80 %%) "
        "or dihedral (flips and quarter turns)",
        metavar="VIEWS",
    )
    bootstrap: int = option(1000, "bootstrap resamples of the evaluation's intervals")
    feature_views: int = option(4, "pretrained models: augmented views per image for the cached-feature head warm-up")
    head_epochs: int = option(60, "pretrained models: epochs of the head warm-up on the cached features")
    unfreeze_from: str | None = option(
        None, "pretrained models: first layer to fine-tune (default: the top blocks)", kind=str, metavar="LAYER"
    )
    ema_momentum: float | None = option(
        None, "select and save the exponential moving average of the weights (e.g. 0.99)", "--ema", float, "MOMENTUM"
    )
    mixup_alpha: float | None = option(
        None, "mix training images in pairs, weight ~ Beta(ALPHA, ALPHA)", "--mixup", float, "ALPHA"
    )
    zoom: float = option(0.15, "augmentation: random crops keep between 1 - ZOOM and all of each side")
    train_batch_norm: bool = option(
        False,
        "pretrained models: fine-tune the batch norms of the unfrozen blocks too (default: keep ImageNet's)",
        flag="--train-bn",
    )
    stochastic_depth: float = option(
        0.0,
        "pretrained models: drop residual branches in training, up to RATE at the last block (0: off)",
        metavar="RATE",
    )
    source_balanced: bool = option(
        False,
        "share each class's weight equally between the image collections holding it, so no collection's "
        "class mix can stand in for the class (default: plain class weights)",
    )
    low_res: float = option(
        0.0,
        "augmentation: with probability P pass a picture through 60-100%% of its resolution and back",
        metavar="P",
    )
    logit_adjustment: float = option(
        0.0,
        "balance the classes by shifting the training loss's logits by TAU x log class prior (logit "
        "adjustment, Menon et al. 2021) instead of weighting the images (0: class weights)",
        flag="--logit-adjust",
        metavar="TAU",
    )
    camera: float = option(
        0.0,
        "augmentation: with probability P change a picture as another camera or save would (exposure, white "
        "balance, 50-100%% resolution, JPEG quality 30-95)",
        metavar="P",
    )
    jpeg: float = option(
        0.0, "augmentation: with probability P re-compress a picture as JPEG at quality 40-95", metavar="P"
    )
    resave: float = option(
        0.0,
        "augmentation: with probability P train on the picture saved again at its own resolution (JPEG quality "
        "30-95, half of the time shrunk to 50-100%% of its side first), as another clinic would store it",
        metavar="P",
    )
    light: float = option(
        0.0,
        "augmentation: with probability P change a picture's exposure (x0.75-1.25) and white balance "
        "(+-10%% per channel) only",
        metavar="P",
    )
    train_fraction: float = option(
        1.0, "train on about F of each class's training pictures, whole lesion groups (learning curves)", metavar="F"
    )
    layer_decay: float | None = option(
        None,
        "pretrained backbones: layer-wise learning-rate decay, block k learns at D ** (last block - k) times "
        "the head's rate (default: one rate)",
        kind=float,
        metavar="D",
    )
    colour_constancy: bool = option(
        False, "pretrained models: balance every picture's colour and exposure inside the model (Shades of Gray)"
    )
    aspect: float = option(
        0.0,
        "augmentation: stretch crops by up to 1 + A either way before the square resize, so a squashed and an "
        "unsquashed photo of one lesion look alike",
        metavar="A",
    )
    field: float = option(
        0.0,
        "augmentation: with probability P darken what lies outside a round field of view of random size and "
        "centre, as another dermoscope's rim would, so the rim says nothing about where a picture came from",
        metavar="P",
    )
    lesion_focus: float = option(
        0.0,
        "models pooling a last feature grid: add W times the share of the true class's activation map that "
        "lies outside the lesion mask (HAM10000's pictures) to the loss, so the evidence comes from the "
        "lesion and not from the skin, rim and compression around it (0: off)",
        metavar="W",
    )
    lesion_focus_exempt: str = option(
        "",
        "comma-separated classes whose pictures --lesion-focus leaves unconstrained, for diagnoses that read "
        "the skin around the lesion (e.g. 'actinic keratosis'; default: none)",
        metavar="CLASSES",
    )
    class_weight_power: float = option(
        1.0, "class weights are inverse class frequency to the power P (1: fully balanced, 0: none)", metavar="P"
    )
    weighting_search: bool = option(
        False,
        "pretrained models: choose the class-weight power and --source-balanced on validation, with heads "
        "trained on the cached warm-up features, before fine-tuning",
    )
    nevus_recall_floor: float | None = option(
        None,
        "prefer weightings and epochs that keep validation nevus recall at R or more (a clinic's stream is "
        "mostly nevi; default: off)",
        flag="--nevus-floor",
        kind=float,
        metavar="R",
    )

    leave_out: str | None = option(
        None,
        "train and select without one image collection (seed, isic2017 or ham10000) and measure its unseen "
        "validation and test pictures as the split held_out: how the recipe does on a new clinic's camera",
        kind=str,
        metavar="COLLECTION",
    )
    init_from: str | None = option(
        None,
        "pretrained backbones: fine-tune further from a saved model folder's weights (same architecture and "
        "input size), instead of warming up a new head",
        kind=str,
        metavar="MODEL_DIR",
    )

    def resolved_input_size(self) -> int:
        return self.input_size or DEFAULT_INPUT_SIZE.get(self.arch, 160)


def add_config_flags(parser: argparse.ArgumentParser, config_class: type = TrainConfig) -> None:
    """One flag per setting of ``config_class`` (a dataclass of :func:`option` fields,
    :class:`TrainConfig` by default), with its default and help."""
    for setting in fields(config_class):
        meta = setting.metadata
        flag = meta.get("flag") or "--" + setting.name.replace("_", "-")
        default = setting.default
        if isinstance(default, bool):
            action = "store_false" if default else "store_true"
            parser.add_argument(flag, dest=setting.name, action=action, help=meta["help"])
            continue
        kind = meta.get("kind") or type(default)
        shown = "" if default is None else f" (default {default})"
        parser.add_argument(
            flag, dest=setting.name, type=kind, default=default, metavar=meta.get("metavar"), help=meta["help"] + shown
        )


def config_from_args(args: argparse.Namespace, config_class: type = TrainConfig) -> Any:
    """The configuration (a ``config_class``) the flags of :func:`add_config_flags` describe."""
    return config_class(**{setting.name: getattr(args, setting.name) for setting in fields(config_class)})


def class_weights(y: np.ndarray, n_classes: int = len(CLASS_NAMES), power: float = 1.0) -> np.ndarray:
    """Inverse-frequency weights to ``power`` (1: every class weighs the same in total;
    below 1 the common classes keep part of their weight), normalised to mean 1 over the
    samples (absent classes 0)."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    raw = np.where(counts > 0, 1.0 / np.maximum(counts, 1) ** power, 0.0)
    return raw * len(y) / float((raw * counts).sum())


def source_balanced_weights(
    y: np.ndarray, collections: np.ndarray, n_classes: int = len(CLASS_NAMES), power: float = 1.0
) -> np.ndarray:
    """Per-sample weights that keep each class's total of :func:`class_weights` but share
    it equally between the collections holding that class. When one collection brings
    mostly nevi and another mostly melanomas, plain class weights still let the model
    read the class off the collection's look; here, within every collection, each of
    its classes weighs the same."""
    base = class_weights(y, n_classes, power)
    weights = np.zeros(len(y))
    for c in np.unique(y):
        in_class = y == c
        holders = np.unique(collections[in_class])
        for collection in holders:
            cell = in_class & (collections == collection)
            weights[cell] = base[c] * in_class.sum() / (len(holders) * cell.sum())
    return weights


def focus_exempt_classes(config: TrainConfig) -> tuple[str, ...]:
    """The classes ``--lesion-focus-exempt`` names, each checked against the class list."""
    names = tuple(name.strip() for name in config.lesion_focus_exempt.split(",") if name.strip())
    unknown = [name for name in names if name not in CLASS_NAMES]
    if unknown:
        raise ValueError(f"--lesion-focus-exempt: unknown class(es) {', '.join(map(repr, unknown))}")
    if names and not config.lesion_focus:
        raise ValueError("--lesion-focus-exempt only applies with --lesion-focus")
    return names


def training_sample_weights(config: TrainConfig, y: np.ndarray, collections: np.ndarray) -> np.ndarray:
    """The loss weight of each training image under ``config`` (all 1 with logit
    adjustment, which balances the classes in the loss instead)."""
    if config.logit_adjustment:
        if config.source_balanced:
            raise ValueError("logit adjustment replaces the class weights; it cannot share them between collections")
        return np.ones(len(y))
    if not config.class_balanced:
        if config.source_balanced:
            raise ValueError("source-balanced weights share the class weights: they need class balancing on")
        return np.ones(len(y))
    power = config.class_weight_power
    if config.source_balanced:
        return source_balanced_weights(y, collections, power=power)
    return class_weights(y, power=power)[y]


def training_loss(config: TrainConfig, y: np.ndarray):
    """The loss on the model's probabilities: cross-entropy with label smoothing, on
    probabilities shifted by ``logit_adjustment`` times the log class prior of ``y``
    when that is set (rare classes then need a larger margin to be right in training,
    so the unshifted answer favours no class for being common)."""
    import keras
    from keras import ops

    if not config.logit_adjustment:
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    counts = np.bincount(y, minlength=len(CLASS_NAMES)).astype(np.float32)
    shift = config.logit_adjustment * np.log(np.maximum(counts, 1.0) / counts.sum())
    smoothing = config.label_smoothing

    def logit_adjusted_crossentropy(y_true, y_pred):
        n = ops.cast(ops.shape(y_true)[-1], y_pred.dtype)
        target = y_true * (1.0 - smoothing) + smoothing / n
        shifted = ops.log(ops.clip(y_pred, 1e-12, 1.0)) + ops.convert_to_tensor(shift, y_pred.dtype)
        return -ops.sum(target * (shifted - ops.logsumexp(shifted, axis=-1, keepdims=True)), axis=-1)

    return logit_adjusted_crossentropy
