"""SavedModel and TFLite exports: same predictions as Keras, verified at load, usable by `predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skin_model.artifact import ArtifactError, load_artifact
from skin_model.classes import CLASS_NAMES, MALIGNANT_MASK, malignant_score
from skin_model.conformal import PredictionSets, class_thresholds
from skin_model.evaluation import threshold_for_sensitivity
from skin_model.export import export_model, is_exported_model, load_exported
from skin_model.export_parity import answers_turned, check_export, keras_answers, parity_report, parity_summary
from skin_model.inference import Predictor
from skin_model.pipeline import load_arrays

from .conftest import run_cli
from .synthetic import jpeg_bytes, smooth_picture

# what each export may differ from the Keras float32 model by, in probability
TOLERANCE = {"none": 1e-4, "float16": 1e-2, "dynamic": 0.05, "int8": 0.15}


@pytest.fixture(scope="module")
def images(tiny_model_dir: Path) -> np.ndarray:
    size = load_artifact(tiny_model_dir).input_size
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, size, size, 3)).astype(np.uint8)


def test_savedmodel_matches_keras_with_and_without_tta(tiny_model_dir: Path, images, tmp_path: Path) -> None:
    artifact = load_artifact(tiny_model_dir)
    for tta in (False, True):
        out = export_model(artifact, tmp_path / f"sm-{tta}", "savedmodel", tta=tta)
        assert (out / "saved_model.pb").is_file() and is_exported_model(out)
        exported = load_exported(out)
        assert exported.manifest["tta"] is tta and exported.input_size == artifact.input_size
        reference = Predictor.from_artifact(artifact, tta=tta).predict_arrays(images)
        np.testing.assert_allclose(exported.predict_arrays(images), reference, atol=1e-5)


@pytest.mark.parametrize("quantize", ["none", "float16", "dynamic", "int8"])
def test_tflite_export_agrees_with_keras(tiny_model_dir: Path, images, tmp_path: Path, quantize: str) -> None:
    artifact = load_artifact(tiny_model_dir)
    representative = images[:8] if quantize == "int8" else None
    out = export_model(artifact, tmp_path / "m.tflite", "tflite", quantize, representative=representative)
    manifest = json.loads((tmp_path / "m.tflite.json").read_text())
    assert manifest["quantization"] == quantize and manifest["class_names"] == list(CLASS_NAMES)
    exported = load_exported(out)
    reference = Predictor.from_artifact(artifact).predict_arrays(images)
    probs = exported.predict_arrays(images, batch_size=5)  # uneven batches resize the interpreter
    assert probs.shape == (len(images), len(CLASS_NAMES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-2)  # int8 softmax comes in steps of 1/256
    assert np.abs(probs - reference).max() <= TOLERANCE[quantize]


def test_int8_needs_representative_images(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="representative"):
        export_model(load_artifact(tiny_model_dir), tmp_path / "m.tflite", "tflite", "int8")


def test_altered_export_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = export_model(load_artifact(tiny_model_dir), tmp_path / "m.tflite", "tflite")
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="altered"):
        load_exported(out)
    (tmp_path / "m.tflite.json").unlink()
    with pytest.raises(ArtifactError, match="no export manifest"):
        load_exported(out)


def test_parity_report_by_hand() -> None:
    y = np.array([0, 1, 1, 2])
    reference = np.eye(9)[[0, 1, 1, 2]] * 0.9 + 0.1 / 9
    exported = reference.copy()
    exported[3] = np.eye(9)[1] * 0.6 + 0.4 / 9  # the export gets the last (class 2) image wrong
    report = parity_report(reference, exported, y)
    assert report["keras"] == {"accuracy": 1.0, "balanced_accuracy": 1.0}
    # class 0: 1/1, class 1: 2/2, class 2: 0/1 -> balanced accuracy 2/3
    assert report["export"] == {"accuracy": 0.75, "balanced_accuracy": round(2 / 3, 4)}
    assert report["top1_agreement"] == 0.75
    # largest gap: class 2 of the last image, 0.9 + 0.1/9 in Keras against 0.4/9 in the export
    assert report["max_abs_probability_difference"] == pytest.approx(0.9 + 0.1 / 9 - 0.4 / 9, abs=1e-6)
    gap = report["export_minus_keras"]["balanced_accuracy"]
    assert gap["difference"] == round(2 / 3 - 1, 4)
    # resamples without the last image show no gap; with it, a loss of 1/3 or 1/2 (1 in the
    # rare resample of that image alone, fewer than 2.5 % of them)
    low, high = gap["ci95"]
    assert -0.5 <= low < high == 0.0


def test_parity_report_counts_changed_answers_and_referrals_by_hand() -> None:
    """Six pictures: Keras answers four with confidence; the export changes the top class
    of one of those and of one unsure picture, and moves malignant risk across the
    thresholds (Keras 0.5, export 0.4) for two pictures, one each way."""
    y = np.array([3, 3, 4, 4, 4, 0])  # melanoma, melanoma, nevus x3, actinic keratosis
    mel, nev, ak = (np.eye(9)[CLASS_NAMES.index(c)] for c in ("melanoma", "nevus", "actinic keratosis"))
    reference = np.stack([0.9 * mel + 0.1 * nev, 0.45 * mel + 0.55 * nev, nev, nev, 0.3 * ak + 0.7 * nev, ak])
    exported = np.stack([0.9 * mel + 0.1 * nev, 0.38 * mel + 0.62 * nev, nev, 0.6 * mel + 0.4 * nev, ak, ak])
    answered = np.array([True, False, True, True, False, True])
    report = parity_report(reference, exported, y, answered=answered, thresholds=(0.5, 0.4))
    # top classes change on pictures 3 (answered) and 4 (unsure)
    assert report["top1_agreement"] == round(4 / 6, 4)
    assert report["answered"] == {"images": 4, "top1_agreement": 0.75, "answers_changed": 1}
    # Keras refers 0 and 5 (risk 0.9, 1.0; picture 1's 0.45 is below 0.5); the export at 0.4
    # refers 0, 3 (0.6), 4 (1.0) and 5, and not 1 (0.38)
    referral = report["referral"]
    assert (referral["decisions_changed"], referral["export_refers_more"], referral["export_refers_fewer"]) == (2, 2, 0)
    assert referral["keras"]["sensitivity"] == pytest.approx(2 / 3) and referral["keras"]["specificity"] == 1.0
    assert referral["export"]["sensitivity"] == pytest.approx(2 / 3)
    assert referral["export"]["specificity"] == pytest.approx(1 / 3)
    (line,) = parity_summary({"val": report})
    assert line.startswith("validation (6 pictures): top-1 agreement 66.7%")
    assert "1 changed of the 4 answers Keras gives" in line
    assert "2 referral decisions changed (2 more referred, 0 fewer)" in line
    assert "0.667 / 0.333 at the export's threshold 40.0% (Keras 0.667 / 1.000 at 50.0%)" in line
    # pictures 3 and 4 (nevi) turn from right to wrong; classes 0, 3, 4 hold 1, 2 and 3 pictures
    assert report["answers_turned"] == {
        "right_to_wrong": 2,
        "wrong_to_right": 0,
        "mcnemar_exact_p": 0.5,  # both of 2 one way: 2 * 0.5**2
        "balanced_accuracy_per_answer": [round(1 / 9, 4), round(1 / 3, 4)],
    }
    assert "2 answers turned from right to wrong and 0 from wrong to right (exact McNemar p = 0.5)" in line
    assert "one turned answer moves balanced accuracy by 11 to 33 points here" in line


@pytest.mark.parametrize(
    ("lost", "gained", "p"),
    [
        (0, 0, 1.0),  # nothing turned: no evidence either way
        (4, 0, 0.125),  # 2 * 0.5**4
        (7, 1, 0.0703),  # 2 * (1 + 8) / 2**8
        (3, 3, 1.0),
    ],
)
def test_answers_turned_is_the_exact_mcnemar_test(lost: int, gained: int, p: float) -> None:
    """Pictures of class 1 that Keras gets right and the export wrong (lost), of class 2
    the other way (gained), and 20 of class 0 both get right."""
    y = np.array([0] * 20 + [1] * lost + [2] * gained, int)
    keras_top = np.array([0] * 20 + [1] * lost + [0] * gained, int)
    export_top = np.array([0] * 20 + [0] * lost + [2] * gained, int)
    turned = answers_turned(y, keras_top, export_top)
    assert (turned["right_to_wrong"], turned["wrong_to_right"]) == (lost, gained)
    assert turned["mcnemar_exact_p"] == pytest.approx(p, abs=1e-4)
    present = [n for n in (20, lost, gained) if n]
    assert turned["balanced_accuracy_per_answer"] == [
        round(1 / (len(present) * max(present)), 4),
        round(1 / (len(present) * min(present)), 4),
    ]


def test_export_and_predict_through_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports" / "tiny.tflite"
    result = run_cli("export", "--model", str(tiny_model_dir), "--out", str(out), "--no-parity")
    assert "wrote" in result.stdout and out.is_file()
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(smooth_picture(1, 90)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    csv = tmp_path / "p.csv"
    run_cli("predict", "--model", str(out), str(folder), "--output", str(csv), "--quiet")
    table = pd.read_csv(csv)
    assert table["status"].tolist()[0] == "ok" and table["status"][1].startswith("unreadable")
    keras_csv = tmp_path / "k.csv"
    run_cli("predict", "--model", str(tiny_model_dir), str(folder / "a.jpg"), "--output", str(keras_csv), "--quiet")
    keras_row = pd.read_csv(keras_csv).iloc[0]
    np.testing.assert_allclose(
        table.iloc[0][list(CLASS_NAMES)].to_numpy(float), keras_row[list(CLASS_NAMES)].to_numpy(float), atol=1e-4
    )
    # the model folder carries prediction sets (fitted when it was trained), and so does its
    # float32 export, whose probabilities are the model's
    assert keras_row["prediction_set"].split("; ")[0] == keras_row["predicted_class"]
    assert table.iloc[0]["prediction_set"] == keras_row["prediction_set"]


@pytest.mark.parametrize(
    ("quantize", "tta", "inherits"),
    [("none", False, True), ("float16", False, True), ("dynamic", False, False), ("none", True, False)],
)
def test_an_export_keeps_the_models_sets_only_when_it_computes_its_probabilities(
    tiny_model_dir: Path, tmp_path: Path, quantize: str, tta: bool, inherits: bool
) -> None:
    artifact = load_artifact(tiny_model_dir)
    assert artifact.manifest["tta"] is False  # the sets were fitted on single-view probabilities
    out = export_model(artifact, tmp_path / "m.tflite", "tflite", quantize, tta=tta)
    manifest = load_exported(out).manifest
    if inherits:
        assert manifest["prediction_set_thresholds"] == artifact.manifest["prediction_set_thresholds"]
        assert manifest["prediction_set_alpha"] == artifact.manifest["prediction_set_alpha"]
        assert "source model" in manifest["prediction_set_fitted_on"]
    else:  # quantized weights, or 8 views averaged instead of the one the thresholds saw
        assert PredictionSets.from_manifest(manifest) is None


def test_the_parity_check_refits_the_sets_on_the_exports_own_probabilities(
    tiny_model_dir: Path, synthetic_manifest, tmp_path: Path
) -> None:
    artifact = load_artifact(tiny_model_dir)
    cache = tmp_path / "cache"
    splits = {
        split: load_arrays(synthetic_manifest.kept(split), artifact.input_size, cache, progress=False)
        for split in ("val", "test")
    }
    out = export_model(artifact, tmp_path / "q.tflite", "tflite", "int8", representative=splits["val"][0][:8])
    assert PredictionSets.from_manifest(load_exported(out).manifest) is None  # int8: none inherited
    checked = check_export(artifact, out, splits)
    exported = load_exported(out)  # the checksum still holds: only the manifest grew
    assert set(exported.manifest["parity"]) == {"val", "test"} == set(checked["parity"])
    alpha = artifact.manifest["prediction_set_alpha"]
    val_probs, val_y = exported.predict_arrays(splits["val"][0]), splits["val"][1]
    sets = PredictionSets.from_manifest(exported.manifest)
    np.testing.assert_allclose(sets.thresholds, class_thresholds(val_probs, val_y, alpha), atol=1e-6)
    assert sets.alpha == alpha and exported.manifest["prediction_set_fitted_on"].startswith("this export's own")
    # the recorded coverage is what these sets do on the export's own test probabilities
    test_probs, test_y = exported.predict_arrays(splits["test"][0]), splits["test"][1]
    members = sets.members(test_probs)
    held = np.mean([CLASS_NAMES[c] in m for c, m in zip(test_y, members, strict=True)])
    assert checked["prediction_sets"]["test"]["coverage"] == pytest.approx(held, abs=1e-4)
    assert exported.manifest["prediction_sets"]["val"]["images"] == len(val_y)
    # the referral threshold too: the model's rule on the export's validation probabilities
    refitted = threshold_for_sensitivity(MALIGNANT_MASK[val_y], malignant_score(val_probs), 0.9)
    assert exported.manifest["malignant_threshold"] == pytest.approx(refitted, abs=1e-6)
    assert exported.manifest["source_malignant_threshold"] == artifact.malignant_threshold
    assert exported.manifest["malignant_threshold_fitted_on"].startswith("this export's own")
    test_referral = checked["parity"]["test"]["referral"]
    assert test_referral["export"]["threshold"] == exported.manifest["malignant_threshold"]
    assert test_referral["keras"]["threshold"] == artifact.malignant_threshold
    flagged = malignant_score(test_probs) >= exported.manifest["malignant_threshold"]
    assert test_referral["export"]["tp"] + test_referral["export"]["fp"] == flagged.sum()
    # this tiny model has no reliability settings: it answers where its top probability is 0.5 or more
    keras_val = Predictor.from_artifact(artifact).predict_arrays(splits["val"][0])
    assert checked["parity"]["val"]["answered"]["images"] == int((keras_val.max(axis=1) >= 0.5).sum())


def test_keras_answers_follow_the_models_abstention_rule(calibrated_dir: Path, images: np.ndarray) -> None:
    """With reliability settings, a picture is answered when its temperature-scaled
    single-view confidence reaches the model's cut-off, as in the app."""
    artifact = load_artifact(calibrated_dir)
    manifest = artifact.manifest
    predictor = Predictor.from_artifact(artifact, tta=True)  # 8 views averaged; confidence from view 0
    probs, answered = keras_answers(predictor, artifact, images)
    np.testing.assert_allclose(probs, predictor.predict_arrays(images), atol=1e-6)
    single = Predictor(artifact.model, artifact.input_size).predict_arrays(images)
    logits = np.log(np.clip(single, 1e-12, None)) / manifest["temperature"]
    calibrated = np.exp(logits - logits.max(axis=1, keepdims=True))
    calibrated /= calibrated.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(answered, calibrated.max(axis=1) >= manifest["abstain_below"])


