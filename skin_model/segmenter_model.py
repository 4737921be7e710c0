"""Lesion segmentation networks: where in the picture the lesion lies, pixel by pixel.

The shipped one is a light U-Net: the ImageNet EfficientNet-Lite0 encoder (the same
converted weights the classifiers start from) with a small decoder that climbs back from
1/32 of the input to 1/4 through the encoder's own feature maps, then a bilinear
upsampling to the input size. Lesions are smooth blobs, so a decoder that stops at 1/4
loses little, and it keeps the added time per picture small. A tiny from-scratch variant
serves the tests.
"""

from __future__ import annotations

import keras
from keras import layers

# Encoder taps of Lite0, finest first: 1/4 (24 ch), 1/8 (40), 1/16 (112), 1/32 (192)
LITE0_SKIPS = ("block2_add", "block4_add", "block10_add", "block14_add")
DECODER_FILTERS = (96, 64, 32)  # from the coarsest join to the finest
OUTPUT_NAME = "lesion_probability"
SEGMENTER_ARCHITECTURES = ("lite0_unet", "tiny_unet")


def _decoder_step(x, skip, filters: int, name: str):
    """Upsample ``x`` twofold, join the encoder's ``skip`` and mix with two separable
    convolutions."""
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    x = layers.Concatenate(name=f"{name}_join")([x, skip])
    for k in (1, 2):
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{k}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{k}")(x)
        x = layers.ReLU(name=f"{name}_relu{k}")(x)
    return x


def _head(x, upsample: int):
    """One logit per pixel at the decoder's resolution, upsampled to the input."""
    x = layers.Conv2D(1, 1, name="mask_logit")(x)
    x = layers.UpSampling2D(upsample, interpolation="bilinear", name="mask_up")(x)
    return layers.Activation("sigmoid", name=OUTPUT_NAME, dtype="float32")(x)


def lite0_unet(input_size: int = 192, pretrained: bool = True) -> keras.Model:
    """EfficientNet-Lite0 encoder (ImageNet weights unless ``pretrained`` is False) with
    a U-Net decoder to 1/4 of the input; 0-255 RGB in, lesion probability per pixel out.
    ``input_size`` must be a multiple of 32."""
    from .backbones import efficientnet_lite_features, load_backbone_weights

    if input_size % 32:
        raise ValueError(f"input size {input_size} is not a multiple of 32")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    encoder = keras.Model(inputs, efficientnet_lite_features(inputs, "lite0"), name="encoder")
    skips = [encoder.get_layer(name).output for name in LITE0_SKIPS]
    x = skips[-1]
    for k, (skip, filters) in enumerate(zip(reversed(skips[:-1]), DECODER_FILTERS, strict=True)):
        x = _decoder_step(x, skip, filters, f"decoder{k}")
    model = keras.Model(inputs, _head(x, 4), name="lite0_unet")
    if pretrained:
        load_backbone_weights(model, "lite0")
    return model


def tiny_unet(input_size: int = 64, pretrained: bool = False) -> keras.Model:
    """A small from-scratch encoder-decoder (tests: it learns drawn lesions in seconds)."""
    del pretrained  # nothing to load
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="scale")(inputs)
    skips = []
    for k, filters in enumerate((8, 16, 32)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"enc{k}_conv")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{k}_pool")(x)
    for k, filters in enumerate((32, 16, 8)):
        x = layers.UpSampling2D(2, name=f"dec{k}_up")(x)
        x = layers.Concatenate(name=f"dec{k}_join")([x, skips[-1 - k]])
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"dec{k}_conv")(x)
    return keras.Model(inputs, _head(x, 1), name="tiny_unet")


def build_segmenter(arch: str, input_size: int, pretrained: bool = True) -> keras.Model:
    """The segmentation network named ``arch`` (one of :data:`SEGMENTER_ARCHITECTURES`)."""
    builders = {"lite0_unet": lite0_unet, "tiny_unet": tiny_unet}
    if arch not in builders:
        raise ValueError(f"unknown segmenter {arch!r}; choose from {', '.join(SEGMENTER_ARCHITECTURES)}")
    return builders[arch](input_size, pretrained)
