"""The training configuration and what it decides about the loss: each run's settings
(saved in the model's manifest), the per-picture class weights and the loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import CLASS_NAMES
from .models import DEFAULT_INPUT_SIZE


@dataclass
class TrainConfig:
    arch: str = "skinnet"
    input_size: int | None = None
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    class_balanced: bool = True
    patience: int = 10
    warmup_epochs: int = 2
    seed: int = 1337
    malignant_sensitivity_target: float = 0.9
    tta: bool = False
    bootstrap: int = 1000
    # pretrained backbones only: head warm-up on cached features before fine-tuning
    feature_views: int = 4
    head_epochs: int = 60
    unfreeze_from: str | None = None  # default: models.FINETUNE_FROM[arch]
    # Polyak averaging: select and ship the exponential moving average of the weights
    ema_momentum: float | None = None
    # mixup of training images within each batch, lam ~ Beta(alpha, alpha); None = off
    mixup_alpha: float | None = None
    # augmentation: the random crop keeps between (1 - zoom) and all of each side
    zoom: float = 0.15
    # pretrained backbones: also fine-tune the batch norms of the unfrozen blocks
    # (scale, offset and batch statistics) instead of keeping ImageNet's
    train_batch_norm: bool = False
    # pretrained backbones: stochastic depth, the drop probability of the last residual
    # branch in training (the reference trains EfficientNets with 0.2); 0 = off
    stochastic_depth: float = 0.0
    # class weights shared equally between the image collections holding each class
    # (training.source_balanced_weights); needs class_balanced
    source_balanced: bool = False
    # augmentation: probability of a lower-resolution pass (pipeline.augment); 0 = off
    low_res: float = 0.0
    # logit adjustment (Menon et al. 2021): the loss sees softmax(logits + tau * log prior)
    # with the training class prior, the model answers with softmax(logits); it balances
    # the classes in place of the class weights, which it turns off. 0 = off
    logit_adjustment: float = 0.0
    # augmentation: probability of a camera change (pipeline.camera_degrade); 0 = off
    camera: float = 0.0
    # augmentation: probability of a JPEG re-compression alone (pipeline.augment); 0 = off
    jpeg: float = 0.0
    # augmentation: probability of a light change alone, exposure and white balance
    # (pipeline.light_change); 0 = off
    light: float = 0.0
    # train on this share of the training split's pictures (whole lesion groups, per class;
    # for learning curves: how much would more data help?). 1 = all
    train_fraction: float = 1.0
    # pretrained backbones: layer-wise learning-rate decay, the learning rate of block k
    # is layer_decay ** (last block - k) times the head's, so that deeper unfreezing
    # moves the generic early blocks less; None = one rate for all
    layer_decay: float | None = None
    # pretrained backbones: Shades of Gray white balance inside the model, in front of
    # the backbone (skin_model.colour_constancy), so training and every caller see it
    colour_constancy: bool = False
    # augmentation: crops stretched by up to 1 + aspect either way (pipeline.augment); 0 = off
    aspect: float = 0.0
    # class weights are inverse class frequency to this power (1 = fully balanced, 0 = none)
    class_weight_power: float = 1.0
    # pretrained backbones: pick class_weight_power and source_balanced on the cached
    # features of the head warm-up, by validation (see choose_weighting), before fine-tuning
    weighting_search: bool = False
    # validation nevus recall an answer must keep (a clinic's stream is mostly nevi): the
    # weighting search and the epoch selection prefer settings that keep it; None = ignore
    nevus_recall_floor: float | None = None

    def resolved_input_size(self) -> int:
        return self.input_size or DEFAULT_INPUT_SIZE.get(self.arch, 160)


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