def test_export_with_its_parity_check_through_the_cli(tiny_model_dir: Path, synthetic_data, tmp_path: Path) -> None:
    """With the data set, `export` compares the export with Keras on validation and test,
    says in words what changed, and the export carries its own referral threshold."""
    out = tmp_path / "checked.tflite"
    result = run_cli("export", "--model", str(tiny_model_dir), "--out", str(out), "--data", str(synthetic_data[0]))
    manifest = load_exported(out).manifest
    for split, title in (("val", "validation"), ("test", "test")):
        report = manifest["parity"][split]
        # float32: nothing changes
        assert report["top1_agreement"] == 1.0 and report["referral"]["decisions_changed"] == 0
        turned = report["answers_turned"]
        assert (turned["right_to_wrong"], turned["wrong_to_right"], turned["mcnemar_exact_p"]) == (0, 0, 1.0)
        line = f"{title} ({report['images']} pictures): top-1 agreement 100.0%; 0 answers turned from right to wrong"
        assert line in result.stdout
        assert "0 from wrong to right (exact McNemar p = 1); " in result.stdout
        assert "; 0 referral decisions changed (0 more referred, 0 fewer)" in result.stdout
    assert manifest["malignant_threshold_fitted_on"] == "this export's own validation probabilities"
    assert manifest["source_malignant_threshold"] == load_artifact(tiny_model_dir).malignant_threshold


