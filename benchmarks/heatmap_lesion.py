"""Do the heat maps land on the lesion? Every explanation method against the expert lesion
masks of the test split's HAM10000 pictures.

    python benchmarks/heatmap_lesion.py [--model DIR] [--data DIR] [--images 150] [--fast-images 0]

For each picture the explained class is the one the model predicts as shipped (its
stored test scores, with its test-time augmentation). Per map (``skin_model.explain.
lesion_mask_agreement``, the mask squashed to the model's grid as the picture is):

- pointing game: the hottest point lies inside the lesion (95 % Wilson interval);
- heat inside: the share of the map's heat inside the lesion (mean, 95 % bootstrap
  interval over pictures), beside the lesion's share of the picture (what a map blind to
  the lesion would score).

The fast paths (Grad-CAM, SmoothGrad) run on every HAM test picture with a mask (or
``--fast-images``), and are also summarised on the sample alone; the tf-keras-vis methods
and the Grad-CAM variants run on a fixed-seed sample of ``--images``.
Variants measured for "make the maps land on the lesion": the map averaged over the
flipped views (test-time augmentation), and Grad-CAM one stage earlier (twice the
resolution). The randomisation check: the fast maps of the same network with its top
layers re-drawn at random; a map that lands on the lesion as often for that network is
following the picture's contrast, not the model. Written beside the model as ``heatmap_lesion.json`` (with a few example
pictures, named by their path inside the data folder, for the Evaluation page to draw
when the data set is at hand) and to ``results/heatmap_lesion.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin_model.artifact import load_artifact, write_json  # noqa: E402
from skin_model.evaluation import stored_split_scores  # noqa: E402
from skin_model.explain import METHOD_LABELS, METHODS, Explainer, heat_from_cam, lesion_mask_agreement  # noqa: E402
from skin_model.images import load_image  # noqa: E402
from skin_model.manifest import build_manifest  # noqa: E402
from skin_model.model_files import HEATMAP_LESION_FILE  # noqa: E402
from skin_model.pipeline import load_arrays  # noqa: E402
from skin_model.sources import collections_of, resolve_data_dir  # noqa: E402
from skin_model.subgroups import wilson_interval  # noqa: E402

FLIPS = ((False, False), (True, False), (False, True), (True, True))  # (left-right, up-down)


def summarise(found: list[dict], seed: int = 0) -> dict:
    """Pointing game and heat inside, with intervals, over pictures."""
    inside = np.array([f["heat_inside_lesion"] for f in found])
    share = np.array([f["lesion_share"] for f in found])
    hits = int(sum(f["hottest_point_inside"] for f in found))
    rng = np.random.default_rng(seed)
    means = [inside[rng.integers(0, len(inside), len(inside))].mean() for _ in range(1000)]
    return {
        "pictures": len(found),
        "pointing_game": round(hits / len(found), 4),
        "pointing_game_95ci": wilson_interval(hits, len(found)),
        "heat_inside_lesion": round(float(inside.mean()), 4),
        "heat_inside_lesion_95ci": [round(float(np.percentile(means, q)), 4) for q in (2.5, 97.5)],
        "lesion_share": round(float(share.mean()), 4),
    }


def gradcam_at(explainer: Explainer, layer: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """Fast Grad-CAM of the explainer's model at another layer."""
    import keras
    import tensorflow as tf

    from skin_model.explain import gradcam_from_tape, target_scores

    both = keras.Model(explainer.model.inputs, [explainer.model.get_layer(layer).output, explainer.model.outputs[0]])

    @tf.function
    def cam(x, target):
        with tf.GradientTape() as tape:
            features, logits = both(x, training=False)
            value = tf.gather(target_scores(logits), target, axis=1)
        return gradcam_from_tape(tape, value, features)

    return lambda image, target: heat_from_cam(
        cam(image[None].astype(np.float32), target).numpy()[0], explainer.input_size
    )


def earlier_stage(model, last: str) -> str:
    """The last block output (a residual sum or a projection) whose map has twice the
    side of ``last``'s: one stride earlier."""
    side = model.get_layer(last).output.shape[1]
    wanted = [
        layer.name
        for layer in model.layers
        if len(layer.output.shape) == 4
        and layer.output.shape[1] == 2 * side
        and (layer.name.endswith("add") or layer.name.endswith("project_bn"))
    ]
    return wanted[-1]


def flip_averaged(explain: Callable[[np.ndarray, int], np.ndarray]) -> Callable[[np.ndarray, int], np.ndarray]:
    """The map averaged over the four flips of the picture, each flipped back."""

    def averaged(image: np.ndarray, target: int) -> np.ndarray:
        total = np.zeros(image.shape[:2], np.float32)
        for lr, ud in FLIPS:
            view = image[:, ::-1] if lr else image
            view = view[::-1] if ud else view
            heat = explain(np.ascontiguousarray(view), target)
            heat = heat[::-1] if ud else heat
            total += heat[:, ::-1] if lr else heat
        return total / len(FLIPS)

    return averaged


