"""Detection-health alerts in alertmanager/alertmanager.yml: routed to people, never to the
receiver, and a blind service is never scaled down (inhibition), checked by a real
Alertmanager (Debian package prometheus-alertmanager) started on loopback, no lab."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import requests
import yaml

from tests import webhooks
from tests.rules.test_rule_contract import ALERTMANAGER, amtool


def route(flavour: str, *labels: str) -> list[str]:
    routed = amtool(flavour, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert routed.returncode == 0, routed.stderr
    return routed.stdout.split()


@pytest.mark.parametrize("labels", [
    ["alertname=SwarmGuardBlind", "reason=target_down", "node=worker-1"],
    ["alertname=SwarmGuardBlind", "reason=tasks_unseen", "node=worker-1", "service=web"],
    ["alertname=SwarmGuardCannotAct", "reason=webhook_failing"],
    ["alertname=SwarmGuardCannotAct", "reason=actions_failing", "kind=migrate"],
    ["alertname=SwarmGuardMoveFutile", "reason=futile", "service=web"],
    ["alertname=SwarmGuardUnsafeToMove", "service=web", "problem=no_healthcheck"],
])
def test_health_alerts_go_to_people_never_to_the_receiver(flavour, labels):
    assert route(flavour, *labels) == ["people"]


def test_the_people_receiver_has_no_webhook():
    # webhook_failing counts every webhook of Alertmanager, and the lab points every
    # webhook at its receiver.
    config = yaml.safe_load(ALERTMANAGER.read_text())
    [people] = [r for r in config["receivers"] if r["name"] == "people"]
    assert "webhook_configs" not in people


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path):
    # The host's (bookworm flavour's) Alertmanager: the current flavour's needs sid's
    # libc, so the lab runs it from its root filesystem; inhibition rules are read the
    # same by both (0.25 and 0.33), and amtool of both checks the file above.
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("Alertmanager is not on PATH; install it: apt-get install -y prometheus-alertmanager")
    config = yaml.safe_load(ALERTMANAGER.read_text())
    token = tmp_path / "token"
    token.write_text("t")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []) or []:
            hook["url"] = "http://127.0.0.1:9/alerts"  # nothing listens: deliveries fail
            hook["http_config"]["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    port = _free_port()
    proc = subprocess.Popen([binary, f"--config.file={path}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "Alertmanager did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _alert(**labels: str) -> dict:
    return webhooks.posted_alert(labels, annotations={})


def _inhibited(url: str) -> dict[tuple[str, str], bool]:
    alerts = requests.get(f"{url}/api/v2/alerts", timeout=5).json()
    return {(a["labels"]["alertname"], a["labels"].get("service", a["labels"].get("node", ""))):
            bool(a["status"]["inhibitedBy"]) for a in alerts}


def test_a_service_with_unseen_tasks_is_not_scaled_down_and_others_are(alertmanager):
    requests.post(f"{alertmanager}/api/v2/alerts", timeout=5, json=[
        # web has a task on a blind node; api's tasks are all seen.
        _alert(alertname="SwarmGuardBlind", reason="target_down", node="worker-1", severity="critical"),
        _alert(alertname="SwarmGuardBlind", reason="tasks_unseen", node="worker-1", node_id="n1",
               service="web", severity="critical"),
        _alert(alertname="SwarmGuardScaleDown", service="web", scenario="scale_down", severity="info"),
        _alert(alertname="SwarmGuardScaleDown", service="api", scenario="scale_down", severity="info"),
    ]).raise_for_status()

    assert _inhibited(alertmanager) == {
        ("SwarmGuardBlind", "worker-1"): False,
        ("SwarmGuardBlind", "web"): False,
        ("SwarmGuardScaleDown", "web"): True,
        ("SwarmGuardScaleDown", "api"): False,
    }
