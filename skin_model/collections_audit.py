"""The audit across image collections: what each collection brings, where they repeat
each other (the same ISIC id, the same picture, the same lesion), where their labels
disagree, how each was photographed and saved (the raw material of a shortcut: a model
can learn a collection's look instead of the lesion), and which pictures the test split
took from which collection.

Pure functions of the manifest table (plus file headers for JPEG quality and masks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from .classes import CLASS_NAMES, labels_agree
from .sources import SOURCE_HAM10000, source_collection

SEED = "seed"


def collection_column(table: pd.DataFrame) -> pd.Series:
    """The collection of every row (seed Train and Test are one collection)."""
    return table["source"].map(source_collection)


def counts_by_collection(table: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """Per collection, pictures per class before cleaning (its own label) and after
    (final label of the pictures kept)."""
    collections = collection_column(table)
    kept = table["split"] != "excluded"

    def per_class(frame: pd.DataFrame, label: str) -> dict[str, int]:
        counts = frame[label].value_counts()
        return {c: int(counts.get(c, 0)) for c in CLASS_NAMES}

    return {
        c: {
            "before": per_class(table[collections == c], "folder_label"),
            "after": per_class(table[(collections == c) & kept], "final_label"),
        }
        for c in sorted(collections.unique())
    }


def split_by_collection(table: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """Per split, how many pictures of each class came from each collection."""
    kept = table[table["split"] != "excluded"]
    collections = collection_column(kept)
    out: dict[str, dict[str, dict[str, int]]] = {}
    for split in ("train", "val", "test"):
        rows = kept[kept["split"] == split]
        out[split] = {
            c: {k: int(v) for k, v in rows[collections[rows.index] == c]["final_label"].value_counts().items()}
            for c in sorted(collections.unique())
        }
    return out


def overlaps(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """For every pair of collections: pictures of the second sharing an ISIC id, a
    picture (same image at another size or encoding) or a lesion with the first."""
    collections = collection_column(table)
    readable = table["error"].isna()
    out = {}
    names = sorted(collections.unique())
    for a in names:
        for b in names:
            if a >= b:
                continue
            rows_a, rows_b = table[(collections == a) & readable], table[(collections == b) & readable]
            same_id = rows_b["isic_id"].isin(set(rows_a["isic_id"].dropna()))
            same_picture = rows_b["picture_id"].isin(set(rows_a["picture_id"]))
            same_lesion = rows_b["group_id"].isin(set(rows_a["group_id"]))
            out[f"{b} in {a}"] = {
                f"{b}_pictures": len(rows_b),
                "same_isic_id": int(same_id.sum()),
                "same_picture": int(same_picture.sum()),
                "same_picture_other_id": int((same_picture & ~same_id).sum()),
                "same_lesion_other_picture": int((same_lesion & ~same_picture).sum()),
            }
    return out


def lesions_across_collections(table: pd.DataFrame) -> dict[str, Any]:
    """Lesion groups with pictures in more than one collection (kept on one side of
    every split), and how many HAM10000 pictures share a lesion with the seed set."""
    collections = collection_column(table)
    per_group = collections.groupby(table["group_id"]).nunique()
    spanning = per_group[per_group > 1].index
    seed = table[collections == SEED]
    ham = table[table["source"] == SOURCE_HAM10000]
    seed_test_groups = set(seed.loc[seed["source"] == "seed_test", "group_id"])
    return {
        "groups_spanning_collections": len(spanning),
        "pictures_in_them": int(table["group_id"].isin(spanning).sum()),
        "ham10000_pictures_sharing_a_lesion_with_seed": int(ham["group_id"].isin(set(seed["group_id"])).sum()),
        "ham10000_pictures_sharing_a_lesion_with_seed_test": int(ham["group_id"].isin(seed_test_groups).sum()),
        "groups_on_two_sides_of_a_split": int(
            table[table["split"] != "excluded"].groupby("group_id")["split"].nunique().gt(1).sum()
        ),
    }


def label_disagreements(table: pd.DataFrame) -> dict[str, int]:
    """Pictures that two collections file under different classes, counted per pair
    of labels ("seed: nevus / ham10000: actinic keratosis")."""
    collections = collection_column(table)
    counts: dict[str, int] = {}
    for _, members in table[table["error"].isna()].groupby("picture_id"):
        if members["source"].map(source_collection).nunique() < 2:
            continue
        labels = {f"{collections[i]}: {members.at[i, 'folder_label']}" for i in members.index}
        plain = {lab.split(": ", 1)[1] for lab in labels}
        if len(plain) > 1 and not all(labels_agree(x, y) or labels_agree(y, x) for x in plain for y in plain):
            key = " / ".join(sorted(labels))
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def capture_by_collection(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per collection and class: picture sizes, aspect ratios and JPEG qualities (the
    median and range), read from the file headers only."""
    from .images import estimate_jpeg_quality

    readable = table[table["error"].isna()].copy()
    readable["collection"] = collection_column(readable)
    qualities = []
    for path in readable["path"]:
        with Image.open(path) as img:
            qualities.append(estimate_jpeg_quality(img))
    readable["quality"] = pd.to_numeric(pd.Series(qualities, index=readable.index, dtype=object))
    readable["aspect"] = readable["width"] / readable["height"].where(readable["height"] > 0)
    readable["size"] = readable["width"].astype(str) + "x" + readable["height"].astype(str)
    out: dict[str, dict[str, Any]] = {}
    for (collection, label), rows in readable.groupby(["collection", "folder_label"]):
        q = rows["quality"].dropna()
        out.setdefault(collection, {})[label] = {
            "pictures": len(rows),
            "sizes": {k: int(v) for k, v in rows["size"].value_counts().head(3).items()},
            "aspect_median": round(float(rows["aspect"].median()), 3),
            "jpeg_quality_median": None if q.empty else int(q.median()),
            "jpeg_quality_range": None if q.empty else [int(q.min()), int(q.max())],
        }
    return out


