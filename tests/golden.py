"""The golden store written by cottoncandy 0.4.0: now in :mod:`tests.helpers` (read on first use).

Kept for the modules that still import it from here.
"""

from __future__ import annotations

from .helpers import GOLDEN_DIR, MANIFEST

__all__ = ["GOLDEN_DIR", "MANIFEST"]
