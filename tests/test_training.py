"""train -> save -> load -> evaluate -> predict, end to end on a tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skin_model.artifact import ArtifactError, load_artifact
from skin_model.classes import CLASS_NAMES
from skin_model.training import class_weights

from .conftest import run_cli
from .synthetic import jpeg_bytes, smooth_picture


def test_artifact_files_and_manifest(tiny_model_dir: Path) -> None:
    for name in ("model.keras", "manifest.json", "evaluation.json", "history.csv"):
        assert (tiny_model_dir / name).is_file()
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert manifest["class_names"] == list(CLASS_NAMES)
    assert manifest["input_size"] == 32
    assert manifest["epochs_run"] == 2
    assert 0 <= manifest["malignant_threshold"] <= 1
    assert len(manifest["data_fingerprint"]) == 64
    assert manifest["training_wall_time_s"] > 0
    evaluation = json.loads((tiny_model_dir / "evaluation.json").read_text())
    assert evaluation["test"]["split"] == "test" and evaluation["val"]["split"] == "val"
    assert evaluation["test"]["n_images"] == 20  # the clean seed Test folder (18) and 2 held-out lesions
    for split in ("val", "test"):  # the per-collection figures cover every image of the split
        groups = evaluation[split]["by_collection"]
        assert sum(g["n_images"] for g in groups.values()) == evaluation[split]["n_images"]
    history = pd.read_csv(tiny_model_dir / "history.csv")
    assert {"loss", "accuracy", "val_balanced_accuracy"} <= set(history.columns)
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(tiny_model_dir / "model.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        assert "optimizer" not in weights  # inference weights only


def test_loaded_model_predicts_like_the_saved_one(tiny_model_dir: Path) -> None:
    artifact = load_artifact(tiny_model_dir)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    probs = artifact.model(x, training=False).numpy()
    assert probs.shape == (4, 9)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("model_fixture", "file"), [("tiny_model_dir", "model.keras"), ("calibrated_dir", "reliability.npz")]
)
def test_altered_files_are_refused(request, model_fixture: str, file: str, tmp_path: Path) -> None:
    copy = tmp_path / "altered"
    shutil.copytree(request.getfixturevalue(model_fixture), copy)
    with (copy / file).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(copy)


def test_altered_manifest_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    for key, value in (("weights_sha256", "0" * 64), ("malignant_threshold", 0.99)):
        copy = tmp_path / key
        shutil.copytree(tiny_model_dir, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest[key] = value
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ArtifactError, match="checksum"):
            load_artifact(copy)


def test_predict_cli_csv(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in put"
    (folder / "sub dir").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes(smooth_picture(1, 80)))
    (folder / "sub dir" / "ünï b.jpg").write_bytes(jpeg_bytes(smooth_picture(2, 300)))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "preds.csv"
    result = run_cli("predict", "--model", str(tiny_model_dir), str(folder), "--output", str(out), "--quiet")
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "file",
        "status",
        "predicted_class",
        *CLASS_NAMES,
        "malignant_probability",
        "high_malignant_risk",
        "advice",
        "similar_cases_majority",
        "jpeg_quality",
        "prediction_set",
    ]
    assert table["similar_cases_majority"].isna().all()  # the tiny model has no case index
    # prediction sets were fitted when the model was trained: each differential starts with the answer
    ok = table[table["status"] == "ok"]
    assert [row.split("; ")[0] for row in ok["prediction_set"]] == ok["predicted_class"].tolist()
    assert table["file"].tolist() == ["a.jpg", "notes.txt", "sub dir/ünï b.jpg"]
    assert table["status"].tolist()[0] == "ok" and table["status"].tolist()[2] == "ok"
    assert table["jpeg_quality"].tolist()[0] == 92 and table["jpeg_quality"].isna().tolist()[1]  # the text file
    assert "below quality 90" not in result.stderr  # both pictures were saved at 92
    (folder / "squeezed.jpg").write_bytes(jpeg_bytes(smooth_picture(3, 80), quality=70))
    again = run_cli("predict", "--model", str(tiny_model_dir), str(folder), "--output", str(out), "--quiet")
    assert "note: 1 JPEG(s) were saved below quality 90" in again.stderr
    assert table["status"][1].startswith("unreadable: not an image")
    ok = table[table["status"] == "ok"]
    np.testing.assert_allclose(ok[list(CLASS_NAMES)].sum(axis=1), 1.0, atol=1e-4)
    malignant = ["actinic keratosis", "basal cell carcinoma", "melanoma", "squamous cell carcinoma"]
    np.testing.assert_allclose(ok["malignant_probability"], ok[malignant].sum(axis=1), atol=1e-4)


def test_predict_exit_code_when_nothing_readable(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"")
    result = run_cli(
        "predict",
        "--model",
        str(tiny_model_dir),
        str(tmp_path / "x.jpg"),
        "--output",
        str(tmp_path / "p.csv"),
        "--quiet",
        check=False,
    )
    assert result.returncode == 1
    assert "empty" in pd.read_csv(tmp_path / "p.csv")["status"][0]


def test_class_weights_balance_the_classes() -> None:
    y = np.array([0, 0, 0, 1])
    w = class_weights(y, n_classes=3)
    assert w[0] * 3 == pytest.approx(w[1] * 1)  # each class contributes equally
    assert w[2] == 0
    assert (w[y]).mean() == pytest.approx(1.0)


def test_source_balanced_weights_equalise_classes_within_each_collection() -> None:
    """Hand-computed: collection a holds 3 melanomas (0), 1 nevus (1) and 2 of class 2,
    b holds 1 melanoma and 3 nevi. Plain class weights: 10 / (4 * 3) for classes 0 and
    1, 10 / (2 * 3) for class 2. Each class's total (10 / 3 for 0 and 1) is split in
    halves between a and b; class 2, held by a alone, keeps its plain weight."""
    from skin_model.sources import source_collection
    from skin_model.training import TrainConfig, source_balanced_weights, training_sample_weights

    y = np.array([0, 0, 0, 1, 2, 2, 0, 1, 1, 1])
    collections = np.array(["a"] * 6 + ["b"] * 4)
    w = source_balanced_weights(y, collections, n_classes=3)
    expected = [5 / 9] * 3 + [5 / 3] + [5 / 3] * 2 + [5 / 3] + [5 / 9] * 3
    np.testing.assert_allclose(w, expected)
    assert w.mean() == pytest.approx(1.0)
    for collection in "ab":  # within a collection, melanomas and nevi weigh the same
        inside = collections == collection
        assert w[inside & (y == 0)].sum() == pytest.approx(w[inside & (y == 1)].sum())
    np.testing.assert_allclose(class_weights(y, 3)[y], training_sample_weights(TrainConfig(), y, collections))
    with pytest.raises(ValueError, match="class balancing"):
        training_sample_weights(TrainConfig(class_balanced=False, source_balanced=True), y, collections)
    assert source_collection("seed_train") == source_collection("seed_test") != source_collection("isic2017")


def test_logit_adjusted_loss_by_hand() -> None:
    """Class prior 3/4, 1/4 (classes 0 and 1; the other classes absent, counted as 1 of
    4): the loss is the smoothed cross-entropy of softmax(log p + tau log prior)."""
    from skin_model.training import TrainConfig, training_loss, training_sample_weights

    y = np.array([0, 0, 0, 1])
    tau, smoothing = 1.0, 0.1
    probs = np.full((1, len(CLASS_NAMES)), 0.02, np.float32)
    probs[0, :2] = [0.26, 0.6]
    loss = training_loss(TrainConfig(logit_adjustment=tau, label_smoothing=smoothing), y)
    target = np.zeros((1, len(CLASS_NAMES)), np.float32)
    target[0, 1] = 1.0
    prior = np.array([3, 1] + [1] * (len(CLASS_NAMES) - 2)) / 4
    shifted = np.log(probs[0]) + tau * np.log(prior)
    log_softmax = shifted - np.log(np.exp(shifted).sum())
    smoothed = target[0] * (1 - smoothing) + smoothing / len(CLASS_NAMES)
    assert float(np.asarray(loss(target, probs)).mean()) == pytest.approx(-(smoothed * log_softmax).sum(), rel=1e-5)
    # the loss balances the classes itself: no class weights on top
    np.testing.assert_array_equal(training_sample_weights(TrainConfig(logit_adjustment=tau), y, np.array(["a"] * 4)), 1)


def test_logit_adjustment_moves_the_boundary_to_the_balanced_one() -> None:
    """One feature, 900 pictures of class 0 ~ N(0, 1) and 100 of class 1 ~ N(2, 1): plain
    cross-entropy learns the boundary of the overall error (x = 1 + ln 9 / 2 = 2.1), which
    misses half of the rare class; the logit-adjusted loss learns the balanced one (x = 1)."""
    import keras

    from skin_model.training import TrainConfig, training_loss

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 900), rng.normal(2, 1, 100)]).astype(np.float32)[:, None]
    y = np.array([0] * 900 + [1] * 100)
    onehot = np.eye(len(CLASS_NAMES), dtype=np.float32)[y]
    grid = np.linspace(-1, 4, 501, dtype=np.float32)[:, None]
    boundaries = {}
    for tau in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(len(CLASS_NAMES), activation="softmax")])
        model.compile(
            keras.optimizers.Adam(0.05), training_loss(TrainConfig(logit_adjustment=tau, label_smoothing=0), y)
        )
        model.fit(x, onehot, batch_size=100, epochs=150, verbose=0)
        p = model.predict(grid, verbose=0)
        boundaries[tau] = float(grid[np.argmax(p[:, 1] > p[:, 0]), 0])
    assert boundaries[0.0] == pytest.approx(2.1, abs=0.25)
    assert boundaries[1.0] == pytest.approx(1.0, abs=0.25)


def test_calibration_is_recorded_and_used(calibrated_dir: Path) -> None:
    from skin_model.inference import Predictor, diagnose
    from skin_model.reliability import ReliabilityCheck

    artifact = load_artifact(calibrated_dir)
    manifest = artifact.manifest
    assert manifest["temperature"] > 0 and manifest["ood_threshold"] > 0 and 0 < manifest["abstain_below"] <= 1
    check = ReliabilityCheck.from_artifact(artifact)
    result = diagnose(Predictor.from_artifact(artifact), smooth_picture(3, 90), artifact.malignant_threshold, check)
    assert isinstance(result.out_of_distribution, bool) and 0 < result.calibrated_confidence <= 1
    assert result.as_dict()["refer_to_dermatologist"] == result.refer


def test_shared_model_gives_same_results_under_concurrent_use(tiny_model_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from skin_model.inference import Predictor

    predictor = Predictor.from_artifact(load_artifact(tiny_model_dir))
    images = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3)).astype(np.uint8)
    sequential = [predictor.predict_arrays(img[None])[0] for img in images]
    with ThreadPoolExecutor(max_workers=20) as pool:
        concurrent = list(pool.map(lambda img: predictor.predict_arrays(img[None])[0], images))
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def _flatten_arrays(outputs) -> list[np.ndarray]:
    """Arrays of a (probabilities, ..., [features]) result, lists opened."""
    return [a for item in outputs for a in (item if isinstance(item, list) else [item])]


def test_frozen_passes_are_frozen_once_and_live_passes_follow_the_weights(calibrated_dir: Path) -> None:
    """A frozen predictor turns its weights into constants of each traced pass on first
    use (once, even when the first calls come from several threads at once) and answers
    as the live pass does; a live predictor (the default, and what training builds)
    follows weight updates, which a frozen pass would not."""
    from concurrent.futures import ThreadPoolExecutor

    import keras

    from skin_model.inference import Predictor
    from skin_model.passes import FrozenOnFirstCall

    artifact = load_artifact(calibrated_dir)  # a private copy of the model: its weights change below
    layers = artifact.manifest["ood_layers"]
    frozen = Predictor.from_artifact(artifact, tta=True, explain=True, freeze=True)
    views = artifact.manifest["tta_views"]
    live = Predictor(artifact.model, artifact.input_size, tta=True, feature_layers=layers, explain=True, views=views)
    assert not isinstance(Predictor.from_artifact(artifact, tta=True)._forward_views, FrozenOnFirstCall)
    size = artifact.input_size
    x = np.random.default_rng(2).integers(0, 256, (8, size, size, 3)).astype(np.uint8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        firsts = list(pool.map(lambda i: frozen.predict_arrays(x[i : i + 1])[0], range(len(x))))
    np.testing.assert_allclose(np.stack(firsts), live.predict_arrays(x), atol=1e-5)
    for ours, theirs in (
        (frozen.predict_with_features(x), live.predict_with_features(x)),
        (frozen.predict_explained(x, "melanoma"), live.predict_explained(x, "melanoma")),
    ):
        flat_ours, flat_theirs = _flatten_arrays(ours), _flatten_arrays(theirs)
        assert len(flat_ours) == len(flat_theirs) >= 3
        for a, b in zip(flat_ours, flat_theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # with TTA the answer runs the views pass (every count of views)
    assert isinstance(frozen._forward_views, FrozenOnFirstCall)
    assert not isinstance(live._forward_views, FrozenOnFirstCall)

    before = frozen.predict_arrays(x)
    head = [layer for layer in artifact.model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + np.eye(len(bias), dtype=bias.dtype)[0] * 10])  # as a training step would
    np.testing.assert_allclose(frozen.predict_arrays(x), before, atol=1e-6)
    assert (live.predict_arrays(x).argmax(axis=1) == 0).all()


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_explain_cli_writes_overlay_and_raw_map(tiny_model_dir: Path, tmp_path: Path, method: str) -> None:
    from PIL import Image

    from skin_model.inference import Predictor, diagnose

    image = tmp_path / "lesion.jpg"
    image.write_bytes(jpeg_bytes(smooth_picture(9, 120)))
    result = run_cli(
        "explain",
        str(image),
        "--model",
        str(tiny_model_dir),
        "--method",
        method,
        "--class",
        "melanoma",
        "--output",
        str(tmp_path / "o.png"),
        "--raw",
        str(tmp_path / "m.npy"),
    )
    assert "for 'melanoma'" in result.stdout
    # the app's verdict on the same picture, printed in the app's words
    artifact = load_artifact(tiny_model_dir)
    verdict = diagnose(Predictor.from_artifact(artifact), Image.open(image), artifact.malignant_threshold)
    risk_line = next(line for line in result.stdout.splitlines() if line.startswith("malignant risk"))
    assert risk_line.startswith(f"malignant risk {verdict.malignant_probability:.1%} (referral threshold ")
    assert risk_line.endswith(f"advice: {verdict.advice}") if verdict.refer else "advice: none" in risk_line
    assert "blurring the 10% of the picture this map rates highest" in result.stdout  # the map's own check
    assert "Stability: the answer " in result.stdout and "small changes of the photo" in result.stdout
    assert Image.open(tmp_path / "o.png").size == (120, 120)
    heat = np.load(tmp_path / "m.npy")
    assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1


def test_bench_reports_the_required_figures(tiny_model_dir: Path) -> None:
    from skin_model.bench import run_benchmark

    results = run_benchmark(tiny_model_dir, repeats=3, folder_images=10)
    for key in (
        "load_s",
        "latency_ms_p50",
        "latency_ms_p95",
        "throughput_images_per_s",
        "throughput_tta_images_per_s",
        "gradcam_ms_p50",
        "smoothgrad_ms_p50",
        "diagnosis_with_gradcam_ms_p50",
        "evidence_check_ms_p50",
        "stability_check_ms_p50",
        "analysis_ms_p50",
        "stability_ms_p50",
        "full_analysis_ms_p50",
        "latency_ms_p50_frozen",
        "freeze_s",
        "peak_rss_mb",
        "tflite_latency_ms_p50",
        "tflite_throughput_images_per_s",
        "machine_gflops_start",
        "machine_gflops_end",
    ):
        assert results[key] > 0, key
    assert results["latency_ms_p95"] >= results["latency_ms_p50"]
    assert results["tflite_quantization"] == "none" and results["tflite_load_s"] >= 0


def test_machine_speed_is_the_matrix_products_flops_over_their_median_time(monkeypatch) -> None:
    from skin_model import bench

    monkeypatch.setattr(bench, "_timed", lambda fn, repeats: (fn(), [0.004, 0.001, 0.002])[1])
    # 2 * 100**3 = 2e6 floating-point operations in the median 0.002 s: 1 GFLOP/s
    assert bench.machine_gflops(n=100) == 1.0


def test_predict_gives_referral_advice_for_a_blank_frame(calibrated_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (200, 200), (250, 250, 250)).save(tmp_path / "blank.png")
    (tmp_path / "lesion.jpg").write_bytes(jpeg_bytes(smooth_picture(4, 90)))
    out = tmp_path / "p.csv"
    run_cli("predict", "--model", str(calibrated_dir), str(tmp_path), "--output", str(out), "--quiet")
    table = pd.read_csv(out, keep_default_na=False).set_index("file")
    assert table.loc["blank.png", "status"] == "ok"  # still classified, so the CSV stays complete
    assert table.loc["blank.png", "advice"].startswith("not a dermoscopic lesion image (blank")
    assert table.loc["lesion.jpg", "advice"] in {
        "",
        "uncertain: refer",
        "high malignant risk: refer",
        "high malignant risk, uncertain: refer",
    }


def test_predict_csv_refers_exactly_where_the_app_would(calibrated_dir: Path, tmp_path: Path) -> None:
    """The CSV's advice and risk flag agree picture by picture with the Diagnose page's
    verdict (:func:`diagnose`), including referral for a malignant risk at or above the
    model's threshold, which the reliability check alone does not give."""
    from PIL import Image

    from skin_model.artifact import write_manifest
    from skin_model.inference import Predictor, diagnose
    from skin_model.reliability import ReliabilityCheck

    pictures, model_dir = tmp_path / "pictures", tmp_path / "model"
    pictures.mkdir()
    for k in range(12):
        (pictures / f"p{k:02d}.jpg").write_bytes(jpeg_bytes(smooth_picture(k, 60 + 15 * k)))
    shutil.copytree(calibrated_dir, model_dir)
    artifact = load_artifact(model_dir)
    predictor, reliability = Predictor.from_artifact(artifact), ReliabilityCheck.from_artifact(artifact)

    def seen(k: int, threshold: float):
        return diagnose(predictor, Image.open(pictures / f"p{k:02d}.jpg"), threshold, reliability)

    # a threshold between the pictures' risks, so that both answers occur
    risks = sorted(seen(k, 0.5).malignant_probability for k in range(12))
    threshold = (risks[5] + risks[6]) / 2
    write_manifest(model_dir, {**artifact.manifest, "malignant_threshold": threshold})
    out = tmp_path / "p.csv"
    run_cli("predict", "--model", str(model_dir), str(pictures), "--output", str(out), "--quiet")
    table = pd.read_csv(out, keep_default_na=False).set_index("file")
    assert table["high_malignant_risk"].tolist().count(True) == 6
    for k in range(12):
        app, row = seen(k, threshold), table.loc[f"p{k:02d}.jpg"]
        assert row["high_malignant_risk"] == app.high_risk
        assert (row["advice"] != "") == app.refer
        assert row["advice"].startswith("high malignant risk") == (app.high_risk and not app.out_of_distribution)
        assert ("uncertain" in row["advice"]) == (app.unsure and not app.out_of_distribution)


