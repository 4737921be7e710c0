"""Knowing what the model does not know: temperature scaling, a feature-space
out-of-distribution detector, and the abstention rule built on both.

- Temperature scaling (Guo et al. 2017): one scalar T fitted on validation so that
  softmax(log p / T) minimises the negative log-likelihood.
- Lesion detector (outlier exposure, Hendrycks et al. 2019): a logistic regression on
  the last block's pooled features, lesions (training pictures) against generated
  pictures that are not lesions (:mod:`skin_model.outlier_pictures`); a picture is
  refused when its probability of not being a lesion is above the 99th percentile of
  validation lesions'. It decides whether a picture is refused.
- Feature distance (Lee et al. 2018): at two depths of the network (the last block's
  output and the final pooled features), the Mahalanobis distance of the average-pooled
  activations to the nearest class mean under a shared (Ledoit-Wolf) covariance fitted
  on training images, divided by that layer's 95th percentile on validation lesions; the
  score is the larger of the two. It used to decide refusals, but it also measures how
  unlike the training collections' cameras a picture is: fitted without one collection,
  it refused 41-65 % of that collection's real lesions (``benchmarks/trust_transfer.py``).
  A model fitted before the detector existed still refuses by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.covariance import LedoitWolf

from .model_files import RELIABILITY_FILE  # noqa: F401  (the registry's name)
from .taps import forward_with_features

# Image-quality screens on the model-size picture, measured on the cleaned splits
# (train 2,697 / val 675 / test 74 images at 224 px): lesions have a grayscale
# standard deviation >= 5.7, a mean HSV saturation >= 7.0 and a mean absolute
# neighbour difference <= 27; these limits leave a margin on each side.
MIN_CONTRAST = 3.0  # below: a blank or uniformly blurred frame
MIN_SATURATION = 4.0  # below: no colour at all (text pages, grayscale scans)
# Below: pixel noise, not a photograph. Neighbouring pixels of a photo are strongly
# correlated at any scale (every cleaned lesion image: >= 0.82 at the model's input
# size); noise stays near 0, or ~0.25 once a larger noise frame is downscaled.
MIN_NEIGHBOUR_CORRELATION = 0.5


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities recalibrated with temperature ``temperature``."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising validation negative log-likelihood."""

    def nll(log_t: float) -> float:
        p = apply_temperature(probs, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


@dataclass
class FeatureDensity:
    """Class means and a shared precision matrix of the training features."""

    means: np.ndarray  # (n_classes_present, d)
    precision: np.ndarray  # (d, d)
    threshold: float = float("inf")

    @classmethod
    def fit(cls, features: np.ndarray, y: np.ndarray) -> FeatureDensity:
        classes = np.unique(y)
        means = np.stack([features[y == k].mean(axis=0) for k in classes])
        centred = features - means[np.searchsorted(classes, y)]
        precision = LedoitWolf().fit(centred).precision_
        return cls(means.astype(np.float64), precision.astype(np.float64))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance to the nearest class mean, per row."""
        diff = features[:, None, :] - self.means[None, :, :]
        # a matrix product (BLAS) then a row-wise dot: a single three-operand einsum
        # runs as a plain loop, far slower for the model's 1,280 features
        d2 = np.einsum("nkd,nkd->nk", diff @ self.precision, diff)
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def calibrate(self, val_features: np.ndarray, quantile: float = 0.95) -> float:
        """Set the threshold to the ``quantile`` of validation distances."""
        self.threshold = float(np.quantile(self.distance(val_features), quantile))
        return self.threshold

    def is_outlier(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) > self.threshold


class LayeredDensity:
    """One :class:`FeatureDensity` per layer, combined as the largest distance relative
    to each layer's own validation 95th percentile."""

    def __init__(self, layers: list[str], densities: list[FeatureDensity], threshold: float = float("inf")) -> None:
        self.layers, self.densities, self.threshold = list(layers), densities, threshold

    @classmethod
    def fit(cls, layers: list[str], features: list[np.ndarray], y: np.ndarray) -> LayeredDensity:
        return cls(layers, [FeatureDensity.fit(f, y) for f in features])

    def distance(self, features: list[np.ndarray]) -> np.ndarray:
        """Per row: max over layers of (distance / that layer's validation percentile)."""
        scaled = [d.distance(f) / d.threshold for d, f in zip(self.densities, features, strict=True)]
        return np.max(scaled, axis=0)

    def calibrate(self, val_features: list[np.ndarray], quantile: float = 0.95) -> float:
        for density, f in zip(self.densities, val_features, strict=True):
            density.calibrate(f, quantile)
        self.threshold = float(np.quantile(self.distance(val_features), quantile))
        return self.threshold

    def is_outlier(self, features: list[np.ndarray]) -> np.ndarray:
        return self.distance(features) > self.threshold

    def save(self, path: Path, extra: dict[str, np.ndarray] | None = None) -> None:
        """Save to ``path`` (.npz), with ``extra`` arrays beside (the lesion detector's)."""
        arrays = {"layers": np.array(self.layers), "threshold": np.array(self.threshold)} | (extra or {})
        for k, d in enumerate(self.densities):
            arrays |= {f"means_{k}": d.means, f"precision_{k}": d.precision, f"scale_{k}": np.array(d.threshold)}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> LayeredDensity:
        with np.load(path) as data:
            layers = [str(name) for name in data["layers"]]
            densities = [
                FeatureDensity(data[f"means_{k}"], data[f"precision_{k}"], float(data[f"scale_{k}"]))
                for k in range(len(layers))
            ]
            return cls(layers, densities, float(data["threshold"]))


LESION_DETECTOR_QUANTILE = 0.99  # of validation lesions' probability of not being a lesion
LESION_DETECTOR_C = 1.0  # inverse L2 strength of the logistic regression
LESION_DETECTOR_LESIONS = 3000  # training lesions drawn for the fit (about as many as it needs)


@dataclass
class LesionDetector:
    """Lesion or not, from one tap's pooled features: standardised, then a linear
    logistic regression; ``threshold`` on the probability of not being a lesion."""

    layer: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float = 1.0

    @classmethod
    def fit(cls, layer: str, lesions: np.ndarray, others: np.ndarray, seed: int = 0) -> LesionDetector:
        """Fit on lesion features and non-lesion features (balanced class weights)."""
        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(seed)
        if len(lesions) > LESION_DETECTOR_LESIONS:
            lesions = lesions[rng.choice(len(lesions), LESION_DETECTOR_LESIONS, replace=False)]
        x = np.concatenate([lesions, others]).astype(np.float64)
        y = np.r_[np.zeros(len(lesions)), np.ones(len(others))]
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        model = LogisticRegression(C=LESION_DETECTOR_C, max_iter=3000, class_weight="balanced")
        model.fit((x - mean) / scale, y)
        return cls(layer, mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))

    def not_lesion_probability(self, features: np.ndarray) -> np.ndarray:
        z = ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def calibrate(self, val_lesions: np.ndarray, quantile: float = LESION_DETECTOR_QUANTILE) -> float:
        self.threshold = float(np.quantile(self.not_lesion_probability(val_lesions), quantile))
        return self.threshold

    def is_outlier(self, features: np.ndarray) -> np.ndarray:
        return self.not_lesion_probability(features) > self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "lesion_layer": np.array(self.layer),
            "lesion_mean": self.mean,
            "lesion_scale": self.scale,
            "lesion_coef": self.coef,
            "lesion_intercept": np.array(self.intercept),
            "lesion_threshold": np.array(self.threshold),
        }

    @classmethod
    def load(cls, path: Path) -> LesionDetector | None:
        """The detector saved in a reliability file, or None (a model fitted before it)."""
        with np.load(path) as data:
            if "lesion_coef" not in data:
                return None
            return cls(
                str(data["lesion_layer"]),
                data["lesion_mean"],
                data["lesion_scale"],
                data["lesion_coef"],
                float(data["lesion_intercept"]),
                float(data["lesion_threshold"]),
            )


