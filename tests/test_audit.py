"""The audit finds exactly what was planted in a synthetic data set."""

from __future__ import annotations

import re
from pathlib import Path

from skin_model.audit import audit_findings, format_report
from skin_model.manifest import Manifest


def _ids(entries: list[dict]) -> set[str]:
    return {e["isic_id"] for e in entries}


def test_unreadable_file_is_reported(synthetic_manifest: Manifest, synthetic_data) -> None:
    findings = audit_findings(synthetic_manifest)
    assert _ids(findings["unreadable"]) == {synthetic_data[1]["unreadable_id"]}
    assert "truncated" in findings["unreadable"][0]["error"]


def test_cross_class_duplicate_found_and_dropped(synthetic_manifest: Manifest, synthetic_data) -> None:
    findings = audit_findings(synthetic_manifest)
    groups = findings["cross_class_duplicate_groups"]
    assert len(groups) == 1
    assert groups[0]["folder_labels"] == ["dermatofibroma", "melanoma"]
    assert {f["isic_id"] for f in groups[0]["files"]} == {synthetic_data[1]["cross_class_conflict"]}
    assert groups[0]["resolution"].startswith("dropped")
    table = synthetic_manifest.table
    conflict_rows = table[table["isic_id"] == synthetic_data[1]["cross_class_conflict"]]
    assert (conflict_rows["split"] == "excluded").all()


def test_exact_duplicate_counts(synthetic_manifest: Manifest) -> None:
    dup = audit_findings(synthetic_manifest)["exact_duplicates"]
    # nevus "(1)" copy and the Train/Test leak are within one class; the conflict is across.
    assert dup == {"groups": 3, "files": 6, "within_one_class": 2, "across_classes": 1}


def test_train_test_leak_found_and_removed_from_test(synthetic_manifest: Manifest, synthetic_data) -> None:
    leaks = audit_findings(synthetic_manifest)["train_test_leaks"]
    assert [(leak["isic_id"], leak["kind"]) for leak in leaks] == [
        (synthetic_data[1]["leaked_test_image"], "byte-identical")
    ]
    table = synthetic_manifest.table
    leaked = table[(table["source"] == "seed_test") & (table["isic_id"] == synthetic_data[1]["leaked_test_image"])]
    assert (leaked["split"] == "excluded").all()


def test_near_duplicate_resized_copy(synthetic_manifest: Manifest, synthetic_data) -> None:
    groups = audit_findings(synthetic_manifest)["near_duplicate_groups"]
    assert len(groups) == 1
    ids = {f["isic_id"] for f in groups[0]["files"]}
    assert ids == {synthetic_data[1]["near_duplicate_id"], synthetic_data[1]["near_duplicate_copy_id"]}
    assert groups[0]["max_hash_distance"] <= 8
    table = synthetic_manifest.table.set_index("isic_id")
    # the ISIC 2017 copy is de-duplicated against the seed copy
    assert table.loc[synthetic_data[1]["near_duplicate_copy_id"], "split"] == "excluded"
    assert table.loc[synthetic_data[1]["near_duplicate_id"], "split"] in {"train", "val"}


def test_official_label_overrides_folder(synthetic_manifest: Manifest, synthetic_data) -> None:
    findings = audit_findings(synthetic_manifest)
    wrong = synthetic_data[1]["official_disagreement_id"]
    entries = [d for d in findings["official_label_disagreements"] if d["isic_id"] == wrong]
    assert len(entries) == 1
    assert entries[0]["folder_label"] == "nevus" and entries[0]["official_label"] == "melanoma"
    row = synthetic_manifest.table.set_index("isic_id").loc[wrong]
    assert row["final_label"] == "melanoma"
    assert findings["official_agreement"]["nevus"]["with_official_label"] == 1
    assert findings["official_agreement"]["nevus"]["agree"] == 0


def test_lesion_group_stays_on_one_side(synthetic_manifest: Manifest, synthetic_data) -> None:
    a, b = synthetic_data[1]["lesion_pair"]
    table = synthetic_manifest.table.set_index("isic_id")
    assert table.loc[a, "group_id"] == table.loc[b, "group_id"]
    assert table.loc[a, "split"] == table.loc[b, "split"]


