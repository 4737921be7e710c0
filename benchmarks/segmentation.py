"""How well does the shipped segmenter outline the lesion, and would the classifier do
better on the outlined lesion?

    SKIN_DATA_DIR=... python benchmarks/segmentation.py [--segmenter DIR] [--model DIR] [--limit N]

1. Overlap with the expert masks of the test split's HAM10000 pictures (lesions the
   segmenter never trained on), at each picture's own size: Dice and Jaccard with 95 %
   bootstrap intervals and the ISIC 2018 thresholded Jaccard; also on the pictures saved
   again at JPEG quality 75 and at half their size (as another camera or archive would
   store them).
2. Time per picture of the outline (the segmenter's pass, the resize back and the tidy-up).
3. The photo-to-photo spread of each measurement over pairs of test pictures of one
   lesion, which the Follow-up page weighs changes by (stored beside the segmenter).
4. Classification on the lesion: the default classifier (single view) on the validation
   split as stored and cropped to the outlined lesion with a margin, overall and for
   small (under 10 % of the picture) and off-centre lesions. Shipped only if better.

Prints the figures; writes ``results/segmentation.json`` and the segmenter's
``benchmark.json`` and ``photo_to_photo.json``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin_model.artifact import load_artifact, write_json  # noqa: E402
from skin_model.classes import CLASS_NAMES  # noqa: E402
from skin_model.images import load_image  # noqa: E402
from skin_model.inference import Predictor  # noqa: E402
from skin_model.lesion_change import photo_to_photo_spread  # noqa: E402
from skin_model.lesion_measures import measure_lesion  # noqa: E402
from skin_model.manifest import build_manifest  # noqa: E402
from skin_model.pipeline import to_model_input  # noqa: E402
from skin_model.segmentation import BENCHMARK_FILE, PHOTO_TO_PHOTO_FILE, Segmenter  # noqa: E402
from skin_model.segmentation_training import mask_rows, measure_segmenter  # noqa: E402
from skin_model.sources import resolve_data_dir  # noqa: E402

CROP_MARGIN = 0.25  # of the lesion's box side, on each side
SMALL_LESION = 0.10  # share of the picture
OFF_CENTRE = 0.15  # distance of the lesion's centre from the picture's, as a share of the side


def saved_as_jpeg(quality: int):
    def change(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return change


def half_size(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.BILINEAR)


def outline_time_ms(segmenter: Segmenter, paths: list[str], repeats: int = 40) -> dict[str, float]:
    """Median and 95th percentile of one picture's outline (after a warm-up)."""
    pictures = [load_image(p).image for p in paths[:repeats]]
    segmenter.segment(pictures[0])
    times = []
    for picture in pictures:
        started = time.perf_counter()
        segmenter.segment(picture)
        times.append(1000 * (time.perf_counter() - started))
    return {"median_ms": round(float(np.median(times)), 1), "p95_ms": round(float(np.percentile(times, 95)), 1)}


