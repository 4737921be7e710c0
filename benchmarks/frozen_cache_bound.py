"""How much would caching the frozen blocks' outputs shorten a fine-tuning run?

    python benchmarks/frozen_cache_bound.py [--arch effnet_lite2] [--size 192]
        [--unfreeze-from block6_expand_conv] [--train 8789] [--val 1583] [--views 8]
        [--budget-min 75] [--warm-up-min 8] [--json PATH]

Fine-tuning from ``--unfreeze-from`` leaves the blocks below it frozen, yet every epoch
runs them again on freshly augmented pictures. Caching their output for ``--views``
augmented views of each picture would leave each epoch only the trainable top (forward
and backward) and a cheaper validation pass. This times, on this machine, with random
pictures (no data set needed) and batches of 32:

- the augmentation of one picture (the shipped recipe's capture changes and crops);
- one training step of the whole model, per picture (what an epoch costs now);
- the frozen bottom's forward pass, per picture (what building the cache costs per view);
- one training step of the trainable top on the bottom's output (what a cached epoch costs);
- the whole model's and the top's inference pass (validation after each epoch);

and prints how many epochs of ``--train`` pictures fit in ``--budget-min`` minutes either
way, after a head warm-up of ``--warm-up-min`` minutes. A matrix-product reference from
the same run says what kind of day the machine had.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin_model.artifact import default_model_dir, read_manifest, write_json  # noqa: E402
from skin_model.bench import machine_gflops  # noqa: E402
from skin_model.classes import CLASS_NAMES  # noqa: E402
from skin_model.finetune import freeze_for_finetuning  # noqa: E402
from skin_model.models import build_model  # noqa: E402
from skin_model.pipeline import make_dataset  # noqa: E402

BATCH = 32
AUGMENTATION_KEYS = ("zoom", "low_res", "camera", "jpeg", "light", "aspect", "field")


def shipped_augmentation() -> dict[str, float]:
    """The default model's capture changes and crops, as ``make_dataset`` takes them
    (read from its manifest, so the timing follows the recipe that ships)."""
    config = read_manifest(default_model_dir())["training_config"]
    return {key: float(config.get(key) or 0.0) for key in AUGMENTATION_KEYS}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="effnet_lite2")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--unfreeze-from", default="block6_expand_conv")
    parser.add_argument("--train", type=int, default=8789, help="training pictures per epoch")
    parser.add_argument("--val", type=int, default=1583, help="validation pictures scored after each epoch")
    parser.add_argument("--views", type=int, default=8, help="augmented views cached per training picture")
    parser.add_argument("--budget-min", type=float, default=75.0)
    parser.add_argument("--warm-up-min", type=float, default=8.0, help="the head warm-up before fine-tuning")
    parser.add_argument("--pictures", type=int, default=256, help="random pictures timed per measurement")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "frozen_cache_bound.json")
    return parser.parse_args()


def per_picture_ms(run, n: int, repeats: int = 3) -> float:
    """Median over ``repeats`` of ``run()``'s time, per picture, after one untimed call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) / n * 1000, 2)


def split_at(model, first_trainable: str):
    """(bottom, top): the frozen layers up to ``first_trainable``'s input, and the rest
    of ``model`` taking that tensor; they share the model's layers and weights."""
    import keras

    cut = model.get_layer(first_trainable).input
    return keras.Model(model.inputs, cut), keras.Model(cut, model.outputs)


def compiled(model):
    """``model`` compiled for timing its training step (the optimizer and loss of a run)."""
    import keras

    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="categorical_crossentropy")
    return model


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Per-picture milliseconds of each part of an epoch, with and without the cache."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.pictures, args.size, args.size, 3), dtype=np.uint8)
    y = np.eye(len(CLASS_NAMES), dtype=np.float32)[rng.integers(0, len(CLASS_NAMES), args.pictures)]
    model = build_model(args.arch, args.size)
    freeze_for_finetuning(model, args.unfreeze_from)
    bottom, top = split_at(model, args.unfreeze_from)
    xf = x.astype(np.float32)
    cached = bottom.predict(xf, batch_size=BATCH, verbose=0)
    augmented = make_dataset(x, y, BATCH, training=True, seed=0, **shipped_augmentation())
    compiled(model)
    compiled(top)
    n = args.pictures
    return {
        "augmentation": per_picture_ms(lambda: [None for _ in augmented], n),
        "whole_model_train_step": per_picture_ms(lambda: model.fit(xf, y, batch_size=BATCH, verbose=0), n),
        "bottom_forward": per_picture_ms(lambda: bottom.predict(xf, batch_size=BATCH, verbose=0), n),
        "top_train_step_on_cache": per_picture_ms(lambda: top.fit(cached, y, batch_size=BATCH, verbose=0), n),
        "whole_model_inference": per_picture_ms(lambda: model.predict(xf, batch_size=BATCH, verbose=0), n),
        "top_inference_on_cache": per_picture_ms(lambda: top.predict(cached, batch_size=BATCH, verbose=0), n),
        "cached_features_per_view_kb": round(cached[0].size * 2 / 1024, 1),  # stored as float16
    }


def epochs_in_budget(ms: dict[str, float], args: argparse.Namespace) -> dict[str, float]:
    """Minutes per epoch and the epochs that fit the budget, now and with the cache."""
    minute = 60_000.0
    now = args.train * (ms["augmentation"] + ms["whole_model_train_step"]) + args.val * ms["whole_model_inference"]
    cached = args.train * ms["top_train_step_on_cache"] + args.val * ms["top_inference_on_cache"]
    building = args.views * args.train * (ms["augmentation"] + ms["bottom_forward"]) + args.val * ms["bottom_forward"]
    left = args.budget_min - args.warm_up_min
    return {
        "epoch_min_now": round(now / minute, 2),
        "epoch_min_cached": round(cached / minute, 2),
        "cache_building_min": round(building / minute, 2),
        "epochs_in_budget_now": round(left / (now / minute), 1),
        "epochs_in_budget_cached": round((left - building / minute) / (cached / minute), 1),
        "cache_gb": round(args.views * args.train * ms["cached_features_per_view_kb"] / 1024**2, 2),
    }


def main() -> int:
    args = parse_args()
    reference_start = machine_gflops()
    ms = measure(args)
    figures = epochs_in_budget(ms, args)
    out = {
        "machine_gflops_start": reference_start,
        "setup": {k: v for k, v in vars(args).items() if k != "json"} | {"augmentation": shipped_augmentation()},
        "ms_per_picture": ms,
        **figures,
        "machine_gflops_end": machine_gflops(),
    }
    print(f"machine: {reference_start} GFLOP/s (matrix product) at start, {out['machine_gflops_end']} at end")
    for name, value in ms.items():
        print(f"  {name:32s} {value}")
    print(
        f"epoch of {args.train} pictures + {args.val} validation: {figures['epoch_min_now']} min now, "
        f"{figures['epoch_min_cached']} min on a cache of {args.views} views "
        f"({figures['cache_building_min']} min and {figures['cache_gb']} GB to build)"
    )
    print(
        f"epochs in {args.budget_min:g} min after a {args.warm_up_min:g}-min warm-up: "
        f"{figures['epochs_in_budget_now']} now, {figures['epochs_in_budget_cached']} with the cache"
    )
    write_json(args.json, out)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
