"""Shades of Gray colour constancy: hand-computed cases, the in-model layer against the
reference, and a model that no longer sees a change of white balance."""

from __future__ import annotations

import numpy as np
import pytest

from skin_model.colour_constancy import TARGET_GREY, ShadesOfGray, shades_of_gray


def test_a_flat_cast_picture_becomes_the_target_grey() -> None:
    """A flat picture of one colour: its illuminant is that colour, so every channel
    becomes the target grey, whatever the colour and brightness."""
    for colour in ([200.0, 150.0, 90.0], [40.0, 30.0, 35.0]):
        picture = np.broadcast_to(np.array(colour), (8, 8, 3))
        np.testing.assert_allclose(shades_of_gray(picture), np.full((8, 8, 3), TARGET_GREY * 255), rtol=1e-9)


def test_the_power_weights_the_bright_pixels() -> None:
    """Half the pixels (10, 10, 10), half (200, 100, 100): with p = 6 the illuminant is
    ((x1^6 + x2^6) / 2)^(1/6) per channel, computed here by hand."""
    picture = np.zeros((2, 2, 3))
    picture[0] = (10, 10, 10)
    picture[1] = (200, 100, 100)
    red, green_blue = ((10**6 + 200**6) / 2) ** (1 / 6), ((10**6 + 100**6) / 2) ** (1 / 6)
    e = np.array([red, green_blue, green_blue])
    gains = 0.5 * 255 / e
    np.testing.assert_allclose(shades_of_gray(picture, grey=0.5), np.clip(picture * gains, 0, 255), rtol=1e-9)
    assert gains[0] < 1 < gains[1]  # the red cast is taken out


def test_a_change_of_white_balance_or_exposure_is_undone() -> None:
    """The same scene under other light (per-channel gains: warmer, 20 % darker, both)
    comes out the same."""
    scene = np.random.default_rng(0).uniform(20, 160, (32, 32, 3))
    for gains in ([1.25, 1.0, 0.8], [0.8, 0.8, 0.8], [1.0, 0.85, 0.7]):
        other = scene * np.array(gains)
        np.testing.assert_allclose(shades_of_gray(other), shades_of_gray(scene), rtol=1e-9)
        assert np.abs(other - scene).mean() > 10


def test_the_layer_matches_the_reference_and_has_no_weights() -> None:
    cast = np.array([1, 0.8, 0.6], np.float32)
    x = np.random.default_rng(1).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32) * cast
    layer = ShadesOfGray()
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out, np.stack([shades_of_gray(p) for p in x]), atol=1e-3)
    assert layer.weights == [] and out.shape == x.shape
    assert np.isfinite(np.asarray(layer(np.zeros((1, 8, 8, 3), np.float32)))).all()  # a black frame stays finite


def test_a_colour_constant_model_ignores_white_balance_and_survives_saving_and_folding(tmp_path) -> None:
    """With the layer in front, the model's answer to a warmer, darker photo of the same
    scene is its answer to the original; saved, reloaded (as the artifact loader does) and folded
    it answers the same."""
    import keras

    from skin_model.folding import fold_batch_norms
    from skin_model.models import build_model

    plain = build_model("effnet_lite0", 64)
    balanced = build_model("effnet_lite0", 64, colour_constancy=True)
    assert balanced.layers[1].name == "colour_constancy"
    scene = np.random.default_rng(2).uniform(20, 160, (4, 64, 64, 3)).astype(np.float32)
    warmer = scene * np.array([1.1, 0.85, 0.7], np.float32)
    np.testing.assert_allclose(balanced.predict(warmer, verbose=0), balanced.predict(scene, verbose=0), atol=1e-5)
    assert np.abs(plain.predict(warmer, verbose=0) - plain.predict(scene, verbose=0)).max() > 1e-3

    balanced.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras", compile=False, safe_mode=True)
    folded = fold_batch_norms(reloaded)
    np.testing.assert_allclose(folded.predict(scene, verbose=0), balanced.predict(scene, verbose=0), atol=1e-4)


def test_only_the_pretrained_backbones_take_it() -> None:
    from skin_model.models import build_model

    with pytest.raises(ValueError, match="colour constancy"):
        build_model("tiny_cnn", colour_constancy=True)


def test_the_train_flag_reaches_the_config() -> None:
    from skin_model.cli import build_parser, train_config_from_args

    parser = build_parser()
    on = train_config_from_args(parser.parse_args(["train", "--arch", "effnet_lite2", "--colour-constancy"]))
    off = train_config_from_args(parser.parse_args(["train", "--arch", "effnet_lite2"]))
    assert on.colour_constancy and not off.colour_constancy
