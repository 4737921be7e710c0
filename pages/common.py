"""Shared UI pieces for every page: cached loading, charts, and fixed texts.

Pages stay thin: anything about models, metrics or images is done by ``skin_model``;
this module only loads it once and draws it.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from skin_model import artifact as artifact_io
from skin_model.case_report import DISCLAIMER as REPORT_DISCLAIMER
from skin_model.case_report import Finding, similar_cases_finding, split_title, stability_finding
from skin_model.cases import CASES_REPORT_FILE, SimilarCase
from skin_model.classes import CLASS_NAMES, MALIGNANT_CLASSES, plain_name
from skin_model.conformal import (
    PREDICTION_SETS_FILE,
    class_thresholds,
    coverage_shortfalls,
    set_report,
    split_half_coverage,
)
from skin_model.evaluation import stored_scores
from skin_model.explain import METHOD_LABELS
from skin_model.follow_up import PhotoToPhoto
from skin_model.paths import AUDIT_DIR, TRAINED_MODELS_DIR
from skin_model.risk_context import NEIGHBOURS, RiskContext
from skin_model.robustness import COMPRESSION_NOTE_BELOW, COMPRESSION_REPORT_FILE, StabilityCheck
from skin_model.robustness import REPORT_FILE as ROBUSTNESS_FILE
from skin_model.sources import COLLECTION_TITLES, DataNotFoundError, resolve_data_dir, source_collection
from skin_model.subgroups import ATTRIBUTES, MIN_IMAGES, SUBGROUPS_FILE, patient_context, validation_groups

DISCLAIMER = f"**{REPORT_DISCLAIMER.headline}** {REPORT_DISCLAIMER.detail}"
COLORSCALE = "Viridis"  # perceptually uniform and readable with colour-blindness
SHORT = {name: "".join(w[0] for w in name.split()).upper() for name in CLASS_NAMES}


def keep_tensorflow_state_between_reruns() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every script run.

    Streamlit's script runner does that to reset "stateful modules"; with Keras 3 it also
    clears TensorFlow's kernel cache, so the cached, already-traced model rebuilt all its
    CPU kernels on the first call of every rerun: an upload took ~7 s instead of ~0.3 s.
    The shared model is read-only (see ``load_model_bundle``), so there is nothing to reset.
    The replacement keeps the rest of Streamlit's clean-up (closing matplotlib figures).
    Idempotent; if a Streamlit release moves the hook, it does nothing.
    """
    from streamlit.runtime.scriptrunner import script_runner

    original = getattr(script_runner, "_clean_problem_modules", None)
    if original is None or getattr(original, "keeps_keras", False):
        return

    def clean_problem_modules_except_keras() -> None:
        import sys

        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            with contextlib.suppress(Exception):
                plt.close("all")

    clean_problem_modules_except_keras.keeps_keras = True  # type: ignore[attr-defined]
    script_runner._clean_problem_modules = clean_problem_modules_except_keras


