"""``python -m skin_model``."""

import sys

from .cli import main

sys.exit(main())
