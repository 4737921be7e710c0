"""HAM10000 as a third collection: its loader, label mapping, overlaps with the seed set,
lesions kept on one side across collections, and what the audit reports about it.

Every picture here is made by the test (small synthetic folders in the shared layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_model.audit import audit_findings, format_report
from skin_model.manifest import build_manifest
from skin_model.sources import SEED_CHILD_FOLDER, find_ham10000, load_ham10000

from .synthetic import isic, jpeg_bytes, smooth_picture

HAM_HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"


def _seed(root: Path, subset: str, label: str, number: int, picture: Image.Image) -> None:
    path = root / "skin-cancer-isic" / SEED_CHILD_FOLDER / subset / label / f"{isic(number)}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(picture.resize((180, 180)), quality=95))


def _ham(root: Path, number: int, picture: Image.Image, mask_size: tuple[int, int] | None = (200, 150)) -> None:
    folder = root / "ham10000"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    (folder / "images" / f"{isic(number)}.jpg").write_bytes(jpeg_bytes(picture.resize((200, 150)), quality=75))
    if mask_size:
        mask = np.zeros(mask_size[::-1], np.uint8)
        mask[mask_size[1] // 4 : 3 * mask_size[1] // 4, mask_size[0] // 4 : 3 * mask_size[0] // 4] = 255
        Image.fromarray(mask, "L").save(folder / "masks" / f"{isic(number)}_segmentation.png")


@pytest.fixture(scope="module")
def ham_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed Train/Test plus a HAM folder: a seed picture that HAM also holds, a HAM lesion
    with a picture in the seed's Test folder, an akiec the official ISIC 2019 file calls
    SCC, a listed picture missing on disk, and a mask of the wrong size."""
    root = tmp_path_factory.mktemp("ham_data")
    pictures = {n: smooth_picture(5000 + n, 96) for n in range(1, 60)}
    for n in range(1, 13):  # plain seed pictures, two per class of six classes
        label = ["melanoma", "nevus", "basal cell carcinoma", "dermatofibroma", "vascular lesion", "actinic keratosis"]
        _seed(root, "Train", label[n % 6], n, pictures[n])
    _seed(root, "Test", "nevus", 13, pictures[13])
    _seed(root, "Train", "nevus", 14, pictures[14])  # also in HAM (the same picture, kept once)
    _seed(root, "Train", "squamous cell carcinoma", 15, pictures[15])  # HAM akiec, ISIC 2019 says SCC
    rows = [
        f"HAM_0000014,{isic(14)},nv,follow_up,45.0,female,back",
        f"HAM_0000015,{isic(15)},akiec,histo,70.0,male,face",
        f"HAM_0000013,{isic(30)},nv,follow_up,40.0,male,trunk",  # another photo of seed Test's lesion
        f"HAM_0000016,{isic(16)},akiec,histo,75.0,male,scalp",
        f"HAM_0000017,{isic(17)},bkl,consensus,60.0,female,back",
        f"HAM_0000018,{isic(18)},mel,histo,55.0,male,back",
        f"HAM_0000018,{isic(19)},mel,histo,55.0,male,back",  # two pictures of one lesion
        f"HAM_0000020,{isic(20)},nv,follow_up,30.0,female,lower extremity",
        f"HAM_0000099,{isic(99)},nv,follow_up,30.0,female,back",  # listed, no picture on disk
    ]
    for n in (14, 15, 16, 17, 18, 19, 30):
        _ham(root, n, pictures[n])
    _ham(root, 20, pictures[20], mask_size=(100, 75))  # a mask at the wrong size
    (root / "ham10000" / "HAM10000_metadata.csv").write_text("\n".join([HAM_HEADER, *rows]) + "\n")
    labels = root / "labels"
    labels.mkdir()
    (labels / "HAM10000_metadata.csv").write_text(
        "\n".join([HAM_HEADER, *rows, f"HAM_0000013,{isic(13)},nv,follow_up,40.0,male,trunk"]) + "\n"
    )
    header = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"
    (labels / "ISIC_2019_Training_GroundTruth.csv").write_text(
        header + "\n" + f"{isic(15)},0,0,0,0,0,0,0,1,0\n" + f"{isic(16)},0,0,0,1,0,0,0,0,0\n"
    )
    return root


@pytest.fixture(scope="module")
def ham_manifest(ham_root: Path):
    return build_manifest(ham_root, progress=False)


