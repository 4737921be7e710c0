"""Visual explanations: Grad-CAM (fast GradientTape path and tf-keras-vis), Grad-CAM++,
Score-CAM / Faster-Score-CAM, Layer-CAM and SmoothGrad, plus overlay rendering.

tf-keras-vis 0.8.7 under Keras 3 has three traps, all handled here so callers never
see them:
- a Sequential model breaks ``ReplaceToLinear`` (no ``output_names``) and loses its
  gradients after reloading: it is rebuilt as a flat functional model;
- a nested backbone (a Model used as a layer) gives "Output not connected to inputs":
  the model is rebuilt flat from the backbone's own input;
- ``ReplaceToLinear`` with ``clone=False`` would switch the shared model's softmax off
  for every user: instead the explanation model reuses the original layers but ends in
  a *new* linear copy of the output layer, so the cached model is never modified.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .classes import CLASS_NAMES, MALIGNANT_CLASSES, malignant_score

METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "smoothgrad")
# The map shown first. SmoothGrad's maps hug the lesion far more often than Grad-CAM's,
# but mostly because pixel gradients follow contrast: with the network's top layers
# re-drawn at random they still land on the lesion nearly as often, where Grad-CAM's
# stop doing so (benchmarks/heatmap_lesion.py, its randomisation check). Grad-CAM shows
# what the model pools, wherever that is; models trained with ``train --lesion-focus``
# are taught to pool it from the lesion (skin_model.lesion_focus).
DEFAULT_METHOD = "gradcam"
# each method's name for people
METHOD_LABELS = {
    "gradcam": "Grad-CAM (fast)",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Faster Score-CAM",
    "layercam": "Layer-CAM",
    "smoothgrad": "SmoothGrad (fast)",
}
MALIGNANT_TARGET = "malignant"
SMOOTHGRAD_NOISE = 0.2  # noise standard deviation as a share of the pixel range (tf-keras-vis's smooth_noise)
SMOOTHGRAD_SAMPLES = 8  # noisy copies of the fast SmoothGrad
# Faster Score-CAM's channels (tf-keras-vis's max_N): the layer's channels with the most
# varied activations, each masking the picture for one more forward pass. Ten, the
# library's example, left most of the map to channels that do not see the lesion: on 60
# validation pictures of HAM10000 its hottest point fell inside the expert mask for 0.32
# of them, against 0.83 with 32 channels, 0.85 with 64 or 96 at twice and four times the
# time (benchmarks/heatmap_lesion.py compares the methods on the test split).
SCORECAM_CHANNELS = 32


def smoothing_sigma(size: int) -> float:
    """The fast SmoothGrad map's Gaussian blur: 1/64 of the input's side (4 px at 260)."""
    return size / 64


_SPATIAL_TYPES = ("Conv", "SeparableConv", "DepthwiseConv", "Activation", "ReLU", "Add", "BatchNormalization")


def _apply_copy(layer, x, linear: bool = False):
    """Apply a fresh copy of ``layer`` (same config and weights; optionally a linear
    activation) to ``x``. Copies keep one graph node each, so ``layer.output`` of the
    rebuilt model is well defined, and the original layer is never touched."""
    config = layer.get_config()
    if linear:
        config["activation"] = "linear"
        config["name"] = f"{layer.name}_linear"
    copy = type(layer).from_config(config)
    y = copy(x)
    copy.set_weights(layer.get_weights())
    return y


def _ends_in_softmax(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def _flatten(model, linear_head: bool):
    """``model`` as a functional model without nested models; with ``linear_head`` its
    final softmax is replaced by a linear copy of that layer."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    nested = [layer for layer in layers if isinstance(layer, keras.Model)]
    if any(layer is not layers[0] for layer in nested):
        raise ValueError(f"{model.name}: a nested model is only supported as the first layer (a backbone)")
    if nested:  # rebuild on the backbone's own input, so gradients reach its layers
        backbone = _flatten(layers[0], linear_head=False)
        inputs, x, chain = backbone.inputs, backbone.outputs[0], layers[1:]
    elif isinstance(model, keras.Sequential):
        inputs = [keras.Input(model.inputs[0].shape[1:])]
        x, chain = inputs[0], layers
    else:  # already a flat functional graph
        if not linear_head or not _ends_in_softmax(model.layers[-1]):
            return model
        last = model.layers[-1]
        return keras.Model(model.inputs, _apply_copy(last, last.input, linear=True), name=f"{model.name}_explain")
    for layer in chain[:-1] if (linear_head and chain) else chain:
        x = _apply_copy(layer, x)
    if linear_head and chain:
        last = chain[-1]
        x = _apply_copy(last, x, linear=_ends_in_softmax(last))
    return keras.Model(inputs, x, name=f"{model.name}_explain" if linear_head else f"{model.name}_flat")


