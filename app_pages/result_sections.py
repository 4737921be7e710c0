"""Page sections about one picture's result: similar training lesions, stability,
patient details and findings."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages.common import data_picture
from skin_model.case_report import Finding, similar_cases_finding, stability_finding
from skin_model.cases import SimilarCase
from skin_model.classes import MALIGNANT_CLASSES, plain_name
from skin_model.robustness import StabilityCheck
from skin_model.sources import COLLECTION_TITLES, source_collection
from skin_model.subgroups import ATTRIBUTES, patient_context, validation_groups


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