def test_loader_reads_the_metadata_and_reports_missing_pictures(ham_root: Path) -> None:
    found = find_ham10000(ham_root)
    assert found is not None and found[0].name == "images"  # not the labels/ copy, which has no pictures
    rows, missing = load_ham10000(*found)
    assert missing == [isic(99)]
    by_id = rows.set_index("isic_id")
    assert by_id.loc[isic(16), "folder_label"] == "actinic keratosis"
    assert by_id.loc[isic(17), "folder_label"] == "pigmented benign keratosis"
    assert by_id.loc[isic(18), "lesion_id"] == "HAM_0000018" and by_id.loc[isic(18), "dx_type"] == "histo"
    assert by_id.loc[isic(18), "mask_path"].endswith(f"{isic(18)}_segmentation.png")
    assert by_id.loc[isic(20), "localization"] == "lower extremity"


def test_label_mapping_with_the_official_answer(ham_manifest) -> None:
    t = ham_manifest.table.set_index("path")
    ham = t[t["source"] == "ham10000"].set_index("isic_id")
    assert ham.loc[isic(16), "final_label"] == "actinic keratosis"  # akiec, and ISIC 2019 says AK
    seed_15 = t[(t["source"] == "seed_train") & (t["isic_id"] == isic(15))]
    assert seed_15["final_label"].tolist() == ["squamous cell carcinoma"]  # ISIC 2019's finer answer wins
    assert ham.loc[isic(15), "final_label"] == "squamous cell carcinoma"


def test_a_seed_picture_that_ham_holds_is_kept_once(ham_manifest) -> None:
    t = ham_manifest.table
    copies = t[t["isic_id"] == isic(14)]
    assert len(copies) == 2 and copies["picture_id"].nunique() == 1
    kept = copies[copies["split"] != "excluded"]
    assert kept["source"].tolist() == ["seed_train"]
    dropped = copies[copies["split"] == "excluded"]["excluded_reason"].iloc[0]
    assert dropped.startswith("same picture")
    # the seed copy carries its HAM patient fields through the official metadata
    assert kept["dx_type"].iloc[0] == "follow_up" and kept["lesion_id"].iloc[0] == "HAM_0000014"


def test_a_lesion_spanning_two_collections_stays_on_one_side(ham_manifest) -> None:
    t = ham_manifest.table
    lesion = t[t["lesion_id"] == "HAM_0000013"]
    assert set(lesion["source"]) == {"seed_test", "ham10000"}
    assert lesion["group_id"].nunique() == 1 and set(lesion["split"]) == {"test"}
    two = t[t["lesion_id"] == "HAM_0000018"]
    assert two["group_id"].nunique() == 1 and two["split"].nunique() == 1
    kept = t[t["split"] != "excluded"]
    assert (kept.groupby("group_id")["split"].nunique() == 1).all()


def test_audit_reports_the_collections(ham_manifest) -> None:
    findings = audit_findings(ham_manifest)
    found = findings["collections"]
    assert found["collections"] == ["ham10000", "seed"]
    assert found["listed_but_missing"] == [f"ham10000: {isic(99)}"]
    assert found["masks"]["with_mask"] == 8
    assert [m["picture"] for m in found["masks"]["size_mismatch"]] == [f"{isic(20)}.jpg"]
    assert "mask 100x75, picture 200x150" in found["masks"]["size_mismatch"][0]["problem"]
    overlap = found["overlaps"]["seed in ham10000"]
    assert overlap["same_isic_id"] == 2 and overlap["same_picture"] == 2
    lesions = found["lesions_across_collections"]
    assert lesions["ham10000_pictures_sharing_a_lesion_with_seed_test"] == 1
    assert lesions["groups_on_two_sides_of_a_split"] == 0
    assert found["label_disagreements"] == {"ham10000: actinic keratosis / seed: squamous cell carcinoma": 1}
    capture = found["capture"]
    assert capture["ham10000"]["nevus"]["sizes"] == {"200x150": 3}
    assert capture["ham10000"]["nevus"]["jpeg_quality_median"] == 75
    assert capture["seed"]["nevus"]["aspect_median"] == 1.0
    assert found["counts"]["ham10000"]["before"]["melanoma"] == 2
    test_counts = pd.DataFrame(found["splits"]["test"]).fillna(0)
    assert test_counts.to_numpy().sum() == (ham_manifest.table["split"] == "test").sum()
    report = format_report(findings)
    assert "Test split: pictures per class from each collection" in report
    assert "listed but missing on disk: 1" in report and "size mismatches 1" in report
