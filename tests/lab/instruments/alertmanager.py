"""What the lab's Alertmanagers hold and how their webhooks fare, from their API and their
/metrics. The lab runs an HA pair (LabConfig.alertmanager_urls): they share alerts and
silences, and each counts its own notifications, so every reader asks both."""
from __future__ import annotations

import secrets
import string
import subprocess
from contextlib import contextmanager
from typing import Iterator

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import webhooks

from ..config import LabConfig

# A label only the marker alerts carry (`silence_service`, `marker`).
MARKER_LABEL = "lab_marker"


def alerts(cfg: LabConfig, alertname: str, service: str) -> list[dict]:
    """The alerts with these labels that the Alertmanagers hold (silenced and inhibited
    ones too), as their API v2 gives them: each with its `status` (state, silencedBy,
    inhibitedBy)."""
    held = []
    for url in cfg.alertmanager_urls:
        r = requests.get(f"{url}/api/v2/alerts", timeout=5,
                         params={"filter": [f'alertname="{alertname}"', f'service="{service}"']})
        r.raise_for_status()
        held += r.json()
    return held


def silenced_by(cfg: LabConfig, alertname: str, service: str, silence: str) -> bool:
    """The Alertmanagers hold such an alert, and every copy is silenced by `silence` (an ID)."""
    held = alerts(cfg, alertname, service)
    return bool(held) and all(silence in a["status"]["silencedBy"] for a in held)


def webhook_failures(cfg: LabConfig) -> float:
    """Webhook notifications the Alertmanagers gave up on, every receiver together."""
    total = 0.0
    for url in cfg.alertmanager_urls:
        text = requests.get(f"{url}/metrics", timeout=5).text
        total += sum(sample.value for family in text_string_to_metric_families(text)
                     for sample in family.samples
                     if sample.name == "alertmanager_notifications_failed_total"
                     and sample.labels.get("integration") == "webhook")
    return total


def _amtool(cfg: LabConfig, *args: str) -> str:
    return subprocess.run(["amtool", f"--alertmanager.url={cfg.alertmanager_url}", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def silence_service(cfg: LabConfig, service: str) -> Iterator[str]:
    """A silence of every alert about `service`, as an operator adds one with amtool, for
    as long as the block runs; yields its ID. Marker alerts (`marker`) are let through, so
    a test can see that a delivery of the service's group would have come."""
    silence = _amtool(cfg, "silence", "add", f"service={service}", f"{MARKER_LABEL}!=yes",
                      "--duration=10m", "--author=lab-tests", "--comment=maintenance")
    try:
        yield silence
    finally:
        _amtool(cfg, "silence", "expire", silence)


@contextmanager
def marker(cfg: LabConfig, labels: dict) -> Iterator[str]:
    """Posts an alert with `labels` and a task ID of its own, in the same Alertmanager group
    as the real alerts with those labels; yields that task ID, and resolves the alert after
    the block so that nothing is left firing for the next test.

    A silence that should hold back a group can only be judged against a delivery of that
    group: once the marker is delivered, Alertmanager has flushed the group, and a silenced
    alert that were not held back would have been delivered with it."""
    task_id = "labmarker" + "".join(secrets.choice(string.ascii_lowercase + string.digits)
                                    for _ in range(16))  # a well-formed Swarm ID
    alert = webhooks.posted_alert({**labels, "task_id": task_id, MARKER_LABEL: "yes"},
                                  annotations={"summary": "marker posted by the lab tests"})
    requests.post(f"{cfg.alertmanager_url}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()
    try:
        yield task_id
    finally:
        requests.post(f"{cfg.alertmanager_url}/api/v2/alerts", json=[webhooks.resolved(alert)],
                      timeout=10)
