"""Command line: ``python -m skin_model <command> --help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .artifact import ArtifactError
from .classes import CLASS_NAMES, plain_name
from .export import BIAS_CORRECTION_IMAGES, DEBUG_IMAGES
from .paths import AUDIT_DIR
from .sources import DATA_ENV_VAR, DataNotFoundError, resolve_data_dir
from .train_config import add_config_flags


def _add_model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="PATH", help="model folder (default: the project's default model)")


def _add_split_and_quiet_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split-seed", type=int, default=1337, help="seed of the train/val split")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_data_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help=f"data root holding the data sets (default: ${DATA_ENV_VAR})",
    )


def cmd_audit(args: argparse.Namespace) -> int:
    """Build the manifest, print the findings, write JSON and CSV files."""
    import json

    from .audit import audit_findings, format_report, write_audit
    from .manifest import build_manifest

    manifest = build_manifest(resolve_data_dir(args.data), seed=args.seed, progress=not args.quiet)
    findings = audit_findings(manifest)
    print(format_report(findings))
    written = write_audit(manifest, findings, Path(args.out))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(findings, indent=1, default=str))
        written.append(Path(args.json))
    print("\nwrote: " + ", ".join(str(p) for p in written))
    return 0


def _load_manifest(args: argparse.Namespace):
    from .manifest import build_manifest

    return build_manifest(resolve_data_dir(args.data), seed=args.split_seed, progress=not args.quiet)


def train_config_from_args(args: argparse.Namespace):
    """The training configuration the ``train`` flags describe."""
    from .train_config import config_from_args

    return config_from_args(args)


def cmd_train(args: argparse.Namespace) -> int:
    """Train one architecture on the cleaned splits and save the artifact."""
    from .evaluation import summary_table
    from .training import train

    config = train_config_from_args(args)
    out = Path(args.out or Path("trained_models") / args.arch)
    manifest = train(
        config, _load_manifest(args), out, progress=not args.quiet, keep_weights=not args.no_weights, resume=args.resume
    )
    print(
        f"trained {manifest['architecture']} in {manifest['training_wall_time_s'] / 60:.1f} min "
        f"({manifest['epochs_run']} epochs, best {manifest['best_epoch']}); saved to {out}"
    )
    from .artifact import read_evaluation

    print(summary_table(read_evaluation(out) or {}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved model on val/test and write evaluation.json next to it."""
    from .artifact import EVALUATION_FILE, load_artifact, read_evaluation, write_json
    from .conformal import DEFAULT_ALPHA, PREDICTION_SETS_FILE, fit_from_evaluation, record_prediction_sets
    from .evaluation import summary_table
    from .workflows import evaluate_artifact

    artifact = load_artifact(args.model)
    manifest = _load_manifest(args)
    if manifest.fingerprint() != artifact.manifest.get("data_fingerprint"):
        print(
            "warning: the data differ from the data this model was trained on (fingerprint mismatch)", file=sys.stderr
        )
    splits = ("val", "test") if args.split == "all" else (args.split,)
    results = evaluate_artifact(artifact, manifest, splits, tta=args.tta, progress=not args.quiet)
    merged = (read_evaluation(artifact.path) or {}) | results
    write_json(artifact.path / EVALUATION_FILE, merged)
    print(summary_table(results))
    print(f"wrote {artifact.path / EVALUATION_FILE}")
    # the prediction sets are fitted on the stored validation probabilities: keep them in step
    sets = fit_from_evaluation(merged, artifact.manifest.get("prediction_set_alpha", DEFAULT_ALPHA))
    if sets is not None and "val" in results:
        record_prediction_sets(artifact.path, artifact.name, sets)
        print(f"refitted the prediction sets ({PREDICTION_SETS_FILE})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify image files and folders into a CSV; exit 1 only if nothing was readable."""
    from .inference import iter_input_files, predict_files, predictions_table
    from .robustness import COMPRESSION_NOTE_BELOW

    files = iter_input_files(args.paths)
    if not files:
        print("error: no files found in the given paths", file=sys.stderr)
        return 1
    predictor, reliability, cases, threshold, sets = _load_predictor(args.model, args.tta)
    results = predict_files(
        predictor,
        files,
        progress=not args.quiet,
        reliability=reliability,
        cases=cases,
        malignant_threshold=threshold,
        prediction_sets=sets,
    )
    table = predictions_table(results)
    if args.output == "-":
        table.to_csv(sys.stdout, index=False)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.output, index=False)
        ok = int((table["status"] == "ok").sum())
        advice = table["advice"].fillna("")
        referred = int((advice != "").sum())
        high_risk = int(advice.str.startswith("high malignant risk").sum())
        print(
            f"{ok} of {len(table)} files classified; {referred} to refer to a dermatologist "
            f"({high_risk} for a malignant risk at or above the threshold of {threshold:.0%}, "
            f"the others as uncertain or not a lesion); wrote {args.output}",
            file=sys.stderr,
        )
        compressed = int((table["jpeg_quality"] < COMPRESSION_NOTE_BELOW).sum())
        if compressed:
            print(
                f"note: {compressed} JPEG(s) were saved below quality {COMPRESSION_NOTE_BELOW} (column jpeg_quality); "
                "this model reads heavily compressed pictures less well (see benchmarks/jpeg_shortcut.py and the "
                "model card)",
                file=sys.stderr,
            )
    return 0 if (table["status"] == "ok").any() else 1


