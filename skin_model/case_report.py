"""One picture's result in words, and as a printable report for the patient's record.

The sentences here (the referral verdict, what the similar training lesions and the
stability check say) are the ones the Diagnose page shows, so the page, the report and
the command line never word a result differently. :func:`case_report_html` puts them
in one self-contained HTML page: pictures embedded, no script, no external file, every
text escaped; it opens in any browser and prints to PDF from there.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from PIL import Image

from . import __version__
from .cases import SimilarCase, case_votes, majority
from .classes import CLASS_INFO, MALIGNANT_CLASSES, plain_name
from .inference import UNSURE_BELOW, Diagnosis
from .risk_context import RiskContext
from .robustness import StabilityCheck, compression_note
from .subgroups import ATTRIBUTES, patient_context

# pictures are embedded at most this many pixels on their longer side (a report stays small)
REPORT_PICTURE_SIDE = 512


# what a statement is: a reason to refer (the first three), the comfort of a low risk, a
# reason to read the answer with care, or plain information
FindingKind = Literal["not_a_lesion", "high_risk", "unsure", "below_threshold", "caution", "note"]


@dataclass(frozen=True)
class Finding:
    """One statement about a result: its kind, a short headline and its detail."""

    kind: FindingKind
    headline: str
    detail: str = ""

    @property
    def text(self) -> str:
        return f"{self.headline} {self.detail}".strip()


DISCLAIMER = Finding(
    "caution",
    "Research demo, not a medical device.",
    "This tool has not been clinically validated. It can be wrong, and it has never seen most skin types, body "
    "sites or cameras. It does not replace a dermatologist: anyone worried about a skin lesion should see one.",
)


def split_title(split: str) -> str:
    """A split's name as a sentence writes it ("validation" for val)."""
    return "validation" if split == "val" else split


def percent_pair(value: float, cut: float, fewest: int = 0) -> tuple[str, str]:
    """A value and the cut-off it is compared with, as percents with the fewest decimals
    (from ``fewest`` up to 2) that keep them apart: 27.9 % below a threshold of 27.94 %
    must not read "28 %, below the threshold of 28 %". Equal strings: alike to 2 decimals."""
    for decimals in range(fewest, 3):
        a, b = f"{value:.{decimals}%}", f"{cut:.{decimals}%}"
        if a != b:
            return a, b
    return a, b


def verdict(result: Diagnosis) -> list[Finding]:
    """The referral decision on one picture, reasons first (possibly several)."""
    findings = []
    if result.out_of_distribution:
        findings.append(
            Finding(
                "not_a_lesion",
                "This does not look like a dermoscopic lesion image",
                f"({result.ood_reason}). The class probabilities are not meaningful for it. If this is a skin "
                "lesion, refer to a dermatologist.",
            )
        )
    risk, threshold = percent_pair(result.malignant_probability, result.malignant_threshold)
    if result.high_risk:
        findings.append(
            Finding("high_risk", f"Malignant risk {risk}", f"(threshold {threshold}). Refer to a dermatologist.")
        )
    elif result.unsure:
        confidence, cut = percent_pair(
            result.calibrated_confidence if result.calibrated_confidence is not None else result.ranked[0][1],
            result.abstain_below if result.abstain_below is not None else UNSURE_BELOW,
        )
        findings.append(
            Finding(
                "unsure",
                "The model is unsure",
                f"(calibrated confidence {confidence}, below the {cut} it needs to answer). Refer to a dermatologist.",
            )
        )
    elif not result.out_of_distribution:
        findings.append(
            Finding(
                "below_threshold",
                f"Malignant risk {risk}, below the referral threshold of {threshold}.",
                "This is not a diagnosis: any changing, bleeding or worrying lesion should be seen.",
            )
        )
    return findings


def similar_cases_finding(cases: list[SimilarCase], predicted: str, cases_report: dict[str, Any] | None) -> Finding:
    """What the most similar training lesions were diagnosed as, a caution when their
    majority names another class than the model, and what that was worth on validation
    (``cases.json``, when the model ships it)."""
    votes = ", ".join(f"{plain_name(name)} {n}" for name, n in case_votes(cases).items())
    figures = ""
    val = (cases_report or {}).get("report", {}).get("val")
    if val and val.get("model_accuracy_when_disagree") is not None:
        figures = (
            f" On validation images the model was right {val['model_accuracy_when_disagree']:.0%} of the time when "
            f"the similar lesions' majority named another class ({val['disagreeing_images']} of {val['images']} "
            f"images), against {val['model_accuracy_when_agree']:.0%} when it agreed."
        )
    common = majority(cases)
    if common is not None and common != predicted:
        return Finding(
            "caution",
            f"The most similar training lesions are mostly {plain_name(common)},",
            f"not {plain_name(predicted)} as the model says ({votes}).{figures} Weigh the answer with care.",
        )
    return Finding("note", f"Their diagnoses: {votes}.", f"They agree with the model.{figures}")


