"""Pure readings for the recorder: Prometheus JSON, Docker task dicts and the receiver's
/metrics text in; samples and timeline Events out. (The receiver's structured events are
read in events.py.)

No I/O here, so every rule about what counts as an event is tested with fixtures
(tests/unit/test_recorder_parsing.py); recorder.py only fetches and calls these.
Times are wall-clock unix seconds throughout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from ..infra import service_spec
from ..reports.timeline import (CPU, MEMORY, NETWORK, REPLICAS, SHORT_ID, THRESHOLD_PREFIX,
                                Event, parse_time)

# Recording rules (prometheus/rules/) -> Series.metric: each task's, recorded by the
# detection Prometheus of its node; the service's replicas (every node's: the
# scale-down's N), by the central one.
TASK_RULE_METRICS: Mapping[str, str] = {
    "swarmguard:task_cpu:percent": CPU,
    "swarmguard:task_memory:percent": MEMORY,
    "swarmguard:task_network:percent": NETWORK,
}
SERVICE_RULE_METRICS: Mapping[str, str] = {"swarmguard:service_tasks:count": REPLICAS}
RULE_METRICS: Mapping[str, str] = {**TASK_RULE_METRICS, **SERVICE_RULE_METRICS}


def short(task_id: str | None) -> str | None:
    return task_id[:SHORT_ID] if task_id else None


# -- Prometheus --------------------------------------------------------------------------

def services_selector(services: Iterable[str]) -> str:
    """A PromQL regex matching exactly these service names."""
    return "|".join(re.escape(s) for s in services)


def rules_query(services: Iterable[str], metrics: Iterable[str] = RULE_METRICS) -> str:
    names = "|".join(re.escape(n) for n in metrics)
    return f'{{__name__=~"{names}",service=~"{services_selector(services)}"}}'


THRESHOLDS_QUERY = f'{{__name__=~"{re.escape(THRESHOLD_PREFIX)}.+"}}'


def instant_vector(body: Mapping) -> list[tuple[dict, float, float]]:
    """An /api/v1/query answer -> [(labels, sample time, value)]. Raises ValueError on an
    error answer, so the caller counts it as a failed poll."""
    if body.get("status") != "success":
        raise ValueError(f"Prometheus said {body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data.get("resultType") != "vector":
        raise ValueError(f"expected a vector, got {data.get('resultType')}")
    return [(r["metric"], float(r["value"][0]), float(r["value"][1])) for r in data["result"]]


@dataclass(frozen=True)
class SeriesKey:
    metric: str
    service: str
    task: str | None = None
    node: str | None = None


def rule_samples(vector: list[tuple[dict, float, float]], node_names: Mapping[str, str]
                 ) -> list[tuple[SeriesKey, float, float]]:
    """Recording-rule samples keyed by metric, service, short task id and node hostname.
    NaN (a rule dividing by a limit of 0) is dropped: a gap, not a zero."""
    out = []
    for labels, at, value in vector:
        metric = RULE_METRICS.get(labels.get("__name__", ""))
        if metric is None or "service" not in labels or value != value:
            continue
        node_id = labels.get("node_id")
        key = SeriesKey(metric, labels["service"], short(labels.get("task_id")),
                        node_names.get(node_id, short(node_id)) if node_id else None)
        out.append((key, at, value))
    return out


def thresholds(vector: list[tuple[dict, float, float]]) -> dict[str, float]:
    """swarmguard:threshold:cpu_percent 75 -> {"cpu_percent": 75.0}"""
    return {labels["__name__"].removeprefix(THRESHOLD_PREFIX): value
            for labels, _, value in vector
            if labels.get("__name__", "").startswith(THRESHOLD_PREFIX)}


@dataclass(frozen=True)
class ActiveAlert:
    name: str
    labels: tuple[tuple[str, str], ...]  # every label, sorted: the alert's identity
    state: str  # "pending" or "firing"
    active_at: float  # when the condition first held (start of the `for:` window)

    @property
    def service(self) -> str | None:
        return dict(self.labels).get("service")


def active_alerts(body: Mapping, services: Iterable[str]) -> dict[tuple, ActiveAlert]:
    """An /api/v1/alerts answer -> SwarmGuard alerts of these services, by identity.

    /api/v1/alerts, not the ALERTS series: same alerts and states, plus activeAt, which
    times pending exactly and firing as activeAt + `for:` instead of to the poll."""
    if body.get("status") != "success":
        raise ValueError(f"Prometheus said {body.get('errorType')}: {body.get('error')}")
    wanted = set(services)
    out = {}
    for a in body["data"]["alerts"]:
        labels = a["labels"]
        name = labels.get("alertname", "")
        if not name.startswith("SwarmGuard") or labels.get("service") not in wanted:
            continue
        identity = tuple(sorted(labels.items()))
        out[identity] = ActiveAlert(name, identity, a["state"], parse_time(a["activeAt"]))
    return out


def rule_durations(body: Mapping) -> dict[str, float]:
    """An /api/v1/rules answer -> {alert name: its `for:` in seconds}."""
    if body.get("status") != "success":
        raise ValueError(f"Prometheus said {body.get('errorType')}: {body.get('error')}")
    return {r["name"]: float(r.get("duration", 0.0)) for g in body["data"]["groups"]
            for r in g["rules"] if r.get("type") == "alerting"}


def describe_alert(alert: ActiveAlert, node_names: Mapping[str, str]) -> str:
    labels = dict(alert.labels)
    where = ""
    if labels.get("task_id"):
        node_id = labels.get("node_id")
        node = node_names.get(node_id, short(node_id)) if node_id else "?"
        where = f" (task {short(labels['task_id'])} on {node})"
    return f"for {labels.get('service')}{where}"


def alert_events(before: Mapping[tuple, ActiveAlert], after: Mapping[tuple, ActiveAlert],
                 now: float, durations: Mapping[str, float], node_names: Mapping[str, str]
                 ) -> list[Event]:
    """What changed between two polls of the active alerts, as events.

    Pending is timed at activeAt, firing at activeAt + `for:` (when Prometheus evaluated
    it firing; the poll only saw it later), never later than `now`. Resolved has no time in
    the API: it is timed to this poll. An alert that resolved and came back between two
    polls (a new activeAt) is reported as resolved, then new."""
    events: list[Event] = []

    def ev(kind: str, a: ActiveAlert, at: float, verb: str) -> Event:
        labels = dict(a.labels)
        return Event(at, kind, f"{a.name} {verb} {describe_alert(a, node_names)}", a.service,
                     task=short(labels.get("task_id")))

    for key, old in before.items():
        new = after.get(key)
        if new is None or new.active_at != old.active_at:
            was = "resolved" if old.state == "firing" else "no longer pending (never fired)"
            events.append(ev("alert_resolved", old, now, was))
    for key, a in after.items():
        old = before.get(key)
        if old is not None and old.active_at != a.active_at:
            old = None  # a new instance of the same alert
        if old is None:
            events.append(ev("alert_pending", a, min(a.active_at, now), "pending"))
        if a.state == "firing" and (old is None or old.state != "firing"):
            fired = a.active_at + durations[a.name] if a.name in durations else now
            events.append(ev("alert_firing", a, min(max(fired, a.active_at), now), "firing"))
    return events


# -- Docker ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskView:
    id: str  # short
    service: str
    node: str | None  # hostname; None until scheduled
    state: str  # Status.State
    desired: str  # DesiredState
    state_at: float  # Status.Timestamp: when it entered `state`
    updated_at: float  # UpdatedAt: last change of any kind (desired state included)
    message: str


OUT_OF_ROTATION = frozenset({"shutdown", "remove"})  # remove: swarmkit's scale-down
FAILED_STATES = frozenset({"failed", "rejected"})


def task_views(tasks: Iterable[Mapping], service: str, node_names: Mapping[str, str]
               ) -> dict[str, TaskView]:
    """The service's tasks as `service.tasks()` returns them -> TaskViews by short id."""
    out = {}
    for t in tasks:
        status = t.get("Status", {})
        node_id = t.get("NodeID")
        tid = short(t["ID"])
        out[tid] = TaskView(
            id=tid, service=service,
            node=node_names.get(node_id, short(node_id)) if node_id else None,
            state=status.get("State", ""), desired=t.get("DesiredState", ""),
            state_at=parse_time(status["Timestamp"]) if status.get("Timestamp") else 0.0,
            updated_at=parse_time(t["UpdatedAt"]) if t.get("UpdatedAt") else 0.0,
            message=status.get("Err") or status.get("Message") or "")
    return out


