"""Model artifacts: a folder with ``model.keras``, ``manifest.json``,
``evaluation.json`` and ``history.csv``. :func:`load_artifact` is the only way the
app and the CLI load a model: it checks the manifest, verifies the weights'
SHA-256 and loads with Keras safe mode (no arbitrary code). The stored model is the
inference model, batch norms already folded into their convolutions (see
:mod:`skin_model.folding`); an artifact saved before that is folded at load."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .classes import CLASS_NAMES
from .folding import fold_batch_norms
from .model_files import EVALUATION_FILE, HISTORY_FILE, MANIFEST_FILE, MODEL_FILE  # noqa: F401  (the registry's names)
from .paths import TRAINED_MODELS_DIR

DEFAULT_POINTER = "default.json"
FORMAT_VERSION = 1
# manifest keys <kind>_file / <kind>_sha256: the reliability settings and the similar-case index
CHECKSUMMED_EXTRAS = ("reliability", "cases")


class ArtifactError(RuntimeError):
    """A model folder that is missing, incomplete, altered or incompatible."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }


def inference_model(model):
    """``model`` as an artifact stores it: the architecture and weights without the
    optimizer state (which would triple the file for nothing at inference time), batch
    norms folded into their convolutions, so loading needs no rebuild and no folding."""
    # Rebuilt from its config: Keras 3.15's clone_model keeps the compiled optimizer.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return fold_batch_norms(copy)


