"""The app's model, loaded once per server process, in the background from the moment
the server starts.

Streamlit runs a page's script only when a browser connects, so a model loaded by the
page is read, verified and traced while the first user waits for an answer. The
server's start-up hook calls :func:`start` instead, which loads the model on a thread of
its own while the server goes on to serve its first pages; the page then takes the
bundle from :func:`app_bundle`, waiting only for what is left of the load. Without a
start-up hook (Streamlit's test runner, a page asking for another model) the first
:func:`app_bundle` call starts the load itself, so there is one way in either way.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bundle imports TensorFlow, which the loading thread imports, not the server's start
    from .bundle import ModelBundle

_lock = threading.Lock()
_loads: dict[str | None, Future] = {}


def load_app_bundle(model_dir: str | None = None) -> ModelBundle:
    """The bundle as the app uses it: with the explainer, the lesion outline and every
    pass the pages run traced in advance, so no upload pays for tracing."""
    from .bundle import load_bundle

    return load_bundle(model_dir, explain=True, warm_up=True, segment=True)


def _key(model_dir: str | Path | None) -> str | None:
    return None if model_dir is None else str(model_dir)


def _load_into(future: Future, model_dir: str | None) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(load_app_bundle(model_dir))
    except BaseException as exc:  # handed to whoever waits for the bundle
        future.set_exception(exc)


def start(model_dir: str | Path | None = None) -> Future:
    """Start loading ``model_dir`` (None: the default model) on a background thread,
    unless a load of it has started already; the load's future either way."""
    key = _key(model_dir)
    with _lock:
        future = _loads.get(key)
        if future is None:
            future = Future()
            _loads[key] = future
            # a daemon thread, not a ThreadPoolExecutor, whose workers the interpreter joins at
            # exit: a server stopped while the model loads would wait for the load to finish
            thread = threading.Thread(target=_load_into, args=(future, key), name="model-preload", daemon=True)
            thread.start()
        return future


def app_bundle(model_dir: str | Path | None = None) -> ModelBundle:
    """The app's bundle of ``model_dir``: the one the server started loading, waited
    for, or loaded now. It is handed over once (the caller keeps it: the app's resource
    cache), so a later call loads the folder again, and a failed load raises its error
    here and the next call tries again."""
    future = start(model_dir)
    try:
        return future.result()
    finally:
        with _lock:
            if _loads.get(_key(model_dir)) is future:
                del _loads[_key(model_dir)]
