"""Which 8 test-time views transfer best? Measured on collections left out of training.

    SKIN_DATA_DIR=... python benchmarks/tta_views.py [--model DIR] [--runs DIR] [--json PATH]

Each view set averages the model's probabilities over its views (same cost: 8 views,
except the 16-view set). For every leave-one-collection-out model that
``benchmarks/transfer.py --train`` left in ``--runs`` (trained without the collection),
the left-out collection's validation and test pictures (what a clinic with that camera
would send), and for ``--model`` (default: the default model) its validation split:
balanced accuracy, accuracy and malignant AUC per view set. The test split is not
read: a view set is chosen here, then only reported on test by ``evaluate``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin_model.artifact import default_model_dir, load_artifact, write_json  # noqa: E402
from skin_model.evaluation import evaluate_predictions  # noqa: E402
from skin_model.manifest import build_manifest  # noqa: E402
from skin_model.pipeline import default_cache_dir, load_arrays  # noqa: E402
from skin_model.sources import resolve_data_dir  # noqa: E402
from skin_model.splits import HELD_OUT, leave_collection_out  # noqa: E402
from skin_model.test_time_views import centre_crop, dihedral_views, turns_and_centre_views  # noqa: E402

VIEW_SETS = {
    "dihedral (flips and quarter turns)": dihedral_views,
    "turns_and_centre (quarter turns of the picture and of its central 80 %)": turns_and_centre_views,
    "dihedral of the picture and of its central 80 % (16 views)": lambda x: (
        dihedral_views(x) + dihedral_views(centre_crop(x, 0.8))
    ),
    "dihedral of the central 90 % only": lambda x: dihedral_views(centre_crop(x, 0.9)),
}


def averaged(model, x: np.ndarray, views, batch: int = 16) -> np.ndarray:
    """Class probabilities of ``x`` averaged over ``views(x)``."""
    import tensorflow as tf

    out = []
    for i in range(0, len(x), batch):
        chunk = tf.constant(x[i : i + batch], tf.float32)
        stacked = views(chunk)
        probs = model(tf.concat(stacked, 0), training=False)
        out.append(tf.reduce_mean(tf.reshape(probs, [len(stacked), len(chunk), -1]), 0).numpy())
    return np.concatenate(out)


def figures(model, x: np.ndarray, y: np.ndarray, label: str) -> dict[str, dict]:
    rows = {}
    for name, views in VIEW_SETS.items():
        result = evaluate_predictions(y, averaged(model, x, views), label, 0.5, bootstrap=0)
        rows[name] = {
            "pictures": len(y),
            "balanced_accuracy": result["balanced_accuracy"],
            "accuracy": result["accuracy"],
            "malignant_auc": result["malignant"]["roc_auc"],
        }
        print(f"{label:34s} {name:75s} " + "  ".join(f"{k} {v}" for k, v in rows[name].items()), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="the model trained on every collection (default: the default model)")
    parser.add_argument("--runs", type=Path, default=default_cache_dir() / "leave_one_out")
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "tta_views.json")
    args = parser.parse_args()
    manifest = build_manifest(resolve_data_dir(args.data), progress=False)
    splits = {name: manifest.kept(name) for name in ("train", "val", "test")}
    report: dict[str, dict] = {}
    for run in sorted(args.runs.glob("without_*")):
        collection = run.name.removeprefix("without_")
        held = leave_collection_out(splits, collection)[HELD_OUT]
        held_out_model = load_artifact(run)
        x, y = load_arrays(held, held_out_model.input_size, progress=False)
        report[f"{collection}, trained without it"] = figures(held_out_model.model, x, y, f"{collection} held out")
    model_dir = Path(args.model) if args.model else default_model_dir()
    artifact = load_artifact(model_dir)
    x, y = load_arrays(splits["val"], artifact.input_size, progress=False)
    report[f"{artifact.name}, validation"] = figures(artifact.model, x, y, "validation")
    write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
