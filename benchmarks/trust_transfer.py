"""Would a new clinic's camera see what the test split sees? Reliability check and referral
threshold, leave-one-collection-out, printed and saved.

    pip install -r requirements-dev.txt     # scikit-image and matplotlib ship the sample pictures
    python benchmarks/trust_transfer.py [--model DIR] [--data DIR] [--quantiles 0.95 0.99]

1. Out-of-distribution refusals (``skin_model.transfer.ood_transfer_report``) for each
   validation quantile the detector's threshold may sit at: the share of each
   collection's test pictures refused by the detector fitted on all three; the share of
   a held-out collection's pictures refused by a detector fitted without it; and the
   share of the non-lesion benchmark (``benchmarks/non_lesion.py``, 119 pictures)
   refused. Heavily blurred and zoomed-out versions of test lesions are reported beside
   it, not counted.
2. Referral threshold rules (``skin_model.transfer.threshold_transfer_report``) from the
   model's stored validation and test scores (as shipped, with its test-time
   augmentation): within each collection's test pictures and leave-one-collection-out.

Written beside the model as ``trust_transfer.json`` (the Evaluation page and the model
card show it) and to ``results/trust_transfer.json``. Pooled features of the data set's
pictures are cached (single view, one model pass per picture); needs the data set.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from non_lesion import near_lesion_pictures, non_lesion_pictures  # noqa: E402

from skin_model.artifact import load_artifact, write_json  # noqa: E402
from skin_model.classes import MALIGNANT_MASK, malignant_score  # noqa: E402
from skin_model.evaluation import stored_split_scores  # noqa: E402
from skin_model.images import load_image  # noqa: E402
from skin_model.manifest import build_manifest  # noqa: E402
from skin_model.model_files import TRUST_TRANSFER_FILE  # noqa: E402
from skin_model.outlier_pictures import outlier_pictures  # noqa: E402
from skin_model.pipeline import default_cache_dir, load_arrays, to_model_input  # noqa: E402
from skin_model.reliability import ReliabilityCheck, screen_image  # noqa: E402
from skin_model.sources import collections_of, resolve_data_dir  # noqa: E402
from skin_model.taps import forward_with_features  # noqa: E402
from skin_model.transfer import (  # noqa: E402
    best_rule,
    distance_detector,
    lesion_detector,
    ood_transfer_report,
    threshold_transfer_report,
)
from skin_model.workflows import OUTLIER_PICTURES  # noqa: E402

BENCHMARK = "non-lesion benchmark"


def pooled_features(forward, x: np.ndarray, n_layers: int) -> list[np.ndarray]:
    outs = [forward(np.asarray(x[i : i + 64], np.float32)) for i in range(0, len(x), 64)]
    return [np.concatenate([o[k].numpy() for o in outs]) for k in range(1, n_layers + 1)]


def split_features(artifact, manifest, split: str, layers: list[str], forward) -> tuple:
    """(features per layer, labels, collections, screened) of a split's kept pictures,
    cached by model weights and the split's content."""
    rows = manifest.kept(split)
    key = hashlib.sha256(
        (artifact.manifest["weights_sha256"] + "|".join(layers) + "|".join(rows["sha256"])).encode()
    ).hexdigest()[:20]
    cache = default_cache_dir() / f"features-{split}-{key}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            features = [data[f"f{k}"] for k in range(len(layers))]
            y, screened = data["y"], data["screened"]
    else:
        x, y = load_arrays(rows, artifact.input_size)
        features = pooled_features(forward, x, len(layers))
        screened = np.array([screen_image(image) is not None for image in x])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, y=y, screened=screened, **{f"f{k}": f for k, f in enumerate(features)})
    return features, y, np.asarray(collections_of(rows)), screened


def picture_features(pictures: dict, size: int, layers: list[str], forward) -> tuple[list[np.ndarray], np.ndarray]:
    x = np.stack([to_model_input(image, size) for image in pictures.values()])
    return pooled_features(forward, x, len(layers)), np.array([screen_image(image) is not None for image in x])


