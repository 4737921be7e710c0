"""How would the training recipe do on a new clinic's camera? Leave one collection out,
fine-tuned.

    python benchmarks/transfer.py [--data DIR] [--reference MODEL_DIR] [--hold-out isic2017 seed ...]
                                  [--runs DIR] [--train] [--with "TRAIN OPTIONS"] [--split test|val]
                                  [--json PATH]

For each held-out collection, a model is fine-tuned from the ImageNet EfficientNet-Lite2
with the shipped model's recipe (capture changes, saves at other JPEG qualities and
sizes, crops stretched by up to a third, class weighting, nevus floor, the class evidence
kept on the HAM10000 lesion masks) on a smaller schedule, on the *other two* collections
only, and selected and given its referral
threshold on their validation pictures (``train --leave-out``). It is then measured on
the held-out collection's test pictures, beside the shipped model (which trained on all
three) on the same pictures: balanced accuracy (over the classes the collection holds),
accuracy, malignant AUC with a 95 % bootstrap interval, and referral sensitivity /
specificity, each model at its own validation threshold; both models are read with the
reference's test-time views, so that the gap is the collection's and not the inference's. The gap between the two
columns is what a collection that was never seen costs; it is the project's own
estimate of a new clinic's camera (the shipped model also had a longer schedule, so
part of the gap is the schedule).

``--with`` adds training options to the recipe (a variant of it, measured against the
recipe in another ``--runs`` folder); ``--split val`` measures the held-out collection's
validation pictures instead (also never seen by the held-out model), to choose between
recipes without reading the test split; it writes to ``results/collection_transfer_val.json``
only. ``--train`` runs the missing trainings first (``train --resume``, so a stopped run goes
on); each takes about a quarter of an hour on 2 CPU cores. The held-out models are kept
in ``--runs`` (default: the cache folder), not shipped. Written beside the reference
model as ``collection_transfer.json`` (the Evaluation page and the model card show it)
and to ``results/collection_transfer.json``. Needs the data set.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin_model.artifact import load_artifact, write_json  # noqa: E402
from skin_model.evaluation import by_collection  # noqa: E402
from skin_model.inference import Predictor  # noqa: E402
from skin_model.local_validation import headline_figures  # noqa: E402
from skin_model.manifest import build_manifest  # noqa: E402
from skin_model.model_files import COLLECTION_TRANSFER_FILE  # noqa: E402
from skin_model.pipeline import default_cache_dir, load_arrays  # noqa: E402
from skin_model.sources import collections_of, resolve_data_dir  # noqa: E402

# the shipped recipe on a smaller schedule: a warmed-up head, then four epochs of the top blocks
RECIPE = [
    "--arch", "effnet_lite2", "--input-size", "192", "--unfreeze-from", "block11_expand_conv",
    "--epochs", "4", "--warmup-epochs", "1", "--patience", "4", "--lr", "2e-4",
    "--feature-views", "2", "--head-epochs", "30", "--class-weight-power", "0.5",
    "--camera", "0.8", "--resave", "0.5", "--aspect", "0.33", "--nevus-floor", "0.8", "--bootstrap", "200",
    "--lesion-focus", "2.0",
]  # fmt: skip
BOOTSTRAP = 1000


def run_dir(runs: Path, collection: str) -> Path:
    return runs / f"without_{collection}"


def train_without(collection: str, runs: Path, data: str | None, recipe: list[str]) -> None:
    """``train --leave-out collection`` with ``recipe``, resuming a stopped run."""
    out = run_dir(runs, collection)
    command = [sys.executable, "-m", "skin_model", "train", *recipe, "--leave-out", collection, "--out", str(out)]
    if data:
        command += ["--data", data]
    if (out / "checkpoint").is_dir():
        command.append("--resume")
    print("running:", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def figures(y: np.ndarray, probs: np.ndarray, threshold: float, name: str) -> dict:
    """``evaluation.by_collection``'s figures of one set of pictures, with the malignant
    AUC's interval and the threshold they were read at."""
    row = by_collection(y, probs, np.array([name] * len(y)), threshold)[name]
    interval = headline_figures(y, probs, threshold, BOOTSTRAP)["malignant_auc"]["ci95"]
    return row | {"malignant_auc_95ci": interval, "threshold": round(float(threshold), 4)}


