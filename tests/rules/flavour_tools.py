"""promtool and amtool of each lab flavour (tests/lab/config.py, docs/lab.md, "Lab flavours").

bookworm: the host's Debian 12 packages, Prometheus 2.42 and Alertmanager 0.25.
current:  the sid root filesystem's, Prometheus 3.5 and Alertmanager 0.33 (built and
          cached on first use, tests/lab/infra/rootfs.py; they run on the host as they are).
The two Prometheus versions read rules differently in places (range selectors are
left-open in 3.x; staleness of timestamped samples changed in 2.48), so every file is
checked by both. A missing tool fails, it never skips: a machine without the tools must
not pass by checking nothing.
"""
from __future__ import annotations

import functools
import shutil

import pytest

from tests.lab.infra import rootfs
from tests.lab.config import FLAVOURS, LabConfig

PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus",
            "amtool": "prometheus-alertmanager"}

__all__ = ["FLAVOURS", "tool"]


@functools.cache
def _current_root() -> None:
    rootfs.ensure(LabConfig(flavour="current", min_api=None))


def tool(flavour: str, name: str) -> str:
    """The path of `name` (promtool, prometheus or amtool) as the flavour ships it."""
    if flavour == "current":
        _current_root()
        return str(rootfs.binary(LabConfig(flavour="current", min_api=None), name))
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH; install it: apt-get install -y {PACKAGES[name]}")
    return path
