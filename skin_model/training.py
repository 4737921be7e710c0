"""Training: class-balanced, augmented, early-stopped on validation balanced accuracy,
seeded, timed; the result is saved as a model artifact with its evaluation."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import artifact as artifact_io
from .classes import CLASS_NAMES, MALIGNANT_CLASSES, MALIGNANT_MASK, malignant_score
from .colour_constancy import DEFAULT_POWER, TARGET_GREY
from .conformal import PREDICTION_SETS_FILE, fit_from_evaluation
from .distribute import describe as describe_strategy
from .distribute import fit_multi_worker, is_multi_worker, strategy_from_environment
from .evaluation import by_collection, collections_of, evaluate_predictions, threshold_for_sensitivity, threshold_rule
from .inference import Predictor
from .manifest import Manifest
from .models import DEFAULT_INPUT_SIZE, FEATURE_OUTPUT, FINETUNE_FROM, build_model
from .pipeline import RESIZE_METHOD, load_arrays, make_dataset


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

    def resolved_input_size(self) -> int:
        return self.input_size or DEFAULT_INPUT_SIZE.get(self.arch, 160)


def class_weights(y: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 over the samples (absent classes 0)."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, len(y) / (np.maximum(counts, 1) * (counts > 0).sum()), 0.0)
    return weights


def source_balanced_weights(y: np.ndarray, collections: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Per-sample weights that keep each class's total of :func:`class_weights` but share
    it equally between the collections holding that class. When one collection brings
    mostly nevi and another mostly melanomas, plain class weights still let the model
    read the class off the collection's look; here, within every collection, each of
    its classes weighs the same."""
    base = class_weights(y, n_classes)
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
    return source_balanced_weights(y, collections) if config.source_balanced else class_weights(y)[y]


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


def _balanced_accuracy_callback(
    predictor: Predictor, x_val: np.ndarray, y_val: np.ndarray, patience: int, initial: tuple[float, list] | None = None
):
    import keras
    from sklearn.metrics import balanced_accuracy_score

    class BestOnValBalancedAccuracy(keras.callbacks.Callback):
        """Scores validation balanced accuracy each epoch, keeps the best weights,
        stops after ``patience`` epochs without improvement, restores the best."""

        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.wait = -1.0, -1, None, 0
            if initial is not None:  # e.g. the warmed-up head before fine-tuning (epoch 0)
                self.best, self.best_weights = initial

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            probs = predictor.predict_arrays(x_val)
            score = float(balanced_accuracy_score(y_val, probs.argmax(1)))
            if logs is not None:
                logs["val_balanced_accuracy"] = score
            print(f"  val balanced accuracy {score:.4f}" + ("  (best)" if score > self.best else ""))
            if score > self.best:
                self.best, self.best_epoch, self.wait = score, epoch, 0
                self.best_weights = self.model.get_weights()
            else:
                self.wait += 1
                if self.wait >= patience:
                    self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return BestOnValBalancedAccuracy()


