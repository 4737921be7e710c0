"""Deterministic, stratified, grouped train/val/test splits.

The unit of splitting is the lesion group (byte-identical copies, near duplicates,
the same ISIC id, and HAM10000 lesion_id joined together), so no picture or lesion
sits on two sides. The seed's Test folder, minus anything that also appears in
Train, is the test split; validation is carved out of everything else.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from .sources import SOURCE_SEED_TEST, SOURCE_SEED_TRAIN

SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"


def assign_splits(table: pd.DataFrame, seed: int = 1337, val_fraction: float = 0.2) -> pd.DataFrame:
    """Split and exclusion reason for every row of a manifest table.

    Needs columns ``source, group_id, final_label, excluded_reason``. Rows already
    excluded stay excluded; rows of a test lesion that are not seed Test images are
    excluded too, so the test split is exactly the clean seed Test folder.
    """
    split = pd.Series(EXCLUDED, index=table.index, dtype=object)
    reason = table["excluded_reason"].copy()
    usable = reason.isna()

    groups_with_train = set(table.loc[table["source"] == SOURCE_SEED_TRAIN, "group_id"])
    groups_with_test = set(table.loc[table["source"] == SOURCE_SEED_TEST, "group_id"])
    test_groups = groups_with_test - groups_with_train
    in_test_group = table["group_id"].isin(test_groups)

    split[usable & in_test_group & (table["source"] == SOURCE_SEED_TEST)] = "test"
    other_in_test = usable & in_test_group & (table["source"] != SOURCE_SEED_TEST)
    reason[other_in_test] = "same lesion as a test image (kept out of training)"

    trainval = table[usable & ~in_test_group]
    if len(trainval):
        n_splits = max(2, round(1 / val_fraction))
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        labels, groups = trainval["final_label"], trainval["group_id"]
        try:
            _, val_pos = next(folds.split(trainval, labels, groups))
        except ValueError:  # fewer groups than folds (tiny data sets): no validation split
            val_pos = []
        split[trainval.index] = "train"
        split[trainval.index[val_pos]] = "val"
    return pd.DataFrame({"split": split, "excluded_reason": reason})
