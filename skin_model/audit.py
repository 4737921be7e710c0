"""The data audit: what is wrong with the data set, and what cleaning did about it.

:func:`audit_findings` turns a :class:`~skin_model.manifest.Manifest` into plain
JSON-ready findings; :func:`format_report` prints them as tables; :func:`write_audit`
saves the JSON and CSV files the app's Dataset page reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from .classes import CLASS_NAMES, is_malignant, labels_agree
from .collections_audit import collections_findings
from .hashing import NEAR_DUPLICATE_MAX_DISTANCE, NEAR_DUPLICATE_MIN_CORRELATION
from .manifest import Manifest
from .sources import SOURCE_ISIC2017, SOURCE_SEED_TEST, SOURCE_SEED_TRAIN

AUDIT_JSON = "audit.json"
MANIFEST_CSV = "manifest.csv"


def exclusion_kind(reason: str) -> str:
    """The category of an exclusion reason ("byte-identical copy of X" -> "byte-identical copy")."""
    return re.split(r" of |:| \(", reason, maxsplit=1)[0].strip()


def _rel(manifest: Manifest, path: str) -> str:
    return Path(path).relative_to(manifest.data_dir).as_posix()


def _file_entry(manifest: Manifest, row: pd.Series) -> dict[str, Any]:
    return {
        "path": _rel(manifest, row["path"]),
        "source": row["source"],
        "folder_label": row["folder_label"],
        "isic_id": row["isic_id"],
    }


def class_counts(table: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """Per-source folder-label counts before cleaning; per-split final-label counts after."""

    def nested(frame: pd.DataFrame, outer: str, inner: str) -> dict[str, dict[str, int]]:
        counts = frame.groupby([outer, inner]).size()
        return {str(o): {c: int(counts.get((o, c), 0)) for c in CLASS_NAMES} for o in sorted(frame[outer].unique())}

    kept = table[table["split"] != "excluded"]
    return {"before": nested(table, "source", "folder_label"), "after": nested(kept, "split", "final_label")}


def cross_class_duplicates(manifest: Manifest) -> list[dict[str, Any]]:
    """Groups of byte-identical files filed under more than one class."""
    t = manifest.table[manifest.table["error"].isna()]
    out = []
    for sha, members in t.groupby("sha256"):
        labels = sorted(set(members["folder_label"]))
        if len(members) > 1 and len(labels) > 1:
            final = sorted(set(members["final_label"]))
            dropped = members["excluded_reason"].fillna("").str.startswith("label conflict").all()
            out.append(
                {
                    "sha256": sha,
                    "folder_labels": labels,
                    "official_label": next(iter(members["official_label"].dropna()), None),
                    "resolution": "dropped: conflicting labels, no official answer"
                    if dropped
                    else f"kept as {final[0]}",
                    "files": [_file_entry(manifest, r) for _, r in members.iterrows()],
                }
            )
    return out


def exact_duplicate_groups(table: pd.DataFrame) -> dict[str, int]:
    """How many byte-identical groups sit within one class versus across classes."""
    readable = table[table["error"].isna()]
    groups = readable.groupby("sha256")["folder_label"].agg(["size", "nunique"])
    groups = groups[groups["size"] > 1]
    return {
        "groups": len(groups),
        "files": int(groups["size"].sum()),
        "within_one_class": int((groups["nunique"] == 1).sum()),
        "across_classes": int((groups["nunique"] > 1).sum()),
    }


def near_duplicate_groups(manifest: Manifest) -> list[dict[str, Any]]:
    """Pictures that are the same image at another size/encoding (not byte-identical)."""
    t = manifest.table
    pairs = manifest.near_pairs
    out = []
    for picture, members in t[t["error"].isna()].groupby("picture_id"):
        if members["sha256"].nunique() < 2:
            continue
        positions = {t.index.get_loc(i) for i in members.index}
        inside = pairs[pairs["a"].isin(positions) & pairs["b"].isin(positions)]
        sources = set(members["source"])
        out.append(
            {
                "picture_id": picture,
                "folder_labels": sorted(set(members["folder_label"])),
                "sources": sorted(sources),
                "kind": "across classes" if members["folder_label"].nunique() > 1 else "within class",
                "crosses_train_test": {SOURCE_SEED_TRAIN, SOURCE_SEED_TEST} <= sources,
                "max_hash_distance": int(inside["distance"].max()) if len(inside) else 0,
                "min_thumbnail_correlation": float(inside["correlation"].min()) if len(inside) else 1.0,
                "linked_by_isic_id_only": bool(len(inside) == 0),
                "files": [
                    _file_entry(manifest, r) | {"size": f"{r['width']}x{r['height']}"} for _, r in members.iterrows()
                ],
            }
        )
    return out


def train_test_leaks(manifest: Manifest) -> list[dict[str, Any]]:
    """Seed Test images whose picture or lesion also appears in seed Train."""
    t = manifest.table
    train = t[t["source"] == SOURCE_SEED_TRAIN]
    out = []
    for _, row in t[t["source"] == SOURCE_SEED_TEST].iterrows():
        same_group = train[train["group_id"] == row["group_id"]]
        if same_group.empty:
            continue
        if (same_group["sha256"] == row["sha256"]).any():
            kind, matches = "byte-identical", same_group[same_group["sha256"] == row["sha256"]]
        elif (same_group["picture_id"] == row["picture_id"]).any():
            kind, matches = "same picture", same_group[same_group["picture_id"] == row["picture_id"]]
        else:
            kind, matches = "same lesion", same_group
        out.append(
            {
                **_file_entry(manifest, row),
                "kind": kind,
                "train_files": [_file_entry(manifest, r) for _, r in matches.iterrows()],
                "now": row["split"] if row["split"] != "excluded" else "removed from test",
            }
        )
    return out


def official_disagreements(manifest: Manifest) -> list[dict[str, Any]]:
    """Images whose folder label contradicts an official ground truth, including
    ISBI 2016's benign/malignant answer."""
    t = manifest.table
    out = []
    for _, row in t.iterrows():
        official = row["official_label"]
        if isinstance(official, str) and not labels_agree(row["folder_label"], official):
            out.append(
                _file_entry(manifest, row)
                | {
                    "official_label": official,
                    "official_source": row["official_source"],
                    "final_label": row["final_label"],
                    "kind": "class",
                }
            )
        isbi = row["malignant_isbi2016"]
        if isinstance(isbi, bool) and is_malignant(row["folder_label"]) != isbi:
            out.append(
                _file_entry(manifest, row)
                | {
                    "official_label": "malignant" if isbi else "benign",
                    "official_source": "isbi2016",
                    "final_label": row["final_label"],
                    "kind": "benign/malignant",
                }
            )
    return out


