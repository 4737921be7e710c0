"""Finding and reading the data sources: the seed folder layout, ISIC CSV-labelled
image folders, and the official ground-truth files.

Each loader returns a plain DataFrame with one row per image (or per ISIC id for
label files) so the manifest can join them without caring where they came from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import CLASS_NAMES, HAM10000_CODES, ISIC2019_CODES

DATA_ENV_VAR = "SKIN_DATA_DIR"
SEED_CHILD_FOLDER = "Skin cancer ISIC The International Skin Imaging Collaboration"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_ISIC_ID = re.compile(r"ISIC_\d{7}")

SOURCE_SEED_TRAIN = "seed_train"
SOURCE_SEED_TEST = "seed_test"
SOURCE_ISIC2017 = "isic2017"
SOURCE_HAM10000 = "ham10000"
# the seed's Train and Test folders are one collection of pictures (one look)
_COLLECTIONS = {SOURCE_SEED_TRAIN: "seed", SOURCE_SEED_TEST: "seed"}


COLLECTION_TITLES = {
    "seed": "Kaggle 'Skin cancer ISIC' seed set",
    SOURCE_ISIC2017: "ISIC 2017 challenge",
    SOURCE_HAM10000: "HAM10000 (Vienna and Queensland)",
}
HAM_METADATA_FILE = "HAM10000_metadata.csv"
HAM_METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
# what a HAM row carries besides the common columns (the manifest keeps them all)
HAM_EXTRA_COLUMNS = ("ham_dx", "dx_type", "age", "sex", "localization", "mask_path")
_HAM_PATIENT_FIELDS = ["ham_dx", "dx_type", "age", "sex", "localization"]


def source_collection(source: str) -> str:
    """The collection a source's pictures come from (sources of one data set share it)."""
    return _COLLECTIONS.get(source, source)


def collections_of(rows: pd.DataFrame) -> np.ndarray:
    """The image collection of each manifest row (see :func:`source_collection`)."""
    return np.array([source_collection(source) for source in rows["source"]])


class DataNotFoundError(FileNotFoundError):
    """The data location is missing or does not hold the expected layout."""


def resolve_data_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """The data root from ``--data`` or ``$SKIN_DATA_DIR`` (flag wins)."""
    value = flag if flag else os.environ.get(DATA_ENV_VAR)
    if not value:
        raise DataNotFoundError(
            f"no data location given: pass --data DIR or set {DATA_ENV_VAR} (see README, 'Getting the data')"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"data location {path} is not a directory")
    return path


def isic_id_of(name: str) -> str | None:
    """The ISIC id in a file name (``ISIC_0025509(1).jpg`` -> ``ISIC_0025509``)."""
    match = _ISIC_ID.search(name)
    return match.group(0) if match else None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find_seed_root(path: Path) -> Path | None:
    """The folder holding ``Train/`` and ``Test/``: ``path`` itself, its spaced
    child folder, or (for a whole data root) up to two levels below it."""
    candidates = [path, path / SEED_CHILD_FOLDER]
    candidates += sorted(p for p in path.glob("*/") if p.is_dir())
    candidates += sorted(p for p in path.glob("*/*/") if p.is_dir())
    for cand in candidates:
        if (cand / "Train").is_dir() and (cand / "Test").is_dir():
            return cand
    return None


def load_seed_folders(root: Path) -> pd.DataFrame:
    """Rows for ``<root>/{Train,Test}/<class>/*`` with the folder as the label.

    Unknown class folders are an error (a typo would silently drop a class).
    """
    seed_root = find_seed_root(root)
    if seed_root is None:
        raise DataNotFoundError(f"no Train/ and Test/ folders found under {root}")
    rows = []
    for subset, source in (("Train", SOURCE_SEED_TRAIN), ("Test", SOURCE_SEED_TEST)):
        for class_dir in sorted(p for p in (seed_root / subset).iterdir() if p.is_dir()):
            if class_dir.name not in CLASS_NAMES:
                raise DataNotFoundError(f"unknown class folder {class_dir.name!r} in {seed_root / subset}")
            for file in sorted(class_dir.iterdir()):
                if _is_image(file):
                    rows.append(
                        {
                            "path": str(file),
                            "source": source,
                            "isic_id": isic_id_of(file.name),
                            "folder_label": class_dir.name,
                        }
                    )
    return pd.DataFrame(rows, columns=["path", "source", "isic_id", "folder_label"])


