"""Model architectures. All are flat functional Keras models (no nested backbone, no
Sequential) so Grad-CAM can reach their last convolution, and all take float RGB
pixels in 0-255 and rescale inside the model: callers never preprocess."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from .classes import CLASS_NAMES
from .colour_constancy import ShadesOfGray

N_CLASSES = len(CLASS_NAMES)


def seed_cnn(input_size: int = 180, n_classes: int = N_CLASSES) -> keras.Model:
    """The seed's baseline: two conv pairs, Flatten and Dense 512 (66M params at 180 px)."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


def _residual_stage(x, filters: int, stride: int, name: str, weight_decay: float):
    """Two separable convs with batch norm and a projected shortcut."""
    reg = keras.regularizers.l2(weight_decay)
    shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, kernel_regularizer=reg, name=f"{name}_proj")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.SeparableConv2D(
        filters,
        3,
        strides=stride,
        padding="same",
        use_bias=False,
        depthwise_regularizer=reg,
        pointwise_regularizer=reg,
        name=f"{name}_conv1",
    )(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.SeparableConv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        depthwise_regularizer=reg,
        pointwise_regularizer=reg,
        name=f"{name}_conv2",
    )(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def skinnet(
    input_size: int = 160,
    n_classes: int = N_CLASSES,
    widths: tuple[int, ...] = (48, 96, 160, 256),
    dropout: float = 0.3,
    weight_decay: float = 1e-5,
) -> keras.Model:
    """A compact residual separable CNN with global average pooling (~0.2M params):
    small enough to train from scratch on ~3k images on two CPU cores."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for k, width in enumerate(widths):
        x = _residual_stage(x, width, stride=2, name=f"stage{k + 1}", weight_decay=weight_decay)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="skinnet")


def tiny_cnn(input_size: int = 32, n_classes: int = N_CLASSES) -> keras.Model:
    """A few-thousand-parameter CNN for tests: trains in seconds."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def _effnet_lite(
    variant: str,
    input_size: int,
    n_classes: int,
    dropout: float,
    pretrained: bool,
    stochastic_depth: float = 0.0,
    colour_constancy: bool = False,
) -> keras.Model:
    """EfficientNet-Lite ``variant`` with ImageNet weights (converted offline, shipped in
    assets/) and a new softmax head; built flat so Grad-CAM reaches ``top_activation``.
    ``colour_constancy`` balances each picture's colour and exposure first (Shades of Gray)."""
    from .backbones import efficientnet_lite_features, load_backbone_weights

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = ShadesOfGray(name="colour_constancy")(inputs) if colour_constancy else inputs
    x = efficientnet_lite_features(x, variant, drop_connect=stochastic_depth)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"effnet_{variant}")
    if pretrained:
        load_backbone_weights(model, variant)
    return model


def effnet_lite0(
    input_size: int = 224,
    n_classes: int = N_CLASSES,
    dropout: float = 0.3,
    pretrained: bool = True,
    stochastic_depth: float = 0.0,
    colour_constancy: bool = False,
) -> keras.Model:
    """EfficientNet-Lite0 (3.4M params, 16 blocks) with ImageNet weights and a new head."""
    return _effnet_lite("lite0", input_size, n_classes, dropout, pretrained, stochastic_depth, colour_constancy)


def effnet_lite2(
    input_size: int = 224,
    n_classes: int = N_CLASSES,
    dropout: float = 0.3,
    pretrained: bool = True,
    stochastic_depth: float = 0.0,
    colour_constancy: bool = False,
) -> keras.Model:
    """EfficientNet-Lite2 (4.9M params, 21 blocks, wider) with ImageNet weights and a new
    head; run below its native 260 px, where an epoch costs less and validation scored no lower."""
    return _effnet_lite("lite2", input_size, n_classes, dropout, pretrained, stochastic_depth, colour_constancy)


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "seed_cnn": seed_cnn,
    "skinnet": skinnet,
    "tiny_cnn": tiny_cnn,
    "effnet_lite0": effnet_lite0,
    "effnet_lite2": effnet_lite2,
}
DEFAULT_INPUT_SIZE = {"seed_cnn": 180, "skinnet": 160, "tiny_cnn": 32, "effnet_lite0": 224, "effnet_lite2": 224}
# Pretrained architectures: the layer from which fine-tuning unfreezes (everything
# before it stays frozen), and the feature layer their cached-feature warm-up uses.
# Both start at the first block of the 112-channel stage (Lite2's is 120 channels wide).
FINETUNE_FROM = {"effnet_lite0": "block8_expand_conv", "effnet_lite2": "block11_expand_conv"}
FEATURE_OUTPUT = {"effnet_lite0": "gap", "effnet_lite2": "gap"}


def build_model(
    arch: str,
    input_size: int | None = None,
    n_classes: int = N_CLASSES,
    stochastic_depth: float = 0.0,
    colour_constancy: bool = False,
) -> keras.Model:
    """Build an architecture by name; ``stochastic_depth`` (pretrained backbones only) is
    the drop probability of the last residual branch in training, ``colour_constancy``
    (pretrained backbones only) puts a Shades of Gray colour and exposure balance in front."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    options: dict = {}
    for option, value, what in (
        ("stochastic_depth", stochastic_depth, "stochastic depth"),
        ("colour_constancy", colour_constancy, "colour constancy"),
    ):
        if value:
            if arch not in FINETUNE_FROM:
                raise ValueError(f"{what} is only built into the pretrained backbones, not {arch!r}")
            options[option] = value
    return ARCHITECTURES[arch](input_size=input_size or DEFAULT_INPUT_SIZE[arch], n_classes=n_classes, **options)
