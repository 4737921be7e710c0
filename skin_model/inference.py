"""Inference: a compiled forward pass (no ``model.predict`` overhead), optional
test-time augmentation, and file/folder prediction with a status per file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .artifact import ModelArtifact
from .cases import CaseIndex, SimilarCase, majority
from .classes import CLASS_NAMES, malignant_score
from .conformal import PredictionSets
from .passes import FrozenOnFirstCall, explained_forward
from .pipeline import to_model_input
from .robustness import STABILITY_VIEWS
from .test_time_views import DEFAULT_TTA_VIEWS, TTA_VIEWS


def keep_blas_single_threaded() -> None:
    """Give NumPy's BLAS one thread in this process. OpenBLAS threads keep spinning for
    a while after each matrix product and compete with TensorFlow's threads for the same
    cores: the reliability check's small distance computation made the next 8-view
    model call markedly slower. TensorFlow does the heavy work here; the matrix products
    left to NumPy are small."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


class Predictor:
    """Wraps a loaded model with a traced forward pass; safe to share between threads
    (the traced function holds no per-call state).

    With ``feature_layers`` (the reliability check's layers) it also offers one traced
    pass giving the probabilities and, from the same call, what the reliability check
    needs (the single-view probabilities and the pooled features), so a checked image
    costs one model call rather than two. With ``explain`` that pass also gives the
    Grad-CAM map of the picture itself (view 0): the gradient runs back only from the
    scores to the explained layer, so the heat map costs almost nothing on top of the
    prediction instead of a second forward pass."""

    def __init__(
        self,
        model,
        input_size: int,
        tta: bool = False,
        feature_layers: list[str] | None = None,
        explain: bool = False,
        freeze: bool = False,
        views: str = DEFAULT_TTA_VIEWS,
    ) -> None:
        """``freeze``: turn the traced passes' weights into constants on first use
        (:class:`FrozenOnFirstCall`); only for a model that is no longer trained.
        ``views``: which 8 test-time views (a key of :data:`TTA_VIEWS`) ``tta`` averages."""
        import tensorflow as tf

        if views not in TTA_VIEWS:
            raise ValueError(f"unknown test-time views {views!r}: one of {', '.join(TTA_VIEWS)}")
        keep_blas_single_threaded()
        self.model = model
        self.input_size = input_size
        self.tta = tta
        self.views = views
        make_views = TTA_VIEWS[views]
        self.feature_layers = list(feature_layers) if feature_layers else None
        spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)

        def views(x):
            # one call on all 8 views stacked along the batch: one traced copy of the
            # model instead of eight, and one larger batch, which the CPU runs faster;
            # view 0 is the picture itself (the map and the features come from it)
            return tf.concat(make_views(x), axis=0) if tta else x

        def average(probs, n):
            return tf.reduce_mean(tf.reshape(probs, [8, n, -1]), axis=0) if tta else probs

        def forward(x):
            return average(model(views(x), training=False), tf.shape(x)[0])

        def forward_views(x, count):
            # the model reads the first ``count`` of the 8 views (the views themselves are
            # cheap flips and turns): one traced pass for every count, the 8-view answer's too
            n = tf.shape(x)[0]
            probs = model(tf.concat(make_views(x), axis=0)[: count * n], training=False)
            return tf.reduce_mean(tf.reshape(probs, [count, n, -1]), axis=0)

        def traced(fn, *signature):
            # the passes hold no Python control flow on tensors: AutoGraph's rewriting of
            # them would only add to the server's start-up
            function = tf.function(fn, input_signature=list(signature), autograph=False)
            return FrozenOnFirstCall(function) if freeze else function

        self._forward_fn = forward
        self._forward_views = traced(forward_views, spec, tf.TensorSpec([], tf.int32))
        self._forward = (lambda x: self._forward_views(x, np.int32(8))) if tta else traced(forward, spec)
        self._forward_features = None
        if self.feature_layers:
            from .taps import feature_model

            with_features = feature_model(model, self.feature_layers)

            def forward_features(x):
                n = tf.shape(x)[0]
                probs, *features = with_features(views(x), training=False)
                return (average(probs, n), probs[:n], *(f[:n] for f in features))

            self._forward_features = traced(forward_features, spec)
        self._forward_explained = (
            traced(explained_forward(model, self.feature_layers, views, average), spec, tf.TensorSpec([], tf.int32))
            if explain
            else None
        )

    @property
    def explains(self) -> bool:
        """Whether :meth:`predict_explained` is available."""
        return self._forward_explained is not None

    def forward_function(self):
        """The plain (untraced) forward pass: pixels in, probabilities out; for exporting."""
        return self._forward_fn

    @classmethod
    def from_artifact(
        cls, artifact: ModelArtifact, tta: bool | None = None, explain: bool = False, freeze: bool = False
    ) -> Predictor:
        """A predictor as the model was evaluated: with test-time augmentation when its
        manifest says so (its threshold and metrics were measured that way), and with
        the reliability check's features when the model has one; ``explain`` adds the
        pass with the Grad-CAM map; ``freeze`` (a loaded artifact's weights never
        change) trades memory and start-up time for single-image latency."""
        use_tta = bool(artifact.manifest.get("tta", False)) if tta is None else tta
        layers = artifact.manifest.get("ood_layers") or []
        cases_layer = artifact.manifest.get("cases_layer")
        if cases_layer and cases_layer not in layers:
            layers = [*layers, cases_layer]
        views = artifact.manifest.get("tta_views", DEFAULT_TTA_VIEWS)
        return cls(artifact.model, artifact.input_size, use_tta, layers, explain=explain, freeze=freeze, views=views)

    def warm_up(self) -> None:
        """Trace now every pass requests will use, rather than on the first request: the
        diagnosis's pass (with the heat map or the features), the plain pass that the
        heat map's evidence check calls, which with TTA is also the fewer-view pass the
        stability check reads its changed copies with (:data:`STABILITY_VIEWS`)."""
        blank = np.zeros((1, self.input_size, self.input_size, 3), np.uint8)
        if self._forward_explained is not None:
            self.predict_explained(blank)
        elif self._forward_features is not None:
            self.predict_with_features(blank)
        self.predict_arrays(blank)
        if self.tta:  # traced by now; one run at the stability check's batch size prepares its kernels
            self.predict_views(blank, STABILITY_VIEWS)

    def _chunks(self, x: np.ndarray, batch_size: int):
        """Float32 slices of ``x`` small enough for one call: with TTA each image becomes
        8 views in the model's batch, so fewer images go per call."""
        step = max(1, batch_size // 8) if self.tta else batch_size
        return (np.asarray(x[i : i + step], np.float32) for i in range(0, len(x), step))

    def predict_arrays(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities for uint8/float images already at the input size."""
        if len(x) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float32)
        return np.concatenate([self._forward(chunk).numpy() for chunk in self._chunks(x, batch_size)])

    def predict_views(self, x: np.ndarray, count: int, batch_size: int = 64) -> np.ndarray:
        """Class probabilities averaged over the first ``count`` of the model's test-time
        views (1: the picture itself), whether or not the predictor's own answer uses
        them; for checks that re-read many changed copies of one picture at a fraction
        of the 8-view cost. Every count runs the one traced pass that, with TTA, gives
        :meth:`predict_arrays` its 8-view answer (traced on first use, see :meth:`warm_up`)."""
        if not 1 <= count <= 8:
            raise ValueError(f"a count of test-time views lies in 1-8, not {count}")
        if len(x) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float32)
        step, views = max(1, batch_size // count), np.int32(count)
        chunks = (np.asarray(x[i : i + step], np.float32) for i in range(0, len(x), step))
        return np.concatenate([self._forward_views(chunk, views).numpy() for chunk in chunks])

    def predict_with_features(
        self, x: np.ndarray, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(probabilities as :meth:`predict_arrays` gives them, single-view probabilities,
        pooled features per feature layer), from one model call per chunk."""
        if self._forward_features is None:
            raise ValueError("this predictor was built without feature layers")
        outs = [[t.numpy() for t in self._forward_features(chunk)] for chunk in self._chunks(x, batch_size)]
        probs, single, *features = (np.concatenate(parts) for parts in zip(*outs, strict=True))
        return probs, single, features

    def predict_explained(
        self, x: np.ndarray, target: int | str | None = None, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
        """(probabilities, single-view probabilities, raw Grad-CAM maps (n, h, w) of each
        picture for ``target`` (None: its predicted class; a class index or name; or
        "malignant"), pooled features per feature layer), from one model call per chunk.
        The maps are those of :meth:`skin_model.explain.Explainer.explain` before
        upsampling (:func:`skin_model.explain.heat_from_cam`)."""
        from .explain import target_code

        if self._forward_explained is None:
            raise ValueError("this predictor was built without explain=True")
        code = np.int32(target_code(target))
        outs = [[t.numpy() for t in self._forward_explained(chunk, code)] for chunk in self._chunks(x, batch_size)]
        probs, single, cams, *features = (np.concatenate(parts) for parts in zip(*outs, strict=True))
        return probs, single, cams, features


# For a model without fitted reliability settings (see skin_model.reliability), the
# model is called unsure below this raw top-class probability.
UNSURE_BELOW = 0.5


@dataclass
class Diagnosis:
    """One image's result in the form the app and reports show."""

    probs: np.ndarray
    malignant_probability: float
    malignant_threshold: float
    # from the model's reliability check, when it has one
    out_of_distribution: bool | None = None
    ood_reason: str | None = None
    # far from the training collections' pictures in the model's features (another camera,
    # light or crop, or an unusual lesion): answered, but the shipped figures may not hold
    unfamiliar: bool | None = None
    calibrated_confidence: float | None = None
    abstain_below: float | None = None
    # the picture as the model saw it (size x size uint8), reused for explanations
    model_input: np.ndarray | None = None
    # Grad-CAM heat map (size x size, 0-1) when asked for, from the prediction's own pass
    heat: np.ndarray | None = None
    # the most similar training lesions, when the model ships a case index
    similar: list[SimilarCase] | None = None
    # the classes of its conformal prediction set (most probable first), when the model has them
    prediction_set: list[str] | None = None

    @property
    def ranked(self) -> list[tuple[str, float]]:
        order = np.argsort(self.probs)[::-1]
        return [(CLASS_NAMES[k], float(self.probs[k])) for k in order]

    @property
    def predicted_class(self) -> str:
        return self.ranked[0][0]

    @property
    def high_risk(self) -> bool:
        return self.malignant_probability >= self.malignant_threshold

    @property
    def unsure(self) -> bool:
        """Calibrated confidence below the validation-chosen cut-off (or, for a model
        without reliability settings, a raw top probability below 50%)."""
        if self.calibrated_confidence is not None and self.abstain_below is not None:
            return self.calibrated_confidence < self.abstain_below
        return self.ranked[0][1] < UNSURE_BELOW

    @property
    def refer(self) -> bool:
        return self.high_risk or self.unsure or bool(self.out_of_distribution)

    @property
    def advice(self) -> str:
        """Why a dermatologist should decide, in the words of the predict CSV ("" if nothing says so)."""
        return advice_text(self.ood_reason if self.out_of_distribution else None, self.unsure, self.high_risk)

    def as_row(self, file: str, jpeg_quality: int | None = None) -> FilePrediction:
        """This result as a row of the predict CSV (``file_predictions.predictions_table``)."""
        similar = majority(self.similar or []) or ""
        return FilePrediction(
            file, "ok", self.probs, self.advice, self.high_risk, similar, jpeg_quality, self.prediction_set
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "predicted_class": self.predicted_class,
            "probabilities": {name: round(p, 6) for name, p in self.ranked},
            "malignant_probability": round(self.malignant_probability, 6),
            "malignant_threshold": self.malignant_threshold,
            "high_malignant_risk": self.high_risk,
            "model_unsure": self.unsure,
            "calibrated_confidence": self.calibrated_confidence,
            "out_of_distribution": self.out_of_distribution,
            "out_of_distribution_reason": self.ood_reason,
            "unfamiliar": self.unfamiliar,
            "refer_to_dermatologist": self.refer,
            "prediction_set": self.prediction_set,
            **(
                {}
                if self.similar is None
                else {
                    "similar_training_cases": [dataclasses.asdict(case) for case in self.similar],
                    "similar_cases_majority": majority(self.similar),
                }
            ),
        }


def check_from_outputs(predictor, reliability, x: np.ndarray, single: np.ndarray, features: list[np.ndarray]):
    """The reliability check of ``x``, reusing the predictor's outputs when they are
    the check's own features."""
    if getattr(predictor, "feature_layers", None) == reliability.density.layers:
        return reliability.check(x, outputs=(single, features))
    return reliability.check(x)


def predict_and_check(predictor, x: np.ndarray, reliability=None, batch_size: int = 64):
    """(probabilities, reliability check result or None) for a batch of model-size
    images; one model call per batch when the predictor carries the check's features."""
    if reliability is None:
        return predictor.predict_arrays(x, batch_size), None
    if getattr(predictor, "feature_layers", None) == reliability.density.layers:
        probs, single, features = predictor.predict_with_features(x, batch_size)
        return probs, reliability.check(x, outputs=(single, features))
    return predictor.predict_arrays(x, batch_size), reliability.check(x)


def _similar_cases(predictor, cases, features: list[np.ndarray]) -> list[list[SimilarCase]]:
    """The nearest training lesions of each picture from the predictor's pooled features."""
    return cases.nearest(features[predictor.feature_layers.index(cases.layer)])


def predict_check_and_compare(predictor, x: np.ndarray, reliability=None, cases=None, batch_size: int = 64):
    """(probabilities, reliability check result or None, similar training lesions per
    image or None) for a batch of model-size images, from one model call per chunk when
    the predictor carries the features the check and the case index need."""
    if cases is None:
        return (*predict_and_check(predictor, x, reliability, batch_size), None)
    probs, single, features = predictor.predict_with_features(x, batch_size)
    checked = None if reliability is None else check_from_outputs(predictor, reliability, x, single, features)
    return probs, checked, _similar_cases(predictor, cases, features)


def diagnose(
    predictor: Predictor,
    image: Image.Image,
    malignant_threshold: float,
    reliability=None,
    explain_target: int | str | None = None,
    explain: bool = False,
    cases: CaseIndex | None = None,
    prediction_sets: PredictionSets | None = None,
) -> Diagnosis:
    """Class probabilities, malignant risk and the referral flags for one picture;
    ``reliability`` (a :class:`skin_model.reliability.ReliabilityCheck`) adds the
    out-of-distribution flag and the calibrated confidence. With ``explain`` (the
    predictor must have been built with it) the result also carries the Grad-CAM heat
    map for ``explain_target`` (None: the predicted class), from the same model call;
    ``cases`` (the model's :class:`skin_model.cases.CaseIndex`) adds the most similar
    training lesions, found from the features of that same call; ``prediction_sets``
    (the model's :class:`skin_model.conformal.PredictionSets`) its differential."""
    from .explain import heat_from_cam

    x = to_model_input(image, predictor.input_size)[None]
    heat = similar = None
    if explain:
        batch_probs, single, cams, features = predictor.predict_explained(x, explain_target)
        checked = None if reliability is None else check_from_outputs(predictor, reliability, x, single, features)
        heat = heat_from_cam(cams[0], predictor.input_size)
        if cases is not None:
            similar = _similar_cases(predictor, cases, features)
    else:
        batch_probs, checked, similar = predict_check_and_compare(predictor, x, reliability, cases)
    probs = batch_probs[0]
    result = Diagnosis(probs, float(malignant_score(probs[None])[0]), malignant_threshold, model_input=x[0], heat=heat)
    if similar is not None:
        result.similar = similar[0]
    if prediction_sets is not None:
        result.prediction_set = prediction_sets.members(probs)[0]
    if checked is not None:
        result.out_of_distribution = bool(checked["out_of_distribution"][0])
        result.ood_reason = checked["ood_reason"][0]
        if "unfamiliar" in checked:
            result.unfamiliar = bool(checked["unfamiliar"][0])
        result.calibrated_confidence = float(checked["calibrated_confidence"][0])
        result.abstain_below = reliability.abstain_below
    return result


@dataclass
class FilePrediction:
    file: str
    status: str
    probs: np.ndarray | None
    # empty when the model answers; else why a dermatologist should decide instead
    advice: str = ""
    # malignant risk at or above the model's referral threshold (None: not classified)
    high_risk: bool | None = None
    # the most frequent diagnosis among the most similar training lesions (model with a case index)
    similar_majority: str = ""
    # the quality a JPEG was saved at (images.estimate_jpeg_quality); None for other formats
    jpeg_quality: int | None = None
    # the conformal prediction set, most probable class first (a model that has them)
    prediction_set: list[str] | None = None
    # SHA-256 of the file's bytes ("" when they cannot be read) and the picture's perceptual
    # hash (None when it cannot be decoded), when asked for: validate's training check
    sha256: str = ""
    phash: str | None = None


def advice_text(not_a_lesion: str | None, unsure: bool, high_risk: bool) -> str:
    """Why a dermatologist should decide on this picture, or "" when nothing says so.
    A picture that is not a lesion gets only that reason: its risk means nothing."""
    if not_a_lesion:
        return f"not a dermoscopic lesion image ({not_a_lesion}): refer"
    reasons = (["high malignant risk"] if high_risk else []) + (["uncertain"] if unsure else [])
    return f"{', '.join(reasons)}: refer" if reasons else ""


def reliability_advice(checked: dict[str, np.ndarray], abstain_below: float) -> list[str]:
    """Per image of a :meth:`ReliabilityCheck.check` result: "" when the model can
    answer, else the reason to refer ("not a dermoscopic lesion ...", "uncertain: refer")."""
    return [
        advice_text(reason if ood else None, confidence < abstain_below, high_risk=False)
        for ood, reason, confidence in zip(
            checked["out_of_distribution"], checked["ood_reason"], checked["calibrated_confidence"], strict=True
        )
    ]


def referral_advice(
    probs: np.ndarray, checked: dict[str, np.ndarray] | None, abstain_below: float | None, threshold: float | None
) -> tuple[list[str], list[bool | None]]:
    """Per image: the advice the app would give (high malignant risk, uncertain, not a
    lesion; see :attr:`Diagnosis.refer`) and whether the risk reaches ``threshold``.
    Without a reliability check "uncertain" means a top probability below 50 %, as in
    :attr:`Diagnosis.unsure`; without a threshold the risk flag is None."""
    risk = malignant_score(probs)
    high = [None if threshold is None else bool(r >= threshold) for r in risk]
    if checked is None:
        not_lesion = [None] * len(probs)
        unsure = probs.max(axis=1) < UNSURE_BELOW
    else:
        not_lesion = [
            reason if ood else None
            for ood, reason in zip(checked["out_of_distribution"], checked["ood_reason"], strict=True)
        ]
        unsure = checked["calibrated_confidence"] < abstain_below
    advice = [advice_text(n, bool(u), bool(h)) for n, u, h in zip(not_lesion, unsure, high, strict=True)]
    return advice, high
