"""Diagnose: upload dermoscopic images, see probabilities, risk and Grad-CAM."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

import streamlit as st

from app_pages.charts import probability_chart
from app_pages.common import (
    IMAGE_TYPES,
    model_bundle_or_stop,
    model_queue,
    npy_bytes,
    png_bytes,
    read_model_report,
    show_disclaimer,
)
from app_pages.result_sections import (
    patient_detail_inputs,
    show_finding,
    show_patient_context,
    show_similar_cases,
    show_stability,
)
from skin_model.analysis import analyse_and_outline, analyse_picture, check_stability, printable_report, view_lesion
from skin_model.card_text import referral_caveat
from skin_model.case_report import (
    explanation_caption,
    verdict,
)
from skin_model.cases import CASES_REPORT_FILE
from skin_model.classes import CLASS_INFO, CLASS_NAMES, MALIGNANT_CLASSES
from skin_model.explain import MALIGNANT_TARGET, METHOD_LABELS, METHODS
from skin_model.file_predictions import predictions_table, worklist_table
from skin_model.images import ImageLoadError, load_image, zip_members
from skin_model.inference import FilePrediction
from skin_model.model_files import TRUST_TRANSFER_FILE
from skin_model.model_queue import ANSWER, CHECK
from skin_model.robustness import REPORT_FILE as ROBUSTNESS_FILE
from skin_model.segmentation import draw_outline
from skin_model.subgroups import SUBGROUPS_FILE

st.title("Diagnose a skin lesion")
show_disclaimer()

uploads = st.file_uploader(
    "Dermoscopic images (jpg, png, heic, avif, bmp, tiff, webp), or a zip of them",
    type=[*IMAGE_TYPES, "zip"],
    accept_multiple_files=True,
    help="Several files give a worklist on top (referrals first, highest malignant risk first). "
    "A zip is unpacked in memory; unsafe entries are refused.",
)
with st.expander("…or take a photo with the camera"):
    photo = st.camera_input("Camera", label_visibility="collapsed")

files: list[tuple[str, bytes]] = []
refused: list[tuple[str, str]] = []
for upload in [*(uploads or []), *([photo] if photo is not None else [])]:
    if upload.name.lower().endswith(".zip"):
        try:
            members, skipped = zip_members(upload.getvalue())
        except ImageLoadError as exc:
            refused.append((upload.name, str(exc)))
            continue
        files += [(f"{upload.name}/{name}", data) for name, data in members]
        refused += [(f"{upload.name}/{name}", reason) for name, reason in skipped]
    else:
        files.append((upload.name, upload.getvalue()))


UNFAMILIAR_NOTE = (
    "This picture is unlike the pictures of the three collections the model learnt from (another dermoscope, "
    "light, crop or compression, or an unusual lesion). It is answered, but the figures the app quotes were "
    "measured on pictures like those collections' and may not hold for it: weigh the answer with care, and "
    "refer a lesion that worries you whatever the risk reads."
)


@st.cache_resource(max_entries=64, show_spinner=False)
def shared_analysis(model_dir: str, digest: str, method: str, target: str, _bundle, _loaded):
    """One analysis per model, picture content, map and target (a class name, the
    malignant risk, or "None" for the predicted class), shared by every session of this
    server: a rerun that changes only the opacity, another picture, or the same picture
    sent by another clinician recomputes nothing, and another map or target reuses the
    picture's diagnosis. The page reads it, never changes it."""
    first, _ = shared_first_analysis(model_dir, digest, _bundle, _loaded)
    if method == "gradcam" and target == "None":
        return first
    chosen = None if target == "None" else target
    return model_queue().run(ANSWER, analyse_picture, _bundle, _loaded, method, chosen, diagnosis=first.result)


@st.cache_resource(max_entries=64, show_spinner=False)
def shared_first_analysis(model_dir: str, digest: str, _bundle, _loaded):
    """The picture's diagnosis with the predicted class's Grad-CAM map (one model call)
    and its lesion outline, in one turn of the server's model queue."""
    return model_queue().run(ANSWER, analyse_and_outline, _bundle, _loaded)


@st.cache_resource(max_entries=64, show_spinner=False)
def shared_stability(model_dir: str, digest: str, _bundle, _analysis):
    """The stability check of a picture (it depends on the picture only, not on the map
    shown), once per model and picture content for every session of this server."""
    return model_queue().run(CHECK, check_stability, _bundle, _analysis)


bundle = model_bundle_or_stop()
art = bundle.artifact
subgroups_report = read_model_report(str(art.path / SUBGROUPS_FILE))
robustness = read_model_report(str(art.path / ROBUSTNESS_FILE))
st.caption(
    f"Model: **{art.name}** ({art.manifest.get('architecture')}, input {art.input_size}px). "
    f"Malignant-risk threshold {art.malignant_threshold:.1%}, chosen on validation for ≥ 90 % sensitivity."
)
caveat = referral_caveat(art.manifest, bundle.report(TRUST_TRANSFER_FILE))
if caveat:
    st.caption(caveat)