def prediction_set_finding(members: list[str], coverage: float, sets_report: dict[str, Any] | None) -> Finding:
    """The picture's differential (its conformal prediction set at ``coverage``), with how
    often such sets held the true diagnosis on held-out pictures (``prediction_sets.json``)."""
    names = ", ".join(plain_name(name) for name in members)
    malignant = [name for name in members if name in MALIGNANT_CLASSES]
    if len(members) == 1:
        kind = "malignant or pre-malignant" if malignant else "benign"
        detail = f"The only class the model cannot rule out at that coverage ({kind})."
    else:
        detail = "The classes the model cannot rule out at that coverage" + (
            f"; {len(malignant)} of them malignant or pre-malignant." if malignant else "; all benign."
        )
    r = sets_report or {}
    halves, test = r.get("val_split_halves"), r.get("test")
    if halves:
        detail += (
            f" Sets made this way held the true diagnosis of {halves['coverage_mean']:.0%} of validation pictures "
            "(thresholds fitted on one half, measured on the other)"
        )
        if test:
            detail += (
                f" and of {test['coverage']:.0%} of the {test['images']} test pictures, naming "
                f"{test['mean_size']:.1f} classes on average there"
            )
        detail += "."
    return Finding("note", f"Differential at {coverage:.0%} coverage: {names}.", detail)


def risk_meaning_finding(risk: float, context: RiskContext) -> Finding:
    """What a malignant risk like this one has meant on held-out lesions (see
    :mod:`skin_model.risk_context`)."""
    a = context.around(risk)
    low, high = a["ci95"]
    split = split_title(context.split)
    return Finding(
        "note",
        f"What a malignant risk of {risk:.0%} has meant:",
        f"of the {a['lesions']} {split} lesions whose risk was closest to it ({a['risk_low']:.0%}-"
        f"{a['risk_high']:.0%}), {a['malignant']} were malignant ({a['share']:.0%}, 95 % CI {low:.0%}-{high:.0%}). "
        f"Malignant lesions made up {context.prevalence:.0%} of all {len(context.risks)} {split} lesions; where "
        "they are rarer, the same risk means less.",
    )


def stability_finding(check: StabilityCheck, robustness_report: dict[str, Any] | None) -> Finding:
    """Whether the answer survives small changes of the photo (a caution when most change
    it), with what such stability was worth on the split ``robustness.json`` measured."""
    context = ""
    if robustness_report and robustness_report.get("accuracy_when_unstable") is not None:
        r = robustness_report
        context = (
            f" On {split_title(r['split'])} images the answer held under every change for {r['stable_share']:.0%} of "
            f"them, right {r['accuracy_when_stable']:.0%} of the time, against "
            f"{r['accuracy_when_unstable']:.0%} for the others."
        )
    text = check.describe(plain_name) + context
    if 2 * check.kept < check.changes:  # most small changes give another answer
        return Finding("caution", "Unstable answer.", f"{text} Weigh it with care.")
    return Finding("note", text)


def explanation_caption(method_label: str, target_label: str) -> str:
    """How to read a heat-map overlay (:func:`skin_model.explain.render_overlay`)."""
    return f"{method_label} for “{target_label}”: yellow = strongest evidence, green/blue = weaker, uncoloured = none"


def compression_finding(quality: int | None, compression_report: dict[str, Any] | None) -> Finding | None:
    """A caution for a JPEG saved more compressed than most training pictures (None
    otherwise), with the model's measured figures when it ships them."""
    note = compression_note(quality, compression_report)
    return None if note is None else Finding("caution", "Compressed picture.", note)


def answer_checks(
    result: Diagnosis,
    stability: StabilityCheck | None,
    compression: Finding | None,
    robustness_report: dict[str, Any] | None,
    cases_report: dict[str, Any] | None,
) -> list[Finding]:
    """The checks on one answer a report lists, in the page's order: its stability under
    small changes of the photo, what the similar training lesions say (not for a picture
    that is not a lesion), and the compression caution."""
    checks = [] if stability is None else [stability_finding(stability, robustness_report)]
    if result.similar is not None and not result.out_of_distribution:
        checks.append(similar_cases_finding(result.similar, result.predicted_class, cases_report))
    return checks + ([compression] if compression else [])


