"""A training run's resumable state: what ``train --resume`` picks up after the
process was stopped (cached warm-up features, the chosen head, the fine-tuning epochs
done, the best weights so far and the per-epoch history).

It lives in ``<model folder>/checkpoint/`` until the artifact is written, and a resumed
run must have exactly the configuration of the run it continues.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINT_DIR = "checkpoint"
CONFIG_FILE = "config.json"
ELAPSED_FILE = "elapsed.json"
# settings a resumed run may change: it may be given more epochs, or more patience,
# than the interrupted one had (the schedule then stretches from where it stood)
EXTENSIBLE = frozenset({"epochs", "patience"})


class ConfigMismatchError(ValueError):
    """``--resume`` with another configuration than the interrupted run's."""


class TrainingCheckpoint:
    """Files of one interrupted or running training run."""

    def __init__(self, out_dir: Path, config: dict[str, Any], resume: bool) -> None:
        self.dir = Path(out_dir) / CHECKPOINT_DIR
        stored = self.read_json(CONFIG_FILE) if resume else None
        if resume and stored is not None:
            config_now = json.loads(json.dumps(config))
            changed = sorted(k for k in set(stored) | set(config_now) if stored.get(k) != config_now.get(k))
            fixed = [k for k in changed if k not in EXTENSIBLE]
            if fixed:
                raise ConfigMismatchError(
                    f"cannot resume: the interrupted run in {self.dir} had other settings ({', '.join(fixed)}); "
                    f"only {' and '.join(sorted(EXTENSIBLE))} may change"
                )
            self.extended = {k: (stored.get(k), config_now.get(k)) for k in changed}
        self.extended: dict[str, tuple[Any, Any]] = getattr(self, "extended", {})
        self.resumed = stored is not None
        if not self.resumed:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_json(CONFIG_FILE, config)
        saved = self.read_json(ELAPSED_FILE) if self.resumed else None
        self.elapsed_before = float(saved["seconds"]) if saved else 0.0
        self._clock_started: float | None = None

    def start_clock(self) -> None:
        """Training time counts from now in this process, on top of what the processes
        before it had saved (see :meth:`save_elapsed`)."""
        self._clock_started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training so far, over every process of the run: the ones before
        this one up to their last saved step, and this one since :meth:`start_clock`.
        Work a stopped process lost after its last saved step is done again, and counted
        then."""
        since = 0.0 if self._clock_started is None else time.perf_counter() - self._clock_started
        return self.elapsed_before + since

    def save_elapsed(self) -> None:
        """Record the training time so far with a completed step (the warm-up, an epoch)."""
        self.write_json(ELAPSED_FILE, {"seconds": self.elapsed()})

    @property
    def fit_dir(self) -> Path:
        """Where Keras's ``BackupAndRestore`` keeps the fine-tuning's model and optimizer."""
        return self.dir / "fit"

    def _atomic(self, name: str, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, self.dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_json(self, name: str, data: Any) -> None:
        self._atomic(name, lambda f: f.write(json.dumps(data, indent=1, default=float).encode()))

    def read_json(self, name: str) -> Any | None:
        path = self.dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        self._atomic(name, lambda f: np.savez(f, **arrays))

    def read_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.dir / name
        if not path.is_file():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def write_weights(self, name: str, weights: list[np.ndarray]) -> None:
        self.write_arrays(name, {f"w{i:04d}": w for i, w in enumerate(weights)})

    def read_weights(self, name: str) -> list[np.ndarray] | None:
        arrays = self.read_arrays(name)
        return None if arrays is None else [arrays[k] for k in sorted(arrays)]

    def finish(self) -> None:
        """The artifact is written: the run's state is no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)
