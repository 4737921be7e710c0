"""Empirical bias correction of an int8 LiteRT model.

Rounding a network's activations to 8 bits does not only add noise: it shifts the mean
of each convolution's output channel by a fraction of a quantization step (rounding
and clipping are not symmetric), and those shifts add up through the layers. On the
shipped model they, not the 8-bit weights, were what moved the int8 export's malignant
score away from the float model's. Bias correction (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", section 4.2, in its
empirical form) measures each shift on calibration images and takes it out of the
layer's integer bias: no weights change, the model keeps its size and speed.

Layers are corrected in order, each measured with the earlier ones already corrected,
against the same layer of the float model on the same images. The shift is measured
after the layer's fused activation (what a LiteRT interpreter can read), which for a
ReLU6 layer is the pre-activation shift times the share of active outputs: it
under-corrects rather than over-corrects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

CORRECTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
DEFAULT_IMAGES = 32  # calibration images the shifts are measured on


def _interpreter(flat: bytes):
    """An interpreter that keeps every intermediate tensor readable (no delegate)."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "intended for debugging": reading them is the point here
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=bytes(flat), num_threads=2, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    return interpreter


def _layer_ops(interpreter) -> list[dict[str, Any]]:
    # the interpreter's op listing is private; TensorFlow's own quantization debugger reads it too
    return [op for op in interpreter._get_ops_details() if op["op_name"] in CORRECTED_OPS]


def _signature(interpreter, ops: list[dict[str, Any]]) -> list[tuple]:
    """Each layer's kind and output shape: what pairs a float layer with its int8 twin."""
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [(op["op_name"], tuple(details[op["outputs"][0]]["shape"])) for op in ops]


def _run(interpreter, image: np.ndarray) -> None:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray(image, np.float32)[None])
    interpreter.invoke()


def _channel_sums(values: np.ndarray) -> tuple[np.ndarray, int]:
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    return flat.sum(axis=0), len(flat)


def _own_buffer(model, tensor_index: int):
    """The tensor's buffer, first copied when other tensors share it: the converter
    stores equal constants once (all-zero biases of untrained layers, say), and a
    correction meant for one layer must not move the others."""
    from tensorflow.lite.python import schema_py_generated as schema

    tensor = model.subgraphs[0].tensors[tensor_index]
    users = sum(t.buffer == tensor.buffer for subgraph in model.subgraphs for t in subgraph.tensors)
    if users > 1:
        copy = schema.BufferT()
        copy.data = np.array(model.buffers[tensor.buffer].data, np.uint8)
        model.buffers.append(copy)
        tensor.buffer = len(model.buffers) - 1
    return model.buffers[tensor.buffer]


def correct_biases(
    int8_flat: bytes, float_flat: bytes, images: np.ndarray, progress: bool = False
) -> tuple[bytes, dict[str, Any]]:
    """The int8 model with each quantized layer's bias corrected by the mean shift of
    its output channels from the float model's on ``images`` (training pictures at the
    input size), and a summary for the export's manifest. ``float_flat`` is the same
    model converted without quantization; the two must have the same layers in the
    same order. Layers left in float (``--float-above``) are left as they are."""
    from tensorflow.lite.tools import flatbuffer_utils

    if images is None or not len(images):
        raise ValueError("bias correction needs calibration images")
    float_interpreter, probe = _interpreter(float_flat), _interpreter(int8_flat)
    float_ops, int8_ops = _layer_ops(float_interpreter), _layer_ops(probe)
    if _signature(float_interpreter, float_ops) != _signature(probe, int8_ops):
        raise ValueError("the float and int8 models do not have the same layers in the same order")

    # the float model's mean of each layer's output channels, from one pass per image
    per_image = []
    for image in images:
        _run(float_interpreter, image)
        per_image.append([_channel_sums(float_interpreter.get_tensor(op["outputs"][0])) for op in float_ops])
    float_means = [sum(s[k][0] for s in per_image) / sum(s[k][1] for s in per_image) for k in range(len(float_ops))]

    details = {t["index"]: t for t in probe.get_tensor_details()}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8_flat))
    tensors = model.subgraphs[0].tensors
    shifts: list[float] = []
    for k, op in enumerate(tqdm(int8_ops, desc="correcting int8 biases", unit="layer", disable=not progress)):
        output = details[op["outputs"][0]]
        bias_index = op["inputs"][2] if len(op["inputs"]) > 2 else -1
        if output["dtype"] != np.int8 or bias_index < 0 or details[bias_index]["dtype"] != np.int32:
            continue  # a layer kept in float, or one without a bias
        scale = float(output["quantization_parameters"]["scales"][0])
        zero_point = int(output["quantization_parameters"]["zero_points"][0])
        interpreter = _interpreter(flatbuffer_utils.convert_object_to_bytearray(model))
        total, n = 0.0, 0
        for image in images:
            _run(interpreter, image)
            quantized = interpreter.get_tensor(op["outputs"][0]).astype(np.float32)
            image_total, image_n = _channel_sums((quantized - zero_point) * scale)
            total, n = total + image_total, n + image_n
        shift = total / n - float_means[k]
        bias_scales = details[bias_index]["quantization_parameters"]["scales"]
        bias = np.frombuffer(bytes(model.buffers[tensors[bias_index].buffer].data), np.int32).astype(np.int64)
        bias = np.clip(bias - np.round(shift / bias_scales).astype(np.int64), -(2**31), 2**31 - 1)
        _own_buffer(model, bias_index).data = np.frombuffer(bias.astype(np.int32).tobytes(), np.uint8)
        shifts.append(float(np.abs(shift).mean() / scale))
    summary = {
        "images": len(images),
        "layers_corrected": len(shifts),
        # mean |shift| per channel before correction, in the layer's quantization steps
        "mean_shift_steps": round(float(np.mean(shifts)), 3) if shifts else 0.0,
        "largest_mean_shift_steps": round(float(np.max(shifts)), 3) if shifts else 0.0,
    }
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), summary
