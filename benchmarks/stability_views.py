"""How many test-time views does the stability check need? Its worth against its cost.

    SKIN_DATA_DIR=... python benchmarks/stability_views.py [--model DIR] [--limit N] [--json PATH]

The Diagnose page's stability check re-reads the answer on the nine small changes of
``skin_model.robustness.PERTURBATIONS``. With the model's 8 test-time views that is 72
pictures through the model, more than everything else the page computes for a picture.
This benchmark reads every change of every validation picture once through all 8 views
and scores designs that use the first 1, 2, 4 or 8 of them (the picture itself first,
then the model's other test-time views in their order), each against the answer the
page shows (the 8-view answer) and, for 1 view, also against the unchanged picture's
own single-view answer. A check is worth what it says about the shown answer: how well the number of
changes under which the answer held separates right from wrong answers (AUC), and how
often the answer is right when the check calls it stable and when it does not. Plus how
often each design agrees with the 8-view one, and its cost (model pictures per check).
Validation split only: the design is chosen here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin_model.artifact import load_artifact, write_json  # noqa: E402
from skin_model.classes import malignant_score  # noqa: E402
from skin_model.manifest import build_manifest  # noqa: E402
from skin_model.pipeline import load_arrays  # noqa: E402
from skin_model.robustness import PERTURBATIONS, perturbed  # noqa: E402
from skin_model.sources import resolve_data_dir  # noqa: E402
from skin_model.test_time_views import DEFAULT_TTA_VIEWS, TTA_VIEWS  # noqa: E402

VIEW_COUNTS = (1, 2, 4, 8)


def view_reader(model, views, size: int):
    """A traced pass: a batch of pictures -> (8, n, classes), each test-time view's
    probabilities (eager calls run the model about twice as slowly)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def read(x):
        probs = model(tf.concat(views(x), axis=0), training=False)
        return tf.reshape(probs, [8, tf.shape(x)[0], -1])

    return lambda pictures: read(np.asarray(pictures, np.float32)).numpy()


def read_changes(read, x: np.ndarray, chunk: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(8, n, classes) of the pictures and (8, n, changes, classes) of their changes,
    ``chunk`` pictures and all their changes per model call."""
    from tqdm import tqdm

    base, changed = [], []
    for i in tqdm(range(0, len(x), chunk), desc="pictures", unit=f"x{chunk}"):
        pictures = x[i : i + chunk]
        variants = np.concatenate([perturbed(picture) for picture in pictures])
        both = read(np.concatenate([pictures, variants]))
        base.append(both[:, : len(pictures)])
        changed.append(both[:, len(pictures) :].reshape(8, len(pictures), len(PERTURBATIONS), -1))
    return np.concatenate(base, axis=1), np.concatenate(changed, axis=1)


def design_figures(kept: np.ndarray, right: np.ndarray, reference_stable: np.ndarray) -> dict[str, object]:
    """What a check's count of held changes (``kept`` per picture) says about the shown
    answer (``right``), and how often its stable verdict matches the 8-view check's."""
    from sklearn.metrics import roc_auc_score

    stable = kept == len(PERTURBATIONS)
    return {
        "auc_right_vs_wrong": round(float(roc_auc_score(right, kept)), 4),
        "stable_share": round(float(stable.mean()), 4),
        "accuracy_when_stable": round(float(right[stable].mean()), 4) if stable.any() else None,
        "accuracy_when_unstable": round(float(right[~stable].mean()), 4) if (~stable).any() else None,
        "agrees_with_8_views": round(float((stable == reference_stable).mean()), 4),
    }


def evaluate_designs(base: np.ndarray, changed: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, dict]:
    """Every design's figures, from the per-view readings of the pictures and their changes."""
    shown = base.mean(axis=0)
    answer = shown.argmax(axis=1)
    right = answer == y
    referred = malignant_score(shown) >= threshold
    kept = {v: (changed[:v].mean(axis=0).argmax(axis=2) == answer[:, None]).sum(axis=1) for v in VIEW_COUNTS}
    reference_stable = kept[8] == len(PERTURBATIONS)
    designs = {}
    for v in VIEW_COUNTS:
        risks = malignant_score(changed[:v].mean(axis=0).reshape(-1, shown.shape[1])).reshape(len(y), -1)
        crosses = (risks >= threshold).any(axis=1) & (risks < threshold).any(axis=1)
        designs[f"{v} view(s), against the shown answer"] = design_figures(kept[v], right, reference_stable) | {
            "model_pictures": v * len(PERTURBATIONS),
            "referral_crossed_share": round(float(crosses.mean()), 4),
            "referral_kept_share": round(float(((risks >= threshold) == referred[:, None]).all(axis=1).mean()), 4),
        }
    single_answer = base[0].argmax(axis=1)
    kept_single = (changed[0].argmax(axis=2) == single_answer[:, None]).sum(axis=1)
    designs["1 view, against the picture's own single-view answer"] = design_figures(
        kept_single, right, reference_stable
    ) | {"model_pictures": len(PERTURBATIONS)}
    return designs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the default model)")
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--limit", type=int, help="read a seeded random N of the validation pictures")
    parser.add_argument("--json", default=str(ROOT / "results" / "stability_views.json"))
    args = parser.parse_args()

    artifact = load_artifact(args.model)
    rows = build_manifest(resolve_data_dir(args.data), progress=False).kept("val")
    x, y = load_arrays(rows, artifact.input_size, progress=False)
    if args.limit and args.limit < len(y):
        chosen = np.sort(np.random.default_rng(0).choice(len(y), args.limit, replace=False))
        x, y = x[chosen], y[chosen]
    views = TTA_VIEWS[artifact.manifest.get("tta_views", DEFAULT_TTA_VIEWS)]
    started = time.perf_counter()
    base, changed = read_changes(view_reader(artifact.model, views, artifact.input_size), x)
    designs = evaluate_designs(base, changed, y, artifact.malignant_threshold)
    report = {
        "model": artifact.name,
        "split": "val",
        "images": len(y),
        "shown_answer_accuracy": round(float((base.mean(axis=0).argmax(axis=1) == y).mean()), 4),
        "designs": designs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"{artifact.name}, validation ({len(y)} pictures); "
        f"the shown answer is right on {report['shown_answer_accuracy']:.1%}"
    )
    print(
        f"{'design':55s} {'cost':>5s} {'AUC':>6s} {'stable':>7s} "
        f"{'right|stable':>12s} {'right|not':>9s} {'=8 views':>8s}"
    )
    for name, d in designs.items():
        print(
            f"{name:55s} {d['model_pictures']:5d} {d['auc_right_vs_wrong']:6.3f} {d['stable_share']:7.1%} "
            f"{d['accuracy_when_stable']:12.1%} {d['accuracy_when_unstable']:9.1%} {d['agrees_with_8_views']:8.1%}"
        )
    write_json(Path(args.json), report)
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