def _load_predictor(model: str | None, tta: bool):
    """(predictor, reliability check or None, case index or None, malignant referral
    threshold, prediction sets or None) for a model folder or an export (which has no
    check or index; its sets are the ones its manifest records, see ``export``)."""
    from .export import is_exported_model, load_exported

    if model and is_exported_model(model):
        if tta:
            print(
                "note: --tta is ignored for an export (its test-time augmentation is fixed at export)", file=sys.stderr
            )
        from .conformal import PredictionSets

        exported = load_exported(model)
        return (
            exported,
            None,
            None,
            float(exported.manifest["malignant_threshold"]),
            PredictionSets.from_manifest(exported.manifest),
        )
    from .artifact import load_artifact
    from .cases import CaseIndex
    from .conformal import PredictionSets
    from .inference import Predictor
    from .reliability import ReliabilityCheck

    artifact = load_artifact(model)
    return (
        Predictor.from_artifact(artifact, tta=True if tta else None),
        ReliabilityCheck.from_artifact(artifact),
        CaseIndex.from_artifact(artifact),
        artifact.malignant_threshold,
        PredictionSets.from_manifest(artifact.manifest),
    )


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit temperature scaling, the OOD detector and the abstention cut-off for a model."""
    from .artifact import load_artifact, write_json
    from .workflows import fit_reliability

    artifact = load_artifact(args.model)
    result = fit_reliability(artifact, _load_manifest(args), progress=not args.quiet)
    write_json(artifact.path / "reliability.json", result)
    for key, value in result["manifest"].items():
        if key != "reliability_rule":
            print(f"{key}: {value}")
    for split in ("val", "test"):
        print(f"{split}: {result['report'][split]}")
    print(f"updated {artifact.path / 'manifest.json'} and wrote {artifact.path / 'reliability.json'}")
    return 0


def cmd_cases(args: argparse.Namespace) -> int:
    """Index the training lesions for a model's similar-case view and measure it."""
    from .artifact import load_artifact
    from .cases import CASES_REPORT_FILE
    from .workflows import fit_cases

    artifact = load_artifact(args.model)
    result = fit_cases(artifact, _load_manifest(args), progress=not args.quiet)
    print(f"indexed {result['report']['fitted_on']}; each picture is shown its {result['report']['k']} nearest lesions")
    for split in ("val", "test"):
        print(f"{split}: {result['report'][split]}")
    print(f"updated {artifact.path / 'manifest.json'} and wrote {artifact.path / CASES_REPORT_FILE}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Measure the model on the user's own labelled pictures, against its own figures."""
    import pandas as pd

    from .artifact import load_artifact, write_json
    from .export import is_exported_model, load_exported
    from .local_validation import (
        export_source,
        format_report,
        read_labelled_csv,
        read_labelled_folder,
        validate_folder,
    )
    from .paths import AUDIT_DIR

    labels_file = None
    try:
        if args.labels:
            rows, labels_file = read_labelled_csv(args.folder, args.labels)
        else:
            rows = read_labelled_folder(args.folder)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if labels_file:
        print(
            f"{args.labels}: {len(rows)} pictures labelled; {labels_file['pictures_without_label']} pictures without "
            f"a label and {labels_file['labels_without_picture']} labels without a picture ignored; "
            f"{labels_file['labels_naming_no_class']} rows name no class of this model"
        )
    export = load_exported(args.model) if args.model and is_exported_model(args.model) else None
    artifact = load_artifact(args.model) if export is None else export_source(export.manifest)
    if export is not None and artifact is None:
        print(
            f"note: {export.manifest.get('source_model')}, the model this export was made from, is not among the "
            "trained models: no training check and no model figures to compare with",
            file=sys.stderr,
        )
    audit = AUDIT_DIR / "manifest.csv"
    audit_table = pd.read_csv(audit) if audit.is_file() else None
    report, table = validate_folder(rows, artifact, audit_table, progress=not args.quiet, export=export)
    if labels_file:
        report["labels_file"] = {"path": str(args.labels), **labels_file}
    print(format_report(report))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.output, index=False)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.json:
        write_json(Path(args.json), report)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if report["evaluated"] else 1


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