def png_bytes(image) -> bytes:
    """A PIL image as PNG file contents (for download buttons)."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy file contents (for download buttons)."""
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def use_app_navigation() -> None:
    """Call first on every page. Streamlit starts a server in its old multipage mode
    whenever a ``pages/`` folder sits beside the entry script, and keeps it until some
    run of ``app.py`` calls ``st.navigation``: a first visitor arriving by a page's
    link (a bookmark, after a restart) got the page run on its own, without
    ``app.py``'s set-up and navigation, and every file of ``pages/`` (``common``
    included) listed as a page. This switches the server to ``app.py``'s navigation
    and reruns, so ``app.py`` runs and shows the page asked for."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def show_disclaimer() -> None:
    st.warning(DISCLAIMER, icon=":material/warning:")


@st.cache_resource(show_spinner="Loading the model…")
def load_model_bundle(model_dir: str | None = None):
    """The verified model, its compiled predictor, its explainer, its reliability
    check and its similar-case index, loaded once per server process and shared by all
    sessions (none of them holds per-user state)."""
    from skin_model.cases import CaseIndex
    from skin_model.explain import Explainer
    from skin_model.inference import Predictor
    from skin_model.reliability import ReliabilityCheck

    art = artifact_io.load_artifact(model_dir)
    # the predictor's traced pass also yields the reliability check's inputs and the
    # Grad-CAM map; the explainer serves the other methods (traced when first asked for).
    # Not frozen: 4 ms less per upload (of ~0.4 s in the browser) would cost ~0.9 s more
    # before the model is ready and ~0.3 GB of memory.
    predictor = Predictor.from_artifact(art, explain=True)
    predictor.warm_up()
    explainer = Explainer(art.model, art.input_size)
    reliability = ReliabilityCheck.from_artifact(art)
    bundle = art, predictor, explainer, reliability, CaseIndex.from_artifact(art)
    # TensorFlow and the model are ~450k long-lived Python objects; Streamlit runs a
    # full gc.collect after every script run, which scanned them all (~0.3 s of CPU per
    # rerun). Freezing moves everything alive now out of the collector's sight.
    gc.freeze()
    return bundle


def model_bundle_or_stop():
    """:func:`load_model_bundle`, or the reason it failed shown on the page, which then stops."""
    try:
        return load_model_bundle()
    except artifact_io.ArtifactError as exc:
        st.error(f"The model could not be loaded: {exc}")
        st.stop()


def split_sizes_sentence(sizes: dict[str, int] | None) -> str:
    """ "Trained on 2,697 pictures; 675 validation and 74 test pictures held out." from a
    manifest's ``split_sizes``."""
    if not sizes:
        return "Split sizes were not recorded."
    held_out = [f"{sizes[s]:,} {split_title(s)}" for s in ("val", "test") if s in sizes]
    trained = f"Trained on {sizes['train']:,} pictures" if "train" in sizes else "Training pictures not recorded"
    return f"{trained}; {' and '.join(held_out)} pictures held out." if held_out else f"{trained}."


def read_json(path: Path) -> Any:
    return artifact_io.read_report(path.parent, path.name)


@st.cache_data
def read_model_report(path: str) -> Any:
    """A JSON report beside a model (or None), read once per server process like the
    model itself, not on every rerun."""
    return read_json(Path(path))


def show_reliability(summary: dict[str, Any]) -> None:
    """What the model's reliability check does and how it measured: OOD rejection,
    false rejection, calibration before/after temperature scaling, abstention coverage."""
    reliability, bench = summary.get("reliability"), summary.get("ood_benchmark")
    if not reliability:
        st.info(f"{summary['name']} has no fitted reliability check (`python -m skin_model calibrate`).")
        return
    settings = reliability["manifest"]
    st.markdown(
        f"- **Not a lesion?** Mahalanobis distance of the model's pooled features to the nearest class, at "
        f"{len(settings.get('ood_layers', [1]))} depths of the network (flagged above the 95th percentile of "
        "validation lesions), plus image screens for blank, colourless and noise frames.\n"
        f"- **Calibration:** temperature scaling, T = {settings['temperature']:.2f}, fitted on validation.\n"
        f"- **Abstention:** the model answers only at calibrated confidence ≥ {settings['abstain_below']:.0%}; "
        "below that, or for a non-lesion image, it says *uncertain: refer*."
    )
    rows = []
    for split in ("val", "test"):
        r = reliability["report"].get(split)
        if r:
            rows.append(
                {
                    "split": split_title(split),
                    "lesions wrongly rejected as not-a-lesion": f"{r['ood_false_rejection']:.1%}",
                    "ECE before → after": f"{r['ece_before']:.3f} → {r['ece_after']:.3f}",
                    "answered (coverage)": f"{r['coverage']:.0%}",
                    "accuracy when answering": f"{r['accuracy_answered']:.0%}",
                    "accuracy on all": f"{r['accuracy_all']:.0%}",
                }
            )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if bench:
        parts = [
            f"{name}: {b['rejected']} of {b['n']} rejected"
            + (f" (missed: {', '.join(b['accepted'])})" if b["accepted"] else "")
            for name, b in bench.items()
            if name != "lesions"
        ]
        st.caption("Non-lesion images (`benchmarks/ood.py`): " + "; ".join(parts) + ".")


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


def data_picture(relative_path: str):
    """A picture of the data set (path relative to its root), when the data set is on
    this machine, else None."""
    from skin_model.images import ImageLoadError, load_image

    try:
        path = resolve_data_dir(None) / relative_path
        return load_image(path).image if path.is_file() else None
    except (DataNotFoundError, ImageLoadError):
        return None


