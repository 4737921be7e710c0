"""Dataset: what the audit found in the training data and what cleaning did."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.charts import class_counts_figure, legend_caption
from app_pages.common import load_audit, load_manifest_table
from skin_model.classes import CLASS_NAMES
from skin_model.images import ImageLoadError, load_image
from skin_model.sources import COLLECTION_TITLES, DATA_ENV_VAR


def show_collections(found: dict) -> None:
    """Where the collections repeat each other, how each was photographed and saved,
    and which pictures each gave the test split."""
    if not found:
        st.info("This audit predates the cross-collection findings: run `python -m skin_model audit` again.")
        return
    after = pd.DataFrame({COLLECTION_TITLES.get(c, c): v["after"] for c, v in found["counts"].items()})
    st.markdown("**Pictures per class and collection after cleaning** (each picture counted once).")
    st.dataframe(after.reindex(list(CLASS_NAMES)).fillna(0).astype(int), width="stretch")
    test = pd.DataFrame(found["splits"]["test"]).reindex(list(CLASS_NAMES)).fillna(0).astype(int)
    test.columns = [COLLECTION_TITLES.get(c, c) for c in test.columns]
    st.markdown(
        "**Test split by collection**: the seed's Test folder minus leaked pictures, plus held-out lesions of "
        "every collection, at least 30 of each class where the data holds them. Only reported, never used to choose."
    )
    st.dataframe(test.assign(total=test.sum(axis=1)), width="stretch")
    st.markdown("**Overlaps**: the same ISIC id, the same picture at another size, another photo of the same lesion.")
    st.dataframe(pd.DataFrame(found["overlaps"]).T, width="stretch")
    st.json(found["lesions_across_collections"])
    st.markdown(
        "**How each collection was photographed and saved** (picture size, aspect ratio, JPEG quality per class): "
        "a model can learn these instead of the lesion, so training makes every collection look alike in "
        "compression, resolution and framing."
    )
    capture = [
        {"collection": COLLECTION_TITLES.get(c, c), "class": label, **{k: str(v) for k, v in facts.items()}}
        for c, per_class in found["capture"].items()
        for label, facts in per_class.items()
    ]
    st.dataframe(pd.DataFrame(capture), hide_index=True, width="stretch")
    st.markdown("**Labels the collections disagree on** (pictures filed differently by two collections):")
    st.json(found["label_disagreements"])
    st.markdown("**HAM10000's diagnosis codes and the classes their pictures ended with:**")
    st.dataframe(pd.DataFrame(found["ham10000_label_mapping"]).fillna(0).astype(int), width="stretch")
    masks = found["masks"]
    st.caption(
        f"{len(found['listed_but_missing'])} pictures listed in a metadata file but missing on disk; "
        f"{masks['with_mask']:,} lesion masks, {len(masks['missing'])} pictures without one, "
        f"{len(masks['size_mismatch'])} masks of another size than their picture."
    )


st.title("Dataset audit")
audit = load_audit()
if audit is None:
    st.error(
        "No audit results ship with this copy (assets/audit/audit.json is missing). "
        "Run `python -m skin_model audit --data DIR` to create them."
    )
    st.stop()

totals = audit["totals"]
collections = audit.get("collections", {})
named = ", ".join(COLLECTION_TITLES.get(c, c) for c in collections.get("collections", ["seed", "isic2017"]))
st.markdown(
    f"The collections ({named}) hold **{totals['files']:,}** files; "
    f"after removing copies, conflicting labels and leaked test images, **{totals['kept']:,}** are used. "
    "Duplicates are found by content hash (byte-identical) and by perceptual hash plus thumbnail correlation "
    f"(≤ {audit['settings']['near_duplicate_max_hash_distance']} bits and ≥ "
    f"{audit['settings']['near_duplicate_min_thumbnail_correlation']} correlation)."
)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Byte-identical groups across classes", len(audit["cross_class_duplicate_groups"]))
c2.metric("Test images leaked from Train", len(audit["train_test_leaks"]))
c3.metric("Near-duplicate groups", len(audit["near_duplicate_groups"]))
c4.metric("Official label disagreements", len(audit["official_label_disagreements"]))

left, right = st.columns(2)
left.plotly_chart(
    class_counts_figure(audit["class_counts"]["before"], "Before cleaning: folder label per source"), width="stretch"
)
right.plotly_chart(
    class_counts_figure(audit["class_counts"]["after"], "After cleaning: final label per split"), width="stretch"
)
st.caption(legend_caption())

tabs = st.tabs(
    ["Collections", "Label conflicts", "Train/Test leakage", "Official ground truth", "Exclusions", "Gallery"]
)
with tabs[0]:
    show_collections(collections)
tabs = tabs[1:]
with tabs[0]:
    rows = [
        {
            "folder labels": " / ".join(g["folder_labels"]),
            "official": g["official_label"] or "—",
            "resolution": g["resolution"],
            "files": ", ".join(f["path"].split("/")[-1] for f in g["files"]),
        }
        for g in audit["cross_class_duplicate_groups"]
    ]
    st.markdown(f"**{len(rows)}** groups of byte-identical images are filed under different classes.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
with tabs[1]:
    leaks = pd.DataFrame(audit["train_test_leaks"]).drop(columns=["train_files"], errors="ignore")
    st.markdown(
        f"**{len(leaks)}** images of the seed Test folder also appear in Train (as the same bytes, the same "
        "picture at another size, or another photo of the same lesion). None of them is used for testing."
    )
    st.dataframe(leaks, hide_index=True, width="stretch")
with tabs[2]:
    agreement = pd.DataFrame(audit["official_agreement"]).T
    st.markdown(
        "Agreement of the seed folder labels with the official ISIC 2019 / ISIC 2017 / HAM10000 labels "
        "(ISBI 2016 for benign vs malignant). Where they disagree, the official label is used."
    )
    st.dataframe(agreement, width="stretch")
    st.dataframe(pd.DataFrame(audit["official_label_disagreements"]), hide_index=True, width="stretch")
with tabs[3]:
    st.json(audit["totals"]["excluded_by_reason"])
    st.json(audit["source_overlap"])
    if "compression_by_collection" in audit:
        st.markdown(
            "**Compression per collection.** Files saved at each JPEG quality. The collections were saved "
            "differently, and ISIC 2017 holds only three classes, so compression alone hints at the class: the "
            "model card measures how much the shipped model uses it."
        )
        st.dataframe(pd.DataFrame(audit["compression_by_collection"]).fillna(0).astype(int), width="stretch")
with tabs[4]:
    data_dir = os.environ.get(DATA_ENV_VAR)
    table = load_manifest_table()
    if not data_dir or not Path(data_dir).is_dir() or table is None:
        st.info(
            f"The image gallery needs the data set: set {DATA_ENV_VAR} to its folder and restart. "
            "Everything else on this page works without it."
        )
    else:
        name = st.selectbox("Class", CLASS_NAMES)
        sample = table[(table["final_label"] == name) & (table["split"] != "excluded")].head(12)
        cols = st.columns(6)
        for k, (_, row) in enumerate(sample.iterrows()):
            try:
                image = load_image(Path(data_dir) / row["path"]).image
            except ImageLoadError as exc:
                cols[k % 6].caption(f"{row['path']}: {exc}")
                continue
            cols[k % 6].image(image, caption=f"{row['isic_id']} ({row['split']})", alt=f"{name} example")
