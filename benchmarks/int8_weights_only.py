"""Where does the int8 export lose fidelity: in the weights or in the activations?

    python benchmarks/int8_weights_only.py [--model DIR] [--data DIR] [--split val]

Rounds every convolution, depthwise convolution and dense kernel of the Keras model the
way TFLite's int8 conversion does (symmetric, one scale per output channel, 127 steps a
side) while keeping every activation in float, and reads the split again as shipped
(with test-time augmentation). Prints balanced accuracy, malignant AUC and top-1
agreement with the float model, to set against the full int8 export's parity report
(``python -m skin_model export --format tflite --quantize int8``): if the weights alone
keep the figures, the export's loss is made by its 8-bit activations. Needs the data set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.artifact import load_artifact
from skin_model.classes import MALIGNANT_MASK, malignant_score
from skin_model.inference import Predictor
from skin_model.manifest import build_manifest
from skin_model.pipeline import load_arrays
from skin_model.sources import resolve_data_dir


def round_kernels_to_int8(model) -> int:
    """Replace each kernel by its per-output-channel symmetric int8 rounding; returns
    how many kernels were rounded (biases stay float, as TFLite keeps them in int32)."""
    import keras

    # the axes a kernel's scale is shared over: all but the output channel's
    shared = {keras.layers.DepthwiseConv2D: (0, 1, 3), keras.layers.Conv2D: (0, 1, 2), keras.layers.Dense: (0,)}
    rounded = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        axes = next((a for kind, a in shared.items() if isinstance(layer, kind)), None)
        if axes is None:
            continue
        kernel = layer.kernel.numpy()
        scale = np.maximum(np.abs(kernel).max(axis=axes, keepdims=True) / 127, 1e-12)
        layer.kernel.assign(np.round(kernel / scale) * scale)
        rounded += 1
    return rounded


def figures(probs: np.ndarray, y: np.ndarray, reference: np.ndarray) -> str:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    return (
        f"balanced accuracy {balanced_accuracy_score(y, probs.argmax(axis=1)):.4f}, malignant AUC "
        f"{roc_auc_score(MALIGNANT_MASK[y], malignant_score(probs)):.4f}, top-1 agreement with float "
        f"{(probs.argmax(axis=1) == reference.argmax(axis=1)).mean():.1%}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the default model)")
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    args = parser.parse_args()

    artifact = load_artifact(args.model)
    manifest = build_manifest(resolve_data_dir(args.data), progress=False)
    x, y = load_arrays(manifest.kept(args.split), artifact.input_size, progress=False)
    float_probs = Predictor.from_artifact(artifact).predict_arrays(x)
    print(f"{artifact.name}, {args.split} ({len(y)} images), float:        {figures(float_probs, y, float_probs)}")
    rounded = round_kernels_to_int8(artifact.model)
    int8_weights = Predictor.from_artifact(artifact).predict_arrays(x)
    print(f"{artifact.name}, {args.split}, {rounded} kernels rounded to int8: {figures(int8_weights, y, float_probs)}")
    print(f"largest probability change: {np.abs(int8_weights - float_probs).max():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