def explanation_model(model):
    """A flat functional model computing the original model's pre-softmax scores.

    The original model is untouched: its layers are reused (shared weights), except
    the final softmax layer, which is replaced by a new linear copy.
    """
    return _flatten(model, linear_head=True)


def last_spatial_layer(model) -> str:
    """Name of the last layer with a spatial (H x W x C, H and W > 1) output that is a
    convolution or follows one: where Grad-CAM looks, found rather than hard-coded."""
    for layer in reversed(model.layers):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and (shape[1] or 2) > 1 and any(t in type(layer).__name__ for t in _SPATIAL_TYPES):
            return layer.name
    raise ValueError(f"{model.name} has no convolutional feature map to explain")


def _score_fn(target: int | str, probability: bool = False):
    """The scalar per image that the map explains: a class logit, or log P(malignant);
    with ``probability`` the softmax probability (what Score-CAM's weights assume)."""
    import tensorflow as tf

    if probability:
        mask = tf.constant([name in MALIGNANT_CLASSES for name in CLASS_NAMES])

        def prob(logits):
            p = tf.nn.softmax(logits, axis=-1)
            if target == MALIGNANT_TARGET:
                return tf.reduce_sum(tf.boolean_mask(p, mask, axis=1), axis=1)
            return p[:, int(target)]

        return prob

    if target == MALIGNANT_TARGET:
        mask = tf.constant([name in MALIGNANT_CLASSES for name in CLASS_NAMES])

        def malignant(logits):
            return tf.reduce_logsumexp(tf.boolean_mask(logits, mask, axis=1), axis=1) - tf.reduce_logsumexp(
                logits, axis=1
            )

        return malignant
    index = int(target)
    return lambda logits: logits[:, index]


# target codes of the traced Grad-CAM paths: a class index, MALIGNANT_CODE for
# log P(malignant), PREDICTED_CODE for each image's predicted class
MALIGNANT_CODE = len(CLASS_NAMES)
PREDICTED_CODE = -1


def target_code(target: int | str | None) -> int:
    """The traced paths' integer code for a target: None = the predicted class, a class
    index or name, or ``MALIGNANT_TARGET``."""
    if target is None:
        return PREDICTED_CODE
    if target == MALIGNANT_TARGET:
        return MALIGNANT_CODE
    return CLASS_NAMES.index(target) if isinstance(target, str) else int(target)


def target_scores(logits):
    """(batch, classes + 1): the class logits, then log P(malignant); what the traced
    Grad-CAM paths explain, indexed by :func:`target_code`."""
    import tensorflow as tf

    return tf.concat([logits, _score_fn(MALIGNANT_TARGET)(logits)[:, None]], axis=1)


def gradcam_from_tape(tape, value, features):
    """Grad-CAM maps (batch, h, w) from a tape that recorded ``features`` (the explained
    layer's output) on the way to ``value`` (one score per image): channels weighted by
    their mean gradient, summed, negative evidence cut."""
    import tensorflow as tf

    grads = tape.gradient(value, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))


def explained_forward_model(model, feature_layers: list[str] | None = None):
    """One model giving, in a single pass, the class logits, the Grad-CAM layer's output
    and the reliability check's pooled features: the app's diagnosis and its heat map
    from one forward pass (see :meth:`skin_model.inference.Predictor.predict_explained`).
    Like :func:`explanation_model`, it leaves ``model`` untouched."""
    import keras

    from .taps import pooled_outputs

    flat = explanation_model(model)
    maps = flat.get_layer(last_spatial_layer(flat)).output
    pooled = pooled_outputs(flat, feature_layers or [])
    return keras.Model(flat.inputs, [flat.outputs[0], maps, *pooled], name=f"{model.name}_diagnose")


def heat_from_cam(cam: np.ndarray, size: int) -> np.ndarray:
    """A raw Grad-CAM map upsampled to the (size, size) model input and scaled to [0, 1]."""
    return _normalise(_resize_map(cam, (size, size))).astype(np.float32)


