"""The similar-case index: retrieval checked by hand, one case per lesion, the votes and
their agreement figures, the stored index verified like the weights, and a training
picture finding itself through the model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_model.artifact import ArtifactError, load_artifact
from skin_model.cases import (
    CASES_FILE,
    CaseIndex,
    SimilarCase,
    agreement_report,
    case_votes,
    majority,
)
from skin_model.classes import CLASS_NAMES
from skin_model.workflows import fit_cases

from .conftest import run_cli


def _rows(tmp_path: Path, labels: list[str], groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [str(tmp_path / "data" / "set" / f"ISIC_{i:07d}.jpg") for i in range(len(labels))],
            "final_label": labels,
            "group_id": groups,
            "isic_id": [f"ISIC_{i:07d}" if i else None for i in range(len(labels))],
            "source": ["seed_train"] * len(labels),
        }
    )


# Five training pictures in a 2-D feature space (mean zero, so centring leaves them as
# they are); the first two are photos of one lesion.
FEATURES = np.array([[2.0, 0.0], [0.6, -0.8], [0.0, 3.0], [1.0, 1.0], [-3.6, -3.2]])
LABELS = ["nevus", "melanoma", "melanoma", "basal cell carcinoma", "nevus"]
GROUPS = ["G1", "G1", "G2", "G3", "G4"]


@pytest.fixture
def index(tmp_path: Path) -> CaseIndex:
    return CaseIndex.build(FEATURES, _rows(tmp_path, LABELS, GROUPS), tmp_path / "data")


def test_nearest_ranks_by_cosine_and_shows_each_lesion_once(index: CaseIndex) -> None:
    query = np.array([[3.0, 4.0]])  # unit (0.6, 0.8)
    cases = index.nearest(query, k=3)[0]
    # cosines by hand: G3 (1,1)/sqrt2 -> 1.4/1.4142 = 0.9899; G2 (0,1) -> 0.8;
    # G1's best photo (1,0) -> 0.6 (its other photo (0.6,-0.8) -> -0.28 is not shown); G4 -> -0.98
    assert [c.label for c in cases] == ["basal cell carcinoma", "melanoma", "nevus"]
    assert [c.similarity for c in cases] == pytest.approx([0.9899, 0.8, 0.6], abs=1e-3)
    assert cases[2].isic_id == "" and cases[2].path == "set/ISIC_0000000.jpg"  # relative to the data root
    everything = index.nearest(query, k=10)[0]
    assert len(everything) == 4  # five photos, four lesions
    assert [c.label for c in index.nearest(np.array([[0.6, -0.8]]), k=1)[0]] == ["melanoma"]


def test_a_feature_shared_by_every_picture_does_not_count(index: CaseIndex, tmp_path: Path) -> None:
    """Similarity is measured from the mean training feature: adding the same large
    offset to every training and query feature (as post-ReLU features all carry one)
    changes nothing, where a plain cosine would call everything identical."""
    offset = np.array([100.0, 100.0])
    shifted = CaseIndex.build(FEATURES + offset, _rows(tmp_path, LABELS, GROUPS), tmp_path / "data")
    query = np.array([[3.0, 4.0]])
    assert [c.similarity for c in shifted.nearest(query + offset)[0]] == pytest.approx(
        [c.similarity for c in index.nearest(query)[0]], abs=2e-3
    )


def test_votes_majority_and_ties() -> None:
    def case(label: str, similarity: float) -> SimilarCase:
        return SimilarCase(label, similarity, "", "seed_train", "x.jpg")

    cases = [case("nevus", 0.9), case("melanoma", 0.8), case("melanoma", 0.7), case("nevus", 0.6)]
    assert case_votes(cases) == {"melanoma": 2, "nevus": 2}  # ties in class order
    assert majority(cases) == "nevus"  # tie: the class of the most similar of the tied cases
    assert majority([*cases, case("melanoma", 0.5)]) == "melanoma"
    assert majority([]) is None


def test_agreement_report_by_hand() -> None:
    nevus, melanoma = CLASS_NAMES.index("nevus"), CLASS_NAMES.index("melanoma")
    y = np.array([nevus, nevus, melanoma, melanoma, nevus])
    predicted = np.array([nevus, melanoma, melanoma, nevus, nevus])
    majorities = ["nevus", "nevus", "melanoma", "nevus", "melanoma"]
    report = agreement_report(predicted, y, majorities)
    # agree on images 0, 2, 3 (model right on 0 and 2); disagree on 1 and 4 (right on 4)
    assert report["agreement"] == pytest.approx(0.6)
    assert report["model_accuracy_when_agree"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["model_accuracy_when_disagree"] == pytest.approx(0.5)
    assert report["disagreeing_images"] == 2
    # the cases alone: nevus recall 2/3, melanoma recall 1/2
    assert report["cases_majority_balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-4)
    assert agreement_report(predicted[:0], y[:0], []) == {"images": 0}  # nothing answered


def test_index_round_trips_without_pickle(index: CaseIndex, tmp_path: Path) -> None:
    index.save(tmp_path / CASES_FILE)
    loaded = CaseIndex.load(tmp_path / CASES_FILE)  # allow_pickle=False: no object arrays stored
    query = np.array([[1.0, 2.0], [-1.0, 0.1]])
    assert loaded.nearest(query) == index.nearest(query)
    assert loaded.features.dtype == np.float16 and loaded.layer == index.layer


@pytest.fixture(scope="module")
def cased_dir(calibrated_dir: Path, synthetic_manifest, tmp_path_factory) -> Path:
    """The calibrated tiny model with its similar-case index."""
    out = tmp_path_factory.mktemp("cased") / "tiny"
    shutil.copytree(calibrated_dir, out)
    result = fit_cases(load_artifact(out), synthetic_manifest, cache_dir=out.parent / "cache", progress=False)
    assert result["report"]["fitted_on"] == f"train ({len(synthetic_manifest.kept('train'))} images)"
    for split in ("val", "test"):
        figures = result["report"][split]
        assert figures["images"] == len(synthetic_manifest.kept(split))
        assert 0 <= figures["agreement"] <= 1
        assert figures["among_answered"]["images"] <= figures["images"]  # the reliability check's answers
    return out


def test_a_training_picture_finds_itself_first(cased_dir: Path, synthetic_manifest) -> None:
    """Through the model and the stored index, each training picture's nearest case is
    that picture (similarity 1 up to float16 rounding), and ``diagnose`` reports it."""
    from skin_model.inference import Predictor, diagnose

    artifact = load_artifact(cased_dir)
    assert artifact.manifest["cases_file"] == CASES_FILE and artifact.manifest["cases_layer"] == "gap"
    cases = CaseIndex.from_artifact(artifact)
    rows = synthetic_manifest.kept("train")
    assert len(cases) == len(rows)
    predictor = Predictor.from_artifact(artifact, explain=True)
    data_dir = synthetic_manifest.data_dir.resolve()
    for _, row in rows.head(6).iterrows():
        image = Image.open(row["path"])
        for explain in (False, True):  # the plain pass and the app's explaining pass
            result = diagnose(predictor, image, artifact.malignant_threshold, cases=cases, explain=explain)
            first = result.similar[0]
            assert first.path == Path(row["path"]).resolve().relative_to(data_dir).as_posix()
            assert first.label == row["final_label"] and first.similarity == pytest.approx(1.0, abs=2e-3)
            assert len({c.path for c in result.similar}) == len(result.similar) == 10
            assert result.as_dict()["similar_cases_majority"] == majority(result.similar)


def test_an_altered_or_missing_index_is_refused(cased_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(cased_dir, copy)
    data = (copy / CASES_FILE).read_bytes()
    (copy / CASES_FILE).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(copy)
    (copy / CASES_FILE).unlink()
    with pytest.raises(ArtifactError, match="lacks"):
        load_artifact(copy)


def test_explain_cli_lists_the_similar_lesions(cased_dir: Path, synthetic_manifest, tmp_path: Path) -> None:
    picture = synthetic_manifest.kept("train").iloc[0]
    result = run_cli("explain", str(picture["path"]), "--model", str(cased_dir), "--output", str(tmp_path / "o.png"))
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "10 most similar training lesions:" in line)
    assert picture["final_label"] in lines[start + 1] and Path(picture["path"]).name in lines[start + 1]
    assert len(lines[start + 1 : start + 11]) == 10


def test_predict_csv_names_the_similar_lesions_majority(cased_dir: Path, synthetic_manifest, tmp_path: Path) -> None:
    from skin_model.inference import Predictor, diagnose

    rows = synthetic_manifest.kept("train").head(3)
    out = tmp_path / "preds.csv"
    run_cli("predict", "--model", str(cased_dir), *map(str, rows["path"]), "--output", str(out), "--quiet")
    table = pd.read_csv(out)
    artifact = load_artifact(cased_dir)
    predictor, cases = Predictor.from_artifact(artifact), CaseIndex.from_artifact(artifact)
    expected = [
        majority(diagnose(predictor, Image.open(p), artifact.malignant_threshold, cases=cases).similar)
        for p in rows["path"]
    ]
    assert table["similar_cases_majority"].tolist() == expected
