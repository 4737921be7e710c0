"""Rewrite the README's "current figures" block from the shipped files.

    python tools/readme_figures.py [--check]

Reads the default model's manifest and evaluation, the shipped audit and
``results/leave_one_collection_out.json``; ``--check`` only says whether the README is
current (the test suite runs the same comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin_model.artifact import default_model_dir, read_evaluation, read_manifest  # noqa: E402
from skin_model.card_text import FIGURES_END, FIGURES_START, figures_markdown  # noqa: E402
from skin_model.model_files import (  # noqa: E402
    COLLECTION_TRANSFER_FILE,
    HEATMAP_LESION_FILE,
    TRUST_TRANSFER_FILE,
)
from skin_model.paths import AUDIT_DIR  # noqa: E402
from skin_model.segmentation import BENCHMARK_FILE, default_segmenter_dir  # noqa: E402

LOCO = ROOT / "results" / "leave_one_collection_out.json"


def current_block() -> str:
    model = default_model_dir()
    audit = json.loads((AUDIT_DIR / "audit.json").read_text()) if (AUDIT_DIR / "audit.json").is_file() else None
    loco = json.loads(LOCO.read_text()) if LOCO.is_file() else None
    reports = [model / name for name in (TRUST_TRANSFER_FILE, HEATMAP_LESION_FILE, COLLECTION_TRANSFER_FILE)]
    trust, heat, transfer = (json.loads(p.read_text()) if p.is_file() else None for p in reports)
    segmentation_file = default_segmenter_dir() / BENCHMARK_FILE
    segmentation = json.loads(segmentation_file.read_text()) if segmentation_file.is_file() else None
    return figures_markdown(
        read_manifest(model), read_evaluation(model) or {}, audit, loco, trust, heat, transfer, segmentation
    )


def with_block(readme: str, block: str) -> str:
    start, end = readme.index(FIGURES_START), readme.index(FIGURES_END) + len(FIGURES_END)
    return readme[:start] + block + readme[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "README.md"
    readme = path.read_text()
    updated = with_block(readme, current_block())
    if args.check:
        print("README figures are current" if updated == readme else "README figures are out of date")
        return 0 if updated == readme else 1
    path.write_text(updated)
    print("README figures rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
