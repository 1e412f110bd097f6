"""What happened during a lab run, as one value: events, metric series and probe samples
on one wall clock. What it adds up to is in analysis.py; text.py and png.py show it.

Pure: nothing here talks to the lab. instruments/recorder.py fills a Timeline from the
live lab; the unit tests build them by hand. Every time is wall-clock unix seconds (time.time()), so
Prometheus sample times, Docker task timestamps, the receiver's events and the probe line
up; every timestamp the lab reads is RFC 3339 and goes through parse_time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import yaml

from swarmguard_config.rfc3339 import parse_time as _rfc3339
from ..config import PROJECT_ROOT

# Every event kind, with the word render_text shows for it.
KINDS: Mapping[str, str] = {
    "stress": "stress",  # the caller started load on a task
    "stress_stopped": "stress",  # the caller stopped it
    "alert_pending": "alert",  # Prometheus: condition true, the `for:` window running
    "alert_firing": "alert",  # Prometheus: held for `for:`, sent to Alertmanager
    "alert_resolved": "alert",  # Prometheus: the alert is gone (was pending or firing)
    "webhook": "webhook",  # the receiver got a notification from Alertmanager
    "action_started": "action",  # the receiver is updating the service
    "action_done": "action",  # the receiver saw its migration settle
    "action_failed": "action",  # rolled back, timed out, or Docker refused
    "skip": "skip",  # the receiver ignored an alert, and says why
    "task_running": "task",  # a task's container reached `running` (healthy, if checked)
    "task_shutdown": "task",  # Swarm took a task out of rotation (desired shutdown/remove)
    "task_failed": "task",  # a task failed or was rejected
    "note": "note",  # anything else worth a line
}

# Metric names of Series.
CPU, MEMORY, NETWORK = "cpu", "memory", "network"
REPLICAS = "replicas"  # running tasks, as Prometheus (cAdvisor) counts them
DESIRED_REPLICAS = "desired_replicas"  # the service spec's count, from Docker

# The thresholds are series: each a rule recording a constant, named with this prefix.
THRESHOLD_PREFIX = "swarmguard:threshold:"
# Where the product writes them, the one place.
THRESHOLDS_FILE = PROJECT_ROOT / "prometheus" / "rules" / "swarmguard-thresholds.yml"
_CONSTANT = re.compile(r"vector\(([0-9.]+)\)")


def shipped_thresholds(path: Path = THRESHOLDS_FILE) -> dict[str, float]:
    """{name: value} of every `swarmguard:threshold:<name>` record (`expr: vector(<value>)`)
    in the rules file."""
    rules = [rule for group in yaml.safe_load(path.read_text())["groups"]
             for rule in group["rules"]]
    return {rule["record"].removeprefix(THRESHOLD_PREFIX):
            float(_CONSTANT.fullmatch(rule["expr"].strip()).group(1))
            for rule in rules if rule.get("record", "").startswith(THRESHOLD_PREFIX)}


# As shipped; a recorder that reads the swarmguard:threshold:* series replaces them with
# what the lab really uses.
DEFAULT_THRESHOLDS: Mapping[str, float] = MappingProxyType(shipped_thresholds())

SHORT_ID = 12  # as `docker service ps` and the receiver's log print task ids


def parse_time(text: str) -> float:
    """RFC 3339 (Docker's and Prometheus's nanoseconds, the receiver's events' microseconds;
    `Z` or an offset, never a local time) -> unix seconds. The receiver's own parser of
    Alertmanager's startsAt, so the lab and the receiver read time the same way; raises
    swarmguard_config.rfc3339.NotATime (a ValueError) on anything else."""
    return _rfc3339(text, "time").timestamp()


@dataclass(frozen=True)
class Event:
    at: float  # wall clock, unix seconds
    kind: str  # one of KINDS
    text: str  # a sentence about what happened
    service: str | None = None
    task: str | None = None  # short task id, when the event is about one task
    node: str | None = None  # node hostname, likewise

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; one of {sorted(KINDS)}")


@dataclass(frozen=True)
class Series:
    metric: str  # CPU, MEMORY, NETWORK (per task) or REPLICAS, DESIRED_REPLICAS (per service)
    service: str
    task: str | None = None  # short task id; None for per-service series
    node: str | None = None  # hostname of the task's node
    points: tuple[tuple[float, float], ...] = ()  # (wall clock, value), in time order

    @property
    def label(self) -> str:
        if self.task is None:
            return self.service
        return f"{self.service} {self.task} on {self.node or '?'}"


@dataclass(frozen=True)
class ProbePoint:
    at: float  # wall clock when the request was sent
    ok: bool
    node: str | None  # the node that answered, when one did


@dataclass(frozen=True)
class Timeline:
    scenario: str
    t0: float  # wall clock that reads as +0.0 s; usually the stress start
    events: tuple[Event, ...] = ()
    series: tuple[Series, ...] = ()
    probes: tuple[ProbePoint, ...] = ()
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    poll_errors: Mapping[str, int] = field(default_factory=dict)  # source -> failed polls

    def offset(self, at: float) -> float:
        return at - self.t0

    def ordered_events(self) -> list[Event]:
        # sorted() is stable: events at the same instant keep the order they were added in.
        return sorted(self.events, key=lambda e: e.at)

    def series_of(self, metric: str) -> list[Series]:
        return [s for s in self.series if s.metric == metric]
