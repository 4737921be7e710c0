"""Commands that use a model on pictures: predict a folder into a CSV, measure it on the user's
own labelled pictures, explain one picture as the Diagnose page does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .classes import CLASS_NAMES
from .cli_flags import add_model_flag
from .explain import DEFAULT_METHOD, METHODS, SCORECAM_CHANNELS
from .paths import AUDIT_DIR


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify image files and folders into a CSV; exit 1 only if nothing was readable."""
    from .file_predictions import iter_input_files, predict_files, predictions_table
    from .robustness import COMPRESSION_NOTE_BELOW

    files = iter_input_files(args.paths)
    if not files:
        print("error: no files found in the given paths", file=sys.stderr)
        return 1
    from .bundle import load_bundle

    bundle = load_bundle(args.model, tta=True if args.tta else None)
    threshold = bundle.malignant_threshold
    results = predict_files(
        bundle.predictor,
        files,
        progress=not args.quiet,
        reliability=bundle.reliability,
        cases=bundle.cases,
        malignant_threshold=threshold,
        prediction_sets=bundle.prediction_sets,
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


def cmd_validate(args: argparse.Namespace) -> int:
    """Measure the model on the user's own labelled pictures, against its own figures."""
    import pandas as pd

    from .artifact import write_json
    from .bundle import load_bundle
    from .labelled_pictures import read_labelled_csv, read_labelled_folder
    from .local_validation import export_source, format_report, validate_folder

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
    bundle = load_bundle(args.model)
    artifact = bundle.artifact if not bundle.is_export else export_source(bundle.manifest)
    if bundle.is_export and artifact is None:
        print(
            f"note: {bundle.manifest.get('source_model')}, the model this export was made from, is not among the "
            "trained models: no training check and no model figures to compare with",
            file=sys.stderr,
        )
    audit = AUDIT_DIR / "manifest.csv"
    audit_table = pd.read_csv(audit) if audit.is_file() else None
    report, table = validate_folder(rows, artifact, audit_table, progress=not args.quiet, bundle=bundle)
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


def _mask_line(heat, mask_path: str, picture=None) -> str:
    """The heat map against a lesion mask, and the lesion's measurements from the mask
    (with ``picture``, the upright picture, for its colours), or why the mask could not
    be read."""
    import numpy as np
    from PIL import Image

    from .explain import lesion_mask_agreement
    from .images import ImageLoadError, load_image
    from .lesion_measures import MEANINGS, measure_lesion

    try:
        mask = load_image(mask_path).image
    except ImageLoadError as exc:
        return f"mask: {mask_path}: {exc}"
    found = lesion_mask_agreement(heat, mask)
    lines = [
        f"heat inside the lesion mask: {found['heat_inside_lesion']:.0%} of the map's heat, on "
        f"{found['lesion_share']:.0%} of the picture; hottest point "
        + ("inside the lesion" if found["hottest_point_inside"] else "outside the lesion")
    ]
    if picture is not None and mask.size != picture.size:
        mask = mask.resize(picture.size, Image.Resampling.NEAREST)
    inside = np.asarray(mask.convert("L")) >= 128
    measures = measure_lesion(inside, None if picture is None else np.asarray(picture.convert("RGB")))
    if measures is None:
        lines.append("the mask holds no lesion: nothing to measure")
    else:
        for key, value in measures.as_row().items():
            if key in MEANINGS and value is not None:
                lines.append(f"  {key.replace('_', ' ')}: {value} ({MEANINGS[key]})")
        if measures.colour_names:
            lines.append(f"  colours seen: {', '.join(measures.colour_names)}")
    return "\n".join(lines)


def cmd_explain(args: argparse.Namespace) -> int:
    """One picture's analysis as the Diagnose page gives it: a heat-map overlay PNG (and
    optionally the raw map), the verdict, its checks, and the printable report."""
    import hashlib

    import numpy as np

    from .analysis import analyse_picture, check_stability, printable_report
    from .bundle import load_bundle
    from .images import ImageLoadError, load_image

    bundle = load_bundle(args.model, explain=True)
    try:
        loaded = load_image(args.image)
    except ImageLoadError as exc:
        print(f"error: {args.image}: {exc}", file=sys.stderr)
        return 1
    analysis = analyse_picture(bundle, loaded, args.method, args.target, max_n=args.max_n or None)
    result = analysis.result
    analysis.overlay(args.opacity).save(args.output)
    if args.raw:
        np.save(args.raw, analysis.heat)
    label = analysis.target if isinstance(analysis.target, str) else CLASS_NAMES[analysis.target]
    print(
        f"{args.method} for '{label}' (predicted: {result.predicted_class} "
        f"{float(np.max(result.probs)):.1%}); wrote {args.output}"
    )
    print(
        f"malignant risk {result.malignant_probability:.1%} (referral threshold {bundle.malignant_threshold:.1%}); "
        f"advice: {result.advice or 'none from the model (not a diagnosis: a worrying lesion should be seen)'}"
    )
    for finding in (analysis.risk_meaning, analysis.differential):
        if finding is not None:
            print(finding.text)
    if analysis.compression:
        print(f"note: {analysis.compression.detail}")
    print(analysis.evidence_text)
    if args.mask:
        print(_mask_line(analysis.heat, args.mask, analysis.loaded.image))
    stability = check_stability(bundle, analysis)
    if stability is not None:
        print(stability.describe())
    if result.similar is not None:
        print(describe_cases(result.similar))
    if args.report:
        page = printable_report(
            bundle,
            analysis,
            stability,
            file_name=Path(args.image).name,
            file_sha256=hashlib.sha256(Path(args.image).read_bytes()).hexdigest(),
            opacity=args.opacity,
        )
        Path(args.report).write_text(page, encoding="utf-8")
        print(f"wrote the printable report {args.report}")
    return 0


def add_use_commands(sub) -> None:
    """The commands that use a model on pictures: predict, validate, explain."""
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
    add_model_flag(predict)
    predict.add_argument("--output", "-o", default="predictions.csv", help="CSV path, or - for stdout")
    predict.add_argument(
        "--tta", action="store_true", help="average over 8 flips/rotations (default: as the model was evaluated)"
    )
    predict.add_argument("--quiet", action="store_true")
    predict.set_defaults(func=cmd_predict)

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
    add_model_flag(validate)
    validate.add_argument("-o", "--output", metavar="CSV", help="also write the per-picture table")
    validate.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    validate.add_argument("--quiet", action="store_true", help="no progress bars")
    validate.set_defaults(func=cmd_validate)

    _add_explain_command(sub)


def _add_explain_command(sub) -> None:
    """``explain``: one picture's heat map, with its checks and, given a mask, its share inside the lesion."""
    explain = sub.add_parser(
        "explain",
        help="heat map of the evidence for a class, as an overlay PNG",
        description="Explain one prediction with Grad-CAM (the default), the fast SmoothGrad, or "
        "tf-keras-vis's Grad-CAM++, Score-CAM and Layer-CAM.",
    )
    explain.add_argument("image", help="image file")
    add_model_flag(explain)
    explain.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS))
    explain.add_argument(
        "--class",
        dest="target",
        metavar="NAME",
        help="class name to explain, or 'malignant' (default: the predicted class)",
    )
    explain.add_argument(
        "--max-n",
        type=int,
        default=SCORECAM_CHANNELS,
        help=f"Score-CAM channels kept (Faster Score-CAM; default {SCORECAM_CHANNELS}); 0 = all",
    )
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
