"""The swarm's ground truth for detection health: which opted-in tasks run where.

The rules can only act on tasks the exporters measure. Whether every task is measured can
only be told against what Docker itself says runs, never against the exporters' own
output (a blind exporter reports nothing, which looks like nothing running). The receiver
already talks to a manager's Docker API, so it publishes that truth:

    swarmguard_service_tasks{service, node_id, node}   running tasks of each opted-in
                                                       service, per node
    swarmguard_node_ready{node_id, node, role}         1 for a ready node, 0 for another
    swarmguard_service_futile{service}                 1 while an opted-in service's
                                                       migrations are held because its
                                                       last move did not help (its
                                                       swarmguard.futile-until label), else 0
    swarmguard_service_move_unsafe{service, problem}   1 per problem that would make a
                                                       move of an opted-in service fail
                                                       requests (receiver/safety.py)
    swarmguard_receiver_docker_up                      1 when the last read of the swarm
                                                       succeeded and is fresh, else 0
    swarmguard_ground_truth_age_seconds                since that last successful read

Cost is bounded by reading in a background loop, every REFRESH_SECONDS, three list calls
whatever the size of the swarm (services with the opt-in label, running tasks, nodes),
plus an image inspection for a service whose spec inherits its image's health check,
remembered per image for IMAGE_RECHECK_SECONDS; a scrape only renders the last result,
so Prometheus's 500 ms scrapes never reach Docker.
When the last good read is older than STALE_AFTER_SECONDS, the per-service and per-node
series are withheld (no truth rather than old truth: an old task list would report tasks
that have since moved as unseen) and docker_up is 0.

The futile hold is read here too because it lives in the services' labels, which this
loop reads anyway: the gauge is right after a restart of the receiver, and within one
refresh of the label being written, passing, or removed by hand.

`build_ground_truth` is pure (Docker API dicts in, a frozen snapshot out); `read` is the
one place that calls Docker; `GroundTruthLoop` runs it; `GroundTruthCollector` renders it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from receiver import futile, safety
from receiver.cluster import (build_snapshot, image_healthcheck, task_from_dict,
                              with_image_healthcheck)
from receiver.labels import ENABLE, LabelError, opted_in, read_history

log = logging.getLogger(__name__)

# How often the loop reads the swarm. A new or moved task is counted within this (plus a
# scrape); the rules' `for:` windows are longer (prometheus/rules/swarmguard-health.yml).
REFRESH_SECONDS = 5.0
# A read that has not succeeded for this long is no longer truth: three refreshes missed,
# or one that hung on a Docker socket that does not answer.
STALE_AFTER_SECONDS = 3 * REFRESH_SECONDS

# What an image declares does not change under a digest; a manager that did not hold
# the image may pull it later (a task of it scheduled there): asked again after this long.
IMAGE_RECHECK_SECONDS = 300.0

METRIC_NAMES = ("swarmguard_service_tasks", "swarmguard_node_ready",
                "swarmguard_receiver_docker_up", "swarmguard_ground_truth_age_seconds",
                "swarmguard_service_futile", "swarmguard_service_move_unsafe")


@dataclass(frozen=True)
class NodeTruth:
    id: str
    hostname: str
    role: str
    ready: bool


@dataclass(frozen=True)
class GroundTruth:
    nodes: tuple[NodeTruth, ...]
    # (service name, node id) -> running tasks of that opted-in service on that node
    tasks: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # opted-in service name -> whether its migrations are held as futile
    futile: Mapping[str, bool] = field(default_factory=dict)
    # opted-in service name -> what would make its moves fail requests (safety.PROBLEMS);
    # services with none are absent
    unsafe: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def build_ground_truth(services: Iterable[Mapping], tasks: Iterable[Mapping],
                       nodes: Iterable[Mapping], now: datetime | None = None,
                       image_healthchecks: Callable[[str], str] | None = None) -> GroundTruth:
    """Running tasks of opted-in services, per service and node, the nodes, which
    opted-in services are held as futile at `now` (wall clock; None: none is), and what
    would make a move of each opted-in service fail requests.

    A task counts when Swarm wants it running and it is running: the same test the
    decisions use (model.Task.running). Opt-in is the receiver's own test, so a label
    that the receiver would refuse to act on is not counted either.
    `image_healthchecks(image)`: what an image declares (cluster.image_healthcheck), for
    services whose spec inherits it; None: unknown.
    """
    services = [s for s in services if opted_in((s.get("Spec") or {}).get("Labels") or {})]
    tasks, nodes = list(tasks), list(nodes)
    names = {s["ID"]: (s.get("Spec") or {}).get("Name", "") for s in services}
    counts: Counter[tuple[str, str]] = Counter()
    for task in tasks:
        name = names.get(task.get("ServiceID", ""))
        if (name and task.get("DesiredState") == "running"
                and (task.get("Status") or {}).get("State") == "running" and task.get("NodeID")):
            counts[(name, task["NodeID"])] += 1
    return GroundTruth(
        nodes=tuple(sorted(
            (NodeTruth(id=n["ID"],
                       hostname=(n.get("Description") or {}).get("Hostname", ""),
                       role=(n.get("Spec") or {}).get("Role", ""),
                       ready=(n.get("Status") or {}).get("State") == "ready")
             for n in nodes), key=lambda n: n.id)),
        tasks=dict(sorted(counts.items())),
        futile={(s.get("Spec") or {}).get("Name", ""): _held(s, now)
                for s in sorted(services, key=lambda s: (s.get("Spec") or {}).get("Name", ""))},
        unsafe=_move_problems(services, tasks, nodes, image_healthchecks),
    )


def _held(service: Mapping, now: datetime | None) -> bool:
    """The decisions' own test (futile.held_until) on the service's labels."""
    try:
        history = read_history((service.get("Spec") or {}).get("Labels") or {})
    except LabelError:
        # The receiver skips the service's alerts as bad_label: not held as futile.
        return False
    return now is not None and futile.held_until(history, now) is not None


def _move_problems(services: list[Mapping], tasks: list[Mapping], nodes: list[Mapping],
                   image_healthchecks: Callable[[str], str] | None
                   ) -> dict[str, tuple[str, ...]]:
    # Tasks matter only to services with host-mode ports (a free node for a second task):
    # only theirs are converted, not the whole swarm's at every read.
    snapshot = build_snapshot(services, (), nodes)
    hosted = {s.id for s in snapshot.services.values() if s.host_ports}
    snapshot = replace(snapshot, tasks=tuple(task_from_dict(t) for t in tasks
                                             if t.get("ServiceID") in hosted))
    found = {}
    for name, service in sorted(snapshot.services.items()):
        if image_healthchecks is not None:
            service = with_image_healthcheck(service, image_healthchecks)
        problems = safety.move_problems(service, snapshot)
        if problems:
            found[name] = problems
    return found


class ImageHealthchecks:
    """cluster.image_healthcheck through `api`, remembered per image for `recheck`
    seconds, so that a read asks Docker about each image at most that often."""

    MAX_IMAGES = 4096  # forgotten all at once beyond this: a bound, not a policy

    def __init__(self, api, recheck: float = IMAGE_RECHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self._api = api
        self._recheck = recheck
        self._clock = clock
        self._known: dict[str, tuple[str, float]] = {}

    def __call__(self, image: str) -> str:
        now = self._clock()
        known = self._known.get(image)
        if known is not None and now - known[1] < self._recheck:
            return known[0]
        if len(self._known) >= self.MAX_IMAGES:
            self._known.clear()
        answer = image_healthcheck(self._api, image)
        self._known[image] = (answer, now)
        return answer


def read(api, images: Callable[[str], str] | None = None,
         wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
         ) -> GroundTruth:
    """Three list calls, whatever the size of the swarm, and an image inspection per
    service whose spec inherits its image's health check (through `images`, an
    ImageHealthchecks, when given). The label filter matches on the key only: `opted_in`
    decides on the value, as everywhere else in the receiver. `wall_clock` tells which
    futile holds are still ahead."""
    services = api.services(filters={"label": ENABLE})
    tasks = api.tasks(filters={"desired-state": "running"})
    return build_ground_truth(services, tasks, api.nodes(), wall_clock(),
                              images or (lambda image: image_healthcheck(api, image)))


@dataclass(frozen=True)
class Reading:
    truth: GroundTruth | None  # the last successful read
    succeeded_at: float | None  # monotonic time of it
    last_ok: bool  # whether the latest attempt succeeded


class GroundTruthLoop:
    """Reads the swarm every `interval` seconds in a daemon thread; `latest()` is what
    the last attempts gave. `refresh()` is one attempt, for tests and benchmarks."""

    def __init__(self, reader: Callable[[], GroundTruth], interval: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic, on_error: Callable[[str], None] | None = None):
        self._reader = reader
        self.interval = interval
        self._clock = clock
        self._on_error = on_error
        self._lock = threading.Lock()
        self._reading = Reading(None, None, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        try:
            truth = self._reader()
        except Exception as exc:  # noqa: BLE001 (any failure of the read is "Docker unreachable")
            with self._lock:
                was_ok = self._reading.last_ok
                self._reading = Reading(self._reading.truth, self._reading.succeeded_at, False)
            if was_ok or self._reading.succeeded_at is None:
                log.warning("Cannot read the swarm's tasks for detection health: %s", exc)
            if self._on_error:
                self._on_error("ground_truth")
            return False
        with self._lock:
            if not self._reading.last_ok and self._reading.succeeded_at is not None:
                log.info("Reading the swarm's tasks again")
            self._reading = Reading(truth, self._clock(), True)
        return True

    def latest(self) -> Reading:
        with self._lock:
            return self._reading

    def now(self) -> float:
        return self._clock()

    def start(self) -> "GroundTruthLoop":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ground-truth", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            self.refresh()
            # Keep the pace even when a read is slow; never spin when it is slower.
            self._stop.wait(max(self.interval - (self._clock() - started), 0.1 * self.interval))


def families(reading: Reading, now: float,
             stale_after: float = STALE_AFTER_SECONDS) -> Iterator[GaugeMetricFamily]:
    """The metric families for one reading, pure: what a scrape at `now` shows."""
    fresh = yield from health_families(reading, now, stale_after)
    if fresh:
        yield from truth_families(reading.truth)


def health_families(reading: Reading, now: float, stale_after: float):
    """docker_up and the age, which change with `now`; returns whether the truth is fresh."""
    age = None if reading.succeeded_at is None else max(now - reading.succeeded_at, 0.0)
    fresh = reading.last_ok and age is not None and age <= stale_after
    up = GaugeMetricFamily("swarmguard_receiver_docker_up",
                           "1 when the receiver's last read of the swarm (services, tasks, nodes) "
                           f"succeeded and is at most {stale_after:g} s old, else 0.")
    up.add_metric([], 1.0 if fresh else 0.0)
    yield up
    if age is not None:
        yield GaugeMetricFamily("swarmguard_ground_truth_age_seconds",
                                "Seconds since the receiver last read the swarm successfully.",
                                value=age)
    return fresh


def truth_families(truth: GroundTruth) -> tuple[GaugeMetricFamily, ...]:
    """The per-service and per-node series of one reading (the same for every scrape of it)."""
    tasks = GaugeMetricFamily("swarmguard_service_tasks",
                              "Running tasks of each opted-in service per node, as Docker reports "
                              "them (the ground truth the exporters' series are checked against).",
                              labels=["service", "node_id", "node"])
    hostnames = {n.id: n.hostname for n in truth.nodes}
    for (service, node_id), count in truth.tasks.items():
        tasks.add_metric([service, node_id, hostnames.get(node_id, "")], count)
    nodes = GaugeMetricFamily("swarmguard_node_ready",
                              "Swarm nodes as Docker reports them: 1 ready, 0 any other state.",
                              labels=["node_id", "node", "role"])
    for node in truth.nodes:
        nodes.add_metric([node.id, node.hostname, node.role], 1.0 if node.ready else 0.0)
    futile = GaugeMetricFamily("swarmguard_service_futile",
                               "1 while SwarmGuard does not migrate an opted-in service because "
                               "its last move did not help (label swarmguard.futile-until), "
                               "else 0.", labels=["service"])
    for service, held in truth.futile.items():
        futile.add_metric([service], 1.0 if held else 0.0)
    # Only problems found are series (value 1): a fixed service's series ends, and the
    # alert with it. Exporting 0 for every service and problem would add a series per
    # opted-in service and problem for nothing the rule needs.
    unsafe = GaugeMetricFamily("swarmguard_service_move_unsafe",
                               "1 per problem that would make a move of an opted-in service "
                               "fail requests: no_healthcheck, host_port_no_free_node.",
                               labels=["service", "problem"])
    for service, problems in truth.unsafe.items():
        for problem in problems:
            unsafe.add_metric([service, problem], 1.0)
    return tasks, nodes, futile, unsafe


class GroundTruthCollector(Collector):
    """Renders the loop's latest reading at each scrape; never calls Docker itself. The
    per-service families are built once per reading (every 5 s), not once per scrape."""

    def __init__(self, loop: GroundTruthLoop, stale_after: float = STALE_AFTER_SECONDS):
        self.loop = loop
        self.stale_after = stale_after
        self._built: tuple[GroundTruth | None, tuple] = (None, ())

    def collect(self):
        reading = self.loop.latest()
        fresh = yield from health_families(reading, self.loop.now(), self.stale_after)
        if fresh:
            truth, built = self._built
            if truth is not reading.truth:
                built = truth_families(reading.truth)
                self._built = (reading.truth, built)
            yield from built

    def describe(self):
        # Registration must not read the swarm (nor wait for the first read).
        return families(Reading(GroundTruth(()), 0.0, True), 0.0, self.stale_after)


def install(api, registry, on_error: Callable[[str], None] | None = None) -> GroundTruthLoop:
    """Start reading the swarm through `api` and publish it in `registry` (the app's)."""
    images = ImageHealthchecks(api)
    loop = GroundTruthLoop(lambda: read(api, images), on_error=on_error)
    registry.register(GroundTruthCollector(loop))
    return loop.start()
