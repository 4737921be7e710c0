"""Follow-up: two pictures of one lesion taken at different times, read side by side and
the change of the answer set against how much two photos of one lesion differ anyway."""

from __future__ import annotations

import streamlit as st

from pages.common import (
    IMAGE_TYPES,
    METHOD_LABELS,
    comparison_chart,
    model_bundle_or_stop,
    photo_to_photo,
    plain_name,
    show_disclaimer,
    show_finding,
    use_app_navigation,
)
from skin_model.case_report import explanation_caption, verdict
from skin_model.conformal import PredictionSets
from skin_model.explain import render_overlay
from skin_model.follow_up import compare
from skin_model.images import ImageLoadError, load_image
from skin_model.inference import diagnose

use_app_navigation()
st.title("Has it changed? Two pictures of one lesion")
show_disclaimer()
st.markdown(
    "Upload an earlier and a later dermoscopic picture of the **same lesion**. The model reads each on its own; "
    "the page shows both answers and says whether the change of the malignant risk stands out from how much two "
    "photos of one unchanged lesion differ."
)
art, predictor, _, reliability, _ = model_bundle_or_stop()
prediction_sets = PredictionSets.from_manifest(art.manifest)

results = {}
for column, when in zip(st.columns(2), ("earlier", "later"), strict=True):
    with column:
        upload = st.file_uploader(
            f"{when.capitalize()} picture",
            type=IMAGE_TYPES,
            key=f"follow_up_{when}",
        )
        if upload is None:
            continue
        try:
            loaded = load_image(upload.getvalue())
        except ImageLoadError as exc:
            st.error(f"{upload.name}: {exc}")
            continue
        with st.spinner("Classifying and explaining…"):
            result = diagnose(
                predictor,
                loaded.image,
                art.malignant_threshold,
                reliability,
                explain=predictor.explains,
                prediction_sets=prediction_sets,
            )
        label = plain_name(result.predicted_class)
        if result.heat is not None:
            st.image(
                render_overlay(loaded.image, result.heat, opacity=0.45),
                caption=f"{upload.name}. {explanation_caption(METHOD_LABELS['gradcam'], label)}",
                width="stretch",
                alt=f"{when} picture {upload.name} with the model's heat map",
            )
        else:
            st.image(loaded.image, caption=upload.name, width="stretch", alt=f"{when} picture {upload.name}")
        for finding in verdict(result):
            show_finding(finding)
        st.markdown(f"Most probable: **{label}** ({result.ranked[0][1]:.1%})")
        if result.prediction_set is not None and not result.out_of_distribution:
            st.caption("Differential: " + ", ".join(plain_name(n) for n in result.prediction_set))
        results[when] = result

if len(results) < 2:
    st.info("Upload both pictures to compare them. Nothing is stored: pictures stay in this session only.")
    st.stop()

st.divider()
st.subheader("What changed")
earlier, later = results["earlier"], results["later"]
if not (earlier.out_of_distribution or later.out_of_distribution):
    st.plotly_chart(comparison_chart(earlier.probs, later.probs), width="stretch")
for finding in compare(earlier, later, photo_to_photo(str(art.path))):
    show_finding(finding)
