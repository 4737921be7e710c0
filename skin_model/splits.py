"""Deterministic, stratified, grouped train/val/test splits.

The unit of splitting is the lesion group (byte-identical copies, near duplicates,
the same ISIC id, and HAM10000 lesion_id joined together, across collections), so no
picture or lesion sits on two sides. The test split holds the seed's Test folder minus
anything that also appears in Train, plus held-out lesion groups of every collection,
enough to measure every class; validation is carved out of the rest the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .sources import SOURCE_SEED_TEST, SOURCE_SEED_TRAIN

SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"
VAL_FRACTION = 0.15
TEST_FRACTION = 0.125
# the test split takes at least this many pictures of a class (never more than a
# third of the class), so per-class recall has an interval worth reading; validation,
# which only picks, takes fewer of the rarest classes and leaves them to training
MIN_PER_CLASS = 30
VAL_MIN_PER_CLASS = 20


def held_out_groups(
    pool: pd.DataFrame, fraction: float, seed: int, already: pd.Series | None = None, min_per_class: int = MIN_PER_CLASS
) -> set[str]:
    """Whole lesion groups of ``pool`` (columns ``group_id, final_label``) taken per class
    in a seeded random order until the class holds ``fraction`` of its pictures, or
    ``min_per_class`` of them where that is more (at most a third of the class).
    ``already``: per class, pictures the split holds before this draw (seed Test)."""
    rng = np.random.default_rng(seed)
    already = already if already is not None else pd.Series(dtype=int)
    chosen: set[str] = set()
    for label, members in pool.groupby("final_label", sort=True):
        before = int(already.get(label, 0))
        total = len(members) + before
        target = max(math.ceil(fraction * total), min(min_per_class, total // 3)) - before
        if target <= 0:
            continue
        sizes = members.groupby("group_id", sort=True).size()
        order = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        taken = np.cumsum(sizes.loc[order].to_numpy())
        chosen.update(order[: int(np.searchsorted(taken, target)) + 1].tolist())
    return chosen


def assign_splits(
    table: pd.DataFrame,
    seed: int = 1337,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    min_per_class: int = MIN_PER_CLASS,
    val_min_per_class: int = VAL_MIN_PER_CLASS,
) -> pd.DataFrame:
    """Split and exclusion reason for every row of a manifest table.

    Needs columns ``source, group_id, final_label, excluded_reason``. Rows already
    excluded stay excluded. A lesion group with a seed Test picture and no seed Train
    picture goes to test whole (all its collections' pictures); then held-out groups of
    every collection fill test to ``test_fraction`` of each class, and validation takes
    ``val_fraction`` of what is left.
    """
    split = pd.Series(EXCLUDED, index=table.index, dtype=object)
    reason = table["excluded_reason"].copy()
    usable = reason.isna()
    rows = table[usable]

    groups_with_train = set(rows.loc[rows["source"] == SOURCE_SEED_TRAIN, "group_id"])
    seed_test = set(rows.loc[rows["source"] == SOURCE_SEED_TEST, "group_id"]) - groups_with_train
    in_seed_test = rows["group_id"].isin(seed_test)
    test_groups = seed_test | held_out_groups(
        rows[~in_seed_test], test_fraction, seed, rows[in_seed_test]["final_label"].value_counts(), min_per_class
    )
    in_test = rows["group_id"].isin(test_groups)
    val_groups = held_out_groups(rows[~in_test], val_fraction, seed + 1, None, val_min_per_class)
    split[rows.index] = "train"
    split[rows.index[rows["group_id"].isin(val_groups)]] = "val"
    split[rows.index[in_test]] = "test"
    return pd.DataFrame({"split": split, "excluded_reason": reason})


HELD_OUT = "held_out"  # the split name of a left-out collection's unseen pictures


def leave_collection_out(splits: dict[str, pd.DataFrame], collection: str) -> dict[str, pd.DataFrame]:
    """The splits of a run that never sees ``collection``: its pictures leave train,
    validation and test, and its validation and test pictures become ``held_out``,
    which is what a clinic with that collection's camera would send. Its training
    pictures are not measured: their lesion groups may have pictures in the other
    collections' training split (the groups join collections), so they are not unseen."""
    from .sources import collections_of

    if collection not in {c for rows in splits.values() for c in collections_of(rows)}:
        raise ValueError(f"no collection {collection!r} in the data")
    keep = {name: rows[collections_of(rows) != collection] for name, rows in splits.items()}
    held = pd.concat([rows[collections_of(rows) == collection] for name, rows in splits.items() if name != "train"])
    return keep | {HELD_OUT: held}


def training_subset(rows: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """About ``fraction`` of each class's training pictures, taken as whole groups (a
    lesion's or a duplicate's pictures stay together), in a seeded random order; the rows
    keep their order. A class keeps at least one group."""
    if fraction >= 1:
        return rows
    if not 0 < fraction < 1:
        raise ValueError(f"the training fraction must lie in (0, 1], not {fraction}")
    rng = np.random.default_rng(seed)
    keep: list[str] = []
    for _, members in rows.groupby("final_label", sort=True):
        sizes = members.groupby("group_id", sort=True).size()
        order = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        taken = np.cumsum(sizes.loc[order].to_numpy())
        keep += order[: max(1, int(np.searchsorted(taken, fraction * len(members))) + 1)].tolist()
    return rows[rows["group_id"].isin(keep)]
