"""Robustness to small changes of the photo: the changes are mild and do what they say,
and the per-change figures and the per-picture check are counted right (by hand, with a
model that answers by brightness)."""

from __future__ import annotations

import numpy as np
import pytest

from skin_model.classes import CLASS_NAMES
from skin_model.robustness import PERTURBATIONS, perturbed, robustness_report, stability_check

from .synthetic import lesion_like

NEVUS, MELANOMA = CLASS_NAMES.index("nevus"), CLASS_NAMES.index("melanoma")


def by_brightness(x: np.ndarray) -> np.ndarray:
    """Melanoma when the picture's mean is above 128, else nevus (one-hot)."""
    bright = np.asarray(x, np.float32).reshape(len(x), -1).mean(axis=1) > 128
    probs = np.zeros((len(x), len(CLASS_NAMES)), np.float32)
    probs[np.arange(len(x)), np.where(bright, MELANOMA, NEVUS)] = 1.0
    return probs


def test_each_change_is_mild_and_does_what_it_says() -> None:
    x = np.asarray(lesion_like(224), np.uint8)
    changed = perturbed(x)
    assert changed.shape == (len(PERTURBATIONS), *x.shape) and changed.dtype == np.uint8
    by_name = dict(zip(PERTURBATIONS, changed, strict=True))
    for name, picture in by_name.items():
        difference = np.abs(picture.astype(float) - x).mean()
        assert 0.3 < difference < 40, name  # changed, but still the same photo
    assert by_name["20 % darker"].mean() == pytest.approx(0.8 * x.mean(), rel=0.02)
    assert by_name["20 % brighter"].mean() > x.mean()
    warm = by_name["warmer white balance"].astype(float)
    assert warm[..., 0].mean() / warm[..., 2].mean() > 1.1 * x[..., 0].mean() / x[..., 2].mean()
    assert (
        np.abs(np.diff(by_name["slight blur (Gaussian, 1 px)"].astype(float), axis=1)).mean()
        < np.abs(np.diff(x.astype(float), axis=1)).mean()
    )
    np.testing.assert_array_equal(perturbed(x), changed)  # deterministic (the noise too)


