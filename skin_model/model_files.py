"""The registry of the files a model folder holds: each file's name, what it holds, who
writes it and who reads it. Every module and benchmark takes a model file's name from
here, so a folder's layout is spelled once."""

from __future__ import annotations

from dataclasses import dataclass

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
EVALUATION_FILE = "evaluation.json"
HISTORY_FILE = "history.csv"
PREDICTION_SETS_FILE = "prediction_sets.json"
RELIABILITY_FILE = "reliability.npz"
RELIABILITY_REPORT_FILE = "reliability.json"
CASES_FILE = "cases.npz"
CASES_REPORT_FILE = "cases.json"
SUBGROUPS_FILE = "subgroups.json"
ROBUSTNESS_FILE = "robustness.json"
COMPRESSION_REPORT_FILE = "compression_shortcut.json"
EXPLANATION_CHECK_FILE = "explanation_check.json"
TRUST_TRANSFER_FILE = "trust_transfer.json"
HEATMAP_LESION_FILE = "heatmap_lesion.json"
COLLECTION_TRANSFER_FILE = "collection_transfer.json"
CHECKPOINT_DIR = "checkpoint"  # a training run's state while it trains; never shipped


@dataclass(frozen=True)
class ModelFile:
    name: str
    holds: str
    written_by: str
    read_by: str
    checksummed: bool = False  # its SHA-256 is in the manifest, and loading verifies it


MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile(MODEL_FILE, "the weights (batch norms folded)", "train", "every user of the model", True),
    ModelFile(
        MANIFEST_FILE,
        "class names, input size, preprocessing, config, data fingerprint, thresholds, checksums",
        "train, calibrate, cases, sets",
        "every user of the model (the digest of itself is inside)",
    ),
    ModelFile(
        EVALUATION_FILE,
        "validation and test figures with intervals, stored scores",
        "train, evaluate",
        "Evaluation page, model card, validate, risk meaning, README figures",
    ),
    ModelFile(HISTORY_FILE, "the per-epoch training history", "train", "Evaluation page"),
    ModelFile(PREDICTION_SETS_FILE, "how the differential's sets measured", "train, sets", "Diagnose page, explain"),
    ModelFile(
        RELIABILITY_FILE, "the out-of-distribution detector's class statistics", "calibrate", "reliability check", True
    ),
    ModelFile(
        RELIABILITY_REPORT_FILE,
        "calibration and refusal figures",
        "calibrate",
        "Evaluation page, model card",
    ),
    ModelFile(CASES_FILE, "pooled features of the training lesions", "cases", "similar-case view", True),
    ModelFile(CASES_REPORT_FILE, "how often the similar lesions agree", "cases", "Diagnose page, model card"),
    ModelFile(SUBGROUPS_FILE, "figures by patient group", "benchmarks/subgroups.py", "Diagnose page, model card"),
    ModelFile(
        ROBUSTNESS_FILE,
        "answers under small changes of the photo",
        "benchmarks/robustness.py",
        "Diagnose page, model card",
    ),
    ModelFile(
        COMPRESSION_REPORT_FILE,
        "answers of pictures saved again (JPEG, PNG, half size)",
        "benchmarks/jpeg_shortcut.py",
        "Diagnose page, predict, model card",
    ),
    ModelFile(
        TRUST_TRANSFER_FILE,
        "refusals and referral figures leaving one collection out",
        "benchmarks/trust_transfer.py",
        "Evaluation page, model card",
    ),
    ModelFile(
        COLLECTION_TRANSFER_FILE,
        "the recipe trained without a collection, measured on it",
        "benchmarks/transfer.py",
        "Evaluation page, model card, README figures",
    ),
    ModelFile(
        HEATMAP_LESION_FILE,
        "the heat maps against the lesion masks",
        "benchmarks/heatmap_lesion.py",
        "Evaluation page, model card",
    ),
    ModelFile(
        EXPLANATION_CHECK_FILE,
        "the heat maps' deletion check",
        "benchmarks/explain_faithfulness.py",
        "Evaluation page, model card",
    ),
)
