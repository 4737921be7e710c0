"""Does the heat map name what the model really uses? A deletion test on held-out lesions.

    python benchmarks/explain_faithfulness.py [--model DIR] [--data DIR] [--split val] [--images 180]

For each image (an equal number per class, drawn with a fixed seed from the chosen split
of the cleaned manifest, images the model never trained on), the explained class is the
single-view prediction. Ever larger fractions of the pixels ranked highest by a map are
replaced by a heavy Gaussian blur of the picture, and the probability of that class is
read again. A map that names the model's evidence makes it fall fast; the yardsticks are
a random map of the same smoothness (chance) and the map turned upside down (deleting
the pixels it calls least important first). Printed per map: the mean probability,
relative to the untouched picture, at each fraction; the area under that curve (lower is
more faithful); and how often the map's deletion of 20 % beats chance on the same image.
The figures are written to the model folder as ``explanation_check.json``, which the
app's model card shows. Needs the data set (``--data`` or ``$SKIN_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.artifact import load_artifact
from skin_model.classes import CLASS_NAMES
from skin_model.explain import Explainer, blurred, deletion_blur_radius, deletion_curve, random_smooth_map
from skin_model.inference import Predictor
from skin_model.manifest import build_manifest
from skin_model.model_files import EXPLANATION_CHECK_FILE
from skin_model.pipeline import load_arrays
from skin_model.sources import resolve_data_dir

FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
COMPARED_AT = 0.2


def pick_per_class(labels: np.ndarray, total: int, seed: int) -> np.ndarray:
    """Indices of up to ``total / 9`` images of each class, drawn without replacement."""
    rng = np.random.default_rng(seed)
    per_class = max(1, total // len(CLASS_NAMES))
    chosen = [
        rng.choice(np.flatnonzero(labels == k), min(per_class, int((labels == k).sum())), replace=False)
        for k in range(len(CLASS_NAMES))
    ]
    return np.sort(np.concatenate(chosen))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the default model)")
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--images", type=int, default=180, help="about this many, equally per class")
    parser.add_argument("--methods", nargs="+", default=["gradcam"], help="explanation methods (see explain)")
    parser.add_argument("--blur", type=float, default=None, help="blur radius in pixels (default: input size / 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    artifact = load_artifact(args.model)
    size = artifact.input_size
    rows = build_manifest(resolve_data_dir(args.data), progress=False).kept(args.split)
    x, y = load_arrays(rows, size, progress=False)
    picked = pick_per_class(y, args.images, args.seed)
    predictor = Predictor.from_artifact(artifact, tta=False)
    explainer = Explainer(artifact.model, size)
    rng = np.random.default_rng(args.seed)
    radius = args.blur or deletion_blur_radius(size)
    maps = [*args.methods, "random map", "inverted map"]
    curves: dict[str, list[np.ndarray]] = {name: [] for name in maps}
    for i in tqdm(picked, desc=f"deletion test on {args.split}"):
        image = x[i].astype(np.float32)
        target = int(np.argmax(predictor.predict_arrays(image[None])[0]))
        fill = blurred(image, radius)
        rankings = {method: explainer.explain(image, method, target=target) for method in args.methods}
        rankings["random map"] = random_smooth_map(size, rng)
        rankings["inverted map"] = 1 - rankings[args.methods[0]]
        for name, ranking in rankings.items():
            curve = deletion_curve(predictor.predict_arrays, image, ranking, target, FRACTIONS, fill)
            curves[name].append(curve / max(float(curve[0]), 1e-6))
    at = FRACTIONS.index(COMPARED_AT)
    chance = np.array(curves["random map"])[:, at]
    results = {}
    header = " ".join(f"{f:>6.0%}" for f in FRACTIONS)
    print(f"\n{len(picked)} {args.split} images ({artifact.name}, blur radius {radius:.0f} px)")
    print(f"{'map':16} {header}   area  beats chance at {COMPARED_AT:.0%}")
    for name in maps:
        c = np.array(curves[name])
        mean = c.mean(axis=0)
        area = float(np.trapezoid(mean, FRACTIONS) / (FRACTIONS[-1] - FRACTIONS[0]))
        beats = float((c[:, at] < chance).mean()) if name != "random map" else None
        results[name] = {"relative_probability": mean.round(4).tolist(), "area": round(area, 4), "beats_chance": beats}
        shown = " ".join(f"{v:6.3f}" for v in mean)
        print(f"{name:16} {shown}  {area:.3f}  {'' if beats is None else f'{beats:.0%}'}")
    report = {
        "model": artifact.name,
        "split": args.split,
        "images": len(picked),
        "fractions": list(FRACTIONS),
        "blur_radius_px": radius,
        "compared_at": COMPARED_AT,
        "maps": results,
    }
    out = artifact.path / EXPLANATION_CHECK_FILE
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
