"""Every page of the Streamlit app renders with the shipped model and results
(Streamlit's AppTest: the script runs in-process, no browser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from .synthetic import jpeg_bytes, lesion_like

TIMEOUT = 180
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.delenv("SKIN_DATA_DIR", raising=False)  # the app must work without any data set
    at = AppTest.from_file(str(ROOT / "app_navigation.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [s.value for s in at.success]
    parts += [i.value for i in at.info]
    parts += [img.proto.imgs[0].caption for img in at.get("image")]
    return "\n".join(str(p) for p in parts)


def assert_splits_named(app: AppTest, texts: str | None = None) -> None:
    """The key "val" is not a word a reader should meet, in the page's text or its tables."""
    texts = _texts(app) if texts is None else texts
    assert not re.search(r"\bval\b", texts), re.findall(r".{0,60}\bval\b.{0,60}", texts)
    for table in app.dataframe:
        if "split" in table.value.columns:
            assert "val" not in set(table.value["split"].astype(str)), table.value["split"].tolist()


def test_diagnose_page_starts_with_instructions_and_disclaimer(app: AppTest) -> None:
    assert app.title[0].value == "Diagnose a skin lesion"
    assert "not a medical device" in _texts(app)
    assert "Upload one or more" in _texts(app)


def test_diagnose_page_says_where_the_referral_threshold_falls_short(app: AppTest) -> None:
    """The caveat quotes the shipped measurement: the collection whose test lesions the
    threshold caught less often than its target, with counts, and the lowest
    sensitivity leaving one collection out."""
    import json

    from skin_model.artifact import default_model_dir
    from skin_model.card_text import referral_caveat

    manifest = json.loads((default_model_dir() / "manifest.json").read_text())
    transfer = json.loads((default_model_dir() / "trust_transfer.json").read_text())
    caveat = referral_caveat(manifest, transfer)
    assert caveat in _texts(app)
    figures = transfer["referral"]["rules"][manifest["referral_rule"]]
    isic = figures["test_by_collection"]["isic2017"]
    if isic["sensitivity"] < 0.9:
        assert f"{round(isic['sensitivity'] * isic['malignant'])} of {isic['malignant']} malignant" in caveat
    lowest = min(f["sensitivity"] for f in figures["leave_one_collection_out"].values())
    assert f"as few as {lowest:.0%}" in caveat


def test_upload_gives_probabilities_risk_and_heatmap(app: AppTest) -> None:
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(lesion_like()), "image/jpeg")).run()
    assert not app.exception, app.exception
    assert len(app.get("plotly_chart")) == 1
    images = app.get("image")
    assert len(images) == 2  # the photo and its heat map, both with alt text
    assert all(img.proto.imgs[0].alt for img in images)
    texts = _texts(app)
    # a synthetic picture may well be flagged as not a real lesion; every case says what to do
    assert any(m in texts for m in ("Malignant risk", "unsure", "does not look like a dermoscopic lesion"))
    assert "Top 3" in texts
    # the map's own deletion check, in one of its two wordings, with the 10 % it blurs
    assert any(
        f"{wording}: blurring the 10% of the picture this map rates highest" in texts
        for wording in ("Check", "Caution")
    )
    # the shipped default has a reliability check: its confidence is shown unless the picture was flagged
    flagged = "does not look like a dermoscopic lesion" in texts
    assert ("Calibrated confidence in the top class" in texts) != flagged
    assert ("Differential at 90% coverage: " in texts) != flagged  # the shipped model's prediction sets
    assert ("of the 60 validation lesions whose risk was closest to it" in texts) != flagged
    labels = [button.proto.label for button in app.get("download_button")]
    assert labels == ["Printable report", "Overlay PNG", "Report JSON", "Report CSV", "Heat map (.npy)"]
    assert_splits_named(app, texts)


def test_bad_file_in_a_batch_gets_an_error_and_the_rest_still_runs(app: AppTest) -> None:
    app.file_uploader[0].set_value(
        [
            ("empty.jpg", b"", "image/jpeg"),
            ("page.png", b"<html>not an image</html>", "image/png"),
            ("lesion.jpg", jpeg_bytes(lesion_like(seed=1)), "image/jpeg"),
            ("again.jpg", jpeg_bytes(lesion_like(seed=1)), "image/jpeg"),
        ]
    ).run()
    assert not app.exception, app.exception
    errors = [e.value for e in app.error]
    assert any("empty" in e for e in errors) and any("not an image" in e for e in errors)
    assert len(app.get("plotly_chart")) == 1  # one real image, its duplicate shown once
    assert "Same file as an earlier upload" in _texts(app)
    summaries = [t.value for t in app.dataframe if "advice" in t.value.columns]
    assert len(summaries) == 1  # the batch summary table (the others list a lesion's measurements)
    # the worklist comes first: above the pictures, unreadable files last, the CLI's columns
    assert [h.value for h in app.subheader][:2] == ["Summary", "1. empty.jpg"]
    table = summaries[0]
    assert table["#"].tolist() == [3, 1, 2]
    assert (
        table["status"].tolist()[0] == "ok" and table["status"].str.startswith("unreadable").tolist()[1:] == [True] * 2
    )
    assert {"high_malignant_risk", "advice", "malignant_probability", "prediction_set"} <= set(table.columns)
    # the readable picture's differential starts with its answer (the shipped model has sets)
    assert table["prediction_set"][0].split("; ")[0] == table["predicted_class"][0]


def test_a_heavily_compressed_jpeg_gets_the_measured_warning(app: AppTest) -> None:
    """The shipped model was measured reading compression as a cue to three classes; a
    picture saved at quality 70 is told so with the figures, one saved at 92 is not."""
    app.file_uploader[0].set_value(
        [
            ("squeezed.jpg", jpeg_bytes(lesion_like(seed=3), quality=70), "image/jpeg"),
            ("fine.jpg", jpeg_bytes(lesion_like(seed=3), quality=92), "image/jpeg"),
        ]
    ).run()
    assert not app.exception, app.exception
    warnings = [w.value for w in app.warning if "This JPEG was saved at quality" in w.value]
    assert len(warnings) == 1 and "quality about 70" in warnings[0]
    from skin_model.artifact import default_model_dir
    from skin_model.robustness import COMPRESSION_REPORT_FILE

    if (default_model_dir() / COMPRESSION_REPORT_FILE).is_file():  # the shipped report's figures
        assert "saved again at quality 75, this model called" in warnings[0]
    else:  # said, not hidden
        assert "has not been measured" in warnings[0]
    table = next(t.value for t in app.dataframe if "jpeg_quality" in t.value.columns)
    assert sorted(table["jpeg_quality"].tolist()) == [70, 92]


