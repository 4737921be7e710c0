"""One picture's analysis, as the Diagnose page and ``explain`` both give it: the
verdict (probabilities, risk, reliability, similar lesions, differential), the heat map
and its deletion check, what the risk has meant, the compression note, the stability
check and the printable report. Written once, so the page and the command line cannot
drift apart."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .bundle import ModelBundle
from .case_report import (
    Finding,
    ModelFacts,
    answer_checks,
    case_report_html,
    compression_finding,
    explanation_caption,
    prediction_set_finding,
    risk_meaning_finding,
)
from .cases import CASES_REPORT_FILE
from .classes import CLASS_NAMES, plain_name
from .conformal import PREDICTION_SETS_FILE
from .explain import (
    DEFAULT_METHOD,
    MALIGNANT_TARGET,
    METHOD_LABELS,
    SCORECAM_CHANNELS,
    EvidenceCheck,
    evidence_check,
    lesion_mask_agreement,
    render_overlay,
)
from .export import ExportedPredictor
from .images import LoadedImage
from .inference import Diagnosis, Predictor, diagnose
from .lesion_measures import MEANINGS, LesionMeasures, measure_lesion
from .model_files import EVALUATION_FILE
from .robustness import COMPRESSION_REPORT_FILE, STABILITY_VIEWS, StabilityCheck, stability_check
from .robustness import REPORT_FILE as ROBUSTNESS_FILE
from .segmentation import SegmentedLesion

# below this share of a map's heat inside the outlined lesion, the page warns that most
# of the evidence lies outside it
HEAT_INSIDE_WARNING = 0.5


@dataclass
class PictureAnalysis:
    """Everything said about one picture except the stability check (see
    :func:`check_stability`), which costs more than all of this and is shown last."""

    loaded: LoadedImage
    result: Diagnosis
    method: str
    target: int | str  # a class index or MALIGNANT_TARGET
    target_label: str  # the explained target in a reader's words
    heat: np.ndarray
    evidence: EvidenceCheck
    risk_meaning: Finding | None
    differential: Finding | None
    compression: Finding | None

    @property
    def explanation(self) -> str:
        """The heat map's caption followed by its own check, in words."""
        return f"{explanation_caption(METHOD_LABELS[self.method], self.target_label)}. {self.evidence_text}"

    @property
    def evidence_text(self) -> str:
        return self.evidence.describe(self.target_label)

    def overlay(self, opacity: float) -> Image.Image:
        return render_overlay(self.loaded.image, self.heat, opacity=opacity)


@dataclass
class LesionView:
    """The outlined lesion of a picture, its measurements, and how one heat map sits on
    it (the map's own check against the lesion)."""

    lesion: SegmentedLesion
    measures: LesionMeasures | None
    heat_inside: float | None  # share of the map's heat inside the outline
    lesion_share: float

    @property
    def evidence_outside(self) -> bool:
        return self.heat_inside is not None and self.heat_inside < HEAT_INSIDE_WARNING

    def describe(self) -> str:
        """The outline and the map against it, in a sentence or two."""
        if not self.lesion.found:
            return "No lesion outline was found in this picture: the map cannot be checked against the lesion."
        text = f"The outlined lesion covers {self.lesion_share:.0%} of the picture"
        if self.heat_inside is None:
            return text + "."
        text += f"; {self.heat_inside:.0%} of the map's heat lies inside it."
        if self.evidence_outside:
            text += (
                " Most of the evidence lies outside the lesion: the answer may rest on the skin around it, the "
                "dermoscope's rim or marks on the picture rather than on the lesion. Weigh it with care."
            )
        return text

    def measurement_rows(self) -> list[dict[str, str]]:
        """(measurement, value, meaning) rows for a table; empty without a lesion."""
        if self.measures is None:
            return []
        m = self.measures
        values = {
            "area_share": f"{m.area_share:.1%}",
            "max_diameter_px": f"{m.max_diameter_px:.0f} px",
            "max_diameter_mm": None if m.max_diameter_mm is None else f"{m.max_diameter_mm:.1f} mm",
            "asymmetry_major": f"{m.asymmetry_major:.2f}",
            "asymmetry_minor": f"{m.asymmetry_minor:.2f}",
            "border_irregularity": f"{m.border_irregularity:.2f}",
            "colours": f"{m.colours} ({', '.join(m.colour_names) or 'none'})",
        }
        return [
            {"measurement": key.replace("_", " "), "value": value, "meaning": MEANINGS[key]}
            for key, value in values.items()
            if value is not None
        ]


def view_lesion(
    lesion: SegmentedLesion, picture: Image.Image, heat: np.ndarray | None, field_of_view_mm: float | None = None
) -> LesionView:
    """The measurements of an outlined lesion and the share of ``heat`` (a map on the
    square model input) inside it."""
    measures = measure_lesion(lesion.mask, np.asarray(picture.convert("RGB")), field_of_view_mm)
    share = float(lesion.mask.mean())
    inside = None
    if heat is not None and lesion.found:
        inside = float(lesion_mask_agreement(heat, lesion.mask_image())["heat_inside_lesion"])
    return LesionView(lesion, measures, inside, share)


def target_label(target: int | str) -> str:
    """A heat map's target in a reader's words: a class's plain name, or the malignant risk."""
    return "malignant risk" if target == MALIGNANT_TARGET else plain_name(CLASS_NAMES[int(target)])


