"""Record a lab run as a Timeline: poll Prometheus, the swarm manager and the receiver in
a background thread, and let the caller add its own events, the probe and the receiver's
structured events.

    with Recorder(cfg, ["victim"]) as rec:
        probe_started = time.time()
        with Probe(cfg.entrypoint_url + "/health") as probe:
            rec.event("stress", "CPU stress started on victim", "victim", task=task_id)
            ...
        rec.add_probe(probe.stop(), probe_started)
    rec.add_receiver_events(receiver.events(), since_wall=rec.started_at)
    timeline = rec.timeline("Scenario 1: migrate")

What is read, every `interval` seconds:
  - Prometheus /api/v1/query: the per-task and per-service recording rules of the watched
    services, and the thresholds;
  - Prometheus /api/v1/alerts: SwarmGuard alerts of the watched services (pending, firing,
    resolved; see recorder_parsing.active_alerts for why not the ALERTS series);
  - Docker, on the manager: each watched service's tasks (running, shut down, failed) and
    its spec's replica count;
  - the receiver's /metrics: alerts received, i.e. webhooks (timed to the poll).
A failed poll is counted (`errors`) and the thread carries on: a recorder must never be
the reason a demo or benchmark stops.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Iterable, Mapping

import docker
import requests

from . import events as receiver_events, recorder_parsing as P
from ..config import LabConfig
from ..infra.nodes import client
from .probe import ProbeResult
from ..reports.timeline import DEFAULT_THRESHOLDS, DESIRED_REPLICAS, Event, ProbePoint, Series, Timeline


class Recorder:
    def __init__(self, cfg: LabConfig, services: list[str], interval: float = 0.5, *,
                 receiver_url: str | None = None, watch_receiver: bool = True):
        if not services:
            raise ValueError("a Recorder needs at least one service to watch")
        self.cfg, self.services, self.interval = cfg, list(services), interval
        # The receiver's /metrics; off where something else holds its port (WebhookSink).
        self.receiver_url = (receiver_url or f"http://127.0.0.1:{cfg.receiver_port}") if watch_receiver else None
        self.errors: Counter[str] = Counter()  # source -> failed polls
        self.last_error: dict[str, str] = {}  # source -> what went wrong last
        self.started_at: float | None = None

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()
        self._docker: docker.DockerClient | None = None

        self._events: list[Event] = []
        self._points: dict[P.SeriesKey, list[tuple[float, float]]] = {}
        self._thresholds: dict[str, float] = dict(DEFAULT_THRESHOLDS)
        self._probes: list[ProbePoint] = []
        self._node_names: dict[str, str] = {}
        self._durations: dict[str, float] = {}
        # Alerts already active at the start are reported: their times come from
        # Prometheus, not from the poll, so they are as true as later ones. Tasks and the
        # receiver's counters are timed or counted by the poll: their first reading is a
        # baseline, not a burst of changes (a service's tasks: absent from _tasks until
        # read once; the counters: None until read once).
        self._alerts: dict = {}
        self._tasks: dict[str, dict[str, P.TaskView]] = {}
        self._received: dict | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Recorder":
        self.started_at = time.time()
        # One poll before returning: the baseline is taken before the caller changes anything.
        self._poll_once()
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._poll_once()  # the state at the end, so the last changes are not lost

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll_once()

    # -- what callers add --------------------------------------------------------------------

    def event(self, kind: str, text: str, service: str | None = None, *, task: str | None = None,
              node: str | None = None, at: float | None = None) -> Event:
        """Add an event the lab cannot see by itself (stress start, a manual step), now or
        at a time the caller measured."""
        e = Event(time.time() if at is None else at, kind, text, service, P.short(task), node)
        with self._lock:
            self._events.append(e)
        return e

    def add_probe(self, result: ProbeResult, probe_t0_wall: float) -> None:
        """The probe's samples, on the wall clock. A Sample's `at` counts from the probe's
        start on the monotonic clock, so pass time.time() read just before Probe.start()."""
        with self._lock:
            self._probes.extend(ProbePoint(probe_t0_wall + s.at, s.ok, s.node) for s in result.samples)

    def add_receiver_events(self, events: Iterable[Mapping], since_wall: float) -> int:
        """Actions, skips and resolved notifications from the receiver's structured events
        (ReceiverProcess.events()), from `since_wall` on. Events already added are not
        added twice. Returns how many were added."""
        with self._lock:
            node_names = dict(self._node_names)
        found = receiver_events.timeline_events(events, since_wall, self.services, node_names)
        with self._lock:
            known = set(self._events)
            new = [e for e in found if e not in known]
            self._events.extend(new)
        return len(new)

    # -- what callers read -------------------------------------------------------------------

    def running_tasks(self, service: str) -> list[tuple[str, str | None]]:
        """(short task id, node) of the service's running tasks at the last poll; handy
        for the text of a stress event."""
        with self._lock:
            views = self._tasks.get(service, {}).values()
            return [(t.id, t.node) for t in views if t.state == "running" and t.desired == "running"]

    def timeline(self, scenario: str = "", t0: float | None = None) -> Timeline:
        """What was recorded so far. t0 defaults to the first stress event (else the
        recorder's start), so offsets read as 'seconds after the stress started'."""
        with self._lock:
            events = tuple(self._events)
            series = tuple(Series(k.metric, k.service, k.task, k.node, tuple(sorted(v)))
                           for k, v in self._points.items())
            probes = tuple(sorted(self._probes, key=lambda p: p.at))
            thresholds = dict(self._thresholds)
        if t0 is None:
            stresses = [e.at for e in events if e.kind == "stress"]
            t0 = min(stresses) if stresses else (self.started_at or time.time())
        return Timeline(scenario, t0, events, series, probes, thresholds, dict(self.errors))

    # -- polling -----------------------------------------------------------------------------

    def _poll_once(self) -> None:
        for source, poll in (("docker", self._poll_docker), ("prometheus", self._poll_rules),
                             ("alerts", self._poll_alerts), ("receiver", self._poll_receiver)):
            if source == "receiver" and self.receiver_url is None:
                continue
            try:
                poll()
            except Exception as exc:  # noqa: BLE001 - any failure is one failed poll, no more
                self.errors[source] += 1
                self.last_error[source] = f"{type(exc).__name__}: {exc}"

    def _get_json(self, path: str, url: str | None = None, **params) -> dict:
        r = self._http.get(f"{url or self.cfg.prometheus_url}{path}", params=params, timeout=5)
        # Prometheus answers a bad query with 400 and a JSON error: let the parser say why.
        if r.status_code >= 500:
            r.raise_for_status()
        return r.json()

    def _get_merged(self, path: str, key: str, urls, **params) -> dict:
        """One answer made of every Prometheus's `data[key]` lists: the lab runs a
        detection Prometheus per node beside the central one, and each fires (and records
        fresh) only its own part."""
        merged: list = []
        for url in urls:
            answer = self._get_json(path, url, **params)
            if answer.get("status") != "success":
                return answer  # let the parser say why
            data = answer["data"]
            merged += data[key] if key else data["result"]
        return ({"status": "success", "data": {key: merged}} if key else
                {"status": "success", "data": {"resultType": "vector", "result": merged}})

    def _detection_urls(self) -> list[str]:
        return [self.cfg.node_prometheus_url(n) for n in self.cfg.nodes]

    def _poll_rules(self) -> None:
        # Each task's percentages where they are recorded (the central copy is a
        # federation, up to 2 s late).
        tasks = self._get_merged("/api/v1/query", "", self._detection_urls(),
                                 query=P.rules_query(self.services, P.TASK_RULE_METRICS))
        service = self._get_json("/api/v1/query",
                                 query=P.rules_query(self.services, P.SERVICE_RULE_METRICS))
        samples = (P.rule_samples(P.instant_vector(tasks), self._node_names)
                   + P.rule_samples(P.instant_vector(service), self._node_names))
        found = P.thresholds(P.instant_vector(self._get_json("/api/v1/query", query=P.THRESHOLDS_QUERY)))
        with self._lock:
            for key, at, value in samples:
                self._points.setdefault(key, []).append((at, value))
            self._thresholds.update(found)

    def _poll_alerts(self) -> None:
        now = time.time()
        current = P.active_alerts(self._get_merged("/api/v1/alerts", "alerts", self.cfg.prometheus_urls),
                                  self.services)
        newly_firing = any(a.state == "firing" and (k not in self._alerts or self._alerts[k].state != "firing")
                           for k, a in current.items())
        if newly_firing:
            # Read when needed, not once: a test may reload the rules with other windows.
            try:
                self._durations = P.rule_durations(self._get_merged(
                    "/api/v1/rules", "groups", self.cfg.prometheus_urls, type="alert"))
            except Exception as exc:  # noqa: BLE001 - then firing is timed to the poll
                self.errors["rules"] += 1
                self.last_error["rules"] = f"{type(exc).__name__}: {exc}"
        events = P.alert_events(self._alerts, current, now, self._durations, self._node_names)
        with self._lock:
            self._events.extend(events)
        self._alerts = current

    def _poll_docker(self) -> None:
        if self._docker is None:
            self._docker = client(self.cfg, self.cfg.manager, timeout=10)
        if not self._node_names:
            self._node_names = P.node_names(n.attrs for n in self._docker.nodes.list())
        now = time.time()
        for name in self.services:
            try:
                service = self._docker.services.get(name)
            except docker.errors.NotFound:
                views, replicas = {}, None  # not deployed yet, or removed: no tasks
            else:
                views = P.task_views(service.tasks(), name, self._node_names)
                replicas = P.desired_replicas(service.attrs)
            with self._lock:
                if name in self._tasks:
                    self._events.extend(P.task_events(self._tasks[name], views, now,
                                                      with_service=len(self.services) > 1))
                self._tasks[name] = views
                if replicas is not None:
                    self._points.setdefault(P.SeriesKey(DESIRED_REPLICAS, name), []).append((now, float(replicas)))

    def _poll_receiver(self) -> None:
        now = time.time()
        try:
            r = self._http.get(f"{self.receiver_url}/metrics", timeout=2)
            r.raise_for_status()
        except requests.RequestException:
            if self._received is None:
                self._received = {}  # down at the start: everything it counts later is new
            raise
        current = P.alerts_received(r.text)
        if self._received is not None:
            firing: dict[str, set[str]] = {}
            for a in self._alerts.values():
                if a.state == "firing" and a.service:
                    firing.setdefault(a.name, set()).add(a.service)
            events = P.webhook_events(self._received, current, now, firing)
            with self._lock:
                self._events.extend(events)
        self._received = current