def test_changing_explanation_controls_reruns(app: AppTest) -> None:
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(lesion_like(seed=2)), "image/jpeg")).run()
    method = next(s for s in app.sidebar.selectbox if s.label == "Method")
    method.set_value("gradcam++").run()
    assert not app.exception, app.exception
    assert "Grad-CAM++" in _texts(app)


def test_the_maps_check_runs_once_per_picture_map_and_target(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving the opacity slider reruns the page but not the picture's analysis (the
    map's check costs two more model passes); a different target gives a different map,
    which is checked anew."""
    import skin_model.analysis

    calls = []
    real = skin_model.analysis.evidence_check
    monkeypatch.setattr(skin_model.analysis, "evidence_check", lambda *a, **k: calls.append(1) or real(*a, **k))
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(lesion_like(seed=6)), "image/jpeg")).run()
    assert calls == [1]
    shown = next(c.value for c in app.caption if c.value.startswith(("Check:", "Caution:")))
    next(s for s in app.sidebar.slider if s.label == "Heat-map opacity").set_value(0.3).run()
    assert not app.exception, app.exception
    assert calls == [1] and shown in _texts(app)
    next(s for s in app.sidebar.selectbox if s.label == "Explain").set_value("malignant risk").run()
    assert calls == [1, 1] and "“malignant risk”" in _texts(app)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("app_pages/evaluation.py", "test split"),
        ("app_pages/dataset.py", "cross"),
        ("app_pages/model_card.py", "Intended use"),
    ],
)
def test_other_pages_render(app: AppTest, page: str, expected: str) -> None:
    app.switch_page(page).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    texts = _texts(app) + "\n".join(h.value for h in app.header) + "\n".join(str(m.value) for m in app.metric)
    assert expected.lower() in texts.lower() or page.endswith("dataset.py")
    assert_splits_named(app, texts)
    if page != "app_pages/model_card.py":
        assert len(app.get("plotly_chart")) >= 1


def test_evaluation_threshold_explorer_updates(app: AppTest) -> None:
    app.switch_page("app_pages/evaluation.py").run()
    slider = next(s for s in app.slider if s.label == "Malignant-risk threshold")
    slider.set_value(0.0).run()
    assert not app.exception
    sensitivity = next(m for m in app.metric if m.label.startswith("Sensitivity"))
    assert sensitivity.value == "100.0%"


def test_evaluation_breaks_the_split_down_by_image_collection(app: AppTest) -> None:
    """The default model's validation figures per source collection, which together
    cover the split."""
    app.switch_page("app_pages/evaluation.py").run()
    next(r for r in app.radio if r.label == "Split").set_value("val").run()
    assert not app.exception, app.exception
    table = next(d.value for d in app.dataframe if "collection" in d.value.columns)
    assert any("ISIC 2017" in name for name in table["collection"]) and any(
        "HAM10000" in n for n in table["collection"]
    )
    assert len(table) == 3
    images_in_split = int(next(c.value for c in app.caption if "images in the validation split" in c.value).split()[0])
    assert table["images"].sum() == images_in_split
    app.switch_page("app_pages/model_card.py").run()  # the card states the weaker collection's sensitivity
    assert not app.exception, app.exception
    from skin_model.artifact import default_model_dir, read_evaluation

    weaker = read_evaluation(default_model_dir())["val"]["by_collection"]["isic2017"]["n_images"]
    assert f"ISIC 2017 challenge ({weaker} images): malignant sensitivity" in _texts(app)


def test_a_blank_frame_is_flagged_as_not_a_lesion(app: AppTest) -> None:
    from PIL import Image

    app.file_uploader[0].set_value(("blank.jpg", jpeg_bytes(Image.new("RGB", (200, 200), "white")), "image/jpeg"))
    app.run()
    assert not app.exception, app.exception
    assert any("does not look like a dermoscopic lesion image" in e.value for e in app.error)


def test_dataset_page_without_data_explains_the_gallery(app: AppTest) -> None:
    app.switch_page("app_pages/dataset.py").run()
    assert not app.exception, app.exception
    assert any("needs the data set" in i.value for i in app.info)


def test_dataset_page_counts_sources_and_splits_in_colours_of_their_own(app: AppTest) -> None:
    """The before/after charts stand side by side: no colour may mean a source in one and a split in the other."""
    import json

    from skin_model.paths import AUDIT_DIR

    audit = json.loads((AUDIT_DIR / "audit.json").read_text())
    app.switch_page("app_pages/dataset.py").run()
    before, after = (json.loads(c.proto.spec)["data"] for c in app.get("plotly_chart")[:2])
    assert [t["name"] for t in after] == ["training split", "validation split", "test split"]
    assert {t["marker"]["color"] for t in before}.isdisjoint(t["marker"]["color"] for t in after)
    train = next(t for t in after if t["name"] == "training split")
    assert sum(train["y"]) == sum(audit["class_counts"]["after"]["train"].values())


def test_zip_upload_runs_its_images_and_refuses_traversal(app: AppTest) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("cases/one.jpg", jpeg_bytes(lesion_like(seed=7)))
        z.writestr("../escape.jpg", jpeg_bytes(lesion_like(seed=8)))
    app.file_uploader[0].set_value(("batch.zip", buf.getvalue(), "application/zip")).run()
    assert not app.exception, app.exception
    assert any("escape.jpg: refused" in e.value for e in app.error)
    assert len(app.get("plotly_chart")) == 1
    assert any(s.value == "1. batch.zip/cases/one.jpg" for s in app.subheader)


def test_reruns_keep_the_tensorflow_kernel_cache(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's own clean-up would call keras.backend.clear_session() after every run,
    which threw away TensorFlow's kernels and made each upload several seconds slower."""
    import keras

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(lesion_like(seed=5)), "image/jpeg")).run()
    app.run()
    assert not app.exception, app.exception
    assert len(app.get("plotly_chart")) == 1
    assert calls == []


