"""Page sections that show how the model measured: reliability, explanation checks,
robustness and compression, subgroups, similar cases, prediction sets, risk meaning and
the pictures it confused (Evaluation page and model card)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.charts import percent_bar
from app_pages.common import data_picture, load_manifest_table
from skin_model.case_report import split_title
from skin_model.classes import CLASS_NAMES, plain_name
from skin_model.conformal import (
    class_thresholds,
    coverage_shortfalls,
    set_report,
    split_half_coverage,
)
from skin_model.evaluation import stored_scores
from skin_model.explain import METHOD_LABELS
from skin_model.risk_context import NEIGHBOURS, RiskContext
from skin_model.robustness import COMPRESSION_NOTE_BELOW
from skin_model.subgroups import ATTRIBUTES, MIN_IMAGES


def split_sizes_sentence(sizes: dict[str, int] | None) -> str:
    """ "Trained on 2,697 pictures; 675 validation and 74 test pictures held out." from a
    manifest's ``split_sizes``."""
    if not sizes:
        return "Split sizes were not recorded."
    held_out = [f"{sizes[s]:,} {split_title(s)}" for s in ("val", "test") if s in sizes]
    trained = f"Trained on {sizes['train']:,} pictures" if "train" in sizes else "Training pictures not recorded"
    return f"{trained}; {' and '.join(held_out)} pictures held out." if held_out else f"{trained}."


def show_explanation_check(summary: dict[str, Any]) -> None:
    """The heat maps' deletion test (``benchmarks/explain_faithfulness.py``): how fast the
    predicted class's probability falls as the pixels a map rates highest are blurred
    away, against a random map of the same smoothness."""
    check = summary.get("explanation_check")
    if not check:
        st.info(f"No deletion test of {summary['name']}'s heat maps ships (`benchmarks/explain_faithfulness.py`).")
        return
    fractions, maps = check["fractions"], check["maps"]
    split = split_title(check["split"])
    fig = go.Figure()
    for name, figures in maps.items():
        fig.add_trace(
            go.Scatter(
                x=[100 * f for f in fractions],
                y=figures["relative_probability"],
                mode="lines+markers",
                name=METHOD_LABELS.get(name, name),
                line={"dash": "dot"} if name in ("random map", "inverted map") else None,
            )
        )
    fig.update_layout(
        title=f"Deletion test on {check['images']} {split} lesions",
        xaxis_title="% of the picture blurred away, highest-rated pixels first",
        yaxis_title="predicted class's probability (1 = untouched)",
        yaxis_range=[0, 1.05],
        height=380,
        margin={"t": 50, "b": 40},
    )
    st.plotly_chart(fig, width="stretch")
    first = next(iter(maps))
    label, ours, chance = METHOD_LABELS.get(first, first), maps[first], maps["random map"]
    st.caption(
        f"Blurring away the {fractions[1]:.0%} of the picture that {label} rates highest leaves "
        f"{ours['relative_probability'][1]:.0%} of the predicted class's probability on average; the same share "
        f"picked by a random map leaves {chance['relative_probability'][1]:.0%}. With {check['compared_at']:.0%} "
        f"removed, {label} beats the random map on {ours['beats_chance']:.0%} of the images. A faithful map shows "
        "what the model uses, which is not necessarily what a dermatologist would look at: a ruler mark or a hair "
        "the model relies on is faithfully lit up too."
    )


