"""Commands that fit a model's parts (calibration and out-of-distribution check, similar cases,
prediction sets), export it and benchmark it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_flags import add_data_flag, add_model_flag, add_split_and_quiet_flags, manifest_from_args
from .export import BIAS_CORRECTION_IMAGES, DEBUG_IMAGES
from .model_files import RELIABILITY_REPORT_FILE
from .sources import DataNotFoundError


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit temperature scaling, the OOD detector and the abstention cut-off for a model."""
    from .artifact import load_artifact, write_json
    from .workflows import fit_reliability

    artifact = load_artifact(args.model)
    result = fit_reliability(artifact, manifest_from_args(args), progress=not args.quiet)
    write_json(artifact.path / RELIABILITY_REPORT_FILE, result)
    for key, value in result["manifest"].items():
        if key != "reliability_rule":
            print(f"{key}: {value}")
    for split in ("val", "test"):
        print(f"{split}: {result['report'][split]}")
    print(f"updated {artifact.path / 'manifest.json'} and wrote {artifact.path / 'reliability.json'}")
    return 0


def cmd_threshold(args: argparse.Namespace) -> int:
    """Refit a model's referral threshold by a rule on its stored validation scores."""
    from .artifact import load_artifact
    from .workflows import refit_referral_threshold

    artifact = load_artifact(args.model)
    result = refit_referral_threshold(artifact, manifest_from_args(args).table, args.rule, args.target)
    print(f"referral threshold {result['old_threshold']:.4f} -> {result['threshold']:.4f}: {result['rule']}")
    evaluation = load_artifact(args.model).evaluation() or {}
    for split in ("val", "test"):
        if split in evaluation:
            m = evaluation[split]["malignant"]
            within = ", ".join(
                f"{c} {r['malignant_sensitivity']:.3f}/{r['malignant_specificity']:.3f}"
                for c, r in evaluation[split]["by_collection"].items()
                if r["malignant_sensitivity"] is not None and r["malignant_specificity"] is not None
            )
            print(
                f"{split}: sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f}; "
                f"by collection {within}"
            )
    print("refit what reads the threshold next: benchmarks/subgroups.py, benchmarks/jpeg_shortcut.py, export")
    return 0


def cmd_cases(args: argparse.Namespace) -> int:
    """Index the training lesions for a model's similar-case view and measure it."""
    from .artifact import load_artifact
    from .cases import CASES_REPORT_FILE
    from .workflows import fit_cases

    artifact = load_artifact(args.model)
    result = fit_cases(artifact, manifest_from_args(args), progress=not args.quiet)
    print(f"indexed {result['report']['fitted_on']}; each picture is shown its {result['report']['k']} nearest lesions")
    for split in ("val", "test"):
        print(f"{split}: {result['report'][split]}")
    print(f"updated {artifact.path / 'manifest.json'} and wrote {artifact.path / CASES_REPORT_FILE}")
    return 0