def top_layers_randomised(model, layers: int, seed: int = 1):
    """A copy of ``model`` whose last ``layers`` layers with weights have their kernels
    re-drawn from a normal of each kernel's own spread (biases and scales kept): the
    model-randomisation check of Adebayo et al. 2018. A map that still lands where it
    did says more about the picture than about what the model learnt."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    for layer in [layer for layer in copy.layers if layer.weights][-layers:]:
        layer.set_weights(
            [
                rng.normal(0, max(float(np.std(w)), 1e-3), w.shape).astype(w.dtype) if w.ndim > 1 else w
                for w in layer.get_weights()
            ]
        )
    return copy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the default model)")
    parser.add_argument("--data", help="data folder (default: $SKIN_DATA_DIR)")
    parser.add_argument("--images", type=int, default=150, help="sample for the slower methods and the variants")
    parser.add_argument("--fast-images", type=int, default=0, help="fast Grad-CAM pictures (0: all)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="test: the figures of record (written beside the model); val: to choose between models "
        "(written to results/heatmap_lesion_val.json only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shown", default="gradcam", help="the method whose example pictures are stored")
    parser.add_argument("--randomised-layers", type=int, default=12, help="top layers re-drawn for the check")
    return parser.parse_args()


def pick_pictures(ham: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(the sample for the slower maps, the fast map's pictures). The fast set holds the
    sample, so the methods can also be compared picture for picture."""
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(ham, min(args.images, len(ham)), replace=False))
    rest = np.setdiff1d(ham, sample)
    extra = len(rest) if not args.fast_images else max(0, min(args.fast_images - len(sample), len(rest)))
    return sample, np.sort(np.concatenate([sample, rng.choice(rest, extra, replace=False)]))


def maps_to_measure(
    artifact, explainer: Explainer, args: argparse.Namespace, sample: np.ndarray, fast_set: np.ndarray
) -> dict[str, tuple[Callable, np.ndarray]]:
    """Every map measured, by its label: (how it explains a picture for a class, its pictures)."""
    fast = lambda image, target: explainer.explain(image, "gradcam", target=target)  # noqa: E731
    maps: dict[str, tuple[Callable, np.ndarray]] = {
        METHOD_LABELS["gradcam"]: (fast, fast_set),
        METHOD_LABELS["smoothgrad"]: (lambda image, target: explainer.explain(image, "smoothgrad", target), fast_set),
    }
    for method in args.methods:
        label = {"gradcam": "Grad-CAM (tf-keras-vis)", "smoothgrad": "SmoothGrad (tf-keras-vis, 20 samples)"}
        maps[label.get(method, METHOD_LABELS[method])] = (
            lambda image, target, m=method: explainer.explain(image, m, target=target, fast=False),
            sample,
        )
    earlier = earlier_stage(explainer.model, explainer.layer_name)
    maps["Grad-CAM (fast), flip-averaged"] = (flip_averaged(fast), sample)
    maps[f"Grad-CAM (fast) at {earlier}"] = (gradcam_at(explainer, earlier), sample)
    randomised = Explainer(top_layers_randomised(artifact.model, args.randomised_layers), artifact.input_size)
    for method in ("gradcam", "smoothgrad"):
        maps[f"{METHOD_LABELS[method]}, top {args.randomised_layers} layers randomised"] = (
            lambda image, target, m=method: randomised.explain(image, m, target=target),
            sample,
        )
    return maps


def print_summary(name: str, s: dict) -> None:
    print(
        f"{name:40} {s['pictures']:5} pictures  pointing {s['pointing_game']:.2f} "
        f"({s['pointing_game_95ci'][0]:.2f}-{s['pointing_game_95ci'][1]:.2f})  heat inside "
        f"{s['heat_inside_lesion']:.2f} "
        f"({s['heat_inside_lesion_95ci'][0]:.2f}-{s['heat_inside_lesion_95ci'][1]:.2f})"
        f"  lesion share {s['lesion_share']:.2f}"
    )


def main() -> int:
    args = parse_args()
    artifact = load_artifact(args.model)
    data_dir = resolve_data_dir(args.data)
    manifest = build_manifest(data_dir)
    evaluation = artifact.evaluation() or {}
    fingerprint = artifact.manifest.get("data_fingerprint")
    rows, _, probs = stored_split_scores(manifest.table, evaluation, args.split, fingerprint)
    ham = np.flatnonzero((np.asarray(collections_of(rows)) == "ham10000") & rows["mask_path"].notna().to_numpy())
    sample, fast_set = pick_pictures(ham, args)
    x, _ = load_arrays(rows, artifact.input_size)
    masks = {int(i): load_image(rows["mask_path"].iloc[i]).image for i in fast_set}
    explainer = Explainer(artifact.model, artifact.input_size)

    def run(name: str, explain: Callable[[np.ndarray, int], np.ndarray], picked: np.ndarray) -> list[dict]:
        found = []
        for i in tqdm(picked, desc=name):
            heat = explain(x[i].astype(np.float32), int(np.argmax(probs[i])))
            found.append(lesion_mask_agreement(heat, masks[int(i)]) | {"row": int(i)})
        return found

    report: dict = {"model": artifact.name, "split": args.split, "collection": "ham10000"}
    report["layer"] = explainer.layer_name
    report["maps"], examples = {}, []
    for name, (explain, picked) in maps_to_measure(artifact, explainer, args, sample, fast_set).items():
        found = run(name, explain, picked)
        report["maps"][name] = summarise(found, args.seed)
        if picked is fast_set:
            in_sample = [f for f in found if f["row"] in set(sample.tolist())]
            report["maps"][name + ", the sample's pictures"] = summarise(in_sample, args.seed)
        if name == METHOD_LABELS[args.shown]:
            examples = found[:: max(1, len(found) // 6)][:6]
        print_summary(name, report["maps"][name])
    report["examples"] = [
        {
            "picture": Path(rows["path"].iloc[f["row"]]).relative_to(data_dir).as_posix(),
            "mask": Path(rows["mask_path"].iloc[f["row"]]).relative_to(data_dir).as_posix(),
        }
        | {k: v for k, v in f.items() if k != "row"}
        for f in examples
    ]
    written = [ROOT / "results" / "heatmap_lesion_val.json"]
    if args.split == "test":
        written = [artifact.path / HEATMAP_LESION_FILE, ROOT / "results" / HEATMAP_LESION_FILE]
    for path in written:
        write_json(path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