def operating_point(evaluation: dict[str, Any] | None) -> str | None:
    """What the referral threshold did on the held-out splits of ``evaluation.json``."""
    parts = []
    for split, title in (("val", "validation"), ("test", "held-out test")):
        m = (evaluation or {}).get(split, {}).get("malignant")
        if m:
            parts.append(
                f"on the {evaluation[split]['n_images']} {title} images it referred {m['sensitivity']:.0%} of the "
                f"malignant lesions and left {m['specificity']:.0%} of the benign ones unreferred"
            )
    if not parts:
        return None
    return (
        "The referral threshold was chosen on validation images to refer at least 90 % of malignant lesions: "
        + "; ".join(parts)
        + "."
    )


@dataclass(frozen=True)
class ModelFacts:
    """What a report says about the model that produced it."""

    name: str
    architecture: str
    input_size: int
    weights_sha256: str
    # what the referral threshold did on the held-out splits (:func:`operating_point`)
    operating_point: str | None = None

    @classmethod
    def from_artifact(cls, artifact, evaluation: dict[str, Any] | None = None) -> ModelFacts:
        """The facts of a loaded model; ``evaluation`` is its ``evaluation.json`` when
        the caller has it at hand (read from the model folder otherwise)."""
        m = artifact.manifest
        return cls(
            artifact.name,
            str(m.get("architecture")),
            artifact.input_size,
            m["weights_sha256"],
            operating_point(evaluation if evaluation is not None else artifact.evaluation()),
        )


