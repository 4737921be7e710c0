"""Evaluation dashboards of the shipped models, on held-out splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app_pages.charts import confusion_figure, curves_figure, history_figure, legend_caption, reliability_figure
from app_pages.common import load_audit, model_summaries
from app_pages.model_sections import show_confused_pictures, show_prediction_set_explorer
from app_pages.trust_sections import (
    show_collection_transfer,
    show_heatmaps_on_lesions,
    show_referral_transfer,
    show_refusals_across_collections,
    show_reliability,
)
from skin_model.case_report import split_title
from skin_model.evaluation import malignant_operating_point
from skin_model.sources import COLLECTION_TITLES

st.title("Evaluation")
models = [m for m in model_summaries() if m["evaluation"]]
if not models:
    st.error("No evaluated model ships with this copy of the app (trained_models/ has no evaluation.json).")
    st.stop()

st.markdown(
    "Every number on this page is computed on images the model never trained on: the **validation** "
    "split (used to pick the best epoch and the malignant threshold) or the **test** split (the seed's "
    "Test folder minus every image whose picture or lesion also appears in Train, plus held-out lesions of "
    "every collection)."
)
audit = load_audit() or {}
current = (audit.get("settings") or {}).get("data_fingerprint")


def data_of(model: dict) -> str:
    """Which splits a model's figures come from: the current audit's, or earlier ones."""
    if model["manifest"].get("data_fingerprint") == current:
        return "current splits"
    return "earlier splits (not comparable)"


rows = []
for m in models:
    for split in ("val", "test"):
        ev = m["evaluation"].get(split)
        if ev:
            ci = (ev.get("bootstrap_95ci") or {}).get("balanced_accuracy")
            rows.append(
                {
                    "model": m["name"] + (" (default)" if m["default"] else ""),
                    "split": split_title(split),
                    "data": data_of(m),
                    "images": ev["n_images"],
                    "accuracy": ev["accuracy"],
                    "balanced accuracy": ev["balanced_accuracy"],
                    "balanced accuracy 95% CI": f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "",
                    "macro AUC": ev["macro_auc"],
                    "malignant AUC": ev["malignant"]["roc_auc"],
                    "ECE": ev["calibration"]["ece"],
                }
            )
st.subheader("All models")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
if any(data_of(m) != "current splits" for m in models):
    st.caption(
        "Models on earlier splits were trained and measured before HAM10000 joined the data (a 74-picture test "
        "split of the seed set); their figures cannot be set against the current ones."
    )

names = [m["name"] for m in models]
c1, c2 = st.columns(2)
chosen = models[names.index(c1.selectbox("Model", names))]
splits = [s for s in ("test", "val") if s in chosen["evaluation"]]
split = c2.radio("Split", splits, horizontal=True, format_func=split_title)
ev = chosen["evaluation"][split]
title = split_title(split)  # "validation", not the key "val", wherever the page writes it
missing = sorted(set(ev["per_class"]) - set(ev["classes_present"]))
st.caption(
    f"{ev['n_images']} images in the {title} split."
    + (f" Not present in this split (no recall/AUC): {', '.join(missing)}." if missing else "")
)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Balanced accuracy", f"{ev['balanced_accuracy']:.3f}")
m2.metric("Macro AUC", f"{ev['macro_auc']:.3f}" if ev["macro_auc"] is not None else "n/a")
m3.metric("Malignant AUC", f"{ev['malignant']['roc_auc']:.3f}" if ev["malignant"]["roc_auc"] else "n/a")
m4.metric("Accuracy", f"{ev['accuracy']:.3f}")

(
    tab_cm,
    tab_wrong,
    tab_curves,
    tab_table,
    tab_groups,
    tab_cal,
    tab_thr,
    tab_sets,
    tab_rel,
    tab_clinic,
    tab_maps,
    tab_hist,
) = st.tabs(
    [
        "Confusion matrix",
        "Mistakes, picture by picture",
        "ROC / PR",
        "Per-class metrics",
        "By image collection",
        "Calibration",
        "Benign/malignant threshold",
        "Differential",
        "Reliability",
        "Another clinic's camera",
        "Heat maps on lesions",
        "Training",
    ]
)
with tab_cm:
    normalise = st.toggle("Row-normalised (recall per true class)", value=False)
    st.plotly_chart(confusion_figure(ev["confusion_matrix"], normalise, f"{title} split"), width="stretch")
    st.caption(legend_caption())
with tab_wrong:
    show_confused_pictures(chosen, split)
with tab_curves:
    a, b = st.columns(2)
    a.plotly_chart(curves_figure(ev["roc_curves"], ev["per_class"], "roc", title), width="stretch")
    b.plotly_chart(curves_figure(ev["pr_curves"], ev["per_class"], "pr", title), width="stretch")
with tab_table:
    table = pd.DataFrame(ev["per_class"]).T.rename(
        columns={
            "recall": "sensitivity",
            "roc_auc": "AUC",
            "average_precision": "AP",
            "sensitivity_at_80_specificity": "sens @ 80% spec",
        }
    )
    st.dataframe(table, width="stretch")
    st.caption(f"Per-class metrics on the {title} split (one class against the rest).")
with tab_groups:
    groups = ev.get("by_collection")
    if not groups:
        st.info("This evaluation has no per-collection figures (`python -m skin_model evaluate` adds them).")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "collection": COLLECTION_TITLES.get(name, name),
                        "images": g["n_images"],
                        "classes": ", ".join(g["classes_present"]),
                        "accuracy": g["accuracy"],
                        "balanced accuracy": g["balanced_accuracy"],
                        "malignant AUC": g["malignant_auc"],
                        "malignant sens / spec": f"{g['malignant_sensitivity'] or 0:.2f} / "
                        f"{g['malignant_specificity'] or 0:.2f}",
                        "melanoma sensitivity": g["melanoma_sensitivity"],
                    }
                    for name, g in groups.items()
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        st.caption(
            f"The {title} split per source collection. The collections hold different classes (ISIC 2017 only "
            "melanoma, nevus and seborrheic keratosis), so a model can learn a collection's look as well as "
            "the lesion; pooled figures hide how it does within each. Balanced accuracy is over the classes "
            "a collection holds; sensitivity and specificity at the shipped malignant threshold."
        )
with tab_cal:
    st.plotly_chart(reliability_figure(ev["calibration"], title), width="stretch")
with tab_thr:
    scores = ev.get("scores")
    if not scores:
        st.info("This evaluation has no stored scores.")
    else:
        shipped = ev["malignant"]["threshold"]
        threshold = st.slider(
            "Malignant-risk threshold", 0.0, 1.0, float(shipped), 0.01, help=f"The shipped threshold is {shipped:.2f}."
        )
        point = malignant_operating_point(np.array(scores["y_true"]), np.array(scores["probs"]), threshold)
        a, b, c = st.columns(3)
        a.metric("Sensitivity (malignant caught)", f"{point['sensitivity']:.1%}")
        b.metric("Specificity (benign cleared)", f"{point['specificity']:.1%}")
        c.metric("Referred", f"{point['tp'] + point['fp']} of {ev['n_images']}")
        st.table(
            pd.DataFrame(
                {"called malignant": [point["tp"], point["fp"]], "called benign": [point["fn"], point["tn"]]},
                index=["truly malignant", "truly benign"],
            )
        )
        st.caption(f"Using the stored {title}-split scores of {chosen['name']}.")
with tab_sets:
    show_prediction_set_explorer(chosen, split)
with tab_rel:
    show_reliability(chosen)
with tab_clinic:
    st.markdown("**The model trained without a collection, measured on it**")
    show_collection_transfer(chosen)
    st.markdown("**Referral threshold, within each collection and fitted without it**")
    show_referral_transfer(chosen)
    st.markdown("**What the reliability check refuses, fitted with and without each collection**")
    show_refusals_across_collections(chosen)
with tab_maps:
    show_heatmaps_on_lesions(chosen, examples=True)
with tab_hist:
    if chosen["history"] is not None:
        st.plotly_chart(history_figure(chosen["history"]), width="stretch")
    mf = chosen["manifest"]
    st.caption(
        f"Trained for {mf.get('epochs_run')} epochs in {mf.get('training_wall_time_s', 0) / 60:.1f} min "
        f"on 2 CPU cores; best epoch {mf.get('best_epoch')} by validation balanced accuracy."
    )