def abstention_threshold(calibrated_val: np.ndarray, y_val: np.ndarray, target_accuracy: float = 0.8) -> float:
    """The smallest top-probability cut-off at which the answered validation cases
    reach ``target_accuracy`` (answer only when at least this confident)."""
    confidence = calibrated_val.max(axis=1)
    correct = calibrated_val.argmax(axis=1) == y_val
    for cut in np.unique(np.round(confidence, 3)):
        answered = confidence >= cut
        if answered.sum() >= 10 and correct[answered].mean() >= target_accuracy:
            return float(cut)
    return float(np.max(confidence))


def coverage_report(calibrated: np.ndarray, y: np.ndarray, cut: float, outlier: np.ndarray | None = None) -> dict:
    """Coverage and accuracy on the covered part, for a split."""
    answered = calibrated.max(axis=1) >= cut
    if outlier is not None:
        answered &= ~outlier
    correct = calibrated.argmax(axis=1) == y
    return {
        "coverage": round(float(answered.mean()), 4),
        "accuracy_answered": round(float(correct[answered].mean()), 4) if answered.any() else None,
        "accuracy_all": round(float(correct.mean()), 4),
    }


def neighbour_correlation(gray: np.ndarray) -> float:
    """Mean correlation of each pixel with its right and lower neighbours."""
    centred = gray - gray.mean()
    variance = max(float(centred.var()), 1e-6)
    across = float((centred[:, 1:] * centred[:, :-1]).mean())
    down = float((centred[1:, :] * centred[:-1, :]).mean())
    return (across + down) / (2 * variance)