def show_similar_cases(cases: list[SimilarCase], predicted: str, report: dict[str, Any] | None) -> None:
    """The training lesions the model finds most similar to a picture, what they were
    diagnosed as, and a warning when their majority names another class than the model."""
    st.markdown(f"**The {len(cases)} most similar training lesions** (as the model sees them)")
    finding = similar_cases_finding(cases, predicted, report)
    if finding.kind == "caution":
        st.warning(f"**{finding.headline}** {finding.detail}", icon=":material/search:")
    else:
        st.caption(finding.text)
    pictures = [data_picture(case.path) for case in cases]
    if all(picture is not None for picture in pictures):
        for start in range(0, len(cases), 5):
            for column, case, picture in zip(
                st.columns(5), cases[start : start + 5], pictures[start : start + 5], strict=False
            ):
                tag = " (malignant)" if case.label in MALIGNANT_CLASSES else ""
                column.image(
                    picture,
                    caption=f"{plain_name(case.label)}{tag} · similarity {case.similarity:.2f} · {case.isic_id}",
                    width="stretch",
                    alt=f"Training lesion {case.isic_id or case.path}, diagnosed {plain_name(case.label)}",
                )
        return
    table = pd.DataFrame(
        {
            "similarity": [case.similarity for case in cases],
            "diagnosis": [plain_name(case.label) for case in cases],
            "malignant": [case.label in MALIGNANT_CLASSES for case in cases],
            "ISIC id": [case.isic_id for case in cases],
            "collection": [COLLECTION_TITLES.get(source_collection(c.source), c.source) for c in cases],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(
        "The pictures are not shipped with the app (the ISIC images may not be redistributed); they are shown "
        "when the data set is on this machine (`SKIN_DATA_DIR`). The ISIC ids find them in the ISIC archive."
    )


def show_stability(check: StabilityCheck, report: dict[str, Any] | None) -> None:
    """Whether the picture's answer survives small changes of the photo, with what such
    stability was worth on validation (``benchmarks/robustness.py``), when measured."""
    finding = stability_finding(check, report)
    if finding.kind == "caution":
        st.warning(f"**{finding.headline}** {finding.detail}", icon=":material/compare_arrows:")
    else:
        st.caption(finding.text)


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
    st.caption(
        f"The answer held under every change for {report['stable_share']:.0%} of the pictures; it was right on "
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
        for quality, r in report["report"].items()
    ]
    split = split_title(report["split"])
    st.markdown(
        "The seed set's pictures were saved as JPEG at quality 95, the ISIC 2017 ones at 75, and ISIC 2017 holds "
        f"only {narrow}. Every {split} picture was saved again at lower qualities (as another archive or camera "
        "might store it) and the model asked again:"
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


# The patient details a clinician may give on the Diagnose page (never shown to the model).
PATIENT_DETAILS = ("site", "age", "sex")
NOT_GIVEN = "not given"


def patient_detail_inputs(report: dict[str, Any] | None) -> dict[str, str]:
    """Sidebar choices of the patient's body site, age band and sex, offered from the
    groups the model's subgroup report measured on validation; returns those given."""
    val = validation_groups(report)
    if not val:
        return {}
    st.subheader("Patient (optional)")
    chosen = {}
    for attribute in PATIENT_DETAILS:
        groups = list(val["attributes"].get(attribute, {}))
        if groups:
            choice = st.selectbox(
                ATTRIBUTES[attribute].capitalize(),
                [NOT_GIVEN, *groups],
                help="Not used by the model: the page quotes how the model did on validation lesions of such patients.",
            )
            if choice != NOT_GIVEN:
                chosen[attribute] = choice
    return chosen


def show_patient_context(report: dict[str, Any] | None, chosen: dict[str, str]) -> None:
    """How the model did on validation lesions of patients like the one described."""
    context = patient_context(report, chosen)
    if context is None:
        return
    scope, lines = context
    st.info(
        f"**How the model did for patients like this one** ({scope}). The model does not see these details.\n"
        + "\n".join(f"- {line}" for line in lines),
        icon=":material/person:",
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


@st.cache_data
def model_summaries() -> list[dict[str, Any]]:
    """Manifest and evaluation of every shipped model (weights not needed)."""
    out = []
    default = None
    with contextlib.suppress(artifact_io.ArtifactError):
        default = artifact_io.default_model_dir().name
    for path in artifact_io.list_model_dirs(TRAINED_MODELS_DIR):
        manifest = json.loads((path / artifact_io.MANIFEST_FILE).read_text())
        out.append(
            {
                "name": path.name,
                "path": str(path),
                "default": path.name == default,
                "manifest": manifest,
                "evaluation": artifact_io.read_evaluation(path),
                "reliability": read_json(path / "reliability.json"),
                "ood_benchmark": read_json(path / "ood_benchmark.json"),
                "explanation_check": read_json(path / "explanation_check.json"),
                "cases": read_json(path / CASES_REPORT_FILE),
                "robustness": read_json(path / ROBUSTNESS_FILE),
                "compression": read_json(path / COMPRESSION_REPORT_FILE),
                "subgroups": read_json(path / SUBGROUPS_FILE),
                "prediction_sets": read_json(path / PREDICTION_SETS_FILE),
                "history": pd.read_csv(path / artifact_io.HISTORY_FILE)
                if (path / artifact_io.HISTORY_FILE).is_file()
                else None,
            }
        )
    return sorted(out, key=lambda m: (not m["default"], m["name"]))


@st.cache_data
def load_audit() -> dict[str, Any] | None:
    return read_json(AUDIT_DIR / "audit.json")


@st.cache_data
def load_manifest_table() -> pd.DataFrame | None:
    path = AUDIT_DIR / "manifest.csv"
    return pd.read_csv(path) if path.is_file() else None


# the picture formats the uploaders accept (the loader reads them all; see skin_model.images)
IMAGE_TYPES = ["jpg", "jpeg", "png", "heic", "heif", "avif", "bmp", "tif", "tiff", "webp"]

# how each kind of statement is shown: a reason to refer in red, a caution in amber
FINDING_BOXES = {
    "not_a_lesion": ("error", ":material/block:"),
    "high_risk": ("error", ":material/flag:"),
    "unsure": ("warning", ":material/help:"),
    "caution": ("warning", ":material/warning:"),
    "below_threshold": ("success", ":material/check_circle:"),
    "note": ("info", ":material/info:"),
}


def show_finding(finding: Finding) -> None:
    """One statement about a result, in the box its kind calls for."""
    box, icon = FINDING_BOXES[finding.kind]
    getattr(st, box)(f"**{finding.headline}** {finding.detail}".strip(), icon=icon)


@st.cache_data
def photo_to_photo(model_dir: str) -> PhotoToPhoto | None:
    """How much the model's answer differed between two photos of one validation lesion."""
    path = Path(model_dir)
    fingerprint = (read_json(path / artifact_io.MANIFEST_FILE) or {}).get("data_fingerprint")
    evaluation = read_json(path / artifact_io.EVALUATION_FILE)
    return PhotoToPhoto.from_stored(load_manifest_table(), evaluation, fingerprint)


def comparison_chart(earlier: np.ndarray, later: np.ndarray) -> go.Figure:
    """The nine class probabilities of two pictures side by side, one row per class."""
    names = [plain_name(n) for n in CLASS_NAMES][::-1]
    fig = go.Figure(
        [
            go.Bar(
                name=name,
                y=names,
                x=values[::-1],
                orientation="h",
                marker_color=colour,
                text=[f"{v:.0%}" for v in values[::-1]],
                textposition="outside",
                hovertemplate="%{y}: %{x:.1%}<extra></extra>",
            )
            for name, values, colour in (("earlier", earlier, "#9ecae1"), ("later", later, "#08519c"))
        ]
    )
    fig.update_layout(
        barmode="group",
        xaxis=dict(range=[0, 1.1], tickformat=".0%", title="probability"),
        height=460,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", traceorder="normal"),
    )
    return fig


def probability_chart(ranked: list[tuple[str, float]], malignant: set[str]) -> go.Figure:
    """Horizontal bars, most likely on top, with the percentage written on each bar."""
    names = [plain_name(n) for n, _ in ranked][::-1]
    values = [p for _, p in ranked][::-1]
    colors = ["#b2182b" if n in malignant else "#2166ac" for n, _ in ranked][::-1]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=colors,
            text=[f"{v:.1%}" for v in values],
            textposition="auto",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"),
        height=320,
        margin=dict(l=10, r=10, t=30, b=10),
        title="Class probabilities (red: malignant or pre-malignant)",
    )
    return fig


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


def confusion_figure(cm: list[list[int]], normalise: bool, of: str) -> go.Figure:
    """Annotated confusion matrix, counts or row-normalised (recall per true class);
    ``of`` names the pictures in the title ("test split", "your pictures")."""
    counts = np.asarray(cm, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalise else counts
    text = [[f"{v:.0%}" if normalise else f"{int(v)}" for v in row] for row in values]
    labels = [SHORT[n] for n in CLASS_NAMES]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=labels,
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale=COLORSCALE,
            hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Confusion matrix ({'row-normalised' if normalise else 'counts'}) — {of}",
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        height=520,
    )
    return fig


def curves_figure(
    curves: dict[str, dict[str, list[float]]], per_class: dict[str, dict], kind: str, split: str
) -> go.Figure:
    """ROC or precision-recall curves per class, AUC/AP in the legend."""
    fig = go.Figure()
    for name, curve in curves.items():
        if kind == "roc":
            label = f"{SHORT[name]} (AUC {per_class[name]['roc_auc']:.2f})"
            fig.add_trace(go.Scatter(x=curve["x"], y=curve["y"], name=label, mode="lines"))
        else:
            label = f"{SHORT[name]} (AP {per_class[name]['average_precision']:.2f})"
            fig.add_trace(go.Scatter(x=curve["recall"], y=curve["precision"], name=label, mode="lines"))
    if kind == "roc":
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", mode="lines", line=dict(dash="dot", color="grey")))
        fig.update_layout(xaxis_title="1 − specificity", yaxis_title="sensitivity")
    else:
        fig.update_layout(xaxis_title="recall (sensitivity)", yaxis_title="precision")
    fig.update_layout(title=f"{'ROC' if kind == 'roc' else 'Precision-recall'} curves — {split} split", height=450)
    return fig


def reliability_figure(calibration: dict[str, Any], split: str) -> go.Figure:
    bins = calibration["bins"]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=[(b["lower"] + b["upper"]) / 2 for b in bins],
            y=[b["accuracy"] for b in bins],
            width=0.09,
            name="accuracy",
            text=[f"n={b['count']}" for b in bins],
            textposition="outside",
        )
    )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dot", color="grey"))
    )
    fig.update_layout(
        title=f"Reliability diagram — {split} split (ECE {calibration['ece']:.3f})",
        xaxis_title="top-class confidence",
        yaxis_title="accuracy",
        yaxis_range=[0, 1.1],
        height=400,
    )
    return fig


