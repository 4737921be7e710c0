"""Loaders for both layouts and the official label files."""

from __future__ import annotations

from pathlib import Path

import pytest

from skin_model import sources
from skin_model.classes import CLASS_NAMES


def test_seed_root_given_directly_or_as_parent(synthetic_data) -> None:
    root = synthetic_data[0]
    direct = sources.load_seed_folders(root / "skin-cancer-isic" / sources.SEED_CHILD_FOLDER)
    parent = sources.load_seed_folders(root / "skin-cancer-isic")
    whole = sources.load_seed_folders(root)
    assert len(direct) == len(parent) == len(whole) > 0
    assert set(direct["folder_label"]) == set(CLASS_NAMES)
    assert set(direct["source"]) == {"seed_train", "seed_test"}
    assert direct.loc[direct["path"].str.endswith("(1).jpg"), "isic_id"].str.match(r"ISIC_\d{7}$").all()


def test_unknown_class_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "Train" / "melanomma").mkdir(parents=True)
    (tmp_path / "Test").mkdir()
    with pytest.raises(sources.DataNotFoundError, match="melanomma"):
        sources.load_seed_folders(tmp_path)


def test_isic2017_csv_layout(synthetic_data) -> None:
    found = sources.find_isic2017(synthetic_data[0])
    assert found is not None
    rows = sources.load_csv_labelled(*found, source="isic2017")
    assert rows["folder_label"].value_counts().to_dict() == {"seborrheic keratosis": 4, "nevus": 1}


def test_isic2019_one_hot_csv(tmp_path: Path) -> None:
    csv = tmp_path / "gt.csv"
    csv.write_text(
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"
        "ISIC_0000001,1,0,0,0,0,0,0,0,0\n"
        "ISIC_0000002,0,0,0,0,0,0,0,1,0\n"
        "ISIC_0000003,0,0,0,0,0,0,0,0,1\n"
    )
    table = sources.read_ground_truth_csv(csv)
    assert table["label"].iloc[:2].tolist() == ["melanoma", "squamous cell carcinoma"]
    assert table["label"].isna().tolist() == [False, False, True]
    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2, 3):
        (images / f"ISIC_000000{i}.jpg").write_bytes(b"x")
    rows = sources.load_csv_labelled(images, csv, source="isic2019")
    assert rows["isic_id"].tolist() == ["ISIC_0000001", "ISIC_0000002"]  # UNK has no class here


def test_unrecognised_csv_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(sources.DataNotFoundError, match="not an ISIC"):
        sources.read_ground_truth_csv(csv)


def test_official_labels_and_isbi_formats(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv").write_text(
        "ISIC_0000001,benign\nISIC_0000002,malignant\n"
    )
    (tmp_path / "labels" / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv").write_text("ISIC_0000003,1\n")
    table = sources.load_official_labels(sources.find_official_label_files(tmp_path))
    assert table["malignant_isbi2016"].to_dict() == {
        "ISIC_0000001": False,
        "ISIC_0000002": True,
        "ISIC_0000003": True,
    }


def test_data_dir_from_flag_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sources.DATA_ENV_VAR, raising=False)
    with pytest.raises(sources.DataNotFoundError, match="--data"):
        sources.resolve_data_dir(None)
    monkeypatch.setenv(sources.DATA_ENV_VAR, str(tmp_path))
    assert sources.resolve_data_dir(None) == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    assert sources.resolve_data_dir(str(other)) == other
    with pytest.raises(sources.DataNotFoundError, match="not a directory"):
        sources.resolve_data_dir(str(tmp_path / "missing"))


def test_isic_id_of() -> None:
    assert sources.isic_id_of("ISIC_0025509(1).jpg") == "ISIC_0025509"
    assert sources.isic_id_of("photo.jpg") is None
