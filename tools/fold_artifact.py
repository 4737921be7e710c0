"""Rewrite a model folder saved before artifacts stored the folded inference model:
``model.keras`` becomes the model that ``load_artifact`` already served (batch norms
folded into their convolutions), and the manifest records the new checksum. The
folder's evaluation stays valid: it was computed on that same folded model.

    python tools/fold_artifact.py trained_models/effnet_lite2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from skin_model import artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    args = parser.parse_args()
    before = artifact.load_artifact(args.model_dir)  # verifies checksums, folds
    if "batch_norms_folded" in before.manifest:
        print(f"{args.model_dir} already stores its folded model")
        return
    import keras

    unfolded = keras.models.load_model(args.model_dir / artifact.MODEL_FILE, compile=False, safe_mode=True)
    path = args.model_dir / artifact.MODEL_FILE
    before.model.save(path)
    manifest = dict(before.manifest)
    manifest.pop("manifest_sha256", None)
    manifest["batch_norms_folded"] = artifact.count_batch_norms(unfolded) - artifact.count_batch_norms(before.model)
    manifest["weights_sha256"] = artifact.sha256_of(path)
    artifact.write_manifest(args.model_dir, manifest)
    after = artifact.load_artifact(args.model_dir)
    x = np.random.default_rng(0).uniform(0, 255, (4, before.input_size, before.input_size, 3)).astype("float32")
    gap = float(np.abs(after.model(x, training=False) - before.model(x, training=False)).max())
    print(f"{args.model_dir}: {manifest['batch_norms_folded']} batch norms folded; max output difference {gap:.1e}")


if __name__ == "__main__":
    main()
