"""Print the shipped models' headline metrics against the project's accuracy targets.

    python benchmarks/accuracy_targets.py

Reads each model's evaluation.json (no data set needed). Targets: the model issue
(balanced accuracy >= 0.75, macro AUC >= 0.93, malignant AUC >= 0.90, and better than
seed_cnn) and the pretrained-backbone issue (balanced accuracy >= 0.85, macro AUC >= 0.96,
malignant AUC >= 0.93, melanoma sensitivity >= 0.90 at 80% specificity).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.artifact import list_model_dirs, read_evaluation

TARGETS = {
    "balanced_accuracy": (0.75, 0.85),
    "macro_auc": (0.93, 0.96),
    "malignant_auc": (0.90, 0.93),
    "melanoma_sens_at_80_spec": (None, 0.90),
}


def headline(evaluation: dict, split: str) -> dict[str, float | None]:
    ev = evaluation[split]
    return {
        "balanced_accuracy": ev["balanced_accuracy"],
        "macro_auc": ev["macro_auc"],
        "malignant_auc": ev["malignant"]["roc_auc"],
        "melanoma_sens_at_80_spec": ev["per_class"]["melanoma"]["sensitivity_at_80_specificity"],
        "n_images": ev["n_images"],
    }


def main() -> int:
    rows = []
    for path in list_model_dirs():
        evaluation = read_evaluation(path)
        for split in ("val", "test"):
            if evaluation and split in evaluation:
                rows.append({"model": path.name, "split": split, **headline(evaluation, split)})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print()
    for split in ("val", "test"):
        part = table[table["split"] == split].set_index("model")
        base = part.loc["seed_cnn"] if "seed_cnn" in part.index else None
        for model, row in part.iterrows():
            if model == "seed_cnn":
                continue
            checks = []
            for metric, (basic, strong) in TARGETS.items():
                value = row[metric]
                for level, target in (("model issue", basic), ("pretrained issue", strong)):
                    if target is not None and value is not None:
                        checks.append(f"{metric} {value:.3f} {'>=' if value >= target else '<'} {target} ({level})")
                if base is not None and value is not None and base[metric] is not None:
                    checks.append(
                        f"{metric} {'beats' if value > base[metric] else 'does NOT beat'} seed_cnn ({base[metric]:.3f})"
                    )
            print(f"[{split}] {model}:\n  " + "\n  ".join(checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
