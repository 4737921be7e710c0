"""`validate`: the model measured on a user's own labelled pictures, training pictures left out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_model.artifact import load_artifact
from skin_model.bundle import load_bundle
from skin_model.classes import CLASS_NAMES, MALIGNANT_CLASSES
from skin_model.labelled_pictures import (
    class_of_folder,
    read_labelled_csv,
    read_labelled_folder,
    read_labelled_zip,
    seen_in_training,
)
from skin_model.local_validation import (
    compare,
    format_report,
    headline_figures,
    matched_model_figures,
    missed_malignant,
    validate_folder,
)

from .conftest import run_cli


def test_class_folders_by_name_or_code() -> None:
    assert class_of_folder("Melanoma") == "melanoma"
    assert class_of_folder("MEL") == "melanoma"
    assert class_of_folder("basal_cell-carcinoma") == "basal cell carcinoma"
    assert class_of_folder("bkl") == "pigmented benign keratosis"
    assert class_of_folder("akiec") == "actinic keratosis"
    assert class_of_folder("NV") == "nevus"
    assert class_of_folder("psoriasis") is None


def test_reading_a_folder_refuses_unknown_class_folders(tmp_path: Path) -> None:
    (tmp_path / "MEL").mkdir()
    (tmp_path / "MEL" / "a.jpg").write_bytes(b"x")
    (tmp_path / "MEL" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "MEL" / "notes.txt").write_text("not a picture")
    (tmp_path / "nevus" / "deeper").mkdir(parents=True)
    (tmp_path / "nevus" / "deeper" / "b.png").write_bytes(b"x")
    rows = read_labelled_folder(tmp_path)
    assert rows[["name", "label"]].values.tolist() == [["MEL/a.jpg", "melanoma"], ["nevus/deeper/b.png", "nevus"]]
    (tmp_path / "moles").mkdir()
    with pytest.raises(ValueError, match="folders that name no class: moles"):
        read_labelled_folder(tmp_path)
    with pytest.raises(ValueError, match="no pictures"):
        read_labelled_folder((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_reading_a_zip_takes_the_first_folder_that_names_a_class() -> None:
    rows = read_labelled_zip([("my clinic/MEL/a.jpg", b"1"), ("NV/2024/b.jpg", b"2"), ("akiec/c.png", b"3")])
    # in name order, whatever the archive's order
    assert rows["name"].tolist() == ["NV/2024/b.jpg", "akiec/c.png", "my clinic/MEL/a.jpg"]
    assert rows["label"].tolist() == ["nevus", "actinic keratosis", "melanoma"]
    assert rows["source"].tolist() == [b"2", b"3", b"1"]
    with pytest.raises(ValueError, match=r"name no class: \(top level\), moles"):
        read_labelled_zip([("loose.jpg", b"1"), ("moles/x.jpg", b"2"), ("MEL/y.jpg", b"3")])


def test_reading_labels_from_a_csv(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    (pictures / "batch 2").mkdir(parents=True)
    for name in ("ISIC_0000001.jpg", "ISIC_0000002_downsampled.jpg", "batch 2/lesion-7.png", "unlisted.jpg"):
        (pictures / name).write_bytes(b"x")
    # HAM10000's metadata layout: image_id and dx codes
    ham = tmp_path / "ham.csv"
    ham.write_text("lesion_id,image_id,dx\nH1,ISIC_0000001,mel\nH2,ISIC_0000002,bkl\nH3,lesion-7,nv\nH4,gone,df\n")
    rows, counts = read_labelled_csv(pictures, ham)
    assert rows[["name", "label"]].values.tolist() == [
        ["ISIC_0000001.jpg", "melanoma"],
        ["ISIC_0000002_downsampled.jpg", "pigmented benign keratosis"],  # matched by its ISIC id
        ["batch 2/lesion-7.png", "nevus"],  # matched by its name without extension
    ]
    assert counts == {"pictures_without_label": 1, "labels_without_picture": 1, "labels_naming_no_class": 0}
    # the ISIC 2019 one-hot layout; UNK names no class here
    isic = tmp_path / "isic2019.csv"
    isic.write_text(
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_0000001,0,0,1,0,0,0,0,0,0\nISIC_0000002,0,0,0,0,0,0,0,0,1\n"
    )
    rows, counts = read_labelled_csv(pictures, isic)
    assert rows["label"].tolist() == ["basal cell carcinoma"] and counts["labels_naming_no_class"] == 1
    typo = tmp_path / "typo.csv"
    typo.write_text("file,diagnosis\nunlisted.jpg,melanomma\n")
    with pytest.raises(ValueError, match="diagnoses that name no class: melanomma"):
        read_labelled_csv(pictures, typo)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="needs an image column"):
        read_labelled_csv(pictures, wrong)


def test_headline_figures_by_hand() -> None:
    mel, nev, bcc = (CLASS_NAMES.index(c) for c in ("melanoma", "nevus", "basal cell carcinoma"))

    def probs_for(top: int, second: int, p: float) -> np.ndarray:
        row = np.zeros(len(CLASS_NAMES))
        row[top], row[second] = p, 1 - p
        return row

    y = np.array([mel, mel, nev, nev, bcc])
    probs = np.array(
        [
            probs_for(mel, nev, 0.9),  # right; malignant risk 0.9
            probs_for(nev, mel, 0.6),  # a melanoma answered nevus; risk 0.4
            probs_for(nev, mel, 0.8),  # right; risk 0.2
            probs_for(mel, nev, 0.7),  # a nevus answered melanoma; risk 0.7
            probs_for(bcc, nev, 0.5),  # right; risk 0.5
        ]
    )
    figures = headline_figures(y, probs, threshold=0.45, bootstrap=50)
    # recall: melanoma 1/2, nevus 1/2, basal cell carcinoma 1/1
    assert figures["balanced_accuracy"]["value"] == pytest.approx((0.5 + 0.5 + 1) / 3, abs=1e-4)
    # malignant risks 0.9, 0.4, 0.5 against benign 0.2, 0.7: 4 of 6 pairs ranked right
    assert figures["malignant_auc"]["value"] == pytest.approx(4 / 6, abs=1e-4)
    # referred at 0.45: malignant 0.9 and 0.5 (2 of 3), benign 0.7 (so 1 of 2 not referred)
    assert figures["referral_sensitivity"]["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["referral_specificity"]["value"] == 0.5
    low, high = figures["balanced_accuracy"]["ci95"]
    assert 0 <= low <= high <= 1


def test_the_models_figures_are_taken_on_your_classes_and_case_mix() -> None:
    names = ("melanoma", "nevus", "seborrheic keratosis", "basal cell carcinoma")
    mel, nev, sk, bcc = (CLASS_NAMES.index(c) for c in names)
    y = [mel, mel, nev, nev, sk, bcc]
    risks = [0.9, 0.6, 0.55, 0.1, 0.2, 0.95]  # melanoma probability (the malignant risk); the rest on the true class
    probs = np.zeros((len(y), len(CLASS_NAMES)))
    for i, (label, risk) in enumerate(zip(y, risks, strict=True)):
        probs[i, mel] = risk
        probs[i, label if label != mel else nev] += 1 - risk
    evaluation = {"val": {"scores": {"y_true": y, "probs": probs.tolist()}}}
    counts = {"melanoma": 1, "nevus": 1, "seborrheic keratosis": 2, "vascular lesion": 3}
    matched = matched_model_figures(evaluation, "val", counts, threshold=0.45)
    # the basal cell carcinoma is not one of your classes; vascular lesions are missing there
    assert matched["pictures"] == 5 and matched["missing"] == ["vascular lesion"]
    # your mix among the classes it has: 1/4, 1/4, 2/4 against its 2/5, 2/5, 1/5, so each
    # melanoma and nevus weighs 0.625 and the keratosis 2.5; benign lesions not referred:
    # one nevus (0.1) and the keratosis, of the two nevi (one referred at 0.55) and the keratosis
    assert matched["figures"]["referral_specificity"] == pytest.approx((0.625 + 2.5) / (2 * 0.625 + 2.5), abs=1e-4)
    assert matched["figures"]["referral_sensitivity"] == 1.0
    # recall: melanoma 2/2, nevus 1/2 (the 0.55 one is answered melanoma), keratosis 1/1
    assert matched["figures"]["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-4)
    assert stored_or_none(matched_model_figures({}, "test", counts, 0.45))


def stored_or_none(matched: dict) -> bool:
    """A split without stored scores gives no figures and misses every class."""
    return matched["pictures"] == 0 and set(matched["figures"].values()) == {None}


def test_missed_malignant_lesions_by_hand() -> None:
    table = pd.DataFrame(
        {
            "file": ["a", "b", "c", "d", "e"],
            "true_class": ["melanoma", "melanoma", "nevus", "actinic keratosis", "melanoma"],
            "predicted_class": ["nevus", "melanoma", "nevus", "nevus", ""],
            "malignant_probability": [0.2, 0.9, 0.1, 0.25, None],
            "high_malignant_risk": [False, True, False, False, None],
            "advice": ["", "high malignant risk: refer", "", "uncertain: refer", ""],
            "evaluated": [True, True, True, True, False],  # e: unreadable
        }
    )
    missed = missed_malignant(table)
    assert missed["file"].tolist() == ["d", "a"]  # highest risk first; the referred and the benign are not misses
    assert missed["advice"].tolist() == ["uncertain: refer", ""]


def test_compare_against_a_reference() -> None:
    yours = {"a": {"value": 0.6, "ci95": [0.5, 0.7]}, "b": {"value": 0.6, "ci95": [0.5, 0.7]}}
    yours |= {"c": {"value": 0.6, "ci95": [0.5, 0.7]}, "d": {"value": None, "ci95": None}}
    verdicts = compare(yours, {"a": 0.8, "b": 0.65, "c": 0.4, "d": 0.9})
    assert verdicts == {"a": "lower", "b": "consistent", "c": "higher", "d": ""}


def test_training_pictures_are_recognised_by_bytes_id_or_near_copy() -> None:
    audit = pd.DataFrame(
        {
            "split": ["train", "train", "val"],
            "sha256": ["s1", "s2", "s3"],
            "isic_id": ["ISIC_0000001", None, "ISIC_0000003"],
            "phash": ["ffffffffffffffff", "0000000000000000", "00000000ffffffff"],
        }
    )
    files = pd.DataFrame(
        {
            "name": ["mel/renamed.jpg", "nv/ISIC_0000001_small.png", "x/c.jpg", "x/d.jpg", "x/ISIC_0000003.jpg", "e"],
            "sha256": ["s1", "zz", "zz", "zz", "s3", "zz"],
            # 4 bits from the second training hash; 5 bits; a validation picture's hash; unreadable
            "phash": ["1", "1", "000000000000000f", "000000000000001f", "00000000ffffffff", None],
        }
    )
    assert seen_in_training(files, audit).tolist() == [
        "identical to a training picture",
        "ISIC_0000001 is a training picture",
        "a near-identical copy of a training picture",
        "",
        "",  # a validation picture: the model never trained on it
        "",
    ]


@pytest.fixture(scope="module")
def labelled_folder(synthetic_manifest, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The synthetic test split filed by class (some folders by code), plus a training
    picture under a new name, the same picture re-saved smaller, and a broken file."""
    root = tmp_path_factory.mktemp("clinic")
    folder_of = {"melanoma": "MEL", "nevus": "Nevus", "basal cell carcinoma": "bcc"}
    for row in synthetic_manifest.kept("test").itertuples():
        target = root / folder_of.get(row.final_label, row.final_label) / Path(row.path).name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(Path(row.path).read_bytes())
    train = synthetic_manifest.kept("train").iloc[0]
    copy_folder = root / folder_of.get(train.final_label, train.final_label)
    copy_folder.mkdir(exist_ok=True)
    (copy_folder / "from the archive.jpg").write_bytes(Path(train.path).read_bytes())
    buffer = io.BytesIO()
    Image.open(train.path).convert("RGB").resize((150, 150)).save(buffer, "PNG")
    (copy_folder / "resaved.png").write_bytes(buffer.getvalue())
    (root / "MEL" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    (root / "MEL" / "moved away.jpg").symlink_to(root / "nowhere.jpg")  # a link whose picture is gone
    return root, {"copy": f"{copy_folder.name}/from the archive.jpg", "resaved": f"{copy_folder.name}/resaved.png"}


def test_validate_measures_the_held_out_pictures_and_leaves_out_the_training_ones(
    tiny_model_dir: Path, synthetic_manifest, labelled_folder
) -> None:
    root, planted = labelled_folder
    artifact = load_artifact(tiny_model_dir)
    rows = read_labelled_folder(root)
    steps: list[tuple[int, int]] = []
    report, table = validate_folder(
        rows, artifact, synthetic_manifest.table, progress=False, bootstrap=20, on_progress=lambda *s: steps.append(s)
    )
    assert steps and steps[-1] == (len(rows), len(rows))  # the page's progress bar reaches the end
    by_name = table.set_index("file")
    assert by_name.loc[planted["copy"], "seen_in_training"] == "identical to a training picture"
    assert by_name.loc[planted["resaved"], "seen_in_training"] == "a near-identical copy of a training picture"
    assert by_name.loc["MEL/truncated.jpg", "status"].startswith("unreadable")
    assert by_name.loc["MEL/moved away.jpg", "status"].startswith("unreadable")
    assert report["training_check"] == "made against the audit of the model's data"
    assert report["unreadable"] == 2 and report["pictures"] == len(rows)
    assert report["evaluated"] + report["seen_in_training"] + report["unreadable"] == len(rows)
    # the figures are the evaluated pictures' own: recomputed here from the per-picture table
    used = table[table["evaluated"]]
    assert report["evaluated"] == len(used) and not used["seen_in_training"].any()
    assert report["accuracy"] == pytest.approx((used["predicted_class"] == used["true_class"]).mean(), abs=1e-4)
    assert report["per_class_counts"] == used["true_class"].value_counts().sort_index().to_dict()
    # the model's own figures stand beside them: its stored validation scores of the same classes
    evaluation = json.loads((tiny_model_dir / "evaluation.json").read_text())
    assert report["model_pictures"]["val"] == sum(
        label in report["per_class_counts"] for label in np.array(CLASS_NAMES)[evaluation["val"]["scores"]["y_true"]]
    )
    assert set(report["model_figures"]["val"]) == set(report["figures"])
    assert "prediction_sets" in report  # the tiny model has them (fitted when it was trained)
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == report["evaluated"] and np.trace(cm) / cm.sum() == pytest.approx(report["accuracy"], abs=1e-4)
    referred = used["high_malignant_risk"].astype(bool)
    assert len(report["missed_malignant"]) == int((used["true_class"].isin(MALIGNANT_CLASSES) & ~referred).sum())
    text = format_report(report)
    threshold = load_artifact(tiny_model_dir).malignant_threshold
    assert report["referral_threshold"] == report["model_referral_threshold"] == threshold
    missed = len(report["missed_malignant"])
    assert f"not referred for their risk (below the referral threshold of {threshold:.2%}): {missed}." in text
    assert f"{len(rows)} pictures: {report['evaluated']} evaluated, 2 unreadable" in text
    # the same pictures as a zip's bytes (the app's way) give the same report
    # (the broken link as empty bytes: unreadable either way)
    from_bytes = rows.assign(source=[Path(p).read_bytes() if Path(p).exists() else b"" for p in rows["source"]])
    again, _ = validate_folder(from_bytes, artifact, synthetic_manifest.table, progress=False, bootstrap=20)
    assert again == report


def test_validate_through_the_cli(tiny_model_dir: Path, labelled_folder, tmp_path: Path) -> None:
    root, _ = labelled_folder
    out, report = tmp_path / "per-picture.csv", tmp_path / "report.json"
    result = run_cli("validate", str(root), "--model", str(tiny_model_dir), "-o", str(out), "--json", str(report))
    assert "balanced accuracy" in result.stdout and "model, validation" in result.stdout
    saved = json.loads(report.read_text())
    # the shipped audit describes other data than the tiny model's: no claim of a check
    assert saved["training_check"].startswith("not made")
    assert len(pd.read_csv(out)) == saved["pictures"]
    (root / "moles").mkdir()
    try:
        refused = run_cli("validate", str(root), "--model", str(tiny_model_dir), check=False)
    finally:
        (root / "moles").rmdir()
    assert refused.returncode == 2 and "folders that name no class: moles" in refused.stderr


def test_validate_measures_an_export_with_its_source_models_columns(
    tiny_model_dir: Path, synthetic_manifest, labelled_folder, tmp_path: Path
) -> None:
    """What a clinic would deploy, measured: the export's own probabilities, threshold and
    sets; the model's columns and the training check come from the model it was made from."""
    import shutil

    from skin_model.export import export_model, load_exported
    from skin_model.local_validation import export_source

    root, planted = labelled_folder
    artifact = load_artifact(tiny_model_dir)
    out = export_model(artifact, tmp_path / "tiny.tflite", "tflite")
    export = load_exported(out)
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "renamed folder")  # found by its manifest, not its folder's name
    source = export_source(export.manifest, models)
    assert source is not None and source.manifest["manifest_sha256"] == artifact.manifest["manifest_sha256"]
    assert source.evaluation() == artifact.evaluation()
    assert export_source(export.manifest, tmp_path / "nowhere") is None
    assert export_source({**export.manifest, "source_manifest_sha256": "0" * 64}, models) is None
    edited = json.loads((models / "renamed folder" / "manifest.json").read_text()) | {"malignant_threshold": 0.9}
    shutil.copytree(models, tmp_path / "edited")
    (tmp_path / "edited" / "renamed folder" / "manifest.json").write_text(json.dumps(edited))
    assert export_source(export.manifest, tmp_path / "edited") is None  # its checksum no longer holds

    rows = read_labelled_folder(root)
    keras_report, keras_table = validate_folder(rows, artifact, synthetic_manifest.table, progress=False, bootstrap=20)
    report, table = validate_folder(
        rows, source, synthetic_manifest.table, progress=False, bootstrap=20, bundle=load_bundle(out)
    )
    assert report["model"] == f"tiny.tflite (tflite export of {artifact.name})"
    assert report["training_check"] == "made against the audit of the model's data"
    assert table.set_index("file").loc[planted["copy"], "seen_in_training"] == "identical to a training picture"
    # a float32 export serves the Keras model's probabilities, so the same figures against the same columns
    used = table["evaluated"].to_numpy(bool)
    np.testing.assert_allclose(
        table.loc[used, list(CLASS_NAMES)].to_numpy(float),
        keras_table.loc[used, list(CLASS_NAMES)].to_numpy(float),
        atol=1e-4,
    )
    assert report["model_figures"] == keras_report["model_figures"]
    assert "the Keras model the export was made from" in format_report(report)
    # an export whose referral threshold was refitted (export's parity check): its pictures are
    # referred at its own threshold, the model's columns stay at the model's
    refitted = out.parent / (out.name + ".json")
    refitted.write_text(json.dumps(export.manifest | {"malignant_threshold": 0.999}))
    high, _ = validate_folder(
        rows, source, synthetic_manifest.table, progress=False, bootstrap=20, bundle=load_bundle(out)
    )
    assert high["model_figures"] == keras_report["model_figures"]
    assert high["figures"]["referral_sensitivity"]["value"] == 0.0
    words = "own threshold (99.9%, fitted on its validation probabilities), the model's columns at the model's"
    assert f"{words} ({artifact.malignant_threshold:.1%})" in format_report(high)
    assert "export's own threshold" not in format_report(report)  # same threshold as the model's: nothing to say

    # without its source model: measured all the same, nothing to compare with, no training check claimed
    alone, _ = validate_folder(
        rows, None, synthetic_manifest.table, progress=False, bootstrap=20, bundle=load_bundle(out)
    )
    assert alone["training_check"] == "not made: the model this export was made from is not at hand"
    assert alone["seen_in_training"] == 0 and alone["evaluated"] == report["evaluated"] + report["seen_in_training"]
    assert all(v is None for v in alone["model_figures"]["val"].values())
    assert "not available" in format_report(alone)


