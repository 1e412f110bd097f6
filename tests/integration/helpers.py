"""Small readers of the lab's monitoring APIs, shared by the integration tests."""
from __future__ import annotations

import requests

from tests.lab.config import LabConfig


def prometheus_query(cfg: LabConfig, query: str) -> list[dict]:
    r = requests.get(f"{cfg.prometheus_url}/api/v1/query", params={"query": query}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def prometheus_targets(cfg: LabConfig) -> list[dict]:
    r = requests.get(f"{cfg.prometheus_url}/api/v1/targets", params={"state": "active"}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["activeTargets"]
