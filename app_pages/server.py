"""What the app's server does once, at start-up, before any browser connects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from skin_model import preload


@asynccontextmanager
async def load_model_at_server_start(app: Any) -> AsyncIterator[None]:
    """The server's lifespan: start loading the default model on a background thread
    (the server answers its first pages meanwhile); nothing to undo at shutdown, the
    loading thread is a daemon."""
    from app_pages.common import keep_tensorflow_state_between_reruns

    keep_tensorflow_state_between_reruns()
    preload.start()
    yield