def measure(models: dict[str, tuple], x: np.ndarray, y: np.ndarray, collection: str) -> dict:
    """The shipped model and the model trained without ``collection`` on its test
    pictures; ``models`` maps in_collection and held_out to (artifact, predictor)."""
    out = {}
    for key, (artifact, predictor) in models.items():
        probs = predictor.predict_arrays(x)
        out[key] = figures(y, probs, artifact.malignant_threshold, collection) | {"model": artifact.name}
    gap = None
    if out["in_collection"]["malignant_auc"] is not None and out["held_out"]["malignant_auc"] is not None:
        gap = round(out["in_collection"]["malignant_auc"] - out["held_out"]["malignant_auc"], 4)
    return out | {"malignant_auc_gap": gap}


def print_row(collection: str, row: dict) -> None:
    for key in ("in_collection", "held_out"):
        f = row[key]
        ci = f["malignant_auc_95ci"] or ["–", "–"]
        print(
            f"{collection:9s} {key:13s} n={f['n_images']:4d} bal.acc {f['balanced_accuracy']:.3f} "
            f"acc {f['accuracy']:.3f} malignant AUC {f['malignant_auc']} ({ci[0]}-{ci[1]}) referral sens/spec "
            f"{f['malignant_sensitivity']} / {f['malignant_specificity']} at {f['threshold']}"
        )
    print(f"{collection:9s} malignant AUC gap (in collection - held out): {row['malignant_auc_gap']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--reference", help="the model trained on every collection (default: the default model)")
    parser.add_argument("--hold-out", nargs="+", default=["isic2017", "seed"], metavar="COLLECTION")
    parser.add_argument(
        "--runs", type=Path, default=default_cache_dir() / "leave_one_out", help="the held-out models' folders"
    )
    parser.add_argument("--train", action="store_true", help="train the missing held-out models first")
    parser.add_argument("--with", dest="extra", default="", help="training options added to the recipe")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--json", type=Path, help="default: results/collection_transfer[_val].json")
    args = parser.parse_args()
    recipe = RECIPE + shlex.split(args.extra)
    val_suffix = "_val" if args.split == "val" else ""
    json_path = args.json or ROOT / "results" / COLLECTION_TRANSFER_FILE.replace(".json", f"{val_suffix}.json")
    started = time.perf_counter()
    if args.train:
        for collection in args.hold_out:
            if not (run_dir(args.runs, collection) / "manifest.json").is_file():
                train_without(collection, args.runs, args.data, recipe)
    manifest = build_manifest(resolve_data_dir(args.data), progress=False)
    test = manifest.kept(args.split)
    reference = load_artifact(args.reference)
    in_collection = (reference, Predictor.from_artifact(reference))  # built once, for every collection
    report = {
        "reference": reference.name,
        "recipe": " ".join(recipe),
        "split": args.split,
        "read_as": f"both models with the reference's test-time views ({in_collection[1].views})"
        if in_collection[1].tta
        else "both models single view",
        "collections": {},
    }
    for collection in args.hold_out:
        held_out_model = load_artifact(run_dir(args.runs, collection))
        if held_out_model.manifest["training_config"].get("leave_out") != collection:
            raise SystemExit(f"{run_dir(args.runs, collection)} was not trained without {collection}")
        rows = test[collections_of(test) == collection]
        x, y = load_arrays(rows, reference.input_size, progress=False)
        # read as the reference is read (its test-time views, when it has them), so that the
        # gap is the collection's, not the inference's
        held_out_predictor = Predictor(
            held_out_model.model, held_out_model.input_size, in_collection[1].tta, views=in_collection[1].views
        )
        models = {"in_collection": in_collection, "held_out": (held_out_model, held_out_predictor)}
        row = measure(models, x, y, collection)
        row["held_out_model_training_s"] = held_out_model.manifest.get("training_wall_time_s")
        row["held_out_model_lesion_focus"] = held_out_model.manifest["training_config"].get("lesion_focus", 0.0)
        row["held_out_model_own_test"] = held_out_model.manifest["metrics_summary"].get("test")
        report["collections"][collection] = row
        print_row(collection, row)
    report["seconds"] = round(time.perf_counter() - started, 1)
    for path in [json_path] + ([] if args.split == "val" else [reference.path / COLLECTION_TRANSFER_FILE]):
        write_json(path, report)
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
