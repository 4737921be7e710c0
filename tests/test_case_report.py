"""A result in words and as a printable report: the verdict, the checks' sentences,
and the self-contained HTML page (escaped, pictures embedded, nothing fetched)."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skin_model.case_report import (
    REPORT_PICTURE_SIDE,
    Finding,
    ModelFacts,
    case_report_html,
    compression_finding,
    operating_point,
    similar_cases_finding,
    stability_finding,
    verdict,
)
from skin_model.cases import SimilarCase
from skin_model.classes import CLASS_NAMES, malignant_score
from skin_model.inference import Diagnosis
from skin_model.robustness import StabilityCheck

from .conftest import run_cli
from .synthetic import jpeg_bytes, smooth_picture


def _diagnosis(top: str, p_top: float, threshold: float = 0.3, **reliability) -> Diagnosis:
    """A result whose top class has ``p_top`` and the rest share the remainder equally."""
    probs = np.full(len(CLASS_NAMES), (1 - p_top) / (len(CLASS_NAMES) - 1))
    probs[CLASS_NAMES.index(top)] = p_top
    return Diagnosis(probs, float(malignant_score(probs[None])[0]), threshold, **reliability)


def test_verdict_gives_every_reason_to_refer_in_the_pages_words() -> None:
    # melanoma 70 %: three other malignant classes at 3.75 % each -> risk 81.25 %
    high = verdict(_diagnosis("melanoma", 0.7))
    assert [f.kind for f in high] == ["high_risk"]
    assert high[0].text == "Malignant risk 81% (threshold 30%). Refer to a dermatologist."

    # a nevus at 40 % without a reliability check: risk 4 x 7.5 % = 30 %, under a 31 % threshold
    low = _diagnosis("nevus", 0.4, threshold=0.31)
    assert [f.kind for f in verdict(low)] == ["unsure"]  # raw top probability below 50 %
    assert "(calibrated confidence 40%, below the 50% it needs to answer)" in verdict(low)[0].text

    sure = _diagnosis("nevus", 0.92, calibrated_confidence=0.9, abstain_below=0.6)
    [below] = verdict(sure)
    assert below.kind == "below_threshold"
    assert below.headline == "Malignant risk 4%, below the referral threshold of 30%."
    # a risk just under its threshold is not "4%, below the referral threshold of 4%"
    [close] = verdict(_diagnosis("nevus", 0.92, threshold=0.044, calibrated_confidence=0.9, abstain_below=0.6))
    assert close.headline == "Malignant risk 4.0%, below the referral threshold of 4.4%."

    odd = _diagnosis("melanoma", 0.7, out_of_distribution=True, ood_reason="unlike every class")
    assert [f.kind for f in verdict(odd)] == ["not_a_lesion", "high_risk"]
    assert "(unlike every class)" in verdict(odd)[0].detail
    quiet_odd = _diagnosis("nevus", 0.92, out_of_distribution=True, ood_reason="x")
    assert [f.kind for f in verdict(quiet_odd)] == ["not_a_lesion"]  # no "below threshold" comfort for it


def test_stability_and_similar_cases_sentences() -> None:
    report = {"split": "val", "stable_share": 0.4, "accuracy_when_stable": 0.86, "accuracy_when_unstable": 0.69}
    held = stability_finding(StabilityCheck("melanoma", 9, 9, {}, (0.6, 0.8)), report)
    assert held.kind == "note" and "held under all 9" in held.text and "right 86% of the time" in held.text
    assert "On validation images the answer held" in held.text  # the split by its name, not its key
    flips = {"JPEG quality 50": "nevus", "20 % darker": "nevus", "half resolution": "nevus", "sharpened": "nevus"}
    shaky = stability_finding(StabilityCheck("melanoma", 5, 9, flips, (0.1, 0.7)), None)
    assert shaky.kind == "note"  # 4 of 9 changed: not most
    shaky = stability_finding(StabilityCheck("melanoma", 4, 9, {**flips, "warmer": "nevus"}, (0.1, 0.7)), None)
    assert shaky.kind == "caution" and shaky.headline == "Unstable answer."
    assert "JPEG quality 50: Mole (melanocytic nevus)" in shaky.detail

    cases = [SimilarCase(label, 0.9, "", "seed_train", "x.jpg") for label in ["nevus", "melanoma", "nevus"]]
    figures = {"report": {"val": {"images": 100, "model_accuracy_when_disagree": 0.4, "disagreeing_images": 10}}}
    figures["report"]["val"]["model_accuracy_when_agree"] = 0.8
    against = similar_cases_finding(cases, "melanoma", figures)
    assert against.kind == "caution" and "mostly Mole (melanocytic nevus)" in against.headline
    assert "(Mole (melanocytic nevus) 2, Melanoma 1)" in against.detail and "right 40% of the time" in against.detail
    agree = similar_cases_finding(cases, "nevus", None)
    assert agree.kind == "note"
    assert agree.text == "Their diagnoses: Mole (melanocytic nevus) 2, Melanoma 1. They agree with the model."

    assert compression_finding(95, None) is None and compression_finding(None, None) is None
    squeezed = compression_finding(60, None)
    assert squeezed.kind == "caution" and "quality about 60" in squeezed.detail


def test_operating_point_quotes_both_held_out_splits() -> None:
    evaluation = {
        "val": {"n_images": 675, "malignant": {"sensitivity": 0.9, "specificity": 0.6989}},
        "test": {"n_images": 74, "malignant": {"sensitivity": 0.9375, "specificity": 0.5263}},
    }
    text = operating_point(evaluation)
    assert "on the 675 validation images it referred 90% of the malignant lesions and left 70% of the benign" in text
    assert "on the 74 held-out test images it referred 94% of the malignant lesions and left 53%" in text
    assert operating_point({"val": {"n_images": 3}}) is None and operating_point(None) is None


def _data_uris(page: str) -> list[Image.Image]:
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(uri))) for uri in uris]


def _page(**overrides) -> str:
    big = Image.new("RGB", (1000, 800), (150, 90, 70))
    options = dict(
        file_name='<script>alert("x")</script> é.jpg',
        file_sha256="ab" * 32,
        image=big,
        original_size=(4000, 3200),
        overlay=big.copy(),
        explanation="Grad-CAM (fast) for “Melanoma”",
        result=_diagnosis("melanoma", 0.7, calibrated_confidence=0.75, abstain_below=0.6),
        model=ModelFacts("lite", "effnet_lite2", 224, "cd" * 32, "The referral threshold was chosen on validation."),
        findings=[Finding("caution", "Unstable answer.", "Weigh <it> with care.")],
        differential=Finding("note", "Differential at 90% coverage: Melanoma.", "All benign? No."),
        image_notes=["rotated upright using its EXIF orientation (6)"],
        created=datetime(2026, 11, 23, 9, 5, tzinfo=UTC),
    )
    return case_report_html(**{**options, **overrides})


def test_report_page_is_self_contained_escaped_and_complete() -> None:
    page = _page()
    # nothing the file name or a finding carries becomes markup; nothing is fetched or run
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; é.jpg" in page
    assert "Weigh &lt;it&gt; with care." in page
    assert "http://" not in page and "https://" not in page
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "default-src 'none'" in page
    pictures = _data_uris(page)
    assert len(pictures) == 2 and all(p.size == (REPORT_PICTURE_SIDE, 410) for p in pictures)  # 1000x800 scaled
    # the answer: verdict, every class in order with its probability, confidence, operating point
    assert "<strong>Malignant risk 81%</strong> (threshold 30%). Refer to a dermatologist." in page
    shown = re.findall(r'<td class="num">([\d.]+)%</td>', page)
    assert shown == ["70.0"] + ["3.8"] * 8  # the other eight share 30 % (3.75 % each)
    assert page.index("<td>Melanoma</td>") < page.index("<td>Dermatofibroma</td>")
    assert "Calibrated confidence in the top class: 75%; the model answers only from 60%" in page
    assert "The referral threshold was chosen on validation." in page
    assert "<strong>Differential at 90% coverage: Melanoma.</strong> All benign? No." in page
    assert "2026-11-23 09:05 UTC" in page and "(4000×3200 px; SHA-256 abababababababab…)" in page
    assert "weights SHA-256 cdcdcdcdcdcdcdcd…" in page
    assert "rotated upright using its EXIF orientation (6)" in page
    assert "Patient details given" not in page  # none were given


def test_report_records_the_patient_details_with_the_figures_for_such_patients() -> None:
    group = {
        "n_images": 78,
        "malignant_images": 42,
        "balanced_accuracy": 0.892,
        "malignant_sensitivity": 0.95,
        "malignant_sensitivity_ci95": [0.84, 0.99],
        "malignant_specificity": 0.89,
        "malignant_specificity_ci95": [0.75, 0.96],
        "small": False,
    }
    subgroups = {
        "splits": {
            "val": {
                "attributes": {"site": {"trunk": group}},
                "classes_described": ["basal cell carcinoma"],
                "classes_not_described": ["melanoma", "nevus"],
            }
        }
    }
    page = _page(patient={"site": "trunk", "age": "50-64"}, subgroups_report=subgroups)
    assert "body site: trunk; age: 50-64 (recorded here; the model does not see them)" in page
    assert "there are no such figures for melanoma, nevus" in page
    assert "body site: trunk (78 lesions, 42 malignant): class named with balanced accuracy 0.89" in page
    assert "<li>age: 50-64" not in page  # no figures measured for that group: the detail alone
    # a picture flagged as not a lesion carries no confidence claim
    odd = _diagnosis("nevus", 0.9, out_of_distribution=True, ood_reason="x", calibrated_confidence=0.9)
    odd.abstain_below = 0.6
    page = _page(result=odd)
    assert "This does not look like a dermoscopic lesion image" in page and "Calibrated confidence" not in page


def test_explain_cli_writes_the_printable_report(tiny_model_dir: Path, tmp_path: Path) -> None:
    from skin_model.artifact import load_artifact
    from skin_model.inference import Predictor, diagnose

    image = tmp_path / "squeezed <1>.jpg"
    image.write_bytes(jpeg_bytes(smooth_picture(9, 120), quality=60))
    report = tmp_path / "r.html"
    args = ["explain", str(image), "--model", str(tiny_model_dir), "--output", str(tmp_path / "o.png")]
    result = run_cli(*args, "--report", str(report))
    assert f"wrote the printable report {report}" in result.stdout
    page = report.read_text(encoding="utf-8")
    artifact = load_artifact(tiny_model_dir)
    expected = diagnose(Predictor.from_artifact(artifact), Image.open(image), artifact.malignant_threshold)
    for finding in verdict(expected):
        assert finding.headline.replace("<", "&lt;") in page
    assert f"{expected.malignant_probability:.1%}</strong>; referral threshold" in page
    assert "squeezed &lt;1&gt;.jpg (120×120 px" in page
    assert "Compressed picture." in page and "Stability: the answer" in page
    # what such a risk has meant on the tiny model's own validation lesions, as printed
    assert f"What a malignant risk of {expected.malignant_probability:.0%} has meant:" in result.stdout
    assert f"<strong>What a malignant risk of {expected.malignant_probability:.0%} has meant:</strong>" in page
    assert "blurring the 10% of the picture this map rates highest" in page  # the map's own check
    assert len(_data_uris(page)) == 2


@pytest.mark.parametrize("side", [64, 600])
def test_report_pictures_keep_their_shape_up_to_the_cap(side: int) -> None:
    picture = Image.new("RGB", (side, side // 2), (10, 200, 30))
    shown = _data_uris(_page(image=picture, overlay=picture))[0]
    assert shown.size == (min(side, REPORT_PICTURE_SIDE), min(side, REPORT_PICTURE_SIDE) // 2)
    assert shown.getpixel((1, 1)) == (10, 200, 30)


def test_training_recipe_names_a_further_schedule_and_its_start() -> None:
    from skin_model.card_text import training_recipe

    first = {"class_weight_power": 0.5, "camera": 0.8, "aspect": 0.33}
    assert training_recipe(first).endswith("; cosine learning-rate schedule")
    second = first | {"init_from": "trained_models/effnet_lite2_3col/", "unfreeze_from": "block8_expand_conv"}
    text = training_recipe(second)
    assert "class weights ∝ 1 / count^0.5" in text and "camera changes on 80% of pictures" in text
    assert text.endswith("a further cosine schedule, fine-tuned from effnet_lite2_3col (from block8_expand_conv up)")
    third = second | {"init_from": "trained_models/effnet_lite2_3col_v2", "layer_decay": 0.9, "field": 0.3}
    text = training_recipe(third)
    assert "another dermoscope's round field of view on 30%" in text
    assert "lesion mask" not in text
    assert "a penalty (2×) on the share of the class activation map outside the expert lesion mask" in (
        training_recipe(third | {"lesion_focus": 2.0})
    )
    assert text.endswith(
        "fine-tuned from effnet_lite2_3col_v2 (from block8_expand_conv up, each block 0.9× the rate of the one above)"
    )


def test_a_model_fine_tuned_from_others_says_what_its_whole_chain_cost(tmp_path) -> None:
    """The card's training time counts the runs a model continued: found where its
    manifest named them or by folder name among the models, up to one that is missing."""
    import json

    from skin_model.artifact import earlier_schedules
    from skin_model.card_text import training_time_text
    from skin_model.classes import CLASS_NAMES

    def model(name: str, minutes: float, init_from: str | None) -> dict:
        manifest = {"name": name, "class_names": list(CLASS_NAMES), "input_size": 32, "weights_sha256": "x"}
        manifest |= {"malignant_threshold": 0.1, "training_wall_time_s": minutes * 60, "epochs_run": 2}
        manifest |= {"best_epoch": 2, "training_config": {"init_from": init_from}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
        return manifest

    model("first", 50.0, None)
    model("second", 30.0, "elsewhere/first")  # moved: found by its folder name among the models
    third = model("third", 20.0, str(tmp_path / "second"))
    earlier = earlier_schedules(third, models_dir=tmp_path)
    assert [m["name"] for m in earlier] == ["second", "first"]
    text = training_time_text(third, earlier)
    assert text.startswith("Trained in 20.0 min on 2 CPU cores, 2 epochs (best 2 by validation balanced accuracy)")
    assert text.endswith("continuing 2 earlier runs (second, first): 100.0 min of training in all")
    assert training_time_text(third, []).endswith("(best 2 by validation balanced accuracy)")
    lost = model("fourth", 10.0, "trained_models/gone")
    assert earlier_schedules(lost, models_dir=tmp_path) == []  # the chain's time is then unknown, not guessed
    (tmp_path / "first" / "manifest.json").write_text("{not json")
    assert [m["name"] for m in earlier_schedules(third, models_dir=tmp_path)] == ["second"]  # unreadable: stops


def test_test_time_views_are_said_in_words() -> None:
    from skin_model.card_text import test_time_views_text

    assert test_time_views_text({"tta": False, "tta_views": "turns_and_centre"}) is None
    assert "8 flips and quarter turns" in test_time_views_text({"tta": True})  # models that name none
    text = test_time_views_text({"tta": True, "tta_views": "turns_and_centre"})
    assert "central 80 %" in text and "read the picture itself" in text