def test_int8_export_without_data_says_why(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SKIN_DATA_DIR", raising=False)
    result = run_cli(
        "export", "--model", str(tiny_model_dir), "--quantize", "int8", "--out", str(tmp_path / "q.tflite"), check=False
    )
    assert result.returncode == 2
    assert "int8 calibrates on training images" in result.stderr


def test_int8_keeps_its_noisiest_layers_in_float(tiny_model_dir: Path, images, tmp_path: Path) -> None:
    """Layers whose int8 output is off by more than the given number of quantization
    steps stay float. With a threshold of 0 every quantized layer counts as noisy, so the
    export is float throughout and matches Keras far more closely than the all-int8 one;
    the manifest lists the layers kept and their error."""
    artifact = load_artifact(tiny_model_dir)
    reference = Predictor.from_artifact(artifact).predict_arrays(images)
    gaps, manifests = {}, {}
    for name, above in (("all-int8", None), ("all-float", 0.0)):
        out = export_model(artifact, tmp_path / f"{name}.tflite", "tflite", "int8", None, images[:8], above)
        manifests[name] = json.loads((tmp_path / f"{name}.tflite.json").read_text())
        gaps[name] = np.abs(load_exported(out).predict_arrays(images) - reference).max()
    assert manifests["all-int8"]["layers_kept_in_float"] == {}
    kept = manifests["all-float"]["layers_kept_in_float"]
    assert len(kept) >= 3 and all(steps > 0 for steps in kept.values())
    assert gaps["all-float"] < min(1e-3, gaps["all-int8"] / 10)


def test_int8_export_corrects_its_biases_and_says_so(tiny_model_dir: Path, images, tmp_path: Path) -> None:
    """By default an int8 export's layer biases are corrected on calibration images
    (what correction does is tested in test_int8_bias); the manifest says on how many
    images and layers, and the export still agrees with Keras; 0 images turns it off."""
    artifact = load_artifact(tiny_model_dir)
    reference = Predictor.from_artifact(artifact).predict_arrays(images)
    manifests = {}
    for n in (0, 8):
        out = export_model(artifact, tmp_path / f"bc{n}.tflite", "tflite", "int8", None, images[:8], None, n)
        manifests[n] = json.loads((tmp_path / f"bc{n}.tflite.json").read_text())
        assert np.abs(load_exported(out).predict_arrays(images) - reference).max() <= TOLERANCE["int8"]
    assert manifests[0]["bias_correction"] is None
    summary = manifests[8]["bias_correction"]
    assert summary["images"] == 8 and summary["layers_corrected"] >= 3 and summary["mean_shift_steps"] > 0


def test_int8_bias_correction_leaves_float_layers_alone(tiny_model_dir: Path, images, tmp_path: Path) -> None:
    artifact = load_artifact(tiny_model_dir)
    out = export_model(artifact, tmp_path / "f.tflite", "tflite", "int8", None, images[:8], 0.0, 8)
    assert json.loads((tmp_path / "f.tflite.json").read_text())["bias_correction"]["layers_corrected"] == 0
    reference = Predictor.from_artifact(artifact).predict_arrays(images)
    assert np.abs(load_exported(out).predict_arrays(images) - reference).max() < 1e-3


def test_answers_turned_on_no_pictures_has_no_step() -> None:
    none = np.array([], int)
    assert answers_turned(none, none, none) == {
        "right_to_wrong": 0,
        "wrong_to_right": 0,
        "mcnemar_exact_p": 1.0,
        "balanced_accuracy_per_answer": None,
    }


def test_turns_and_centre_views_are_the_turns_of_the_picture_and_of_its_centre() -> None:
    import tensorflow as tf

    from skin_model.test_time_views import CENTRE_SHARE, turns_and_centre_views

    x = np.random.default_rng(3).random((2, 20, 20, 3)).astype(np.float32)
    views = [v.numpy() for v in turns_and_centre_views(tf.constant(x))]
    assert len(views) == 8 and all(v.shape == x.shape for v in views)
    np.testing.assert_array_equal(views[0], x)  # view 0: the picture itself (maps and features come from it)
    np.testing.assert_array_equal(views[1], np.rot90(x, 1, axes=(1, 2)))
    margin = round(20 * (1 - CENTRE_SHARE) / 2)
    assert margin == 2
    centre = tf.image.resize(x[:, 2:18, 2:18], (20, 20)).numpy()
    np.testing.assert_allclose(views[4], centre, atol=1e-6)
    np.testing.assert_allclose(views[7], np.rot90(centre, 3, axes=(1, 2)), atol=1e-6)
    # the rim is not seen by the centre views: changing it moves only the whole-picture views
    rimmed = x.copy()
    rimmed[:, :2] = 0.0
    changed = [v.numpy() for v in turns_and_centre_views(tf.constant(rimmed))]
    assert not np.allclose(changed[0], views[0]) and np.allclose(changed[4], views[4])


def test_a_model_is_run_with_the_views_its_manifest_names(tiny_model_dir: Path, images, tmp_path: Path) -> None:
    import shutil

    from skin_model.artifact import read_manifest, write_manifest

    folder = tmp_path / "dihedral"
    shutil.copytree(tiny_model_dir, folder)
    manifest = read_manifest(folder)
    assert manifest["tta_views"] == "turns_and_centre"  # what training now records
    write_manifest(folder, {k: v for k, v in manifest.items() if k not in ("tta_views", "manifest_sha256")})
    dihedral = Predictor.from_artifact(load_artifact(folder), tta=True)
    turns = Predictor.from_artifact(load_artifact(tiny_model_dir), tta=True)
    assert (dihedral.views, turns.views) == ("dihedral", "turns_and_centre")  # older models: dihedral
    by_hand = np.mean([turns.model(v, training=False).numpy() for v in _views(images)], axis=0)
    np.testing.assert_allclose(turns.predict_arrays(images), by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="unknown test-time views"):
        Predictor(turns.model, turns.input_size, tta=True, views="sideways")
    out = export_model(load_artifact(tiny_model_dir), tmp_path / "sm", "savedmodel", tta=True)
    assert load_exported(out).manifest["tta_views"] == "turns_and_centre"


def _views(images: np.ndarray):
    import tensorflow as tf

    from skin_model.test_time_views import turns_and_centre_views

    return turns_and_centre_views(tf.constant(images, tf.float32))
