"""Export a trained model for serving, and load it back.

Two formats: a TensorFlow SavedModel (what TensorFlow Serving runs) and a LiteRT
(TFLite) flat buffer, optionally quantized (float16 weights, dynamic-range int8
weights, or full int8 weights and activations calibrated on training images, each
layer's bias then corrected for the mean shift int8 leaves in its output,
:mod:`skin_model.int8_bias`). The exported function is the one the model was
evaluated with: raw 0-255 RGB pixels in, the 9 class probabilities out, with the
8-view test-time augmentation inside when the model's manifest uses it, so the
shipped thresholds still apply.

Every export gets a JSON manifest (``export.json`` inside a SavedModel folder,
``<file>.json`` beside a ``.tflite`` file) with the class names, input size,
preprocessing, source model checksum, the exported files' SHA-256 (verified when
loading) and, when data was given, the parity check against the Keras model.

An export also carries the model's prediction sets (its differential at a stated
coverage, :mod:`skin_model.conformal`): fitted again on the export's own validation
probabilities when the parity check reads validation, else the source model's
thresholds when the export computes the same probabilities (float32 or float16, the
test-time augmentation the thresholds were fitted with), else none. Its malignant
referral threshold likewise: refitted by the model's own rule on the export's
validation probabilities when the parity check reads validation (int8 moves the
malignant score by hundredths, enough to move a threshold fitted on other scores off
its sensitivity), else the source model's.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import ArtifactError, ModelArtifact, library_versions, sha256_of, write_json
from .classes import CLASS_NAMES
from .int8_bias import DEFAULT_IMAGES as BIAS_CORRECTION_IMAGES
from .int8_bias import correct_biases

FORMATS = ("savedmodel", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
SAVEDMODEL_MANIFEST = "export.json"
SERVING_ENDPOINT = "serve"
PREPROCESSING = "RGB pixels 0-255 as float32, NHWC, resized to input_size x input_size (bilinear)"


def manifest_path(export: Path) -> Path:
    """Where an export's manifest lives."""
    export = Path(export)
    return export / SAVEDMODEL_MANIFEST if export.is_dir() else export.with_name(export.name + ".json")


def is_exported_model(path: str | Path) -> bool:
    """True for a ``.tflite`` file or a folder written by :func:`export_model`."""
    path = Path(path)
    return path.suffix == ".tflite" or (path.is_dir() and (path / SAVEDMODEL_MANIFEST).is_file())


