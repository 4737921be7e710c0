"""Multi-worker training: two processes on loopback ports train one model in lockstep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skin_model.distribute import cluster_workers
from skin_model.training import TrainConfig

from .streamlit_server import free_port


def test_cluster_size_comes_from_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_workers() == 1
    config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert cluster_workers() == 2
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        cluster_workers()


def _weights(model_dir: Path) -> list[np.ndarray]:
    from skin_model.artifact import load_artifact

    return load_artifact(model_dir).model.get_weights()


def test_two_workers_train_to_identical_weights(synthetic_data, tmp_path: Path) -> None:
    data_root, _ = synthetic_data
    ports = [free_port(), free_port()]
    workers = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "SKIN_CACHE_DIR": str(tmp_path / "cache"),
            "CUDA_VISIBLE_DEVICES": "-1",
        }
        command = [sys.executable, "-m", "skin_model", "train", "--arch", "tiny_cnn", "--epochs", "1"]
        command += ["--data", str(data_root), "--out", str(tmp_path / f"worker{index}"), "--quiet", "--patience", "3"]
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for worker in workers:  # every worker's output, so a failure shows the one that crashed first
        try:
            out, _ = worker.communicate(timeout=600)
        finally:
            worker.kill()
        outputs.append(out)
    report = "\n".join(
        f"--- worker {i} (exit {w.returncode}):\n{o[-2500:]}"
        for i, (w, o) in enumerate(zip(workers, outputs, strict=True))
    )
    assert all(worker.returncode == 0 for worker in workers), report
    assert all("synchronous training on 2 workers" in out for out in outputs)
    first, second = _weights(tmp_path / "worker0"), _weights(tmp_path / "worker1")
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    manifest = json.loads((tmp_path / "worker0" / "manifest.json").read_text())
    assert manifest["distribution"] == {"strategy": "MultiWorkerMirroredStrategy", "replicas": 2}
    # and they did train: the weights moved away from a fresh model's
    import keras

    from skin_model.models import build_model

    keras.utils.set_random_seed(TrainConfig(arch="tiny_cnn").seed)
    fresh = build_model("tiny_cnn", manifest["input_size"]).get_weights()
    assert any(not np.allclose(a, f) for a, f in zip(first, fresh, strict=True))
