"""What the lab's Alertmanagers hold and how their webhooks fare, from their API and their
/metrics. The lab runs an HA pair (LabConfig.alertmanager_urls): they share alerts and
silences, and each counts its own notifications, so every reader asks both."""
from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from ..config import LabConfig


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
