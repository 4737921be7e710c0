"""The head warm-up of pretrained backbones: a softmax head trained on frozen backbone
features of a few augmented views of every training picture, computed once. Fast on
CPU, and it gives fine-tuning a sensible head to start from.

Because a head on cached features trains in seconds, this is also where the class
weighting is chosen by measurement on validation (:func:`choose_weighting`): how far
to balance the classes against a clinic's stream of mostly nevi.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from .checkpoint import TrainingCheckpoint
from .classes import CLASS_NAMES, class_index
from .models import FEATURE_OUTPUT
from .pipeline import make_dataset
from .train_config import TrainConfig, training_loss, training_sample_weights

NEVUS = class_index("nevus")
# (class-weight power, shared between collections) tried by the weighting search
WEIGHTING_CANDIDATES = tuple((p, sb) for sb in (False, True) for p in (0.25, 0.5, 0.75, 1.0))


def nevus_recall(y: np.ndarray, predicted: np.ndarray) -> float | None:
    """Share of the nevi answered as nevi (None without nevi)."""
    nevi = np.asarray(y) == NEVUS
    return float((np.asarray(predicted)[nevi] == NEVUS).mean()) if nevi.any() else None


def selection_score(y: np.ndarray, probs: np.ndarray, nevus_floor: float | None = None) -> float:
    """Validation balanced accuracy, less 1 when nevus recall falls below
    ``nevus_floor``: any setting that keeps the floor beats any that does not, and
    among those on one side balanced accuracy decides."""
    predicted = np.asarray(probs).argmax(1)
    score = float(balanced_accuracy_score(y, predicted))
    recall = nevus_recall(y, predicted)
    if nevus_floor is not None and recall is not None and recall < nevus_floor:
        score -= 1.0
    return score


def head_features(
    extract: Callable[[int], tuple[np.ndarray, np.ndarray]],
    extract_val: Callable[[], np.ndarray],
    views: int,
    checkpoint: TrainingCheckpoint | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features of every augmented view, the training index of each, validation
    features); kept in the checkpoint so a resumed run does not compute them again."""
    stored = checkpoint.read_arrays("head_features.npz") if checkpoint else None
    if stored is not None:
        return stored["train"], stored["index"], stored["val"]
    parts = [extract(view) for view in range(views)]
    f_train = np.concatenate([p[0] for p in parts])
    index = np.concatenate([p[1] for p in parts]).astype(int)
    f_val = extract_val()
    if checkpoint:
        checkpoint.write_arrays("head_features.npz", {"train": f_train, "index": index, "val": f_val})
    return f_train, index, f_val


def fit_head(
    f_train: np.ndarray,
    y_feat: np.ndarray,
    w_feat: np.ndarray,
    f_val: np.ndarray,
    y_val: np.ndarray,
    loss,
    epochs: int,
    nevus_floor: float | None,
    seed: int,
) -> tuple[float, list[np.ndarray], np.ndarray]:
    """A dropout + softmax head on features, scored on validation every 5 epochs;
    returns (best selection score, its Dense weights, its validation probabilities)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(f_train.shape[1:])
    dense = keras.layers.Dense(len(CLASS_NAMES), activation="softmax")
    head = keras.Model(inputs, dense(keras.layers.Dropout(0.3)(inputs)))
    head.compile(keras.optimizers.AdamW(1e-3, weight_decay=1e-3), loss)
    best, best_weights, best_probs = -np.inf, None, None
    onehot = np.eye(len(CLASS_NAMES), dtype=np.float32)[y_feat]
    for _ in range(max(1, epochs // 5)):
        head.fit(f_train, onehot, sample_weight=w_feat, batch_size=64, epochs=5, verbose=0)
        probs = head.predict(f_val, verbose=0)
        score = selection_score(y_val, probs, nevus_floor)
        if score > best:
            best, best_weights, best_probs = score, dense.get_weights(), probs
    return float(best), best_weights, best_probs


def weighting_report(y_val: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """What a weighting does on validation: balanced accuracy, accuracy, nevus recall."""
    predicted = probs.argmax(1)
    return {
        "balanced_accuracy": round(float(balanced_accuracy_score(y_val, predicted)), 4),
        "accuracy": round(float((predicted == y_val).mean()), 4),
        "nevus_recall": None if (r := nevus_recall(y_val, predicted)) is None else round(r, 4),
    }


def choose_weighting(
    fit: Callable[[float, bool], tuple[float, list[np.ndarray], np.ndarray]],
    y_val: np.ndarray,
    candidates: tuple[tuple[float, bool], ...] = WEIGHTING_CANDIDATES,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Train a head for every (class-weight power, source-balanced) candidate and keep
    the best by :func:`selection_score`; returns the search's report (every candidate's
    validation figures and the choice) and the chosen head's weights."""
    tried, best = [], None
    for power, shared in candidates:
        score, weights, probs = fit(power, shared)
        tried.append({"class_weight_power": power, "source_balanced": shared} | weighting_report(y_val, probs))
        if best is None or score > best[0]:
            best = (score, weights, tried[-1])
    assert best is not None
    chosen = {k: best[2][k] for k in ("class_weight_power", "source_balanced")}
    return {"fitted_on": "validation split, head on cached features", "tried": tried, "chosen": chosen}, best[1]


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


