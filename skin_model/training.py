"""Training: class-balanced, augmented, early-stopped on validation balanced accuracy,
seeded, timed; the result is saved as a model artifact with its evaluation."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import artifact as artifact_io
from .classes import CLASS_NAMES, MALIGNANT_CLASSES
from .evaluation import MALIGNANT_MASK, evaluate_predictions, malignant_score, threshold_for_sensitivity
from .inference import Predictor
from .manifest import Manifest
from .models import DEFAULT_INPUT_SIZE, build_model
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
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_input_size(self) -> int:
        return self.input_size or DEFAULT_INPUT_SIZE.get(self.arch, 160)


def class_weights(y: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 over the samples (absent classes 0)."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, len(y) / (np.maximum(counts, 1) * (counts > 0).sum()), 0.0)
    return weights


def _balanced_accuracy_callback(predictor: Predictor, x_val: np.ndarray, y_val: np.ndarray, patience: int):
    import keras
    from sklearn.metrics import balanced_accuracy_score

    class BestOnValBalancedAccuracy(keras.callbacks.Callback):
        """Scores validation balanced accuracy each epoch, keeps the best weights,
        stops after ``patience`` epochs without improvement, restores the best."""

        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.wait = -1.0, -1, None, 0

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

    keras.utils.set_random_seed(config.seed)
    size = config.resolved_input_size()
    splits = {name: manifest.kept(name) for name in ("train", "val", "test")}
    arrays = {name: load_arrays(rows, size, cache_dir, progress) for name, rows in splits.items() if len(rows)}
    x_train, y_train = arrays["train"]
    x_val, y_val = arrays.get("val", arrays["train"])

    weights = class_weights(y_train) if config.class_balanced else np.ones(len(CLASS_NAMES))
    sample_weights = weights[y_train].astype(np.float32)
    y_onehot = np.eye(len(CLASS_NAMES), dtype=np.float32)[y_train]
    train_ds = make_dataset(
        x_train, y_onehot, config.batch_size, training=True, seed=config.seed, sample_weights=sample_weights
    )

    model = build_model(config.arch, size)
    steps = int(np.ceil(len(x_train) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10,
        decay_steps=max(1, steps * (config.epochs - config.warmup_epochs)),
        warmup_target=config.learning_rate,
        warmup_steps=steps * config.warmup_epochs,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    predictor = Predictor(model, size)
    selector = _balanced_accuracy_callback(predictor, x_val, y_val, config.patience)
    started = time.perf_counter()
    history = model.fit(train_ds, epochs=config.epochs, callbacks=[selector], verbose=1 if progress else 2)
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
    manifest_out = {
        "name": out_dir.name,
        "architecture": config.arch,
        "parameters": int(model.count_params()),
        "input_size": size,
        "preprocessing": {
            "loader": "skin_model.images.load_image (EXIF upright, 8-bit RGB)",
            "resize": RESIZE_METHOD,
            "input_range": "float32 RGB 0-255; the model rescales internally",
        },
        "training_config": asdict(config),
        "data_fingerprint": manifest.fingerprint(),
        "split_sizes": {name: len(rows) for name, rows in splits.items()},
        "training_wall_time_s": round(wall, 1),
        "epochs_run": len(history.history["loss"]),
        "best_epoch": selector.best_epoch + 1,
        "best_val_balanced_accuracy": round(selector.best, 4),
        "malignant_classes": sorted(MALIGNANT_CLASSES),
        "malignant_threshold": round(threshold, 6),
        "malignant_threshold_rule": f"highest threshold with >= {config.malignant_sensitivity_target:.0%} "
        "malignant sensitivity on the validation split",
        "tta": config.tta,
        "metrics_summary": {
            split: {k: evaluation[split][k] for k in ("balanced_accuracy", "macro_auc", "accuracy")}
            | {"malignant_auc": evaluation[split]["malignant"]["roc_auc"]}
            for split in ("val", "test")
            if split in evaluation
        },
        "tensorflow_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }
    artifact_io.save_artifact(model, out_dir, manifest_out)
    artifact_io.write_json(out_dir / artifact_io.EVALUATION_FILE, evaluation)
    pd.DataFrame(history.history).rename_axis("epoch").to_csv(out_dir / artifact_io.HISTORY_FILE)
    if not keep_weights:
        (out_dir / artifact_io.MODEL_FILE).unlink()
    return artifact_io.read_manifest(out_dir)
