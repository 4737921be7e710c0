"""Training that keeps the class evidence on the lesion (``train --lesion-focus W``).

A model trained on the class labels alone can pool much of its evidence from the skin
around the lesion (ours did: their Grad-CAM pointed inside the expert lesion mask for
about a third of HAM10000's pictures), and that surrounding skin carries the
collection's camera, crop and compression. For a model whose head is global average pooling and a
dense layer, the class activation map of class c at each cell of the last feature grid
is the features there times the head's weights for c (Zhou et al. 2016); it is
Grad-CAM of that layer up to a positive factor. Its positive part outside the lesion,
as a share of all of it, is a differentiable penalty: the trainer adds ``W`` times
that share, for the true class, to the loss of every picture that has a lesion mask
(HAM10000's); pictures without one get a mask of "lesion everywhere", which costs
nothing ("Right for the right reasons", Ross et al. 2017, with the map in place of the
input gradient).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .pipeline import load_masks
from .taps import FEATURE_LAYER

HEAD_LAYER = "probabilities"


def focus_masks(
    rows: pd.DataFrame, size: int, cache_dir=None, progress: bool = True, exempt: tuple[str, ...] = ()
) -> np.ndarray:
    """uint8 (n, size, size) lesion masks of manifest ``rows`` squashed like their
    pictures; 255 everywhere (no constraint) for a picture without a mask and for the
    pictures of the ``exempt`` classes, whose diagnosis may rightly read the skin around
    the lesion (actinic keratosis sits on sun-damaged skin)."""
    out = np.full((len(rows), size, size), 255, np.uint8)
    if "mask_path" not in rows:
        return out
    has_mask = rows["mask_path"].notna().to_numpy() & ~rows["final_label"].isin(exempt).to_numpy()
    if has_mask.any():
        out[has_mask] = load_masks(rows[has_mask].reset_index(drop=True), size, cache_dir, progress)
    return out


def outside_lesion_share(features, kernel, masks, labels, grid: tuple[int, int] | None = None):
    """Per picture, the share of the true class's positive activation map that lies
    outside the lesion: ``features`` (b, h, w, k) of the layer the head pools, ``kernel``
    (k, classes) the head's weights, ``masks`` (b, H, W, 1) in 0-1 at the input's size
    (averaged down to the grid), ``labels`` (b, classes) one-hot. 0 where the map is
    all inside or all zero. ``grid``: the features' (h, w), where a traced batch does
    not know it."""
    from keras import ops

    grid = grid or tuple(features.shape[1:3])
    lesion = ops.image.resize(masks, grid, interpolation="area")[..., 0]
    class_maps = ops.einsum("bhwk,kc->bhwc", features, kernel)
    heat = ops.relu(ops.sum(class_maps * labels[:, None, None, :], axis=-1))
    outside = ops.sum(heat * (1.0 - lesion), axis=(1, 2))
    return outside / (ops.sum(heat, axis=(1, 2)) + 1e-6)


def lesion_focus_trainer(classifier, weight: float):
    """A Keras model that trains ``classifier``'s own weights (same variables) with its
    compiled loss plus ``weight`` times :func:`outside_lesion_share`; it takes batches of
    ``((image, mask), one-hot label, sample weight)`` and reports the mean share as
    ``outside_lesion``. Its ``get_weights``/``set_weights`` are the classifier's, so the
    epoch selector keeps and restores the classifier."""
    import keras
    import tensorflow as tf

    names = {layer.name for layer in classifier.layers}
    if not {FEATURE_LAYER, HEAD_LAYER} <= names:
        raise ValueError(
            f"{classifier.name} has no global average pooling '{FEATURE_LAYER}' feeding a dense "
            f"'{HEAD_LAYER}' head, so it has no class activation map to keep on the lesion"
        )
    taps = keras.Model(classifier.inputs, [classifier.get_layer(FEATURE_LAYER).input, classifier.output])
    head = classifier.get_layer(HEAD_LAYER)
    grid = tuple(taps.outputs[0].shape[1:3])

    class LesionFocusTrainer(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=f"{classifier.name}_lesion_focus")
            self.classifier = classifier
            self.taps = taps
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.outside_tracker = keras.metrics.Mean(name="outside_lesion")
            self.built = True  # its layers are the built classifier's (checkpoint callbacks need this)

        def call(self, inputs, training=False):
            image = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
            return self.classifier(image, training=training)

        def train_step(self, data):
            (images, masks), labels, sample_weight = data
            with tf.GradientTape() as tape:
                features, probs = self.taps(images, training=True)
                loss = self.compute_loss(x=images, y=labels, y_pred=probs, sample_weight=sample_weight)
                share = outside_lesion_share(features, head.kernel, masks, labels, grid)
                loss = loss + weight * tf.reduce_mean(share)
            variables = self.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            has_mask = tf.reduce_min(masks, axis=[1, 2, 3]) < 1.0
            self.outside_tracker.update_state(tf.boolean_mask(share, has_mask))
            self.loss_tracker.update_state(loss)
            logs = self.compute_metrics(images, labels, probs, sample_weight=sample_weight)
            return logs | {"loss": self.loss_tracker.result(), "outside_lesion": self.outside_tracker.result()}

        def reset_metrics(self):
            super().reset_metrics()
            self.loss_tracker.reset_state()
            self.outside_tracker.reset_state()

        def get_weights(self):
            return self.classifier.get_weights()

        def set_weights(self, weights):
            self.classifier.set_weights(weights)

    return LesionFocusTrainer()
