"""Which services are opted in to SwarmGuard, read from Docker on a manager node and
published at GET /opted-in (docs/contract.md, "Opted-in services").

Prometheus cannot see service labels, and a worker's Docker cannot list services: the
exporters on the managers publish the list, and Prometheus scrapes it from them, so the
rules judge only opted-in services' tasks whether or not the receiver runs.

A background thread reads it every `opt_in_interval_seconds`: GET /info says whether this
node is a manager (Swarm.ControlAvailable), and on a manager one list call gives the
services carrying the label with their running tasks (status=true: API 1.41, Engine 20.10
and later). The page renders the last reading; a scrape never reaches Docker.

- A node that is not a manager publishes no series at all: only a manager can know the
  list, so a worker never says the list is unknown. Until its Docker has said so, a node
  is not taken for a manager.
- A read that fails keeps the last good list (a Docker hiccup must not drop every
  service from detection); the list is published as known only while that read is
  younger than STALE_INTERVALS intervals.

`is_manager`, `opted_in_services`, `page` and `pause` are pure (Docker's answers in, the
page's text out); `OptInWatch` is the part that talks to Docker.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from swarmguard_config.opt_in import ENABLE, opted_in

logger = logging.getLogger(__name__)

# Reads missed before the list is no longer known: one failed read is a hiccup, three
# are an outage.
STALE_INTERVALS = 3


class UnreadableAnswer(ValueError):
    """Docker answered, but not with what API 1.41 and later promise."""


def is_manager(info: Mapping) -> bool:
    """Whether this node's Docker can answer for the swarm (GET /info): only a manager's can."""
    return (info.get("Swarm") or {}).get("ControlAvailable") is True


def opted_in_services(listed: Iterable[Mapping]) -> dict[str, int]:
    """Each opted-in service's name -> its running tasks, by name, from GET
    /services?status=true. The label filter matched the key only: `opted_in` decides on
    the value, the receiver's own test. UnreadableAnswer when an opted-in service comes
    without its name or its count of running tasks."""
    found = {}
    for service in listed:
        spec = service.get("Spec") or {}
        if not opted_in(spec.get("Labels") or {}):
            continue
        name = spec.get("Name")
        running = (service.get("ServiceStatus") or {}).get("RunningTasks")
        if not isinstance(name, str) or not name or type(running) is not int or running < 0:
            raise UnreadableAnswer(f"service {name!r} comes without a name or a count of running tasks "
                                   f"(ServiceStatus: {service.get('ServiceStatus')!r})")
        found[name] = running
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Reading:
    manager: bool = False  # what this node's Docker said last; False until it has said
    services: Mapping[str, int] = field(default_factory=dict)  # the last good list
    read_at: float | None = None  # when it was read (monotonic); None: not since this node became a manager


class _Series(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def page(reading: Reading, now: float, stale_after: float) -> bytes:
    """The text of GET /opted-in at `now`: nothing unless this node is a manager."""
    if not reading.manager:
        return b""
    tasks = GaugeMetricFamily("swarmguard_opted_in_service_tasks",
                              f"Running tasks of each service opted in to SwarmGuard (label {ENABLE}=true), as "
                              "this manager's Docker counts them; 0: opted in, none running.", labels=["service"])
    for name, running in reading.services.items():
        tasks.add_metric([name], running)
    known = reading.read_at is not None and now - reading.read_at < stale_after
    return generate_latest(_Series([tasks, GaugeMetricFamily(
        "swarmguard_exporter_opt_in_known",
        f"1 if this manager's last good read of the services opted in to SwarmGuard is younger than "
        f"{stale_after:g} s, 0 if not (the services listed are then the last ones read, if any). "
        "Not published by a node that is not a manager.", value=1 if known else 0)]))


def pause(interval: float, spent: float) -> float:
    """Seconds to wait after a read that took `spent`: the rest of the interval, so that a
    slow read does not slow the pace, and never less than a tenth of it, so that a read
    slower than the interval does not make the loop spin."""
    return max(interval - spent, 0.1 * interval)


class OptInWatch:
    """Reads the opted-in services every `interval` seconds in a daemon thread; `page()`
    renders the last reading. `refresh()` is one read (the thread's, and tests')."""

    def __init__(self, connect: Callable[[], object], *, interval: float, on_error: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect  # returns a docker.APIClient; called again after a failure
        self.interval = interval
        self.stale_after = STALE_INTERVALS * interval
        self._clock = clock
        self._on_error = on_error  # once per failed read
        self._lock = threading.Lock()
        self._reading = Reading()
        self._failures = 0  # reads failed since the last good one: the first is logged
        self._role: bool | None = None  # manager or not, as last logged
        self._api = None
        self._stop = threading.Event()

    def page(self) -> bytes:
        with self._lock:
            reading = self._reading
        return page(reading, self._clock(), self.stale_after)

    # -- reading

    def refresh(self) -> bool:
        """One read; whether it succeeded."""
        try:
            if self._api is None:
                self._api = self._connect()
            manager = is_manager(self._api.info())
        except Exception as error:  # docker raises several kinds; all mean "cannot read"
            return self._failed(error)
        try:
            services = (opted_in_services(self._api.services(filters={"label": ENABLE}, status=True))
                        if manager else {})
        except Exception as error:
            self._manager_unread()
            return self._failed(error)
        self._read(manager, services)
        return True

    def _read(self, manager: bool, services: Mapping[str, int]) -> None:
        with self._lock:
            # A node that is not a manager keeps nothing: made a manager again, it
            # publishes only what it reads then.
            self._reading = Reading(True, services, self._clock()) if manager else Reading()
        if self._failures:
            logger.info("This node's Docker answers again, after %d failed reads", self._failures)
            self._failures = 0
        self._note_role(manager)

    def _manager_unread(self) -> None:
        """/info said this node is a manager; its list could not be read."""
        with self._lock:
            self._reading = replace(self._reading, manager=True)
        self._note_role(True)

    def _failed(self, error: Exception) -> bool:
        self._api = None  # reconnect next time, e.g. after a daemon restart
        self._on_error()
        self._failures += 1
        if self._failures == 1:
            logger.warning("Cannot read the services opted in to SwarmGuard from this node's Docker (%s): "
                           "/opted-in keeps the last list read, marked unknown once it is %g s old",
                           error, self.stale_after)
        return False

    def _note_role(self, manager: bool) -> None:
        if manager == self._role:
            return
        if manager:
            logger.info("This node is a manager: /opted-in lists the services opted in to SwarmGuard")
        elif self._role is None:
            logger.info("This node is not a manager: /opted-in stays empty (only a manager's Docker lists services)")
        else:
            logger.info("This node is no longer a manager: /opted-in is empty")
        self._role = manager

    # -- the thread

    def start(self) -> OptInWatch:
        # A daemon: the exporter's exit never waits for a Docker call under way.
        threading.Thread(target=self._run, name="opt-in", daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            self.refresh()
            self._stop.wait(pause(self.interval, self._clock() - started))

    def close(self) -> None:
        self._stop.set()