def _label_from_2017_row(row: pd.Series) -> str:
    if float(row["melanoma"]) >= 0.5:
        return "melanoma"
    if float(row["seborrheic_keratosis"]) >= 0.5:
        return "seborrheic keratosis"
    return "nevus"


def _label_from_2019_row(row: pd.Series) -> str | None:
    for code, name in ISIC2019_CODES.items():
        if float(row.get(code, 0)) >= 0.5:
            return name
    return None  # UNK or all zero


def read_ground_truth_csv(csv_path: Path) -> pd.DataFrame:
    """An official ISIC ground-truth CSV (2017 Part 3 or 2019 one-hot) as
    ``isic_id, label`` (label None where the file names no class here)."""
    table = pd.read_csv(csv_path)
    if {"image_id", "melanoma", "seborrheic_keratosis"} <= set(table.columns):
        labels = table.apply(_label_from_2017_row, axis=1)
        ids = table["image_id"]
    elif "image" in table.columns and set(ISIC2019_CODES) <= set(table.columns):
        labels = table.apply(_label_from_2019_row, axis=1)
        ids = table["image"]
    else:
        raise DataNotFoundError(
            f"{csv_path.name}: not an ISIC 2017 Part 3 or ISIC 2019 ground-truth CSV "
            f"(columns: {', '.join(map(str, table.columns))})"
        )
    return pd.DataFrame({"isic_id": ids.astype(str), "label": labels})


def load_csv_labelled(image_dir: Path, csv_path: Path, source: str) -> pd.DataFrame:
    """Rows for an image folder labelled by an official CSV; the CSV label is the
    folder label's counterpart (``folder_label``) for this layout."""
    truth = read_ground_truth_csv(csv_path).dropna(subset=["label"])
    files = {isic_id_of(p.name): p for p in sorted(image_dir.iterdir()) if _is_image(p)}
    rows = [
        {"path": str(files[i]), "source": source, "isic_id": i, "folder_label": label}
        for i, label in zip(truth["isic_id"], truth["label"], strict=True)
        if i in files
    ]
    return pd.DataFrame(rows, columns=["path", "source", "isic_id", "folder_label"])


def find_isic2017(data_dir: Path) -> tuple[Path, Path] | None:
    """(image folder, ground-truth CSV) of the ISIC 2017 training set, if present."""
    for csv in sorted(data_dir.rglob("ISIC-2017_Training_Part3_GroundTruth.csv")):
        images = csv.parent / "ISIC-2017_Training_Data"
        if images.is_dir():
            return images, csv
    return None


def find_ham10000(data_dir: Path) -> tuple[Path, Path] | None:
    """(image folder, metadata CSV) of the HAM10000 collection: a ``HAM10000_metadata.csv``
    beside an ``images/`` folder (the copy in ``labels/`` has no pictures beside it)."""
    for csv in sorted(data_dir.rglob(HAM_METADATA_FILE)):
        images = csv.parent / "images"
        if images.is_dir():
            return images, csv
    return None


def _mask_path(image_dir: Path, image_id: str) -> str | None:
    mask = image_dir.parent / "masks" / f"{image_id}_segmentation.png"
    return str(mask) if mask.is_file() else None