def test_report_counts_flips_by_hand() -> None:
    # uniform pictures of 100 (nevus), 140 and 200 (melanoma): only "20 % darker" moves
    # the middle one below 128, so it flips 1 of 3 answers and referral decisions
    x = np.stack([np.full((64, 64, 3), v, np.uint8) for v in (100, 140, 200)])
    y = np.array([NEVUS, MELANOMA, MELANOMA])
    report = robustness_report(by_brightness, x, y, threshold=0.5, trained=["20 % darker"], chunk=2)
    assert report["balanced_accuracy"] == 1.0 and report["trained_on"] == ["20 % darker"]
    darker = report["changes"]["20 % darker"]
    assert darker["top_class_flips"] == pytest.approx(1 / 3, abs=1e-4)
    assert darker["referral_flips"] == pytest.approx(1 / 3, abs=1e-4)
    assert darker["mean_risk_change"] == pytest.approx(1 / 3, abs=1e-4)
    assert darker["balanced_accuracy"] == pytest.approx(0.75)  # nevus 1/1, melanoma 1/2
    others = [r for name, r in report["changes"].items() if name != "20 % darker"]
    assert all(r["top_class_flips"] == 0 and r["balanced_accuracy"] == 1.0 for r in others)
    assert report["stable_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["accuracy_when_stable"] == 1.0 and report["accuracy_when_unstable"] == 1.0


def test_trained_on_follows_the_training_config() -> None:
    from skin_model.robustness import trained_on

    assert trained_on({"camera": 0.0}) == ["tighter framing (90 % of each side)"]
    with_camera = trained_on({"camera": 0.5})
    assert "JPEG quality 50" in with_camera and "half resolution" in with_camera
    assert "sensor noise (sigma 5)" not in with_camera and "sharpened (unsharp mask)" not in with_camera
    assert trained_on({"jpeg": 0.75}) == ["JPEG quality 50", "tighter framing (90 % of each side)"]


BCC = CLASS_NAMES.index("basal cell carcinoma")


def _fine_detail(x: np.ndarray) -> np.ndarray:
    """Mean absolute difference between horizontal neighbours, per picture."""
    x = np.asarray(x, np.float32)
    return np.abs(np.diff(x, axis=2)).reshape(len(x), -1).mean(axis=1)


def test_compression_shortcut_report_catches_a_model_that_reads_the_compression() -> None:
    """Noise pictures: basal cell carcinomas from the seed set, nevi from ISIC 2017. A
    model that says nevus when fine detail is missing (as JPEG removes it) is right on
    the pictures as stored and moves the carcinomas into the narrow collection's classes
    as the quality falls; a model that reads the picture's brightness does not move."""
    from PIL import Image

    from skin_model.robustness import compression_shortcut_report, resave_jpeg

    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(6)]
    images = noise[:3] + [resave_jpeg(im, 60) for im in noise[3:]]  # the nevi's collection stores them compressed
    y = np.array([BCC] * 3 + [NEVUS] * 3)
    collections = np.array(["seed"] * 3 + ["isic2017"] * 3)
    narrow = [MELANOMA, NEVUS, CLASS_NAMES.index("seborrheic keratosis")]
    detail = _fine_detail(np.stack([np.asarray(im) for im in images]))
    assert detail[3:].max() < 0.8 * detail[:3].min()  # JPEG takes much of the noise
    cut = (detail[3:].max() + detail[:3].min()) / 2

    def reads_compression(x: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(x), len(CLASS_NAMES)), np.float32)
        probs[np.arange(len(x)), np.where(_fine_detail(x) > cut, BCC, NEVUS)] = 1.0
        return probs

    # refer when the malignant risk (here: the carcinoma's probability) reaches one half
    report = compression_shortcut_report(
        reads_compression, images, y, collections, narrow, size=48, malignant_threshold=0.5
    )
    assert list(report) == [
        "as stored",
        "JPEG quality 95",
        "JPEG quality 90",
        "JPEG quality 75",
        "JPEG quality 60",
        "PNG",
        "half size",
    ]
    assert report["as stored"]["seed"] == {
        "images": 3,
        "balanced_accuracy": 1.0,
        "accuracy": 1.0,
        "malignant_auc": None,  # one class only
        "called_narrow": 0.0,
        "answer_changed": 0.0,
        "referral_changed": 0.0,
    }
    # lossless: the very same pixels, so nothing changes
    assert report["PNG"]["all"] == report["as stored"]["all"]
    # the carcinomas lose their detail and are no longer referred: 3 of the 6 decisions change
    assert report["JPEG quality 60"]["seed"]["referral_changed"] == 1.0
    assert report["JPEG quality 60"]["all"]["referral_changed"] == 0.5
    assert report["JPEG quality 60"]["all"]["answer_changed"] == 0.5
    assert report["JPEG quality 60"]["isic2017"]["referral_changed"] == 0.0
    assert (
        "referral_changed"
        not in compression_shortcut_report(reads_compression, images, y, collections, narrow, 48)["PNG"]["all"]
    )
    assert report["JPEG quality 60"]["seed"]["called_narrow"] == 1.0
    assert report["JPEG quality 60"]["seed"]["balanced_accuracy"] == 0.0
    assert report["JPEG quality 60"]["isic2017"]["called_narrow"] is None  # it holds only narrow classes
    assert report["as stored"]["all"]["balanced_accuracy"] == report["as stored"]["isic2017"]["balanced_accuracy"] == 1
    assert report["JPEG quality 60"]["all"]["balanced_accuracy"] == 0.5  # the nevi are still right
    assert report["JPEG quality 60"]["all"]["called_narrow"] == 1.0
    steady = compression_shortcut_report(by_brightness, images, y, collections, narrow, size=48)
    assert len({r["seed"]["called_narrow"] for r in steady.values()}) == 1


def test_stability_check_of_one_picture() -> None:
    x = np.full((64, 64, 3), 140, np.uint8)
    check = stability_check(by_brightness, x, by_brightness(x[None])[0])
    assert check.predicted == "melanoma" and not check.stable
    assert (check.kept, check.changes) == (len(PERTURBATIONS) - 1, len(PERTURBATIONS))
    assert check.flipped_to == {"20 % darker": "nevus"} and check.risk_range == (0.0, 1.0)
    assert f"changed under 1 of {len(PERTURBATIONS)} small changes" in check.describe()
    assert "20 % darker: nevus" in check.describe()
    steady = stability_check(by_brightness, np.full((64, 64, 3), 220, np.uint8), by_brightness(x[None])[0])
    assert steady.stable and f"held under all {len(PERTURBATIONS)}" in steady.describe()