def test_validate_an_export_through_the_cli(tiny_model_dir: Path, labelled_folder, tmp_path: Path) -> None:
    from skin_model.export import export_model

    root, _ = labelled_folder
    out = export_model(load_artifact(tiny_model_dir), tmp_path / "tiny.tflite", "tflite")
    result = run_cli("validate", str(root), "--model", str(out), "--json", str(tmp_path / "report.json"))
    # the tiny model is not among the trained models: said, not failed
    assert "the model this export was made from, is not among the trained models" in result.stderr
    assert "Model: tiny.tflite (tflite export of" in result.stdout and "balanced accuracy" in result.stdout
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["evaluated"] > 0 and saved["training_check"].startswith("not made")


def test_the_note_does_not_show_two_thresholds_that_read_alike() -> None:
    """A float32 export's refitted threshold differs from its model's by about 1e-6: the note
    says they agree to two decimals instead of printing "27.9 %" against "27.9 %"."""
    from skin_model.local_validation import comparison_note

    report = {
        "model_pictures": {"val": 5, "test": 2},
        "export_source": "tiny",
        "model_missing_classes": {"val": [], "test": []},
    }
    alike = comparison_note(report | {"referral_threshold": 0.2794301, "model_referral_threshold": 0.279437})
    assert "own threshold, fitted on its validation probabilities: the model's (27.94%) to two decimals" in alike
    apart = comparison_note(report | {"referral_threshold": 0.2796, "model_referral_threshold": 0.2794})
    assert "own threshold (28.0%, fitted on its validation probabilities), the model's columns" in apart
    assert apart.endswith("at the model's (27.9%).")
    assert "own threshold" not in comparison_note(report | {"referral_threshold": 0.3, "model_referral_threshold": 0.3})
