"""Batch-norm folding: same outputs, fewer layers, only where folding is exact."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from skin_model.backbones import efficientnet_lite_imagenet, load_backbone_weights
from skin_model.folding import fold_batch_norms, foldable_pairs


def _randomise_statistics(model: keras.Model, seed: int = 0) -> None:
    """Batch norms with non-trivial learned scale/shift and running statistics, and
    non-zero convolution biases, as after training (fresh ones are the identity and
    zero, which would hide a wrong fold)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape).astype("float32"))
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, w.shape).astype("float32")
                    if "variance" in w.path or "gamma" in w.path
                    else rng.normal(0, 0.5, w.shape).astype("float32")
                    for w in layer.weights
                ]
            )


def _mixed_model() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    a = layers.Conv2D(8, 3, padding="same", use_bias=False, name="plain")(inputs)
    a = layers.BatchNormalization(name="plain_bn")(a)
    b = layers.Conv2D(8, 3, padding="same", use_bias=True, name="biased")(a)
    b = layers.BatchNormalization(name="biased_bn", center=False)(b)
    c = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False, name="dw")(b)
    c = layers.BatchNormalization(name="dw_bn")(c)
    # not foldable: the convolution has a non-linear activation
    d = layers.Conv2D(16, 1, activation="relu", name="activated")(c)
    d = layers.BatchNormalization(name="activated_bn")(d)
    # not foldable: the convolution's output is also read by the addition
    e = layers.Conv2D(16, 1, use_bias=False, name="shared")(d)
    f = layers.BatchNormalization(name="shared_bn", scale=False)(e)
    x = layers.Add(name="add")([e, f])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(9, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


def test_folding_keeps_outputs_and_folds_only_exact_cases() -> None:
    keras.utils.set_random_seed(0)
    model = _mixed_model()
    _randomise_statistics(model)
    assert sorted(foldable_pairs(model)) == ["biased", "dw", "plain"]
    folded = fold_batch_norms(model)
    kinds = {layer.name: type(layer).__name__ for layer in folded.layers}
    assert kinds["plain_bn"] == kinds["biased_bn"] == kinds["dw_bn"] == "Identity"
    assert kinds["activated_bn"] == kinds["shared_bn"] == "BatchNormalization"
    assert folded.get_layer("plain").use_bias and folded.get_layer("dw").use_bias
    x = np.random.default_rng(1).normal(0, 50, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x), atol=1e-5)
    # an intermediate layer read by name (as the reliability check does) is unchanged
    for name in ("dw_bn", "shared_bn"):
        before = keras.Model(model.inputs, model.get_layer(name).output)(x)
        after = keras.Model(folded.inputs, folded.get_layer(name).output)(x)
        np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)
    # the original model is left as it was
    assert type(model.get_layer("plain_bn")).__name__ == "BatchNormalization"


def test_pretrained_backbone_folds_every_batch_norm() -> None:
    model = efficientnet_lite_imagenet("lite0")
    load_backbone_weights(model, "lite0")
    folded = fold_batch_norms(model)
    assert not [layer for layer in folded.layers if isinstance(layer, layers.BatchNormalization)]
    x = np.random.default_rng(2).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    reference, result = model(x).numpy(), folded(x).numpy()
    np.testing.assert_allclose(result, reference, atol=1e-3 * np.abs(reference).max())
    assert (result.argmax(1) == reference.argmax(1)).all()


def test_model_without_batch_norm_is_returned_as_is() -> None:
    model = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3), layers.BatchNormalization()])
    assert fold_batch_norms(model) is model
    inputs = keras.Input((8, 8, 3))
    plain = keras.Model(inputs, layers.Conv2D(4, 3)(inputs))
    assert fold_batch_norms(plain) is plain


def test_shared_layers_are_not_folded() -> None:
    """A batch norm or convolution called at two places stays as it is (folding it
    would be right for one call site and wrong for the other)."""
    inputs = keras.Input((8, 8, 3))
    shared_bn = layers.BatchNormalization(name="shared_bn")
    x = shared_bn(layers.Conv2D(3, 1, use_bias=False, name="first")(inputs))
    x = shared_bn(layers.Conv2D(3, 1, use_bias=False, name="second")(x))
    shared_conv = layers.Conv2D(3, 1, use_bias=False, name="shared_conv")
    y = layers.BatchNormalization(name="after_shared")(shared_conv(x))
    y = shared_conv(y)
    model = keras.Model(inputs, y)
    _randomise_statistics(model)
    assert foldable_pairs(model) == {}
    assert fold_batch_norms(model) is model


def test_artifact_stores_the_folded_model_and_loads_old_ones_folded(tmp_path) -> None:
    """``save_artifact`` writes the folded inference model (no rebuild at load), and a
    folder written before that, with batch norms in its file, is folded at load."""
    from skin_model.artifact import (
        MODEL_FILE,
        load_artifact,
        save_artifact,
        sha256_of,
        store_folded,
        write_manifest,
    )
    from skin_model.classes import CLASS_NAMES

    keras.utils.set_random_seed(0)
    model = _mixed_model()
    _randomise_statistics(model)
    x = np.random.default_rng(3).normal(0, 50, (2, 16, 16, 3)).astype("float32")
    manifest = {"input_size": 16, "malignant_threshold": 0.5}

    save_artifact(model, tmp_path / "new", manifest)
    stored = keras.models.load_model(tmp_path / "new" / MODEL_FILE, compile=False)
    assert type(stored.get_layer("plain_bn")).__name__ == "Identity"
    assert type(stored.get_layer("activated_bn")).__name__ == "BatchNormalization"
    loaded = load_artifact(tmp_path / "new")
    assert loaded.manifest["batch_norms_folded"] == 3
    np.testing.assert_allclose(loaded.model(x), model(x), atol=1e-5)

    old = tmp_path / "old"
    old.mkdir()
    model.save(old / MODEL_FILE)
    write_manifest(old, {**manifest, "class_names": list(CLASS_NAMES), "weights_sha256": sha256_of(old / MODEL_FILE)})
    loaded_old = load_artifact(old)
    assert type(loaded_old.model.get_layer("plain_bn")).__name__ == "Identity"
    np.testing.assert_allclose(loaded_old.model(x), model(x), atol=1e-5)

    # rewriting the old folder stores what was served, under a checksum that loading verifies
    assert store_folded(old) == 3
    stored_old = keras.models.load_model(old / MODEL_FILE, compile=False)
    assert type(stored_old.get_layer("plain_bn")).__name__ == "Identity"
    rewritten = load_artifact(old)
    assert rewritten.manifest["batch_norms_folded"] == 3
    np.testing.assert_array_equal(rewritten.model(x), loaded_old.model(x))
    assert store_folded(old) == 0  # already stored folded
