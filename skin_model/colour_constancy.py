"""Shades of Gray colour constancy (Finlayson and Trezzi 2004), as a layer inside the model.

Dermoscopes and cameras differ in their light, exposure and white balance, and the model
saw only two image collections. Estimating each picture's illuminant as the Minkowski
p-norm mean of each channel and scaling every channel so that it becomes one fixed grey
gives each picture the same neutral balance and exposure before the network reads it;
several ISIC challenge leaders preprocessed with Shades of Gray. (The usual form keeps
the illuminant's brightness and takes out only its colour; fixing the grey also takes
out exposure, which the shipped model's answers did not survive: 15-17 % of them changed
with the picture 20 % darker or brighter, ``robustness.json``.) Inside
the model it travels with the weights: training, the app, the CLI, Grad-CAM and the
exports all see the same correction, and callers still pass plain 0-255 RGB."""

from __future__ import annotations

import keras
import numpy as np

# Minkowski norm of the illuminant estimate: 1 is Gray World, infinity is White Patch;
# 6 is the value Finlayson and Trezzi found best and the skin-lesion literature kept.
DEFAULT_POWER = 6
# The grey every picture's illuminant is scaled to, as a fraction of 255: the median
# estimate over 300 training pictures of both collections (5-95 % range 0.50-0.84, seed
# set 0.68, ISIC 2017 0.66), so a typical picture keeps its brightness.
TARGET_GREY = 0.67
# A black frame has no illuminant: the gain is capped instead of dividing by zero.
MIN_ILLUMINANT = 0.02


def shades_of_gray(image: np.ndarray, power: int = DEFAULT_POWER, grey: float = TARGET_GREY) -> np.ndarray:
    """Reference implementation on one (H, W, 3) 0-255 picture: each channel multiplied by
    the gain that turns its estimated illuminant into ``grey`` (clipped to 0-255)."""
    pixels = image.astype(np.float64) / 255.0
    illuminant = np.mean(pixels**power, axis=(0, 1)) ** (1.0 / power)
    gains = grey / np.maximum(illuminant, MIN_ILLUMINANT)
    return np.clip(image.astype(np.float64) * gains, 0.0, 255.0)


@keras.saving.register_keras_serializable(package="skin_model")
class ShadesOfGray(keras.layers.Layer):
    """Per-picture Shades of Gray balance (colour and exposure) of a (batch, H, W, 3)
    0-255 input, as :func:`shades_of_gray`; no weights, the same in training and inference."""

    def __init__(self, power: int = DEFAULT_POWER, grey: float = TARGET_GREY, **kwargs) -> None:
        super().__init__(**kwargs)
        self.power = power
        self.grey = grey

    def call(self, inputs):
        from keras import ops

        pixels = inputs / 255.0
        illuminant = ops.power(ops.mean(ops.power(pixels, self.power), axis=(1, 2), keepdims=True), 1.0 / self.power)
        gains = self.grey / ops.maximum(illuminant, MIN_ILLUMINANT)
        return ops.clip(inputs * gains, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "power": self.power, "grey": self.grey}
