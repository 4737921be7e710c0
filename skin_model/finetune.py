"""Fine-tuning a pretrained backbone: which layers learn, and at what rate."""

from __future__ import annotations

import re


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
