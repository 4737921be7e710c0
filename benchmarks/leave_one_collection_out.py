"""How would the training recipe do on a clinic it has never seen? Leave one collection out.

    python benchmarks/leave_one_collection_out.py [--data DIR] [--views 2] [--json results/loco.json]

The collections here (the Kaggle seed set, ISIC 2017, HAM10000) were photographed,
cropped and saved differently. For each collection in turn, a softmax head is trained on
the frozen ImageNet EfficientNet-Lite2 features of the *other* collections' training
pictures (augmented views, as the shipped model's warm-up sees them), selected on the
other collections' validation pictures, and measured on the held-out collection's
validation and test pictures, which neither it nor anything it was selected on has
seen. Beside it, the same head trained on every collection ("seen") shows what leaving
the collection out costs. Two recipes are compared: flips and crops only ("plain"), and
with the capture changes of the shipped model ("capture": camera changes with JPEG
quality 30-95 and 50-100 % resolution on 80 % of views, crops stretched by up to a
third). This measures the backbone's features under each recipe, not the fine-tuned
model (whose fine-tuning saw every collection). Needs the data set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.classes import MALIGNANT_MASK
from skin_model.evaluation import _malignant_auc, bootstrap_intervals
from skin_model.manifest import build_manifest
from skin_model.models import build_model
from skin_model.pipeline import load_arrays, make_dataset
from skin_model.sources import collections_of, resolve_data_dir
from skin_model.train_config import TrainConfig, training_loss, training_sample_weights
from skin_model.warmup import _features, fit_head, nevus_recall

RECIPES = {
    "plain": {"zoom": 0.15},
    "capture": {"zoom": 0.15, "camera": 0.8, "aspect": 0.33},
}


def cached_features(model, x: np.ndarray, key: str, cache: Path, views: int, augmentation: dict | None, seed: int):
    """GAP features of ``views`` augmented views (or one clean view); cached on disk."""
    path = cache / f"loco-{key}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["f"], data["i"]
    feats, index = [], []
    for view in range(views):
        if augmentation is None:
            ds = make_dataset(x, np.arange(len(x)), 64)
        else:
            ds = make_dataset(x, np.arange(len(x)), 64, training=True, seed=seed + view, **augmentation)
        f, i = _features(model, "gap", ds, True, f"{key} view {view + 1}/{views}")
        feats.append(f)
        index.append(i)
    f, i = np.concatenate(feats), np.concatenate(index).astype(int)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, f=f, i=i)
    return f, i


def measure(y: np.ndarray, probs: np.ndarray) -> dict:
    """Balanced accuracy (over the classes present), accuracy, nevus recall and
    malignant AUC, with 95 % bootstrap intervals where they exist."""
    predicted = probs.argmax(1)
    ci = bootstrap_intervals(y, probs, n=500)
    y_mal = MALIGNANT_MASK[y]
    return {
        "pictures": len(y),
        "balanced_accuracy": round(float(np.mean([(predicted[y == k] == k).mean() for k in np.unique(y)])), 4),
        "balanced_accuracy_95ci": ci["balanced_accuracy"],
        "accuracy": round(float((predicted == y).mean()), 4),
        "nevus_recall": nevus_recall(y, predicted),
        "malignant_auc": round(_malignant_auc(y, probs), 4) if 0 < y_mal.sum() < len(y) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--power", type=float, default=0.5, help="class-weight power of the heads")
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "skin_model")
    parser.add_argument("--json", type=Path, default=Path("results") / "leave_one_collection_out.json")
    args = parser.parse_args()
    started = time.perf_counter()
    manifest = build_manifest(resolve_data_dir(args.data), progress=False)
    rows = {s: manifest.kept(s) for s in ("train", "val", "test")}
    arrays = {s: load_arrays(r, args.size, args.cache) for s, r in rows.items()}
    collections = {s: collections_of(r) for s, r in rows.items()}
    model = build_model("effnet_lite2", args.size)
    digest = hashlib.sha256("".join(rows["train"]["sha256"]).encode()).hexdigest()[:12]
    held_x = np.concatenate([arrays["val"][0], arrays["test"][0]])
    held_y = np.concatenate([arrays["val"][1], arrays["test"][1]])
    held_c = np.concatenate([collections["val"], collections["test"]])
    is_val = np.r_[np.ones(len(arrays["val"][1]), bool), np.zeros(len(arrays["test"][1]), bool)]
    f_held, _ = cached_features(model, held_x, f"held-{args.size}-{digest}", args.cache, 1, None, 0)
    config = TrainConfig(arch="effnet_lite2", class_weight_power=args.power)
    y_train, c_train = arrays["train"][1], collections["train"]
    report = {"settings": vars(args) | {"cache": None, "json": str(args.json)}, "recipes": {}}
    for recipe, augmentation in RECIPES.items():
        key = f"train-{recipe}-{args.size}-{args.views}-{digest}"
        f_train, index = cached_features(model, arrays["train"][0], key, args.cache, args.views, augmentation, 1337)
        results = {}
        for left_out in sorted(set(held_c)):
            out = {}
            for mode in ("left out", "seen"):
                keep = np.ones(len(y_train), bool) if mode == "seen" else c_train != left_out
                use = keep[index]
                sel = is_val & (held_c != left_out)
                weights = training_sample_weights(config, y_train[keep], c_train[keep])
                weight_of = np.zeros(len(y_train))
                weight_of[keep] = weights
                _, w, _ = fit_head(
                    f_train[use],
                    y_train[index[use]],
                    weight_of[index[use]].astype(np.float32),
                    f_held[sel],
                    held_y[sel],
                    training_loss(config, y_train[keep]),
                    args.head_epochs,
                    None,
                    0,
                )
                logits = f_held[held_c == left_out] @ w[0] + w[1]
                probs = np.exp(logits - logits.max(1, keepdims=True))
                probs /= probs.sum(1, keepdims=True)
                out[mode] = measure(held_y[held_c == left_out], probs)
            results[left_out] = out
            print(
                f"{recipe:8s} {left_out:10s} "
                + "  ".join(
                    f"{mode}: bal.acc {m['balanced_accuracy']:.3f} {m['balanced_accuracy_95ci']}, "
                    f"acc {m['accuracy']:.3f}, "
                    f"nevus {m['nevus_recall'] or 0:.3f}, mal.AUC {m['malignant_auc']}"
                    for mode, m in out.items()
                ),
                flush=True,
            )
        report["recipes"][recipe] = results
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=float))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
