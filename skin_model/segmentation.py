"""Finding the lesion: the shipped segmentation model as an artifact, masks at the
picture's own size, and the overlap figures (Dice, Jaccard) it is measured by.

A segmenter folder holds ``model.keras`` and a ``manifest.json`` recording the input size,
the geometry rule (the whole upright picture squashed to the square input, as for the
classifiers), the training configuration, the data fingerprint, the figures and the
SHA-256 of the weights and of the manifest itself; :meth:`Segmenter.load` refuses a folder
whose files do not match. Masks are computed on the square input and stretched back to
the picture's own width and height, so they lie on the upright picture as the user sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .artifact import ArtifactError, manifest_digest, sha256_of, write_manifest
from .model_files import MANIFEST_FILE, MODEL_FILE
from .paths import TRAINED_MODELS_DIR

# Segmenters live one level deeper than the classifiers, so listing the classifier
# folders (``trained_models/*/manifest.json``) never meets them.
SEGMENTERS_DIR = TRAINED_MODELS_DIR / "segmenters"
DEFAULT_SEGMENTER = "lesion_lite0"
MASK_THRESHOLD = 0.5  # lesion probability at which a pixel counts as lesion
MASK_LEVEL = 128  # a stored mask's grey level from which a pixel is lesion (as in HAM10000's masks)
SEGMENTER_KIND = "lesion segmentation"
BENCHMARK_FILE = "benchmark.json"  # benchmarks/segmentation.py: overlap on the test split as stored and saved again
PHOTO_TO_PHOTO_FILE = "photo_to_photo.json"  # benchmarks/segmentation.py: how outlines of one lesion differ


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|) of two boolean masks; 1 when both are empty."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    total = int(predicted.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(predicted, truth).sum()) / total


def jaccard(predicted: np.ndarray, truth: np.ndarray) -> float:
    """|A and B| / |A or B| of two boolean masks; 1 when both are empty."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    union = int(np.logical_or(predicted, truth).sum())
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum()) / union


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest connected region of a boolean mask, its holes filled: one lesion per
    picture, without specks of skin texture or gaps where the lesion is pale."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]  # pixels per region (label 0 is the background)
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def mask_of(probability: np.ndarray, size: tuple[int, int], tidy: bool = True) -> np.ndarray:
    """The boolean lesion mask at ``size`` (width, height) from a square probability map:
    stretched back to the picture's shape (undoing the squash), thresholded at
    :data:`MASK_THRESHOLD` and, with ``tidy``, reduced to :func:`largest_region`."""
    stretched = Image.fromarray(np.asarray(probability, np.float32)).resize(size, Image.Resampling.BILINEAR)
    mask = np.asarray(stretched) >= MASK_THRESHOLD
    return largest_region(mask) if tidy else mask


def save_segmenter(model, out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write the segmentation model and its manifest (with both checksums)."""
    import keras

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a new, uncompiled model over the same layers: the weights without the optimizer's state
    keras.Model(model.inputs, model.outputs, name=model.name).save(out_dir / MODEL_FILE)
    full = {"kind": SEGMENTER_KIND, **manifest, "weights_file": MODEL_FILE}
    full["weights_sha256"] = sha256_of(out_dir / MODEL_FILE)
    write_manifest(out_dir, full)
    return out_dir


def read_segmenter_manifest(folder: Path) -> dict[str, Any]:
    """A segmenter folder's manifest, checked against its own digest and its weights."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder} has no {MANIFEST_FILE}: not a segmenter folder")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != SEGMENTER_KIND:
        raise ArtifactError(f"{folder} holds no lesion segmentation model")
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise ArtifactError(f"{path} does not match its own checksum: it was edited after training")
    weights = Path(folder) / manifest.get("weights_file", MODEL_FILE)
    if not weights.is_file() or sha256_of(weights) != manifest.get("weights_sha256"):
        raise ArtifactError(f"{weights} is missing or does not match its manifest checksum; refusing to load it")
    return manifest


@dataclass
class SegmentedLesion:
    """One picture's lesion: the mask at the picture's size (True = lesion) and the
    square probability map it came from."""

    mask: np.ndarray
    probability: np.ndarray

    @property
    def found(self) -> bool:
        return bool(self.mask.any())

    def mask_image(self) -> Image.Image:
        """The mask as an 8-bit greyscale picture (255 = lesion, 0 = not)."""
        return Image.fromarray(np.where(self.mask, 255, 0).astype(np.uint8))


class Segmenter:
    """A loaded segmentation model: pictures in, lesion masks out."""

    def __init__(self, model, manifest: dict[str, Any], folder: Path | None = None) -> None:
        import tensorflow as tf

        self.model, self.manifest, self.folder = model, manifest, folder
        self.input_size = int(manifest["input_size"])
        self._forward = tf.function(lambda x: model(x, training=False)[..., 0], reduce_retracing=True)

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Segmenter:
        """Load and verify a segmenter folder (default: the shipped one)."""
        import keras

        folder = Path(folder) if folder else SEGMENTERS_DIR / DEFAULT_SEGMENTER
        manifest = read_segmenter_manifest(folder)
        try:
            model = keras.models.load_model(folder / manifest["weights_file"], compile=False, safe_mode=True)
        except Exception as exc:
            raise ArtifactError(f"cannot load the segmenter in {folder}: {exc}") from exc
        return cls(model, manifest, folder)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.folder.name if self.folder else "segmenter"))

    def report(self, file_name: str) -> dict[str, Any] | None:
        """A JSON report stored in the segmenter's folder (None when absent)."""
        path = self.folder / file_name if self.folder else None
        return json.loads(path.read_text()) if path is not None and path.is_file() else None

    def warm_up(self) -> None:
        """Trace the forward pass now (a server's start-up), not on the first picture."""
        self.probabilities(np.zeros((1, self.input_size, self.input_size, 3), np.float32))

    def probabilities(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Lesion probability maps (n, size, size) of model inputs (n, size, size, 3), 0-255."""
        x = np.asarray(x, np.float32)
        if len(x) == 0:
            return np.zeros((0, self.input_size, self.input_size), np.float32)
        parts = [self._forward(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)

    def segment(self, image: Image.Image, tidy: bool = True) -> SegmentedLesion:
        """The lesion of one upright RGB picture, by the shared geometry rule."""
        from .pipeline import to_model_input

        probability = self.probabilities(to_model_input(image.convert("RGB"), self.input_size)[None])[0]
        return SegmentedLesion(mask_of(probability, image.size, tidy), probability)


def default_segmenter_dir() -> Path:
    return SEGMENTERS_DIR / DEFAULT_SEGMENTER


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The boolean outline of a lesion mask, about ``width`` pixels wide, inside its edge."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    return mask & ~ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)


def draw_outline(image: Image.Image, mask: np.ndarray, colour: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``image`` (any size) with the lesion's outline drawn on it; ``mask`` is resized to
    the image first, so the outline fits a downscaled copy or an overlay alike."""
    mask = np.asarray(mask, bool)
    if mask.shape != (image.height, image.width):
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
        mask = np.asarray(resized) >= 128
    pixels = np.array(image.convert("RGB"))
    pixels[outline(mask, width=max(1, round(min(image.size) / 150)))] = colour
    return Image.fromarray(pixels)
