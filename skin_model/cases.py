"""Explanation by example: the training lesions most similar to a picture, as the
model sees them.

A dermatologist weighs a new lesion against cases seen before; the model can show its
own: the training lesions whose pooled features (the layer its classifier reads) lie
closest in cosine similarity to the picture's, both taken relative to the mean training
feature (content-based image retrieval, as in Tschandl et al., Nature Medicine 2019;
without centring, the positive post-ReLU features all point one way and every cosine is
near 1). Each lesion counts once (several photos of one lesion, grouped by the audit,
give its best match). What the retrieved cases were diagnosed as is a second opinion:
when their majority names another class than the model, the model was wrong far more
often on validation (the figures are stored with the index and shown by the app).

The index holds features of training images only, computed on the picture itself
(view 0, no test-time augmentation), with each case's label, ISIC id, collection and
path relative to the data root: no image is stored, so the pictures themselves can be
shown only where the data set is present.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import CLASS_NAMES
from .model_files import CASES_FILE, CASES_REPORT_FILE  # noqa: F401  (the registry's names)

CASES_LAYER = "gap"  # the global-average-pooling layer of every model (models.py), which the head reads

SIMILAR_K = 10  # fixed before measuring; 5 and 15 measured the same on validation


@dataclass(frozen=True)
class SimilarCase:
    """One training lesion close to the query picture."""

    label: str
    similarity: float  # cosine similarity of the centred pooled features, -1 to 1
    isic_id: str  # "" when the picture has none
    source: str  # the collection the picture came from
    path: str  # relative to the data root


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


@dataclass
class CaseIndex:
    """Unit-length features of the training images and who they are."""

    features: np.ndarray  # (n, d) float16: training features minus ``centre``, unit rows
    centre: np.ndarray  # (d,) float32: the mean training feature
    labels: np.ndarray  # (n,) class indices
    groups: np.ndarray  # (n,) lesion/picture group: one case per group
    isic_ids: np.ndarray
    sources: np.ndarray
    paths: np.ndarray
    layer: str = CASES_LAYER

    @classmethod
    def build(cls, features: np.ndarray, rows: pd.DataFrame, data_dir: Path, layer: str = CASES_LAYER) -> CaseIndex:
        """An index of ``rows`` (manifest rows, in the order of ``features``)."""
        if len(features) != len(rows):
            raise ValueError(f"{len(features)} feature rows for {len(rows)} images")
        data_dir = Path(data_dir).resolve()
        paths = [Path(p).resolve() for p in rows["path"]]
        centre = np.asarray(features, np.float32).mean(axis=0)
        return cls(
            features=_unit_rows(features - centre).astype(np.float16),
            centre=centre,
            labels=np.array([CLASS_NAMES.index(label) for label in rows["final_label"]], np.int16),
            groups=rows["group_id"].astype(str).to_numpy(dtype=str),
            isic_ids=rows["isic_id"].fillna("").astype(str).to_numpy(dtype=str),
            sources=rows["source"].astype(str).to_numpy(dtype=str),
            paths=np.array([p.relative_to(data_dir).as_posix() for p in paths], dtype=str),
            layer=layer,
        )

    @functools.cached_property
    def _matrix(self) -> np.ndarray:
        """The features as float32, converted once (about 14 MB for the shipped index)."""
        return self.features.astype(np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def nearest(self, features: np.ndarray, k: int = SIMILAR_K) -> list[list[SimilarCase]]:
        """For each row of ``features`` (pooled features of query pictures), the ``k``
        most similar training lesions, most similar first, one per lesion group."""
        sims = _unit_rows(np.asarray(features, np.float32) - self.centre) @ self._matrix.T
        found = []
        for row in sims:
            cases, seen = [], set()
            for i in np.argsort(-row, kind="stable"):
                if self.groups[i] in seen:
                    continue
                seen.add(self.groups[i])
                cases.append(
                    SimilarCase(
                        CLASS_NAMES[int(self.labels[i])],
                        round(float(row[i]), 4),
                        str(self.isic_ids[i]),
                        str(self.sources[i]),
                        str(self.paths[i]),
                    )
                )
                if len(cases) == k:
                    break
            found.append(cases)
        return found

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            features=self.features,
            centre=self.centre,
            labels=self.labels,
            groups=self.groups,
            isic_ids=self.isic_ids,
            sources=self.sources,
            paths=self.paths,
            layer=np.array(self.layer),
        )

    @classmethod
    def load(cls, path: Path) -> CaseIndex:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                features=data["features"],
                centre=data["centre"],
                labels=data["labels"],
                groups=data["groups"],
                isic_ids=data["isic_ids"],
                sources=data["sources"],
                paths=data["paths"],
                layer=str(data["layer"]),
            )

    @classmethod
    def from_artifact(cls, artifact) -> CaseIndex | None:
        """The index shipped with a model (verified by the loader), or None."""
        name = artifact.manifest.get("cases_file")
        return cls.load(artifact.path / name) if name else None


def case_votes(cases: list[SimilarCase]) -> dict[str, int]:
    """How many of the cases carry each diagnosis, most frequent first (ties in class order)."""
    counts = {name: sum(case.label == name for case in cases) for name in CLASS_NAMES}
    return {name: n for name, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n}


def majority(cases: list[SimilarCase]) -> str | None:
    """The most frequent diagnosis among the cases (ties: the most similar case's of the
    tied ones), or None when there are none."""
    votes = case_votes(cases)
    if not votes:
        return None
    top = max(votes.values())
    tied = {name for name, n in votes.items() if n == top}
    return next(case.label for case in cases if case.label in tied)


def agreement_report(predicted: np.ndarray, y: np.ndarray, majorities: list[str | None]) -> dict[str, object]:
    """How often the cases' majority names the model's class, and how often the model
    is right when it does and when it does not (the figures the app quotes)."""
    if len(y) == 0:
        return {"images": 0}
    by_cases = np.array([CLASS_NAMES.index(m) if m else -1 for m in majorities])
    agree = by_cases == predicted
    correct = predicted == y

    def share(mask: np.ndarray) -> float | None:
        return round(float(correct[mask].mean()), 4) if mask.any() else None

    return {
        "images": len(y),
        # mean recall over the classes present (the test split lacks two)
        "cases_majority_balanced_accuracy": round(
            float(np.mean([(by_cases[y == k] == k).mean() for k in np.unique(y)])), 4
        ),
        "agreement": round(float(agree.mean()), 4),
        "model_accuracy_when_agree": share(agree),
        "model_accuracy_when_disagree": share(~agree),
        "disagreeing_images": int((~agree).sum()),
    }