def test_model_card_and_evaluation_report_the_reliability_figures(app: AppTest) -> None:
    import json

    from skin_model.artifact import default_model_dir

    report = json.loads((default_model_dir() / "reliability.json").read_text())["report"]
    for page in ("app_pages/model_card.py", "app_pages/evaluation.py"):
        app.switch_page(page).run()
        assert not app.exception, app.exception
        tables = [df.value for df in app.dataframe if "lesions wrongly rejected as not-a-lesion" in df.value.columns]
        assert len(tables) == 1, page
        shown = tables[0].set_index("split")
        assert (
            shown.loc["test", "lesions wrongly rejected as not-a-lesion"]
            == f"{report['test']['ood_false_rejection']:.1%}"
        )
    transfer = json.loads((default_model_dir() / "trust_transfer.json").read_text())
    app.switch_page("app_pages/evaluation.py").run()
    refusals = [df.value for df in app.dataframe if "detector" in df.value.columns]
    assert len(refusals) == 2  # the reliability tab, and the other clinic's camera tab
    shipped = transfer["ood"][0]
    benchmark = shipped["other"]["non-lesion benchmark"]
    row = refusals[0].iloc[0]
    assert row["detector"] == shipped["detector"]
    assert row["non-lesion benchmark: refused"].startswith(f"{benchmark['rate']:.1%} ")
    held_out = shipped["leave_one_collection_out"]["isic2017"]["rate"]
    assert row["ISIC 2017 challenge: refused, fitted without it"].startswith(f"{held_out:.1%} ")
    app.switch_page("app_pages/model_card.py").run()
    manifest = json.loads((default_model_dir() / "manifest.json").read_text())
    assert f"{manifest['batch_norms_folded']} batch norms folded" in _texts(app)


def test_model_card_draws_the_heat_maps_deletion_test(app: AppTest) -> None:
    """The shipped deletion test is drawn (one curve per map) and its figures quoted."""
    import json

    from skin_model.artifact import default_model_dir

    check = json.loads((default_model_dir() / "explanation_check.json").read_text())
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    figures = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    deletion = [f for f in figures if "Deletion test" in str(f["layout"].get("title"))]
    assert len(deletion) == 1 and len(deletion[0]["data"]) == len(check["maps"])
    gradcam = check["maps"]["gradcam"]
    assert f"beats the random map on {gradcam['beats_chance']:.0%} of the images" in _texts(app)
    assert f"leaves {gradcam['relative_probability'][1]:.0%} of the predicted class" in _texts(app)


def test_a_real_lesion_shows_its_calibrated_confidence(app: AppTest, real_data_dir: Path) -> None:
    """On real dermoscopic images (the shared data's test folder), each result either is
    flagged as not a lesion or shows the calibrated confidence, and most are not flagged."""
    pictures = sorted(real_data_dir.glob("skin-cancer-isic/*/Test/melanoma/*.jpg"))[:3]
    if not pictures:
        pytest.skip(f"no melanoma test images under {real_data_dir}")
    app.file_uploader[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in pictures]).run()
    assert not app.exception, app.exception
    captions = [c.value for c in app.caption if "Calibrated confidence in the top class" in c.value]
    flagged = [e.value for e in app.error if "does not look like a dermoscopic lesion" in e.value]
    assert len(captions) + len(flagged) == len(pictures)
    assert len(captions) >= 2
    assert_splits_named(app)  # real lesions: the stability and similar-lesion sentences too


def test_model_card_reports_how_the_similar_lesions_measured(app: AppTest) -> None:
    import json

    from skin_model.artifact import default_model_dir

    val = json.loads((default_model_dir() / "cases.json").read_text())["report"]["val"]
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    tables = [df.value for df in app.dataframe if "model right when it does not" in df.value.columns]
    assert len(tables) == 1
    first = tables[0].iloc[0]
    assert first["split"] == "validation" and first["images"] == f"all images ({val['images']})"
    assert first["model right when it does not"] == (
        f"{val['model_accuracy_when_disagree']:.0%} ({val['disagreeing_images']} images)"
    )


def _similar_cases_script() -> None:
    """An app page that shows four cases, three of them nevi, for a melanoma answer."""
    from app_pages.result_sections import show_similar_cases
    from skin_model.cases import SimilarCase

    cases = [
        SimilarCase(label, sim, f"ISIC_{k:07d}", "isic2017", f"pics/{k}.jpg")
        for k, (label, sim) in enumerate([("nevus", 0.9), ("melanoma", 0.8), ("nevus", 0.7), ("nevus", 0.6)])
    ]
    report = {
        "report": {
            "val": {
                "images": 100,
                "model_accuracy_when_disagree": 0.4,
                "disagreeing_images": 10,
                "model_accuracy_when_agree": 0.8,
            }
        }
    }
    show_similar_cases(cases, "melanoma", report)


