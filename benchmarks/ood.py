"""Out-of-distribution rejection of the default model, measured and printed.

    pip install -r requirements-dev.txt     # scikit-image ships the real photographs used here
    python benchmarks/ood.py [--model DIR]

Non-lesion inputs: every bundled scikit-image sample picture (people, animals, objects,
text, microscopy, astronomy; shipped inside the package, no download) and synthetic
blank, noise, gradient, text, screenshot-like and blurred frames. The false-rejection
rate on real lesions comes from the model's reliability.json (validation and test).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.artifact import load_artifact
from skin_model.images import ImageLoadError, load_image
from skin_model.model_files import OOD_BENCHMARK_FILE, RELIABILITY_REPORT_FILE
from skin_model.pipeline import to_model_input
from skin_model.reliability import ReliabilityCheck


def scikit_image_photos() -> dict[str, Image.Image]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    photos = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in {".png", ".jpg", ".gif", ".tif"}:
            try:
                photos[path.name] = load_image(path).image
            except ImageLoadError:
                continue
    return photos


def synthetic_frames() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    size = 300
    frames = {
        "white": Image.new("RGB", (size, size), "white"),
        "black": Image.new("RGB", (size, size), "black"),
        "grey": Image.new("RGB", (size, size), (128, 128, 128)),
        "uniform noise": Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)),
        "gaussian noise": Image.fromarray(np.clip(rng.normal(128, 40, (size, size, 3)), 0, 255).astype(np.uint8)),
        "gradient": Image.fromarray(np.tile(np.linspace(0, 255, size, dtype=np.uint8)[None, :, None], (size, 1, 3))),
    }
    text = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(text)
    for row in range(12):
        draw.text((10, 10 + 24 * row), "The quick brown fox jumps over the lazy dog", fill="black")
    frames["text page"] = text
    shot = Image.new("RGB", (size, size), (240, 240, 245))
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, size, 30), fill=(30, 60, 120))
    for k in range(5):
        draw.rectangle((20, 50 + 45 * k, 280, 80 + 45 * k), outline=(150, 150, 160), fill="white")
        draw.text((30, 58 + 45 * k), f"Menu item {k}", fill="black")
    frames["screenshot"] = shot
    frames["blurred noise"] = frames["uniform noise"].filter(ImageFilter.GaussianBlur(8))
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the default model)")
    args = parser.parse_args()
    artifact = load_artifact(args.model)
    check = ReliabilityCheck.from_artifact(artifact)
    if check is None:
        print("this model has no reliability settings: run `python -m skin_model calibrate` first")
        return 1
    results = {}
    for group, images in (("scikit-image photos", scikit_image_photos()), ("synthetic frames", synthetic_frames())):
        x = np.stack([to_model_input(img, artifact.input_size) for img in images.values()])
        flags = check.check(x)["out_of_distribution"]
        results[group] = {
            "n": len(images),
            "rejected": int(flags.sum()),
            "rate": round(float(flags.mean()), 4),
            "accepted": [name for name, f in zip(images, flags, strict=True) if not f],
        }
        print(
            f"{group}: rejected {flags.sum()} of {len(images)} ({flags.mean():.0%}); accepted: "
            f"{', '.join(results[group]['accepted']) or 'none'}"
        )
    report_path = artifact.path / RELIABILITY_REPORT_FILE
    if report_path.is_file():
        report = json.loads(report_path.read_text())["report"]
        for split in ("val", "test"):
            print(f"false rejection of real lesions ({split} split): {report[split]['ood_false_rejection']:.1%}")
        results["lesions"] = {s: report[s]["ood_false_rejection"] for s in ("val", "test")}
    (artifact.path / OOD_BENCHMARK_FILE).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