def mask_problems(table: pd.DataFrame) -> dict[str, Any]:
    """HAM10000 pictures without a lesion mask, and masks whose size differs from
    their picture's (a mask must lie on its picture pixel for pixel)."""
    ham = table[(table["source"] == SOURCE_HAM10000) & table["error"].isna()]
    if "mask_path" not in ham:
        return {"with_mask": 0, "missing": [], "size_mismatch": []}
    missing = [Path(p).name for p, m in zip(ham["path"], ham["mask_path"], strict=True) if not isinstance(m, str)]
    mismatched = []
    for row in ham[ham["mask_path"].notna()].itertuples():
        try:
            with Image.open(row.mask_path) as mask:
                size = mask.size
        except OSError as exc:
            mismatched.append({"picture": Path(row.path).name, "problem": f"unreadable mask: {exc}"})
            continue
        if size != (row.width, row.height):
            mismatched.append(
                {
                    "picture": Path(row.path).name,
                    "problem": f"mask {size[0]}x{size[1]}, picture {row.width}x{row.height}",
                }
            )
    return {"with_mask": int(ham["mask_path"].notna().sum()), "missing": missing, "size_mismatch": mismatched}


def collections_findings(table: pd.DataFrame, missing_files: list[str]) -> dict[str, Any]:
    """Every cross-collection finding, JSON-ready (the audit's ``collections`` key)."""
    present = sorted(collection_column(table).unique())
    return {
        "collections": present,
        "counts": counts_by_collection(table),
        "splits": split_by_collection(table),
        "overlaps": overlaps(table),
        "lesions_across_collections": lesions_across_collections(table),
        "label_disagreements": label_disagreements(table),
        "capture": capture_by_collection(table),
        "listed_but_missing": list(missing_files),
        "masks": mask_problems(table),
        "ham10000_label_mapping": ham_mapping_outcome(table),
    }


def ham_mapping_outcome(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per HAM10000 ``dx`` code, the final classes its pictures (and the seed's copies
    of them) ended with: what the label mapping and the official answers decided."""
    if "ham_dx" not in table:
        return {}
    rows = table[table["ham_dx"].notna() & table["final_label"].notna()]
    return {
        str(dx): {k: int(v) for k, v in members["final_label"].value_counts().items()}
        for dx, members in rows.groupby("ham_dx")
    }
