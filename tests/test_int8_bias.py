"""Bias correction of int8 LiteRT models: each layer's mean shift from the float model is taken out."""

from __future__ import annotations

import numpy as np
import pytest

from skin_model.int8_bias import _interpreter, _layer_ops, _run, correct_biases

SIZE = 32


@pytest.fixture(scope="module")
def toy_models() -> tuple[bytes, bytes, np.ndarray, np.ndarray]:
    """(float flat buffer, int8 flat buffer, calibration images, held-out images) of a
    small untrained conv net with a planted quantization bias. Its depthwise layer
    weighs each pixel's neighbours 0.002-0.0039 against 1 for the pixel itself: with
    one weight scale per channel (1/127) the neighbours' weights round to zero, and
    since the layer's inputs (after ReLU6) are positive, every channel's output comes
    out lower by their weights times the inputs' mean, the kind of shift int8 weights
    and activations leave in a real network's early layers. The convolutions keep
    all-zero biases, which the converter stores once: correcting one must not move
    the others."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu6", name="stem")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu6", name="project")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(9, name="logits")(x))
    rng = np.random.default_rng(0)
    kernel = rng.uniform(0.002, 0.0039, (3, 3, 16, 1)).astype(np.float32)
    kernel[1, 1] = 1.0
    model.get_layer("depthwise").set_weights([kernel, np.zeros(16, np.float32)])
    logits = model.get_layer("logits")
    logits.set_weights([logits.get_weights()[0], rng.normal(0, 0.1, 9).astype(np.float32)])
    calibration = rng.integers(0, 256, (16, SIZE, SIZE, 3)).astype(np.float32)
    held_out = rng.integers(0, 256, (32, SIZE, SIZE, 3)).astype(np.float32)

    def convert(quantize: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()

    return convert(False), convert(True), calibration, held_out


def layer_shifts(float_flat: bytes, int8_flat: bytes, images: np.ndarray) -> list[float]:
    """Each layer's mean |per-channel mean shift| from the float model, in its
    quantization steps, measured independently of the code under test's loop."""
    float_run, int8_run = _interpreter(float_flat), _interpreter(int8_flat)
    details = {t["index"]: t for t in int8_run.get_tensor_details()}
    shifts = []
    for float_op, int8_op in zip(_layer_ops(float_run), _layer_ops(int8_run), strict=True):
        quantization = details[int8_op["outputs"][0]]["quantization_parameters"]
        scale, zero_point = quantization["scales"][0], quantization["zero_points"][0]
        difference = []
        for image in images:
            _run(float_run, image)
            _run(int8_run, image)
            reference = float_run.get_tensor(float_op["outputs"][0])
            served = (int8_run.get_tensor(int8_op["outputs"][0]).astype(np.float64) - zero_point) * scale
            difference.append((served - reference).reshape(-1, reference.shape[-1]).mean(axis=0))
        shifts.append(float(np.abs(np.mean(difference, axis=0)).mean() / scale))
    return shifts


def outputs(flat: bytes, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flat)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_correction_shrinks_every_layers_mean_shift(toy_models) -> None:
    float_flat, int8_flat, calibration, _ = toy_models
    corrected, summary = correct_biases(int8_flat, float_flat, calibration)
    assert summary["images"] == 16 and summary["layers_corrected"] == 4
    before = layer_shifts(float_flat, int8_flat, calibration)
    after = layer_shifts(float_flat, corrected, calibration)
    assert max(before) > 0.1  # the planted small channels do shift
    for layer, (was, now) in enumerate(zip(before, after, strict=True)):
        assert now <= max(was / 2, 0.02), (layer, before, after)


def test_corrected_outputs_are_closer_on_pictures_it_was_not_measured_on(toy_models) -> None:
    float_flat, int8_flat, calibration, held_out = toy_models
    corrected, _ = correct_biases(int8_flat, float_flat, calibration)
    reference = outputs(float_flat, held_out)
    shift = {
        name: np.abs((outputs(flat, held_out) - reference).mean(axis=0)).mean()
        for name, flat in (("int8", int8_flat), ("corrected", corrected))
    }
    assert shift["corrected"] < shift["int8"] / 2, shift


def test_models_that_do_not_pair_up_are_refused(toy_models) -> None:
    import keras
    import tensorflow as tf

    float_flat, int8_flat, calibration, _ = toy_models
    inputs = keras.Input((SIZE, SIZE, 3))
    other = keras.Model(inputs, keras.layers.Dense(9)(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(ValueError, match="same layers"):
        correct_biases(int8_flat, tf.lite.TFLiteConverter.from_keras_model(other).convert(), calibration)
    with pytest.raises(ValueError, match="calibration images"):
        correct_biases(int8_flat, float_flat, calibration[:0])
