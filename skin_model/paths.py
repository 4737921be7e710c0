"""Where the project's own files live (never where the data set lives: that comes
from ``--data`` or ``$SKIN_DATA_DIR``, see :mod:`skin_model.sources`)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = PROJECT_ROOT / "assets"
AUDIT_DIR = ASSETS_DIR / "audit"
TRAINED_MODELS_DIR = PROJECT_ROOT / "trained_models"
