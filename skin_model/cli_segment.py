"""Commands of the lesion segmenter: ``segment`` (masks and measurements of pictures) and
``train-segmenter`` (train it on the HAM10000 masks, resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_flags import add_data_flag, add_split_and_quiet_flags, manifest_from_args


def cmd_segment(args: argparse.Namespace) -> int:
    """Write a mask per picture and the measurements CSV."""
    from .lesion_files import segment_files
    from .segmentation import Segmenter

    segmenter = Segmenter.load(args.segmenter)
    table = segment_files(segmenter, args.paths, Path(args.output), args.fov_mm, progress=not args.quiet)
    csv_path = Path(args.csv) if args.csv else Path(args.output) / "measurements.csv"
    table.to_csv(csv_path, index=False)
    found = int(table["lesion_found"].sum())
    unreadable = int(table["status"].str.startswith("unreadable").sum())
    print(
        f"{len(table)} files: lesion outlined {found}, no lesion found {len(table) - found - unreadable}, "
        f"unreadable {unreadable}; masks in {args.output}, measurements in {csv_path}"
    )
    return 0


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    """Train the segmenter on the masked pictures of the cleaned splits."""
    from .segmentation import default_segmenter_dir
    from .segmentation_training import SegmenterConfig, train_segmenter
    from .train_config import config_from_args

    config = config_from_args(args, SegmenterConfig)
    out = Path(args.out) if args.out else default_segmenter_dir()
    record = train_segmenter(config, manifest_from_args(args), out, resume=args.resume, progress=not args.quiet)
    for split, figures in record["metrics"].items():
        print(
            f"{split}: {figures['pictures']} pictures, Dice {figures['dice']:.3f} "
            f"({figures['dice_95ci'][0]:.3f}-{figures['dice_95ci'][1]:.3f}), Jaccard {figures['jaccard']:.3f} "
            f"({figures['jaccard_95ci'][0]:.3f}-{figures['jaccard_95ci'][1]:.3f}), "
            f"thresholded Jaccard {figures['thresholded_jaccard']:.3f}"
        )
    print(f"trained in {record['training_wall_time_s'] / 60:.1f} min; saved to {out}", file=sys.stderr)
    return 0


def add_segment_commands(sub) -> None:
    """``segment`` and ``train-segmenter``."""
    from .segmentation_training import SegmenterConfig
    from .train_config import add_config_flags

    segment = sub.add_parser(
        "segment",
        help="outline the lesion of pictures: a mask PNG each and a CSV of measurements",
        description="Find the lesion in each picture (files or folders, recursively). Writes a mask PNG per "
        "picture at the picture's own size and orientation (255 = lesion, 0 = skin) and a CSV with one row per "
        "file: status, mask file, and the lesion's area share, maximum diameter (in mm with --fov-mm), asymmetry "
        "about its two axes, border irregularity and ABCD colours.",
    )
    segment.add_argument("paths", nargs="+", metavar="IMAGE", help="image files or folders")
    segment.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for the masks and the CSV")
    segment.add_argument("--csv", metavar="PATH", help="measurements CSV (default DIR/measurements.csv)")
    segment.add_argument("--fov-mm", type=float, metavar="MM", help="the pictures' width in millimetres")
    segment.add_argument("--segmenter", metavar="DIR", help="segmenter folder (default: the shipped one)")
    segment.add_argument("--quiet", action="store_true", help="no progress bar")
    segment.set_defaults(func=cmd_segment)

    train = sub.add_parser(
        "train-segmenter",
        help="train the lesion segmenter on the HAM10000 masks (resumable)",
        description="Train the lesion segmenter on the masked pictures of the cleaned, lesion-grouped splits, "
        "keep the epoch with the best validation Dice, measure validation and test at the pictures' own size "
        "and write the segmenter folder with its manifest and checksums.",
    )
    add_data_flag(train)
    add_config_flags(train, SegmenterConfig)
    train.add_argument("--out", metavar="DIR", help="segmenter folder (default: the shipped one's)")
    train.add_argument("--resume", action="store_true", help="go on with the interrupted run in OUT/checkpoint/")
    add_split_and_quiet_flags(train)
    train.set_defaults(func=cmd_train_segmenter)
