"""The data manifest: one row per image file, from every source, with its labels,
hashes, duplicate/lesion group, and split. Every later step reads this table.

Building it decodes every file once (through :func:`skin_model.images.load_image`),
so unreadable files are found here and never reach training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import DisjointSet
from tqdm.auto import tqdm

from . import sources
from .classes import labels_agree
from .hashing import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    NEAR_DUPLICATE_MIN_CORRELATION,
    SAME_PICTURE_MIN_CORRELATION,
    SIGNATURE_SIDE,
    content_hash,
    near_duplicate_pairs,
    perceptual_hash,
    thumbnail_signature,
)
from .images import ImageLoadError, load_image
from .splits import VAL_FRACTION, assign_splits

MANIFEST_COLUMNS = [
    "path",
    "source",
    "isic_id",
    "folder_label",
    "official_label",
    "official_source",
    "final_label",
    "sha256",
    "phash",
    "width",
    "height",
    "error",
    "picture_id",
    "group_id",
    "split",
    "excluded_reason",
    "lesion_id",
    "malignant_isbi2016",
    "label_isic2019",
    "label_isic2017",
    "label_ham10000",
    *sources.HAM_EXTRA_COLUMNS,
]
# When one picture exists several times, the copy kept is the first source here: the
# seed's copy keeps the old splits' pictures where they were; HAM's own copy of a seed
# picture is then the duplicate.
SOURCE_PREFERENCE = (
    sources.SOURCE_SEED_TRAIN,
    sources.SOURCE_SEED_TEST,
    sources.SOURCE_ISIC2017,
    sources.SOURCE_HAM10000,
)
OFFICIAL_PRIORITY = ("label_isic2019", "label_isic2017", "label_ham10000")


def kept_rows(table: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """The rows of a manifest table used for training/evaluation (optionally of one
    split), in table order: the order a model's stored evaluation scores follow."""
    rows = table[table["split"].isin(["train", "val", "test"])]
    return rows if split is None else rows[rows["split"] == split]


def table_fingerprint(table: pd.DataFrame) -> str:
    """:meth:`Manifest.fingerprint` of a manifest table, e.g. the audit's shipped CSV."""
    rows = kept_rows(table).sort_values("sha256")[["sha256", "final_label", "split"]]
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()


@dataclass
class Manifest:
    """The per-image table plus the near-duplicate pairs it was grouped with."""

    table: pd.DataFrame
    near_pairs: pd.DataFrame  # columns: a, b (row positions), distance, correlation
    data_dir: Path
    # image ids a collection's label file lists with no picture on disk (reported, not fatal)
    missing_files: list[str] = field(default_factory=list)

    def kept(self, split: str | None = None) -> pd.DataFrame:
        """Rows used for training/evaluation, optionally of one split."""
        return kept_rows(self.table, split)

    def fingerprint(self) -> str:
        """SHA-256 over (content hash, final label, split) of the kept rows: two
        manifests with the same fingerprint train and test on the same data."""
        return table_fingerprint(self.table)

    def save_csv(self, path: Path) -> None:
        """Write the table with paths relative to the data root (machine-independent)."""
        out = self.table.copy()
        out["path"] = [Path(p).relative_to(self.data_dir).as_posix() for p in out["path"]]
        if "mask_path" in out:  # HAM10000's lesion masks, where the collection has them
            out["mask_path"] = [
                p if not isinstance(p, str) else Path(p).relative_to(self.data_dir).as_posix() for p in out["mask_path"]
            ]
        path.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(path, index=False)


