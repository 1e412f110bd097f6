"""The bundle's Prometheus and Alertmanager files, checked by the tools that will load them.

`promtool` (Debian package `prometheus`) and `amtool` (`prometheus-alertmanager`) must be
on PATH: a missing tool fails these tests, it never skips them, so a CI machine without
the tools cannot pass by checking nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def run(tool: str, *args: str | Path) -> None:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not on PATH; install it: apt-get install -y {PACKAGES[tool]}")
    command = [path, *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed with status {result.returncode}:\n"
        f"{result.stdout}{result.stderr}"
    )


def files(pattern: str) -> list[Path]:
    found = sorted(ROOT.glob(pattern))
    assert found, f"no file matches {pattern}"
    return found


def test_promtool_accepts_the_bundle_prometheus_config():
    run("promtool", "check", "config", "prometheus/prometheus.yml")


def test_promtool_accepts_every_rule_file():
    run("promtool", "check", "rules", *files("prometheus/rules/*.yml"))


def test_every_promtool_rule_test_passes():
    run("promtool", "test", "rules", *files("prometheus/tests/*.yml"))


def test_amtool_accepts_the_alertmanager_config():
    run("amtool", "check-config", "alertmanager/alertmanager.yml")
