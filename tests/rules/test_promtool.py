"""The bundle's Prometheus and Alertmanager files, checked by the tools that will load
them, as each lab flavour ships them (flavour_tools.py): promtool 2.42 and 3.5, amtool
0.25 and 0.33. A missing tool fails these tests, it never skips them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.rules.flavour_tools import tool

ROOT = Path(__file__).resolve().parents[2]


def run(flavour: str, name: str, *args: str | Path) -> None:
    command = [tool(flavour, name), *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed with status {result.returncode}:\n"
        f"{result.stdout}{result.stderr}"
    )


def files(pattern: str) -> list[Path]:
    found = sorted(ROOT.glob(pattern))
    assert found, f"no file matches {pattern}"
    return found


def test_promtool_accepts_the_bundle_prometheus_config(flavour):
    run(flavour, "promtool", "check", "config", "prometheus/prometheus.yml")


def test_promtool_accepts_every_rule_file(flavour):
    run(flavour, "promtool", "check", "rules", *files("prometheus/rules/*.yml"))


def test_every_promtool_rule_test_passes(flavour):
    run(flavour, "promtool", "test", "rules", *files("prometheus/tests/*.yml"))


def test_amtool_accepts_the_alertmanager_config(flavour):
    run(flavour, "amtool", "check-config", "alertmanager/alertmanager.yml")
