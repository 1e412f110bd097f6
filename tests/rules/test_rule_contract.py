"""The public contract of the rule and routing files (docs/contract.md), beyond what the tools
check: the alert names, labels and annotations users write dashboards and silences
against, and the recorded series, read from the contract and held to the rule files both
ways; thresholds written once; and an Alertmanager file the lab can re-target."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from receiver.kinds import KINDS
from tests.rules.flavour_tools import tool

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
# The detection and scale-down rule files (the thresholds' file among them); health is below.
RULES = [ROOT / "prometheus" / "rules" / name for name in
         ("swarmguard-thresholds.yml", "swarmguard.yml", "swarmguard-scale-down.yml")]
ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"



def contract_alerts() -> dict[str, list[str]]:
    """Each alert of docs/contract.md's tables in "Alerts" (a row `| `Name` | cell | ... |`)
    -> its cells after the name."""
    section = CONTRACT.split("\n## Alerts", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(SwarmGuard\w+)` \| (.*) \|$", section, flags=re.M)
    return {name: [cell.strip() for cell in rest.split(" | ")] for name, rest in rows}


def contract_static_labels(name: str) -> dict[str, str]:
    """The labels the contract gives a value: `label="value"`."""
    return dict(re.findall(r'`(\w+)="(\w+)"`', contract_alerts()[name][0]))


# The action alerts, by their scenario label; exact labels and annotations of each alert
# are checked by promtool (prometheus/tests).
SCENARIOS = {name: contract_static_labels(name)["scenario"]
             for name in contract_alerts() if "scenario" in contract_static_labels(name)}
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


def test_the_alerts_of_the_contract_are_the_rule_files_alerts():
    in_rules = set(alerts()) | {rule["alert"] for rule in health_rules()}
    documented = set(contract_alerts())
    assert in_rules == documented, (
        f"alerts in the rule files but not in docs/contract.md: {sorted(in_rules - documented)}; "
        f"in docs/contract.md but not in the rule files: {sorted(documented - in_rules)}")


def test_the_action_alerts_scenarios_are_the_receivers_kinds():
    assert SCENARIOS == {kind.alert: kind.name for kind in KINDS}


def test_every_label_a_rule_sets_is_named_in_the_contract():
    for rule in [*alerts().values(), *health_rules()]:
        labels_cell = contract_alerts()[rule["alert"]][0]
        for label in rule.get("labels", {}):
            assert re.search(rf"`{label}\b", labels_cell), (
                f"{rule['alert']} sets the label {label}, which docs/contract.md does not name")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_alert_has_its_scenario_a_severity_and_the_annotations(name):
    rule = alerts()[name]
    scenario = SCENARIOS[name]

    assert rule["labels"]["scenario"] == scenario, (
        f"{name}'s scenario is {rule['labels']['scenario']} in the rules, {scenario} in "
        f"docs/contract.md")
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


def health_rules() -> list[dict]:
    [group] = yaml.safe_load(HEALTH_RULES.read_text())["groups"]
    return [rule for rule in group["rules"] if "alert" in rule]


def contract_health_reasons() -> dict[str, set[str | None]]:
    """The reasons column of the contract's health alerts; "none": no `reason` label (its
    `problem` label comes from the receiver's metric)."""
    found = {}
    for name, cells in contract_alerts().items():
        if len(cells) == 2 and "scenario" not in contract_static_labels(name):
            reasons = cells[1]
            found[name] = {None} if reasons.startswith("none") else set(
                re.findall(r"`(\w+)`", reasons))
    return found


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
    documented = contract_health_reasons()
    assert found == documented, (f"the health alerts' reasons: in the rule files {found}; "
                                 f"in docs/contract.md {documented}")


def contract_series() -> set[str]:
    """Every recorded series docs/contract.md names: `swarmguard:...`, a `(a|b)` standing
    for each of its words, a trailing `*` kept as a pattern."""
    names = set()
    for written in re.findall(r"`(swarmguard:[a-z_:*()|]+)", CONTRACT):
        match = re.search(r"\(([a-z_|]+)\)", written)
        words = match.group(1).split("|") if match else [None]
        names |= {written.replace(match.group(0), word) if match else written for word in words}
    return names


def test_every_recording_rule_is_in_the_contract_and_every_series_there_is_recorded():
    recorded = {rule["record"] for path in [*RULES, HEALTH_RULES]
                for group in yaml.safe_load(path.read_text())["groups"]
                for rule in group["rules"] if "record" in rule}
    documented = contract_series()
    patterns = [name[:-1] for name in documented if name.endswith("*")]
    unnamed = sorted(r for r in recorded
                     if r not in documented and not any(r.startswith(p) for p in patterns))
    unrecorded = sorted(d for d in documented if not d.endswith("*") and d not in recorded)
    assert not unnamed and not unrecorded, (
        f"recording rules docs/contract.md does not name: {unnamed or 'none'}; series it "
        f"names that no rule records: {unrecorded or 'none'}")
