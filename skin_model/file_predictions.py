"""Batch prediction of picture files, as `predict` and the app's worklist give it: the files
under the given paths, decoded ahead of the model, one row per file (an unreadable file
gets a status saying why), and the CSV table whose columns are a contract."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .cases import majority
from .classes import CLASS_NAMES, malignant_score
from .conformal import PredictionSets
from .images import ImageLoadError, load_image, read_file_bytes
from .inference import FilePrediction, predict_check_and_compare, referral_advice
from .pipeline import to_model_input


def iter_input_files(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """(file, name to report) for files given directly or found (recursively) in folders.

    Names are relative to the folder they were found under, with forward slashes;
    hidden files are skipped.
    """
    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = file.relative_to(path)
                if not any(part.startswith(".") for part in rel.parts):
                    found.append((file, rel.as_posix()))
        else:
            found.append((path, path.name))
    return found


def _decode_for_model(
    item: tuple[Path | bytes, str], size: int, fingerprint: bool = False
) -> tuple[FilePrediction, np.ndarray | None]:
    """One file's result row (status "ok", or why it is unreadable) and its model input;
    the file is a path or its bytes. ``fingerprint``: also the row's ``sha256`` and
    ``phash``, from the same read and decode."""
    from .hashing import content_hash, perceptual_hash

    source, name = item
    sha256 = ""
    try:
        if fingerprint:
            source = read_file_bytes(source)
            sha256 = content_hash(source)
        loaded = load_image(source)
    except ImageLoadError as exc:
        return FilePrediction(name, f"unreadable: {exc}", None, sha256=sha256), None
    row = FilePrediction(name, "ok", None, jpeg_quality=loaded.jpeg_quality, sha256=sha256)
    if fingerprint:
        row.phash = perceptual_hash(loaded.image)
    return row, to_model_input(loaded.image, size)


def predict_files(
    predictor,
    files: list[tuple[Path | bytes, str]],
    batch_size: int = 64,
    progress: bool = True,
    reliability=None,
    cases=None,
    malignant_threshold: float | None = None,
    prediction_sets: PredictionSets | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    fingerprint: bool = False,
) -> list[FilePrediction]:
    """Predict every file; unreadable ones get a status saying why, never an exception.
    ``predictor`` is a :class:`Predictor` or an exported model; the referral advice
    comes from ``malignant_threshold`` (the model's) and ``reliability`` (a
    :class:`skin_model.reliability.ReliabilityCheck`), and ``cases`` (a
    :class:`skin_model.cases.CaseIndex`) gives the similar lesions' majority and
    ``prediction_sets`` (:class:`skin_model.conformal.PredictionSets`) each differential.
    Two threads decode the next batch while the model runs on the current one (PIL
    releases the GIL while decoding and resizing). ``on_progress(done, total)`` is
    called after each batch (a page's progress bar). ``fingerprint``: each row also gets
    the file's SHA-256 and perceptual hash, from the same read and decode."""
    from concurrent.futures import ThreadPoolExecutor

    results: list[FilePrediction] = []
    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        tqdm(total=len(files), desc="predicting", unit="img", disable=not progress) as bar,
    ):

        def submit(chunk):
            return [pool.submit(_decode_for_model, item, predictor.input_size, fingerprint) for item in chunk]

        pending = submit(chunks[0]) if chunks else []
        for k in range(len(chunks)):
            decoded = [f.result() for f in pending]
            pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
            readable = [(row, arr) for row, arr in decoded if arr is not None]
            if readable:
                batch = np.stack([arr for _, arr in readable])
                probs, checked, similar = predict_check_and_compare(predictor, batch, reliability, cases, batch_size)
                abstain_below = reliability.abstain_below if reliability is not None else None
                advice, high = referral_advice(probs, checked, abstain_below, malignant_threshold)
                majorities = [""] * len(readable) if similar is None else [majority(c) or "" for c in similar]
                sets = [None] * len(readable) if prediction_sets is None else prediction_sets.members(probs)
                for (row, _), p, a, h, m, c in zip(readable, probs, advice, high, majorities, sets, strict=True):
                    row.probs, row.advice, row.high_risk, row.similar_majority, row.prediction_set = p, a, h, m, c
            results += [row for row, _ in decoded]
            bar.update(len(decoded))
            if on_progress is not None:
                on_progress(len(results), len(files))
    return results


def predictions_table(results: list[FilePrediction]) -> pd.DataFrame:
    """The predict CSV: file, status, predicted_class, one column per class,
    malignant_probability (empty where the file was not classified),
    high_malignant_risk (True when it reaches the model's referral threshold), advice
    (empty, or why a dermatologist should decide on this image),
    similar_cases_majority (empty without a case index), jpeg_quality (the quality
    a JPEG was saved at; the model reads heavily compressed pictures less well, see
    ``benchmarks/jpeg_shortcut.py``) and prediction_set (the differential, classes
    separated by "; ", most probable first; empty for a model without sets)."""
    rows = []
    for r in results:
        row: dict[str, object] = {
            "file": r.file,
            "status": r.status,
            "predicted_class": "",
            "advice": r.advice,
            "similar_cases_majority": r.similar_majority,
            "jpeg_quality": r.jpeg_quality,
            "prediction_set": "" if r.prediction_set is None else "; ".join(r.prediction_set),
        }
        if r.probs is not None:
            row["predicted_class"] = CLASS_NAMES[int(np.argmax(r.probs))]
            row.update({name: round(float(p), 6) for name, p in zip(CLASS_NAMES, r.probs, strict=True)})
            row["malignant_probability"] = round(float(malignant_score(r.probs[None])[0]), 6)
            row["high_malignant_risk"] = r.high_risk
        rows.append(row)
    columns = [
        "file",
        "status",
        "predicted_class",
        *CLASS_NAMES,
        "malignant_probability",
        "high_malignant_risk",
        "advice",
        "similar_cases_majority",
        "jpeg_quality",
        "prediction_set",
    ]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table["jpeg_quality"] = table["jpeg_quality"].astype("Int64")  # whole numbers, empty for other formats
    return table


def worklist_table(results: list[FilePrediction], numbers: list[int]) -> pd.DataFrame:
    """A batch as a worklist: the predict CSV's rows with their picture ``numbers`` in a
    first column "#", readable pictures to refer first, then by malignant risk (highest
    first; ties keep their order), unreadable files last."""
    table = predictions_table(results)
    table.insert(0, "#", numbers)
    table["advice"] = table["advice"].fillna("")
    keys = table.assign(_ok=table["status"] == "ok", _refer=table["advice"] != "")
    keys = keys.sort_values(["_ok", "_refer", "malignant_probability"], ascending=False, kind="stable")
    return table.loc[keys.index].reset_index(drop=True)
