"""Your pictures: the model measured on a clinic's own labelled pictures (a zip of class
folders), like for like against its own figures, before anyone relies on it."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import streamlit as st

from app_pages.charts import confusion_figure, legend_caption, percent_bar
from app_pages.common import load_manifest_table, model_bundle_or_stop, show_disclaimer
from skin_model.classes import CLASS_NAMES, plain_name
from skin_model.images import ImageLoadError, zip_members
from skin_model.labelled_pictures import read_labelled_zip
from skin_model.local_validation import (
    comparison_note,
    conclusion,
    figure_rows,
    validate_folder,
)

st.title("Does it work on your pictures?")
show_disclaimer()
st.markdown(
    "The model's figures were measured on ISIC archive pictures; your dermatoscope, patients and light may not "
    "give the same. Upload a **zip of pictures whose diagnosis you know**, one folder per diagnosis, and the page "
    "measures the model on them beside its own figures on the same kinds of lesion."
)
with st.expander("How to prepare the zip"):
    st.markdown(
        "Name each folder after a diagnosis, as the model's classes or by their ISIC / HAM10000 codes:\n\n"
        + "\n".join(f"- `{name}`" for name in CLASS_NAMES)
        + "\n\nor `AK`/`akiec`, `BCC`, `DF`, `MEL`, `NV`, `BKL`, `SK`, `SCC`, `VASC`. A wrapping folder is fine "
        "(`my clinic/MEL/a.jpg`). Pictures the model was trained on are recognised and left out, so they cannot "
        "flatter it. At most 500 pictures; the zip is read in memory, and the result is kept only in this browser "
        "session. The same check runs "
        "on a folder with `python -m skin_model validate FOLDER`."
    )
bundle = model_bundle_or_stop()
art = bundle.artifact

upload = st.file_uploader("Zip of class folders", type=["zip"], key="validation_zip")
if upload is None:
    st.session_state.pop("your_pictures_result", None)
    st.info("Upload a zip to measure the model on your pictures. Nothing is stored.")
    st.stop()

# kept in this session so that a toggle below neither unpacks the zip nor runs the model again
key = (art.manifest.get("weights_sha256"), hashlib.sha256(upload.getvalue()).hexdigest())
kept = st.session_state.get("your_pictures_result")
if kept is None or kept[0] != key:
    try:
        members, refused = zip_members(upload.getvalue())
        rows = read_labelled_zip(members)
    except (ImageLoadError, ValueError) as exc:
        st.error(f"{upload.name}: {exc}")
        st.stop()
    bar = st.progress(0.0, text=f"Reading {len(rows)} pictures with the model…")

    def show_progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Read {done} of {total} pictures with the model…")

    with st.spinner("Measuring…"):
        measured = validate_folder(
            rows,
            art,
            load_manifest_table(),
            progress=False,
            bundle=bundle,
            on_progress=show_progress,
        )
    bar.empty()
    kept = (key, refused, *measured)
    st.session_state["your_pictures_result"] = kept
_, refused, report, table = kept
if refused:
    st.warning(f"{len(refused)} entries of the zip were refused: " + "; ".join(f"{n} ({r})" for n, r in refused[:5]))

st.markdown(
    f"**{report['pictures']}** pictures: **{report['evaluated']}** evaluated, {report['unreadable']} unreadable, "
    f"{report['seen_in_training']} left out as pictures the model trained on (training check "
    f"{report['training_check']})."
)
if not report["evaluated"]:
    st.error("No picture could be evaluated: see the table below for why.")
else:
    counts = ", ".join(f"{plain_name(n)} {k}" for n, k in report["per_class_counts"].items())
    st.caption(f"Diagnoses: {counts}.")
    kind, sentence = conclusion(report)
    {"lower": st.error, "uncertain": st.warning, "consistent": st.success}[kind](sentence)
    st.dataframe(
        pd.DataFrame(figure_rows(report)),
        hide_index=True,
        column_config={
            "your pictures": st.column_config.NumberColumn(format="%.3f"),
            "model, validation": st.column_config.NumberColumn(format="%.3f"),
            "model, test": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    st.caption(
        comparison_note(report) + " 95% CI: bootstrap interval of your figure (1,000 resamples). Balanced "
        "accuracy is the mean recall of your classes; referral = malignant risk at or above the model's "
        f"threshold of {art.malignant_threshold:.0%}."
    )
    if report.get("prediction_sets"):
        sets = report["prediction_sets"]
        st.markdown(
            f"The differential at {sets['coverage_target']:.0%} coverage held the true diagnosis for "
            f"**{sets['coverage']:.1%}** of your pictures ({sets['mean_size']:.2f} classes on average)."
        )
    st.subheader("Per diagnosis")
    st.dataframe(
        pd.DataFrame(
            {
                "diagnosis": [plain_name(n) for n in report["per_class_recall"]],
                "pictures": [report["per_class_counts"][n] for n in report["per_class_recall"]],
                "named correctly": [100 * r for r in report["per_class_recall"].values()],
            }
        ),
        hide_index=True,
        column_config={"named correctly": percent_bar()},
    )

    missed = pd.DataFrame(report["missed_malignant"])
    st.subheader("Malignant lesions not referred")
    if missed.empty:
        st.markdown("Every evaluated malignant or pre-malignant lesion reached the referral threshold.")
    else:
        st.caption(
            f"Their malignant risk stayed below the threshold of {art.malignant_threshold:.1%}; an 'advice' entry "
            "means the answer was still sent to a dermatologist as uncertain or not a lesion."
        )
        shown = pd.DataFrame(
            {
                "file": missed["file"],
                "diagnosis": missed["true_class"].map(plain_name),
                "answered": missed["predicted_class"].map(plain_name),
                "malignant risk": 100 * missed["malignant_probability"],
                "advice": missed["advice"],
            }
        )
        st.dataframe(
            shown, hide_index=True, column_config={"malignant risk": st.column_config.NumberColumn(format="%.1f%%")}
        )
    normalise = st.toggle("Row-normalised (recall per true class)", key="your_pictures_normalise")
    st.plotly_chart(confusion_figure(report["confusion_matrix"], normalise, "your pictures"), width="stretch")
    st.caption(legend_caption())

left_out = table[(table["seen_in_training"] != "") | (table["status"] != "ok")]
if len(left_out):
    st.subheader("Left out")
    reason = left_out["seen_in_training"].where(left_out["seen_in_training"] != "", left_out["status"])
    st.dataframe(left_out.assign(reason=reason)[["file", "true_class", "reason"]], hide_index=True)
st.download_button("Per-picture table (CSV)", table.to_csv(index=False), f"{art.name}-your-pictures.csv", "text/csv")
st.download_button("Report (JSON)", json.dumps(report, indent=1), f"{art.name}-your-pictures.json", "application/json")
