"""The one way to load a model for use: a model folder or an export becomes a typed
:class:`ModelBundle` (predictor, reliability check, similar-case index, prediction sets,
referral threshold, manifest), so the app, every command and the benchmarks hold the
same thing and cannot load a model's parts differently."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact import ModelArtifact, load_artifact, read_report
from .cases import CaseIndex
from .conformal import PredictionSets
from .explain import Explainer
from .export import ExportedPredictor, is_exported_model, load_exported
from .inference import Predictor
from .model_files import EVALUATION_FILE
from .reliability import ReliabilityCheck
from .risk_context import RiskContext
from .segmentation import Segmenter, default_segmenter_dir


@dataclass
class ModelBundle:
    """A loaded, verified model and everything that answers with it. An export carries
    no reliability check, case index, explainer or artifact (it was made for devices
    that run the classifier alone); its threshold and sets are those its manifest
    records."""

    source: Path
    predictor: Predictor | ExportedPredictor
    manifest: dict[str, Any]
    malignant_threshold: float
    prediction_sets: PredictionSets | None
    reliability: ReliabilityCheck | None = None
    cases: CaseIndex | None = None
    artifact: ModelArtifact | None = None
    explainer: Explainer | None = None
    segmenter: Segmenter | None = None  # the lesion outline, when a segmenter ships
    _reports: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.artifact.name if self.artifact is not None else self.source.name

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def is_export(self) -> bool:
        return self.artifact is None

    def report(self, file_name: str) -> Any:
        """A JSON report stored beside the model folder (None for an export or a missing
        report), read once: a loaded model's folder does not change, and every analysed
        picture asks for the same reports."""
        if self.artifact is None:
            return None
        if file_name not in self._reports:
            self._reports[file_name] = read_report(self.artifact.path, file_name)
        return self._reports[file_name]

    @functools.cached_property
    def risk_context(self) -> RiskContext | None:
        """What malignant risks meant on the stored evaluation's held-out lesions."""
        return RiskContext.from_evaluation(self.report(EVALUATION_FILE))


def load_bundle(
    model: str | Path | None = None,
    tta: bool | None = None,
    explain: bool = False,
    warm_up: bool = False,
    segment: bool = False,
) -> ModelBundle:
    """The model folder ``model`` (None: the default model) or the export at that path,
    checksums verified. ``tta``: None runs the model as it was evaluated (its manifest
    says whether with test-time augmentation); ``explain`` adds the Grad-CAM pass to the
    predictor and an explainer for the other methods; ``warm_up`` traces the passes now
    instead of on the first picture (a server's start-up); ``segment`` adds the shipped
    lesion segmenter when it is there (verified like the model)."""
    if model is not None and is_exported_model(model):
        if tta:
            print(
                "note: --tta is ignored for an export (its test-time augmentation is fixed at export)", file=sys.stderr
            )
        exported = load_exported(model)
        return ModelBundle(
            source=Path(model),
            predictor=exported,
            manifest=exported.manifest,
            malignant_threshold=float(exported.manifest["malignant_threshold"]),
            prediction_sets=PredictionSets.from_manifest(exported.manifest),
        )
    artifact = load_artifact(model)
    predictor = Predictor.from_artifact(artifact, tta=tta, explain=explain)
    if warm_up:
        predictor.warm_up()
    segmenter = Segmenter.load() if segment and default_segmenter_dir().is_dir() else None
    if segmenter is not None and warm_up:
        segmenter.warm_up()
    return ModelBundle(
        source=artifact.path,
        predictor=predictor,
        manifest=artifact.manifest,
        malignant_threshold=artifact.malignant_threshold,
        prediction_sets=PredictionSets.from_manifest(artifact.manifest),
        reliability=ReliabilityCheck.from_artifact(artifact),
        cases=CaseIndex.from_artifact(artifact),
        artifact=artifact,
        explainer=Explainer(artifact.model, artifact.input_size) if explain else None,
        segmenter=segmenter,
    )
