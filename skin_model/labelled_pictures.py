"""Labelled pictures a user brings to measure the model on: class folders, a zip of them, or a
folder with a labels CSV (the ISIC and HAM10000 ground-truth layouts included), and which of
them the model already saw in training (same file or a near-identical copy)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import CLASS_NAMES, HAM10000_CODES, ISIC2019_CODES
from .hashing import hashes_as_uint64
from .sources import IMAGE_SUFFIXES, isic_id_of

# A perceptual hash this close to a training picture's marks a copy: on the audit's
# 4,080 pictures, 31 of some 8 million pairs from different duplicate groups came this
# close, so the rule leaves out a handful of look-alikes rather than keep a copy.
COPY_MAX_BITS = 4


READ_SUFFIXES = IMAGE_SUFFIXES | {".heic", ".heif", ".avif"}


def _normalised(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


FOLDER_NAMES: dict[str, str] = {
    **{_normalised(name): name for name in CLASS_NAMES},
    **{_normalised(code): name for code, name in ISIC2019_CODES.items()},
    **{_normalised(code): name for code, name in HAM10000_CODES.items()},
    "sk": "seborrheic keratosis",
    "nevi": "nevus",
    "naevus": "nevus",
    "melanocytic nevus": "nevus",
    "vascular lesions": "vascular lesion",
}


def class_of_folder(name: str) -> str | None:
    """The class a folder name stands for (case, spaces, ``_`` and ``-`` ignored), or None."""
    return FOLDER_NAMES.get(_normalised(name))


def _unknown_folders_error(unknown: list[str]) -> ValueError:
    return ValueError(
        f"folders that name no class: {', '.join(unknown)}; name each folder after one of "
        f"{', '.join(CLASS_NAMES)} (or its ISIC code, e.g. MEL, NV, BKL)"
    )


def _pictures_under(folder: Path, root: Path) -> list[tuple[Path, str]]:
    """(file, name relative to ``root``) of every picture at any depth in ``folder``,
    in name order, hidden files and folders skipped. A broken link is kept, to be counted
    as unreadable rather than silently missing from the totals."""
    found = []
    listed = (p for p in folder.rglob("*") if p.suffix.lower() in READ_SUFFIXES)
    for file in sorted(p for p in listed if p.is_file() or (p.is_symlink() and not p.exists())):
        name = file.relative_to(root).as_posix()
        if not any(part.startswith(".") for part in name.split("/")):
            found.append((file, name))
    return found


def read_labelled_folder(root: str | Path) -> pd.DataFrame:
    """``source`` (the file's path), ``name``, ``label`` for every picture in
    ``root/<class folder>/`` (any depth below it). Raises ValueError naming the folders
    that are no class (a typo must not drop a diagnosis silently) or when no picture
    is found."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if class_of_folder(p.name) is None]
    if unknown:
        raise _unknown_folders_error(unknown)
    rows = []
    for folder in folders:
        label = class_of_folder(folder.name)
        rows += [{"source": file, "name": name, "label": label} for file, name in _pictures_under(folder, root)]
    if not rows:
        raise ValueError(f"no pictures found in class folders under {root}")
    return pd.DataFrame(rows, columns=["source", "name", "label"])


def read_labelled_zip(members: list[tuple[str, bytes]]) -> pd.DataFrame:
    """The same table for the files of a zip archive (:func:`skin_model.images.zip_members`),
    ``source`` holding each file's bytes: a file's class is the first folder on its
    path that names one, so ``MEL/a.jpg`` and ``my clinic/MEL/a.jpg`` both read as
    melanoma. Every file must lie in a class folder (else ValueError naming the folders)."""
    rows, unknown = [], set()
    for name, data in members:
        *folders, _ = name.split("/")
        label = next((class_of_folder(f) for f in folders if class_of_folder(f)), None)
        if label is None:
            unknown.add("/".join(folders) or "(top level)")
        else:
            rows.append({"source": data, "name": name, "label": label})
    if unknown:
        raise _unknown_folders_error(sorted(unknown))
    if not rows:
        raise ValueError("no pictures found in class folders in the archive")
    # in name order, as a folder is read: the bootstrap resamples by position
    return pd.DataFrame(rows, columns=["source", "name", "label"]).sort_values("name", ignore_index=True)


ID_COLUMNS = ("image_id", "image", "isic_id", "file", "filename", "name")


LABEL_COLUMNS = ("label", "diagnosis", "dx", "class")


def _csv_labels(csv_path: Path) -> pd.DataFrame:
    """``key, label`` from an ISIC ground-truth CSV (2017 Part 3, 2019 one-hot) or any
    CSV with an image column (image_id, image, file, ...) and a diagnosis column
    (label, diagnosis, dx, class; names or codes as for folders, e.g. HAM10000's)."""
    from .sources import DataNotFoundError, read_ground_truth_csv

    try:
        truth = read_ground_truth_csv(csv_path)
        return pd.DataFrame({"key": truth["isic_id"], "label": truth["label"]})
    except DataNotFoundError:
        pass
    table = pd.read_csv(csv_path, dtype=str)
    lowered = {c.lower(): c for c in table.columns}
    id_column = next((lowered[c] for c in ID_COLUMNS if c in lowered), None)
    label_column = next((lowered[c] for c in LABEL_COLUMNS if c in lowered), None)
    if id_column is None or label_column is None:
        raise ValueError(
            f"{csv_path.name}: needs an image column ({', '.join(ID_COLUMNS)}) and a diagnosis column "
            f"({', '.join(LABEL_COLUMNS)}), or the ISIC 2017/2019 ground-truth layout"
        )
    table = table.dropna(subset=[id_column, label_column])
    labels = table[label_column].map(class_of_folder)
    unknown = sorted(set(table[label_column][labels.isna()]))
    if unknown:
        raise ValueError(f"{csv_path.name}: diagnoses that name no class: {', '.join(unknown)}")
    return pd.DataFrame({"key": table[id_column].str.strip(), "label": labels})


def read_labelled_csv(root: str | Path, csv_path: str | Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """The :func:`read_labelled_folder` table for pictures anywhere under ``root``
    labelled by a CSV (matched by file name, name without extension, or ISIC id), and
    counts of what did not match: pictures without a label and labels without a
    picture, and rows whose label names no class here (ISIC 2019's UNK)."""
    root, csv_path = Path(root), Path(csv_path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    labels = _csv_labels(csv_path)
    no_class = int(labels["label"].isna().sum())
    by_key = {k: v for k, v in zip(labels["key"], labels["label"], strict=True) if not pd.isna(v)}
    listed = set(labels["key"])
    rows, used, unlabelled = [], set(), 0
    for file, name in _pictures_under(root, root):
        key = next((k for k in (file.name, file.stem, isic_id_of(file.name)) if k in by_key), None)
        if key is None:  # no label, or one that names no class here (counted apart)
            unlabelled += not any(k in listed for k in (file.name, file.stem, isic_id_of(file.name)))
            continue
        used.add(key)
        rows.append({"source": file, "name": name, "label": by_key[key]})
    if not rows:
        raise ValueError(f"no picture under {root} has a diagnosis in {csv_path.name}")
    counts = {
        "pictures_without_label": unlabelled,
        "labels_without_picture": len(set(by_key) - used),
        "labels_naming_no_class": no_class,
    }
    return pd.DataFrame(rows, columns=["source", "name", "label"]), counts


def bit_distances(phash: str, hashes: np.ndarray) -> np.ndarray:
    """Bits by which one perceptual hash differs from each of ``hashes`` (as uint64)."""
    return np.bitwise_count(hashes ^ hashes_as_uint64([phash])[0])


def seen_in_training(files: pd.DataFrame, audit_table: pd.DataFrame) -> pd.Series:
    """Why each picture counts as one the model trained on ('' when it does not):
    ``files`` has ``name``, ``sha256`` and ``phash`` (None if unreadable);
    ``audit_table`` is the audit's manifest of the model's data (its ``train`` rows)."""
    train = audit_table[audit_table["split"] == "train"]
    shas = set(train["sha256"])
    ids = set(train["isic_id"].dropna())
    hashes = hashes_as_uint64(train["phash"].dropna())
    reasons = []
    for name, sha, phash in zip(files["name"], files["sha256"], files["phash"], strict=True):
        isic_id = isic_id_of(Path(name).name)
        if sha in shas:
            reasons.append("identical to a training picture")
        elif isic_id is not None and isic_id in ids:
            reasons.append(f"{isic_id} is a training picture")
        elif isinstance(phash, str) and len(hashes) and bit_distances(phash, hashes).min() <= COPY_MAX_BITS:
            reasons.append("a near-identical copy of a training picture")
        else:
            reasons.append("")
    return pd.Series(reasons, index=files.index, dtype=object)