def describe_cases(cases) -> str:
    """The similar-case lines the ``explain`` command prints."""
    from .cases import case_votes

    votes = ", ".join(f"{name} {n}" for name, n in case_votes(cases).items())
    lines = [f"{len(cases)} most similar training lesions: {votes}"]
    lines += [
        f"  {case.similarity:.3f}  {case.label:<28} {case.isic_id or '-':<13} {case.source}  {case.path}"
        for case in cases
    ]
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    """Print and optionally save the speed figures of a model."""
    import json

    from .bench import run_benchmark

    results = run_benchmark(args.model, repeats=args.repeats, tflite=args.tflite)
    for key, value in results.items():
        print(f"{key:34s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model to SavedModel or TFLite and check it against the Keras model."""
    import json

    from .artifact import load_artifact
    from .conformal import PredictionSets
    from .export import check_export, export_model, manifest_path, parity_summary
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
            manifest = _load_manifest(args)
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
        checked = check_export(artifact, exported, splits, tta)
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


def _mask_line(heat, mask_path: str) -> str:
    """The heat map against a lesion mask, in one line (or why the mask could not be read)."""
    from .explain import lesion_mask_agreement
    from .images import ImageLoadError, load_image

    try:
        found = lesion_mask_agreement(heat, load_image(mask_path).image)
    except ImageLoadError as exc:
        return f"mask: {mask_path}: {exc}"
    return (
        f"heat inside the lesion mask: {found['heat_inside_lesion']:.0%} of the map's heat, on "
        f"{found['lesion_share']:.0%} of the picture; hottest point "
        + ("inside the lesion" if found["hottest_point_inside"] else "outside the lesion")
    )


def cmd_explain(args: argparse.Namespace) -> int:
    """Write a heat-map overlay PNG (and optionally the raw map) for one image."""
    import hashlib

    import numpy as np

    from .artifact import load_artifact, read_report
    from .case_report import (
        ModelFacts,
        answer_checks,
        case_report_html,
        compression_finding,
        explanation_caption,
        prediction_set_finding,
        risk_meaning_finding,
    )
    from .cases import CASES_REPORT_FILE, CaseIndex
    from .conformal import PREDICTION_SETS_FILE, PredictionSets
    from .explain import MALIGNANT_TARGET, METHOD_LABELS, Explainer, evidence_check, render_overlay
    from .images import ImageLoadError, load_image
    from .inference import Predictor, diagnose
    from .reliability import ReliabilityCheck
    from .risk_context import RiskContext
    from .robustness import COMPRESSION_REPORT_FILE, stability_check
    from .robustness import REPORT_FILE as ROBUSTNESS_FILE

    artifact = load_artifact(args.model)
    try:
        loaded = load_image(args.image)
    except ImageLoadError as exc:
        print(f"error: {args.image}: {exc}", file=sys.stderr)
        return 1
    image = loaded.image
    predictor = Predictor.from_artifact(artifact)
    sets = PredictionSets.from_manifest(artifact.manifest)
    # the app's verdict on the picture: probabilities, risk, reliability check, similar lesions
    result = diagnose(
        predictor,
        image,
        artifact.malignant_threshold,
        ReliabilityCheck.from_artifact(artifact),
        cases=CaseIndex.from_artifact(artifact),
        prediction_sets=sets,
    )
    x, probs = result.model_input, result.probs
    explainer = Explainer(artifact.model, artifact.input_size)
    target = args.target if args.target == MALIGNANT_TARGET else explainer.target_index(args.target, probs)
    heat = explainer.explain(x, args.method, target=target, max_n=args.max_n or None)
    render_overlay(image, heat, opacity=args.opacity).save(args.output)
    if args.raw:
        np.save(args.raw, heat)
    label = target if isinstance(target, str) else CLASS_NAMES[target]
    print(
        f"{args.method} for '{label}' (predicted: {CLASS_NAMES[int(np.argmax(probs))]} "
        f"{float(np.max(probs)):.1%}); wrote {args.output}"
    )
    print(
        f"malignant risk {result.malignant_probability:.1%} (referral threshold {artifact.malignant_threshold:.1%}); "
        f"advice: {result.advice or 'none from the model (not a diagnosis: a worrying lesion should be seen)'}"
    )
    risk_meaning = None
    evaluation = artifact.evaluation()
    context = RiskContext.from_evaluation(evaluation)
    if context is not None and not result.out_of_distribution:
        risk_meaning = risk_meaning_finding(result.malignant_probability, context)
        print(risk_meaning.text)
    differential = None
    if result.prediction_set is not None and not result.out_of_distribution:
        sets_report = read_report(artifact.path, PREDICTION_SETS_FILE)
        differential = prediction_set_finding(result.prediction_set, sets.coverage, sets_report)
        print(differential.text)
    compression = compression_finding(loaded.jpeg_quality, read_report(artifact.path, COMPRESSION_REPORT_FILE))
    if compression:
        print(f"note: {compression.detail}")
    evidence = evidence_check(predictor.predict_arrays, x, heat, target, probs=probs).describe(label)
    print(evidence)
    if args.mask:
        print(_mask_line(heat, args.mask))
    stability = stability_check(predictor.predict_arrays, x, probs)
    print(stability.describe())
    if result.similar is not None:
        print(describe_cases(result.similar))
    if args.report:
        shown = plain_name(label) if label in CLASS_NAMES else "malignant risk"
        robustness, cases_report = (read_report(artifact.path, name) for name in (ROBUSTNESS_FILE, CASES_REPORT_FILE))
        page = case_report_html(
            file_name=Path(args.image).name,
            file_sha256=hashlib.sha256(Path(args.image).read_bytes()).hexdigest(),
            image=image,
            original_size=loaded.original_size,
            overlay=render_overlay(image, heat, opacity=args.opacity),
            explanation=f"{explanation_caption(METHOD_LABELS[args.method], shown)}. {evidence}",
            result=result,
            model=ModelFacts.from_artifact(artifact, evaluation),
            findings=answer_checks(result, stability, compression, robustness, cases_report),
            differential=differential,
            risk_meaning=risk_meaning,
            image_notes=loaded.notes,
        )
        Path(args.report).write_text(page, encoding="utf-8")
        print(f"wrote the printable report {args.report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skin_model",
        description="Dermoscopy classifier: audit the data, train, evaluate, predict, explain, export.",
    )
    parser.add_argument("--version", action="version", version=f"skin_model {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    audit = sub.add_parser(
        "audit",
        help="decode every image and report duplicates, label conflicts, leakage and splits",
        description="Decode every image, find exact/near duplicates, cross-class conflicts, "
        "Train/Test leakage and disagreements with official ground truth; write the cleaned "
        "manifest with its splits.",
    )
    _add_data_flag(audit)
    audit.add_argument("--out", default=str(AUDIT_DIR), help="folder for audit.json, manifest.csv and CSVs")
    audit.add_argument("--json", metavar="PATH", help="also write the findings JSON here")
    audit.add_argument("--seed", type=int, default=1337, help="seed of the train/val split")
    audit.add_argument("--quiet", action="store_true", help="no progress bar")
    audit.set_defaults(func=cmd_audit)

    train = sub.add_parser(
        "train",
        help="train a model on the cleaned splits and save it with its evaluation",
        description="Train with class balancing, augmentation, label smoothing, a cosine "
        "learning-rate schedule and early stopping on validation balanced accuracy.",
    )
    _add_data_flag(train)
    add_config_flags(train)
    train.add_argument("--out", metavar="DIR", help="model folder (default trained_models/ARCH)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="pretrained models: go on with the interrupted run in OUT/checkpoint/ (same settings) instead of "
        "starting again",
    )
    train.add_argument("--no-weights", action="store_true", help="keep only manifest/evaluation/history")
    _add_split_and_quiet_flags(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on val/test, write evaluation.json",
        description="Evaluate a saved model on the cleaned validation and/or test split.",
    )
    _add_data_flag(evaluate)
    _add_model_flag(evaluate)
    evaluate.add_argument("--split", choices=["test", "val", "all"], default="all")
    evaluate.add_argument("--tta", action="store_true", default=None, help="use test-time augmentation")
    _add_split_and_quiet_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser(
        "predict",
        help="classify images or folders into a CSV",
        description="Classify image files and folders (recursively). One CSV row per file: "
        "file, status, predicted_class, one probability per class, malignant_probability, "
        "high_malignant_risk (at or above the model's referral threshold), and advice (empty, or "
        "'high malignant risk: refer', 'uncertain: refer', both, or "
        "'not a dermoscopic lesion image (...): refer'). --model takes a "
        "model folder, a .tflite file or a SavedModel folder from `export`.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    _add_model_flag(predict)
    predict.add_argument("--output", "-o", default="predictions.csv", help="CSV path, or - for stdout")
    predict.add_argument(
        "--tta", action="store_true", help="average over 8 flips/rotations (default: as the model was evaluated)"
    )
    predict.add_argument("--quiet", action="store_true")
    predict.set_defaults(func=cmd_predict)

    calibrate = sub.add_parser(
        "calibrate",
        help="fit temperature scaling, out-of-distribution detection and abstention for a saved model",
        description="Fit, on the training and validation splits, a temperature for calibrated confidence, a "
        "Mahalanobis out-of-distribution detector on the pooled features, and the confidence below which the "
        "model abstains; stores them beside the model with a checksum.",
    )
    _add_data_flag(calibrate)
    _add_model_flag(calibrate)
    _add_split_and_quiet_flags(calibrate)
    calibrate.set_defaults(func=cmd_calibrate)

    cases = sub.add_parser(
        "cases",
        help="index the training lesions so each prediction can show the most similar ones",
        description="Compute the pooled features of every training image of the cleaned split, store them "
        "beside the model with a checksum, and measure on validation and test how often the most similar "
        "training lesions agree with the model, and how often the model is right when they do not.",
    )
    _add_data_flag(cases)
    _add_model_flag(cases)
    _add_split_and_quiet_flags(cases)
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
    _add_model_flag(sets)
    sets.add_argument("--alpha", type=float, default=0.1, help="1 - the coverage asked for (default 0.1: 90 %%)")
    sets.set_defaults(func=cmd_sets)

    validate = sub.add_parser(
        "validate",
        help="measure the model on your own labelled pictures (FOLDER/<class>/...) against its published figures",
        description="Run the model on pictures filed by diagnosis (FOLDER/<class>/*, class folders named as the "
        "model's classes or by their ISIC/HAM10000 codes, e.g. MEL, NV, BKL, akiec) and print balanced accuracy, "
        "macro and malignant AUC and the referral's sensitivity and specificity with 95 %% bootstrap intervals "
        "beside the model's own figures on its validation and test pictures of the same classes, weighted to your "
        "case mix, and list the malignant lesions not referred. Pictures the model trained on (same bytes, same "
        "ISIC id, or a near-identical copy) are left out and counted. --model may name an export (.tflite or "
        "SavedModel folder) to measure what you would deploy; the model columns are then its source model's.",
    )
    validate.add_argument("folder", help="folder of class folders (or of pictures labelled by --labels)")
    validate.add_argument(
        "--labels",
        metavar="CSV",
        help="label the pictures from a CSV instead of class folders: an ISIC 2017/2019 ground-truth file, or any "
        "CSV with an image column (image_id, image, file, ...) and a diagnosis column (label, diagnosis, dx, class; "
        "names or codes), such as HAM10000's metadata",
    )
    _add_model_flag(validate)
    validate.add_argument("-o", "--output", metavar="CSV", help="also write the per-picture table")
    validate.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    validate.add_argument("--quiet", action="store_true", help="no progress bars")
    validate.set_defaults(func=cmd_validate)

    bench = sub.add_parser(
        "bench",
        help="measure load time, latency, throughput, Grad-CAM time and memory",
        description="Speed benchmark of a model (medians of several runs after warm-up).",
    )
    _add_model_flag(bench)
    bench.add_argument("--repeats", type=int, default=30)
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bench.add_argument(
        "--tflite", metavar="FILE", help="a .tflite export to measure too (default: a float32 export made on the fly)"
    )
    bench.set_defaults(func=cmd_bench)

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
    _add_data_flag(export)
    _add_model_flag(export)
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
    _add_split_and_quiet_flags(export)
    export.set_defaults(func=cmd_export)

    explain = sub.add_parser(
        "explain",
        help="heat map of the evidence for a class, as an overlay PNG",
        description="Explain one prediction with Grad-CAM and friends (tf-keras-vis).",
    )
    explain.add_argument("image", help="image file")
    _add_model_flag(explain)
    explain.add_argument(
        "--method", default="gradcam", choices=["gradcam", "gradcam++", "scorecam", "layercam", "smoothgrad"]
    )
    explain.add_argument(
        "--class",
        dest="target",
        metavar="NAME",
        help="class name to explain, or 'malignant' (default: the predicted class)",
    )
    explain.add_argument("--max-n", type=int, default=10, help="Score-CAM channels kept (Faster-Score-CAM); 0 = all")
    explain.add_argument("--opacity", type=float, default=0.45)
    explain.add_argument("--output", "-o", default="overlay.png")
    explain.add_argument("--raw", metavar="NPY", help="also save the raw heat map (.npy)")
    explain.add_argument(
        "--mask",
        metavar="PATH",
        help="a lesion mask of the picture (greyscale, >= 128 = lesion): print the share of the heat inside it",
    )
    explain.add_argument(
        "--report",
        metavar="HTML",
        help="also write the printable one-page report (picture, heat map, answer, checks, model) the app offers",
    )
    explain.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (DataNotFoundError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