def test_class_counts_before_and_after(synthetic_manifest: Manifest) -> None:
    counts = audit_findings(synthetic_manifest)["class_counts"]
    assert counts["before"]["seed_train"]["nevus"] == 6 + 2  # 6 + "(1)" copy + near duplicate
    assert counts["before"]["isic2017"]["seborrheic keratosis"] == 4
    after = counts["after"]
    # leak removed from Test, so 2 per class remain; held-out lesions top seborrheic keratosis
    # up to a third of its 12 pictures (2 of ISIC 2017's or the seed's Train ones)
    assert after["test"]["basal cell carcinoma"] == 2
    assert after["test"]["seborrheic keratosis"] == 4
    assert sum(after["test"].values()) == 9 * 2 + 2
    assert after["train"]["seborrheic keratosis"] + after.get("val", {}).get("seborrheic keratosis", 0) == 6 + 4 - 2


def test_report_is_readable(synthetic_manifest: Manifest) -> None:
    report = format_report(audit_findings(synthetic_manifest))
    assert "cross-class duplicate groups: 1" in report
    assert "train/test leaks: 1" in report


def test_audit_reports_every_planted_bad_file_and_keeps_none(synthetic_data, tmp_path) -> None:
    """The bad-input catalogue planted inside a data set: the audit names each file with
    its reason and none of them reaches a split."""
    import io
    import shutil

    from PIL import Image

    from skin_model.images import MAX_PIXELS
    from skin_model.manifest import build_manifest
    from skin_model.sources import SEED_CHILD_FOLDER

    from .test_images import BAD_INPUTS

    root = tmp_path / "data"
    shutil.copytree(synthetic_data[0], root)
    folder = root / "skin-cancer-isic" / SEED_CHILD_FOLDER / "Train" / "nevus"
    planted = {}
    for k, (name, (data, reason)) in enumerate(BAD_INPUTS.items()):
        filename = f"bad {k} – {name.replace(' ', '_')}.jpg"  # spaces and unicode in the names
        (folder / filename).write_bytes(data)
        planted[filename] = reason
    side = int(MAX_PIXELS**0.5) + 100
    bomb = io.BytesIO()
    Image.new("1", (side, side)).save(bomb, format="PNG")
    (folder / "bomb.png").write_bytes(bomb.getvalue())
    planted["bomb.png"] = "megapixel"

    manifest = build_manifest(root, progress=False)
    findings = audit_findings(manifest)
    reported = {Path(entry["path"]).name: entry["error"] for entry in findings["unreadable"]}
    for filename, reason in planted.items():
        assert filename in reported, filename
        assert re.search(f"(?i){reason}", reported[filename]), (filename, reported[filename])
    kept_names = {Path(p).name for p in manifest.kept()["path"]}
    assert not kept_names & set(planted)


def test_compression_per_collection_counts_each_files_quality(tmp_path: Path) -> None:
    import pandas as pd

    from skin_model.audit import compression_by_collection
    from skin_model.sources import SOURCE_ISIC2017, SOURCE_SEED_TEST, SOURCE_SEED_TRAIN

    from .synthetic import jpeg_bytes, smooth_picture

    files = {
        "a.jpg": (SOURCE_SEED_TRAIN, jpeg_bytes(smooth_picture(1), quality=95)),
        "b.jpg": (SOURCE_SEED_TEST, jpeg_bytes(smooth_picture(2), quality=95)),
        "c.jpg": (SOURCE_ISIC2017, jpeg_bytes(smooth_picture(3), quality=75)),
        "d.jpg": (SOURCE_ISIC2017, jpeg_bytes(smooth_picture(4), quality=75)),
        "e.jpg": (SOURCE_ISIC2017, jpeg_bytes(smooth_picture(5), quality=60)),
        "f.jpg": (SOURCE_ISIC2017, b"not an image"),  # unreadable: left out
    }
    rows = []
    for name, (source, data) in files.items():
        (tmp_path / name).write_bytes(data)
        rows.append({"path": str(tmp_path / name), "source": source, "error": "bad" if name == "f.jpg" else None})
    smooth_picture(6).save(tmp_path / "g.png")
    rows.append({"path": str(tmp_path / "g.png"), "source": SOURCE_SEED_TRAIN, "error": None})
    counts = compression_by_collection(pd.DataFrame(rows))
    assert counts == {
        "isic2017": {"JPEG quality 75": 2, "JPEG quality 60": 1},
        "seed": {"JPEG quality 95": 2, "other format": 1},
    }