def augmentation_options(config: TrainConfig) -> dict[str, float]:
    """The augmentation options of ``config``, as ``pipeline.make_dataset`` takes them."""
    return {
        "zoom": config.zoom,
        "low_res": config.low_res,
        "camera": config.camera,
        "jpeg": config.jpeg,
        "light": config.light,
        "aspect": config.aspect,
        "field": config.field,
    }


def warm_up_head(
    model,
    config: TrainConfig,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    collections: np.ndarray,
    progress: bool,
    checkpoint: TrainingCheckpoint | None = None,
) -> tuple[float, list, dict[str, Any] | None]:
    """Train the new softmax head on frozen backbone features of ``feature_views``
    augmented views per training picture (``warmup``); with ``weighting_search``, pick
    the class weighting there first and set it in ``config``. Returns (validation
    selection score, model weights, the search's report or None)."""
    x_train, y_train, x_val, y_val = arrays
    layer = FEATURE_OUTPUT[config.arch]

    def extract(view: int) -> tuple[np.ndarray, np.ndarray]:
        # the dataset carries each image's index: shuffled views keep their label and weight
        ds = make_dataset(
            x_train, np.arange(len(x_train)), 64, training=True, seed=config.seed + view, **augmentation_options(config)
        )
        fx, fi = _features(model, layer, ds, progress, f"features, augmented view {view + 1}/{config.feature_views}")
        return fx, fi

    def extract_val() -> np.ndarray:
        return _features(model, layer, make_dataset(x_val, batch_size=64), progress, "features, validation")[0]

    f_train, index, f_val = head_features(extract, extract_val, config.feature_views, checkpoint)
    y_feat = y_train[index]

    def fit(power: float, shared: bool):
        trial = replace(config, class_weight_power=power, source_balanced=shared)
        weights = training_sample_weights(trial, y_train, collections).astype(np.float32)[index]
        loss = training_loss(trial, y_train)
        return fit_head(f_train, y_feat, weights, f_val, y_val, loss, config.head_epochs, trial.nevus_recall_floor, 0)

    stored = checkpoint.read_json("head.json") if checkpoint else None
    if stored is not None:
        search, head_weights, best = stored["search"], checkpoint.read_weights("head.npz"), stored["score"]
    elif config.weighting_search:
        search, head_weights = choose_weighting(fit, y_val)
        best = fit(search["chosen"]["class_weight_power"], search["chosen"]["source_balanced"])[0]
    else:
        search = None
        best, head_weights, _ = fit(config.class_weight_power, config.source_balanced)
    if checkpoint and stored is None:
        checkpoint.write_weights("head.npz", head_weights)
        checkpoint.write_json("head.json", {"search": search, "score": best})
    if search is not None:
        config.class_weight_power = search["chosen"]["class_weight_power"]
        config.source_balanced = search["chosen"]["source_balanced"]
        for trial in search["tried"]:
            print(f"  weighting {trial}")
    model.get_layer("probabilities").set_weights(head_weights)
    print(f"  head warm-up on cached features: val selection score {best:.4f}")
    return float(best), model.get_weights(), search