def test_referral_advice_by_hand() -> None:
    from skin_model.classes import CLASS_NAMES
    from skin_model.inference import referral_advice

    melanoma, nevus = CLASS_NAMES.index("melanoma"), CLASS_NAMES.index("nevus")
    probs = np.full((4, 9), 0.0, np.float32)
    probs[0, melanoma] = 1.0  # sure and malignant
    probs[1, nevus] = 1.0  # sure and benign
    probs[2, [melanoma, nevus]] = 0.45, 0.55  # risk 0.45, top 0.55
    probs[3, [melanoma, nevus]] = 0.4, 0.4  # risk 0.4, top 0.4 < 0.5: uncertain without a check
    probs[3, 0] = 0.2  # actinic keratosis: risk 0.6
    advice, high = referral_advice(probs, None, None, 0.5)
    assert high == [True, False, False, True]
    assert advice == ["high malignant risk: refer", "", "", "high malignant risk, uncertain: refer"]
    checked = {
        "out_of_distribution": np.array([True, False, False, False]),
        "ood_reason": np.array(["blank frame", "", "", ""]),
        "calibrated_confidence": np.array([0.9, 0.5, 0.9, 0.9]),
    }
    advice, high = referral_advice(probs, checked, 0.6, 0.5)
    assert advice == [
        "not a dermoscopic lesion image (blank frame): refer",
        "uncertain: refer",
        "",
        "high malignant risk: refer",
    ]
    assert referral_advice(probs, None, None, None)[1] == [None] * 4