def history_figure(history: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    epochs = history.index + 1
    for column, label in (
        ("loss", "training loss"),
        ("accuracy", "training accuracy"),
        ("val_balanced_accuracy", "validation balanced accuracy"),
    ):
        if column in history:
            fig.add_trace(go.Scatter(x=epochs, y=history[column], name=label, mode="lines+markers"))
    fig.update_layout(
        title="Training curves (training split; selection on validation)", xaxis_title="epoch", height=380
    )
    return fig


# Sources and splits in their own colours (and a fixed order), so a bar colour never means
# "seed Train folder" in one chart and "training split" in the one beside it.
COUNT_GROUPS = {
    "seed_train": ("seed set, Train folder", "#8c6d31"),
    "seed_test": ("seed set, Test folder", "#e7ba52"),
    "isic2017": ("ISIC 2017 training set", "#bd9e39"),
    "ham10000": ("HAM10000", "#843c39"),
    "train": ("training split", "#1b9e77"),
    "val": ("validation split", "#7570b3"),
    "test": ("test split", "#d95f02"),
}


def percent_bar(label: str | None = None) -> st.column_config.ProgressColumn:
    """A 0-100 column as a bar with whole percents ("81%", not Streamlit's "81.25%")."""
    return st.column_config.ProgressColumn(label, format="%.0f%%", min_value=0, max_value=100)


def class_counts_figure(counts: dict[str, dict[str, int]], title: str) -> go.Figure:
    """Stacked bars of images per class, one trace per source or split of the audit's counts."""
    fig = go.Figure()
    order = [g for g in COUNT_GROUPS if g in counts] + [g for g in counts if g not in COUNT_GROUPS]
    for group in order:
        per_class = counts[group]
        label, colour = COUNT_GROUPS.get(group, (group, None))
        fig.add_trace(
            go.Bar(
                name=label,
                marker_color=colour,
                x=[SHORT[c] for c in CLASS_NAMES],
                y=[per_class.get(c, 0) for c in CLASS_NAMES],
                text=[per_class.get(c, 0) for c in CLASS_NAMES],
                textposition="auto",
            )
        )
    fig.update_layout(barmode="stack", title=title, height=380, yaxis_title="images")
    return fig


def legend_caption() -> str:
    return " · ".join(f"{SHORT[n]} = {n}" for n in CLASS_NAMES)


def asset(path: str) -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / path
