"""Would a slightly different photo get the same answer? Robustness of a model's answer
to small changes of the picture, on held-out lesions.

    python benchmarks/robustness.py [--model DIR] [--data DIR] [--split val] [--json PATH]

Each change of ``skin_model.robustness.PERTURBATIONS`` (JPEG re-compression, blur,
exposure, white balance, half resolution, tighter framing, sensor noise, sharpening) is
applied to every picture of the split as the model sees it, and the model's answer (as
shipped: with its test-time augmentation) is read again; the per-picture check's worth
(how often the answer is right when it holds under every change) is measured as the
Diagnose page's check reads the changed copies (``robustness.STABILITY_VIEWS``).
Printed and written beside the model as ``robustness.json`` (the app's model card shows
it): per change, balanced accuracy, how often the top class flips, the mean change of
the malignant risk and how often the referral decision flips. Needs the data set
(``--data`` or ``$SKIN_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.analysis import stability_reader, stability_views
from skin_model.artifact import load_artifact, write_json
from skin_model.inference import Predictor
from skin_model.manifest import build_manifest
from skin_model.pipeline import load_arrays
from skin_model.robustness import REPORT_FILE, robustness_report, trained_on
from skin_model.sources import resolve_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the default model)")
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--json", help=f"where to write the report (default: {REPORT_FILE} in the model folder)")
    args = parser.parse_args()

    artifact = load_artifact(args.model)
    rows = build_manifest(resolve_data_dir(args.data), progress=False).kept(args.split)
    x, y = load_arrays(rows, artifact.input_size, progress=False)
    predictor = Predictor.from_artifact(artifact)
    started = time.perf_counter()
    report = {"model": artifact.name, "split": args.split, "tta": predictor.tta}
    trained = trained_on(artifact.manifest.get("training_config", {}))
    # the per-picture check's worth is measured with the changed copies read as the
    # Diagnose page's check reads them (one view each for a model answering with 8)
    report["check_reads_views"] = stability_views(predictor) or 1
    report |= robustness_report(
        predictor.predict_arrays,
        x,
        y,
        artifact.malignant_threshold,
        trained,
        predict_check=stability_reader(predictor),
    )
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{artifact.name}, {args.split} ({report['images']} images): balanced accuracy {report['balanced_accuracy']}")
    print(f"{'change':40s} {'bal. acc':>8s} {'flips':>6s} {'risk Δ':>7s} {'referral flips':>14s}")
    for name, r in report["changes"].items():
        print(
            f"{name:40s} {r['balanced_accuracy']:8.3f} {r['top_class_flips']:6.1%} {r['mean_risk_change']:7.3f} "
            f"{r['referral_flips']:14.1%}"
        )
    print(
        f"answer held under every change: {report['stable_share']:.0%} of pictures, right on "
        f"{report['accuracy_when_stable']:.0%} of them (others: {report['accuracy_when_unstable']:.0%})"
    )
    out = Path(args.json) if args.json else artifact.path / REPORT_FILE
    write_json(out, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
