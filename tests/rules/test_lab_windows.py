"""The lab's shortened scale-down window (tests/lab/infra/monitoring.py): the demo, the
end-to-end tests and the benchmark run the shipped rules with only the window's literals
changed. These catch a rules change the lab does not follow, which would otherwise show
as a scale-down that never comes in a slow lab run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.lab.infra.monitoring import (SCALE_DOWN_GROUPS, scale_down_literals, shipped_rule_files,
                                        shorten_scale_down)
from tests.rules.flavour_tools import tool


def shipped() -> dict[str, dict]:
    return shipped_rule_files()


def test_the_shortened_window_leaves_no_shipped_window_literal_in_its_groups():
    shortened = shorten_scale_down(shipped(), 20, 10)
    text = yaml.safe_dump([g for rules in shortened.values() for g in rules["groups"]
                           if g["name"] in SCALE_DOWN_GROUPS])
    for literal, short in scale_down_literals(20, 10).items():
        assert literal not in text
        assert short in text


def test_only_the_scale_down_groups_change():
    before, after = shipped(), shorten_scale_down(shipped(), 20, 10)
    for name in before:
        for old, new in zip(before[name]["groups"], after[name]["groups"]):
            assert (old == new) == (old["name"] not in SCALE_DOWN_GROUPS), old["name"]


def test_a_rules_change_the_lab_does_not_follow_fails_at_once():
    rules = shipped()
    [group] = [g for g in rules["swarmguard-scale-down.yml"]["groups"]
               if g["name"] == "swarmguard-scale-down"]
    [alert] = [r for r in group["rules"] if r.get("alert") == "SwarmGuardScaleDown"]
    alert["expr"] = alert["expr"].replace("offset 180s", "offset 3m")
    with pytest.raises(ValueError, match="offset 180s"):
        shorten_scale_down(rules, 20, 10)


def test_promtool_accepts_the_shortened_rules(flavour, tmp_path):
    paths = []
    for name, rules in shorten_scale_down(shipped(), 20, 10).items():
        paths.append(tmp_path / name)
        paths[-1].write_text(yaml.safe_dump(rules, sort_keys=False))
    result = subprocess.run([tool(flavour, "promtool"), "check", "rules", *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
