"""The public contract of the rule and routing files (docs/contract.md), beyond what the tools
check: the alert names, labels and annotations users write dashboards and silences
against, thresholds written once, and an Alertmanager file the lab can re-target."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.rules.flavour_tools import tool

ROOT = Path(__file__).resolve().parents[2]
# The detection and scale-down rule files (the thresholds' file among them); health is below.
RULES = [ROOT / "prometheus" / "rules" / name for name in
         ("swarmguard-thresholds.yml", "swarmguard.yml", "swarmguard-scale-down.yml")]
ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"

# Exact labels and annotations of each alert are checked by promtool (prometheus/tests).
SCENARIOS = {
    "SwarmGuardMigrate": "migrate",
    "SwarmGuardScaleUp": "scale_up",
    "SwarmGuardScaleDown": "scale_down",
}
THRESHOLDS = {
    "swarmguard:threshold:cpu_percent": "vector(75)",
    "swarmguard:threshold:memory_percent": "vector(80)",
    "swarmguard:threshold:network_low_percent": "vector(35)",
    "swarmguard:threshold:network_high_percent": "vector(65)",
    "swarmguard:threshold:startup_grace_seconds": "vector(20)",
}


def rule_groups() -> list[dict]:
    return [group for path in RULES for group in yaml.safe_load(path.read_text())["groups"]]


def alerts() -> dict[str, dict]:
    return {
        rule["alert"]: rule
        for group in rule_groups()
        for rule in group["rules"]
        if "alert" in rule
    }


def amtool(flavour: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool(flavour, "amtool"), *args], capture_output=True, text=True, timeout=60)


def test_the_three_alerts_of_the_contract_are_defined():
    assert set(SCENARIOS) <= set(alerts())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_alert_has_its_scenario_a_severity_and_the_annotations(name):
    rule = alerts()[name]
    scenario = SCENARIOS[name]

    assert rule["labels"]["scenario"] == scenario
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
    assert "{{" not in rule["annotations"]["summary"], "summary is fixed; description varies"


def test_thresholds_are_written_once_in_their_own_group():
    groups = {group["name"]: group for group in rule_groups()}
    constants = {rule["record"]: rule["expr"] for rule in groups["swarmguard-thresholds"]["rules"]}
    assert constants == THRESHOLDS
    others = [
        rule["expr"]
        for name, group in groups.items()
        if name != "swarmguard-thresholds"
        for rule in group["rules"]
    ]
    for expr in others:
        assert not re.search(r"\b(75|80|35|65|20)\b", expr), f"a threshold is written out in:\n{expr}"


def test_every_rule_group_sets_its_own_interval_and_detection_is_the_fastest():
    # The lab reuses these files under its own prometheus.yml: the groups must not depend
    # on whatever global evaluation_interval that file sets.
    intervals = {group["name"]: group.get("interval") for group in rule_groups()}
    assert intervals.pop("swarmguard-detection") == "500ms"
    assert set(intervals.values()) == {"1s"}


def test_swarmguard_alerts_go_to_the_receiver_and_others_to_the_default(flavour):
    routed = amtool(
        flavour,
        "config", "routes", "test", f"--config.file={ALERTMANAGER}",
        "alertname=SwarmGuardMigrate", "service=demo_web",
    )
    assert routed.stdout.split() == ["swarmguard"], routed.stdout + routed.stderr
    other = amtool(
        flavour,
        "config", "routes", "test", f"--config.file={ALERTMANAGER}", "alertname=NodeDown"
    )
    assert other.stdout.split() == ["default"], other.stdout + other.stderr


def test_the_lab_can_retarget_the_webhook_with_a_yaml_load_and_dump(flavour, tmp_path):
    config = yaml.safe_load(ALERTMANAGER.read_text())
    [receiver] = [r for r in config["receivers"] if r["name"] == "swarmguard"]
    [webhook] = receiver["webhook_configs"]
    assert webhook["url"].endswith("/alerts")
    assert webhook["send_resolved"] is True
    authorization = webhook["http_config"]["authorization"]
    assert authorization["credentials_file"] == "/run/secrets/swarmguard_token"

    webhook["url"] = "http://127.0.0.1:18000/alerts"
    authorization["credentials_file"] = str(tmp_path / "token")
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(yaml.safe_dump(config))

    checked = amtool(flavour, "check-config", str(copy))
    assert checked.returncode == 0, checked.stdout + checked.stderr


HEALTH_RULES = ROOT / "prometheus" / "rules" / "swarmguard-health.yml"
# The reasons docs/contract.md and docs/runbook.md promise.
HEALTH_REASONS = {
    "SwarmGuardBlind": {"target_down", "docker_unreachable", "tasks_unseen", "cadvisor_down",
                        "cadvisor_blind", "detection_prometheus_down", "opt_in_unknown"},
    "SwarmGuardCannotAct": {"receiver_down", "webhook_failing", "docker_unreachable",
                            "actions_failing", "prometheus_unreachable"},
    "SwarmGuardMoveFutile": {"futile"},
    # No reason: its `problem` label comes from the receiver's metric.
    "SwarmGuardUnsafeToMove": {None},
}


def test_the_health_alerts_have_their_reasons_a_severity_and_the_annotations():
    [group] = yaml.safe_load(HEALTH_RULES.read_text())["groups"]
    assert group["interval"] == "1s"
    found: dict[str, set[str]] = {}
    for rule in (r for r in group["rules"] if "alert" in r):
        found.setdefault(rule["alert"], set()).add(rule["labels"].get("reason"))
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert "{{" not in rule["annotations"]["summary"]
        assert "scenario" not in rule["labels"], "health alerts are for people, not a scenario"
    assert found == HEALTH_REASONS