def test_weight_averaging_ships_the_averaged_weights(synthetic_manifest, tmp_path: Path) -> None:
    """Two steps per epoch. With momentum 1 the moving average is the weights after the
    first step and never moves again, so a three-epoch and a one-epoch averaged run must
    ship identical weights, and those must differ from a one-epoch run without averaging
    (which ships the weights after two steps). Momentum 0 must reproduce plain training."""
    from skin_model.training import TrainConfig, train

    n_train = len(synthetic_manifest.kept("train"))
    common = dict(arch="tiny_cnn", batch_size=-(-n_train // 2), patience=5, bootstrap=0, warmup_epochs=1)

    def shipped(name: str, **overrides) -> list[np.ndarray]:
        out = tmp_path / name
        train(TrainConfig(**common | overrides), synthetic_manifest, out, cache_dir=tmp_path / "cache", progress=False)
        return load_artifact(out).model.get_weights()

    frozen_three = shipped("frozen_three", epochs=3, ema_momentum=1.0)
    frozen_one = shipped("frozen_one", epochs=1, ema_momentum=1.0)
    plain_one = shipped("plain_one", epochs=1)
    follows_one = shipped("follows_one", epochs=1, ema_momentum=0.0)
    for a, b in zip(frozen_three, frozen_one, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for plain, follows in zip(plain_one, follows_one, strict=True):
        np.testing.assert_allclose(plain, follows, atol=1e-6)
    assert any(not np.allclose(a, p, atol=1e-5) for a, p in zip(frozen_one, plain_one, strict=True))


def test_mixup_reaches_training_and_is_recorded(synthetic_manifest, tmp_path: Path) -> None:
    """The same seeded one-epoch run with and without mixup ships different weights, and
    the manifest records the setting."""
    from skin_model.training import TrainConfig, train

    common = dict(arch="tiny_cnn", epochs=1, patience=5, bootstrap=0, warmup_epochs=1)
    runs = {}
    for name, alpha in (("plain", None), ("mixup", 0.4)):
        out = tmp_path / name
        train(
            TrainConfig(**common, mixup_alpha=alpha), synthetic_manifest, out, cache_dir=tmp_path / "c", progress=False
        )
        runs[name] = load_artifact(out)
    assert runs["mixup"].manifest["training_config"]["mixup_alpha"] == 0.4
    assert runs["plain"].manifest["training_config"]["mixup_alpha"] is None
    pairs = zip(runs["plain"].model.get_weights(), runs["mixup"].model.get_weights(), strict=True)
    assert any(not np.allclose(a, b, atol=1e-6) for a, b in pairs)


@pytest.mark.parametrize("train_batch_norm", [False, True])
def test_finetuning_freezes_early_layers_and_chosen_batch_norms(train_batch_norm: bool) -> None:
    import keras

    from skin_model.training import freeze_for_finetuning

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="early_conv")(inputs)
    x = keras.layers.BatchNormalization(name="early_bn")(x)
    x = keras.layers.Conv2D(4, 3, name="late_conv")(x)
    x = keras.layers.BatchNormalization(name="late_bn")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    freeze_for_finetuning(model, "late_conv", train_batch_norm)
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"late_conv", "head"} | ({"late_bn"} if train_batch_norm else set())
    # a trainable batch norm learns its scale and offset; a frozen one keeps everything
    assert len(model.trainable_weights) == 2 + 2 + (2 if train_batch_norm else 0)


def test_head_warm_up_keeps_each_shuffled_view_with_its_label() -> None:
    """The warm-up reads backbone features of shuffled, augmented views; each must keep
    its own label and weight. Dark pictures are class 0, bright ones class 3: a head fed
    the right labels separates them perfectly, one fed shuffled labels could not."""
    import keras

    from skin_model.models import build_model
    from skin_model.training import TrainConfig, warm_up_head

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = np.array([0, 3] * 12)
    x = (np.where(y == 0, 40, 210)[:, None, None, None] + rng.integers(-20, 20, (24, 32, 32, 3))).astype(np.uint8)
    model = build_model("effnet_lite0", 32)
    before = model.get_layer("probabilities").get_weights()[0].copy()
    config = TrainConfig(arch="effnet_lite0", feature_views=2, head_epochs=60)
    collections = np.array(["seed"] * 16)
    score, weights, search = warm_up_head(model, config, (x[:16], y[:16], x[16:], y[16:]), collections, False)
    assert score == 1.0 and search is None
    assert not np.allclose(model.get_layer("probabilities").get_weights()[0], before)
    assert len(weights) == len(model.get_weights())


def test_tempered_class_weights_by_hand() -> None:
    """Inverse frequency to a power: 6 nevi and 2 melanomas give raw weights 6^-p and
    2^-p, scaled so the 8 pictures average 1."""
    from skin_model.training import class_weights

    y = np.array([4] * 6 + [3] * 2)
    full = class_weights(y)
    assert full[4] == pytest.approx(8 / (2 * 6)) and full[3] == pytest.approx(8 / (2 * 2))
    half = class_weights(y, power=0.5)
    raw4, raw3 = 6**-0.5, 2**-0.5
    assert half[4] == pytest.approx(raw4 * 8 / (6 * raw4 + 2 * raw3))
    assert half[3] == pytest.approx(raw3 * 8 / (6 * raw4 + 2 * raw3))
    assert class_weights(y, power=0.0)[[3, 4]] == pytest.approx([1.0, 1.0])
    assert (full[y].mean(), half[y].mean()) == pytest.approx((1.0, 1.0))


def test_selection_score_puts_the_nevus_floor_first() -> None:
    from skin_model.warmup import selection_score

    nevus, melanoma = CLASS_NAMES.index("nevus"), CLASS_NAMES.index("melanoma")
    y = np.array([nevus] * 4 + [melanoma] * 4)
    onehot = np.eye(len(CLASS_NAMES))
    keeps_nevi = onehot[[nevus] * 4 + [nevus, melanoma, melanoma, melanoma]]  # nevus recall 1, bal. acc 0.875
    drops_nevi = onehot[[nevus, melanoma, melanoma, melanoma] + [melanoma] * 4]  # nevus recall 0.25, bal. acc 0.625
    assert selection_score(y, keeps_nevi) == pytest.approx(0.875)
    assert selection_score(y, drops_nevi, nevus_floor=0.8) == pytest.approx(0.625 - 1)
    assert selection_score(y, keeps_nevi, nevus_floor=0.8) == pytest.approx(0.875)


def test_weighting_search_keeps_the_best_candidate_and_reports_every_one() -> None:
    from skin_model.warmup import choose_weighting

    nevus, melanoma = CLASS_NAMES.index("nevus"), CLASS_NAMES.index("melanoma")
    y_val = np.array([nevus] * 4 + [melanoma] * 4)
    onehot = np.eye(len(CLASS_NAMES))
    answers = {  # per (power, shared): validation answers of its head
        (0.5, False): [nevus] * 4 + [nevus, melanoma, melanoma, melanoma],
        (1.0, False): [nevus, melanoma, melanoma, melanoma] + [melanoma] * 4,
    }

    def fit(power: float, shared: bool):
        probs = onehot[answers[(power, shared)]]
        from skin_model.warmup import selection_score

        return selection_score(y_val, probs, 0.8), [np.full(2, power)], probs

    report, weights = choose_weighting(fit, y_val, candidates=tuple(answers))
    assert report["chosen"] == {"class_weight_power": 0.5, "source_balanced": False}
    assert weights[0].tolist() == [0.5, 0.5]
    assert [t["nevus_recall"] for t in report["tried"]] == [1.0, 0.25]
    assert report["tried"][0]["balanced_accuracy"] == 0.875


def test_training_checkpoint_refuses_other_settings_and_clears_when_fresh(tmp_path: Path) -> None:
    from skin_model.checkpoint import ConfigMismatchError, TrainingCheckpoint

    first = TrainingCheckpoint(tmp_path, {"epochs": 8, "seed": 1}, resume=False)
    first.write_weights("w.npz", [np.arange(3), np.ones((2, 2))])
    again = TrainingCheckpoint(tmp_path, {"epochs": 8, "seed": 1}, resume=True)
    assert again.resumed and [w.tolist() for w in again.read_weights("w.npz")] == [[0, 1, 2], [[1, 1], [1, 1]]]
    with pytest.raises(ConfigMismatchError, match="seed"):
        TrainingCheckpoint(tmp_path, {"epochs": 8, "seed": 2}, resume=True)
    longer = TrainingCheckpoint(tmp_path, {"epochs": 9, "seed": 1}, resume=True)  # more epochs may be given
    assert longer.resumed and longer.extended == {"epochs": (8, 9)}
    fresh = TrainingCheckpoint(tmp_path, {"epochs": 9, "seed": 1}, resume=False)
    assert not fresh.resumed and fresh.read_weights("w.npz") is None
    fresh.finish()
    assert not (tmp_path / "checkpoint").exists()


def test_worklist_puts_referrals_first_then_risk() -> None:
    from skin_model.file_predictions import worklist_table
    from skin_model.inference import FilePrediction

    melanoma, nevus = CLASS_NAMES.index("melanoma"), CLASS_NAMES.index("nevus")

    def probs(risk: float) -> np.ndarray:
        p = np.zeros(9, np.float32)
        p[[melanoma, nevus]] = risk, 1 - risk
        return p

    rows = [
        FilePrediction("a", "ok", probs(0.1), "", False),
        FilePrediction("b", "unreadable: the file is empty", None),
        FilePrediction("c", "ok", probs(0.2), "uncertain: refer", False),
        FilePrediction("d", "ok", probs(0.9), "high malignant risk: refer", True),
        FilePrediction("e", "ok", probs(0.3), "", False),
        FilePrediction("f", "ok", probs(0.6), "high malignant risk: refer", True),
    ]
    table = worklist_table(rows, [1, 2, 3, 4, 5, 6])
    assert table["file"].tolist() == ["d", "f", "c", "e", "a", "b"]
    assert table["#"].tolist() == [4, 6, 3, 5, 1, 2]
    assert table.loc[0, "malignant_probability"] == pytest.approx(0.9)


def test_layer_decay_scales_each_blocks_learning_rate() -> None:
    """Adam's first step moves every weight by about its learning rate (the update is
    m / sqrt(v) = sign of the gradient), so after one step each weight must have moved
    by the head's rate times decay ** (blocks below the last), the stem one more."""
    import keras

    from skin_model.training import layer_rate_scales, layerwise_adamw

    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="stem_conv")(inputs)
    h = keras.layers.Dense(4, name="block0_expand_conv")(h)
    h = keras.layers.Dense(4, name="block1_expand_conv")(h)
    h = keras.layers.Dense(4, name="block2_project_conv")(h)
    h = keras.layers.Dense(4, name="top_conv")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="probabilities")(h))
    scales = layer_rate_scales(model, 0.5)
    assert scales["block2_project_conv/kernel"] == 1 and scales["top_conv/bias"] == 1
    assert scales["probabilities/kernel"] == 1
    assert (scales["block1_expand_conv/kernel"], scales["block0_expand_conv/bias"], scales["stem_conv/kernel"]) == (
        0.5,
        0.25,
        0.125,
    )
    before = {w.path: w.numpy().copy() for w in model.weights}
    optimizer = layerwise_adamw(scales, learning_rate=1e-3, weight_decay=0.0)
    model.compile(optimizer, "mean_squared_error")  # a gradient for every weight, whatever the initial outputs
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(8, 4)), np.eye(3)[rng.integers(0, 3, 8)])
    for weight in model.weights:
        step = np.abs(weight.numpy() - before[weight.path])
        moved = step[step > 0]  # a weight whose gradient is exactly zero does not move
        assert len(moved) and np.allclose(moved, 1e-3 * scales[weight.path], rtol=0.05), weight.path


