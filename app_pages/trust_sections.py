"""Sections on whether the model can be trusted on another clinic's pictures: the
reliability check and what it refuses, the referral threshold leaving one collection out,
the recipe trained without a collection, and the heat maps against the lesion masks.
Shared by the Evaluation page and the model card; each reads a report that ships beside
the model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageFilter

from skin_model.case_report import split_title
from skin_model.sources import COLLECTION_TITLES

DATA_ENV_VAR = "SKIN_DATA_DIR"


def _percent(rate: dict[str, Any]) -> str:
    low, high = rate.get("rate_95ci") or (None, None)
    interval = f" ({low:.0%}-{high:.0%})" if low is not None else ""
    return f"{rate['rate']:.1%}{interval}" if rate.get("rate") is not None else "-"


def _title(collection: str) -> str:
    return COLLECTION_TITLES.get(collection, collection)


def show_reliability(summary: dict[str, Any]) -> None:
    """What the reliability check does and how it measured: refusals of real lesions,
    calibration before/after temperature scaling, abstention coverage."""
    reliability = summary.get("reliability")
    if not reliability:
        st.info(f"{summary['name']} has no fitted reliability check (`python -m skin_model calibrate`).")
        return
    settings = reliability["manifest"]
    if "lesion_detector_threshold" in settings:
        refusal = (
            "a lesion detector on the model's features, trained on lesions against generated pictures that are "
            "not lesions, refuses a picture when it is surer it is no lesion than for 99 % of validation lesions"
        )
    else:
        refusal = (
            f"Mahalanobis distance of the model's pooled features to the nearest class, at "
            f"{len(settings.get('ood_layers', [1]))} depths of the network (flagged above the 95th percentile of "
            "validation lesions)"
        )
    st.markdown(
        f"- **Not a lesion?** {refusal}, plus image screens for blank, colourless and noise frames.\n"
        f"- **Calibration:** temperature scaling, T = {settings['temperature']:.2f}, fitted on validation.\n"
        f"- **Abstention:** the model answers only at calibrated confidence ≥ {settings['abstain_below']:.0%}; "
        "below that, or for a non-lesion image, it says *uncertain: refer*."
    )
    rows = []
    for split in ("val", "test"):
        r = reliability["report"].get(split)
        if r:
            rows.append(
                {
                    "split": split_title(split),
                    "lesions wrongly rejected as not-a-lesion": f"{r['ood_false_rejection']:.1%}",
                    "ECE before → after": f"{r['ece_before']:.3f} → {r['ece_after']:.3f}",
                    "answered (coverage)": f"{r['coverage']:.0%}",
                    "accuracy when answering": f"{r['accuracy_answered']:.0%}",
                    "accuracy on all": f"{r['accuracy_all']:.0%}",
                }
            )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    show_refusals_across_collections(summary)


def collection_transfer_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Two rows per left-out collection: the shipped model, then the recipe trained
    without the collection, on the collection's test pictures."""
    rows = []
    for collection, row in report["collections"].items():
        for key, trained in (("in_collection", "with it (shipped)"), ("held_out", "without it")):
            f = row[key]
            low, high = f.get("malignant_auc_95ci") or (None, None)
            rows.append(
                {
                    "collection": _title(collection),
                    "trained": trained,
                    "test pictures": f["n_images"],
                    "balanced accuracy": f["balanced_accuracy"],
                    "accuracy": f["accuracy"],
                    "malignant AUC": f["malignant_auc"],
                    "malignant AUC 95% CI": f"{low:.2f}-{high:.2f}" if low is not None else "",
                    "referral sens / spec": f"{f['malignant_sensitivity']:.2f} / {f['malignant_specificity']:.2f}",
                    "threshold": f["threshold"],
                }
            )
    return rows


def show_collection_transfer(summary: dict[str, Any]) -> None:
    """The recipe fine-tuned without a collection, measured on it (``benchmarks/transfer.py``)."""
    report = summary.get("collection_transfer")
    if not report:
        st.caption("The recipe has not been trained leaving a collection out (`benchmarks/transfer.py`).")
        return
    st.dataframe(pd.DataFrame(collection_transfer_rows(report)), hide_index=True, width="stretch")
    st.caption(
        "The project's estimate of a camera it has never seen: the training recipe, on a shorter schedule, "
        "fine-tuned on the other two collections only and given its referral threshold on their validation "
        "pictures, then measured on the left-out collection's test pictures, beside the shipped model (trained on "
        "all three) on the same pictures. Each model refers at its own threshold; intervals are 95 % bootstrap."
    )


def show_refusals_across_collections(summary: dict[str, Any]) -> None:
    """Refusals per collection, fitted with and without it, and of non-lesion pictures
    (``benchmarks/trust_transfer.py``)."""
    transfer = summary.get("trust_transfer")
    if not transfer:
        st.caption("Refusals leaving one collection out have not been measured (`benchmarks/trust_transfer.py`).")
        return
    rows = []
    for report in transfer["ood"]:
        row = {"detector": report["detector"]}
        for collection, rate in report["within_collection"].items():
            row[f"{_title(collection)}: refused (test)"] = _percent(rate)
        for collection, rate in report["leave_one_collection_out"].items():
            row[f"{_title(collection)}: refused, fitted without it"] = _percent(rate)
        for group, rate in report["other"].items():
            row[f"{group}: refused"] = _percent(rate)
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        "Real lesions refused within each collection's test pictures, and of a collection the check was fitted "
        "without (its validation and test pictures; what a new clinic's camera would meet), with 95 % intervals; "
        f"then the {transfer['non_lesion_benchmark']}-picture non-lesion benchmark (photos, crops, faces, charts, "
        "documents, screenshots, blank and noise frames) and, not counted in it, heavily blurred and zoomed-out "
        "versions of test lesions. The first row is the check the app applies."
    )


