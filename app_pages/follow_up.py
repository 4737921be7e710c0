"""Follow-up: two pictures of one lesion taken at different times, read side by side and
the change of the answer set against how much two photos of one lesion differ anyway."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages.charts import comparison_chart
from app_pages.common import IMAGE_TYPES, model_bundle_or_stop, model_queue, photo_to_photo, show_disclaimer
from app_pages.result_sections import show_finding
from skin_model.case_report import explanation_caption, verdict
from skin_model.classes import plain_name
from skin_model.explain import METHOD_LABELS, render_overlay
from skin_model.follow_up import compare
from skin_model.images import ImageLoadError, load_image
from skin_model.inference import diagnose
from skin_model.lesion_change import compare_lesions
from skin_model.lesion_measures import measure_lesion
from skin_model.model_queue import ANSWER
from skin_model.segmentation import PHOTO_TO_PHOTO_FILE, draw_outline

st.title("Has it changed? Two pictures of one lesion")
show_disclaimer()
st.markdown(
    "Upload an earlier and a later dermoscopic picture of the **same lesion**. The model reads each on its own; "
    "the page shows both answers and says whether the change of the malignant risk stands out from how much two "
    "photos of one unchanged lesion differ."
)
bundle = model_bundle_or_stop()
art, predictor, reliability = bundle.artifact, bundle.predictor, bundle.reliability
prediction_sets = bundle.prediction_sets

results, measured = {}, {}
segmenter = bundle.segmenter
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
            result = model_queue().run(
                ANSWER,
                diagnose,
                predictor,
                loaded.image,
                art.malignant_threshold,
                reliability,
                explain=predictor.explains,
                prediction_sets=prediction_sets,
            )
        label = plain_name(result.predicted_class)
        lesion = model_queue().run(ANSWER, segmenter.segment, loaded.image) if segmenter is not None else None
        if lesion is not None and lesion.found:
            measured[when] = measure_lesion(lesion.mask, np.asarray(loaded.image))
        if result.heat is not None:
            overlay = render_overlay(loaded.image, result.heat, opacity=0.45)
            st.image(
                draw_outline(overlay, lesion.mask) if lesion is not None and lesion.found else overlay,
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

if segmenter is not None:
    st.subheader("The lesion's outline")
    if len(measured) < 2:
        st.info("No lesion outline was found in one of the pictures: the outlines cannot be compared.")
    else:
        changes, finding = compare_lesions(
            measured["earlier"], measured["later"], segmenter.report(PHOTO_TO_PHOTO_FILE)
        )
        show_finding(finding)
        st.dataframe(
            [
                {
                    "measurement": c.words,
                    "earlier": round(c.earlier, 3),
                    "later": round(c.later, 3),
                    "changed beyond photo-to-photo spread": "yes" if c.stands_out else "no",
                }
                for c in changes
            ],
            hide_index=True,
            width="stretch",
        )