def _png_data_uri(image: Image.Image) -> str:
    picture = image.convert("RGB")
    if max(picture.size) > REPORT_PICTURE_SIDE:
        picture = picture.copy()
        picture.thumbnail((REPORT_PICTURE_SIDE, REPORT_PICTURE_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;max-width:820px;margin:24px auto;
padding:0 16px;font-size:14px;line-height:1.45}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:18px 0 6px;border-bottom:1px solid #ccc}
.disclaimer{background:#fff6db;border:1px solid #e0c36a;padding:8px 10px;border-radius:4px}
.finding{padding:8px 10px;border-radius:4px;margin:6px 0;border:1px solid}
.refer{background:#fdecea;border-color:#d9534f} .caution{background:#fff6db;border-color:#e0c36a}
.below{background:#eaf6ec;border-color:#5cb85c} .note{border-color:#ccc}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.pictures{display:flex;gap:12px} figure{margin:0;flex:1} figure img{width:100%;height:auto;border:1px solid #ccc}
figcaption{font-size:12px;color:#555} .small{font-size:12px;color:#555}
.section{break-inside:avoid;page-break-inside:avoid}
@media print{body{margin:0;max-width:none} @page{size:A4;margin:14mm}}
"""

_FINDING_CLASS = {
    "not_a_lesion": "refer",
    "high_risk": "refer",
    "unsure": "refer",
    "below_threshold": "below",
    "caution": "caution",
    "note": "note",
}


def _finding_html(finding: Finding) -> str:
    e = html.escape
    # a statement without detail is all headline: plain, not a bold paragraph
    text = f"<strong>{e(finding.headline)}</strong> {e(finding.detail)}" if finding.detail else e(finding.headline)
    return f'<div class="finding {_FINDING_CLASS[finding.kind]}">{text}</div>'


def _patient_html(patient: dict[str, str] | None, subgroups_report: dict[str, Any] | None) -> list[str]:
    """The report's section on the patient details a clinician gave (none: no section)."""
    if not patient:
        return []
    e = html.escape
    parts: list[str] = []
    given = "; ".join(f"{e(ATTRIBUTES.get(k, k))}: {e(v)}" for k, v in patient.items())
    parts.append(
        f'<div class="section"><h2>Patient details given</h2><p>{given} (recorded here; the model does '
        "not see them).</p>"
    )
    context = patient_context(subgroups_report, patient)
    if context:
        scope, lines = context
        parts.append(f"<p>How the model did for such patients ({e(scope)}):</p><ul>")
        parts += [f"<li>{e(line)}</li>" for line in lines]
        parts.append("</ul>")
    parts.append("</div>")
    return parts


def _head_html(
    file_name: str, file_sha256: str, original_size: tuple[int, int], created: datetime, model: ModelFacts
) -> list[str]:
    """The report's head: its locked-down page header, disclaimer, and the picture and model it is about."""
    e = html.escape
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>Lesion report: {e(file_name)}</title><style>{_STYLE}</style></head><body>",
        "<h1>Skin lesion decision-support report</h1>",
        f'<p class="disclaimer"><strong>{e(DISCLAIMER.headline)}</strong> {e(DISCLAIMER.detail)}</p>',
        '<div class="section"><h2>Picture and model</h2><table>',
        f"<tr><th>file</th><td>{e(file_name)} ({original_size[0]}×{original_size[1]} px; "
        f"SHA-256 {e(file_sha256[:16])}…)</td></tr>",
        f"<tr><th>analysed</th><td>{created:%Y-%m-%d %H:%M} UTC</td></tr>",
        f"<tr><th>model</th><td>{e(model.name)} ({e(model.architecture)}, input {model.input_size} px; "
        f"weights SHA-256 {e(model.weights_sha256[:16])}…; skin_model {e(__version__)})</td></tr></table></div>",
    ]


def case_report_html(
    *,
    file_name: str,
    file_sha256: str,
    image: Image.Image,
    original_size: tuple[int, int],
    overlay: Image.Image,
    explanation: str,
    result: Diagnosis,
    model: ModelFacts,
    findings: Sequence[Finding] = (),
    differential: Finding | None = None,
    risk_meaning: Finding | None = None,
    image_notes: Sequence[str] = (),
    patient: dict[str, str] | None = None,
    subgroups_report: dict[str, Any] | None = None,
    created: datetime | None = None,
) -> str:
    """One picture's result as a self-contained, printable HTML page.

    ``explanation`` describes the heat map (method, target, its evidence check);
    ``findings`` are the further statements shown with the result (stability, similar
    lesions, compression); ``differential`` the prediction set (:func:`prediction_set_finding`);
    ``risk_meaning`` what such a risk has meant (:func:`risk_meaning_finding`);
    ``patient`` the details a clinician gave (attribute -> group,
    never given to the model), quoted with the model's validation figures for such
    patients from ``subgroups_report``.
    """
    e = html.escape
    created = (created or datetime.now(UTC)).astimezone(UTC)
    top, top_p = result.ranked[0]
    rows = "".join(
        f"<tr><td>{e(plain_name(name))}</td>"
        f"<td>{'malignant or pre-malignant' if name in MALIGNANT_CLASSES else 'benign'}</td>"
        f'<td class="num">{p:.1%}</td></tr>'
        for name, p in result.ranked
    )
    parts = [
        *_head_html(file_name, file_sha256, original_size, created, model),
        '<div class="section"><h2>Result</h2>',
        *(_finding_html(f) for f in verdict(result)),
        f"<p>Most probable class: <strong>{e(plain_name(top))}</strong> ({top_p:.1%}). Malignant risk (the summed "
        f"probability of the malignant and pre-malignant classes): <strong>{result.malignant_probability:.1%}"
        f"</strong>; referral threshold {result.malignant_threshold:.1%}.</p>",
    ]
    if risk_meaning is not None:
        parts.append(f'<p class="small"><strong>{e(risk_meaning.headline)}</strong> {e(risk_meaning.detail)}</p>')
    if differential is not None:
        parts.append(_finding_html(differential))
    if model.operating_point:
        parts.append(f'<p class="small">{e(model.operating_point)}</p>')
    parts += [
        "</div>",
        '<div class="section"><h2>Where the model looked</h2><div class="pictures">',
        f'<figure><img src="{_png_data_uri(image)}" alt="the analysed picture">'
        "<figcaption>The analysed picture</figcaption></figure>",
        f'<figure><img src="{_png_data_uri(overlay)}" alt="heat map of the model\'s evidence">'
        f"<figcaption>{e(explanation)}</figcaption></figure></div></div>",
        '<div class="section"><h2>Class probabilities</h2><table>',
        f'<tr><th>class</th><th>kind</th><th class="num">probability</th></tr>{rows}</table>',
    ]
    if result.calibrated_confidence is not None and result.abstain_below is not None and not result.out_of_distribution:
        parts.append(
            f'<p class="small">Calibrated confidence in the top class: {result.calibrated_confidence:.0%}; the '
            f"model answers only from {result.abstain_below:.0%} (a cut-off chosen on validation images) and "
            "refers below it.</p>"
        )
    parts += ["</div>", '<div class="section"><h2>Checks on this answer</h2>']
    parts += [_finding_html(f) for f in findings] or ["<p>None were run.</p>"]
    if image_notes:
        parts.append('<ul class="small">' + "".join(f"<li>{e(note)}</li>" for note in image_notes) + "</ul>")
    parts.append("</div>")
    parts += _patient_html(patient, subgroups_report)
    parts += [
        f'<p class="small">{e(plain_name(top))}: {e(CLASS_INFO[top][1])} Figures per class, per image '
        "collection and per patient group, and the model's known limitations, are on the app's Model card "
        "page.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
