"""The Prometheus collector: at each scrape, read each swarm task's counters and publish.

Per task it reads three or four small files (the cgroup's CPU and memory counters and
the task's /proc/<pid>/net/dev): tens of microseconds, no Docker call between container
starts and stops (exporter/inventory.py), so the cost follows the tasks on the node at a
few hundredths of a percent of a core each (measured by `make bench-density`).

CPU is published as a counter and Prometheus takes its rate (the rules' irate), so
nothing about CPU is carried between scrapes. The network percentage is a gauge of the
contract (docs/contract.md), so its rate is computed here, from the previous reading of
the same container: the only measured state kept between scrapes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.capacity import Capacity, resolve_capacity
from exporter.cgroups import ContainerGone, cpu_seconds, memory_working_set_bytes
from exporter.config import ExporterConfig
from exporter.inventory import DockerUnavailable, Inventory, TaskContainer
from exporter.netdev import read_net_dev
from exporter.rates import NetworkSample, bits_per_second, percent_of_capacity

logger = logging.getLogger(__name__)

Family = GaugeMetricFamily | CounterMetricFamily

TASK_LABELS = ["service", "task_id", "node_id", "task_name", "container_id"]
# Every reason is published from the start (at 0), so `increase()` sees the first error.
ERROR_REASONS = ("docker_unreachable", "container_unreadable", "capacity_unknown")


def _families() -> dict[str, Family]:
    g, c = GaugeMetricFamily, CounterMetricFamily
    return {
        "cpu": c("swarmguard_task_cpu_seconds", "CPU time a swarm task's container has used, from its "
                 "cgroup (cgroup v2 cpu.stat usage_usec, v1 cpuacct.usage).", labels=TASK_LABELS),
        "cpu_limit": g("swarmguard_task_cpu_limit_cores", "What 100 % CPU means for the task: its CPU "
                       "limit in cores, or the node's cores when it has none.", labels=TASK_LABELS),
        "memory": g("swarmguard_task_memory_working_set_bytes", "Memory of a swarm task's container that "
                    "the kernel cannot reclaim without swapping: usage minus inactive file pages, as "
                    "cAdvisor's container_memory_working_set_bytes.", labels=TASK_LABELS),
        "memory_limit": g("swarmguard_task_memory_limit_bytes", "What 100 % memory means for the task: its "
                          "memory limit, or the node's memory when it has none.", labels=TASK_LABELS),
        "started": g("swarmguard_task_start_time_seconds", "When the task's container started (Unix "
                     "seconds); rules can leave a task alone while it starts up.", labels=TASK_LABELS),
        "percent": g("swarmguard_container_network_percent", "Receive plus transmit bit rate of a swarm "
                     "task's container since the previous scrape, in percent of the node interface's "
                     "capacity. 100 means the container moves as many bits per second as the interface "
                     "carries in one direction; a full-duplex link can exceed it.", labels=TASK_LABELS),
        "rate": g("swarmguard_container_network_bits_per_second", "Receive plus transmit bit rate of a swarm "
                  "task's container since the previous scrape.", labels=TASK_LABELS),
        "capacity": g("swarmguard_interface_capacity_bits_per_second",
                      "Capacity that 100 percent stands for: configured, or the interface's link speed.",
                      labels=["interface", "source"]),
        "up": g("swarmguard_exporter_docker_up", "1 if this scrape could list the node's swarm tasks from "
                "its Docker daemon, 0 if not (no per-task values are published then)."),
        "errors": c("swarmguard_exporter_scrape_errors", "Scrape problems, by reason.", labels=["reason"]),
        "tasks": g("swarmguard_exporter_tasks", "Swarm task containers on this node in this scrape: measured, "
                   "gone (stopped while being read), or unlocated (cgroup not found).", labels=["outcome"]),
        "duration": g("swarmguard_exporter_scrape_duration_seconds", "Time this scrape took."),
    }


@dataclass(frozen=True)
class Node:
    """What 100 % means for a task without a limit."""

    cores: float
    memory_bytes: int


def read_node(proc_root: str) -> Node:
    with open(os.path.join(proc_root, "meminfo"), encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
        else:
            raise ValueError("no MemTotal in meminfo")
    return Node(cores=float(os.cpu_count() or 1), memory_bytes=memory)


class NetworkRates:
    """Per container, the bit rate since the previous reading.

    A reading less than `min_interval` after the previous one (two Prometheus servers
    scraping close together) reuses the rate last computed rather than divide a few
    packets by a few milliseconds.
    """

    def __init__(self, min_interval: float) -> None:
        self._min_interval = min_interval
        self._last: dict[str, tuple[NetworkSample, float | None]] = {}

    def update(self, container_id: str, sample: NetworkSample) -> float | None:
        previous = self._last.get(container_id)
        if previous is None:
            self._last[container_id] = (sample, None)
            return None
        older, rate = previous
        if sample.timestamp - older.timestamp < self._min_interval:
            return rate
        rate = bits_per_second(older, sample)
        self._last[container_id] = (sample, rate)
        return rate

    def keep_only(self, container_ids: set[str]) -> None:
        for gone in set(self._last) - container_ids:
            del self._last[gone]


class TaskCollector:
    def __init__(self, config: ExporterConfig, inventory: Inventory, node: Node,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._inventory = inventory
        self._node = node
        self._clock = clock
        self._lock = threading.Lock()  # scrapes may run concurrently (threaded HTTP server)
        self._errors = dict.fromkeys(ERROR_REASONS, 0)
        self._rates = NetworkRates(config.min_rate_interval_seconds)
        self._last_health: dict[str, bool] = {}

    def describe(self) -> Iterator[Metric]:
        # Given so that registering the collector does not call collect(), which would
        # read Docker at start-up.
        return iter(_families().values())

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        families = _families()
        config = self._config
        capacity = resolve_capacity(config.interface, config.capacity_mbps, config.sysfs_root)
        self._note_health("capacity", capacity is not None,
                          f"Capacity of interface {config.interface} is unknown (no speed under "
                          f"{config.sysfs_root}/class/net/{config.interface}): set --capacity-mbps; "
                          "no network percentages are published until then",
                          f"Capacity of interface {config.interface} is known again")
        if capacity is None:
            self._count_error("capacity_unknown")
        else:
            families["capacity"].add_metric([capacity.interface, capacity.source], capacity.bits_per_second)

        try:
            tasks = self._inventory.tasks()
        except DockerUnavailable as error:
            self._count_error("docker_unreachable")
            self._note_health("docker", False, f"Docker read failed: {error}", "")
            tasks = None
        else:
            self._note_health("docker", True, "", "Docker answers again")
        families["up"].add_metric([], 0 if tasks is None else 1)
        if tasks is not None:
            with self._lock:  # the rates' previous readings are shared between scrapes
                self._add_tasks(families, tasks, capacity)

        with self._lock:
            errors = dict(self._errors)
        for reason, count in errors.items():
            families["errors"].add_metric([reason], count)
        families["duration"].add_metric([], time.perf_counter() - started)
        yield from families.values()

    def _add_tasks(self, families: dict[str, Family], tasks: list[TaskContainer],
                   capacity: Capacity | None) -> None:
        proc_root = self._config.proc_root
        measured = gone = 0
        for task in tasks:
            try:
                cpu = cpu_seconds(task.cgroup)
                memory = memory_working_set_bytes(task.cgroup)
                rx, tx = read_net_dev(proc_root, task.pid)
            except ContainerGone:
                gone += 1
                self._inventory.forget(task.container_id)
                continue
            except (OSError, ValueError) as error:
                self._errors["container_unreadable"] += 1
                logger.warning("Cannot read container %s of %s: %s", task.container_id[:12], task.service, error)
                continue
            measured += 1
            labels = [task.service, task.task_id, task.node_id, task.task_name, task.container_id]
            families["cpu"].add_metric(labels, cpu)
            families["cpu_limit"].add_metric(labels, task.cpu_limit_cores or self._node.cores)
            families["memory"].add_metric(labels, memory)
            families["memory_limit"].add_metric(labels, task.memory_limit_bytes or self._node.memory_bytes)
            families["started"].add_metric(labels, task.started_at)
            rate = self._rates.update(task.container_id, NetworkSample(self._clock(), rx, tx))
            if rate is not None:
                families["rate"].add_metric(labels, rate)
                if capacity is not None:
                    families["percent"].add_metric(labels, percent_of_capacity(rate, capacity.bits_per_second))
        self._rates.keep_only({t.container_id for t in tasks})
        families["tasks"].add_metric(["measured"], measured)
        families["tasks"].add_metric(["gone"], gone)
        families["tasks"].add_metric(["unlocated"], self._inventory.unlocated)

    def _count_error(self, reason: str) -> None:
        with self._lock:
            self._errors[reason] += 1

    def _note_health(self, what: str, healthy: bool, on_failure: str, on_recovery: str) -> None:
        """Log a change of health once, not once per scrape (Prometheus scrapes twice a second)."""
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
        self._inventory.close()
