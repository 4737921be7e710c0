"""Model card: what the model is for, what it was trained on, how well it does, and where it fails."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.common import DISCLAIMER, model_summaries, photo_to_photo
from app_pages.lesion_sections import show_segmenter
from app_pages.model_sections import (
    show_cases_report,
    show_compression_report,
    show_explanation_check,
    show_prediction_sets,
    show_risk_meaning,
    show_robustness,
    show_subgroups,
    split_sizes_sentence,
)
from app_pages.trust_sections import (
    show_collection_transfer,
    show_heatmaps_on_lesions,
    show_referral_transfer,
    show_reliability,
)
from skin_model.artifact import earlier_schedules
from skin_model.card_text import test_time_views_text, training_data_text, training_recipe, training_time_text
from skin_model.case_report import split_title
from skin_model.classes import CLASS_NAMES, plain_name
from skin_model.robustness import COMPRESSION_NOTE_BELOW
from skin_model.sources import COLLECTION_TITLES
from skin_model.subgroups import validation_groups

st.title("Model card")
models = model_summaries()
default = next((m for m in models if m["default"]), None)
if default is None:
    st.error("No default model ships with this copy of the app.")
    st.stop()
mf, ev = default["manifest"], default["evaluation"] or {}

st.warning(DISCLAIMER, icon=":material/warning:")
st.header("Intended use")
st.markdown(
    "A **decision-support demo** for dermoscopic images of single skin lesions: it ranks 9 diagnoses, estimates a "
    "benign-vs-malignant risk and shows where in the image its evidence lies. It is meant for teaching and for "
    "exploring what such models do, **not** for diagnosing patients and not for photos taken without a "
    "dermatoscope. It is not a medical device and has no regulatory approval."
)

st.header("Model")
tc = mf.get("training_config", {})
views = test_time_views_text(mf)
st.markdown(
    f"- **{mf.get('name')}**: architecture `{mf.get('architecture')}`, {mf.get('parameters', 0):,} parameters, "
    f"input {mf.get('input_size')}×{mf.get('input_size')} RGB.\n"
    f"- Preprocessing: {mf.get('preprocessing', {}).get('resize')}; {mf.get('preprocessing', {}).get('input_range')}."
    + (f"\n- Geometry: {mf['preprocessing']['geometry']}." if mf.get("preprocessing", {}).get("geometry") else "")
    + (f"\n- Test-time views: {views}" if views else "")
    + f"\n- {training_time_text(mf, earlier_schedules(mf))}; {training_recipe(tc)}.\n"
    f"- Malignant risk = summed probability of melanoma, basal cell carcinoma, squamous cell carcinoma and actinic "
    f"keratosis; referral threshold **{mf.get('malignant_threshold', 0):.3f}**, {mf.get('malignant_threshold_rule')}.\n"
    f"- Data fingerprint `{mf.get('data_fingerprint', '')[:16]}…`; "
    f"weights SHA-256 `{mf.get('weights_sha256', '')[:16]}…`"
    + (
        f" (stored for inference: {mf['batch_norms_folded']} batch norms folded into their convolutions)."
        if mf.get("batch_norms_folded")
        else "."
    )
)

st.header("Training data")
st.markdown(training_data_text(mf, split_sizes_sentence(mf.get("split_sizes"))))
st.header("Metrics")
rows = []
for split in ("val", "test"):
    if split in ev:
        e = ev[split]
        rows.append(
            {
                "split": split_title(split),
                "images": e["n_images"],
                "balanced accuracy": e["balanced_accuracy"],
                "macro AUC": e["macro_auc"],
                "malignant AUC": e["malignant"]["roc_auc"],
                "malignant sensitivity": e["malignant"]["sensitivity"],
                "malignant specificity": e["malignant"]["specificity"],
                "ECE": e["calibration"]["ece"],
            }
        )
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
baseline = next((m for m in models if m["name"] == "seed_cnn" and m["evaluation"]), None)
if baseline:
    b = baseline["evaluation"]
    st.caption(
        "Seed baseline (same splits): "
        + "; ".join(
            f"{split_title(s)}: balanced accuracy {b[s]['balanced_accuracy']:.3f}, macro AUC {b[s]['macro_auc']:.3f}"
            for s in ("val", "test")
            if s in b
        )
    )
st.caption(
    "Validation selects the epoch and the threshold, so test numbers are the honest ones; the test split is "
    "small and lacks actinic keratosis and seborrheic keratosis (see the Dataset page)."
)

st.header("What does a malignant risk of X % mean?")
show_risk_meaning(default)

st.header("Knowing what it does not know")
show_reliability(default)

st.header("Would it hold on another clinic's camera?")
show_collection_transfer(default)
show_referral_transfer(default)

st.header("A differential, not one answer")
show_prediction_sets(default)

st.header("Do the heat maps show what the model uses?")
show_explanation_check(default)
show_heatmaps_on_lesions(default)

st.header("Where is the lesion? The outline")
show_segmenter()

st.header("Would a slightly different photo get the same answer?")
show_robustness(default)

st.header("Does it read the class off the JPEG compression?")
show_compression_report(default)

st.header("Does it do as well for every patient?")
show_subgroups(default)

st.header("Similar training lesions: a second opinion by example")
show_cases_report(default)

st.header("Known limitations and failure modes")
groups = (ev.get("val") or {}).get("by_collection") or {}
if len(groups) > 1:
    st.markdown(
        "- **Image collections:** the training collections hold different classes (ISIC 2017 brings only melanoma, "
        "nevus and seborrheic keratosis), so part of what the model learned is each collection's look. Within "
        "each collection of the validation split, at the referral threshold:\n"
        + "\n".join(
            f"  - {COLLECTION_TITLES.get(name, name)} ({g['n_images']} images): malignant sensitivity "
            f"{g['malignant_sensitivity'] or 0:.0%}, specificity {g['malignant_specificity'] or 0:.0%}, malignant AUC "
            f"{g['malignant_auc'] or float('nan'):.3f}, melanoma called melanoma {g['melanoma_sensitivity'] or 0:.0%}"
            for name, g in groups.items()
        )
        + "\n\n  The pooled figures above average these; a melanoma in a picture like the weaker collection's is "
        "missed far more often than the pooled sensitivity says."
    )
compression = (default.get("compression") or {}).get("report", {})
if "JPEG quality 75" in compression:
    stored, squeezed = compression["as stored"]["all"], compression["JPEG quality 75"]["all"]
    measured_on = split_title((default.get("compression") or {}).get("split", "val"))
    st.markdown(
        "- **JPEG compression:** the collection with only three classes was saved more compressed, and the model "
        f"learnt that too: saved again at quality 75, {squeezed['called_narrow']:.0%} of the {measured_on} lesions "
        f"of the other six classes are called melanoma, nevus or seborrheic keratosis ({stored['called_narrow']:.0%}"
        f" as stored) and balanced accuracy falls from {stored['balanced_accuracy']:.3f} to "
        f"{squeezed['balanced_accuracy']:.3f}. Pictures saved below quality "
        f"{COMPRESSION_NOTE_BELOW} get a warning."
    )
described = validation_groups(default.get("subgroups"))
sites = {n: g for n, g in (described or {}).get("attributes", {}).get("site", {}).items() if not g["small"]}
if len(sites) > 1:
    worst, best = (f(sites, key=lambda n: sites[n]["balanced_accuracy"]) for f in (min, max))
    st.markdown(
        f"- **Body sites:** on validation lesions the class answer is weakest on the {worst} (balanced accuracy "
        f"{sites[worst]['balanced_accuracy']:.3f} against {sites[best]['balanced_accuracy']:.3f} on the {best}). "
        "Patient records describe only the lesions of some classes; there are no figures by patient group for "
        f"{', '.join(described['classes_not_described'])}."
    )
spread = photo_to_photo(default["path"])
if spread is not None:
    missing = sorted(set(CLASS_NAMES) - set(spread.classes))
    st.markdown(
        "- **Follow-up comparisons:** the model reads each picture on its own and was never trained to detect "
        f"change. The Follow-up page sets a change of the malignant risk against {spread.pairs} pairs of photos of "
        f"{spread.lesions} unchanged validation lesions, none of them {', '.join(map(plain_name, missing))}."
    )
st.markdown(
    "- **Skin types:** ISIC images come mostly from fair-skinned patients in Europe, the USA and Australia; "
    "performance on darker skin is unknown and probably worse.\n"
    "- **Image sources:** trained on dermoscopic images only. Phone photos, clinical close-ups, screenshots or "
    "non-skin images give meaningless answers.\n"
    "- **Rare classes:** dermatofibroma, vascular lesion, actinic keratosis and squamous cell carcinoma have "
    "~100-170 training images each; their metrics have wide confidence intervals.\n"
    "- **Small test set:** after removing leaks, the test split has few images per class; read the 95 % "
    "bootstrap intervals on the Evaluation page.\n"
    "- **Low resolution:** the seed images are 180×180, so fine dermoscopic structures are lost.\n"
    "- **Heat maps** show where the evidence lies for the model, not why a lesion is malignant."
)