def task_events(before: Mapping[str, TaskView], after: Mapping[str, TaskView], now: float,
                *, with_service: bool = False) -> list[Event]:
    """Task changes between two polls, timed by Docker's own timestamps (not the poll).

    running: the task's state became running, at Status.Timestamp (swarmkit reports running
    only once a health check passes). shutdown: its desired state left running for
    shutdown or remove, which is when Swarm takes it out of rotation; timed at UpdatedAt,
    the task's last change (a status change right after it can make that a little late,
    never early). Tasks first seen in `after` count as changed from nothing."""
    events: list[Event] = []
    for tid, t in after.items():
        old = before.get(tid)
        who = f"{t.service}: task {tid}" if with_service else f"task {tid}"
        on = f" on {t.node}" if t.node else ""
        if t.state == "running" and (old is None or old.state != "running"):
            events.append(Event(min(t.state_at or now, now), "task_running",
                                f"{who} running{on}", t.service, task=tid, node=t.node))
        if t.state in FAILED_STATES and (old is None or old.state not in FAILED_STATES):
            events.append(Event(min(t.state_at or now, now), "task_failed",
                                f"{who} {t.state}{on}: {t.message}", t.service, task=tid, node=t.node))
        if t.desired in OUT_OF_ROTATION and old is not None and old.desired not in OUT_OF_ROTATION:
            at = min(t.updated_at or now, now)
            events.append(Event(max(at, old.updated_at), "task_shutdown",
                                f"{who}{on} shut down (desired state {t.desired})",
                                t.service, task=tid, node=t.node))
    return events


