"""Training: class-balanced, augmented, early-stopped on validation balanced accuracy,
seeded, timed; the result is saved as a model artifact with its evaluation."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

from . import artifact as artifact_io
from .checkpoint import TrainingCheckpoint
from .classes import CLASS_NAMES, MALIGNANT_CLASSES, MALIGNANT_MASK, malignant_score
from .colour_constancy import DEFAULT_POWER, TARGET_GREY
from .conformal import PREDICTION_SETS_FILE, fit_from_evaluation
from .distribute import describe as describe_strategy
from .distribute import fit_multi_worker, is_multi_worker, strategy_from_environment
from .evaluation import by_collection, evaluate_predictions, metrics_summary
from .finetune import freeze_for_finetuning, layer_rate_scales, layerwise_adamw
from .inference import Predictor
from .lesion_focus import focus_masks, lesion_focus_trainer
from .manifest import Manifest
from .models import FINETUNE_FROM, build_model
from .pipeline import GEOMETRY_RULE, RESIZE_METHOD, load_arrays, make_dataset
from .sources import collections_of
from .splits import HELD_OUT, leave_collection_out, training_subset
from .train_config import (  # noqa: F401  (re-exported: the training API's names)
    TrainConfig,
    class_weights,
    focus_exempt_classes,
    source_balanced_weights,
    training_loss,
    training_sample_weights,
)
from .transfer import fit_referral_threshold, referral_rule_text
from .warmup import augmentation_options, nevus_recall, selection_score, warm_up_head


def validation_score(
    predictor: Predictor,
    x_val: np.ndarray,
    y_val: np.ndarray,
    nevus_floor: float | None,
    x_val_resaved: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """(selection score, probabilities of the stored pictures): ``warmup.selection_score``
    of validation as stored, or, with ``x_val_resaved`` (the same pictures saved again,
    ``train --resave``), the mean of the scores of both. Scored on the stored pictures
    alone, selection rewards reading the collections' own saves (the seed set's JPEG 95
    among them); the mean keeps the epoch whose answers hold under either."""
    probs = predictor.predict_arrays(x_val)
    score = selection_score(y_val, probs, nevus_floor)
    if x_val_resaved is not None:
        score = (score + selection_score(y_val, predictor.predict_arrays(x_val_resaved), nevus_floor)) / 2
    return score, probs


def _balanced_accuracy_callback(
    predictor: Predictor,
    x_val: np.ndarray,
    y_val: np.ndarray,
    patience: int,
    initial: tuple[float, list] | None = None,
    nevus_floor: float | None = None,
    checkpoint: TrainingCheckpoint | None = None,
    x_val_resaved: np.ndarray | None = None,
):
    import keras

    class BestOnValBalancedAccuracy(keras.callbacks.Callback):
        """Scores validation (balanced accuracy, see ``warmup.selection_score``) each
        epoch, keeps the best weights, stops after ``patience`` epochs without
        improvement, restores the best; with a checkpoint, its state survives a restart."""

        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, -1, None, 0
            self.history: list[dict[str, float]] = []
            if initial is not None:  # e.g. the warmed-up head before fine-tuning (epoch 0)
                self.best, self.best_weights = initial
            state = checkpoint.read_json("selector.json") if checkpoint else None
            if state is not None:
                self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
                self.history = state["history"]
                self.best_weights = checkpoint.read_weights("selector_best.npz") or self.best_weights

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            score, probs = validation_score(predictor, x_val, y_val, nevus_floor, x_val_resaved)
            logs = logs if logs is not None else {}
            if x_val_resaved is not None:
                logs["val_selection_score"] = score
            logs["val_balanced_accuracy"] = float(balanced_accuracy_score(y_val, probs.argmax(1)))
            logs["val_nevus_recall"] = nevus_recall(y_val, probs.argmax(1))
            print(
                f"  val balanced accuracy {logs['val_balanced_accuracy']:.4f}, nevus recall "
                f"{logs['val_nevus_recall'] or 0:.3f}" + ("  (best)" if score > self.best else "")
            )
            self.history.append({k: (None if v is None else float(v)) for k, v in logs.items()})
            if score > self.best:
                self.best, self.best_epoch, self.wait = score, epoch, 0
                self.best_weights = self.model.get_weights()
                if checkpoint:
                    checkpoint.write_weights("selector_best.npz", self.best_weights)
            else:
                self.wait += 1
                if self.wait >= patience:
                    self.model.stop_training = True
            if checkpoint:
                state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "history": self.history}
                checkpoint.write_json("selector.json", state)
                checkpoint.save_elapsed()

        def on_train_begin(self, logs: dict | None = None) -> None:
            if self.wait >= patience:  # a resumed run that had already stopped early
                self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return BestOnValBalancedAccuracy()


def _compile(model, config: TrainConfig, strategy, steps: int, y_train: np.ndarray, classifier=None) -> None:
    """AdamW (layer-wise rates if asked, by the layers of ``classifier``, default
    ``model``) on a warm-up + cosine schedule, with the loss."""
    import keras

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
                else layerwise_adamw(layer_rate_scales(classifier or model, config.layer_decay), **options)
            ),
            loss=training_loss(config, y_train),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )


def _initial_model(config: TrainConfig, size: int):
    """A new model of the run's architecture or, when ``config.init_from`` names one, that
    saved model (checksums verified), to fine-tune further: a second schedule from a model
    that had stopped improving under the first. Its batch norms are folded into the
    convolutions, which is what frozen batch norms compute, so it trains as the unfolded
    model would with ``train_batch_norm`` off."""
    if not config.init_from:
        return build_model(
            config.arch, size, stochastic_depth=config.stochastic_depth, colour_constancy=config.colour_constancy
        )
    artifact = artifact_io.load_artifact(config.init_from)
    found = (artifact.manifest.get("architecture"), artifact.input_size)
    if found != (config.arch, size):
        raise ValueError(f"{config.init_from} is {found[0]} at {found[1]} px, not {config.arch} at {size} px")
    return artifact.model


def _check_options(config: TrainConfig, strategy, resume: bool) -> None:
    if config.init_from and (config.arch not in FINETUNE_FROM or config.weighting_search):
        raise ValueError("--init-from fine-tunes a pretrained backbone's saved model, without the weighting search")
    if config.init_from and config.train_batch_norm:
        raise ValueError("--init-from starts from a model whose batch norms are folded: they cannot be trained")
    if config.ema_momentum is not None and is_multi_worker(strategy):
        raise ValueError("weight averaging (ema_momentum) is not supported with multi-worker training")
    if config.logit_adjustment and is_multi_worker(strategy):
        raise ValueError("logit adjustment is not supported with multi-worker training")
    if config.layer_decay is not None and config.arch not in FINETUNE_FROM:
        raise ValueError(f"layer-wise learning-rate decay is for the pretrained backbones, not {config.arch!r}")
    if resume and (is_multi_worker(strategy) or config.ema_momentum is not None):
        raise ValueError("--resume supports single-process training without weight averaging (ema_momentum)")
    if config.lesion_focus and (is_multi_worker(strategy) or config.ema_momentum is not None):
        raise ValueError("--lesion-focus trains in one process, without weight averaging (ema_momentum)")
    if config.lesion_focus and config.mixup_alpha:
        raise ValueError("--lesion-focus and mixup do not go together (a mixed picture has no one lesion)")
    focus_exempt_classes(config)  # names every class it exempts, and only with --lesion-focus
    if config.weighting_search and config.arch not in FINETUNE_FROM:
        raise ValueError("the weighting search runs on the cached features of a pretrained backbone's warm-up")


def _fit(
    model, config: TrainConfig, strategy, train_ds, selector, checkpoint: TrainingCheckpoint | None, progress: bool
) -> dict[str, list]:
    """Run the epochs (resuming those a checkpoint holds); the per-epoch history."""
    import keras

    if is_multi_worker(strategy):
        print(f"  synchronous training on {strategy.num_replicas_in_sync} workers")
        return fit_multi_worker(
            model, strategy, train_ds, config.epochs, config.batch_size, config.label_smoothing, [selector]
        )
    # With averaging, Keras swaps the averaged weights in at each epoch end (and back
    # at the next epoch's start), so the selector scores and keeps the averaged model.
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema_momentum is not None else []
    if checkpoint:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(checkpoint.fit_dir), delete_checkpoint=False))
    model.fit(train_ds, epochs=config.epochs, callbacks=[*callbacks, selector], verbose=1 if progress else 2)
    return pd.DataFrame(selector.history).to_dict("list")


def _evaluate(model, config: TrainConfig, size: int, arrays: dict, splits: dict) -> tuple[dict, float]:
    """Validation and test figures of the selected model (with its TTA setting), and the
    referral threshold fitted on validation."""
    eval_predictor = Predictor(model, size, tta=config.tta, views=config.tta_views)
    x_val, y_val = arrays.get("val", arrays["train"])
    val_probs = eval_predictor.predict_arrays(x_val)
    val_rows = splits.get("val", splits["train"])
    threshold = fit_referral_threshold(
        config.referral_rule,
        MALIGNANT_MASK[y_val],
        malignant_score(val_probs),
        np.asarray(collections_of(val_rows)),
        config.malignant_sensitivity_target,
    )
    evaluation: dict[str, Any] = {}
    for name, (x, y) in arrays.items():
        if name == "train":
            continue
        probs = val_probs if name == "val" else eval_predictor.predict_arrays(x)
        evaluation[name] = evaluate_predictions(y, probs, name, threshold, bootstrap=config.bootstrap)
        evaluation[name]["by_collection"] = by_collection(y, probs, collections_of(splits[name]), threshold)
    return evaluation, threshold


def _preprocessing(config: TrainConfig) -> dict[str, str]:
    out = {
        "loader": "skin_model.images.load_image (EXIF upright, 8-bit RGB)",
        "resize": RESIZE_METHOD,
        "geometry": GEOMETRY_RULE,
        "input_range": "float32 RGB 0-255; the model rescales internally",
    }
    if config.colour_constancy:
        out["colour_constancy"] = (
            f"Shades of Gray (p={DEFAULT_POWER}): each channel scaled so the picture's "
            f"illuminant is grey {TARGET_GREY} of full scale (colour and exposure), inside the model"
        )
    return out


def _starting_point(
    model, config: TrainConfig, arrays: tuple, collections: np.ndarray, progress: bool, checkpoint
) -> tuple[tuple[float, list] | None, dict[str, Any] | None]:
    """Where fine-tuning starts, as (validation selection score, weights) to beat, and
    the weighting search's report: a saved model (``init_from``), or a pretrained
    backbone with its new head warmed up on cached features (then frozen below
    ``unfreeze_from``); None for a model trained from scratch."""
    x_val, y_val, x_val_resaved = arrays[2], arrays[3], arrays[4]
    size = config.resolved_input_size()
    if config.init_from:
        score, probs = validation_score(Predictor(model, size), x_val, y_val, config.nevus_recall_floor, x_val_resaved)
        start = balanced_accuracy_score(y_val, probs.argmax(1))
        print(f"  starting from {config.init_from}: val balanced accuracy {start:.4f}, selection score {score:.4f}")
        freeze_for_finetuning(model, config.unfreeze_from, config.train_batch_norm)
        return (score, model.get_weights()), None
    if config.arch not in FINETUNE_FROM:
        return None, None
    score, weights, search = warm_up_head(model, config, arrays[:4], collections, progress, checkpoint)
    if x_val_resaved is not None:  # scored as fine-tuning's epochs will be
        model.set_weights(weights)
        score = validation_score(Predictor(model, size), x_val, y_val, config.nevus_recall_floor, x_val_resaved)[0]
    freeze_for_finetuning(model, config.unfreeze_from, config.train_batch_norm)
    return (score, weights), search


def train(
    config: TrainConfig,
    manifest: Manifest,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress: bool = True,
    keep_weights: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Train on the manifest's train split, select on val, evaluate val and test,
    save the artifact in ``out_dir``; returns the written manifest. Pretrained backbones
    keep their state in ``out_dir/checkpoint/`` while they train, so a stopped run goes
    on with ``resume=True`` (same configuration) instead of starting again."""
    import keras

    strategy = strategy_from_environment()  # first: a multi-worker strategy must precede any TF op
    _check_options(config, strategy, resume)
    keras.utils.set_random_seed(config.seed)
    size = config.resolved_input_size()
    if config.arch in FINETUNE_FROM:
        config.unfreeze_from = config.unfreeze_from or FINETUNE_FROM[config.arch]
    checkpoint = _checkpoint(config, strategy, out_dir, resume)
    splits = _training_splits(config, manifest)
    arrays = {name: load_arrays(rows, size, cache_dir, progress) for name, rows in splits.items() if len(rows)}
    x_train, y_train = arrays["train"]
    x_val, y_val = arrays.get("val", arrays["train"])
    collections = collections_of(splits["train"])

    with strategy.scope():
        model = _initial_model(config, size)
    started = time.perf_counter()
    if checkpoint:
        checkpoint.start_clock()
    x_val_resaved = (
        load_arrays(splits["val"], size, cache_dir, progress, resaved_seed=config.seed + 1)[0]
        if config.resave and "val" in splits and len(splits["val"])
        else None
    )
    initial, search = _starting_point(
        model, config, (x_train, y_train, x_val, y_val, x_val_resaved), collections, progress, checkpoint
    )
    if checkpoint:
        checkpoint.save_elapsed()
    if config.lesion_focus:
        # the starting model was not trained to keep its evidence on the lesion: scored
        # on validation alone it would be kept over every focused epoch that costs a little
        initial = None
    train_ds = _training_dataset(config, splits["train"], x_train, y_train, collections, cache_dir, progress)
    fit_model = lesion_focus_trainer(model, config.lesion_focus) if config.lesion_focus else model
    steps = int(np.ceil(len(x_train) / config.batch_size))
    _compile(fit_model, config, strategy, steps, y_train, classifier=model)
    selector = _balanced_accuracy_callback(
        Predictor(model, size),
        x_val,
        y_val,
        config.patience,
        initial,
        config.nevus_recall_floor,
        checkpoint,
        x_val_resaved,
    )
    history = _fit(fit_model, config, strategy, train_ds, selector, checkpoint, progress)
    if selector.best_epoch < 0 and initial is not None:
        print("  fine-tuning never beat the warmed-up head: keeping the head-only model")
    wall = checkpoint.elapsed() if checkpoint else time.perf_counter() - started  # every process of a resumed run
    evaluation, threshold = _evaluate(model, config, size, arrays, splits)
    manifest_out = _manifest_record(
        config, manifest, out_dir, model, splits, collections, checkpoint, strategy, selector, history, evaluation
    ) | {
        "training_wall_time_s": round(wall, 1),
        "best_val_balanced_accuracy": _best_val_balanced_accuracy(selector, history, model, size, x_val, y_val),
        "malignant_threshold": threshold,  # unrounded: see threshold_for_sensitivity
    }
    manifest_out |= _search_and_folding_record(config, search)
    _save(model, out_dir, manifest_out, {"model": out_dir.name} | evaluation, history, keep_weights)
    if checkpoint:
        checkpoint.finish()
    return artifact_io.read_manifest(out_dir)