for name, reason in refused:
    st.error(f"{name}: refused ({reason})")
if not files:
    st.info("Upload one or more dermoscopic images to start. Nothing is stored: images stay in this session only.")
    st.stop()

with st.sidebar:
    st.subheader("Explanation")
    method = st.selectbox("Method", METHODS, format_func=METHOD_LABELS.get)
    target_choice = st.selectbox("Explain", ["predicted class", "malignant risk", *CLASS_NAMES])
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.6, 0.05)
    if bundle.segmenter is not None:
        st.subheader("Lesion")
        show_outline = st.toggle("Outline the lesion", value=True, help="The lesion as the segmentation model finds it")
        field_of_view = st.number_input(
            "Picture width in mm (optional)",
            min_value=0.0,
            max_value=200.0,
            value=0.0,
            step=1.0,
            help="The width of skin the picture shows (from your dermatoscope), for the diameter in millimetres",
        )
    patient = patient_detail_inputs(subgroups_report)
show_patient_context(subgroups_report, patient)

# with several pictures, a worklist on top: referrals first, highest malignant risk first
summary_slot = st.container() if len(files) > 1 else None
summary: list[tuple[int, FilePrediction]] = []
seen: set[str] = set()
progress = st.progress(0.0, text="Analysing…")
for number, (name, data) in enumerate(files, start=1):
    digest = hashlib.sha256(data).hexdigest()
    st.divider()
    st.subheader(f"{number}. {name}")
    if digest in seen:
        st.info("Same file as an earlier upload: shown once above.")
        progress.progress(number / len(files))
        continue
    seen.add(digest)
    try:
        loaded = load_image(data)
    except ImageLoadError as exc:
        st.error(f"{name}: {exc}")
        summary.append((number, FilePrediction(name, f"unreadable: {exc}", None)))
        progress.progress(number / len(files))
        continue
    # None = the predicted class, known only once the model has answered
    target = {"predicted class": None, "malignant risk": MALIGNANT_TARGET}.get(target_choice, target_choice)
    with st.spinner("Classifying and explaining…"):
        analysis = shared_analysis(str(art.path), digest, method, str(target), bundle, loaded)
    result, check = analysis.result, analysis.evidence
    overlay = analysis.overlay(opacity)
    shown_picture, lesion_view = loaded.image, None
    if bundle.segmenter is not None:
        lesion = shared_first_analysis(str(art.path), digest, bundle, loaded)[1]
        lesion_view = view_lesion(lesion, loaded.image, analysis.heat, field_of_view or None)
        if show_outline and lesion.found:
            shown_picture, overlay = draw_outline(loaded.image, lesion.mask), draw_outline(overlay, lesion.mask)
    for note in loaded.notes:
        st.caption(f":material/info: {note}")
    compression = analysis.compression
    if compression:
        st.warning(compression.detail, icon=":material/compress:")
    if result.unfamiliar and not result.out_of_distribution:
        st.warning(UNFAMILIAR_NOTE, icon=":material/photo_camera:")

    left, right = st.columns(2)
    left.image(
        shown_picture,
        caption=f"Uploaded image ({loaded.original_size[0]}×{loaded.original_size[1]})",
        width="stretch",
        alt=f"Uploaded skin image {name}",
    )
    target_label = analysis.target_label
    explanation = explanation_caption(METHOD_LABELS[method], target_label)
    right.image(
        overlay,
        width="stretch",
        caption=explanation,
        alt=f"Heat map over {name} showing where the model found evidence",
    )
    right.caption(check.describe(target_label))
    if lesion_view is not None:
        if lesion_view.evidence_outside:
            right.warning(lesion_view.describe(), icon=":material/center_focus_weak:")
        else:
            right.caption(lesion_view.describe())
        rows = lesion_view.measurement_rows()
        if rows:
            with st.expander("The lesion's measurements (from its outline)", expanded=True):
                st.dataframe(rows, hide_index=True, width="stretch")

    # the referral decision, in the words of the printable report
    for finding in verdict(result):
        show_finding(finding)
    risk_meaning = analysis.risk_meaning
    if risk_meaning is not None:
        st.caption(f"**{risk_meaning.headline}** {risk_meaning.detail}")

    chart_col, top_col = st.columns([3, 2])
    chart_col.plotly_chart(probability_chart(result.ranked, set(MALIGNANT_CLASSES)), width="stretch")
    with top_col:
        st.markdown("**Top 3**")
        for class_name, p in result.ranked[:3]:
            label, description = CLASS_INFO[class_name]
            tag = " · malignant/pre-malignant" if class_name in MALIGNANT_CLASSES else ""
            st.markdown(f"- **{label}**: {p:.1%}{tag}  \n  {description}")
        differential = analysis.differential
        if differential is not None:
            st.markdown(f"**{differential.headline}**")
            st.caption(differential.detail)
        if (
            result.calibrated_confidence is not None
            and result.abstain_below is not None
            and not result.out_of_distribution
        ):
            st.caption(
                f"Calibrated confidence in the top class: {result.calibrated_confidence:.0%}. The model "
                f"answers only from {result.abstain_below:.0%} (a cut-off chosen on validation images) and "
                "refers below it. The Model card shows how often its answers were right."
            )

    # the answer re-read on small changes of the photo (9 more pictures through the
    # model), once per picture and model, computed here so that everything above is
    # already on screen; None for a picture that is not a lesion
    with st.spinner("Checking the answer on slightly changed copies of the photo…"):
        stability = shared_stability(str(art.path), digest, bundle, analysis)
    if stability is not None:
        show_stability(stability, robustness)
    if result.similar is not None and not result.out_of_distribution:
        show_similar_cases(result.similar, result.predicted_class, read_model_report(str(art.path / CASES_REPORT_FILE)))

    printable = functools.partial(
        printable_report,
        bundle,
        analysis,
        stability,
        file_name=name,
        file_sha256=digest,
        opacity=opacity,
        patient=patient,
        subgroups_report=subgroups_report,
    )
    report = {
        "file": name,
        **result.as_dict(),
        "explanation": {"method": method, "target": str(analysis.target), "evidence_check": dataclasses.asdict(check)},
        "stability": None if stability is None else dataclasses.asdict(stability),
        "model": art.name,
        "image_notes": loaded.notes,
        "jpeg_quality": loaded.jpeg_quality,
        "compression_note": compression and compression.detail,
        "lesion": None
        if lesion_view is None
        else {
            "found": lesion_view.lesion.found,
            "heat_inside_lesion": lesion_view.heat_inside,
            "measurements": None if lesion_view.measures is None else lesion_view.measures.as_row(),
        },
    }
    stem = name.replace("/", "_")  # zip members keep their folder in the name, not in the file name
    d0, d1, d2, d3, d4 = st.columns(5)
    # The binary downloads are encoded only when clicked (Streamlit calls the function then), and no
    # download reruns the page: a rerun would redo the whole batch and re-register every deferred
    # download, and a click that still holds the previous registration then downloads nothing.
    d0.download_button(
        "Printable report",
        printable,
        f"{stem}.report.html",
        "text/html",
        key=f"html{number}",
        on_click="ignore",
        help="One self-contained page (pictures, answer, checks, model) to print or keep; open it in a browser.",
    )
    d1.download_button(
        "Overlay PNG",
        functools.partial(png_bytes, overlay),
        f"{stem}.overlay.png",
        "image/png",
        key=f"png{number}",
        on_click="ignore",
    )
    d2.download_button(
        "Report JSON",
        json.dumps(report, indent=1),
        f"{stem}.report.json",
        "application/json",
        key=f"json{number}",
        on_click="ignore",
    )
    row = result.as_row(name, loaded.jpeg_quality)
    d3.download_button(
        "Report CSV",
        predictions_table([row]).to_csv(index=False),
        f"{stem}.report.csv",
        "text/csv",
        key=f"csv{number}",
        on_click="ignore",
    )
    d4.download_button(
        "Heat map (.npy)",
        functools.partial(npy_bytes, analysis.heat),
        f"{stem}.heatmap.npy",
        "application/octet-stream",
        key=f"npy{number}",
        on_click="ignore",
    )
    summary.append((number, row))
    progress.progress(number / len(files))
progress.empty()

if summary_slot is not None:
    with summary_slot:
        st.subheader("Summary")
        table = worklist_table([row for _, row in summary], [number for number, _ in summary])
        referred = int((table["advice"] != "").sum())
        st.caption(
            f"{len(table)} pictures, {referred} to refer to a dermatologist. Referrals first, highest malignant "
            "risk first; # is the picture's number in the details below. Same columns as `python -m skin_model "
            "predict`."
        )
        first = [
            "#",
            "file",
            "advice",
            "malignant_probability",
            "predicted_class",
            "prediction_set",
            "similar_cases_majority",
        ]
        st.dataframe(
            table,
            width="stretch",
            hide_index=True,
            column_order=[*first, *(c for c in table.columns if c not in first)],
            column_config={
                "advice": st.column_config.TextColumn("advice", width="medium"),
                "malignant_probability": st.column_config.ProgressColumn(
                    "malignant risk", format="percent", min_value=0.0, max_value=1.0
                ),
            },
        )
        st.download_button("Summary CSV", table.to_csv(index=False), "summary.csv", "text/csv", on_click="ignore")
