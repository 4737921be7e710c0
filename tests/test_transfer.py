"""Referral rules and refusals carried to a collection they were not fitted on, checked by
hand on small made-up scores and features."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from skin_model.transfer import (
    POOLED_RULE,
    WEAKEST_RULE,
    best_rule,
    distance_detector,
    fit_referral_threshold,
    ood_transfer_report,
    referral_figures,
    threshold_transfer_report,
    weakest_collection_threshold,
)

from .conftest import run_cli


def _scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collection "a": ten malignant at 0.6-0.95, ten benign at 0.05-0.5; collection
    "b": ten malignant at 0.15-0.6 (the model reads them less well), ten benign at
    0.02-0.11."""
    a_mal, a_ben = np.linspace(0.6, 0.95, 10), np.linspace(0.05, 0.5, 10)
    b_mal, b_ben = np.linspace(0.15, 0.6, 10), np.linspace(0.02, 0.11, 10)
    score = np.concatenate([a_mal, a_ben, b_mal, b_ben])
    y = np.array([1] * 10 + [0] * 10 + [1] * 10 + [0] * 10, bool)
    return y, score, np.array(["a"] * 20 + ["b"] * 20)


def test_weakest_collection_threshold_lets_every_collection_reach_the_target() -> None:
    y, score, collections = _scores()
    # pooled: 18 of the 20 malignant must be caught; the 18th highest malignant score is
    # b's 0.25, so the threshold lies halfway to the next lower score of any picture (0.20)
    assert fit_referral_threshold(POOLED_RULE, y, score, collections) == pytest.approx(0.225)
    # within b, 9 of 10: b's 9th highest malignant score is 0.20, next lower b score 0.15;
    # within a, 9 of 10: 0.6389, next lower a score 0.60 (0.6194); the lower one wins
    assert weakest_collection_threshold(y, score, collections) == pytest.approx(0.175)
    # a collection with too few malignant pictures sets no threshold of its own
    few = np.array(["a"] * 20 + ["b"] * 20)
    y_few = y.copy()
    y_few[20:29] = False  # b keeps one malignant picture
    assert weakest_collection_threshold(y_few, score, few) == pytest.approx(
        fit_referral_threshold(WEAKEST_RULE, y_few[:20], score[:20], few[:20])
    )
    with pytest.raises(ValueError, match="unknown referral rule"):
        fit_referral_threshold("median", y, score, collections)


def test_referral_figures_by_hand() -> None:
    y = np.array([1, 1, 1, 0, 0], bool)
    figures = referral_figures(y, np.array([0.9, 0.4, 0.1, 0.5, 0.05]), 0.3)
    assert (figures["sensitivity"], figures["specificity"]) == (round(2 / 3, 4), 0.5)
    assert (figures["malignant"], figures["benign"]) == (3, 2)
    low, high = figures["sensitivity_95ci"]
    assert low < 2 / 3 < high


def test_threshold_transfer_report_refits_without_the_held_out_collection() -> None:
    y, score, collections = _scores()
    report = threshold_transfer_report((y, score, collections), (y, score, collections), target=0.9)
    pooled = report["rules"][POOLED_RULE]
    assert pooled["threshold"] == pytest.approx(0.225, abs=1e-4)
    # held out "b": the rule sees only "a" and puts the threshold between a's 0.6389 and 0.60,
    # above every malignant picture of b
    assert pooled["leave_one_collection_out"]["b"]["threshold"] == pytest.approx(0.6194, abs=1e-3)
    assert pooled["leave_one_collection_out"]["b"]["sensitivity"] == 0.0
    assert pooled["test_by_collection"]["b"]["sensitivity"] == 0.8  # 0.25 to 0.60 reach 0.225
    weakest = report["rules"][WEAKEST_RULE]
    assert weakest["threshold"] == pytest.approx(0.175, abs=1e-4)
    assert weakest["test_by_collection"]["a"]["sensitivity"] == 1.0
    assert weakest["test_by_collection"]["b"]["sensitivity"] == 0.9
    assert weakest["test_by_collection"]["b"]["specificity"] == 1.0  # b's benign stay below 0.11
    # leaving a collection out, both rules see one collection, so they agree there
    for held_out in ("a", "b"):
        assert (
            weakest["leave_one_collection_out"][held_out]["threshold"]
            == pooled["leave_one_collection_out"][held_out]["threshold"]
        )
    # tied where weakest leaving one out (b: 0.0), the weakest-collection rule is ahead within collections
    assert best_rule(report) == WEAKEST_RULE


def _features(rng: np.random.Generator, n: int, shift: float, d: int = 6) -> np.ndarray:
    return rng.normal(0, 1, (n, d)) + shift


