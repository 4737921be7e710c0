"""Explanations point at the evidence, match tf-keras-vis, and never alter the model."""

from __future__ import annotations

from dataclasses import astuple

import keras
import numpy as np
import pytest
from PIL import Image

from skin_model.classes import CLASS_NAMES, MALIGNANT_CLASSES
from skin_model.explain import (
    METHODS,
    Explainer,
    blurred,
    deletion_curve,
    evidence_check,
    explanation_model,
    heat_inside,
    last_spatial_layer,
    occlude_most_salient,
    random_smooth_map,
    render_overlay,
)

SIZE, SHAPE = 48, 7


def planted_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Textured noise with one small coloured square at a random place; the square's
    colour (red = class 0, green = class 1) is the only thing that decides the class."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(60, 140, size=(n, SIZE, SIZE, 3)).astype(np.float32)
    y = rng.integers(0, 2, n)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        r, c = rng.integers(2, SIZE - SHAPE - 2, 2)
        colour = [250, 30, 30] if y[i] == 0 else [30, 250, 30]
        x[i, r : r + SHAPE, c : c + SHAPE] = colour
        masks[i, r : r + SHAPE, c : c + SHAPE] = True
    return x, y, masks


def small_cnn(n_classes: int = 9) -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def trained() -> keras.Model:
    keras.utils.set_random_seed(0)
    x, y, _ = planted_images(600, seed=1)
    model = small_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    x_test, y_test, _ = planted_images(100, seed=2)
    accuracy = float((model(x_test).numpy().argmax(1) == y_test).mean())
    assert accuracy > 0.95, f"planted-feature model did not learn ({accuracy:.2f})"
    return model


@pytest.fixture(scope="module")
def explainer(trained: keras.Model) -> Explainer:
    return Explainer(trained, SIZE)


def _peak_inside(heat: np.ndarray, mask: np.ndarray, tolerance: int = 1) -> bool:
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    rows, cols = np.nonzero(mask)
    return (
        rows.min() - tolerance <= r <= rows.max() + tolerance and cols.min() - tolerance <= c <= cols.max() + tolerance
    )