def node_names(nodes: Iterable[Mapping]) -> dict[str, str]:
    """Node attrs (`client.nodes.list()[i].attrs`) -> {node id: hostname}."""
    return {n["ID"]: n["Description"]["Hostname"] for n in nodes}


desired_replicas = service_spec.desired_replicas  # the recorder reads it from here with the rest


# -- the receiver ------------------------------------------------------------------------

def alerts_received(metrics_text: str) -> dict[tuple[str, str], float]:
    """The receiver's /metrics -> {(alertname, status): webhooks' alerts received}."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "swarmguard_alerts_received_total":
                key = (s.labels.get("alertname", ""), s.labels.get("status", ""))
                out[key] = out.get(key, 0.0) + s.value
    return out


def webhook_events(before: Mapping[tuple[str, str], float],
                   after: Mapping[tuple[str, str], float], now: float,
                   firing_services: Mapping[str, set[str]] | None = None) -> list[Event]:
    """New firing alerts counted by the receiver since the last poll, as webhook events
    timed to this poll. The counter has no service label: the service is named only when
    exactly one watched service has that alert firing. A counter lower than before means
    the receiver restarted: everything it has counted since is new."""
    events = []
    for (name, status), count in sorted(after.items()):
        if status != "firing":
            continue  # resolved ones come from the receiver's events, with their service
        previous = before.get((name, status), 0.0)
        new = count - previous if count >= previous else count
        if new <= 0:
            continue
        candidates = (firing_services or {}).get(name, set())
        service = next(iter(candidates)) if len(candidates) == 1 else None
        times = f"{int(new)} × " if new > 1 else ""
        events.append(Event(now, "webhook", f"receiver got {times}{name}"
                            + (f" for {service}" if service else ""), service))
    return events