def lesion_crop(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The lesion's bounding box widened by :data:`CROP_MARGIN` on each side (clipped)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = CROP_MARGIN * (bottom - top), CROP_MARGIN * (right - left)
    box = (max(0, left - dx), max(0, top - dy), min(image.width, right + dx), min(image.height, bottom + dy))
    return image.crop(tuple(round(v) for v in box))


def crop_experiment(segmenter: Segmenter, classifier, rows) -> dict:
    """Balanced accuracy as stored and cropped to the lesion, overall and by lesion kind."""
    size = classifier.input_size
    stored, cropped, small, off_centre = [], [], [], []
    for path in tqdm(rows["path"], desc="crop to the lesion"):
        image = load_image(path).image
        lesion = segmenter.segment(image)
        stored.append(to_model_input(image, size))
        cropped.append(to_model_input(lesion_crop(image, lesion.mask) if lesion.found else image, size))
        share = float(lesion.mask.mean())
        small.append(lesion.found and share < SMALL_LESION)
        if lesion.found:
            ys, xs = np.nonzero(lesion.mask)
            offset = np.hypot(ys.mean() / image.height - 0.5, xs.mean() / image.width - 0.5)
            off_centre.append(bool(offset > OFF_CENTRE))
        else:
            off_centre.append(False)
    y = np.array([CLASS_NAMES.index(label) for label in rows["final_label"]])
    pred_stored = classifier.predict_arrays(np.stack(stored)).argmax(axis=1)
    pred_cropped = classifier.predict_arrays(np.stack(cropped)).argmax(axis=1)
    out = {}
    for name, pick in (
        ("all", np.ones(len(y), bool)),
        ("small", np.array(small)),
        ("off_centre", np.array(off_centre)),
    ):
        if pick.sum() == 0:
            continue
        out[name] = {
            "pictures": int(pick.sum()),
            "accuracy_as_stored": round(float((pred_stored[pick] == y[pick]).mean()), 4),
            "accuracy_cropped": round(float((pred_cropped[pick] == y[pick]).mean()), 4),
            "balanced_accuracy_as_stored": round(float(balanced_accuracy_score(y[pick], pred_stored[pick])), 4),
            "balanced_accuracy_cropped": round(float(balanced_accuracy_score(y[pick], pred_cropped[pick])), 4),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segmenter", help="segmenter folder (default: the shipped one)")
    parser.add_argument("--model", help="classifier for the crop experiment (default: the default model)")
    parser.add_argument("--data", help="data folder (default: $SKIN_DATA_DIR)")
    parser.add_argument("--limit", type=int, help="at most N test pictures (a quick look)")
    parser.add_argument("--no-crop", action="store_true", help="skip the classification-on-the-lesion experiment")
    args = parser.parse_args()
    segmenter = Segmenter.load(args.segmenter)
    manifest = build_manifest(resolve_data_dir(args.data), progress=False)
    test = mask_rows(manifest, "test")
    test = test.iloc[: args.limit] if args.limit else test
    report: dict = {"segmenter": segmenter.name, "split": "test", "collection": "ham10000", "overlap": {}}
    for name, change in (("as stored", None), ("JPEG 75", saved_as_jpeg(75)), ("half size", half_size)):
        figures = measure_segmenter(segmenter, test, change, progress=True)
        report["overlap"][name] = figures
        print(
            f"{name:10} {figures['pictures']} pictures  Dice {figures['dice']:.3f} ({figures['dice_95ci'][0]:.3f}-"
            f"{figures['dice_95ci'][1]:.3f})  Jaccard {figures['jaccard']:.3f} ({figures['jaccard_95ci'][0]:.3f}-"
            f"{figures['jaccard_95ci'][1]:.3f})  thresholded Jaccard {figures['thresholded_jaccard']:.3f}"
        )
    report["outline_time"] = outline_time_ms(segmenter, list(test["path"]))
    print(f"outline time per picture: {report['outline_time']}")
    found = []
    for path in tqdm(test["path"], desc="measuring outlines"):
        image = load_image(path).image
        found.append(measure_lesion(segmenter.segment(image).mask, np.asarray(image)))
    spread = photo_to_photo_spread(list(test["lesion_id"]), found) | {"split": "test"}
    print(f"photo-to-photo spread ({spread['pairs']} pairs of {spread['lesions']} lesions): {spread['spread']}")
    if not args.no_crop:
        classifier = Predictor.from_artifact(load_artifact(args.model), tta=False)
        report["crop_to_lesion"] = {"split": "val", "margin": CROP_MARGIN, "model": load_artifact(args.model).name}
        report["crop_to_lesion"] |= crop_experiment(segmenter, classifier, manifest.kept("val"))
        print(f"classification on the lesion (validation, single view): {report['crop_to_lesion']}")
    if segmenter.folder is not None and not args.limit:
        write_json(segmenter.folder / BENCHMARK_FILE, report)
        write_json(segmenter.folder / PHOTO_TO_PHOTO_FILE, spread)
    write_json(ROOT / "results" / "segmentation.json", report | {"photo_to_photo": spread})
    return 0


if __name__ == "__main__":
    sys.exit(main())