def _resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a (h, w) map to ``size`` (h, w), as tf-keras-vis does."""
    from scipy.ndimage import zoom

    return zoom(cam, (size[0] / cam.shape[0], size[1] / cam.shape[1]), order=1)


def _normalise(cam: np.ndarray) -> np.ndarray:
    lo, hi = float(cam.min()), float(cam.max())
    return (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam, dtype=np.float32)


class Explainer:
    """Explanations for one model, built once (the tf-keras-vis objects and the traced
    fast path are cached); the model it was given is never modified."""

    def __init__(self, model, input_size: int) -> None:
        import keras
        import tensorflow as tf

        self.input_size = input_size
        self.model = explanation_model(model)
        self.layer_name = last_spatial_layer(self.model)
        self._grad_model = keras.Model(
            self.model.inputs, [self.model.get_layer(self.layer_name).output, self.model.outputs[0]]
        )
        self._tools: dict[str, Any] = {}
        spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
        # one traced function for every target (the target is a tensor argument), so
        # switching the explained class in the app never re-traces the model
        self._fast = tf.function(self._fast_cam, input_signature=[spec, tf.TensorSpec([], tf.int32)])
        self._gradients = tf.function(self._input_gradients, input_signature=[spec, tf.TensorSpec([], tf.int32)])

    def _fast_cam(self, x, target):
        """Grad-CAM by GradientTape; ``target`` indexes the class logits, or, one past
        them, log P(malignant) (see ``_score_fn``)."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            features, logits = self._grad_model(x, training=False)
            value = tf.gather(target_scores(logits), target, axis=1)
        return gradcam_from_tape(tape, value, features)

    def _input_gradients(self, x, target):
        """The gradient of the explained score (as in ``_fast_cam``) with respect to the pixels."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.gather(target_scores(self.model(x, training=False)), target, axis=1)
        return tape.gradient(value, x)

    def fast_smoothgrad(self, image: np.ndarray, target: int | str, samples: int = SMOOTHGRAD_SAMPLES) -> np.ndarray:
        """SmoothGrad (Smilkov et al. 2017) in one batched model call: the absolute pixel
        gradients of ``samples`` noisy copies (noise of :data:`SMOOTHGRAD_NOISE` of the
        pixel range, from a fixed seed, so a picture always gets the same map), the
        largest over colour channels, averaged, then a Gaussian blur of
        :func:`smoothing_sigma` pixels so the map reads as regions, not speckle."""
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng(0)
        x = np.asarray(image, np.float32)
        noisy = x[None] + rng.normal(0, 255 * SMOOTHGRAD_NOISE, (samples, *x.shape)).astype(np.float32)
        gradients = self._gradients(noisy, np.int32(target_code(target))).numpy()
        heat = np.abs(gradients).max(axis=-1).mean(axis=0)
        return _normalise(gaussian_filter(heat, smoothing_sigma(self.input_size))).astype(np.float32)

    def _tool(self, method: str):
        """The tf-keras-vis object for a method, created once."""
        if method not in self._tools:
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.layercam import Layercam
            from tf_keras_vis.saliency import Saliency
            from tf_keras_vis.scorecam import Scorecam

            cls = {
                "gradcam": Gradcam,
                "gradcam++": GradcamPlusPlus,
                "scorecam": Scorecam,
                "layercam": Layercam,
                "smoothgrad": Saliency,
            }[method]
            # our explanation model is already linear and private: no cloning needed
            self._tools[method] = cls(self.model, clone=False)
        return self._tools[method]

    def target_index(self, target: int | str | None, probs: np.ndarray | None = None) -> int | str:
        if target is None:
            if probs is None:
                raise ValueError("give a target or the probabilities to pick the predicted class")
            return int(np.argmax(probs))
        if isinstance(target, str) and target != MALIGNANT_TARGET:
            return CLASS_NAMES.index(target)
        return target

    def explain(
        self,
        image: np.ndarray,
        method: str = "gradcam",
        target: int | str = 0,
        fast: bool = True,
        max_n: int | None = SCORECAM_CHANNELS,
        smooth_samples: int | None = None,
    ) -> np.ndarray:
        """A heat map in [0, 1] of shape (input_size, input_size) for one image given as
        a (size, size, 3) array of 0-255 pixels. ``fast`` uses the traced GradientTape
        paths for Grad-CAM and SmoothGrad (``smooth_samples`` noisy copies, default
        :data:`SMOOTHGRAD_SAMPLES`; tf-keras-vis's SmoothGrad defaults to 20); ``max_n``
        makes Score-CAM the faster variant (None = all channels; see :data:`SCORECAM_CHANNELS`)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        target = self.target_index(target)
        x = np.asarray(image, np.float32)[None]
        if method == "gradcam" and fast:
            return heat_from_cam(self._fast(x, np.int32(target_code(target))).numpy()[0], self.input_size)
        if method == "smoothgrad" and fast:
            return self.fast_smoothgrad(x[0], target, smooth_samples or SMOOTHGRAD_SAMPLES)
        score = _score_fn(target, probability=method == "scorecam")
        tool = self._tool(method)
        if method == "smoothgrad":
            result = tool(score, x, smooth_samples=smooth_samples or 20, smooth_noise=SMOOTHGRAD_NOISE)
        elif method == "scorecam":
            # a smaller network's layer may hold fewer channels than asked for: keep them all
            channels = int(self.model.get_layer(self.layer_name).output.shape[-1])
            keep = None if max_n is None else min(max_n, channels)
            result = tool(score, x, penultimate_layer=self.layer_name, seek_penultimate_conv_layer=False, max_N=keep)
        else:
            # without seek_penultimate_conv_layer=False, tf-keras-vis swaps a named layer that is
            # not a convolution (EfficientNet's top_activation) for the convolution before it, and
            # maps the pre-activation features: another tensor than the fast path's
            result = tool(score, x, penultimate_layer=self.layer_name, seek_penultimate_conv_layer=False)
        return _normalise(np.asarray(result)[0]).astype(np.float32)


@functools.lru_cache(maxsize=8)
def colormap_lut(name: str = "Viridis") -> np.ndarray:
    """A 256x3 uint8 lookup table from a plotly colour scale (perceptually uniform and
    colour-blind safe for Viridis/Cividis/Inferno)."""
    from plotly.colors import sample_colorscale, unlabel_rgb

    colors = sample_colorscale(name, list(np.linspace(0, 1, 256)), colortype="rgb")
    return np.array([unlabel_rgb(c) for c in colors], dtype=np.float64).round().astype(np.uint8)


def render_overlay(image: Image.Image, heat: np.ndarray, opacity: float = 0.6, cmap: str = "Viridis") -> Image.Image:
    """The heat map coloured and blended over the picture, at the picture's size. Each
    pixel's blend weight is ``opacity`` times its heat, so cold regions keep the
    original picture and the evidence stands out."""
    rgb = image.convert("RGB")
    heat_img = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8), "L").resize(rgb.size, Image.BILINEAR)
    level = np.asarray(heat_img)
    colored = colormap_lut(cmap)[level].astype(np.float32)
    alpha = (float(np.clip(opacity, 0, 1)) * level.astype(np.float32) / 255.0)[..., None]
    blended = np.asarray(rgb, np.float32) * (1 - alpha) + colored * alpha
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")