def official_agreement(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per folder class: how many images have an official label and how many agree."""
    seed = table[table["source"].isin([SOURCE_SEED_TRAIN, SOURCE_SEED_TEST])]
    out = {}
    for name in CLASS_NAMES:
        rows = seed[(seed["folder_label"] == name) & seed["official_label"].notna()]
        agree = sum(labels_agree(f, o) for f, o in zip(rows["folder_label"], rows["official_label"], strict=True))
        n_class = int((seed["folder_label"] == name).sum())
        out[name] = {
            "images": n_class,
            "with_official_label": len(rows),
            "agree": int(agree),
            "agreement": round(agree / len(rows), 4) if len(rows) else None,
        }
    return out


def source_overlap(table: pd.DataFrame) -> dict[str, int]:
    """How much the ISIC 2017 set repeats the seed set."""
    seed = table[table["source"].isin([SOURCE_SEED_TRAIN, SOURCE_SEED_TEST])]
    other = table[table["source"] == SOURCE_ISIC2017]
    same_id = other["isic_id"].isin(set(seed["isic_id"].dropna()))
    same_picture = other["picture_id"].isin(set(seed["picture_id"]))
    same_bytes = other["sha256"].isin(set(seed["sha256"]))
    return {
        "isic2017_images": len(other),
        "isic2017_same_isic_id_as_seed": int(same_id.sum()),
        "isic2017_same_picture_as_seed": int(same_picture.sum()),
        "isic2017_same_picture_other_id": int((same_picture & ~same_id).sum()),
        "isic2017_byte_identical_to_seed": int(same_bytes.sum()),
        "isic2017_used_after_dedup": int((other["split"] != "excluded").sum()),
    }


def compression_by_collection(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per image collection, how many readable files were saved at each JPEG quality
    ("other format" for the rest). Collections saved differently let a model tell them
    apart by compression alone, a shortcut when they hold different classes."""
    from PIL import Image

    from .images import estimate_jpeg_quality
    from .sources import collections_of

    readable = table[table["error"].isna()]
    counts: dict[str, dict[str, int]] = {}
    for collection, path in zip(collections_of(readable), readable["path"], strict=True):
        with Image.open(path) as img:  # the header is enough: nothing is decoded
            quality = estimate_jpeg_quality(img)
        key = "other format" if quality is None else f"JPEG quality {quality}"
        counts.setdefault(collection, {}).setdefault(key, 0)
        counts[collection][key] += 1
    return {c: dict(sorted(q.items(), key=lambda kv: -kv[1])) for c, q in sorted(counts.items())}


def audit_findings(manifest: Manifest) -> dict[str, Any]:
    """Every finding of the audit as JSON-ready data."""
    t = manifest.table
    excluded = t[t["split"] == "excluded"]
    reasons = excluded["excluded_reason"].fillna("").map(exclusion_kind)
    conflicts = t[t["excluded_reason"].fillna("").str.startswith("label conflict")]
    return {
        "settings": {
            "near_duplicate_max_hash_distance": NEAR_DUPLICATE_MAX_DISTANCE,
            "near_duplicate_min_thumbnail_correlation": NEAR_DUPLICATE_MIN_CORRELATION,
            "perceptual_hash": "imagehash.phash, 64 bits",
            "data_fingerprint": manifest.fingerprint(),
        },
        "totals": {
            "files": len(t),
            "readable": int(t["error"].isna().sum()),
            "kept": int((t["split"] != "excluded").sum()),
            "excluded_by_reason": {k: int(v) for k, v in reasons.value_counts().items()},
        },
        "class_counts": class_counts(t),
        "unreadable": [_file_entry(manifest, r) | {"error": r["error"]} for _, r in t[t["error"].notna()].iterrows()],
        "exact_duplicates": exact_duplicate_groups(t),
        "cross_class_duplicate_groups": cross_class_duplicates(manifest),
        "near_duplicate_groups": near_duplicate_groups(manifest),
        "train_test_leaks": train_test_leaks(manifest),
        "official_label_disagreements": official_disagreements(manifest),
        "official_agreement": official_agreement(t),
        "source_overlap": source_overlap(t),
        "compression_by_collection": compression_by_collection(t),
        "collections": collections_findings(t, manifest.missing_files),
        "dropped_label_conflicts": [
            {"group_id": g, "labels": sorted(set(m["folder_label"])), "files": [_rel(manifest, p) for p in m["path"]]}
            for g, m in conflicts.groupby("group_id")
        ],
    }


def format_report(findings: dict[str, Any]) -> str:
    """The findings as readable terminal tables."""
    counts = findings["class_counts"]
    before = pd.DataFrame(counts["before"]).reindex(list(CLASS_NAMES)).fillna(0).astype(int)
    after = pd.DataFrame(counts["after"]).reindex(list(CLASS_NAMES)).fillna(0).astype(int)
    after = after.reindex(columns=[c for c in ("train", "val", "test") if c in after.columns])
    agreement = pd.DataFrame(findings["official_agreement"]).T
    leaks = pd.Series([leak["kind"] for leak in findings["train_test_leaks"]], dtype=object).value_counts()
    near = findings["near_duplicate_groups"]
    dis = pd.Series([d["kind"] for d in findings["official_label_disagreements"]], dtype=object).value_counts()
    lines = [
        "== Class counts before cleaning (folder/CSV label, per source) ==",
        before.assign(total=before.sum(axis=1)).to_string(),
        "",
        "== Class counts after cleaning (final label, per split) ==",
        after.assign(total=after.sum(axis=1)).to_string(),
        "",
        "== Findings ==",
        f"files: {findings['totals']['files']}, readable: {findings['totals']['readable']}, "
        f"unreadable: {len(findings['unreadable'])}, kept: {findings['totals']['kept']}",
        f"byte-identical groups: {findings['exact_duplicates']['groups']} "
        f"({findings['exact_duplicates']['within_one_class']} within one class, "
        f"{findings['exact_duplicates']['across_classes']} across classes)",
        f"cross-class duplicate groups: {len(findings['cross_class_duplicate_groups'])}",
        f"near-duplicate groups (same picture, other bytes): {len(near)} "
        f"({sum(g['kind'] == 'across classes' for g in near)} across classes, "
        f"{sum(g['crosses_train_test'] for g in near)} across Train/Test)",
        f"train/test leaks: {len(findings['train_test_leaks'])} Test images "
        + ", ".join(f"{k}: {v}" for k, v in leaks.items()),
        "official label disagreements: " + (", ".join(f"{k}: {v}" for k, v in dis.items()) or "none"),
        f"label-conflict groups dropped: {len(findings['dropped_label_conflicts'])}",
        "excluded: " + ", ".join(f"{k}: {v}" for k, v in findings["totals"]["excluded_by_reason"].items()),
        "",
        "== Agreement of seed folder labels with official ground truth ==",
        agreement.to_string(),
        "",
        "== Source overlap ==",
        "\n".join(f"{k}: {v}" for k, v in findings["source_overlap"].items()),
        "",
        "== Compression per collection (a model can tell the collections apart by it) ==",
        "\n".join(
            f"{collection}: " + ", ".join(f"{k}: {v}" for k, v in qualities.items())
            for collection, qualities in findings.get("compression_by_collection", {}).items()
        ),
        "",
        *format_collections(findings.get("collections")),
    ]
    return "\n".join(lines)


def format_collections(found: dict[str, Any] | None) -> list[str]:
    """The cross-collection findings as terminal lines."""
    if not found:
        return []
    after = pd.DataFrame({c: v["after"] for c, v in found["counts"].items()}).reindex(list(CLASS_NAMES))
    test = pd.DataFrame(found["splits"]["test"]).reindex(list(CLASS_NAMES)).fillna(0).astype(int)
    lesions = found["lesions_across_collections"]
    masks = found["masks"]
    return [
        "== Pictures per class and collection after cleaning ==",
        after.assign(total=after.sum(axis=1)).to_string(),
        "",
        "== Test split: pictures per class from each collection ==",
        test.assign(total=test.sum(axis=1)).to_string(),
        "",
        "== Overlaps between collections ==",
        *(f"{pair}: " + ", ".join(f"{k}: {v}" for k, v in o.items()) for pair, o in found["overlaps"].items()),
        "lesions across collections: " + ", ".join(f"{k}: {v}" for k, v in lesions.items()),
        "label disagreements between collections (pictures): "
        + (", ".join(f"{k}: {v}" for k, v in list(found["label_disagreements"].items())[:8]) or "none"),
        f"listed but missing on disk: {len(found['listed_but_missing'])}; lesion masks: {masks['with_mask']}, "
        f"missing {len(masks['missing'])}, size mismatches {len(masks['size_mismatch'])}",
    ]


def write_audit(manifest: Manifest, findings: dict[str, Any], out_dir: Path) -> list[Path]:
    """Save ``audit.json``, ``manifest.csv`` and one CSV per finding list."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / AUDIT_JSON, out_dir / MANIFEST_CSV]
    paths[0].write_text(json.dumps(findings, indent=1, default=str))
    manifest.save_csv(paths[1])
    for key in ("train_test_leaks", "official_label_disagreements", "unreadable"):
        path = out_dir / f"{key}.csv"
        frame = pd.DataFrame(findings[key])
        frame.drop(columns=[c for c in ("train_files",) if c in frame], errors="ignore").to_csv(path, index=False)
        paths.append(path)
    return paths