def print_ood(report: dict) -> None:
    within = ", ".join(f"{c} {r['rate']:.1%}" for c, r in report["within_collection"].items())
    held = ", ".join(f"{c} {r['rate']:.1%}" for c, r in report["leave_one_collection_out"].items())
    other = report["other"][BENCHMARK]
    print(f"{report['detector']}: lesions refused within collection (test) {within}")
    print(f"  held-out collection refused: {held}")
    print(
        f"  non-lesion refused: {other['refused']} of {other['n']} ({other['rate']:.1%}, 95% CI "
        f"{other['rate_95ci'][0]:.1%}-{other['rate_95ci'][1]:.1%}); lowest leaving one collection out "
        f"{other['lowest_rate_leaving_one_out']:.1%}"
    )


def print_thresholds(report: dict) -> None:
    for rule, figures in report["rules"].items():
        test = figures["test"]
        print(
            f"referral rule '{rule}': threshold {figures['threshold']:.3f}, "
            f"test {test['sensitivity']:.3f}/{test['specificity']:.3f}"
        )
        for part in ("test_by_collection", "leave_one_collection_out"):
            line = ", ".join(f"{c} {f['sensitivity']:.3f}/{f['specificity']:.3f}" for c, f in figures[part].items())
            print(f"  {part.replace('_', ' ')} (sensitivity/specificity): {line}")
    print(f"rule keeping sensitivity highest where it is weakest: {best_rule(report)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the default model)")
    parser.add_argument("--data", help="data folder (default: $SKIN_DATA_DIR)")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.95, 0.975, 0.99])
    parser.add_argument("--near-lesion", type=int, default=60, help="test lesions made blurred / zoomed out")
    args = parser.parse_args()
    artifact = load_artifact(args.model)
    manifest = build_manifest(resolve_data_dir(args.data))
    layers = list(artifact.manifest["ood_layers"])
    forward = forward_with_features(artifact.model, layers, artifact.input_size)
    splits = {s: split_features(artifact, manifest, s, layers, forward) for s in ("train", "val", "test")}
    benchmark = {k: v for group in non_lesion_pictures().values() for k, v in group.items()}
    test_rows = manifest.kept("test").sample(args.near_lesion, random_state=0)
    groups = {BENCHMARK: benchmark} | near_lesion_pictures([load_image(p).image for p in test_rows["path"]])
    other = {
        group: picture_features(pictures, artifact.input_size, layers, forward) for group, pictures in groups.items()
    }
    generated = {str(k): p for k, p in enumerate(outlier_pictures(OUTLIER_PICTURES, artifact.input_size))}
    generated_features = picture_features(generated, artifact.input_size, layers, forward)[0]
    detectors = {"lesion detector (refuses in the app)": lesion_detector(0, generated_features[0])} | {
        f"feature distance at the {q:.3g} quantile": distance_detector(layers, q) for q in args.quantiles
    }
    result: dict = {"model": artifact.name, "non_lesion_benchmark": len(benchmark), "ood": []}
    check = ReliabilityCheck.from_artifact(artifact)
    if check is not None:
        shipped = check.check(np.stack([to_model_input(p, artifact.input_size) for p in benchmark.values()]))
        result["non_lesion_accepted"] = [
            n for n, f in zip(benchmark, shipped["out_of_distribution"], strict=True) if not f
        ]
        print(f"non-lesion pictures the shipped check accepts: {', '.join(result['non_lesion_accepted']) or 'none'}")
    for name, fit_detector in detectors.items():
        report = {"detector": name} | ood_transfer_report(
            fit_detector, splits["train"], splits["val"], splits["test"], other
        )
        result["ood"].append(report)
        print_ood(report)
        near = [f"{g}: {r['rate']:.0%} refused" for g, r in report["other"].items() if g != BENCHMARK]
        print("  not counted: " + ", ".join(near))
    evaluation = artifact.evaluation() or {}
    scores = {}
    for split in ("val", "test"):
        rows, y, probs = stored_split_scores(
            manifest.table, evaluation, split, artifact.manifest.get("data_fingerprint")
        )
        scores[split] = (MALIGNANT_MASK[y], malignant_score(probs), np.asarray(collections_of(rows)))
    result["referral"] = threshold_transfer_report(scores["val"], scores["test"], 0.9)
    result["referral"]["best_rule"] = best_rule(result["referral"])
    print_thresholds(result["referral"])
    for folder in (artifact.path, ROOT / "results"):
        write_json(folder / TRUST_TRANSFER_FILE, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
