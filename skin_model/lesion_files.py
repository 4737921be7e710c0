"""Segmenting files: a lesion mask per picture, written at the picture's own size and
orientation, and one CSV row of the lesion's measurements per file. Unreadable files
get a status saying why; nothing stops the batch."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .file_predictions import iter_input_files
from .images import ImageLoadError, load_image
from .lesion_measures import MEANINGS, measure_lesion
from .segmentation import Segmenter

MEASURE_COLUMNS = (
    "area_share",
    "max_diameter_px",
    "max_diameter_mm",
    "asymmetry_major",
    "asymmetry_minor",
    "border_irregularity",
    "colours",
    "colour_names",
)
COLUMNS = ("file", "status", "mask_file", "lesion_found", *MEASURE_COLUMNS)
NO_LESION = "no lesion found"


def mask_file_name(name: str) -> str:
    """A flat, collision-free mask file name for a reported file name (folders joined by
    '__'), e.g. ``a/b.jpg`` -> ``a__b_mask.png``."""
    stem = name.rsplit(".", 1)[0] if "." in Path(name).name else name
    return stem.replace("/", "__") + "_mask.png"


def segment_files(
    segmenter: Segmenter,
    paths: Iterable[str | Path],
    out_dir: Path,
    field_of_view_mm: float | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Segment every picture in ``paths`` (files or folders, recursively), write each
    mask PNG to ``out_dir`` (255 = lesion) and return the measurements table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, name in tqdm(iter_input_files(paths), desc="segmenting", disable=not progress):
        row: dict[str, object] = {"file": name, "status": "ok", "mask_file": "", "lesion_found": False}
        try:
            picture = load_image(path).image
        except ImageLoadError as exc:
            rows.append(row | {"status": f"unreadable: {exc}"})
            continue
        lesion = segmenter.segment(picture)
        row["mask_file"] = mask_file_name(name)
        lesion.mask_image().save(out_dir / row["mask_file"])
        measures = measure_lesion(lesion.mask, np.asarray(picture), field_of_view_mm)
        if measures is None:
            row["status"] = NO_LESION
        else:
            row |= {"lesion_found": True} | measures.as_row()
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["colours"] = table["colours"].astype("Int64")  # a count, empty where nothing was measured
    return table


def column_meanings() -> dict[str, str]:
    """One line per measurement column, for the command's help and the docs."""
    return {k: v for k, v in MEANINGS.items() if k in MEASURE_COLUMNS}
