"""EfficientNet-Lite (Lite0 and Lite2) in Keras, built flat (no nested model) so
Grad-CAM reaches its last convolution, with ImageNet weights converted from the
Apache-2.0 PyTorch releases (see ``tools/convert_efficientnet_lite.py``; nothing here
needs torch).

Lite = EfficientNet without squeeze-excitation, with ReLU6 instead of swish and a fixed
32-channel stem and 1280-channel head (first and last stage not deepened); TensorFlow
"same" padding, batch-norm epsilon 1e-3. Lite2 widens and deepens the middle stages
of Lite0 with the EfficientNet rounding rules.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
from keras import layers

from .paths import ASSETS_DIR

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPSILON = 1e-3
FEATURE_LAYER = "top_activation"
# Lite0's stages: (repeats, kernel, stride, expand ratio, input filters, output filters)
LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# variant -> (width multiplier, depth multiplier, native input size), as in the reference
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite2": (1.1, 1.2, 260)}


def weights_path(variant: str) -> Path:
    """Where the converted ImageNet weights of ``variant`` live."""
    return ASSETS_DIR / "backbones" / f"efficientnet_{variant}_imagenet.weights.h5"


def _round_filters(filters: int, width: float) -> int:
    """EfficientNet's channel rounding: scale, round to a multiple of 8, never lose > 10 %."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def stages(variant: str = "lite0") -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The stage table of ``variant`` (same layout as ``LITE0_BLOCKS``)."""
    width, depth, _ = VARIANTS[variant]
    table = []
    for i, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(LITE0_BLOCKS):
        fixed = i in (0, len(LITE0_BLOCKS) - 1)
        table.append(
            (
                repeats if fixed else math.ceil(repeats * depth),
                kernel,
                stride,
                expand,
                32 if i == 0 else _round_filters(f_in, width),
                _round_filters(f_out, width),
            )
        )
    return tuple(table)


def _bn(name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def efficientnet_lite_features(inputs, variant: str = "lite0", drop_connect: float = 0.0) -> keras.KerasTensor:
    """The feature extractor of ``variant`` applied to 0-255 RGB ``inputs``; returns the
    1280-channel head activation (7x7 at 224 px).

    ``drop_connect``: stochastic depth as the reference trains it: in training, each
    residual branch is dropped for a whole image with a probability rising linearly
    from 0 at the first block to ``drop_connect`` at the last (an identity at
    inference, so it changes nothing for prediction, export or Grad-CAM)."""
    n_blocks = sum(stage[0] for stage in stages(variant))
    x = layers.Normalization(
        mean=[m * 255 for m in IMAGENET_MEAN], variance=[(s * 255) ** 2 for s in IMAGENET_STD], name="imagenet_norm"
    )(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    index = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in stages(variant):
        for r in range(repeats):
            name = f"block{index}"
            s, f_in = (stride, filters_in) if r == 0 else (1, filters_out)
            y = x
            if expand != 1:
                y = layers.Conv2D(f_in * expand, 1, use_bias=False, name=f"{name}_expand_conv")(y)
                y = _bn(f"{name}_expand_bn")(y)
                y = layers.ReLU(6.0, name=f"{name}_expand_relu")(y)
            y = layers.DepthwiseConv2D(kernel, strides=s, padding="same", use_bias=False, name=f"{name}_dwconv")(y)
            y = _bn(f"{name}_dw_bn")(y)
            y = layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
            y = layers.Conv2D(filters_out, 1, use_bias=False, name=f"{name}_project_conv")(y)
            y = _bn(f"{name}_project_bn")(y)
            if s == 1 and f_in == filters_out:
                rate = drop_connect * index / n_blocks
                if rate > 0:  # a Dropout whose mask spans the whole image drops the branch
                    y = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(y)
                y = layers.Add(name=f"{name}_add")([y, x])
            x = y
            index += 1
    x = layers.Conv2D(1280, 1, use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    return layers.ReLU(6.0, name=FEATURE_LAYER)(x)


def efficientnet_lite_imagenet(variant: str = "lite0", input_size: int | None = None) -> keras.Model:
    """The full ImageNet classifier (1000 logits), as the PyTorch reference computes it."""
    size = input_size or VARIANTS[variant][2]
    inputs = keras.Input((size, size, 3), name="image")
    x = efficientnet_lite_features(inputs, variant)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(1000, name="imagenet_logits")(x)
    return keras.Model(inputs, outputs, name=f"efficientnet_{variant}_imagenet")


def load_backbone_weights(model: keras.Model, variant: str = "lite0") -> int:
    """Copy the converted ImageNet weights into every layer of ``model`` with a
    matching name; returns how many layers were loaded."""
    import h5py
    import numpy as np

    path = weights_path(variant)
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet weights for EfficientNet-{variant.title()} not found at {path}")
    loaded = 0
    with h5py.File(path, "r") as f:
        for layer in model.layers:
            if layer.name in f:
                group = f[layer.name]
                layer.set_weights([np.asarray(group[str(i)]) for i in range(len(group))])
                loaded += 1
    return loaded
