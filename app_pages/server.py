"""What the app's server does once, at start-up, before any browser connects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from skin_model import preload


@asynccontextmanager
async def load_model_at_server_start(app: Any) -> AsyncIterator[None]:
    """The server's lifespan: start loading the default model on a background thread
    and return at once, so the server answers its first pages meanwhile (nothing else
    is imported here: every import before the thread starts delays the model). Nothing
    to undo at shutdown; the loading thread is a daemon."""
    preload.start()
    yield
