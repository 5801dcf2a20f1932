"""Location and manifest of the golden store written by cottoncandy 0.4.0 (``shared/golden``)."""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden" / "cottoncandy-0.4.0"
if not (GOLDEN_DIR / "MANIFEST.json").is_file():
    raise RuntimeError(f"golden store missing: {GOLDEN_DIR} (the shared/ directory must sit beside the repository)")
MANIFEST: dict = json.loads((GOLDEN_DIR / "MANIFEST.json").read_text())