def _checkpoint(config: TrainConfig, strategy, out_dir: Path, resume: bool) -> TrainingCheckpoint | None:
    """The run's resumable state, for the runs ``--resume`` supports (a pretrained
    backbone, one process, no weight averaging); None for the others."""
    if config.arch not in FINETUNE_FROM or is_multi_worker(strategy) or config.ema_momentum is not None:
        return None
    checkpoint = TrainingCheckpoint(out_dir, asdict(config), resume)
    if checkpoint.resumed:
        print(f"  resuming the interrupted run in {checkpoint.dir}")
    return checkpoint


def _training_splits(config: TrainConfig, manifest: Manifest) -> dict[str, pd.DataFrame]:
    """The manifest's kept pictures by split, the training split cut to the run's
    fraction and, for a leave-one-collection-out run, without the left-out collection."""
    splits = {name: manifest.kept(name) for name in ("train", "val", "test")}
    splits["train"] = training_subset(splits["train"], config.train_fraction, config.seed)
    return leave_collection_out(splits, config.leave_out) if config.leave_out else splits


def _training_dataset(
    config: TrainConfig,
    train_rows: pd.DataFrame,
    x_train: np.ndarray,
    y_train: np.ndarray,
    collections: np.ndarray,
    cache_dir: Path | None,
    progress: bool,
) -> Any:
    """The shuffled, augmented training stream: pictures with their class weights, the
    saved-again copies and the lesion masks where the run asks for them."""
    size = config.resolved_input_size()
    sample_weights = training_sample_weights(config, y_train, collections).astype(np.float32)
    resaved = load_arrays(train_rows, size, cache_dir, progress, resaved_seed=config.seed)[0] if config.resave else None
    masks = (
        focus_masks(train_rows, size, cache_dir, progress, exempt=focus_exempt_classes(config))
        if config.lesion_focus
        else None
    )
    return make_dataset(
        x_train,
        np.eye(len(CLASS_NAMES), dtype=np.float32)[y_train],
        config.batch_size,
        training=True,
        seed=config.seed,
        sample_weights=sample_weights,
        mixup_alpha=config.mixup_alpha,
        resaved=resaved,
        resave=config.resave,
        masks=masks,
        **augmentation_options(config),
    )


