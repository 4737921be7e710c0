"""Graph taps of a trained model: the layers the reliability check and the similar-case
index read, and models that return them beside the probabilities in one pass. A model
layer: prediction, explanation and reliability all use it, so it depends on none of them."""

from __future__ import annotations

FEATURE_LAYER = "gap"


def feature_layers(model) -> list[str]:
    """Where the OOD detector looks: the output of the last block before the head (the
    last spatial layer whose channel count differs from the final features') and the
    final pooled features. Earlier layers were tried and rejected: they respond to the
    camera and lighting of the training images, flagging 13-19% of test lesions."""
    spatial = [layer for layer in model.layers if len(layer.output.shape) == 4 and layer.output.shape[-1] > 3]
    final_channels = spatial[-1].output.shape[-1]
    block = next((layer.name for layer in reversed(spatial) if layer.output.shape[-1] != final_channels), None)
    return ([block] if block else []) + [FEATURE_LAYER]


def pooled_outputs(model, layers: list[str]) -> list:
    """The average-pooled output of each named layer of ``model`` (symbolic tensors):
    the features the out-of-distribution detector measures."""
    import keras

    pooled = []
    for name in layers:
        out = model.get_layer(name).output
        pooled.append(keras.ops.mean(out, axis=(1, 2)) if len(out.shape) == 4 else out)
    return pooled


def feature_model(model, layers: list[str]):
    """A model returning (probabilities, [average-pooled output of each layer]) in one pass."""
    import keras

    return keras.Model(model.inputs, [model.outputs[0], *pooled_outputs(model, layers)])


def forward_with_features(model, layers: list[str], input_size: int):
    """A traced function returning (probabilities, pooled features of ``layers``)."""
    import tensorflow as tf

    both = feature_model(model, layers)
    spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
    return tf.function(lambda x: both(x, training=False), input_signature=[spec])
