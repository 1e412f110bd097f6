"""The Prometheus collector: at each scrape, read cAdvisor once and publish fresh values.

Nothing measured is carried from one scrape to the next: cAdvisor keeps each container's
recent samples with their timestamps, so the rate comes from its two latest samples at
scrape time and detection does not wait for a PromQL window over our own output. The only
state kept is what must outlive a scrape: the error counters, and the last health seen so
that a change is logged once rather than at every scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import requests
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.cadvisor import CadvisorClient, CadvisorError
from exporter.capacity import Capacity, resolve_capacity
from exporter.config import ExporterConfig
from exporter.parsing import BadPayload, TaskContainer, task_containers
from exporter.rates import latest_rate, percent_of_capacity

logger = logging.getLogger(__name__)

Family = GaugeMetricFamily | CounterMetricFamily

TASK_LABELS = ["service", "task_id", "node_id", "task_name", "container_id"]
# Every reason is published from the start (at 0), so `increase()` sees the first error.
ERROR_REASONS = ("unreachable", "timeout", "bad_response", "capacity_unknown")


def _families() -> dict[str, Family]:
    return {
        "percent": GaugeMetricFamily(
            "swarmguard_container_network_percent",
            "Receive plus transmit bit rate of a swarm task's container over cAdvisor's two "
            "latest samples, in percent of the node interface's capacity. 100 means the "
            "container moves as many bits per second as the interface carries in one "
            "direction; a full-duplex link can exceed it.",
            labels=TASK_LABELS,
        ),
        "rate": GaugeMetricFamily(
            "swarmguard_container_network_bits_per_second",
            "Receive plus transmit bit rate of a swarm task's container over cAdvisor's two "
            "latest samples.",
            labels=TASK_LABELS,
        ),
        "capacity": GaugeMetricFamily(
            "swarmguard_interface_capacity_bits_per_second",
            "Capacity that 100 percent stands for: configured, or the interface's link speed.",
            labels=["interface", "source"],
        ),
        "up": GaugeMetricFamily(
            "swarmguard_exporter_cadvisor_up",
            "1 if this scrape read cAdvisor, 0 if cAdvisor was unreachable, too slow or "
            "answered garbage (no per-container values are published then).",
        ),
        "errors": CounterMetricFamily(
            "swarmguard_exporter_scrape_errors",
            "Scrapes that could not publish network percentages, by reason.",
            labels=["reason"],
        ),
        "tasks": GaugeMetricFamily(
            "swarmguard_exporter_tasks",
            "Swarm task containers seen in this scrape: measured, or skipped for lack of two "
            "fresh samples or because a counter went backwards.",
            labels=["outcome"],
        ),
        "duration": GaugeMetricFamily(
            "swarmguard_exporter_scrape_duration_seconds",
            "Time this scrape took, reading cAdvisor included.",
        ),
    }


class NetworkCollector:
    def __init__(
        self,
        config: ExporterConfig,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._client = CadvisorClient(config.cadvisor_url, config.timeout_seconds, session)
        self._clock = clock
        self._lock = threading.Lock()  # scrapes may run concurrently (threaded HTTP server)
        self._errors = dict.fromkeys(ERROR_REASONS, 0)
        self._last_health: dict[str, bool] = {}

    def describe(self) -> Iterator[Metric]:
        # Given so that registering the collector does not call collect(), which would
        # make a cAdvisor request at start-up.
        return iter(_families().values())

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        families = _families()
        config = self._config

        capacity = resolve_capacity(config.interface, config.capacity_mbps, config.sysfs_root)
        self._note_health(
            "capacity",
            capacity is not None,
            f"Capacity of interface {config.interface} is unknown (no speed under "
            f"{config.sysfs_root}/class/net/{config.interface}): set --capacity-mbps; "
            "no network percentages are published until then",
            f"Capacity of interface {config.interface} is known again",
        )
        if capacity is None:
            self._count_error("capacity_unknown")
        else:
            families["capacity"].add_metric(
                [capacity.interface, capacity.source], capacity.bits_per_second
            )

        tasks = self._read_tasks()
        families["up"].add_metric([], 0 if tasks is None else 1)
        if tasks is not None:
            self._add_task_values(families, tasks, capacity)

        with self._lock:
            errors = dict(self._errors)
        for reason, count in errors.items():
            families["errors"].add_metric([reason], count)
        families["duration"].add_metric([], time.perf_counter() - started)
        yield from families.values()

    def _read_tasks(self) -> list[TaskContainer] | None:
        try:
            tasks = task_containers(self._client.docker_containers())
        except CadvisorError as error:
            self._count_error(error.reason)
            self._note_health("cadvisor", False, f"cAdvisor read failed: {error}", "")
            return None
        except BadPayload as error:
            self._count_error("bad_response")
            self._note_health("cadvisor", False, f"cAdvisor answered garbage: {error}", "")
            return None
        self._note_health("cadvisor", True, "", f"cAdvisor at {self._client.url} answers again")
        return tasks

    def _add_task_values(
        self,
        families: dict[str, Family],
        tasks: list[TaskContainer],
        capacity: Capacity | None,
    ) -> None:
        now = self._clock()
        measured = skipped = 0
        for task in tasks:
            rate = latest_rate(task.samples, now, self._config.max_sample_age_seconds)
            if rate is None:
                skipped += 1
                continue
            measured += 1
            labels = [task.service, task.task_id, task.node_id, task.task_name, task.container_id]
            families["rate"].add_metric(labels, rate)
            if capacity is not None:
                percent = percent_of_capacity(rate, capacity.bits_per_second)
                families["percent"].add_metric(labels, percent)
        families["tasks"].add_metric(["measured"], measured)
        families["tasks"].add_metric(["skipped"], skipped)

    def _count_error(self, reason: str) -> None:
        with self._lock:
            self._errors[reason] += 1

    def _note_health(self, what: str, healthy: bool, on_failure: str, on_recovery: str) -> None:
        """Log a change of health once, not once per scrape (Prometheus scrapes every second)."""
        with self._lock:
            previous = self._last_health.get(what)
            self._last_health[what] = healthy
        if healthy == previous:
            return
        if not healthy:
            logger.warning("%s", on_failure)
        elif previous is False and on_recovery:
            logger.info("%s", on_recovery)

    def close(self) -> None:
        self._client.close()