@pytest.mark.parametrize(
    ("method", "fast"),
    [("gradcam", True), ("gradcam", False), ("gradcam++", False), ("scorecam", False)],
)
def test_heatmap_peak_lands_on_planted_square(explainer: Explainer, method: str, fast: bool) -> None:
    x, y, masks = planted_images(40, seed=3)
    hits = [
        _peak_inside(explainer.explain(x[i], method, target=int(y[i]), fast=fast, max_n=None), masks[i])
        for i in range(len(x))
    ]
    assert np.mean(hits) >= 0.9, f"{method}: peak on the square in {np.mean(hits):.0%} of images"
    # a centred or random map would not do this: the squares are spread over the image
    centre_hits = np.mean([masks[i][SIZE // 2, SIZE // 2] for i in range(len(x))])
    assert centre_hits < 0.3


def test_fast_path_matches_tf_keras_vis(explainer: Explainer) -> None:
    x, y, _ = planted_images(5, seed=4)
    for i in range(len(x)):
        fast = explainer.explain(x[i], "gradcam", target=int(y[i]), fast=True)
        reference = explainer.explain(x[i], "gradcam", target=int(y[i]), fast=False)
        assert np.corrcoef(fast.ravel(), reference.ravel())[0, 1] >= 0.99


def test_tf_keras_vis_maps_read_the_named_layer_even_when_it_is_not_a_convolution() -> None:
    """EfficientNet's last spatial layer is an activation after the last convolution:
    tf-keras-vis must map that layer (as the fast path does), not the convolution
    before it, whose pre-activation features are another tensor."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", name="top_conv")(x)
    x = keras.layers.Activation("relu", name="top_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("top_conv").set_weights(
        [np.random.default_rng(1).normal(0, 1, (3, 3, 3, 8)).astype("float32"), np.full(8, -0.3, "float32")]
    )
    explainer = Explainer(model, SIZE)
    assert explainer.layer_name == "top_activation"
    images, labels, _ = planted_images(3, seed=6)
    for image, label in zip(images, labels, strict=True):
        fast = explainer.explain(image, "gradcam", target=int(label), fast=True)
        reference = explainer.explain(image, "gradcam", target=int(label), fast=False)
        assert np.corrcoef(fast.ravel(), reference.ravel())[0, 1] >= 0.99


def test_fast_smoothgrad_is_repeatable_and_averages_noisy_gradients(explainer: Explainer) -> None:
    """The same picture always gets the same map (fixed noise seed), and the map is the
    blurred mean of the absolute gradients of the noisy copies, by hand."""
    from scipy.ndimage import gaussian_filter

    from skin_model.explain import SMOOTHGRAD_NOISE, smoothing_sigma, target_code

    x, y, _ = planted_images(2, seed=8)
    first = explainer.explain(x[0], "smoothgrad", target=int(y[0]))
    assert np.array_equal(first, explainer.explain(x[0], "smoothgrad", target=int(y[0])))
    noisy = x[0][None].astype(np.float32) + np.random.default_rng(0).normal(
        0, 255 * SMOOTHGRAD_NOISE, (3, *x[0].shape)
    ).astype(np.float32)
    gradients = np.stack(
        [explainer._gradients(copy[None], np.int32(target_code(int(y[0])))).numpy()[0] for copy in noisy]
    )
    expected = gaussian_filter(np.abs(gradients).max(axis=-1).mean(axis=0), smoothing_sigma(SIZE))
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(explainer.fast_smoothgrad(x[0], int(y[0]), samples=3), expected, atol=1e-4)


def test_heat_inside_mask_fraction() -> None:
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    assert heat_inside(heat, mask) == pytest.approx(0.75)


def test_occlusion_replaces_the_hottest_pixels_first() -> None:
    image = np.arange(16 * 3, dtype=np.float32).reshape(4, 4, 3)
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2], heat[3, 0], heat[0, 0] = 0.9, 0.8, 0.1
    fill = np.full_like(image, -1.0)
    out = occlude_most_salient(image, heat, (0.0, 2 / 16, 3 / 16), fill)
    np.testing.assert_array_equal(out[0], image)
    replaced = [set(zip(*np.nonzero(out[i, ..., 0] == -1), strict=True)) for i in (1, 2)]
    assert replaced == [{(1, 2), (3, 0)}, {(1, 2), (3, 0), (0, 0)}]
    np.testing.assert_array_equal(out[2][out[2] != -1], image[out[2] != -1])  # the rest untouched


def test_deleting_what_gradcam_names_removes_the_evidence(trained: keras.Model, explainer: Explainer) -> None:
    """The deletion test on the planted-square model, on green-square pictures (class 1:
    without its square a picture reads as class 0, so the square is the whole evidence):
    blurring away the 10 % of pixels Grad-CAM ranks highest (the square is 2 %) takes the
    class-1 probability far lower than the same amount chosen by a random smooth map or by
    the map turned upside down."""
    x, y, _ = planted_images(60, seed=6)
    x = x[y == 1]
    rng = np.random.default_rng(0)
    fractions = (0.0, 0.1)

    def predict(batch: np.ndarray) -> np.ndarray:
        return trained(batch).numpy()

    drops = {"gradcam": [], "random": [], "inverse": []}
    for image in x:
        heat = explainer.explain(image, "gradcam", target=1)
        fill = blurred(image, radius=8)
        maps = {"gradcam": heat, "random": random_smooth_map(SIZE, rng), "inverse": 1 - heat}
        for name, ranking in maps.items():
            curve = deletion_curve(predict, image, ranking, 1, fractions, fill)
            drops[name].append(curve[0] - curve[1])
    means = {name: float(np.mean(d)) for name, d in drops.items()}
    assert len(x) >= 20 and means["gradcam"] > 0.5, means
    assert means["random"] < 0.2 and means["inverse"] < 0.2, means


def test_evidence_check_of_one_picture(trained: keras.Model, explainer: Explainer) -> None:
    """Per green-square picture, the check finds that the map's 10 % carries the evidence
    (the class-1 probability falls far more than when a random 10 % is blurred); an
    inverted map's 10 % removes nothing that matters. The malignant score is the summed malignant probability."""
    x, y, _ = planted_images(40, seed=7)
    green = x[y == 1]

    def predict(batch: np.ndarray) -> np.ndarray:
        return trained(batch).numpy()

    checks, inverted = [], []
    for image in green:
        heat = explainer.explain(image, "gradcam", target=1)
        checks.append(evidence_check(predict, image, heat, target=1))
        inverted.append(evidence_check(predict, image, 1 - heat, target=1))
    assert len(checks) >= 12 and all(c.fraction == 0.1 for c in checks)
    drop_map = np.mean([c.before - c.after_map for c in checks])
    drop_random = np.mean([c.before - c.after_random for c in checks])
    assert drop_map > 0.2 and drop_random < 0.05, (drop_map, drop_random)
    assert np.mean([c.map_beats_chance for c in checks]) >= 0.9
    assert np.mean([c.before - c.after_map for c in inverted]) < 0.05  # removes nothing that matters
    image, heat = green[0], explainer.explain(green[0], "gradcam", target=1)
    direct = predict(image[None])[0]
    expected = sum(direct[i] for i, name in enumerate(CLASS_NAMES) if name in MALIGNANT_CLASSES)
    assert evidence_check(predict, image, heat, "malignant").before == pytest.approx(expected, abs=1e-6)
    assert evidence_check(predict, image, heat, "dermatofibroma").before == pytest.approx(direct[2], abs=1e-6)
    # the picture's own probabilities, when given, stand in for predicting it again
    given, predicted = evidence_check(predict, image, heat, 1, probs=direct), evidence_check(predict, image, heat, 1)
    assert astuple(given) == pytest.approx(astuple(predicted), abs=1e-5)


def test_overlay_has_image_size_and_opacity(explainer: Explainer) -> None:
    image = Image.new("RGB", (120, 90), (200, 100, 50))
    heat = np.zeros((SIZE, SIZE), np.float32)
    assert np.array_equal(np.asarray(render_overlay(image, heat, opacity=0.0)), np.asarray(image))
    # cold regions keep the original picture even at full opacity
    assert np.array_equal(np.asarray(render_overlay(image, heat, opacity=1.0)), np.asarray(image))
    blended = render_overlay(image, heat + 1, opacity=1.0)
    assert blended.size == (120, 90) and not np.array_equal(np.asarray(blended), np.asarray(image))


def _sequential(model: keras.Model) -> keras.Sequential:
    seq = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *model.layers[1:]])
    return seq


def _nested(model: keras.Model) -> keras.Model:
    backbone = keras.Model(model.inputs, model.get_layer("features").output, name="backbone")
    inputs = keras.Input((SIZE, SIZE, 3))
    # backbone first, as in transfer learning; head layers reused
    x = backbone(inputs)
    for layer in model.layers[model.layers.index(model.get_layer("features")) + 1 :]:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("variant", ["functional", "sequential", "nested", "sequential_reloaded"])
def test_every_method_on_every_model_shape_leaves_model_unchanged(trained, variant, tmp_path) -> None:
    model = {
        "functional": lambda m: m,
        "sequential": _sequential,
        "nested": _nested,
        "sequential_reloaded": _sequential,
    }[variant](trained)
    if variant == "sequential_reloaded":
        model.save(tmp_path / "m.keras")
        model = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    x, y, masks = planted_images(3, seed=5)
    before = model(x).numpy()
    explainer = Explainer(model, SIZE)
    assert explainer.model is not model
    for method in METHODS:
        for target in (int(y[0]), "malignant"):
            heat = explainer.explain(x[0], method, target=target, max_n=4, smooth_samples=3)
            assert heat.shape == (SIZE, SIZE) and heat.min() >= 0 and heat.max() <= 1
            assert np.isfinite(heat).all()
    np.testing.assert_array_equal(before, model(x).numpy())
    np.testing.assert_allclose(model(x).numpy().sum(axis=1), 1.0, atol=1e-5)  # softmax still on
    if variant != "functional":
        hits = np.mean([_peak_inside(explainer.explain(x[i], "gradcam", int(y[i])), masks[i]) for i in range(3)])
        assert hits >= 2 / 3


def test_last_spatial_layer_is_found(trained: keras.Model) -> None:
    assert last_spatial_layer(explanation_model(trained)) == "features"


@pytest.mark.parametrize("tta", [False, True])
def test_prediction_pass_gives_the_explainers_gradcam(trained: keras.Model, explainer: Explainer, tta: bool) -> None:
    """The predictor's explaining pass returns the same probabilities as its plain pass
    and, for the picture itself, the same Grad-CAM map as the explainer, for the
    predicted class, a chosen class and the malignant score; the map points at the
    planted square."""
    from skin_model.explain import MALIGNANT_TARGET, heat_from_cam
    from skin_model.inference import Predictor

    predictor = Predictor(trained, SIZE, tta=tta, explain=True)
    assert predictor.explains and not Predictor(trained, SIZE).explains
    x, y, masks = planted_images(6, seed=5)
    probs, single, cams, features = predictor.predict_explained(x)
    assert features == [] and cams.shape[0] == len(x)
    np.testing.assert_allclose(probs, predictor.predict_arrays(x), atol=1e-5)
    np.testing.assert_allclose(single, Predictor(trained, SIZE).predict_arrays(x), atol=1e-5)
    predicted = probs.argmax(axis=1)
    assert (predicted == y).all()
    for i in range(len(x)):
        heat = heat_from_cam(cams[i], SIZE)
        np.testing.assert_allclose(heat, explainer.explain(x[i], "gradcam", target=int(predicted[i])), atol=1e-4)
        assert _peak_inside(heat, masks[i])
    for target in (1, "nevus", MALIGNANT_TARGET):
        _, _, cams, _ = predictor.predict_explained(x[:2], target)
        for i in range(2):
            np.testing.assert_allclose(
                heat_from_cam(cams[i], SIZE), explainer.explain(x[i], "gradcam", target=target), atol=1e-4
            )
    with pytest.raises(ValueError, match="explain=True"):
        Predictor(trained, SIZE).predict_explained(x)


def test_lesion_mask_agreement_by_hand() -> None:
    """A 4x4 heat map with its hottest cell and 60 % of its heat in the top-left quarter; a
    mask of a 2:1 picture whose lesion is that quarter (squashed like the picture)."""
    import numpy as np
    from PIL import Image

    from skin_model.explain import lesion_mask_agreement

    heat = np.full((4, 4), 0.1)
    heat[:2, :2] = [[1.5, 0.1], [0.1, 0.1]]  # inside 1.8, outside 12 x 0.1: 1.8 / 3.0
    mask = np.zeros((50, 100), np.uint8)
    mask[:25, :50] = 255
    found = lesion_mask_agreement(heat, Image.fromarray(mask, "L"))
    assert found == {"heat_inside_lesion": 0.6, "lesion_share": 0.25, "hottest_point_inside": True}
    heat[3, 3] = 5.0
    assert not lesion_mask_agreement(heat, Image.fromarray(mask, "L"))["hottest_point_inside"]


def test_score_cam_keeps_the_measured_number_of_channels(explainer: Explainer, monkeypatch) -> None:
    """Score-CAM keeps :data:`SCORECAM_CHANNELS` channels unless told otherwise, from the
    explainer and from ``explain``'s default."""
    import argparse

    from skin_model.cli_use import add_use_commands
    from skin_model.explain import SCORECAM_CHANNELS

    seen: list[object] = []
    real = explainer._tool("scorecam")

    def recording(score, x, **options):
        seen.append(options["max_N"])
        return real(score, x, **options)

    monkeypatch.setitem(explainer._tools, "scorecam", recording)
    image = np.full((explainer.input_size, explainer.input_size, 3), 120, np.float32)
    explainer.explain(image, "scorecam", target=0)
    explainer.explain(image, "scorecam", target=0, max_n=4)
    assert seen == [SCORECAM_CHANNELS, 4]
    parser = argparse.ArgumentParser()
    add_use_commands(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["explain", "x.jpg", "--output", "o.png"]).max_n == SCORECAM_CHANNELS
