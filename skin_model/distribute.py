"""Scaling training beyond one CPU: the ``tf.distribute`` strategy for the environment,
and a synchronous data-parallel epoch loop for several machines.

* one machine, no or one GPU: TensorFlow's default strategy (what runs here);
* one machine, several GPUs: ``MirroredStrategy``;
* several machines: ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``
  (``{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker",
  "index": 0}}``), the same command started once per worker.

Keras 3's ``Model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (it fails
converting per-replica batches; keras-team/keras#20585), so multi-worker training uses
:func:`fit_multi_worker`, a small loop with the same loss, optimizer and callbacks.
"""

from __future__ import annotations

import json
import os
from typing import Any

TF_CONFIG = "TF_CONFIG"


def cluster_workers() -> int:
    """Number of workers ``TF_CONFIG`` describes (1 when it is unset)."""
    raw = os.environ.get(TF_CONFIG)
    if not raw:
        return 1
    try:
        return max(1, len(json.loads(raw).get("cluster", {}).get("worker", [])))
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{TF_CONFIG} is not valid JSON with a cluster.worker list: {exc}") from exc


def strategy_from_environment():
    """The distribution strategy for this process (see the module docstring)."""
    import tensorflow as tf

    if cluster_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def describe(strategy) -> dict[str, Any]:
    """The strategy as recorded in a model's manifest."""
    name = "MultiWorkerMirroredStrategy" if is_multi_worker(strategy) else type(strategy).__name__
    return {"strategy": name.lstrip("_"), "replicas": int(strategy.num_replicas_in_sync)}


def fit_multi_worker(
    model,
    strategy,
    dataset,
    epochs: int,
    global_batch_size: int,
    label_smoothing: float = 0.0,
    callbacks: list | None = None,
) -> dict[str, list[float]]:
    """Synchronous data-parallel training: every worker reads its shard of ``dataset``
    (batches of ``(images, one-hot labels, sample weights)``), gradients are summed
    across workers each step, so all workers hold identical weights. The model must be
    built and compiled (for its optimizer) inside ``strategy.scope()``. Callbacks get
    the usual ``on_train_begin / on_epoch_end / on_train_end`` calls and may stop
    training by setting ``model.stop_training``. Returns the per-epoch history."""
    import keras
    import tensorflow as tf

    callbacks = callbacks or []
    optimizer = model.optimizer
    distributed = strategy.experimental_distribute_dataset(dataset)

    def step(batch):
        images, labels, weights = batch
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = keras.losses.categorical_crossentropy(labels, probs, label_smoothing=label_smoothing)
            loss = tf.nn.compute_average_loss(per_example * weights, global_batch_size=global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.argmax(probs, 1) == tf.argmax(labels, 1), tf.float32))
        return loss, correct, tf.cast(tf.shape(images)[0], tf.float32)

    @tf.function
    def distributed_step(batch):
        loss, correct, count = strategy.run(step, args=(batch,))
        return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in (loss, correct, count))

    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    model.stop_training = False
    for epoch in range(epochs):
        total_loss, total_correct, total_count, steps = 0.0, 0.0, 0.0, 0
        for batch in distributed:
            loss, correct, count = (float(v) for v in distributed_step(batch))
            total_loss, total_correct, total_count, steps = (
                total_loss + loss,
                total_correct + correct,
                total_count + count,
                steps + 1,
            )
        logs: dict[str, Any] = {"loss": total_loss / max(steps, 1), "accuracy": total_correct / max(total_count, 1)}
        print(f"Epoch {epoch + 1}/{epochs} - loss {logs['loss']:.4f} - accuracy {logs['accuracy']:.4f}")
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if model.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end()
    return history