def show_robustness(summary: dict[str, Any]) -> None:
    """How the model's answers fare under small changes of the photo, per change."""
    report = summary.get("robustness")
    if not report:
        st.info(f"No robustness test of {summary['name']} ships (`benchmarks/robustness.py`).")
        return
    rows = [
        {
            "change": name + (" (in training augmentation)" if name in report.get("trained_on", []) else ""),
            "balanced accuracy": r["balanced_accuracy"],
            "answers that change": f"{r['top_class_flips']:.0%}",
            "mean change of malignant risk": f"{r['mean_risk_change']:.3f}",
            "referral decisions that change": f"{r['referral_flips']:.0%}",
        }
        for name, r in report["changes"].items()
    ]
    split = split_title(report["split"])
    st.markdown(
        f"Every {split} picture ({report['images']}) was changed a little, as a second photo or another camera "
        f"might (balanced accuracy unchanged: {report['balanced_accuracy']:.3f}), and the model asked again:"
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    views = report.get("check_reads_views")
    read = (
        ""
        if not views or not report.get("tta")
        else f" (each changed copy read through {views} of the 8 test-time views)"
    )
    st.caption(
        f"The answer held under every change{read} for {report['stable_share']:.0%} of the pictures; it was right on "
        f"{report['accuracy_when_stable']:.0%} of those and on {report['accuracy_when_unstable']:.0%} of the others. "
        "The Diagnose page runs the same check on every picture."
    )


def show_compression_report(summary: dict[str, Any]) -> None:
    """Whether the model reads the class off the JPEG compression (``benchmarks/jpeg_shortcut.py``)."""
    report = summary.get("compression")
    if not report:
        st.info(f"No compression test of {summary['name']} ships (`benchmarks/jpeg_shortcut.py`).")
        return
    narrow = ", ".join(report["narrow_classes"])
    rows = [
        {
            "pictures saved": quality,
            "balanced accuracy": r["all"]["balanced_accuracy"],
            "malignant AUC": r["all"]["malignant_auc"],
            "lesions of the other six classes called one of the three": f"{r['all']['called_narrow']:.0%}",
        }
        | (
            {
                "answers changed": f"{r['all']['answer_changed']:.1%}",
                "referrals changed": f"{r['all']['referral_changed']:.1%}",
            }
            if "referral_changed" in r["all"]
            else {}
        )
        for quality, r in report["report"].items()
    ]
    split = split_title(report["split"])
    st.markdown(
        "The seed set's pictures were saved as JPEG at quality 95, the ISIC 2017 ones at 75, and ISIC 2017 holds "
        f"only {narrow}. Every {split} picture was saved again at other qualities, as a PNG and at half its size (as "
        "another archive or camera might store it) and the model asked again; answers and referral decisions that "
        "changed are counted against the picture as stored:"
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        "A model that learnt the lesions, not the collections' compression, keeps its answers. The Diagnose page "
        f"warns when an uploaded JPEG was saved below quality {COMPRESSION_NOTE_BELOW}."
    )


def _rate(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0%} ({ci[0]:.0%}-{ci[1]:.0%})" if ci else f"{value:.0%}"


def subgroup_rows(split_report: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per patient group of a split's subgroup report."""
    rows = []
    for attribute, title in ATTRIBUTES.items():
        for name, g in split_report["attributes"].get(attribute, {}).items():
            rows.append(
                {
                    "group": f"{title}: {name}" + (" (few pictures)" if g["small"] else ""),
                    "pictures": g["n_images"],
                    "malignant": g["malignant_images"],
                    "balanced accuracy": g["balanced_accuracy"],
                    "malignant AUC": g["malignant_auc"],
                    "malignant referred (95 % CI)": _rate(g["malignant_sensitivity"], g["malignant_sensitivity_ci95"]),
                    "benign not referred (95 % CI)": _rate(g["malignant_specificity"], g["malignant_specificity_ci95"]),
                }
            )
    return rows


def show_subgroups(summary: dict[str, Any]) -> None:
    """The model's held-out figures per patient group (``benchmarks/subgroups.py``)."""
    report = summary.get("subgroups")
    if not report:
        st.info(f"No figures by patient group ship for {summary['name']} (`benchmarks/subgroups.py`).")
        return
    for split, r in report["splits"].items():
        with st.expander(f"{split_title(split).capitalize()} split", expanded=split == "val"):
            st.markdown(
                f"HAM10000's patient records describe {r['described']} of the {r['images']} {split_title(split)} "
                f"pictures: {', '.join(r['classes_described'])}. None of the {', '.join(r['classes_not_described'])} "
                "pictures is described, so these figures say nothing about those classes (melanoma above all). "
                f"Referral at the shipped malignant-risk threshold ({report['malignant_threshold']:.2f}); balanced "
                "accuracy over the classes each group holds."
            )
            rows = subgroup_rows(r)
            # tall enough to show every group without scrolling inside the table
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=36 * (len(rows) + 1) + 3)
    st.caption(
        f"Groups with fewer than {MIN_IMAGES} pictures are marked: one picture moves their figures by 5 points or "
        "more. Differences between groups follow their class mix (column 'malignant') as well as the patients."
    )


def show_cases_report(summary: dict[str, Any]) -> None:
    """How the similar-case view measured (``python -m skin_model cases``)."""
    report = summary.get("cases")
    if not report:
        st.info(f"{summary['name']} ships no similar-case index (`python -m skin_model cases`).")
        return
    r = report["report"]
    rows = []
    for split in ("val", "test"):
        scopes = {"all images": r.get(split), "answered by the model": (r.get(split) or {}).get("among_answered")}
        for scope, f in scopes.items():
            if not f or not f["images"]:
                continue
            when_not = f["model_accuracy_when_disagree"]
            rows.append(
                {
                    "split": split_title(split),
                    "images": f"{scope} ({f['images']})",
                    "cases' majority agrees": f"{f['agreement']:.0%}",
                    "model right when it agrees": f"{f['model_accuracy_when_agree']:.0%}",
                    "model right when it does not": "-"
                    if when_not is None
                    else f"{when_not:.0%} ({f['disagreeing_images']} images)",
                    "majority alone, balanced accuracy": f"{f['cases_majority_balanced_accuracy']:.3f}",
                }
            )
    st.markdown(
        f"For every picture the app shows the {r['k']} training lesions (one photo per lesion) whose pooled "
        f"features lie closest to the picture's, from an index of {r['fitted_on']}, and warns when most of them "
        "carry another diagnosis than the model's answer."
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def show_prediction_sets(summary: dict[str, Any]) -> None:
    """How the model's differentials (conformal prediction sets) measured, per split and class."""
    report = summary.get("prediction_sets")
    if not report:
        st.info(f"{summary['name']} has no prediction sets (`python -m skin_model sets`).")
        return
    halves = report["val_split_halves"]
    st.markdown(
        f"With every answer the Diagnose page names a **differential**: the classes the model cannot rule out at "
        f"{1 - report['alpha']:.0%} coverage (class-conditional split conformal prediction: for each class, a "
        "probability threshold chosen on the validation pictures of that class so that the set holds their true "
        f"class at least {1 - report['alpha']:.0%} of the time; the most probable class is always in). The "
        "guarantee holds for pictures like the validation ones. Thresholds fitted on one half of validation and "
        f"measured on the other ({halves['repeats']} random halvings): coverage {halves['coverage_mean']:.1%} on "
        f"average (5th percentile {halves['coverage_5th_percentile']:.1%}), {halves['mean_size']:.2f} classes per "
        "set. Validation below is where the thresholds were fitted; test is held out."
    )
    rows = []
    for split in ("val", "test"):
        r = report.get(split)
        if not r:
            continue
        row = {
            "split": split_title(split),
            "images": r["images"],
            "true class in the set": f"{r['coverage']:.1%}",
            "classes per set": f"{r['mean_size']:.2f}",
            "one class only": f"{r['single_class_share']:.0%}",
            "malignant lesions whose set names a malignant class": "-"
            if r["malignant_with_a_malignant_class"] is None
            else f"{r['malignant_with_a_malignant_class']:.0%}",
        }
        row.update({plain_name(c): f"{v['covered']}/{v['images']}" for c, v in r["per_class"].items()})
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    short = coverage_shortfalls(report.get("test") or {}, report["alpha"])
    if short:
        st.warning(
            "On the test split the sets held the true class clearly less often than they should for "
            + ", ".join(f"{plain_name(c)} ({v['covered']} of {v['images']})" for c, v in short.items())
            + " (one-sided binomial test, p < 0.05): the coverage holds on average, not for every class.",
            icon=":material/trending_down:",
        )


def show_risk_meaning(summary: dict[str, Any]) -> None:
    """How often held-out lesions were malignant at each level of the malignant risk."""
    contexts = [RiskContext.from_evaluation(summary["evaluation"], split) for split in ("val", "test")]
    contexts = [c for c in contexts if c is not None]
    if not contexts:
        st.info(f"{summary['name']} ships no stored scores to read its risk against.")
        return
    st.markdown(
        "The malignant risk is the summed probability of the four malignant or pre-malignant classes, from a model "
        "trained with the classes balanced: a score to rank and refer by, not a calibrated probability. Per risk "
        "band, how many held-out lesions were malignant (95 % Wilson intervals). The Diagnose page reads each "
        f"picture's risk the same way against the {NEIGHBOURS} validation lesions with the closest risk."
    )
    rows = []
    for context in contexts:
        for row in context.table():
            low, high = row["ci95"]
            rows.append(
                {
                    "split": f"{split_title(context.split)} ({context.prevalence:.0%} malignant)",
                    "risk": row["risk"],
                    "lesions": row["lesions"],
                    "mean risk": f"{row['mean risk']:.0%}",
                    "malignant": f"{row['malignant']:.0%} ({low:.0%}-{high:.0%})",
                }
            )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        "Where malignant lesions are rarer than among these pictures (a general practice, a screening "
        "programme), the same risk means a lower chance of malignancy; the referral threshold was chosen for "
        "sensitivity, not as a probability."
    )


def show_prediction_set_explorer(summary: dict[str, Any], split: str) -> None:
    """The differential's coverage against its width, for any coverage asked: thresholds
    fitted on the stored validation probabilities, measured on ``split``'s."""
    evaluation = summary["evaluation"]
    val, shown = (stored_scores(evaluation, s) for s in ("val", split))
    if val is None or shown is None:
        st.info("This evaluation has no stored scores.")
        return
    shipped = summary["manifest"].get("prediction_set_alpha")
    coverage = st.slider(
        "Coverage asked for",
        0.5,
        0.99,
        1 - float(shipped) if shipped is not None else 0.9,
        0.01,
        format="%.2f",
        help="The differential the Diagnose page shows uses the model's recorded coverage"
        + (f" ({1 - shipped:.0%})." if shipped is not None else " (this model has none: `python -m skin_model sets`)."),
    )
    alpha = round(1 - coverage, 4)
    (p_val, y_val), (probs, y) = val, shown
    report = set_report(probs, y, class_thresholds(p_val, y_val, alpha))
    a, b, c = st.columns(3)
    a.metric("True class in the set", f"{report['coverage']:.1%}")
    b.metric("Classes per set", f"{report['mean_size']:.2f}")
    c.metric("One class only", f"{report['single_class_share']:.0%}")
    if split == "val":
        halves = split_half_coverage(p_val, y_val, alpha, repeats=50)
        st.caption(
            f"Validation is where the thresholds are fitted, so these figures flatter them. Fitted on one half and "
            f"measured on the other (50 random halvings): {halves['coverage_mean']:.1%} of true classes in the set "
            f"(5th percentile {halves['coverage_5th_percentile']:.1%}), {halves['mean_size']:.2f} classes per set."
        )
    table = pd.DataFrame(
        [
            {"class": plain_name(c), "pictures": v["images"], "true class in the set": 100 * v["covered"] / v["images"]}
            for c, v in report["per_class"].items()
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch", column_config={"true class in the set": percent_bar()})
    short = coverage_shortfalls(report, alpha)
    st.caption(
        f"Class-conditional split conformal prediction: per class, the probability threshold that keeps at least "
        f"{coverage:.0%} of that class's validation pictures in their set; the most probable class is always in. "
        f"Measured on the {split_title(split)} split of {summary['name']}."
        + (
            " Below the coverage by more than chance (one-sided binomial test, p < 0.05): "
            + ", ".join(f"{plain_name(c)} ({v['covered']} of {v['images']})" for c, v in short.items())
            + "."
            if short
            else ""
        )
    )


def show_confused_pictures(summary: dict[str, Any], split: str) -> None:
    """One off-diagonal cell of a model's confusion matrix, picture by picture: the
    stored scores aligned with the audit's manifest rows (no model run), and the
    pictures themselves when the data set is on this machine."""
    from skin_model.evaluation import confused_pictures, stored_split_scores

    table = load_manifest_table()
    if table is None:
        st.info("The audit's manifest (assets/audit/manifest.csv) does not ship with this copy.")
        return
    try:
        rows, y, probs = stored_split_scores(
            table, summary["evaluation"], split, summary["manifest"].get("data_fingerprint")
        )
    except ValueError as exc:
        st.info(f"No picture-by-picture view for {summary['name']}: {exc}.")
        return
    cm = np.array(summary["evaluation"][split]["confusion_matrix"])
    cells = sorted(
        ((t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p and cm[t, p]),
        key=lambda cell: (CLASS_NAMES[cell[0]] != "melanoma", -cm[cell]),  # missed melanomas first
    )
    if not cells:
        st.success(f"No picture of the {split_title(split)} split was answered with another class.")
        return
    true_class, answered = st.selectbox(
        "Pictures of", cells, format_func=lambda c: f"{CLASS_NAMES[c[0]]} answered {CLASS_NAMES[c[1]]} ({cm[c]})"
    )
    frame = confused_pictures(rows, y, probs, true_class, answered)
    shown = frame.drop(columns="path").rename(
        columns={"answered": f"p({CLASS_NAMES[answered]})", "true class": f"p({CLASS_NAMES[true_class]})"}
    )
    st.dataframe(shown, hide_index=True, width="stretch")
    pictures = [(r.isic_id, data_picture(r.path)) for r in frame.head(12).itertuples()]
    if all(image is None for _, image in pictures):
        st.caption(
            "The pictures themselves show when the data set is on this machine (see README, 'Getting the data'); "
            "the ISIC ids find them in the ISIC archive."
        )
        return
    cols = st.columns(6)
    for k, (isic_id, image) in enumerate(pictures):
        if image is not None:
            cols[k % 6].image(image, caption=isic_id, alt=f"{CLASS_NAMES[true_class]} answered {CLASS_NAMES[answered]}")