def load_ham10000(image_dir: Path, metadata_csv: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rows for the HAM10000 pictures listed in its metadata, labelled by their ``dx``
    through :data:`~skin_model.classes.HAM10000_CODES`, with the lesion id, the HAM
    fields and the lesion mask's path; plus the image ids the CSV lists that have no
    picture on disk (reported by the audit, never a crash)."""
    meta = pd.read_csv(metadata_csv, dtype={"lesion_id": str, "image_id": str, "dx": str})
    missing_columns = set(HAM_METADATA_COLUMNS) - set(meta.columns)
    if missing_columns:
        raise DataNotFoundError(f"{metadata_csv.name}: missing columns {', '.join(sorted(missing_columns))}")
    files = {p.stem: p for p in sorted(image_dir.iterdir()) if _is_image(p)}
    unknown = sorted(set(meta["dx"]) - set(HAM10000_CODES))
    if unknown:
        raise DataNotFoundError(f"{metadata_csv.name}: unknown dx codes {', '.join(unknown)}")
    rows, missing = [], []
    for rec in meta.itertuples(index=False):
        path = files.get(rec.image_id)
        if path is None:
            missing.append(rec.image_id)
            continue
        rows.append(
            {
                "path": str(path),
                "source": SOURCE_HAM10000,
                "isic_id": isic_id_of(rec.image_id),
                "folder_label": HAM10000_CODES[rec.dx],
                "lesion_id": rec.lesion_id,
                "ham_dx": rec.dx,
                "dx_type": rec.dx_type,
                "age": rec.age,
                "sex": rec.sex,
                "localization": rec.localization,
                "mask_path": _mask_path(image_dir, rec.image_id),
            }
        )
    columns = ["path", "source", "isic_id", "folder_label", "lesion_id", *HAM_EXTRA_COLUMNS]
    return pd.DataFrame(rows, columns=columns), missing


@dataclass(frozen=True)
class OfficialLabelFiles:
    """Paths of the official label files found under a data root (any may be None)."""

    ham10000: Path | None = None
    isic2019: Path | None = None
    isic2017: Path | None = None
    isbi2016_train: Path | None = None
    isbi2016_test: Path | None = None


def find_official_label_files(data_dir: Path) -> OfficialLabelFiles:
    """Locate the official ground-truth files by their official names, preferring
    a ``labels/`` folder when several copies exist."""

    def first(name: str) -> Path | None:
        hits = sorted(data_dir.rglob(name), key=lambda p: (p.parent.name != "labels", str(p)))
        return hits[0] if hits else None

    return OfficialLabelFiles(
        ham10000=first("HAM10000_metadata.csv"),
        isic2019=first("ISIC_2019_Training_GroundTruth.csv"),
        isic2017=first("ISIC-2017_Training_Part3_GroundTruth.csv"),
        isbi2016_train=first("ISBI2016_ISIC_Part3_Training_GroundTruth.csv"),
        isbi2016_test=first("ISBI2016_ISIC_Part3_Test_GroundTruth.csv"),
    )


def _read_isbi2016(path: Path) -> pd.Series:
    table = pd.read_csv(path, header=None, names=["isic_id", "value"], dtype=str)
    malignant = (
        table["value"]
        .str.strip()
        .str.lower()
        .map({"malignant": True, "benign": False, "1": True, "0": False, "1.0": True, "0.0": False})
    )
    return pd.Series(malignant.values, index=table["isic_id"].str.strip())


def load_official_labels(files: OfficialLabelFiles) -> pd.DataFrame:
    """One row per ISIC id with each official source's answer:
    ``label_isic2019, label_isic2017, label_ham10000, lesion_id, malignant_isbi2016`` and
    HAM10000's ``ham_dx, dx_type, age, sex, localization`` (so a seed copy of a HAM
    picture carries its patient's fields too)."""
    parts: list[pd.DataFrame] = []
    if files.isic2019:
        t = read_ground_truth_csv(files.isic2019).dropna(subset=["label"])
        parts.append(t.set_index("isic_id").rename(columns={"label": "label_isic2019"}))
    if files.isic2017:
        t = read_ground_truth_csv(files.isic2017)
        parts.append(t.set_index("isic_id").rename(columns={"label": "label_isic2017"}))
    if files.ham10000:
        t = pd.read_csv(files.ham10000)
        t = t.assign(label_ham10000=t["dx"].map(HAM10000_CODES), ham_dx=t["dx"])
        parts.append(t.set_index("image_id")[["label_ham10000", "lesion_id", *_HAM_PATIENT_FIELDS]])
    isbi = [_read_isbi2016(p) for p in (files.isbi2016_train, files.isbi2016_test) if p]
    if isbi:
        series = pd.concat(isbi)
        parts.append(series[~series.index.duplicated()].to_frame("malignant_isbi2016"))
    columns = [
        "label_isic2019",
        "label_isic2017",
        "label_ham10000",
        "lesion_id",
        "malignant_isbi2016",
        *_HAM_PATIENT_FIELDS,
    ]
    if not parts:
        return pd.DataFrame(columns=columns).rename_axis("isic_id")
    merged = pd.concat([p[~p.index.duplicated()] for p in parts], axis=1)
    merged.index.name = "isic_id"
    return merged.reindex(columns=columns)