def test_ood_transfer_report_sees_a_collection_that_looks_unlike_the_others() -> None:
    """Collections "a" and "b" look alike; "c" sits 6 standard deviations away. A
    detector fitted on all three refuses about 5 % of each; fitted without "c" it refuses
    nearly all of c's pictures. Pictures 30 away are refused by every detector, and the
    screened picture whatever its features."""
    rng = np.random.default_rng(0)
    shifts = {"a": 0.0, "b": 0.3, "c": 6.0}

    def split(n: int):
        parts = [_features(rng, n, s) for s in shifts.values()]
        features = np.concatenate(parts)
        y = np.tile(np.arange(2), len(features) // 2)
        collections = np.repeat(list(shifts), n)
        return [features], y, collections, np.zeros(len(features), bool)

    train, val, test = split(400), split(200), split(200)
    far = [_features(rng, 20, 30.0)]
    screened = np.zeros(20, bool)
    screened[0] = True
    report = ood_transfer_report(distance_detector(["layer"], 0.95), train, val, test, {"far": (far, screened)})
    for collection in shifts:
        assert report["within_collection"][collection]["rate"] < 0.15
    assert report["leave_one_collection_out"]["c"]["rate"] > 0.95
    assert report["leave_one_collection_out"]["a"]["rate"] < 0.2
    assert report["other"]["far"]["rate"] == 1.0
    assert report["other"]["far"]["lowest_rate_leaving_one_out"] == 1.0
    assert report["leave_one_collection_out"]["c"]["n"] == 400  # c's validation and test pictures


def test_threshold_command_refits_the_rule_and_re_evaluates(
    tiny_model_dir: Path, synthetic_data: tuple[Path, dict], tmp_path: Path
) -> None:
    from skin_model.artifact import load_artifact
    from skin_model.classes import MALIGNANT_MASK, malignant_score
    from skin_model.evaluation import threshold_for_sensitivity

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = str(synthetic_data[0])
    result = run_cli("threshold", "--model", str(model), "--data", data, "--rule", "pooled", "--target", "0.8")
    assert "referral threshold" in result.stdout and "by collection" in result.stdout
    artifact = load_artifact(model)  # the manifest's digest covers the new entries
    evaluation = artifact.evaluation()
    probs, y = (np.asarray(evaluation["val"]["scores"][k]) for k in ("probs", "y_true"))
    expected = threshold_for_sensitivity(MALIGNANT_MASK[y], malignant_score(probs), 0.8)
    assert artifact.malignant_threshold == pytest.approx(expected)
    assert artifact.manifest["referral_rule"] == "pooled"
    assert evaluation["test"]["malignant"]["threshold"] == round(expected, 4)
    flagged = malignant_score(probs) >= expected
    assert evaluation["val"]["malignant"]["sensitivity"] == round(float(flagged[MALIGNANT_MASK[y]].mean()), 4)


def test_referral_caveat_names_the_collection_it_falls_short_on() -> None:
    from skin_model.card_text import referral_caveat

    def figures(sensitivity: float, malignant: int) -> dict:
        return {"sensitivity": sensitivity, "specificity": 0.5, "malignant": malignant}

    transfer = {
        "referral": {
            "target_sensitivity": 0.9,
            "rules": {
                "weakest-collection": {
                    "test_by_collection": {"isic2017": figures(12 / 14, 14), "ham10000": figures(0.95, 100)},
                    "leave_one_collection_out": {"isic2017": figures(11 / 14, 14), "ham10000": figures(0.93, 100)},
                }
            },
        }
    }
    manifest = {"referral_rule": "weakest-collection", "malignant_threshold": 0.1189}
    text = referral_caveat(manifest, transfer)
    assert text.startswith("The referral threshold (11.9% malignant risk) was chosen so that every image collection")
    assert "caught only 12 of 14 malignant lesions in pictures like ISIC 2017 challenge's" in text
    assert "HAM10000" not in text.split("Fitted without")[0]  # it reached the target there
    assert "as few as 79% of the malignant lesions of the collection left out (ISIC 2017 challenge)" in text
    assert referral_caveat(manifest, None) is None
    assert referral_caveat({"referral_rule": "pooled", "malignant_threshold": 0.2}, transfer) is None


def test_collection_transfer_sentence_quotes_both_models_on_the_left_out_collection() -> None:
    from skin_model.card_text import collection_transfer_sentence

    def figures(auc: float, bal: float, sens: float, spec: float) -> dict:
        return {
            "n_images": 197,
            "malignant_auc": auc,
            "balanced_accuracy": bal,
            "malignant_sensitivity": sens,
            "malignant_specificity": spec,
        }

    report = {
        "collections": {
            "isic2017": {"in_collection": figures(0.72, 0.67, 0.86, 0.32), "held_out": figures(0.65, 0.51, 0.9, 0.2)}
        }
    }
    text = collection_transfer_sentence(report)
    assert "ISIC 2017 challenge (197 test pictures): malignant AUC 0.65 trained without it against 0.72" in text
    assert "balanced accuracy 0.51 against 0.67, referral 90 % / 20 % against 86 % / 32 %" in text