def heat_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the total heat that falls inside a (same-shape, boolean) lesion mask."""
    total = float(heat.sum())
    return float(heat[mask.astype(bool)].sum() / total) if total > 0 else 0.0


def lesion_mask_agreement(heat: np.ndarray, mask: Image.Image) -> dict[str, float | bool]:
    """How a heat map (on the square model input) sits on a lesion mask of the picture
    (>= 128 = lesion, at the picture's own size and shape): the share of the heat inside
    the lesion against the lesion's share of the picture (a map that ignored the lesion
    would score about the same), and whether the hottest point lies inside (the pointing
    game). The mask is squashed to the heat map's grid, as the picture was."""
    grid = mask.convert("L").resize((heat.shape[1], heat.shape[0]), Image.Resampling.BILINEAR)
    inside = np.asarray(grid) >= 128
    hottest = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return {
        "heat_inside_lesion": round(heat_inside(heat, inside), 4),
        "lesion_share": round(float(inside.mean()), 4),
        "hottest_point_inside": bool(inside[hottest]),
    }


def occlude_most_salient(
    image: np.ndarray, heat: np.ndarray, fractions: tuple[float, ...], fill: np.ndarray
) -> np.ndarray:
    """Copies of ``image`` with the ``fraction`` of its pixels that ``heat`` rates highest
    replaced by ``fill`` (same shape as the image), one per fraction: the inputs of a
    deletion test (Petsiuk et al., 2018). A faithful map names the pixels whose loss
    lowers the explained score most; ties in the heat are broken by a fixed pixel order."""
    order = np.argsort(-heat.ravel(), kind="stable")
    out = np.repeat(np.asarray(image, np.float32)[None], len(fractions), axis=0)
    flat_fill = np.asarray(fill, np.float32).reshape(-1, out.shape[-1])
    for i, fraction in enumerate(fractions):
        chosen = order[: round(fraction * order.size)]
        view = out[i].reshape(-1, out.shape[-1])
        view[chosen] = flat_fill[chosen]
    return out


