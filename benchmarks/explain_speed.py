"""Time each explanation method on the default model (median of several runs after a warm-up).

python benchmarks/explain_speed.py [--model DIR] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.artifact import load_artifact
from skin_model.explain import SCORECAM_CHANNELS, Explainer
from skin_model.inference import Predictor

CASES = [
    ("gradcam", True, None),
    ("gradcam", False, None),
    ("gradcam++", False, None),
    ("layercam", False, None),
    ("scorecam", False, SCORECAM_CHANNELS),
    ("smoothgrad", False, None),
]


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (tracing, tool construction)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    artifact = load_artifact(args.model)
    x = np.random.default_rng(0).integers(0, 256, (artifact.input_size, artifact.input_size, 3)).astype(np.uint8)
    explainer = Explainer(artifact.model, artifact.input_size)
    plain = Predictor.from_artifact(artifact, tta=False)
    print(f"model {artifact.name}, input {artifact.input_size}px, median of {args.repeats} runs after warm-up")
    print(f"  forward pass (1 image, no TTA): {median_ms(lambda: plain.predict_arrays(x[None]), args.repeats):7.1f} ms")
    if artifact.manifest.get("tta"):
        tta = Predictor.from_artifact(artifact)
        ms = median_ms(lambda: tta.predict_arrays(x[None]), args.repeats)
        print(f"  forward pass (1 image, 8-view TTA): {ms:7.1f} ms")
    for method, fast, max_n in CASES:
        label = f"{method}{' (fast GradientTape)' if fast else ' (tf-keras-vis)'}{f', max_N={max_n}' if max_n else ''}"
        ms = median_ms(
            lambda m=method, f=fast, n=max_n: explainer.explain(x, m, target=0, fast=f, max_n=n, smooth_samples=20),
            args.repeats,
        )
        print(f"  {label:45s} {ms:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
