"""Command line: ``python -m skin_model <command> --help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .paths import AUDIT_DIR
from .sources import DATA_ENV_VAR, DataNotFoundError, resolve_data_dir


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except DataNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