def screen_image(x: np.ndarray) -> str | None:
    """Why a model-size uint8 RGB picture cannot be a dermoscopic photo, or None."""
    from PIL import Image

    image = Image.fromarray(np.asarray(x, np.uint8))
    gray = np.asarray(image.convert("L"), np.float32)
    if gray.std() < MIN_CONTRAST:
        return "blank or featureless image"
    if np.asarray(image.convert("HSV"), np.float32)[..., 1].mean() < MIN_SATURATION:
        return "no colour (a dermoscopic photo is never grayscale)"
    if neighbour_correlation(gray) < MIN_NEIGHBOUR_CORRELATION:
        return "pixel noise rather than a photograph"
    return None


class ReliabilityCheck:
    """Per-image out-of-distribution flag and calibrated confidence for a model whose
    manifest has reliability settings (see :func:`fit_reliability`)."""

    def __init__(
        self,
        model,
        input_size: int,
        density: LayeredDensity,
        temperature: float,
        abstain_below: float,
        detector: LesionDetector | None = None,
    ):
        self._model, self._input_size = model, input_size
        self._forward = None  # traced on first need: a feature-carrying Predictor makes it unnecessary
        self.density, self.temperature, self.abstain_below = density, temperature, abstain_below
        self.detector = detector

    @classmethod
    def from_artifact(cls, artifact) -> ReliabilityCheck | None:
        """None when the model has no fitted reliability settings."""
        manifest = artifact.manifest
        if "reliability_file" not in manifest:
            return None
        path = artifact.path / manifest["reliability_file"]
        density, detector = LayeredDensity.load(path), LesionDetector.load(path)
        return cls(
            artifact.model, artifact.input_size, density, manifest["temperature"], manifest["abstain_below"], detector
        )

    def refused_by_features(self, features: list[np.ndarray]) -> np.ndarray:
        """Per picture: refused by the lesion detector (or, for a model fitted before
        it, by the feature distance)."""
        if self.detector is None:
            return self.density.is_outlier(features)
        return self.detector.is_outlier(features[self.density.layers.index(self.detector.layer)])

    def check(self, x: np.ndarray, outputs: tuple[np.ndarray, list[np.ndarray]] | None = None) -> dict[str, np.ndarray]:
        """For a batch of model-size images: the OOD flag with its reason (image screen,
        lesion detector, or for an older model the feature distance), the feature
        distance and whether it is unfamiliar (above its validation 95th percentile), and
        the calibrated top probability. ``outputs``
        (single-view probabilities, pooled features per layer) skips the model call when
        they were computed already (:meth:`skin_model.inference.Predictor.predict_with_features`)."""
        if outputs is None:
            if self._forward is None:
                self._forward = forward_with_features(self._model, self.density.layers, self._input_size)
            probs, *features = (t.numpy() for t in self._forward(np.asarray(x, np.float32)))
        else:
            probs, features = outputs
        distance = self.density.distance(features)
        refused = self.refused_by_features(features)
        feature_reason = (
            "unlike every class of dermoscopic lesion seen in training"
            if self.detector is None
            else "the lesion detector finds no skin lesion in it"
        )
        reasons = []
        for image, flagged in zip(x, refused, strict=True):
            reason = screen_image(image)
            reasons.append(feature_reason if reason is None and flagged else reason)
        return {
            "ood_distance": distance,
            # far from the training collections' pictures: another camera, or an unusual lesion
            "unfamiliar": distance > self.density.threshold,
            "ood_reason": np.array(reasons, dtype=object),
            "out_of_distribution": np.array([r is not None for r in reasons]),
            "calibrated_confidence": apply_temperature(probs, self.temperature).max(axis=1),
        }
