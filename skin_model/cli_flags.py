"""Flags several commands share (the model, the split, quiet, the data location) and the
manifest they describe."""

from __future__ import annotations

import argparse

from .sources import DATA_ENV_VAR, resolve_data_dir


def add_model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="PATH", help="model folder (default: the project's default model)")


def add_split_and_quiet_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split-seed", type=int, default=1337, help="seed of the train/val split")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_data_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help=f"data root holding the data sets (default: ${DATA_ENV_VAR})",
    )


def manifest_from_args(args: argparse.Namespace):
    from .manifest import build_manifest

    return build_manifest(resolve_data_dir(args.data), seed=args.split_seed, progress=not args.quiet)