def scan_sources(data_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """All image rows from the seed folders, the ISIC 2017 set and the HAM10000
    collection under ``data_dir``; plus the listed pictures missing on disk."""
    frames = [sources.load_seed_folders(data_dir)]
    isic2017 = sources.find_isic2017(data_dir)
    if isic2017:
        frames.append(sources.load_csv_labelled(*isic2017, sources.SOURCE_ISIC2017))
    missing: list[str] = []
    ham = sources.find_ham10000(data_dir)
    if ham:
        ham_rows, ham_missing = sources.load_ham10000(*ham)
        frames.append(ham_rows)
        missing += [f"{sources.SOURCE_HAM10000}: {image_id}" for image_id in ham_missing]
    table = pd.concat([f.astype(object) for f in frames], ignore_index=True)
    return table.reindex(columns=list(dict.fromkeys([*frames[0].columns, *table.columns]))), missing


def describe_files(paths: list[str], progress: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """Decode every file: content hash, perceptual hash, size, or the load error;
    plus the thumbnail signatures (zeros for unreadable files)."""
    rows = []
    signatures = np.zeros((len(paths), SIGNATURE_SIDE * SIGNATURE_SIDE), dtype=np.float32)
    for pos, path in enumerate(tqdm(paths, desc="decoding images", unit="img", disable=not progress)):
        data = Path(path).read_bytes()
        row = {"sha256": content_hash(data), "phash": None, "width": 0, "height": 0, "error": None}
        try:
            loaded = load_image(data)
            row.update(
                phash=perceptual_hash(loaded.image),
                width=loaded.original_size[0],
                height=loaded.original_size[1],
            )
            signatures[pos] = thumbnail_signature(loaded.image)
        except ImageLoadError as exc:
            row["error"] = str(exc)
        rows.append(row)
    return pd.DataFrame(rows, index=range(len(paths))), signatures


def official_answer(row: pd.Series) -> tuple[str | None, str | None]:
    """The most specific official class label for one image and where it came from.

    ISIC 2019 and HAM10000 file seborrheic keratosis under BKL; when ISIC 2017 says
    seborrheic keratosis for the same id, that finer answer wins.
    """
    answers = [(col, row.get(col)) for col in OFFICIAL_PRIORITY if isinstance(row.get(col), str)]
    if not answers:
        return None, None
    labels = {label for _, label in answers}
    if "seborrheic keratosis" in labels and labels <= {"seborrheic keratosis", "pigmented benign keratosis"}:
        return "seborrheic keratosis", "label_isic2017"
    col, label = answers[0]
    return label, col.removeprefix("label_")


def attach_official_labels(table: pd.DataFrame, official: pd.DataFrame) -> pd.DataFrame:
    """Join the official answers by ISIC id and derive each row's own label. A field a
    collection carries itself (HAM's lesion id, say) wins over the official file's."""
    joined = table.join(official, on="isic_id", suffixes=("", "_official"))
    for column in [c for c in official.columns if f"{c}_official" in joined.columns]:
        joined[column] = joined[column].where(joined[column].notna(), joined.pop(f"{column}_official"))
    answers = joined.apply(official_answer, axis=1, result_type="expand")
    joined["official_label"] = answers[0] if len(answers) else None
    joined["official_source"] = answers[1] if len(answers) else None
    # A compatible folder label is finer than the official one (SK under BKL): keep it.
    own = [
        folder if not isinstance(off, str) or labels_agree(folder, off) else off
        for folder, off in zip(joined["folder_label"], joined["official_label"], strict=True)
    ]
    joined["row_label"] = own
    return joined


def trusted_near_pairs(
    table: pd.DataFrame, near: list[tuple[int, int, int, float]]
) -> list[tuple[int, int, int, float]]:
    """The near-duplicate pairs that may link two pictures: all of them between pictures
    without a HAM10000 lesion id (the rule measured on the ISIC archive's pictures), and
    only those of :data:`SAME_PICTURE_MIN_CORRELATION` where a lesion id exists, since
    HAM's curated lesion ids already group its re-photographed lesions."""
    has_lesion = table["lesion_id"].notna().to_numpy() if "lesion_id" in table else np.zeros(len(table), bool)
    return [p for p in near if p[3] >= SAME_PICTURE_MIN_CORRELATION or not (has_lesion[p[0]] or has_lesion[p[1]])]


def group_rows(table: pd.DataFrame, near: list[tuple[int, int, int, float]]) -> tuple[list[int], list[int]]:
    """Two groupings over row positions: pictures (byte-identical, same ISIC id, or
    near-duplicate) and lesion groups (pictures joined by HAM10000 lesion_id)."""
    n = len(table)
    pictures = DisjointSet(range(n))

    def link_equal(values: pd.Series, ds: DisjointSet) -> None:
        first: dict[object, int] = {}
        for pos, value in enumerate(values):
            if isinstance(value, str) and value:
                ds.merge(first.setdefault(value, pos), pos)

    readable = table["error"].isna()
    link_equal(table["sha256"].where(readable), pictures)
    link_equal(table["isic_id"], pictures)
    for a, b, *_ in near:
        pictures.merge(a, b)
    lesions = DisjointSet(range(n))
    for subset in pictures.subsets():
        members = sorted(subset)
        for m in members[1:]:
            lesions.merge(members[0], m)
    link_equal(table["lesion_id"], lesions)

    def numbered(ds: DisjointSet) -> list[int]:
        roots = [min(ds.subset(i)) for i in range(n)]
        order = {root: k for k, root in enumerate(sorted(set(roots)))}
        return [order[r] for r in roots]

    return numbered(pictures), numbered(lesions)


def resolve_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Final label per lesion group; groups whose labels conflict with no single
    official answer are excluded from training and evaluation."""
    final = pd.Series(table["row_label"].values, index=table.index, dtype=object)
    reason = pd.Series(None, index=table.index, dtype=object)
    readable = table["error"].isna()
    for _, members in table[readable].groupby("group_id"):
        labels = set(members["row_label"])
        if len(labels) == 1:
            continue
        official = set(members["official_label"].dropna())
        if len(official) == 1:
            final[members.index] = official.pop()
        else:
            reason[members.index] = "label conflict: " + " vs ".join(sorted(labels))
    return table.assign(final_label=final, conflict_reason=reason)


def exclude_copies(table: pd.DataFrame) -> pd.Series:
    """Reason to drop each row that is an extra copy of an already kept picture."""
    rank = table["source"].map({s: k for k, s in enumerate(SOURCE_PREFERENCE)})
    order = table.assign(_rank=rank).sort_values(["picture_id", "_rank", "path"])
    reason = pd.Series(None, index=table.index, dtype=object)
    for _, members in order[order["error"].isna()].groupby("picture_id", sort=False):
        keep = members.iloc[0]
        for idx, row in members.iloc[1:].iterrows():
            same_bytes = row["sha256"] == keep["sha256"]
            kind = "byte-identical copy" if same_bytes else "same picture (resized/re-encoded)"
            reason[idx] = f"{kind} of {Path(keep['path']).name} ({keep['source']})"
    return reason


def build_manifest(
    data_dir: Path,
    seed: int = 1337,
    val_fraction: float = VAL_FRACTION,
    near_max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE,
    near_min_correlation: float = NEAR_DUPLICATE_MIN_CORRELATION,
    progress: bool = True,
) -> Manifest:
    """Scan, decode, label, group, clean and split everything under ``data_dir``."""
    table, missing = scan_sources(data_dir)
    described, signatures = describe_files(table["path"].tolist(), progress)
    table = pd.concat([table, described], axis=1)
    official = sources.load_official_labels(sources.find_official_label_files(data_dir))
    table = attach_official_labels(table, official)

    readable_pos = np.flatnonzero(table["error"].isna().to_numpy())
    candidates = near_duplicate_pairs(
        table["phash"].iloc[readable_pos].tolist(),
        signatures[readable_pos],
        near_max_distance,
        near_min_correlation,
    )
    near = [(int(readable_pos[a]), int(readable_pos[b]), d, c) for a, b, d, c in candidates]
    near = trusted_near_pairs(table, near)
    pictures, lesions = group_rows(table, near)
    table["picture_id"] = [f"P{p:05d}" for p in pictures]
    table["group_id"] = [f"G{g:05d}" for g in lesions]
    table = resolve_labels(table)

    copies = exclude_copies(table)
    reason = table["error"].map(lambda e: f"unreadable: {e}" if isinstance(e, str) else None)
    reason = reason.fillna(table["conflict_reason"]).fillna(copies)
    table["excluded_reason"] = reason
    table[["split", "excluded_reason"]] = assign_splits(table, seed=seed, val_fraction=val_fraction)
    near_df = pd.DataFrame(near, columns=["a", "b", "distance", "correlation"])
    return Manifest(table.reindex(columns=MANIFEST_COLUMNS), near_df, data_dir, missing)
