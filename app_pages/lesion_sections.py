"""The lesion segmenter on the Model card: how well its outline matches the experts', how
it holds when the picture is saved again, and whether classifying the outlined lesion helped."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages.common import read_json
from skin_model.segmentation import BENCHMARK_FILE, PHOTO_TO_PHOTO_FILE, default_segmenter_dir


def segmenter_reports() -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """The shipped segmenter's manifest, benchmark and photo-to-photo spread (None when absent)."""
    folder = default_segmenter_dir()
    return tuple(read_json(folder / name) for name in ("manifest.json", BENCHMARK_FILE, PHOTO_TO_PHOTO_FILE))


def overlap_rows(benchmark: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "pictures": name,
            "n": f["pictures"],
            "Dice": f"{f['dice']:.3f} ({f['dice_95ci'][0]:.3f}-{f['dice_95ci'][1]:.3f})",
            "Jaccard": f"{f['jaccard']:.3f} ({f['jaccard_95ci'][0]:.3f}-{f['jaccard_95ci'][1]:.3f})",
            "thresholded Jaccard": f"{f['thresholded_jaccard']:.3f}",
        }
        for name, f in benchmark["overlap"].items()
    ]


def show_segmenter() -> None:
    """The segmenter's figures, or why there are none."""
    manifest, benchmark, spread = segmenter_reports()
    if manifest is None:
        st.info("No lesion segmenter ships with this version: pictures are not outlined.")
        return
    config = manifest.get("training_config", {})
    minutes = manifest.get("training_wall_time_s", 0) / 60
    st.markdown(
        f"`{manifest.get('name')}`: {manifest.get('architecture')} at {manifest.get('input_size')} px, trained in "
        f"{minutes:.0f} min on {manifest.get('split_sizes', {}).get('train', 0):,} HAM10000 pictures with expert masks "
        f"({config.get('epochs')} epochs, best {manifest.get('best_epoch')}), with the classifier's lesion-grouped "
        "splits, geometry rule and capture changes. The outline is the largest region where the lesion probability "
        "reaches 0.5, stretched back to the picture's own shape."
    )
    if benchmark is None:
        st.caption("The overlap benchmark (`benchmarks/segmentation.py`) has not been run for this segmenter.")
        return
    st.markdown("**Overlap with the experts' masks**, test pictures it never trained on, at each picture's size:")
    st.dataframe(overlap_rows(benchmark), hide_index=True, width="stretch")
    timing = benchmark.get("outline_time", {})
    if timing:
        st.caption(f"One outline takes {timing['median_ms']:.0f} ms (95th percentile {timing['p95_ms']:.0f} ms).")
    crop = benchmark.get("crop_to_lesion")
    if crop and "all" in crop:
        a = crop["all"]
        st.markdown(
            f"**Classifying the outlined lesion** (validation, single view, box + {crop['margin']:.0%} margin): "
            f"balanced accuracy {a['balanced_accuracy_cropped']:.3f} against {a['balanced_accuracy_as_stored']:.3f} "
            "on the whole picture"
            + "".join(
                f"; {label} lesions ({crop[key]['pictures']}): {crop[key]['balanced_accuracy_cropped']:.3f} against "
                f"{crop[key]['balanced_accuracy_as_stored']:.3f}"
                for key, label in (("small", "small"), ("off_centre", "off-centre"))
                if key in crop
            )
            + ". The app classifies the whole picture"
            + (
                ", which measured better."
                if a["balanced_accuracy_cropped"] <= a["balanced_accuracy_as_stored"]
                else "."
            )
        )
    if spread is not None:
        st.caption(
            f"The Follow-up page counts a change of the outline when it exceeds {spread['quantile']:.0%} of the "
            f"changes between two pictures of one unchanged lesion ({spread['pairs']} pairs of "
            f"{spread['lesions']} test lesions)."
        )
