"""Splits are grouped, stratified and deterministic."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from skin_model.classes import CLASS_NAMES
from skin_model.manifest import Manifest
from skin_model.splits import assign_splits


def _table(groups: list[int], labels: list[int], sources: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "group_id": [f"G{g}" for g in groups],
            "final_label": [CLASS_NAMES[k] for k in labels],
            "source": sources,
            "excluded_reason": [None] * len(groups),
        }
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),
            st.integers(0, 3),
            st.sampled_from(["seed_train", "seed_test", "isic2017", "ham10000"]),
        ),
        min_size=1,
        max_size=150,
    ),
    st.integers(0, 10_000),
)
def test_no_group_on_two_sides(rows: list[tuple[int, int, str]], seed: int) -> None:
    # a group's label is a function of its id, as after label resolution
    table = _table([g for g, _, _ in rows], [g % 4 for g, _, _ in rows], [s for _, _, s in rows])
    result = assign_splits(table, seed=seed)
    used = table.assign(split=result["split"])
    used = used[used["split"] != "excluded"]
    assert (used.groupby("group_id")["split"].nunique() <= 1).all()
    # every seed Test lesion without a seed Train picture is in test, with all its collections' pictures
    train_groups = set(table.loc[table["source"] == "seed_train", "group_id"])
    seed_test = set(table.loc[table["source"] == "seed_test", "group_id"]) - train_groups
    assert (used.loc[used["group_id"].isin(seed_test), "split"] == "test").all()


def test_deterministic_and_stratified() -> None:
    groups = list(range(2000))  # 500 lesions a class: the fractions, not the floors, decide
    table = _table(groups, [g % 4 for g in groups], ["seed_train"] * 2000)
    first = assign_splits(table, seed=7)["split"]
    assert first.equals(assign_splits(table, seed=7)["split"])
    assert not first.equals(assign_splits(table, seed=8)["split"])
    for split, share in (("test", 0.125), ("val", 0.15 * 0.875)):
        held = table[first == split]
        assert share - 0.01 <= len(held) / len(table) <= share + 0.02
        per_class = held["final_label"].value_counts()
        assert per_class.max() - per_class.min() <= 2


def test_held_out_splits_measure_every_class() -> None:
    """A rare class still gets 30 test pictures (at most a third of it), taken from every
    collection's held-out lesions; groups stay whole; seed Test counts towards it."""
    groups = list(range(1000))
    labels = [0 if g < 90 else 1 for g in groups]  # class 0: 90 single-picture lesions
    sources = ["seed_test" if g < 5 else ("ham10000" if g % 2 else "isic2017") for g in groups]
    table = _table(groups, labels, sources)
    split = assign_splits(table, seed=3)["split"]
    rare = table[(split == "test") & (table["final_label"] == CLASS_NAMES[0])]
    assert len(rare) == 30  # max(ceil(0.125 * 90), min(30, 90 // 3))
    assert set(rare["source"]) >= {"seed_test", "ham10000", "isic2017"}
    assert (split[table["source"] == "seed_test"] == "test").all()
    common = table[(split == "test") & (table["final_label"] == CLASS_NAMES[1])]
    assert len(common) == 114  # ceil(0.125 * 910)
    val_rare = table[(split == "val") & (table["final_label"] == CLASS_NAMES[0])]
    assert len(val_rare) == 20  # the validation floor, of the 60 left


def test_real_manifest_fingerprint_is_stable(synthetic_manifest: Manifest) -> None:
    assert len(synthetic_manifest.fingerprint()) == 64
    assert synthetic_manifest.fingerprint() == synthetic_manifest.fingerprint()


def test_leaving_a_collection_out_keeps_it_out_of_training_and_measures_its_unseen_pictures() -> None:
    import pandas as pd
    import pytest

    from skin_model.splits import HELD_OUT, leave_collection_out

    def rows(*sources: str) -> pd.DataFrame:
        return pd.DataFrame({"source": list(sources), "path": [f"{s}-{i}.jpg" for i, s in enumerate(sources)]})

    splits = {
        "train": rows("seed_train", "isic2017", "ham10000", "ham10000"),
        "val": rows("isic2017", "ham10000", "seed_train"),
        "test": rows("seed_test", "ham10000", "isic2017", "isic2017"),
    }
    out = leave_collection_out(splits, "isic2017")
    assert list(out["train"]["source"]) == ["seed_train", "ham10000", "ham10000"]
    assert list(out["val"]["source"]) == ["ham10000", "seed_train"]
    assert list(out["test"]["source"]) == ["seed_test", "ham10000"]
    # the unseen pictures: validation and test, never training (its lesions may sit in the other collections)
    assert list(out[HELD_OUT]["path"]) == ["isic2017-0.jpg", "isic2017-2.jpg", "isic2017-3.jpg"]
    seed_out = leave_collection_out(splits, "seed")
    assert set(seed_out[HELD_OUT]["source"]) == {"seed_train", "seed_test"} and len(seed_out[HELD_OUT]) == 2
    with pytest.raises(ValueError, match="no collection"):
        leave_collection_out(splits, "derm7pt")
