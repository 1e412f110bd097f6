"""Small readers of the lab's monitoring APIs, shared by the integration tests."""
from __future__ import annotations

import requests

from tests.lab.config import LabConfig
from tests.lab.monitoring import prometheus_query

__all__ = ["prometheus_query", "prometheus_targets"]


def prometheus_targets(cfg: LabConfig) -> list[dict]:
    r = requests.get(f"{cfg.prometheus_url}/api/v1/targets", params={"state": "active"}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["activeTargets"]