def count_batch_norms(model) -> int:
    import keras

    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def save_artifact(model, out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write the inference model and a manifest that records its checksum."""

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    stored = inference_model(model)
    stored.save(model_path)
    full = {
        "format_version": FORMAT_VERSION,
        "class_names": list(CLASS_NAMES),
        **manifest,
        # plus those a model fine-tuned further from a saved one arrived with (``init_from``)
        "batch_norms_folded": count_batch_norms(model)
        - count_batch_norms(stored)
        + manifest.get("batch_norms_folded", 0),
        "versions": library_versions(),
        "weights_file": MODEL_FILE,
        "weights_sha256": sha256_of(model_path),
    }
    write_manifest(out_dir, full)
    return out_dir


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's content (sorted keys, without the digest itself)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def write_manifest(model_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` with a digest of its own content, so an edited manifest
    (a changed threshold or class list) is refused at load time like edited weights."""
    write_json(Path(model_dir) / MANIFEST_FILE, {**manifest, "manifest_sha256": manifest_digest(manifest)})


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest of a model folder, with its required keys checked."""
    path = Path(model_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(f"{model_dir} has no {MANIFEST_FILE}: not a model folder")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc})") from exc
    missing = {"class_names", "input_size", "weights_sha256", "malignant_threshold"} - set(manifest)
    if missing:
        raise ArtifactError(f"{path} lacks {', '.join(sorted(missing))}")
    if tuple(manifest["class_names"]) != CLASS_NAMES:
        raise ArtifactError(f"{path}: class names or order differ from this version of skin_model")
    return manifest


@dataclass
class ModelArtifact:
    """A loaded, verified model with its manifest and (if present) evaluation."""

    path: Path
    model: Any  # ready for inference: batch norms folded, not for further training
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.name)

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def malignant_threshold(self) -> float:
        return float(self.manifest["malignant_threshold"])

    def evaluation(self) -> dict[str, Any] | None:
        return read_evaluation(self.path)


def read_report(model_dir: str | Path, name: str) -> dict[str, Any] | None:
    """A JSON report beside a model (evaluation, robustness, ...), or None without one."""
    path = Path(model_dir) / name
    return json.loads(path.read_text()) if path.is_file() else None


def read_evaluation(model_dir: Path) -> dict[str, Any] | None:
    return read_report(model_dir, EVALUATION_FILE)


def load_artifact(model_dir: str | Path | None = None) -> ModelArtifact:
    """Load and verify a model folder (default: the project's default model)."""
    import keras

    from . import colour_constancy  # noqa: F401  (registers the ShadesOfGray layer for loading)

    model_dir = Path(model_dir) if model_dir else default_model_dir()
    manifest = read_manifest(model_dir)
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise ArtifactError(
            f"{model_dir / MANIFEST_FILE} does not match its own checksum: it was edited after training; "
            "refusing to load the model"
        )
    weights = model_dir / manifest.get("weights_file", MODEL_FILE)
    if not weights.is_file():
        raise ArtifactError(f"{model_dir} has no weights file {weights.name} (only its evaluation ships?)")
    actual = sha256_of(weights)
    if actual != manifest["weights_sha256"]:
        raise ArtifactError(
            f"{weights} does not match its manifest checksum (expected {manifest['weights_sha256'][:12]}..., "
            f"got {actual[:12]}...): the file was altered or corrupted; refusing to load it"
        )
    for kind in CHECKSUMMED_EXTRAS:  # files fitted after training, each under its own checksum
        extra = manifest.get(f"{kind}_file")
        if extra and not (model_dir / extra).is_file():
            raise ArtifactError(f"{model_dir} lacks {extra}, which its manifest lists; refusing to load it")
        if extra and sha256_of(model_dir / extra) != manifest.get(f"{kind}_sha256"):
            raise ArtifactError(f"{model_dir / extra} does not match its manifest checksum; refusing to load it")
    try:
        model = keras.models.load_model(weights, compile=False, safe_mode=True)
    except Exception as exc:
        raise ArtifactError(f"cannot load {weights}: {exc}") from exc
    return ModelArtifact(model_dir, fold_batch_norms(model), manifest)


def store_folded(model_dir: str | Path) -> int:
    """Rewrite a folder saved before artifacts stored the folded inference model:
    ``model.keras`` becomes the model :func:`load_artifact` already served, and the
    manifest records its checksum. Its evaluation stays valid (it was computed on that
    same folded model). Returns the number of batch norms folded (0: nothing to do)."""
    import keras

    model_dir = Path(model_dir)
    artifact = load_artifact(model_dir)  # verifies checksums, folds
    if "batch_norms_folded" in artifact.manifest:
        return 0
    path = model_dir / artifact.manifest.get("weights_file", MODEL_FILE)
    unfolded = keras.models.load_model(path, compile=False, safe_mode=True)
    artifact.model.save(path)
    manifest = {k: v for k, v in artifact.manifest.items() if k != "manifest_sha256"}
    manifest["batch_norms_folded"] = count_batch_norms(unfolded) - count_batch_norms(artifact.model)
    manifest["weights_sha256"] = sha256_of(path)
    write_manifest(model_dir, manifest)
    return manifest["batch_norms_folded"]


def earlier_schedules(manifest: dict[str, Any], models_dir: Path = TRAINED_MODELS_DIR) -> list[dict[str, Any]]:
    """The manifests of the runs a model continued (``train --init-from``), nearest
    first: what it cost to train is its own run plus all of these. A starting model is
    looked up where its manifest named it, else by its folder name in ``models_dir``;
    the walk stops at one that cannot be found or read (its time is then unknown; the
    card that asks must not fail for it)."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    start = (manifest.get("training_config") or {}).get("init_from")
    while start and start not in seen:
        seen.add(start)
        folder = next((d for d in (Path(start), models_dir / Path(start).name) if (d / MANIFEST_FILE).is_file()), None)
        if folder is None:
            break
        try:
            found.append(read_manifest(folder))
        except ArtifactError:
            break
        start = (found[-1].get("training_config") or {}).get("init_from")
    return found


def default_model_dir(models_dir: Path = TRAINED_MODELS_DIR) -> Path:
    """The folder named by ``trained_models/default.json``."""
    pointer = models_dir / DEFAULT_POINTER
    if not pointer.is_file():
        raise ArtifactError(f"no default model: {pointer} is missing")
    return models_dir / json.loads(pointer.read_text())["default"]


def list_model_dirs(models_dir: Path = TRAINED_MODELS_DIR) -> list[Path]:
    """Every folder under ``models_dir`` with a manifest (with or without weights)."""
    return sorted(p.parent for p in models_dir.glob(f"*/{MANIFEST_FILE}"))
