"""Command line: ``python -m skin_model <command> --help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .artifact import ArtifactError
from .cli_flags import add_data_flag, add_model_flag, add_split_and_quiet_flags, manifest_from_args
from .cli_model import add_model_commands
from .cli_segment import add_segment_commands
from .cli_use import add_use_commands
from .paths import AUDIT_DIR
from .sources import DataNotFoundError, resolve_data_dir
from .train_config import add_config_flags


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
        config,
        manifest_from_args(args),
        out,
        progress=not args.quiet,
        keep_weights=not args.no_weights,
        resume=args.resume,
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
    manifest = manifest_from_args(args)
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


def add_data_commands(sub) -> None:
    """The commands that audit the data, train and evaluate."""
    audit = sub.add_parser(
        "audit",
        help="decode every image and report duplicates, label conflicts, leakage and splits",
        description="Decode every image, find exact/near duplicates, cross-class conflicts, "
        "Train/Test leakage and disagreements with official ground truth; write the cleaned "
        "manifest with its splits.",
    )
    add_data_flag(audit)
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
    add_data_flag(train)
    add_config_flags(train)
    train.add_argument("--out", metavar="DIR", help="model folder (default trained_models/ARCH)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="pretrained models: go on with the interrupted run in OUT/checkpoint/ (same settings) instead of "
        "starting again",
    )
    train.add_argument("--no-weights", action="store_true", help="keep only manifest/evaluation/history")
    add_split_and_quiet_flags(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on val/test, write evaluation.json",
        description="Evaluate a saved model on the cleaned validation and/or test split.",
    )
    add_data_flag(evaluate)
    add_model_flag(evaluate)
    evaluate.add_argument("--split", choices=["test", "val", "all"], default="all")
    evaluate.add_argument("--tta", action="store_true", default=None, help="use test-time augmentation")
    add_split_and_quiet_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skin_model",
        description="Dermoscopy classifier: audit the data, train, evaluate, predict, explain, export.",
    )
    parser.add_argument("--version", action="version", version=f"skin_model {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_data_commands(sub)
    add_model_commands(sub)
    add_use_commands(sub)
    add_segment_commands(sub)
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
