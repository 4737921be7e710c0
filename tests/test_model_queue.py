"""The server's model queue: answers before checks, arrival order within a priority,
results and exceptions as from a direct call, nested calls without deadlock."""

from __future__ import annotations

import threading
import time

import pytest

from skin_model.model_queue import ANSWER, BATCH, CHECK, ModelQueue


def _wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_queued_answers_run_before_queued_checks_and_in_arrival_order() -> None:
    queue = ModelQueue()
    release = threading.Event()
    started = threading.Event()
    order: list[str] = []

    def blocker() -> None:
        started.set()
        release.wait(5)

    callers = [threading.Thread(target=queue.run, args=(ANSWER, blocker))]
    callers[0].start()
    assert started.wait(5)
    # while the worker is busy: a batch, a check, then two answers arrive, in that order
    for priority, label in ((BATCH, "batch"), (CHECK, "check"), (ANSWER, "answer 1"), (ANSWER, "answer 2")):
        caller = threading.Thread(target=queue.run, args=(priority, order.append, label))
        caller.start()
        callers.append(caller)
        queued = len(callers) - 1
        _wait_until(lambda queued=queued: queue.waiting() == queued)
    release.set()
    for caller in callers:
        caller.join(5)
    assert order == ["answer 1", "answer 2", "check", "batch"]
    assert queue.waiting() == 0


def test_a_job_returns_its_result_and_raises_its_exception_in_the_caller() -> None:
    queue = ModelQueue()
    assert queue.run(CHECK, lambda a, b=0: a + b, 2, b=3) == 5

    def broken() -> None:
        raise ValueError("not a picture")

    with pytest.raises(ValueError, match="not a picture"):
        queue.run(ANSWER, broken)
    assert queue.run(ANSWER, lambda: "still serving") == "still serving"  # the worker survived


def test_a_job_that_queues_another_runs_it_in_place() -> None:
    queue = ModelQueue()
    workers: list[str] = []

    def outer() -> int:
        workers.append(threading.current_thread().name)
        return queue.run(BATCH, lambda: workers.append(threading.current_thread().name) or 7)

    assert queue.run(ANSWER, outer) == 7
    assert workers == ["model-queue", "model-queue"]  # one worker did both, no deadlock


def test_jobs_from_many_threads_all_complete_one_at_a_time() -> None:
    queue = ModelQueue()
    running, most = [0], [0]
    lock = threading.Lock()

    def job(k: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        return k * k

    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, queue.run(k % 3, job, k))) for k in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {k: k * k for k in range(30)}
    assert most[0] == 1
