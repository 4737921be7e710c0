"""Does the model read the class off the JPEG compression?

    python benchmarks/jpeg_shortcut.py [--model DIR ...] [--data DIR] [--split val] [--json PATH]

The two training collections were saved at different JPEG qualities (every seed-set file
at 95, every ISIC 2017 file at 75, as the audit reads them), and ISIC 2017 holds only three classes (melanoma, nevus,
seborrheic keratosis). A model can learn "more compressed, so one of those three" along
with the lesions. Here every held-out picture is saved again at JPEG quality 95, 90, 75
and 60, as a PNG and at half its size (before the resize to the model's input, as another
camera or archive would store it) and, per collection, balanced accuracy, malignant AUC,
the share of pictures of the other six classes that the model calls one of the three, and
the shares of answers and of referral decisions (at the model's threshold) that change
from the picture as stored are printed. An unseen picture
saved at another quality than the seed set's 95 meets the model as these do. Needs the
data set (``--data`` or ``$SKIN_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from skin_model.artifact import load_artifact, write_json
from skin_model.classes import CLASS_NAMES
from skin_model.images import load_image
from skin_model.inference import Predictor
from skin_model.manifest import build_manifest
from skin_model.robustness import COMPRESSION_REPORT_FILE, compression_shortcut_report
from skin_model.sources import collections_of, resolve_data_dir

NARROW_COLLECTION = "isic2017"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model folder, repeatable (default: the default model)")
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument(
        "--json", help=f"write every model's report here (default: {COMPRESSION_REPORT_FILE} in each model folder)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")

    root = resolve_data_dir(args.data)
    manifest = build_manifest(root, progress=False)
    train = manifest.kept("train")
    narrow = sorted(
        {CLASS_NAMES.index(c) for c in train.loc[collections_of(train) == NARROW_COLLECTION, "final_label"]}
    )
    rows = manifest.kept(args.split)
    images = [load_image(root / path).image for path in rows["path"]]
    y = np.array([CLASS_NAMES.index(label) for label in rows["final_label"]])
    collections = collections_of(rows)
    print(
        f"{args.split}: {len(y)} pictures; the {NARROW_COLLECTION} classes: {', '.join(CLASS_NAMES[k] for k in narrow)}"
    )
    reports = {}
    for model_dir in args.model or [None]:
        artifact = load_artifact(model_dir)
        predictor = Predictor.from_artifact(artifact)
        started = time.perf_counter()
        report = compression_shortcut_report(
            predictor.predict_arrays,
            images,
            y,
            collections,
            narrow,
            artifact.input_size,
            malignant_threshold=artifact.malignant_threshold,
        )
        reports[artifact.name] = {"split": args.split, "narrow_classes": [CLASS_NAMES[k] for k in narrow]}
        reports[artifact.name]["report"] = report
        if not args.json:
            write_json(artifact.path / COMPRESSION_REPORT_FILE, reports[artifact.name])
        print(f"\n{artifact.name} (TTA {predictor.tta}; {time.perf_counter() - started:.0f} s)")
        print(
            f"{'saved as':18s} {'collection':10s} {'images':>6s} {'bal. acc':>8s} {'mal. AUC':>8s} "
            f"{'others called the three':>24s} {'answers changed':>15s} {'referrals changed':>17s}"
        )
        for quality, by_collection in report.items():
            for collection, r in by_collection.items():
                auc = "-" if r["malignant_auc"] is None else f"{r['malignant_auc']:.3f}"
                narrow_share = "-" if r["called_narrow"] is None else f"{r['called_narrow']:.1%}"
                print(
                    f"{quality:18s} {collection:10s} {r['images']:6d} {r['balanced_accuracy']:8.3f} {auc:>8s} "
                    f"{narrow_share:>24s} {r['answer_changed']:15.1%} {r['referral_changed']:17.1%}"
                )
    if args.json:
        write_json(Path(args.json), reports)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