def _search_and_folding_record(config: TrainConfig, search: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's record of the class-weighting search (when the run made one) and
    of the batch norms a starting model had folded before this run."""
    record: dict[str, Any] = {}
    if search:
        record["class_weighting_search"] = search
    if config.init_from:
        record["batch_norms_folded"] = artifact_io.read_manifest(Path(config.init_from)).get("batch_norms_folded", 0)
    return record


def _manifest_record(
    config: TrainConfig,
    manifest: Manifest,
    out_dir: Path,
    model,
    splits: dict[str, pd.DataFrame],
    collections: np.ndarray,
    checkpoint: TrainingCheckpoint | None,
    strategy,
    selector,
    history: dict,
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """What the manifest records of a finished run: the model, its inputs, the data it
    saw, how the run went and its headline figures."""
    import tensorflow as tf

    return {
        "name": out_dir.name,
        "architecture": config.arch,
        "parameters": int(model.count_params()),
        "input_size": config.resolved_input_size(),
        "preprocessing": _preprocessing(config),
        "training_config": asdict(config),
        "data_fingerprint": manifest.fingerprint(),
        "split_sizes": {name: len(rows) for name, rows in splits.items()},
        "resumed": bool(checkpoint and checkpoint.resumed),
        # settings a resume changed, (interrupted run's, resumed run's)
        "resume_extended": dict(checkpoint.extended) if checkpoint else {},
        "training_collections": {
            str(c): int(n) for c, n in zip(*np.unique(collections, return_counts=True), strict=True)
        },
        "epochs_run": len(history.get("loss", [])),
        "distribution": describe_strategy(strategy),
        "best_epoch": selector.best_epoch + 1,
        "malignant_classes": sorted(MALIGNANT_CLASSES),
        "malignant_threshold_rule": referral_rule_text(config.referral_rule, config.malignant_sensitivity_target),
        "referral_rule": config.referral_rule,
        "tta": config.tta,
        "tta_views": config.tta_views,
        "metrics_summary": metrics_summary(evaluation, ("val", "test", HELD_OUT)),
        "tensorflow_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


def _best_val_balanced_accuracy(selector, history: dict, model, size: int, x_val, y_val) -> float:
    """Validation balanced accuracy (single view, what selection scored) of the kept
    weights: read from the epoch's history, or measured when the warmed-up head was kept."""
    scores = history.get("val_balanced_accuracy") or []
    if 0 <= selector.best_epoch < len(scores):
        return round(float(scores[selector.best_epoch]), 4)
    answers = Predictor(model, size).predict_arrays(x_val).argmax(1)
    return round(float(balanced_accuracy_score(y_val, answers)), 4)


def _save(model, out_dir: Path, manifest_out: dict, evaluation: dict, history: dict, keep_weights: bool) -> None:
    """Write the artifact: weights and manifest (with the differential's thresholds,
    fitted on the validation probabilities just stored), evaluation and history."""
    sets = fit_from_evaluation(evaluation)
    artifact_io.save_artifact(model, out_dir, manifest_out | (sets["manifest"] if sets else {}))
    artifact_io.write_json(out_dir / artifact_io.EVALUATION_FILE, evaluation)
    if sets:
        artifact_io.write_json(out_dir / PREDICTION_SETS_FILE, {"model": manifest_out["name"], **sets["report"]})
    pd.DataFrame(history).rename_axis("epoch").to_csv(out_dir / artifact_io.HISTORY_FILE)
    if not keep_weights:
        (out_dir / artifact_io.MODEL_FILE).unlink()
