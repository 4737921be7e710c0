"""The traced passes a predictor runs: a pass whose weights become constants on first
use, and the diagnosis's pass that gives the heat map from the same model call as the
probabilities (see :class:`skin_model.inference.Predictor`)."""

from __future__ import annotations


class FrozenOnFirstCall:
    """A traced function whose variables become constants of its graph on its first
    call, for a model whose weights no longer change (a loaded artifact). TensorFlow
    then skips a variable read per weight and lets oneDNN prepare the weights once, so
    single images run faster. It costs time to freeze and memory per pass, so it pays
    only for a long-running server answering one image at a time (batches gain nothing;
    ``bench`` prints both). Thread-safe; returns what the traced
    function returns."""

    def __init__(self, function) -> None:
        import threading

        self._function, self._frozen, self._outputs, self._lock = function, None, None, threading.Lock()

    def _freeze(self) -> None:
        # TensorFlow's own freezing (the tool behind its frozen-graph exports); not in
        # the public namespace, so it is imported where it is used
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        concrete = self._function.get_concrete_function()
        self._outputs = concrete.structured_outputs
        self._frozen = convert_variables_to_constants_v2(concrete)

    def __call__(self, *args):
        import tensorflow as tf

        if self._frozen is None:
            with self._lock:
                if self._frozen is None:
                    self._freeze()
        flat = self._frozen(*(tf.convert_to_tensor(arg) for arg in args))
        return tf.nest.pack_sequence_as(self._outputs, list(flat))


def explained_forward(model, feature_layers: list[str] | None, views, average):
    """The diagnosis's pass with its heat map, untraced: (8-view probabilities, single-view
    probabilities, Grad-CAM maps of the picture itself, pooled features) for pictures
    ``x`` and a target code; ``views`` stacks a batch's test-time views, ``average``
    averages their probabilities back (see :class:`skin_model.inference.Predictor`)."""
    import tensorflow as tf

    from .explain import PREDICTED_CODE, explained_forward_model, gradcam_from_tape, target_scores

    diagnose_model = explained_forward_model(model, feature_layers)

    def forward_explained(x, target):
        n = tf.shape(x)[0]
        with tf.GradientTape() as tape:
            logits, maps, *features = diagnose_model(views(x), training=False)
            probs = tf.nn.softmax(logits, axis=-1)
            mean = average(probs, n)
            predicted = tf.argmax(mean, axis=1, output_type=tf.int32)
            chosen = tf.where(target == PREDICTED_CODE, predicted, tf.fill([n], target))
            value = tf.gather(target_scores(logits[:n]), chosen, axis=1, batch_dims=1)
        cams = gradcam_from_tape(tape, value, maps)[:n]
        return (mean, probs[:n], cams, *(f[:n] for f in features))

    return forward_explained