def cmd_sets(args: argparse.Namespace) -> int:
    """Fit a model's prediction sets on its stored validation probabilities and measure them."""
    from .artifact import load_artifact
    from .conformal import PREDICTION_SETS_FILE, fit_from_evaluation, record_prediction_sets

    artifact = load_artifact(args.model)
    result = fit_from_evaluation(artifact.evaluation(), args.alpha)
    if result is None:
        print(f"error: {artifact.path} has no stored validation probabilities: run `evaluate` first", file=sys.stderr)
        return 1
    record_prediction_sets(artifact.path, artifact.name, result)
    for split in ("val", "test"):
        r = result["report"].get(split)
        if r:
            print(
                f"{split} ({r['images']} images): the set held the true class for {r['coverage']:.1%}, "
                f"{r['mean_size']:.2f} classes on average, one class for {r['single_class_share']:.0%}"
            )
    halves = result["report"]["val_split_halves"]
    print(
        f"val, fitted on one half and measured on the other ({halves['repeats']} times): coverage "
        f"{halves['coverage_mean']:.1%} (5th percentile {halves['coverage_5th_percentile']:.1%})"
    )
    print(f"updated {artifact.path / 'manifest.json'} and wrote {artifact.path / PREDICTION_SETS_FILE}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Print and optionally save the speed figures of a model."""
    import json

    from .bench import run_benchmark

    results = run_benchmark(args.model, repeats=args.repeats, tflite=args.tflite)
    for key, value in results.items():
        print(f"{key:34s} {value}")
    if args.against:
        # the other model in the same process right after, so both meet the machine's same day
        other = run_benchmark(args.against, repeats=args.repeats, tflite=None)
        print(f"\n{other['model']}, measured right after in the same run:")
        for key in ("latency_ms_p50", "latency_ms_p50_tta", "diagnosis_with_gradcam_ms_p50", "load_s"):
            if key in results and key in other:
                ratio = results[key] / other[key] if other[key] else float("nan")
                print(f"{key:34s} {other[key]}  ({results['model']} / {other['model']} = {ratio:.2f})")
        results = {"model": results, "against": other}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model to SavedModel or TFLite and check it against the Keras model."""
    import json

    from .artifact import load_artifact
    from .conformal import PredictionSets
    from .export import export_model, manifest_path
    from .export_parity import check_export, parity_summary
    from .pipeline import load_arrays

    artifact = load_artifact(args.model)
    suffix = "" if args.quantize == "none" else f"-{args.quantize}"
    default_out = Path("exports") / (
        f"{artifact.name}{suffix}.tflite" if args.format == "tflite" else f"{artifact.name}-savedmodel"
    )
    out = Path(args.out or default_out)
    manifest = None
    needs_data = args.quantize == "int8" or not args.no_parity
    if needs_data:
        try:
            manifest = manifest_from_args(args)
        except DataNotFoundError as exc:
            if args.quantize == "int8":
                raise DataNotFoundError(f"int8 calibrates on training images: {exc}") from exc
            print(f"note: no data set, so no parity check ({exc})", file=sys.stderr)
    representative = None
    if args.quantize == "int8":
        rows = manifest.kept("train")
        rows = rows.sample(min(args.representative, len(rows)), random_state=0)
        representative, _ = load_arrays(rows, artifact.input_size, progress=not args.quiet)
    tta = False if args.no_tta else None
    exported = export_model(
        artifact,
        out,
        args.format,
        args.quantize,
        tta,
        representative,
        args.float_above,
        args.bias_correction,
        progress=not args.quiet,
    )
    print(f"wrote {exported} and {manifest_path(exported)}")
    if manifest is not None and not args.no_parity:
        splits = {
            split: load_arrays(manifest.kept(split), artifact.input_size, progress=not args.quiet)
            for split in (("val", "test") if args.parity_split == "both" else (args.parity_split,))
        }
        from .sources import collections_of

        val_collections = collections_of(manifest.kept("val")) if "val" in splits else None
        checked = check_export(artifact, exported, splits, tta, val_collections)
        print(json.dumps(checked["parity"], indent=1))
        for line in parity_summary(checked["parity"]):
            print(line)
        if checked["prediction_sets"] is not None:
            report = checked["prediction_sets"]
            measured = "; ".join(
                f"{split} {report[split]['coverage']:.1%} with {report[split]['mean_size']:.2f} classes"
                for split in ("val", "test")
                if split in report
            )
            print(f"prediction sets refitted on the export's validation probabilities: {measured}")
    sets = PredictionSets.from_manifest(json.loads(manifest_path(exported).read_text()))
    if sets is None:
        print("note: this export carries no prediction sets (see `export --help`)", file=sys.stderr)
    return 0


def add_model_commands(sub) -> None:
    """The commands that fit a model's parts, export and benchmark it."""
    calibrate = sub.add_parser(
        "calibrate",
        help="fit temperature scaling, out-of-distribution detection and abstention for a saved model",
        description="Fit, on the training and validation splits, a temperature for calibrated confidence, a "
        "Mahalanobis out-of-distribution detector on the pooled features, and the confidence below which the "
        "model abstains; stores them beside the model with a checksum.",
    )
    add_data_flag(calibrate)
    add_model_flag(calibrate)
    add_split_and_quiet_flags(calibrate)
    calibrate.set_defaults(func=cmd_calibrate)

    threshold = sub.add_parser(
        "threshold",
        help="refit the referral threshold by a rule on the stored validation scores",
        description="Refit a saved model's malignant referral threshold on its stored validation scores (no model "
        "run) by a rule: pooled (the pooled validation pictures reach the sensitivity target) or weakest-collection "
        "(every image collection's validation pictures reach it on their own), then re-evaluate the stored splits "
        "at it. benchmarks/trust_transfer.py measures both rules leaving one collection out.",
    )
    add_data_flag(threshold)
    add_model_flag(threshold)
    add_split_and_quiet_flags(threshold)
    threshold.add_argument("--rule", choices=["pooled", "weakest-collection"], default="weakest-collection")
    threshold.add_argument("--target", type=float, default=None, help="sensitivity target (default: the model's)")
    threshold.set_defaults(func=cmd_threshold)

    cases = sub.add_parser(
        "cases",
        help="index the training lesions so each prediction can show the most similar ones",
        description="Compute the pooled features of every training image of the cleaned split, store them "
        "beside the model with a checksum, and measure on validation and test how often the most similar "
        "training lesions agree with the model, and how often the model is right when they do not.",
    )
    add_data_flag(cases)
    add_model_flag(cases)
    add_split_and_quiet_flags(cases)
    cases.set_defaults(func=cmd_cases)

    sets = sub.add_parser(
        "sets",
        help="fit the prediction sets (a differential diagnosis with a stated coverage) of a saved model",
        description="Class-conditional split conformal prediction on the validation probabilities stored in the "
        "model's evaluation.json (no model run, no data set): a class enters a picture's set when its probability "
        "reaches that class's threshold, chosen so that the set holds the true class of at least 1 - alpha of the "
        "validation pictures of every class. Records the thresholds in the manifest and writes "
        "prediction_sets.json with the coverage measured on validation and test.",
    )
    add_model_flag(sets)
    sets.add_argument("--alpha", type=float, default=0.1, help="1 - the coverage asked for (default 0.1: 90 %%)")
    sets.set_defaults(func=cmd_sets)

    bench = sub.add_parser(
        "bench",
        help="measure load time, latency, throughput, Grad-CAM time and memory",
        description="Speed benchmark of a model (medians of several runs after warm-up).",
    )
    add_model_flag(bench)
    bench.add_argument("--repeats", type=int, default=30)
    bench.add_argument(
        "--against", metavar="MODEL_DIR", help="benchmark this model too, right after in the same run, and compare"
    )
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bench.add_argument(
        "--tflite", metavar="FILE", help="a .tflite export to measure too (default: a float32 export made on the fly)"
    )
    bench.set_defaults(func=cmd_bench)

    add_export_command(sub)


def add_export_command(sub) -> None:
    """``export``: its formats, quantizations and parity check."""
    export = sub.add_parser(
        "export",
        help="export a model to SavedModel (TF Serving) or TFLite, with a parity check",
        description="Export the model's serving function (pixels in, probabilities out, with its test-time "
        "augmentation) as a SavedModel or a TFLite file, optionally quantized; with a data set, compare it with "
        "the Keras model on a held-out split and record the result in the export's manifest. The export carries "
        "the model's prediction sets (the differential `predict` lists): refitted on the export's own validation "
        "probabilities when the check reads validation, else the model's own when the export computes the same "
        "probabilities (float32 or float16 with the model's test-time augmentation), else none.",
    )
    add_data_flag(export)
    add_model_flag(export)
    export.add_argument("--format", choices=["savedmodel", "tflite"], default="tflite")
    export.add_argument(
        "--quantize",
        choices=["none", "float16", "dynamic", "int8"],
        default="none",
        help="tflite only; int8 calibrates activations on training images (needs the data set)",
    )
    export.add_argument("--out", metavar="PATH", help="output .tflite file or SavedModel folder (default: exports/)")
    export.add_argument("--no-tta", action="store_true", help="export the single-view forward pass")
    export.add_argument("--representative", type=int, default=300, help="training images used to calibrate int8")
    export.add_argument(
        "--float-above",
        type=float,
        metavar="STEPS",
        help="int8: keep in float the layers whose int8 output is off by more than STEPS quantization steps "
        f"(root mean square, on {DEBUG_IMAGES} calibration images); default: quantize every layer",
    )
    export.add_argument(
        "--bias-correction",
        type=int,
        default=BIAS_CORRECTION_IMAGES,
        metavar="N",
        help="int8: measure on N of the calibration images how far each layer's int8 output channels are shifted "
        f"from the float model's, and take the shift out of the layer's bias (default {BIAS_CORRECTION_IMAGES}; "
        "0: keep the converter's biases)",
    )
    export.add_argument("--parity-split", choices=["test", "val", "both"], default="both")
    export.add_argument("--no-parity", action="store_true", help="skip the comparison with the Keras model")
    add_split_and_quiet_flags(export)
    export.set_defaults(func=cmd_export)