def analyse_picture(
    bundle: ModelBundle,
    loaded: LoadedImage,
    method: str = DEFAULT_METHOD,
    target: int | str | None = None,
    smooth_samples: int | None = None,
    max_n: int | None = SCORECAM_CHANNELS,
    diagnosis: Diagnosis | None = None,
) -> PictureAnalysis:
    """Diagnose ``loaded`` and explain ``target`` (None: the predicted class; a class
    name or index; or MALIGNANT_TARGET) with ``method``. Grad-CAM comes from the
    diagnosis's own model call when the bundle's predictor carries that pass; the
    other methods run on the bundle's explainer (it must have been loaded with
    ``explain=True``). ``diagnosis``: this picture's diagnosis from an earlier analysis
    (with the predicted class's Grad-CAM map when the predictor explains), so that
    another map or target costs only the map and its check, not the diagnosis again."""
    if isinstance(target, str) and target != MALIGNANT_TARGET:
        target = CLASS_NAMES.index(target)
    fused = method == "gradcam" and getattr(bundle.predictor, "explains", False)
    if diagnosis is None:
        result = diagnose(
            bundle.predictor,
            loaded.image,
            bundle.malignant_threshold,
            bundle.reliability,
            target,
            explain=fused,
            cases=bundle.cases,
            prediction_sets=bundle.prediction_sets,
        )
        heat = result.heat
    else:
        result = diagnosis
        predicted = CLASS_NAMES.index(result.predicted_class)
        # the earlier map is the predicted class's Grad-CAM: reusable for that map only
        heat = result.heat if method == "gradcam" and target in (None, predicted) else None
    if target is None:
        target = CLASS_NAMES.index(result.predicted_class)
    if heat is None:
        if bundle.explainer is None:
            raise ValueError(f"{bundle.name} was loaded without an explainer: load it with explain=True")
        options = {"max_n": max_n} | ({"smooth_samples": smooth_samples} if smooth_samples else {})
        heat = bundle.explainer.explain(result.model_input, method, target=target, **options)
    check = evidence_check(bundle.predictor.predict_arrays, result.model_input, heat, target, probs=result.probs)
    return PictureAnalysis(
        loaded=loaded,
        result=result,
        method=method,
        target=target,
        target_label=target_label(target),
        heat=heat,
        evidence=check,
        risk_meaning=_risk_meaning(bundle, result),
        differential=_differential(bundle, result),
        compression=compression_finding(loaded.jpeg_quality, bundle.report(COMPRESSION_REPORT_FILE)),
    )


def analyse_and_outline(bundle: ModelBundle, loaded: LoadedImage) -> tuple[PictureAnalysis, SegmentedLesion | None]:
    """What a page shows first for a new picture: the analysis with the predicted class's
    Grad-CAM map and the lesion outline (None without a segmenter), as one unit of work
    that a server can queue as a whole."""
    analysis = analyse_picture(bundle, loaded)
    lesion = bundle.segmenter.segment(loaded.image) if bundle.segmenter is not None else None
    return analysis, lesion


def _risk_meaning(bundle: ModelBundle, result: Diagnosis) -> Finding | None:
    """What the picture's malignant risk has meant on held-out lesions (not for a non-lesion)."""
    if bundle.risk_context is None or result.out_of_distribution:
        return None
    return risk_meaning_finding(result.malignant_probability, bundle.risk_context)


def _differential(bundle: ModelBundle, result: Diagnosis) -> Finding | None:
    if result.prediction_set is None or result.out_of_distribution or bundle.prediction_sets is None:
        return None
    report = bundle.report(PREDICTION_SETS_FILE)
    return prediction_set_finding(result.prediction_set, bundle.prediction_sets.coverage, report)


def stability_views(predictor: Predictor | ExportedPredictor) -> int | None:
    """How many test-time views the stability check reads each changed copy through:
    :data:`~skin_model.robustness.STABILITY_VIEWS` for a model answering with all 8;
    None for a predictor with one view or an export (whose views are fixed), which reads
    the copies as it reads everything."""
    return STABILITY_VIEWS if isinstance(predictor, Predictor) and predictor.tta else None


def stability_reader(predictor: Predictor | ExportedPredictor) -> Callable[[np.ndarray], np.ndarray]:
    """How the stability check reads the changed copies of a picture (see :func:`stability_views`)."""
    views = stability_views(predictor)
    return predictor.predict_arrays if views is None else functools.partial(predictor.predict_views, count=views)


def check_stability(bundle: ModelBundle, analysis: PictureAnalysis) -> StabilityCheck | None:
    """The answer re-read on small changes of the photo (None for a picture that is not
    a lesion, where it means nothing)."""
    if analysis.result.out_of_distribution:
        return None
    return stability_check(stability_reader(bundle.predictor), analysis.result.model_input, analysis.result.probs)


def printable_report(
    bundle: ModelBundle,
    analysis: PictureAnalysis,
    stability: StabilityCheck | None,
    *,
    file_name: str,
    file_sha256: str,
    opacity: float,
    patient: dict[str, str] | None = None,
    subgroups_report: dict[str, Any] | None = None,
) -> str:
    """The one-page HTML report of the analysis (the app's download, ``explain --report``)."""
    if bundle.artifact is None:
        raise ValueError("the printable report describes a model folder, not an export")
    loaded = analysis.loaded
    return case_report_html(
        file_name=file_name,
        file_sha256=file_sha256,
        image=loaded.image,
        original_size=loaded.original_size,
        overlay=analysis.overlay(opacity),
        explanation=analysis.explanation,
        result=analysis.result,
        model=ModelFacts.from_artifact(bundle.artifact, bundle.report(EVALUATION_FILE)),
        findings=answer_checks(
            analysis.result,
            stability,
            analysis.compression,
            bundle.report(ROBUSTNESS_FILE),
            bundle.report(CASES_REPORT_FILE),
        ),
        differential=analysis.differential,
        risk_meaning=analysis.risk_meaning,
        image_notes=loaded.notes,
        patient=patient,
        subgroups_report=subgroups_report,
    )