def test_explain_cli_notes_a_heavily_compressed_jpeg(tiny_model_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "squeezed.jpg"
    image.write_bytes(jpeg_bytes(smooth_picture(9, 120), quality=60))
    result = run_cli("explain", str(image), "--model", str(tiny_model_dir), "--output", str(tmp_path / "o.png"))
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    # the tiny model ships no compression report: the fact without figures
    assert len(notes) == 1 and "saved at quality about 60" in notes[0] and "saved again" not in notes[0]


def test_training_subset_keeps_whole_groups_and_each_class_share(synthetic_manifest) -> None:
    from skin_model.splits import training_subset

    rows = synthetic_manifest.kept("train")
    half = training_subset(rows, 0.5, seed=3)
    assert half.equals(training_subset(rows, 0.5, seed=3))  # seeded
    assert training_subset(rows, 1.0, seed=3).equals(rows)
    for label, members in rows.groupby("final_label"):
        kept = half[half["final_label"] == label]
        largest = members.groupby("group_id").size().max()
        # the smallest run of whole groups reaching half of the class
        assert 0.5 * len(members) <= len(kept) < 0.5 * len(members) + largest
    # a group is kept whole or not at all
    assert (
        half.groupby("group_id").size() == rows[rows["group_id"].isin(half["group_id"])].groupby("group_id").size()
    ).all()
    assert list(half.index) == sorted(half.index)  # the rows keep their order
    with pytest.raises(ValueError, match="fraction"):
        training_subset(rows, 0.0, seed=3)


@pytest.mark.slow
def test_training_time_adds_up_over_the_processes_of_a_resumed_run(tmp_path: Path, monkeypatch) -> None:
    """A run stopped and resumed reports the time of both processes: the first up to its
    last saved step (the work it lost after that is done, and counted, again)."""
    import skin_model.checkpoint as checkpoint_module

    clock = [100.0]
    monkeypatch.setattr(checkpoint_module.time, "perf_counter", lambda: clock[0])
    first = checkpoint_module.TrainingCheckpoint(tmp_path, {"epochs": 8}, resume=False)
    first.start_clock()
    clock[0] = 160.0
    first.save_elapsed()  # an epoch ended after 60 s
    clock[0] = 190.0  # stopped 30 s into the next epoch
    again = checkpoint_module.TrainingCheckpoint(tmp_path, {"epochs": 8}, resume=True)
    again.start_clock()
    clock[0] = 230.0
    assert again.elapsed() == 100.0  # 60 s before the stop + 40 s since the resume
    fresh = checkpoint_module.TrainingCheckpoint(tmp_path, {"epochs": 8}, resume=False)
    fresh.start_clock()
    assert fresh.elapsed() == 0.0


def test_train_resume_goes_on_after_an_interruption(synthetic_manifest, tmp_path: Path, monkeypatch) -> None:
    """A pretrained run stopped after its first fine-tuning epoch goes on with
    ``resume=True`` at the second: the warm-up is not redone, the history holds both
    epochs, the manifest says it was resumed, and the checkpoint is gone at the end."""
    import skin_model.training as training_module
    import skin_model.warmup as warmup_module
    from skin_model.training import TrainConfig, train

    config = dict(arch="effnet_lite0", input_size=32, epochs=2, feature_views=1, head_epochs=5, bootstrap=0)
    out, cache = tmp_path / "model", tmp_path / "cache"
    real_callback = training_module._balanced_accuracy_callback

    def interrupted(*args, **kwargs):
        selector = real_callback(*args, **kwargs)
        original = selector.on_epoch_end

        def stop_after_first(epoch, logs=None):
            original(epoch, logs)
            if epoch == 0:
                raise RuntimeError("power cut")

        selector.on_epoch_end = stop_after_first
        return selector

    monkeypatch.setattr(training_module, "_balanced_accuracy_callback", interrupted)
    with pytest.raises(RuntimeError, match="power cut"):
        train(TrainConfig(**config), synthetic_manifest, out, cache_dir=cache, progress=False)
    assert (out / "checkpoint" / "head_features.npz").is_file()
    before_stop = json.loads((out / "checkpoint" / "elapsed.json").read_text())["seconds"]
    monkeypatch.setattr(training_module, "_balanced_accuracy_callback", real_callback)
    extracted = []
    monkeypatch.setattr(warmup_module, "_features", lambda *a, **k: extracted.append(1))  # must not be needed
    manifest = train(TrainConfig(**config), synthetic_manifest, out, cache_dir=cache, progress=False, resume=True)
    assert extracted == []
    assert manifest["resumed"] and manifest["epochs_run"] == 2
    assert manifest["training_wall_time_s"] >= round(before_stop, 1) > 0  # the first process's time counts
    assert len(pd.read_csv(out / "history.csv")) == 2
    assert not (out / "checkpoint").exists()


def test_init_from_refuses_another_architecture_or_size(tiny_model_dir: Path) -> None:
    """Fine-tuning further starts from a saved model of the same build only: a model of
    another architecture or input size is refused before any training."""
    from skin_model.training import TrainConfig, _initial_model

    manifest = load_artifact(tiny_model_dir).manifest
    config = TrainConfig(arch="effnet_lite2", init_from=str(tiny_model_dir))
    with pytest.raises(ValueError, match="not effnet_lite2"):
        _initial_model(config, manifest["input_size"])
    same = TrainConfig(arch=manifest["architecture"], init_from=str(tiny_model_dir))
    assert _initial_model(same, manifest["input_size"]).count_params() > 0


def test_init_from_is_refused_with_the_weighting_search() -> None:
    from skin_model.training import TrainConfig, _check_options

    config = TrainConfig(arch="effnet_lite2", init_from="somewhere", weighting_search=True)
    with pytest.raises(ValueError, match="weighting search"):
        _check_options(config, None, resume=False)


def test_bench_against_another_model_measures_both_in_one_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "bench.json"
    result = run_cli(
        "bench", "--model", str(tiny_model_dir), "--against", str(tiny_model_dir), "--repeats", "2", "--json", str(out)
    )
    assert "measured right after in the same run" in result.stdout
    assert "latency_ms_p50" in result.stdout and "(tiny / tiny = " in result.stdout
    figures = json.loads(out.read_text())
    assert figures["model"]["latency_ms_p50"] > 0 and figures["against"]["latency_ms_p50"] > 0


def test_explain_with_a_mask_prints_the_heat_inside_and_the_lesions_measurements(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from skin_model.lesion_measures import measure_lesion

    image = tmp_path / "lesion.png"
    Image.fromarray(np.full((80, 120, 3), (150, 100, 10), np.uint8)).save(image)
    mask = np.zeros((80, 120), np.uint8)
    mask[20:60, 30:90] = 255  # a 40 x 60 rectangle
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((80, 120), np.uint8)).save(tmp_path / "empty.png")
    args = ("explain", str(image), "--model", str(tiny_model_dir), "--output", str(tmp_path / "o.png"))
    result = run_cli(*args, "--mask", str(tmp_path / "mask.png"))
    expected = measure_lesion(mask >= 128, np.asarray(Image.open(image)))
    assert "heat inside the lesion mask:" in result.stdout
    assert f"max diameter px: {expected.max_diameter_px}" in result.stdout
    assert "border irregularity: 0.0" in result.stdout and "colours seen: light brown" in result.stdout
    empty = run_cli(*args, "--mask", str(tmp_path / "empty.png"))
    assert "the mask holds no lesion: nothing to measure" in empty.stdout
