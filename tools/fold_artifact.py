"""Rewrite model folders saved before artifacts stored the folded inference model
(see ``skin_model.artifact.store_folded``), and check that the rewritten folder
serves the same outputs as before.

    python tools/fold_artifact.py trained_models/effnet_lite2 [more folders...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from skin_model import artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", type=Path, nargs="+")
    args = parser.parse_args()
    for model_dir in args.model_dirs:
        before = artifact.load_artifact(model_dir)
        folded = artifact.store_folded(model_dir)
        after = artifact.load_artifact(model_dir)
        size = before.input_size
        x = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
        gap = float(np.abs(after.model(x, training=False) - before.model(x, training=False)).max())
        print(f"{model_dir}: {folded} batch norms folded now; largest output difference {gap:.1e}")


if __name__ == "__main__":
    main()