def test_similar_cases_warn_when_they_disagree_and_show_pictures_when_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from PIL import Image

    monkeypatch.delenv("SKIN_DATA_DIR", raising=False)
    at = AppTest.from_function(_similar_cases_script, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    warning = at.warning[0].value
    assert "mostly Mole (melanocytic nevus)" in warning and "not Melanoma" in warning
    assert "right 40% of the time" in warning and "against 80% when it agreed" in warning
    table = at.dataframe[0].value  # no data set here: a table, and why there are no pictures
    assert table["ISIC id"].tolist() == [f"ISIC_{k:07d}" for k in range(4)]
    assert table["malignant"].tolist() == [False, True, False, False]
    assert "SKIN_DATA_DIR" in _texts(at) and not at.get("image")

    (tmp_path / "pics").mkdir()
    for k in range(4):
        Image.new("RGB", (48, 40), (120, 60 + 20 * k, 40)).save(tmp_path / "pics" / f"{k}.jpg")
    monkeypatch.setenv("SKIN_DATA_DIR", str(tmp_path))
    at.run()
    assert not at.exception, at.exception
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert len(captions) == 4 and captions[1].startswith("Melanoma (malignant) · similarity 0.80 · ISIC_0000001")
    assert all(img.proto.imgs[0].alt.startswith("Training lesion ISIC_") for img in at.get("image"))
    assert not at.dataframe


def test_a_real_lesion_shows_the_most_similar_training_lesions(
    app: AppTest, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the shipped index: ten distinct training lesions per picture, listed without
    the data set and shown as pictures with it; and each answer's stability under small
    changes of the photo, checked once per picture however often the page reruns."""
    import skin_model.analysis

    pictures = sorted(real_data_dir.glob("skin-cancer-isic/*/Test/nevus/*.jpg"))[:2]
    if not pictures:
        pytest.skip(f"no nevus test images under {real_data_dir}")
    calls: list[int] = []
    real = skin_model.analysis.stability_check
    monkeypatch.setattr(skin_model.analysis, "stability_check", lambda *a, **k: calls.append(1) or real(*a, **k))
    app.file_uploader[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in pictures]).run()
    assert not app.exception, app.exception
    answered = len(pictures) - sum("does not look like a dermoscopic lesion" in e.value for e in app.error)
    assert _texts(app).count("Stability: the answer") == answered == len(calls)
    tables = [df.value for df in app.dataframe if "ISIC id" in df.value.columns]
    assert answered >= 1 and len(tables) == answered
    assert all(len(t) == 10 and t["similarity"].is_monotonic_decreasing for t in tables)
    assert "most similar training lesions" in _texts(app)
    monkeypatch.setenv("SKIN_DATA_DIR", str(real_data_dir))
    app.run()
    assert not app.exception, app.exception
    case_images = [img for img in app.get("image") if "· similarity" in img.proto.imgs[0].caption]
    assert len(case_images) == 10 * answered
    assert len(calls) == answered  # the rerun reused each picture's stability check


def _stability_script() -> None:
    """An app page showing one stable and one unstable answer with validation context."""
    from app_pages.result_sections import show_stability
    from skin_model.robustness import StabilityCheck

    report = {"split": "val", "stable_share": 0.4, "accuracy_when_stable": 0.86, "accuracy_when_unstable": 0.69}
    show_stability(StabilityCheck("melanoma", 9, 9, {}, (0.6, 0.8)), report)
    flips = {"JPEG quality 50": "nevus", "20 % darker": "nevus", "half resolution": "nevus", "sharpened": "nevus"}
    show_stability(StabilityCheck("melanoma", 4, 9, flips, (0.1, 0.7)), None)


def test_stability_is_a_caption_when_it_holds_and_a_warning_when_most_changes_flip_it() -> None:
    at = AppTest.from_function(_stability_script, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    caption = next(c.value for c in at.caption if c.value.startswith("Stability"))
    assert "held under all 9 small changes" in caption and "malignant risk 60%-80%" in caption
    assert "right 86% of the time, against 69% for the others" in caption
    warning = at.warning[0].value
    assert warning.startswith("**Unstable answer.**") and "changed under 5 of 9" in warning
    assert "JPEG quality 50: Mole (melanocytic nevus)" in warning


def test_model_card_shows_the_robustness_test(app: AppTest) -> None:
    import json

    from skin_model.artifact import default_model_dir
    from skin_model.robustness import PERTURBATIONS, REPORT_FILE

    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    if not (default_model_dir() / REPORT_FILE).is_file():  # not measured for this model: said so
        assert any(f"No robustness test of {default_model_dir().name} ships" in i.value for i in app.info)
        return
    report = json.loads((default_model_dir() / REPORT_FILE).read_text())
    tables = [df.value for df in app.dataframe if "answers that change" in df.value.columns]
    assert len(tables) == 1 and len(tables[0]) == len(PERTURBATIONS)
    # each change is marked when the model's training augmentation made changes of its kind
    expected = [
        name + (" (in training augmentation)" if name in report["trained_on"] else "") for name in PERTURBATIONS
    ]
    assert tables[0]["change"].tolist() == expected
    assert "tighter framing (90 % of each side) (in training augmentation)" in expected  # every run crops
    assert tables[0]["answers that change"][0] == f"{report['changes']['JPEG quality 50']['top_class_flips']:.0%}"
    views = report.get("check_reads_views")
    read = f" (each changed copy read through {views} of the 8 test-time views)" if report.get("tta") and views else ""
    assert f"The answer held under every change{read} for {report['stable_share']:.0%}" in _texts(app)


def test_model_card_shows_the_compression_test_and_its_limitation(app: AppTest) -> None:
    import json

    from skin_model.artifact import default_model_dir
    from skin_model.robustness import COMPRESSION_REPORT_FILE

    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    if not (default_model_dir() / COMPRESSION_REPORT_FILE).is_file():  # not measured for this model: said so
        assert any(f"No compression test of {default_model_dir().name} ships" in i.value for i in app.info)
        return
    report = json.loads((default_model_dir() / COMPRESSION_REPORT_FILE).read_text())["report"]
    column = "lesions of the other six classes called one of the three"
    tables = [df.value for df in app.dataframe if column in df.value.columns]
    assert len(tables) == 1 and tables[0]["pictures saved"].tolist() == list(report)
    at = list(report).index("JPEG quality 75")
    assert tables[0][column].tolist()[at] == f"{report['JPEG quality 75']['all']['called_narrow']:.0%}"
    if "referral_changed" in report["JPEG quality 75"]["all"]:
        changed = report["JPEG quality 75"]["all"]["referral_changed"]
        assert tables[0]["referrals changed"].tolist()[at] == f"{changed:.1%}"
    squeezed = report["JPEG quality 75"]["all"]["balanced_accuracy"]
    assert "**JPEG compression:**" in _texts(app) and f"to {squeezed:.3f}" in _texts(app)


def test_dataset_page_shows_the_compression_of_each_collection(app: AppTest) -> None:
    import json

    from skin_model.paths import AUDIT_DIR

    audit = json.loads((AUDIT_DIR / "audit.json").read_text())
    app.switch_page("app_pages/dataset.py").run()
    assert not app.exception, app.exception
    assert "Compression per collection" in _texts(app)
    tables = [df.value for df in app.dataframe if set(df.value.columns) == set(audit["compression_by_collection"])]
    assert len(tables) == 1
    assert tables[0].loc["JPEG quality 95", "seed"] == audit["compression_by_collection"]["seed"]["JPEG quality 95"]


def test_model_card_shows_the_figures_by_patient_group(app: AppTest) -> None:
    import json

    from skin_model.artifact import default_model_dir
    from skin_model.subgroups import SUBGROUPS_FILE

    report = json.loads((default_model_dir() / SUBGROUPS_FILE).read_text())
    val = report["splits"]["val"]
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    tables = [df.value for df in app.dataframe if "malignant referred (95 % CI)" in df.value.columns]
    assert len(tables) == len(report["splits"])
    groups = sum(len(v) for v in val["attributes"].values())
    assert len(tables[0]) == groups
    women = val["attributes"]["sex"]["female"]
    row = tables[0][tables[0]["group"] == "sex: female"].iloc[0]
    assert row["pictures"] == women["n_images"] and row["balanced accuracy"] == women["balanced_accuracy"]
    low, high = women["malignant_sensitivity_ci95"]
    assert row["malignant referred (95 % CI)"] == f"{women['malignant_sensitivity']:.0%} ({low:.0%}-{high:.0%})"
    assert f"describe {val['described']} of the {val['images']} validation pictures" in _texts(app)
    assert any(g.endswith("(few pictures)") for g in tables[0]["group"])
    sites = {n: g for n, g in val["attributes"]["site"].items() if not g["small"]}
    worst = min(sites, key=lambda n: sites[n]["balanced_accuracy"])
    assert f"**Body sites:** on validation lesions the class answer is weakest on the {worst}" in _texts(app)


def test_patient_details_quote_the_model_figures_for_such_patients(app: AppTest) -> None:
    """The optional body site and age band are not given to the model; the page quotes
    the shipped validation figures for those groups, and nothing without them."""
    import json

    from skin_model.artifact import default_model_dir
    from skin_model.subgroups import SUBGROUPS_FILE, describe_group

    val = json.loads((default_model_dir() / SUBGROUPS_FILE).read_text())["splits"]["val"]
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(lesion_like(seed=4)), "image/jpeg")).run()
    assert not app.exception, app.exception
    assert "How the model did for patients like this one" not in _texts(app)
    before = [c.value for c in app.caption if "Calibrated confidence" in c.value]

    site = next(s for s in app.sidebar.selectbox if s.label == "Body site")
    assert site.options[0] == "not given" and "legs" in site.options
    site.set_value("legs").run()
    next(s for s in app.sidebar.selectbox if s.label == "Age").set_value("75 and over").run()
    assert not app.exception, app.exception
    context = next(i.value for i in app.info if "How the model did for patients like this one" in i.value)
    assert describe_group(val, "site", "legs") in context and describe_group(val, "age", "75 and over") in context
    assert "seborrheic keratosis" in context.split("no such figures for")[1]  # ISIC 2017 records no patients
    assert [c.value for c in app.caption if "Calibrated confidence" in c.value] == before  # the answer is unchanged


def test_evaluation_shows_a_confusion_cell_picture_by_picture(app: AppTest) -> None:
    """Without the data set the view still lists a cell's pictures (ISIC ids and
    probabilities, from the stored scores and the audit's manifest), missed melanomas
    first, as many rows as the confusion matrix counts; choosing another cell lists its own."""
    import numpy as np

    from skin_model.artifact import default_model_dir, read_evaluation
    from skin_model.classes import CLASS_NAMES

    evaluation = read_evaluation(default_model_dir())
    app.switch_page("app_pages/evaluation.py").run()
    assert not app.exception, app.exception
    split = app.radio[0].value
    cm = np.array(evaluation[split]["confusion_matrix"])
    picker = next(s for s in app.selectbox if s.label == "Pictures of")
    cells = picker.options
    assert len(cells) == int(((cm > 0) & ~np.eye(len(cm), dtype=bool)).sum())
    melanoma = CLASS_NAMES.index("melanoma")
    t, p = picker.value
    assert t == melanoma and cm[t, p] == cm[melanoma, np.arange(len(cm)) != melanoma].max()

    def listed(true_class: int, answered: int):
        column = f"p({CLASS_NAMES[answered]})"
        tables = [df.value for df in app.dataframe if column in df.value.columns and "isic_id" in df.value.columns]
        assert len(tables) == 1
        assert len(tables[0]) == cm[true_class, answered]
        assert tables[0][column].is_monotonic_decreasing
        return tables[0]

    listed(t, p)
    other = next(i for i, label in enumerate(picker.options) if not label.startswith("melanoma"))
    picker.select_index(other).run()
    assert not app.exception, app.exception
    t, p = next(s for s in app.selectbox if s.label == "Pictures of").value
    assert t != melanoma
    listed(t, p)
    assert "The pictures themselves show when the data set is on this machine" in _texts(app)


def test_model_card_shows_the_prediction_sets_and_where_they_fell_short(app: AppTest) -> None:
    import json

    from skin_model.artifact import default_model_dir
    from skin_model.conformal import PREDICTION_SETS_FILE

    report = json.loads((default_model_dir() / PREDICTION_SETS_FILE).read_text())
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    [table] = [df.value for df in app.dataframe if "true class in the set" in df.value.columns]
    assert table["split"].tolist() == ["validation", "test"]
    assert table["true class in the set"].tolist()[1] == f"{report['test']['coverage']:.1%}"
    scc = report["test"]["per_class"]["squamous cell carcinoma"]
    assert table["Squamous cell carcinoma"].tolist()[1] == f"{scc['covered']}/{scc['images']}"
    # the shipped test split's shortfalls are named (one-sided binomial test at 90 %), chance-sized ones are not
    from scipy.stats import binomtest

    from skin_model.classes import plain_name

    def short(v: dict) -> bool:
        return binomtest(v["covered"], v["images"], 1 - report["alpha"], alternative="less").pvalue < 0.05

    per_class = report["test"]["per_class"]
    warnings = [w.value for w in app.warning if "held the true class clearly less often" in w.value]
    if not any(short(v) for v in per_class.values()):  # nothing to name: no warning
        assert not warnings
        return
    [warning] = warnings
    for name, v in per_class.items():
        assert (f"{plain_name(name)} ({v['covered']} of {v['images']})" in warning) == short(v), name


def test_evaluation_differential_explorer_trades_coverage_for_width(app: AppTest) -> None:
    import json

    import numpy as np

    from skin_model.artifact import default_model_dir
    from skin_model.conformal import class_thresholds, set_report

    evaluation = json.loads((default_model_dir() / "evaluation.json").read_text())
    app.switch_page("app_pages/evaluation.py").run()
    assert not app.exception, app.exception
    slider = next(s for s in app.slider if s.label == "Coverage asked for")
    assert slider.value == pytest.approx(0.9)  # the shipped model's recorded coverage
    widths = []
    for coverage in (0.8, 0.95):
        slider.set_value(coverage).run()
        assert not app.exception, app.exception
        val, test = (evaluation[s]["scores"] for s in ("val", "test"))
        thresholds = class_thresholds(np.array(val["probs"]), np.array(val["y_true"]), round(1 - coverage, 4))
        expected = set_report(np.array(test["probs"]), np.array(test["y_true"]), thresholds)
        metrics = {m.label: m.value for m in app.metric}
        assert metrics["True class in the set"] == f"{expected['coverage']:.1%}"  # the test split is shown first
        assert metrics["Classes per set"] == f"{expected['mean_size']:.2f}"
        widths.append(expected["mean_size"])
    assert widths[0] < widths[1]  # more coverage, wider differentials


def test_a_phone_heic_picture_is_accepted_and_read(app: AppTest) -> None:
    import io

    from PIL import Image

    assert {".heic", ".heif", ".avif"} <= set(app.file_uploader[0].proto.type)  # the browser lets them through
    buffer = io.BytesIO()
    lesion_like(seed=2).save(buffer, format="HEIF", quality=90)
    app.file_uploader[0].set_value(("IMG_0001.HEIC", buffer.getvalue(), "image/heic")).run()
    assert not app.exception, app.exception
    assert not [e.value for e in app.error if "IMG_0001.HEIC:" in e.value]  # not refused
    assert "Top 3" in _texts(app) and len(app.get("image")) == 2
    assert Image.open(buffer).size == (300, 300) and "Uploaded image (300×300)" in _texts(app)


def test_model_card_says_what_a_malignant_risk_has_meant(app: AppTest) -> None:
    from skin_model.artifact import default_model_dir, read_evaluation
    from skin_model.risk_context import RiskContext

    context = RiskContext.from_evaluation(read_evaluation(default_model_dir()), "test")
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    [table] = [df.value for df in app.dataframe if "mean risk" in df.value.columns]
    test_rows = table[table["split"].str.startswith("test")]
    assert test_rows["lesions"].tolist() == [row["lesions"] for row in context.table()]
    assert test_rows["split"].iloc[0] == f"test ({context.prevalence:.0%} malignant)"
    assert table["split"].iloc[0].startswith("validation")


def test_follow_up_page_compares_two_pictures(app: AppTest) -> None:
    app.switch_page("app_pages/follow_up.py").run()
    assert not app.exception, app.exception
    assert "Upload both pictures" in _texts(app)
    earlier, later = app.file_uploader
    earlier.set_value(("before.jpg", jpeg_bytes(lesion_like(seed=4)), "image/jpeg"))
    later.set_value(("after.png", b"not a picture", "image/png")).run()
    assert not app.exception, app.exception
    assert any(e.value.startswith("after.png: ") for e in app.error) and "Upload both pictures" in _texts(app)
    app.file_uploader[1].set_value(("after.jpg", jpeg_bytes(lesion_like(seed=5)), "image/jpeg")).run()
    assert not app.exception, app.exception
    from skin_model.segmentation import default_segmenter_dir

    segmenter = default_segmenter_dir().is_dir()
    assert [h.value for h in app.subheader] == ["What changed"] + (["The lesion's outline"] if segmenter else [])
    texts = _texts(app)
    # synthetic pictures may be flagged as not lesions; either way the page says what it can
    assert "No comparison" in texts or ("Malignant risk " in texts and "The model reads each picture" in texts)
    if segmenter:  # the two outlines compared against the photo-to-photo spread of the shipped segmenter
        from skin_model.segmentation import PHOTO_TO_PHOTO_FILE

        if (default_segmenter_dir() / PHOTO_TO_PHOTO_FILE).is_file():
            assert "The outline changed" in texts or "did not change beyond photo-to-photo spread" in texts
        else:
            assert "without a photo-to-photo spread to weigh them" in texts
        table = next(t.value for t in app.dataframe if "measurement" in t.value.columns)
        assert "area" in set(table["measurement"])
    assert_splits_named(app, texts)


def test_follow_up_page_on_two_real_pictures(app: AppTest, real_data_dir) -> None:
    pictures = sorted(real_data_dir.glob("skin-cancer-isic/*/Test/nevus/*.jpg"))[:2]
    if len(pictures) < 2:
        pytest.skip(f"no nevus test images under {real_data_dir}")
    app.switch_page("app_pages/follow_up.py").run()
    for uploader, picture in zip(app.file_uploader, pictures, strict=True):
        uploader.set_value((picture.name, picture.read_bytes(), "image/jpeg"))
    app.run()
    assert not app.exception, app.exception
    texts = _texts(app)
    if "No comparison" in texts:
        pytest.skip("a real test picture was flagged as not a lesion")
    assert "percentage points)" in texts and "validation pairs" in texts  # the shipped photo-to-photo spread
    assert len(app.get("plotly_chart")) == 1 and len(app.get("image")) == 2


def test_model_card_names_the_classes_the_follow_up_spread_lacks(app: AppTest) -> None:
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    import json

    import pandas as pd

    from skin_model.artifact import default_model_dir
    from skin_model.follow_up import PhotoToPhoto
    from skin_model.paths import AUDIT_DIR

    model = default_model_dir()
    spread = PhotoToPhoto.from_stored(
        pd.read_csv(AUDIT_DIR / "manifest.csv"),
        json.loads((model / "evaluation.json").read_text()),
        json.loads((model / "manifest.json").read_text())["data_fingerprint"],
    )
    line = next(m.value for m in app.markdown if "**Follow-up comparisons:**" in m.value)
    assert f"{spread.pairs} pairs of photos of {spread.lesions} unchanged validation lesions" in line
    # the classes no validation lesion with several photos has are named (ISIC 2017 and seed-only classes)
    from skin_model.classes import CLASS_NAMES, plain_name

    missing = [c for c in CLASS_NAMES if c not in spread.classes]
    assert missing and "seborrheic keratosis" in missing
    assert f"none of them {', '.join(map(plain_name, missing))}" in line


def test_the_pages_shared_module_leaves_tensorflow_for_the_model_load() -> None:
    """The first page shows its uploader before TensorFlow is imported (2.5 s instead of
    4.1-4.6 s to first render on 2 cores): importing the shared UI module must not pull in
    Keras; only loading the model does."""
    import subprocess
    import sys

    probe = "import sys, app_pages.common; print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_model_card_counts_the_training_time_of_every_run_the_model_continued(app: AppTest) -> None:
    from skin_model.artifact import default_model_dir, earlier_schedules, read_manifest

    manifest = read_manifest(default_model_dir())
    earlier = earlier_schedules(manifest)
    total = sum(m["training_wall_time_s"] for m in [manifest, *earlier]) / 60
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    if earlier:  # the shipped model continued earlier schedules: their time is on the card
        assert f"continuing {len(earlier)} earlier run" in _texts(app)
        assert f"{total:.1f} min of training in all" in _texts(app)
    assert f"Trained in {manifest['training_wall_time_s'] / 60:.1f} min on 2 CPU cores" in _texts(app)


def test_model_card_says_how_many_pictures_trained_and_judged_the_model(app: AppTest) -> None:
    import json

    from skin_model.artifact import default_model_dir

    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    sizes = json.loads((default_model_dir() / "manifest.json").read_text())["split_sizes"]
    expected = (
        f"Trained on {sizes['train']:,} pictures; {sizes['val']:,} validation and {sizes['test']:,} test "
        "pictures held out."
    )
    assert expected in _texts(app)
    assert "{'train'" not in _texts(app)  # not a raw dictionary


def test_split_sizes_sentence_by_hand() -> None:
    from app_pages.model_sections import split_sizes_sentence

    assert split_sizes_sentence({"train": 2697, "val": 675, "test": 74}) == (
        "Trained on 2,697 pictures; 675 validation and 74 test pictures held out."
    )
    assert split_sizes_sentence({"train": 10}) == "Trained on 10 pictures."
    assert split_sizes_sentence(None) == "Split sizes were not recorded."


def _class_zip(files: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_your_pictures_page_explains_before_any_upload(app: AppTest) -> None:
    app.switch_page("app_pages/your_pictures.py").run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Does it work on your pictures?"
    assert "Upload a zip to measure the model on your pictures" in _texts(app)
    assert "not a medical device" in _texts(app)


def test_your_pictures_page_measures_a_zip_of_class_folders(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    app.switch_page("app_pages/your_pictures.py").run()
    files = {f"clinic/MEL/m{k}.jpg": jpeg_bytes(lesion_like(seed=40 + k)) for k in range(3)}
    files |= {f"clinic/nevus/n{k}.jpg": jpeg_bytes(lesion_like(seed=50 + k)) for k in range(3)}
    files["clinic/nevus/broken.jpg"] = b"\xff\xd8\xff\xe0"
    files["../escape.jpg"] = jpeg_bytes(lesion_like(seed=60))
    app.file_uploader[0].set_value(("clinic.zip", _class_zip(files), "application/zip")).run()
    assert not app.exception, app.exception
    refusal = "1 entries of the zip were refused: ../escape.jpg (unsafe path"
    assert any(refusal in w.value for w in app.warning)
    texts = _texts(app)
    assert "**7** pictures: **6** evaluated, 1 unreadable, 0 left out as pictures the model trained on" in texts
    assert "Diagnoses: Melanoma 3, Mole (melanocytic nevus) 3." in texts
    assert_splits_named(app, texts)
    # six pictures cannot show a gap: the page says so rather than vouch for the model
    assert "fewer than 100 pictures the intervals are wide" in texts or "Lower than on the model's" in texts
    frames = [frame.value for frame in app.dataframe]
    figures = next(f for f in frames if "figure" in f.columns)
    per_class = next(f for f in frames if "named correctly" in f.columns)
    left_out = next(f for f in frames if "reason" in f.columns)
    assert figures["figure"].tolist() == [
        "balanced accuracy",
        "macro AUC",
        "malignant AUC",
        "referral sensitivity",
        "referral specificity",
    ]
    # the model's columns: its own melanomas and nevi, counted from the shipped evaluation
    from skin_model.artifact import default_model_dir, read_evaluation

    shipped = read_evaluation(default_model_dir())

    def own(split: str) -> int:
        return sum(shipped[split]["per_class"][c]["support"] for c in ("melanoma", "nevus"))

    assert f"its validation ({own('val')}) and test ({own('test')}) pictures of your classes only" in texts
    assert per_class["pictures"].tolist() == [3, 3]
    assert left_out["file"].tolist() == ["clinic/nevus/broken.jpg"]
    assert left_out["reason"].iloc[0].startswith("unreadable")
    labels = [button.proto.label for button in app.get("download_button")]
    assert labels == ["Per-picture table (CSV)", "Report (JSON)"]
    # the misses a referral tool must not hide, and where the answers went
    assert any(h.value == "Malignant lesions not referred" for h in app.subheader)
    missed = [f for f in frames if "malignant risk" in f.columns]
    assert missed or "Every evaluated malignant or pre-malignant lesion reached the referral threshold" in texts
    if missed:
        assert set(missed[0]["diagnosis"]) == {"Melanoma"}
        from skin_model.artifact import default_model_dir, read_manifest

        threshold = read_manifest(default_model_dir())["malignant_threshold"]
        assert (missed[0]["malignant risk"] < 100 * threshold).all()  # shown in percent

    def chart_title(element) -> str:
        # the parsed figure, not its JSON text: plotly writes "—" as \u2014 unless orjson is installed
        return json.loads(element.proto.spec)["layout"]["title"]["text"]

    assert chart_title(app.get("plotly_chart")[0]) == "Confusion matrix (counts) — your pictures"
    # a toggle reruns the page, not the model on every picture
    import skin_model.local_validation

    calls = []
    real = skin_model.local_validation.validate_folder
    monkeypatch.setattr(
        skin_model.local_validation, "validate_folder", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    app.toggle(key="your_pictures_normalise").set_value(True).run()
    assert not app.exception, app.exception
    assert calls == []
    assert chart_title(app.get("plotly_chart")[0]) == "Confusion matrix (row-normalised) — your pictures"
    assert any(refusal in w.value for w in app.warning)  # still said after the rerun


def test_your_pictures_page_names_folders_that_are_no_class(app: AppTest) -> None:
    app.switch_page("app_pages/your_pictures.py").run()
    files = {"MEL/a.jpg": jpeg_bytes(lesion_like(seed=1)), "moles/b.jpg": jpeg_bytes(lesion_like(seed=2))}
    app.file_uploader[0].set_value(("mixed.zip", _class_zip(files), "application/zip")).run()
    assert not app.exception, app.exception
    assert any("folders that name no class: moles" in e.value for e in app.error)
    assert not app.dataframe


def test_model_pages_say_why_when_the_model_cannot_be_loaded(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    import skin_model.artifact
    import skin_model.bundle
    from app_pages.common import load_model_bundle

    def refuse(*args, **kwargs):
        raise skin_model.artifact.ArtifactError("model.keras does not match the checksum in manifest.json")

    monkeypatch.setattr(skin_model.bundle, "load_artifact", refuse)
    load_model_bundle.clear()
    try:
        for page in ("app_pages/diagnose.py", "app_pages/follow_up.py", "app_pages/your_pictures.py"):
            app.switch_page(page).run()
            assert not app.exception, (page, app.exception)
            errors = [e.value for e in app.error]
            assert errors == ["The model could not be loaded: model.keras does not match the checksum in manifest.json"]
            if page != "app_pages/diagnose.py":  # (the Diagnose uploader shows first, while the model loads)
                assert not app.file_uploader  # the page stops before asking for pictures
    finally:
        load_model_bundle.clear()  # later tests load the real model again


def test_referral_rules_and_heat_maps_on_lesions_are_shown_as_measured(app: AppTest) -> None:
    """The model card's table of referral rules and of the heat maps against the lesion
    masks quote the shipped reports; the shipped rule is named."""
    import json

    from skin_model.artifact import default_model_dir

    transfer = json.loads((default_model_dir() / "trust_transfer.json").read_text())
    heat = json.loads((default_model_dir() / "heatmap_lesion.json").read_text())
    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    rules = next(df.value for df in app.dataframe if "rule" in df.value.columns).set_index("rule")
    weakest = transfer["referral"]["rules"]["weakest-collection"]
    held_out = weakest["leave_one_collection_out"]["isic2017"]
    shown = rules.loc["weakest-collection", "ISIC 2017 challenge (fitted without it)"]
    assert shown == f"{held_out['sensitivity']:.2f} / {held_out['specificity']:.2f}"
    assert "ships the **weakest-collection** rule" in _texts(app)
    maps = next(df.value for df in app.dataframe if "hottest point inside the lesion" in df.value.columns)
    first = next(iter(heat["maps"]))
    assert maps.iloc[0]["map"] == first
    assert maps.iloc[0]["hottest point inside the lesion"].startswith(f"{heat['maps'][first]['pointing_game']:.0%} ")


def test_heat_map_examples_are_drawn_with_the_lesion_outlined_when_the_data_set_is_at_hand(
    app: AppTest, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the data set, the Evaluation page's heat-map tab draws the stored example
    pictures with their heat maps and the lesion's outline, each captioned with its
    share of the heat inside the lesion; without it, it says the pictures do not ship."""
    import json

    from skin_model.artifact import default_model_dir

    report = json.loads((default_model_dir() / "heatmap_lesion.json").read_text())
    app.switch_page("app_pages/evaluation.py").run()
    assert "Example overlays need the data set" in _texts(app)
    if not all((real_data_dir / e["picture"]).is_file() for e in report["examples"]):
        pytest.skip("the stored example pictures are not in this data set")
    monkeypatch.setenv("SKIN_DATA_DIR", str(real_data_dir))
    app.run()
    toggle = next(t for t in app.toggle if t.label.startswith("Show example heat maps"))
    toggle.set_value(True).run()
    assert not app.exception, app.exception
    captions = [i.proto.imgs[0].caption for i in app.get("image")]
    drawn = [c for c in captions if "of the heat inside the lesion" in c]
    assert len(drawn) == len(report["examples"][:6])
    first = report["examples"][0]
    assert drawn[0].startswith(f"{first['heat_inside_lesion']:.0%} of the heat inside the lesion")


def test_evaluation_page_and_model_card_show_the_recipe_trained_without_a_collection(app: AppTest) -> None:
    """The shipped benchmark's figures, two rows per left-out collection, on both pages."""
    import json

    from skin_model.artifact import default_model_dir

    path = default_model_dir() / "collection_transfer.json"
    if not path.is_file():
        pytest.skip("the shipped model has no leave-one-collection-out report (benchmarks/transfer.py)")
    report = json.loads(path.read_text())
    for page in ("app_pages/evaluation.py", "app_pages/model_card.py"):
        app.switch_page(page).run()
        assert not app.exception, app.exception
        tables = [df.value for df in app.dataframe if "trained" in df.value.columns]
        assert len(tables) == 1, page
        shown = tables[0]
        assert len(shown) == 2 * len(report["collections"])
        for collection, row in report["collections"].items():
            held = shown[(shown["trained"] == "without it") & (shown["test pictures"] == row["held_out"]["n_images"])]
            assert held["malignant AUC"].tolist() == [row["held_out"]["malignant_auc"]], collection


def test_upload_outlines_the_lesion_checks_the_map_against_it_and_measures_it(app: AppTest) -> None:
    """With the shipped segmenter, a drawn lesion is outlined: the page says how much of
    the map's heat lies inside the outline, lists the measurements with their meanings,
    and the toggle takes the outline away without recomputing or failing."""
    from skin_model.segmentation import default_segmenter_dir

    if not default_segmenter_dir().is_dir():
        pytest.skip("no segmenter ships with this checkout")
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(lesion_like()), "image/jpeg")).run()
    assert not app.exception, app.exception
    texts = _texts(app)
    assert re.search(r"The outlined lesion covers \d+% of the picture; \d+% of the map's heat lies inside it", texts)
    table = next(t.value for t in app.dataframe if "measurement" in t.value.columns)
    assert {"area share", "max diameter px", "asymmetry major", "border irregularity", "colours"} <= set(
        table["measurement"]
    )
    assert table["meaning"].str.len().min() > 10
    app.number_input[0].set_value(15.0).run()  # the picture's width in mm gives the diameter in mm
    table = next(t.value for t in app.dataframe if "measurement" in t.value.columns)
    assert "max diameter mm" in set(table["measurement"])
    app.toggle[0].set_value(False).run()
    assert not app.exception, app.exception
    assert len(app.get("image")) == 2


def test_model_card_shows_the_segmenters_overlap_with_the_experts(app: AppTest) -> None:
    """The Model card's outline section quotes the shipped segmenter's benchmark, row for row."""
    from skin_model.segmentation import BENCHMARK_FILE, default_segmenter_dir

    app.switch_page("app_pages/model_card.py").run()
    assert not app.exception, app.exception
    assert "Where is the lesion? The outline" in [h.value for h in app.header]
    benchmark_file = default_segmenter_dir() / BENCHMARK_FILE
    if not benchmark_file.is_file():
        pytest.skip("no segmenter benchmark ships with this checkout")
    benchmark = json.loads(benchmark_file.read_text())
    table = next(t.value for t in app.dataframe if "Dice" in t.value.columns)
    assert list(table["pictures"]) == list(benchmark["overlap"])
    stored = benchmark["overlap"]["as stored"]
    assert table["Dice"].iloc[0].startswith(f"{stored['dice']:.3f} (")
