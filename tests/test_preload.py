"""The app's model is loaded once per server, on a background thread from the server's
start, and handed to the first page that asks for it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from skin_model import preload


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Every load the preloader makes, by model folder (a stand-in for the real load)."""
    made: list[str | None] = []

    def fake_load(model_dir: str | None = None) -> dict:
        made.append(model_dir)
        return {"model": model_dir, "load": len(made)}

    monkeypatch.setattr(preload, "_loads", {})
    monkeypatch.setattr(preload, "load_app_bundle", fake_load)
    return made


def test_a_started_load_is_the_one_the_page_gets(loads: list[str | None]) -> None:
    first = preload.start()
    assert preload.start() is first  # the server's start and a page's call share one load
    assert preload.app_bundle() == {"model": None, "load": 1}
    assert loads == [None]


def test_the_bundle_is_handed_over_once(loads: list[str | None]) -> None:
    """The caller (the app's resource cache) keeps it; asking again loads again."""
    assert preload.app_bundle("a")["load"] == 1
    assert preload.app_bundle("a")["load"] == 2
    assert loads == ["a", "a"]


def test_the_load_runs_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    threads: list[str] = []

    def slow_load(model_dir: str | None = None) -> str:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return "bundle"

    monkeypatch.setattr(preload, "_loads", {})
    monkeypatch.setattr(preload, "load_app_bundle", slow_load)
    future = preload.start()
    assert not future.done()  # start() returned while the model still loads
    release.set()
    assert preload.app_bundle() == "bundle"
    assert threads == ["model-preload"]


def test_a_failed_load_raises_for_the_page_and_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def flaky_load(model_dir: str | None = None) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("model.keras is missing")
        return "bundle"

    monkeypatch.setattr(preload, "_loads", {})
    monkeypatch.setattr(preload, "load_app_bundle", flaky_load)
    preload.start()
    with pytest.raises(OSError, match=r"model\.keras is missing"):
        preload.app_bundle()
    assert preload.app_bundle() == "bundle"
    assert len(attempts) == 2


def test_the_servers_start_begins_loading_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from app_pages import server

    started: list[object] = []
    monkeypatch.setattr(preload, "start", lambda model_dir=None: started.append(model_dir))

    async def serve_and_stop() -> None:
        async with server.load_model_at_server_start(app=None):
            assert started == [None]  # loading has begun before the first request is served

    asyncio.run(serve_and_stop())