def _tree_sha256(folder: Path) -> str:
    """One digest over every file of a folder (relative names and contents), manifest excluded."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SAVEDMODEL_MANIFEST):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + sha256_of(path).encode())
    return digest.hexdigest()


def _export_sha256(path: Path) -> str:
    return _tree_sha256(path) if path.is_dir() else sha256_of(path)


def write_savedmodel(artifact: ModelArtifact, out_dir: Path, tta: bool) -> Path:
    """The model's serving function as a SavedModel with one endpoint, ``serve``
    (also the default serving signature TensorFlow Serving uses)."""
    import keras
    import tensorflow as tf

    from .inference import Predictor

    forward = Predictor.from_artifact(artifact, tta=tta).forward_function()
    archive = keras.export.ExportArchive()
    archive.track(artifact.model)
    size = artifact.input_size
    archive.add_endpoint(
        SERVING_ENDPOINT,
        lambda pixels: {"probabilities": forward(pixels)},
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="pixels")],
    )
    archive.write_out(str(out_dir), verbose=False)
    return out_dir


# Measured on the shipped Lite2 (RMSE over 32 training images): two layers are off by
# more than one quantization step in int8, the first depthwise layer (4.0) and the stem
# (2.6); every other layer by less than one. Keeping those two in float (``export
# --float-above 1``) raised top-1 agreement with Keras on validation from 93.5 % to
# 95.4 % and narrowed the malignant AUC gap from 0.017 to 0.012, but balanced accuracy
# moved the other way (-1.0 instead of -0.7 points on validation, -3.6 instead of -2.0
# on test; both within the noise), so by default every layer is quantized.
DEBUG_IMAGES = 32


def _int8_converter(savedmodel_dir: Path, representative: np.ndarray):
    import tensorflow as tf

    if representative is None or not len(representative):
        raise ValueError("int8 quantization needs representative training images")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_dir), signature_keys=[SERVING_ENDPOINT])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.asarray(image, np.float32)[None]] for image in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def layer_errors(savedmodel_dir: Path, representative: np.ndarray) -> dict[str, float]:
    """{layer output: RMSE between its int8 and float outputs, in quantization steps},
    largest first, measured with TensorFlow's quantization debugger on the first
    :data:`DEBUG_IMAGES` calibration images."""
    import io

    import pandas as pd
    import tensorflow as tf

    debug = representative[:DEBUG_IMAGES]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=_int8_converter(savedmodel_dir, representative),
        debug_dataset=lambda: ([np.asarray(image, np.float32)[None]] for image in debug),
    )
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    stats = pd.read_csv(dump)
    stats = stats.assign(steps=np.sqrt(stats["mean_squared_error"]) / stats["scale"]).sort_values(
        "steps", ascending=False
    )
    return {name: round(float(value), 3) for name, value in zip(stats["tensor_name"], stats["steps"], strict=True)}


def convert_to_tflite(
    savedmodel_dir: Path,
    quantize: str = "none",
    representative: np.ndarray | None = None,
    float_above_steps: float | None = None,
) -> tuple[bytes, dict[str, float]]:
    """A LiteRT flat buffer of the ``serve`` endpoint, and the layers kept in float.
    ``int8`` quantizes weights and activations with ranges measured on
    ``representative`` (training images, uint8), except layers whose int8 output is
    off by more than ``float_above_steps`` quantization steps (None: quantize all);
    inputs and outputs stay float32 so every export is called the same way."""
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZATIONS)}")
    if quantize == "int8":
        converter = _int8_converter(savedmodel_dir, representative)
        if float_above_steps is None:
            return converter.convert(), {}
        stats = layer_errors(savedmodel_dir, representative)
        kept = {name: steps for name, steps in stats.items() if steps > float_above_steps}
        if not kept:
            return converter.convert(), {}
        if len(kept) == len(stats):  # every layer noisy: nothing left to quantize
            return tf.lite.TFLiteConverter.from_saved_model(
                str(savedmodel_dir), signature_keys=[SERVING_ENDPOINT]
            ).convert(), kept
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: iter(()),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(kept)),
        )
        return debugger.get_nondebug_quantized_model(), kept
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_dir), signature_keys=[SERVING_ENDPOINT])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert(), {}


def export_model(
    artifact: ModelArtifact,
    out: str | Path,
    fmt: str,
    quantize: str = "none",
    tta: bool | None = None,
    representative: np.ndarray | None = None,
    float_above_steps: float | None = None,
    bias_correction_images: int = BIAS_CORRECTION_IMAGES,
    progress: bool = False,
) -> Path:
    """Write an export and its manifest; returns the exported path (a folder for
    ``savedmodel``, a ``.tflite`` file for ``tflite``). ``float_above_steps``: see
    :func:`convert_to_tflite`; ``bias_correction_images``: how many of the
    representative images measure the int8 layers' bias correction
    (:mod:`skin_model.int8_bias`; 0 leaves the biases as converted). Both int8 only."""
    import tempfile

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "savedmodel" and quantize != "none":
        raise ValueError("quantization applies to the tflite format only")
    use_tta = bool(artifact.manifest.get("tta", False)) if tta is None else tta
    out = Path(out)
    started = time.perf_counter()
    kept_float: dict[str, float] = {}
    corrected: dict[str, Any] | None = None
    if fmt == "savedmodel":
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not empty")
        write_savedmodel(artifact, out, use_tta)
    else:
        if out.suffix != ".tflite":
            raise ValueError(f"a tflite export is a file ending in .tflite, not {out.name}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            savedmodel = write_savedmodel(artifact, Path(tmp) / "savedmodel", use_tta)
            flat, kept_float = convert_to_tflite(savedmodel, quantize, representative, float_above_steps)
            if quantize == "int8" and bias_correction_images > 0:
                float_flat, _ = convert_to_tflite(savedmodel, "none")
                flat, corrected = correct_biases(flat, float_flat, representative[:bias_correction_images], progress)
            out.write_bytes(flat)
    manifest = {
        "format": fmt,
        "quantization": quantize,
        "class_names": list(CLASS_NAMES),
        "input_size": artifact.input_size,
        "preprocessing": PREPROCESSING,
        "output": "class probabilities in class_names order",
        "tta": use_tta,
        "malignant_threshold": artifact.malignant_threshold,
        "malignant_threshold_fitted_on": f"the source model's validation probabilities ({artifact.name})",
        **inherited_prediction_sets(artifact, quantize, use_tta),
        "source_model": artifact.name,
        "source_manifest_sha256": artifact.manifest.get("manifest_sha256"),
        "representative_images": 0 if representative is None else len(representative),
        **(
            {
                "float_above_steps": float_above_steps,
                "layers_kept_in_float": kept_float,  # output tensor: int8 error in quantization steps
                "bias_correction": corrected,  # None: the biases as the converter made them
            }
            if quantize == "int8"
            else {}
        ),
        "export_seconds": round(time.perf_counter() - started, 1),
        "versions": library_versions(),
        "sha256": _export_sha256(out),
    }
    write_json(manifest_path(out), manifest)
    return out


SET_KEYS = ("prediction_set_alpha", "prediction_set_thresholds", "prediction_set_rule")
SAME_PROBABILITIES = ("none", "float16")  # quantizations whose outputs match the source's to 1e-3


def inherited_prediction_sets(artifact: ModelArtifact, quantize: str, tta: bool) -> dict[str, Any]:
    """The source model's prediction-set entries for an export that computes its
    probabilities (float32 or float16, and the test-time augmentation its validation
    scores, hence its thresholds, were computed with); empty otherwise: int8 moves
    probabilities by up to tenths, and thresholds fitted on other probabilities would
    not keep their coverage."""
    if "prediction_set_thresholds" not in artifact.manifest or quantize not in SAME_PROBABILITIES:
        return {}
    if tta != bool(artifact.manifest.get("tta", False)):
        return {}
    return {key: artifact.manifest[key] for key in SET_KEYS if key in artifact.manifest} | {
        "prediction_set_fitted_on": f"the source model's validation probabilities ({artifact.name})"
    }


def check_export(
    artifact: ModelArtifact,
    export: Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    tta: bool | None = None,
) -> dict[str, Any]:
    """Compare an export with the Keras model on ``splits`` (name -> images, labels),
    record the parity in the export's manifest and, when validation is among them,
    refit the malignant referral threshold (the model's rule) and the prediction sets
    (the source's coverage) on the export's own validation probabilities, the test
    split, if given, measured with them. Returns ``{"parity": ..., "prediction_sets":
    report or None}``."""
    from .conformal import DEFAULT_ALPHA, fit_prediction_sets
    from .inference import Predictor

    keras_predictor, export_predictor = Predictor.from_artifact(artifact, tta=tta), load_exported(export)
    reference, served = {}, {}
    for split, (x, y) in splits.items():
        reference[split] = keras_answers(keras_predictor, artifact, x)
        served[split] = (export_predictor.predict_arrays(x), np.asarray(y))
    path = manifest_path(export)
    manifest = json.loads(path.read_text())
    if "val" in served:
        manifest |= refitted_threshold(artifact, *served["val"])
    thresholds = (artifact.malignant_threshold, float(manifest["malignant_threshold"]))
    parity = {
        split: parity_report(probs, served[split][0], served[split][1], answered=answered, thresholds=thresholds)
        for split, (probs, answered) in reference.items()
    }
    manifest["parity"] = parity
    sets = None
    if "val" in served:
        alpha = float(artifact.manifest.get("prediction_set_alpha", DEFAULT_ALPHA))
        sets = fit_prediction_sets(served["val"], served.get("test"), alpha)
        manifest |= sets["manifest"] | {
            "prediction_set_fitted_on": "this export's own validation probabilities",
            "prediction_sets": sets["report"],
        }
    write_json(path, manifest)
    return {"parity": parity, "prediction_sets": None if sets is None else sets["report"]}


def keras_answers(predictor, artifact: ModelArtifact, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Keras model's probabilities for ``x`` and which of them it answers rather
    than calling itself unsure, by the rule the app and ``predict`` apply: calibrated
    single-view confidence at or above the model's abstention cut-off (a model without
    reliability settings: top probability at or above
    :data:`skin_model.inference.UNSURE_BELOW`)."""
    from .inference import UNSURE_BELOW
    from .reliability import apply_temperature

    temperature, cut = artifact.manifest.get("temperature"), artifact.manifest.get("abstain_below")
    if predictor.feature_layers and temperature is not None and cut is not None:
        probs, single, _ = predictor.predict_with_features(x)
        return probs, apply_temperature(single, temperature).max(axis=1) >= cut
    probs = predictor.predict_arrays(x)
    return probs, probs.max(axis=1) >= UNSURE_BELOW


def refitted_threshold(artifact: ModelArtifact, val_probs: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """Manifest entries for the export's malignant referral threshold, fitted by the
    source model's rule (its sensitivity target) on the export's validation
    probabilities, with the source's threshold kept beside it."""
    from .classes import MALIGNANT_MASK, malignant_score
    from .evaluation import threshold_for_sensitivity, threshold_rule

    target = float(artifact.manifest.get("training_config", {}).get("malignant_sensitivity_target", 0.9))
    threshold = threshold_for_sensitivity(MALIGNANT_MASK[np.asarray(y_val)], malignant_score(val_probs), target)
    return {
        "malignant_threshold": threshold,  # unrounded: it lies halfway between two scores 1e-6 apart or more
        "malignant_threshold_rule": threshold_rule(target),
        "malignant_threshold_fitted_on": "this export's own validation probabilities",
        "source_malignant_threshold": artifact.malignant_threshold,
    }


class ExportedPredictor:
    """Runs an export with the same interface as :class:`skin_model.inference.Predictor`
    (``input_size``, ``predict_arrays``); safe to share between threads."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.input_size = int(manifest["input_size"])
        self.tta = bool(manifest.get("tta", False))
        self._lock = threading.Lock()
        if manifest["format"] == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            self._interpreter = Interpreter(model_path=str(path), num_threads=2)
            self._input = self._interpreter.get_input_details()[0]["index"]
            self._output = self._interpreter.get_output_details()[0]["index"]
            self._batch = -1
        else:
            import tensorflow as tf

            self._serve = tf.saved_model.load(str(path)).signatures["serving_default"]

    def _run_tflite(self, x: np.ndarray) -> np.ndarray:
        with self._lock:  # one interpreter holds one set of tensors
            if len(x) != self._batch:
                self._interpreter.resize_tensor_input(self._input, list(x.shape))
                self._interpreter.allocate_tensors()
                self._batch = len(x)
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output).copy()

    def predict_arrays(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities for uint8/float images already at the input size."""
        if len(x) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float32)
        out = []
        for i in range(0, len(x), batch_size):
            batch = np.ascontiguousarray(x[i : i + batch_size], np.float32)
            if self.manifest["format"] == "tflite":
                out.append(self._run_tflite(batch))
            else:
                out.append(self._serve(pixels=batch)["probabilities"].numpy())
        return np.concatenate(out)

    def warm_up(self) -> None:
        self.predict_arrays(np.zeros((1, self.input_size, self.input_size, 3), np.uint8))


def load_exported(path: str | Path) -> ExportedPredictor:
    """Load an export after checking its manifest and checksum."""
    path = Path(path)
    meta = manifest_path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    if not meta.is_file():
        raise ArtifactError(
            f"{path} has no export manifest ({meta.name}); export it with `python -m skin_model export`"
        )
    manifest = json.loads(meta.read_text())
    if tuple(manifest.get("class_names", ())) != CLASS_NAMES:
        raise ArtifactError(f"{meta}: class names or order differ from this version of skin_model")
    if _export_sha256(path) != manifest.get("sha256"):
        raise ArtifactError(f"{path} does not match the checksum in {meta.name}: it was altered; refusing to load it")
    return ExportedPredictor(path, manifest)


def parity_report(
    reference: np.ndarray,
    exported: np.ndarray,
    y: np.ndarray,
    bootstrap: int = 1000,
    answered: np.ndarray | None = None,
    thresholds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Accuracy and balanced accuracy of the Keras model and of the export on the same
    images (with labels ``y``), how far their probabilities differ, and the export minus
    Keras with a paired-bootstrap 95 % interval: on a small split one changed answer
    moves balanced accuracy by points, and the interval says how much of a gap that is.

    ``answered`` (the pictures Keras answers rather than calling itself unsure, see
    :func:`keras_answers`) adds the agreement on those: a changed answer where the app
    would have said "unsure" anyway matters less than one it would have given.
    ``thresholds`` (Keras's, the export's) adds the referral decisions each makes and
    how many the export changes."""
    import warnings

    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from .evaluation import paired_bootstrap_difference

    def scores(probs: np.ndarray) -> dict[str, float]:
        predicted = probs.argmax(axis=1)
        with warnings.catch_warnings():  # a split may lack a class the model predicts
            warnings.simplefilter("ignore", UserWarning)
            balanced = balanced_accuracy_score(y, predicted)
        return {
            "accuracy": round(float(accuracy_score(y, predicted)), 4),
            "balanced_accuracy": round(float(balanced), 4),
        }

    keras_top, export_top = reference.argmax(1), exported.argmax(1)
    agree = keras_top == export_top
    report = {
        "images": len(y),
        "keras": scores(reference),
        "export": scores(exported),
        "max_abs_probability_difference": round(float(np.abs(reference - exported).max()), 6),
        "top1_agreement": round(float(agree.mean()), 4),
        "export_minus_keras": paired_bootstrap_difference(y, exported, reference, n=bootstrap),
    }
    report["answers_turned"] = answers_turned(y, keras_top, export_top)
    if answered is not None:
        answered = np.asarray(answered, bool)
        report["answered"] = {
            "images": int(answered.sum()),
            "top1_agreement": round(float(agree[answered].mean()), 4) if answered.any() else None,
            "answers_changed": int((~agree & answered).sum()),
        }
    if thresholds is not None:
        report["referral"] = referral_changes(y, reference, exported, *thresholds)
    return report


def answers_turned(y: np.ndarray, keras_top: np.ndarray, export_top: np.ndarray) -> dict[str, Any]:
    """How many answers the export turns from right to wrong and from wrong to right,
    the exact McNemar test of whether it turns more one way than chance would, and how
    much balanced accuracy one turned answer moves on this split (an answer in its
    largest class, in its smallest; None for no pictures). On a small split a
    balanced-accuracy gap is a few turned answers; these say how many, and whether
    they lean one way."""
    from scipy.stats import binomtest

    y = np.asarray(y)
    keras_right, export_right = keras_top == y, export_top == y
    lost = int((keras_right & ~export_right).sum())
    gained = int((export_right & ~keras_right).sum())
    counts = np.bincount(y, minlength=len(CLASS_NAMES))
    present = counts[counts > 0]
    return {
        "right_to_wrong": lost,
        "wrong_to_right": gained,
        "mcnemar_exact_p": round(float(binomtest(lost, lost + gained, 0.5).pvalue), 4) if lost + gained else 1.0,
        "balanced_accuracy_per_answer": [
            round(1 / (len(present) * int(present.max())), 4),
            round(1 / (len(present) * int(present.min())), 4),
        ]
        if len(present)
        else None,
    }


def referral_changes(
    y: np.ndarray, reference: np.ndarray, exported: np.ndarray, keras_threshold: float, export_threshold: float
) -> dict[str, Any]:
    """The referral decision (malignant score at or above its threshold) of Keras and of
    the export on the same pictures: each one's operating point, and how many
    decisions the export turns each way."""
    from .classes import malignant_score
    from .evaluation import malignant_operating_point

    keras_refers = malignant_score(reference) >= keras_threshold
    export_refers = malignant_score(exported) >= export_threshold
    return {
        "keras": malignant_operating_point(y, reference, keras_threshold),
        "export": malignant_operating_point(y, exported, export_threshold),
        "decisions_changed": int((keras_refers != export_refers).sum()),
        "export_refers_more": int((export_refers & ~keras_refers).sum()),
        "export_refers_fewer": int((keras_refers & ~export_refers).sum()),
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _points(share: float) -> str:
    """A share of balanced accuracy in points, to two significant figures (0.04, 0.89,
    7.1, 33, 100)."""
    points = 100 * share
    return f"{points:.2g}" if points < 10 else f"{points:.0f}"


def parity_summary(parity: dict[str, Any]) -> list[str]:
    """One line per split of :func:`check_export`'s parity, in words: what a deployer
    asks first is whether the export changes answers the model gives with confidence,
    and referral decisions."""
    from .case_report import split_title

    lines = []
    for split, report in parity.items():
        words = [f"{split_title(split)} ({report['images']} pictures): top-1 agreement {report['top1_agreement']:.1%}"]
        turned = report.get("answers_turned")
        if turned is not None and turned["balanced_accuracy_per_answer"] is not None:
            largest, smallest = (_points(step) for step in turned["balanced_accuracy_per_answer"])
            words.append(
                f"{_count(turned['right_to_wrong'], 'answer')} turned from right to wrong and "
                f"{turned['wrong_to_right']} from wrong to right (exact McNemar p = {turned['mcnemar_exact_p']:.3g}); "
                f"one turned answer moves balanced accuracy by {largest} to {smallest} points here"
            )
        answered = report.get("answered")
        if answered is not None:
            words.append(
                f"{answered['answers_changed']} changed of the {answered['images']} answers Keras gives "
                "without calling itself unsure"
            )
        referral = report.get("referral")
        if referral is not None:
            keras, export = referral["keras"], referral["export"]
            words.append(
                f"{_count(referral['decisions_changed'], 'referral decision')} changed "
                f"({referral['export_refers_more']} more "
                f"referred, {referral['export_refers_fewer']} fewer); referral sensitivity / specificity "
                f"{export['sensitivity']:.3f} / {export['specificity']:.3f} at the export's threshold "
                f"{export['threshold']:.1%} (Keras {keras['sensitivity']:.3f} / {keras['specificity']:.3f} "
                f"at {keras['threshold']:.1%})"
            )
        lines.append("; ".join(words))
    return lines
