"""The one way the lab asks a Prometheus something over its HTTP API.

Every reader (the scenarios, the health check, the lab tests, the benchmarks) comes
here, so a query is sent, timed out and checked for an error answer the same way.
`api` takes a base URL because the bundle's tests also ask the stack's own Prometheus,
not only the lab's (LabConfig.prometheus_url). The lab runs the bundle's split layout: a
detection Prometheus per node, and the central one that federates them (docs/contract.md,
"Rule files and layouts"); `query` asks the central one."""
from __future__ import annotations

import requests

from ..config import LabConfig


def api(base_url: str, path: str, *, timeout: float = 10, session: requests.Session | None = None,
        auth: tuple[str, str] | None = None, **params) -> dict:
    """GET base_url + path; the answer's `data`. Raises on an HTTP error or an error answer
    (Prometheus answers a bad query with 400 and a JSON body that says why). `auth`: the
    user and password basic auth sends (the stack's Prometheus asks for them; the lab's
    own does not)."""
    r = (session or requests).get(f"{base_url}{path}", params=params, timeout=timeout, auth=auth)
    try:
        body = r.json()
    except ValueError:
        r.raise_for_status()
        raise
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {path} {params}: {body}")
    return body["data"]


def query(cfg: LabConfig, promql: str, at: float | None = None) -> list[dict]:
    """An instant query against the lab's Prometheus (now, or at unix time `at`); its
    result vector."""
    params = {"query": promql} if at is None else {"query": promql, "time": at}
    return api(cfg.prometheus_url, "/api/v1/query", **params)["result"]


def query_detection(cfg: LabConfig, promql: str) -> list[dict]:
    """An instant query against every node's detection Prometheus, their results
    together: what detection sees now, without the central Prometheus's federation
    (every 2 s) in between. For timing detection's own stages; anything else reads the
    central Prometheus (`query`), which holds the whole cluster's view."""
    return [row for node in cfg.nodes
            for row in api(cfg.node_prometheus_url(node), "/api/v1/query", query=promql)["result"]]


def query_range(cfg: LabConfig, promql: str, start: float, end: float, step: str = "5s") -> list[dict]:
    """A range query against the lab's Prometheus; its result matrix."""
    return api(cfg.prometheus_url, "/api/v1/query_range", timeout=30, query=promql,
               start=start, end=end, step=step)["result"]


def targets(cfg: LabConfig) -> list[dict]:
    """The lab's Prometheus's active scrape targets."""
    return api(cfg.prometheus_url, "/api/v1/targets", state="active")["activeTargets"]


def alerts(cfg: LabConfig, service: str, alertname: str | None = None, state: str | None = None) -> list[dict]:
    """SwarmGuard's ALERTS series of a service (optionally one alert, one state)."""
    matchers = [f'service="{service}"']
    if alertname:
        matchers.append(f'alertname="{alertname}"')
    if state:
        matchers.append(f'alertstate="{state}"')
    return query(cfg, "ALERTS{" + ",".join(matchers) + "}")


def firing(cfg: LabConfig, alertname: str, service: str) -> bool:
    return bool(alerts(cfg, service, alertname, "firing"))
