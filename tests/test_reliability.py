"""Temperature scaling, the feature-density OOD detector and abstention, on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from skin_model.evaluation import calibration
from skin_model.reliability import (
    FeatureDensity,
    abstention_threshold,
    apply_temperature,
    coverage_report,
    fit_temperature,
)


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3-class predictor that is right 60% of the time but always ~95% sure."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.6, y, (y + rng.integers(1, 3, n)) % 3)
    probs = np.full((n, 3), 0.025)
    probs[np.arange(n), pred] = 0.95
    return probs, y


def test_temperature_softens_an_overconfident_model() -> None:
    probs, y = _overconfident()
    t = fit_temperature(probs, y)
    assert t > 1.5
    calibrated = apply_temperature(probs, t)
    assert calibration(y, calibrated)["ece"] < calibration(y, probs)["ece"] / 3
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    # the ranking never changes
    assert (calibrated.argmax(1) == probs.argmax(1)).all()


def test_temperature_one_is_identity() -> None:
    probs, _ = _overconfident(10)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-9)


def test_mahalanobis_flags_far_points_and_keeps_near_ones() -> None:
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0]])
    y = rng.integers(0, 2, 1000)
    train = means[y] + rng.normal(0, 1, (1000, 3))
    density = FeatureDensity.fit(train, y)
    val_y = rng.integers(0, 2, 500)
    density.calibrate(means[val_y] + rng.normal(0, 1, (500, 3)), quantile=0.95)
    inliers = means[val_y] + rng.normal(0, 1, (500, 3))
    assert 0.0 < density.is_outlier(inliers).mean() < 0.12
    outliers = np.array([[20.0, -20.0, 0.0], [0.0, 0.0, 15.0], [-10.0, 10.0, 5.0]])
    assert density.is_outlier(outliers).all()
    # hand check: for a point at a class mean, the distance is 0
    assert density.distance(density.means[:1])[0] == pytest.approx(0.0, abs=1e-9)


def test_layered_density_takes_the_worst_layer_and_round_trips(tmp_path) -> None:
    from skin_model.reliability import LayeredDensity

    # identity covariances: distance = Euclidean distance to the nearest mean
    near = FeatureDensity(np.zeros((1, 2)), np.eye(2), threshold=2.0)
    far = FeatureDensity(np.zeros((1, 3)), np.eye(3), threshold=10.0)
    layered = LayeredDensity(["early", "late"], [near, far], threshold=1.0)
    early = np.array([[3.0, 4.0], [0.0, 1.0]])  # distances 5 and 1 -> 2.5 and 0.5 of the scale 2
    late = np.array([[0.0, 0.0, 6.0], [0.0, 0.0, 8.0]])  # distances 6 and 8 -> 0.6 and 0.8 of 10
    np.testing.assert_allclose(layered.distance([early, late]), [2.5, 0.8])
    assert layered.is_outlier([early, late]).tolist() == [True, False]
    layered.save(tmp_path / "r.npz")
    loaded = LayeredDensity.load(tmp_path / "r.npz")
    assert loaded.layers == ["early", "late"] and loaded.threshold == 1.0
    np.testing.assert_allclose(loaded.distance([early, late]), [2.5, 0.8])


def test_abstention_reaches_target_accuracy_on_answered_cases() -> None:
    # confident cases are right, unsure ones are coin flips
    confident = np.tile([0.9, 0.05, 0.05], (50, 1))
    unsure = np.tile([0.4, 0.35, 0.25], (50, 1))
    probs = np.vstack([confident, unsure])
    y = np.array([0] * 50 + [0, 1] * 25)
    cut = abstention_threshold(probs, y, target_accuracy=0.9)
    assert 0.4 < cut <= 0.9
    report = coverage_report(probs, y, cut)
    assert report == {"coverage": 0.5, "accuracy_answered": 1.0, "accuracy_all": 0.75}


def test_neighbour_correlation_by_hand() -> None:
    from skin_model.reliability import neighbour_correlation

    stripes = np.tile(np.array([0.0, 1.0]), (4, 2))  # 4x4, columns alternate 0,1,0,1
    # across: every pair differs (centred -0.5*0.5 = -0.25, variance 0.25 -> -1);
    # down: every pair equal (+0.25 / 0.25 -> +1); mean 0
    assert neighbour_correlation(stripes) == pytest.approx(0.0)
    ramp = np.tile(np.arange(8.0), (8, 1))
    assert neighbour_correlation(ramp) > 0.8


def test_image_screens_catch_degenerate_frames_not_lesions() -> None:
    from skin_model.reliability import screen_image

    from .synthetic import lesion_like

    rng = np.random.default_rng(0)
    assert screen_image(np.full((64, 64, 3), 255, np.uint8)) == "blank or featureless image"
    gray_text = np.repeat(rng.integers(0, 2, (64, 64, 1), dtype=np.uint8) * 255, 3, axis=2)
    assert "no colour" in screen_image(gray_text)
    assert "noise" in screen_image(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    # noise stays noise after downscaling (the screen sees model-size pictures)
    from PIL import Image

    from skin_model.pipeline import to_model_input

    big_noise = Image.fromarray(np.clip(rng.normal(128, 40, (600, 600, 3)), 0, 255).astype(np.uint8))
    assert "noise" in screen_image(to_model_input(big_noise, 224))
    assert screen_image(np.asarray(lesion_like(224))) is None


@pytest.mark.parametrize("tta", [False, True])
def test_one_pass_prediction_matches_separate_passes(calibrated_dir, tta: bool) -> None:
    """The predictor's combined pass gives the same probabilities and the same reliability
    verdicts as a plain prediction plus the check's own pass, and diagnosing through it
    never needs the check's own pass."""
    from PIL import Image

    from skin_model.artifact import load_artifact
    from skin_model.explain import Explainer
    from skin_model.inference import Predictor, diagnose
    from skin_model.reliability import ReliabilityCheck

    from .synthetic import smooth_picture

    artifact = load_artifact(calibrated_dir)
    predictor = Predictor.from_artifact(artifact, tta=tta)
    assert predictor.feature_layers == artifact.manifest["ood_layers"]
    size = artifact.input_size
    x = np.stack([np.asarray(smooth_picture(s, size)) for s in range(5)] + [np.zeros((size, size, 3))])
    x = x.astype(np.uint8)

    probs, single, features = predictor.predict_with_features(x)
    np.testing.assert_allclose(probs, predictor.predict_arrays(x), atol=1e-5)
    chunked = predictor.predict_with_features(x, batch_size=16 if tta else 2)  # 3 calls of 2 images
    np.testing.assert_allclose(chunked[0], probs, atol=1e-5)
    for whole, parts in zip(features, chunked[2], strict=True):
        np.testing.assert_allclose(parts, whole, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(single, Predictor(artifact.model, size).predict_arrays(x), atol=1e-5)
    fused = ReliabilityCheck.from_artifact(artifact).check(x, outputs=(single, features))
    separate = ReliabilityCheck.from_artifact(artifact).check(x)
    np.testing.assert_allclose(fused["ood_distance"], separate["ood_distance"], rtol=1e-4)
    np.testing.assert_allclose(fused["calibrated_confidence"], separate["calibrated_confidence"], atol=1e-5)
    assert list(fused["ood_reason"]) == list(separate["ood_reason"])
    assert fused["out_of_distribution"][-1]  # the blank frame

    check = ReliabilityCheck.from_artifact(artifact)
    result = diagnose(predictor, Image.fromarray(x[0]), artifact.malignant_threshold, check)
    assert check._forward is None and result.heat is None
    np.testing.assert_allclose(result.probs, probs[0], atol=1e-5)
    assert result.calibrated_confidence == pytest.approx(float(fused["calibrated_confidence"][0]), abs=1e-5)
    # unfamiliar: the feature distance above its validation percentile, answered all the same
    assert result.unfamiliar == bool(fused["ood_distance"][0] > check.density.threshold)
    assert list(fused["unfamiliar"]) == list(fused["ood_distance"] > check.density.threshold)

    # the same through the pass that also explains: same answer, plus the heat map
    explaining = Predictor.from_artifact(artifact, tta=tta, explain=True)
    explained = diagnose(explaining, Image.fromarray(x[0]), artifact.malignant_threshold, check, explain=True)
    assert check._forward is None
    np.testing.assert_allclose(explained.probs, probs[0], atol=1e-5)
    assert explained.calibrated_confidence == pytest.approx(result.calibrated_confidence, abs=1e-5)
    assert explained.out_of_distribution == result.out_of_distribution
    reference = Explainer(artifact.model, size).explain(x[0], "gradcam", target=int(np.argmax(probs[0])))
    assert explained.heat.shape == (size, size)
    np.testing.assert_allclose(explained.heat, reference, atol=1e-4)


def test_predictor_keeps_numpy_blas_off_tensorflows_cores(tiny_model_dir) -> None:
    """After a predictor exists, NumPy's BLAS runs one thread (its spinning threads
    slowed the model call after each reliability check)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from skin_model.artifact import load_artifact
    from skin_model.inference import Predictor

    with threadpool_limits(2, user_api="blas"):  # as a fresh process on 2 cores starts
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {2}
        Predictor.from_artifact(load_artifact(tiny_model_dir))
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}


def test_lesion_detector_refuses_the_other_kind_and_round_trips(tmp_path) -> None:
    """Lesion features around one point, generated pictures' around another: the
    detector refuses about 1 % of new lesions (its validation quantile) and every
    picture of the other kind, and reads back from the reliability file unchanged."""
    from skin_model.reliability import LayeredDensity, LesionDetector

    rng = np.random.default_rng(3)
    lesions, others = rng.normal(0, 1, (800, 4)), rng.normal(0, 1, (300, 4)) + np.array([4.0, -4.0, 0.0, 0.0])
    detector = LesionDetector.fit("tap", lesions, others)
    detector.calibrate(rng.normal(0, 1, (1000, 4)), quantile=0.99)
    assert detector.is_outlier(rng.normal(0, 1, (2000, 4))).mean() < 0.03
    assert detector.is_outlier(rng.normal(0, 1, (200, 4)) + np.array([4.0, -4.0, 0.0, 0.0])).mean() > 0.97
    # the probability is the logistic of the standardised features' linear score, by hand
    x = np.array([[0.5, -0.2, 1.0, 0.0]])
    z = float((((x - detector.mean) / detector.scale) @ detector.coef)[0] + detector.intercept)
    assert detector.not_lesion_probability(x)[0] == pytest.approx(1 / (1 + np.exp(-z)))
    density = LayeredDensity.fit(["tap"], [lesions], np.zeros(len(lesions), int))
    density.calibrate([lesions])
    density.save(tmp_path / "r.npz", extra=detector.arrays())
    loaded = LesionDetector.load(tmp_path / "r.npz")
    assert loaded.layer == "tap" and loaded.threshold == detector.threshold
    np.testing.assert_allclose(loaded.not_lesion_probability(others), detector.not_lesion_probability(others))
    density.save(tmp_path / "old.npz")  # a model fitted before the detector
    assert LesionDetector.load(tmp_path / "old.npz") is None


def test_generated_outlier_pictures_are_repeatable_and_varied() -> None:
    from skin_model.outlier_pictures import KINDS, outlier_pictures

    first, again = outlier_pictures(12, 64), outlier_pictures(12, 64)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True))
    assert all(p.size == (64, 64) and p.mode == "RGB" for p in first)
    # every kind appears, and no two pictures are the same
    assert len(first) >= 2 * len(KINDS)
    assert len({np.asarray(p).tobytes() for p in first}) == len(first)


def test_another_map_reuses_the_pictures_diagnosis_and_changes_nothing_else(calibrated_dir) -> None:
    """The page's second map or target reuses the first analysis's diagnosis: every
    figure is what a full analysis gives, the map is the explainer's, and the first
    Grad-CAM map is reused only for the predicted class."""
    import io

    from skin_model.analysis import analyse_picture
    from skin_model.bundle import load_bundle
    from skin_model.images import load_image

    from .synthetic import jpeg_bytes, lesion_like

    bundle = load_bundle(calibrated_dir, explain=True)
    loaded = load_image(io.BytesIO(jpeg_bytes(lesion_like(seed=11))).getvalue())
    first = analyse_picture(bundle, loaded, "gradcam")
    for method, target in (
        ("gradcam", None),
        ("smoothgrad", None),
        ("gradcam", "melanoma"),
        ("gradcam++", "malignant"),
    ):
        full = analyse_picture(bundle, loaded, method, target)
        reused = analyse_picture(bundle, loaded, method, target, diagnosis=first.result)
        assert reused.result is first.result
        np.testing.assert_allclose(reused.result.probs, full.result.probs, atol=1e-5)
        assert reused.target == full.target and reused.target_label == full.target_label
        np.testing.assert_allclose(reused.heat, full.heat, atol=1e-3)
        assert reused.evidence.describe("x") == full.evidence.describe("x")
    same = analyse_picture(bundle, loaded, "gradcam", None, diagnosis=first.result)
    assert same.heat is first.result.heat
