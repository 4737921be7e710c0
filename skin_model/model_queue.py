"""One model worker per server: every session's model work goes through one queue, the
most urgent first.

Why: TensorFlow already spreads a single call over all the cores of a small server, so
ten sessions calling the model at the same moment gain nothing from running together;
their calls only interleave, and every session waits for all of them, answers and
checks alike. One worker running one job at a time, answers (a picture's verdict, its
heat map, the map's own check and the lesion outline) before the checks that follow
them on the page (the stability check) and before batch work, gives each clinician the
verdict after the verdicts queued before it, not after everyone's checks. A job's
result and exceptions are exactly those of calling it directly; only the order of
jobs changes.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

ANSWER = 0  # what a page shows first: the verdict, its map, the map's check, the outline
CHECK = 1  # what follows it on the page: the stability check, another map or target
BATCH = 2  # a batch of pictures (a folder, a labelled set): long, and nobody waits on one picture


class ModelQueue:
    """A priority queue with one worker thread; :meth:`run` blocks its caller until its
    job is done. Jobs of equal priority run in the order they came."""

    def __init__(self, name: str = "model-queue") -> None:
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    def run(self, priority: int, job: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``job(*args, **kwargs)`` on the worker, after the queued jobs of a lower (more
        urgent) or equal priority number; its result, or its exception raised here. A
        job that itself calls :meth:`run` runs that call in place (it already holds the
        worker)."""
        if threading.current_thread() is self._worker:
            return job(*args, **kwargs)
        future: Future = Future()
        self._jobs.put((priority, next(self._order), future, job, args, kwargs))
        return future.result()

    def waiting(self) -> int:
        """Jobs queued and not started (what a page can tell a clinician who waits)."""
        return self._jobs.qsize()

    def _work(self) -> None:
        while True:
            _, _, future, job, args, kwargs = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job(*args, **kwargs))
            except BaseException as exc:  # handed to the caller, whatever it is
                future.set_exception(exc)