def test_compression_note_quotes_the_nearest_measured_quality() -> None:
    from skin_model.robustness import compression_note

    def row(accuracy: float, narrow: float) -> dict:
        return {"all": {"balanced_accuracy": accuracy, "called_narrow": narrow}}

    report = {
        "split": "val",
        "report": {
            "as stored": row(0.774, 0.02),
            "JPEG quality 90": row(0.747, 0.088),
            "JPEG quality 75": row(0.625, 0.28),
            "JPEG quality 60": row(0.552, 0.384),
        },
    }
    assert compression_note(None, report) is None and compression_note(95, report) is None
    assert compression_note(90, report) is None
    note = compression_note(72, report)
    assert note.startswith("This JPEG was saved at quality about 72")
    assert "saved again at quality 75, this model called 28% of the lesions" in note and "(2% as stored)" in note
    assert "from 0.77 to 0.62" in note
    assert "quality 60" in compression_note(50, report)
    bare = compression_note(72, None)  # a model without the measurement: the fact, no figures
    assert "saved again" not in bare and bare.endswith("has not been measured. Weigh the class with care.")


def test_stability_check_reads_its_changes_through_the_first_test_time_views(tiny_model_dir) -> None:
    """``predict_views`` averages the first views of the model's own test-time set: all 8
    give the 8-view answer, one gives the single-view answer, two the picture and its
    first quarter turn; the stability check of an 8-view model reads its changes that way."""
    import tensorflow as tf

    from skin_model.analysis import stability_reader
    from skin_model.artifact import load_artifact
    from skin_model.inference import Predictor
    from skin_model.robustness import STABILITY_VIEWS

    artifact = load_artifact(tiny_model_dir)
    size = artifact.input_size
    x = np.stack([np.asarray(lesion_like(size, seed=s), np.uint8) for s in range(3)])
    eight = Predictor.from_artifact(artifact, tta=True)
    one = Predictor.from_artifact(artifact, tta=False)
    np.testing.assert_allclose(eight.predict_views(x, 8), eight.predict_arrays(x), atol=1e-5)
    np.testing.assert_allclose(eight.predict_views(x, 1), one.predict_arrays(x), atol=1e-5)
    turned = tf.image.rot90(tf.constant(x, tf.float32)).numpy().astype(np.uint8)
    pair = (one.predict_arrays(x) + one.predict_arrays(turned)) / 2
    np.testing.assert_allclose(eight.predict_views(x, 2), pair, atol=1e-5)
    assert eight.predict_views(x[:0], 2).shape == (0, len(CLASS_NAMES))
    with pytest.raises(ValueError, match="1-8"):
        eight.predict_views(x, 9)
    changes = perturbed(x[0])
    np.testing.assert_allclose(
        stability_reader(eight)(changes), eight.predict_views(changes, STABILITY_VIEWS), atol=1e-6
    )
    np.testing.assert_allclose(stability_reader(one)(changes), one.predict_arrays(changes), atol=1e-6)
    # every count of views and the 8-view answer run one traced pass: a server traces it once at start
    assert eight._forward_views.experimental_get_tracing_count() == 1


def test_robustness_report_measures_the_check_with_its_own_reader() -> None:
    """Every per-change figure comes from ``predict``; only the check's stable/unstable
    split reads the changed copies with ``predict_check``."""
    x = np.full((2, 32, 32, 3), 140, np.uint8)
    y = np.array([MELANOMA, MELANOMA])
    always_nevus = lambda batch: by_brightness(np.zeros_like(batch))  # noqa: E731
    report = robustness_report(by_brightness, x, y, 0.5, predict_check=always_nevus)
    plain = robustness_report(by_brightness, x, y, 0.5)
    assert report["changes"] == plain["changes"] and report["balanced_accuracy"] == 1.0
    assert report["changes"]["20 % darker"]["top_class_flips"] == 1.0
    assert report["changes"]["20 % brighter"]["top_class_flips"] == 0.0
    assert plain["stable_share"] == 0.0  # darker flips it
    assert report["stable_share"] == 0.0 and report["accuracy_when_unstable"] == 1.0
    steady = robustness_report(by_brightness, x, y, 0.5, predict_check=lambda b: by_brightness(np.full_like(b, 255)))
    assert steady["stable_share"] == 1.0 and steady["accuracy_when_stable"] == 1.0
    assert steady["changes"] == plain["changes"]