def referral_rows(transfer: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per referral rule: its threshold, test figures, and sensitivity /
    specificity within each collection and leaving it out."""
    rows = []
    for rule, figures in transfer["referral"]["rules"].items():
        row = {
            "rule": rule,
            "threshold": round(figures["threshold"], 3),
            "test sens / spec": f"{figures['test']['sensitivity']:.2f} / {figures['test']['specificity']:.2f}",
        }
        for collection, f in figures["test_by_collection"].items():
            row[f"{_title(collection)} (test)"] = f"{f['sensitivity']:.2f} / {f['specificity']:.2f}"
        for collection, f in figures["leave_one_collection_out"].items():
            row[f"{_title(collection)} (fitted without it)"] = f"{f['sensitivity']:.2f} / {f['specificity']:.2f}"
        rows.append(row)
    return rows


def show_referral_transfer(summary: dict[str, Any]) -> None:
    """The referral rules within each collection and leaving one out."""
    transfer = summary.get("trust_transfer")
    if not transfer:
        st.info("The referral threshold has not been measured leaving one collection out.")
        return
    shipped = summary["manifest"].get("referral_rule", "pooled")
    st.dataframe(pd.DataFrame(referral_rows(transfer)), hide_index=True, width="stretch")
    st.caption(
        f"Malignant sensitivity / specificity at each rule's threshold, fitted on validation for "
        f"{transfer['referral']['target_sensitivity']:.0%} sensitivity: pooled (all validation pictures together) or "
        "weakest-collection (each collection on its own, the lowest threshold kept). Within each collection's test "
        "pictures, and refitted without a collection then applied to its test pictures. "
        f"This model ships the **{shipped}** rule, the one whose sensitivity is highest where it is weakest."
    )


def outline(mask: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A boolean outline (a few pixels wide) of a lesion mask at ``size``."""
    grid = mask.convert("L").resize(size, Image.Resampling.NEAREST)
    grown = np.asarray(grid.filter(ImageFilter.MaxFilter(5))) >= 128
    shrunk = np.asarray(grid.filter(ImageFilter.MinFilter(5))) >= 128
    return grown & ~shrunk


def _example_overlays(report: dict[str, Any], data_dir: Path, model_dir: str) -> None:
    """Heat maps of the stored example pictures with the lesion outlined (data set needed)."""
    from app_pages.common import load_model_bundle
    from skin_model.analysis import analyse_picture
    from skin_model.explain import lesion_mask_agreement, render_overlay
    from skin_model.images import ImageLoadError, load_image

    bundle = load_model_bundle(model_dir)
    columns = st.columns(3)
    for k, example in enumerate(report["examples"][:6]):
        try:
            loaded, mask = load_image(data_dir / example["picture"]), load_image(data_dir / example["mask"]).image
        except (ImageLoadError, OSError) as exc:
            columns[k % 3].caption(f"{example['picture']}: {exc}")
            continue
        heat = analyse_picture(bundle, loaded).heat
        shown = np.asarray(render_overlay(loaded.image, heat)).copy()
        shown[outline(mask, loaded.image.size)] = (255, 255, 255)
        found = lesion_mask_agreement(heat, mask)
        columns[k % 3].image(
            shown,
            caption=f"{found['heat_inside_lesion']:.0%} of the heat inside the lesion "
            f"({found['lesion_share']:.0%} of the picture); hottest point "
            f"{'inside' if found['hottest_point_inside'] else 'outside'}",
        )


def show_heatmaps_on_lesions(summary: dict[str, Any], examples: bool = False) -> None:
    """Every explanation method against the expert lesion masks (``benchmarks/heatmap_lesion.py``)."""
    report = summary.get("heatmap_lesion")
    if not report:
        st.info("The heat maps have not been measured against lesion masks (`benchmarks/heatmap_lesion.py`).")
        return
    rows = [
        {
            "map": name,
            "pictures": m["pictures"],
            "hottest point inside the lesion": f"{m['pointing_game']:.0%} "
            f"({m['pointing_game_95ci'][0]:.0%}-{m['pointing_game_95ci'][1]:.0%})",
            "heat inside the lesion": f"{m['heat_inside_lesion']:.0%} "
            f"({m['heat_inside_lesion_95ci'][0]:.0%}-{m['heat_inside_lesion_95ci'][1]:.0%})",
            "lesion's share of the picture": f"{m['lesion_share']:.0%}",
        }
        for name, m in report["maps"].items()
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        f"On the {split_title(report['split'])} split's HAM10000 pictures with their expert lesion masks, "
        "explaining the class the model predicts; 95 % intervals. A map blind to the lesion would put about the "
        "lesion's share of its heat inside it, and its hottest point inside about that often."
    )
    if not examples:
        return
    data = os.environ.get(DATA_ENV_VAR)
    if not data or not Path(data).is_dir():
        st.caption(f"Example overlays need the data set (set ${DATA_ENV_VAR}); the pictures do not ship.")
        return
    if st.toggle("Show example heat maps with the lesion outlined", value=False):
        _example_overlays(report, Path(data), summary["path"])
