"""Compare two trained models on the same held-out images: A minus B with a 95 % paired
bootstrap interval for balanced accuracy, macro AUC and malignant AUC, per split.

    python benchmarks/compare_models.py trained_models/effnet_lite2 trained_models/effnet_lite0

Reads the scores stored in each model's evaluation.json (no data set needed). The two
must have been evaluated on the same images in the same order (same splits), else the
script refuses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.artifact import read_evaluation
from skin_model.evaluation import paired_bootstrap_difference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_a", type=Path)
    parser.add_argument("model_b", type=Path)
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    evaluations = [read_evaluation(m) for m in (args.model_a, args.model_b)]
    for model, evaluation in zip((args.model_a, args.model_b), evaluations, strict=True):
        if evaluation is None:
            print(f"{model}: no evaluation.json", file=sys.stderr)
            return 2
    print(f"A = {args.model_a.name}, B = {args.model_b.name}; {args.resamples} paired resamples")
    print(f"{'split':6} {'metric':18} {'A':>7} {'B':>7} {'A - B':>7}  95 % interval")
    for split in args.splits:
        a, b = (e.get(split, {}).get("scores") for e in evaluations)
        if a is None or b is None:
            print(f"{split:6} (no stored scores in one of the models)")
            continue
        if a["y_true"] != b["y_true"]:
            print(f"{split}: the two models were evaluated on different images; refusing", file=sys.stderr)
            return 2
        diff = paired_bootstrap_difference(
            np.array(a["y_true"]), np.array(a["probs"]), np.array(b["probs"]), n=args.resamples
        )
        for metric, row in diff.items():
            if row is None:
                print(f"{split:6} {metric:18} (undefined on this split)")
                continue
            low, high = row["ci95"]
            print(
                f"{split:6} {metric:18} {row['a']:7.3f} {row['b']:7.3f} {row['difference']:+7.3f}  "
                f"{low:+.3f} to {high:+.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