def deletion_blur_radius(size: int) -> float:
    """The blur that stands in for deleted pixels in a ``size``-pixel model input: heavy
    enough to wipe out dermoscopic structure (14 px at 224), not the lesion's colour."""
    return size / 16


def blurred(image: np.ndarray, radius: float) -> np.ndarray:
    """The picture under a Gaussian blur: the deletion test's stand-in for removed pixels,
    which keeps the local colour (a flat grey patch would itself be evidence of something)."""
    from PIL import ImageFilter

    pil = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "RGB")
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), np.float32)


def random_smooth_map(size: int, rng: np.random.Generator, cells: int = 7) -> np.ndarray:
    """A random heat map as smooth as a Grad-CAM map of a ``cells`` x ``cells`` layer:
    the chance level of a deletion test."""
    return heat_from_cam(rng.random((cells, cells)).astype(np.float32), size)


def deletion_curve(
    predict, image: np.ndarray, heat: np.ndarray, target: int, fractions: tuple[float, ...], fill: np.ndarray
) -> np.ndarray:
    """The probability of class ``target`` as ever more of the pixels ``heat`` ranks
    highest are deleted (``predict`` maps a batch of pictures to probabilities). The
    faster it falls against a random map's curve, the more the map names evidence the
    model really uses."""
    return np.asarray(predict(occlude_most_salient(image, heat, fractions, fill)))[:, target]


@dataclass(frozen=True)
class EvidenceCheck:
    """One picture's deletion test: the explained score before and after blurring away
    the ``fraction`` of the picture the map rates highest, and the same share picked by
    a random map (chance)."""

    fraction: float
    before: float
    after_map: float
    after_random: float

    @property
    def map_beats_chance(self) -> bool:
        return self.after_map < self.after_random

    def describe(self, target_label: str) -> str:
        """The check in words, for the app and the command line."""
        share = f"{self.fraction:.0%}"
        if self.map_beats_chance:
            return (
                f"Check: blurring the {share} of the picture this map rates highest takes “{target_label}” from "
                f"{self.before:.0%} to {self.after_map:.0%}; blurring a random {share} leaves {self.after_random:.0%}."
            )
        return (
            f"Caution: blurring the {share} of the picture this map rates highest leaves “{target_label}” at "
            f"{self.after_map:.0%} (from {self.before:.0%}; a random {share}: {self.after_random:.0%}). For this "
            "picture the map does not single out what the model relies on: read it with care."
        )


def evidence_check(
    predict,
    model_input: np.ndarray,
    heat: np.ndarray,
    target: int | str,
    fraction: float = 0.1,
    seed: int = 0,
    probs: np.ndarray | None = None,
) -> EvidenceCheck:
    """Check one explanation on its own picture: does removing what the map points at
    lower the explained score (a class index, a class name or ``MALIGNANT_TARGET``) more
    than removing as much picked at random? ``predict`` maps a batch of model inputs to
    probabilities; the pictures go through it in one call. ``probs``, the picture's own
    probabilities from the same ``predict``, saves predicting it again."""
    image = np.asarray(model_input, np.float32)
    fill = blurred(image, deletion_blur_radius(heat.shape[0]))
    chance = random_smooth_map(heat.shape[0], np.random.default_rng(seed))
    pictures = [occlude_most_salient(image, ranking, (fraction,), fill) for ranking in (heat, chance)]
    if probs is None:
        pictures.insert(0, image[None])
    predicted = np.asarray(predict(np.concatenate(pictures)))
    if probs is not None:
        predicted = np.concatenate([np.asarray(probs, np.float64).reshape(1, -1), predicted])
    if target == MALIGNANT_TARGET:
        score = malignant_score(predicted)
    else:
        score = predicted[:, CLASS_NAMES.index(target) if isinstance(target, str) else int(target)]
    return EvidenceCheck(fraction, float(score[0]), float(score[1]), float(score[2]))
