"""Where the lab's runs leave what they produce (timelines, PNGs, JSON): the demo, the
lab tests and the benchmarks all write here, so one variable moves them all."""
from __future__ import annotations

import os
from pathlib import Path

from .config import PROJECT_ROOT

ARTIFACTS = Path(os.environ.get("SWARMGUARD_ARTIFACTS", PROJECT_ROOT / "artifacts"))