def _features(model, layer: str, dataset, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Backbone features (and labels, if the dataset has them) for every batch."""
    import keras
    import tensorflow as tf
    from tqdm.auto import tqdm

    extractor = keras.Model(model.inputs, model.get_layer(layer).output)
    forward = tf.function(lambda x: extractor(x, training=False))
    feats, labels = [], []
    for batch in tqdm(dataset, desc=desc, disable=not progress, unit="batch"):
        images, *rest = batch if isinstance(batch, tuple) else (batch,)
        feats.append(forward(images).numpy())
        if rest:
            labels.append(np.asarray(rest[0]))
    return np.concatenate(feats), (np.concatenate(labels) if labels else None)


def warm_up_head(
    model, config: TrainConfig, x_train, y_train, x_val, y_val, progress: bool, sample_weights: np.ndarray
) -> tuple[float, list]:
    """Train only the new softmax head on frozen backbone features: a few augmented
    views of each training image, computed once. Fast on CPU, and it gives fine-tuning
    a sensible head to start from. Returns (val balanced accuracy, model weights)."""
    import keras
    from sklearn.metrics import balanced_accuracy_score

    layer = FEATURE_OUTPUT[config.arch]
    views_x, views_i = [], []
    for view in range(config.feature_views):
        # the dataset carries each image's index: shuffled views keep their label and weight
        ds = make_dataset(
            x_train,
            np.arange(len(x_train)),
            batch_size=64,
            training=True,
            seed=config.seed + view,
            zoom=config.zoom,
            low_res=config.low_res,
            camera=config.camera,
            jpeg=config.jpeg,
            light=config.light,
        )
        fx, fi = _features(model, layer, ds, progress, f"features, augmented view {view + 1}/{config.feature_views}")
        views_x.append(fx)
        views_i.append(fi)
    f_train, index = np.concatenate(views_x), np.concatenate(views_i).astype(int)
    y_feat, w_feat = y_train[index], sample_weights[index]
    f_val, _ = _features(model, layer, make_dataset(x_val, batch_size=64), progress, "features, validation")

    final = model.get_layer("probabilities")
    inputs = keras.Input(f_train.shape[1:])
    head_dense = keras.layers.Dense(len(CLASS_NAMES), activation="softmax")
    head = keras.Model(inputs, head_dense(keras.layers.Dropout(0.3)(inputs)))
    head.compile(
        keras.optimizers.AdamW(1e-3, weight_decay=1e-3),
        training_loss(config, y_train),
    )
    best, best_weights = -1.0, None
    onehot = np.eye(len(CLASS_NAMES), dtype=np.float32)[y_feat]
    for _ in range(config.head_epochs // 5):
        head.fit(f_train, onehot, sample_weight=w_feat, batch_size=64, epochs=5, verbose=0)
        score = balanced_accuracy_score(y_val, head.predict(f_val, verbose=0).argmax(1))
        if score > best:
            best, best_weights = score, head_dense.get_weights()
    final.set_weights(best_weights)
    print(f"  head warm-up on cached features: val balanced accuracy {best:.4f}")
    return float(best), model.get_weights()


def block_index(layer_name: str) -> int | None:
    """k for a backbone layer named ``block{k}_...``, else None."""
    match = re.match(r"block(\d+)_", layer_name)
    return int(match.group(1)) if match else None


def layer_rate_scales(model, decay: float) -> dict[str, float]:
    """Per weight path of ``model``, the factor on the learning rate under layer-wise
    decay: 1 for the last block and everything above it (head), ``decay ** d`` for a
    block d blocks below the last, and the stem one step below block 0."""
    blocks = [k for layer in model.layers if (k := block_index(layer.name)) is not None]
    last = max(blocks, default=0)
    scales, seen_block = {}, False
    for layer in model.layers:
        k = block_index(layer.name)
        seen_block = seen_block or k is not None
        depth = last - k if k is not None else (0 if seen_block else last + 1)
        for weight in layer.weights:
            scales[weight.path] = float(decay**depth)
    return scales


def layerwise_adamw(scales: dict[str, float], **options):
    """AdamW whose learning rate is multiplied, per weight, by ``scales[path]`` (1 for a
    weight not listed). Scaling the gradients instead would do nothing: Adam divides
    them by their own running size."""
    import keras

    class LayerwiseAdamW(keras.optimizers.AdamW):
        def build(self, variables):
            super().build(variables)
            # update_step gets the backend's variable (no Keras path): look it up by index
            self._rate_scales = [scales.get(v.path, 1.0) for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            scale = self._rate_scales[self._get_variable_index(variable)]
            return super().update_step(gradient, variable, learning_rate * scale)

    return LayerwiseAdamW(**options)


def freeze_for_finetuning(model, first_trainable: str, train_batch_norm: bool = False) -> int:
    """Freeze every layer before ``first_trainable``, and every batch norm unless
    ``train_batch_norm`` (frozen batch norms stay in inference mode, as usual when
    fine-tuning with small batches); returns the number of trainable weights left."""
    import keras

    trainable = False
    for layer in model.layers:
        trainable = trainable or layer.name == first_trainable
        is_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable and (train_batch_norm or not is_norm)
    return len(model.trainable_weights)


def training_subset(rows: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """About ``fraction`` of each class's training pictures, taken as whole groups (a
    lesion's or a duplicate's pictures stay together), in a seeded random order; the rows
    keep their order. A class keeps at least one group."""
    if fraction >= 1:
        return rows
    if not 0 < fraction < 1:
        raise ValueError(f"the training fraction must lie in (0, 1], not {fraction}")
    rng = np.random.default_rng(seed)
    keep: list[str] = []
    for _, members in rows.groupby("final_label", sort=True):
        sizes = members.groupby("group_id", sort=True).size()
        order = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        taken = np.cumsum(sizes.loc[order].to_numpy())
        keep += order[: max(1, int(np.searchsorted(taken, fraction * len(members))) + 1)].tolist()
    return rows[rows["group_id"].isin(keep)]


def train(
    config: TrainConfig,
    manifest: Manifest,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress: bool = True,
    keep_weights: bool = True,
) -> dict[str, Any]:
    """Train on the manifest's train split, select on val, evaluate val and test,
    save the artifact in ``out_dir``; returns the written manifest."""
    import keras
    import tensorflow as tf

    strategy = strategy_from_environment()  # first: a multi-worker strategy must precede any TF op
    if config.ema_momentum is not None and is_multi_worker(strategy):
        raise ValueError("weight averaging (ema_momentum) is not supported with multi-worker training")
    if config.logit_adjustment and is_multi_worker(strategy):
        raise ValueError("logit adjustment is not supported with multi-worker training")
    if config.layer_decay is not None and config.arch not in FINETUNE_FROM:
        raise ValueError(f"layer-wise learning-rate decay is for the pretrained backbones, not {config.arch!r}")
    keras.utils.set_random_seed(config.seed)
    size = config.resolved_input_size()
    splits = {name: manifest.kept(name) for name in ("train", "val", "test")}
    splits["train"] = training_subset(splits["train"], config.train_fraction, config.seed)
    arrays = {name: load_arrays(rows, size, cache_dir, progress) for name, rows in splits.items() if len(rows)}
    x_train, y_train = arrays["train"]
    x_val, y_val = arrays.get("val", arrays["train"])

    sample_weights = training_sample_weights(config, y_train, collections_of(splits["train"])).astype(np.float32)
    y_onehot = np.eye(len(CLASS_NAMES), dtype=np.float32)[y_train]
    train_ds = make_dataset(
        x_train,
        y_onehot,
        config.batch_size,
        training=True,
        seed=config.seed,
        sample_weights=sample_weights,
        mixup_alpha=config.mixup_alpha,
        zoom=config.zoom,
        low_res=config.low_res,
        camera=config.camera,
        jpeg=config.jpeg,
        light=config.light,
    )

    with strategy.scope():
        model = build_model(
            config.arch, size, stochastic_depth=config.stochastic_depth, colour_constancy=config.colour_constancy
        )
    started = time.perf_counter()
    initial = None
    if config.arch in FINETUNE_FROM:
        config.unfreeze_from = config.unfreeze_from or FINETUNE_FROM[config.arch]
        initial = warm_up_head(model, config, x_train, y_train, x_val, y_val, progress, sample_weights)
        freeze_for_finetuning(model, config.unfreeze_from, config.train_batch_norm)
    steps = int(np.ceil(len(x_train) / config.batch_size))
    with strategy.scope():
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10,
            decay_steps=max(1, steps * (config.epochs - config.warmup_epochs)),
            warmup_target=config.learning_rate,
            warmup_steps=steps * config.warmup_epochs,
        )
        options = {
            "learning_rate": schedule,
            "weight_decay": config.weight_decay,
            "use_ema": config.ema_momentum is not None,
            "ema_momentum": 0.99 if config.ema_momentum is None else config.ema_momentum,
        }
        model.compile(
            optimizer=(
                keras.optimizers.AdamW(**options)
                if config.layer_decay is None
                else layerwise_adamw(layer_rate_scales(model, config.layer_decay), **options)
            ),
            loss=training_loss(config, y_train),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
    predictor = Predictor(model, size)
    selector = _balanced_accuracy_callback(predictor, x_val, y_val, config.patience, initial)
    if is_multi_worker(strategy):
        print(f"  synchronous training on {strategy.num_replicas_in_sync} workers")
        history = fit_multi_worker(
            model, strategy, train_ds, config.epochs, config.batch_size, config.label_smoothing, [selector]
        )
    else:
        # With averaging, Keras swaps the averaged weights in at each epoch end (and back
        # at the next epoch's start), so the selector scores and keeps the averaged model.
        callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema_momentum is not None else []
        history = model.fit(
            train_ds, epochs=config.epochs, callbacks=[*callbacks, selector], verbose=1 if progress else 2
        ).history
    if selector.best_epoch < 0 and initial is not None:
        print("  fine-tuning never beat the warmed-up head: keeping the head-only model")
    wall = time.perf_counter() - started

    eval_predictor = Predictor(model, size, tta=config.tta)
    val_probs = eval_predictor.predict_arrays(x_val)
    threshold = threshold_for_sensitivity(
        MALIGNANT_MASK[y_val], malignant_score(val_probs), config.malignant_sensitivity_target
    )
    evaluation = {"model": out_dir.name}
    for name, (x, y) in arrays.items():
        if name == "train":
            continue
        probs = val_probs if name == "val" else eval_predictor.predict_arrays(x)
        evaluation[name] = evaluate_predictions(y, probs, name, threshold, bootstrap=config.bootstrap)
        evaluation[name]["by_collection"] = by_collection(y, probs, collections_of(splits[name]), threshold)
    manifest_out = {
        "name": out_dir.name,
        "architecture": config.arch,
        "parameters": int(model.count_params()),
        "input_size": size,
        "preprocessing": {
            "loader": "skin_model.images.load_image (EXIF upright, 8-bit RGB)",
            "resize": RESIZE_METHOD,
            "input_range": "float32 RGB 0-255; the model rescales internally",
        }
        | (
            {
                "colour_constancy": f"Shades of Gray (p={DEFAULT_POWER}): each channel scaled so the picture's "
                f"illuminant is grey {TARGET_GREY} of full scale (colour and exposure), inside the model"
            }
            if config.colour_constancy
            else {}
        ),
        "training_config": asdict(config),
        "data_fingerprint": manifest.fingerprint(),
        "split_sizes": {name: len(rows) for name, rows in splits.items()},
        "training_wall_time_s": round(wall, 1),
        "epochs_run": len(history["loss"]),
        "distribution": describe_strategy(strategy),
        "best_epoch": selector.best_epoch + 1,
        "best_val_balanced_accuracy": round(selector.best, 4),
        "malignant_classes": sorted(MALIGNANT_CLASSES),
        "malignant_threshold": threshold,  # unrounded: see threshold_for_sensitivity
        "malignant_threshold_rule": threshold_rule(config.malignant_sensitivity_target),
        "tta": config.tta,
        "metrics_summary": {
            split: {k: evaluation[split][k] for k in ("balanced_accuracy", "macro_auc", "accuracy")}
            | {"malignant_auc": evaluation[split]["malignant"]["roc_auc"]}
            for split in ("val", "test")
            if split in evaluation
        },
        "tensorflow_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }
    # the differential's thresholds come from the validation probabilities just stored
    sets = fit_from_evaluation(evaluation)
    artifact_io.save_artifact(model, out_dir, manifest_out | (sets["manifest"] if sets else {}))
    artifact_io.write_json(out_dir / artifact_io.EVALUATION_FILE, evaluation)
    if sets:
        artifact_io.write_json(out_dir / PREDICTION_SETS_FILE, {"model": manifest_out["name"], **sets["report"]})
    pd.DataFrame(history).rename_axis("epoch").to_csv(out_dir / artifact_io.HISTORY_FILE)
    if not keep_weights:
        (out_dir / artifact_io.MODEL_FILE).unlink()
    return artifact_io.read_manifest(out_dir)
