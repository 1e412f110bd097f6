"""One scrape: read each swarm task's counters and write them out; and the exporter's
own health, as a prometheus_client collector.

Per task it re-reads four open files (the cgroup's CPU and memory counters and the
task's /proc/<pid>/net/dev, exporter/cgroups.py: TaskFiles) and writes five lines whose
label sets were escaped once, when the task was discovered. prometheus_client's generic
text encoder costs more per sample than the reads themselves, so the per-task series are
written here (docs/contract.md names them); everything else (health, process metrics)
goes through prometheus_client. Measured with `make bench-density`.

CPU is published as a counter and Prometheus takes its rate (the rules' irate), so
nothing about CPU is carried between scrapes. The network percentage is a gauge of the
contract, so its rate is computed here from the previous reading of the same container:
the only measured state kept between scrapes.
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
from exporter.cgroups import ContainerGone, TaskFiles
from exporter.config import ExporterConfig
from exporter.counters import RefusedValue
from exporter.inventory import DockerUnavailable, Inventory, TaskContainer
from exporter.netdev import parse_net_dev
from exporter.rates import NetworkSample, bits_per_second, percent_of_capacity

logger = logging.getLogger(__name__)

# Every reason is published from the start (at 0), so `increase()` sees the first error.
ERROR_REASONS = ("docker_unreachable", "container_unreadable", "value_refused", "capacity_unknown",
                 "internal_error")

# name, type, help: the per-task series, in the order they are written.
TASK_SERIES = (
    ("swarmguard_task_cpu_seconds_total", "counter",
     "CPU time a swarm task's container has used, from its cgroup (cgroup v2 cpu.stat "
     "usage_usec, v1 cpuacct.usage)."),
    ("swarmguard_task_cpu_limit_cores", "gauge",
     "What 100 % CPU means for the task: its CPU limit in cores, or the node's cores when it has none."),
    ("swarmguard_task_memory_working_set_bytes", "gauge",
     "Memory of a swarm task's container that the kernel cannot reclaim without swapping: usage "
     "minus inactive file pages, as cAdvisor's container_memory_working_set_bytes."),
    ("swarmguard_task_memory_limit_bytes", "gauge",
     "What 100 % memory means for the task: its memory limit, or the node's memory when it has none."),
    ("swarmguard_task_start_time_seconds", "gauge",
     "When the task's container started (Unix seconds); rules can leave a task alone while it starts up."),
    ("swarmguard_container_network_percent", "gauge",
     "Receive plus transmit bit rate of a swarm task's container since the previous scrape, in "
     "percent of the node interface's capacity. 100 means the container moves as many bits per "
     "second as the interface carries in one direction; a full-duplex link can exceed it."),
)


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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_block(task: TaskContainer) -> str:
    """`{service="...",task_id="...",node_id="..."}`, escaped once per task."""
    return (f'{{service="{_escape(task.service)}",task_id="{_escape(task.task_id)}",'
            f'node_id="{_escape(task.node_id)}"}}')


class _Open:
    """What is kept of a running task between scrapes: its open files, its escaped labels
    and its last network reading with the rate computed from it. All of it goes when the
    task does."""

    __slots__ = ("files", "labels", "network", "rate")

    def __init__(self, task: TaskContainer, proc_root: str) -> None:
        self.files = TaskFiles(task.cgroup, os.path.join(proc_root, str(task.pid), "net", "dev"))
        self.labels = label_block(task)
        self.network: NetworkSample | None = None
        self.rate: float | None = None

    def network_rate(self, sample: NetworkSample, min_interval: float) -> float | None:
        """The bit rate since the previous reading. A reading less than `min_interval`
        after it (two Prometheus servers scraping close together) repeats the last rate
        rather than divide a few packets by a few milliseconds."""
        if self.network is not None and sample.timestamp - self.network.timestamp < min_interval:
            return self.rate
        self.rate = None if self.network is None else bits_per_second(self.network, sample)
        self.network = sample
        return self.rate


class TaskCollector:
    """`render_tasks()` does a scrape's work and returns the per-task series; `collect()`
    (prometheus_client) then gives the exporter's health as of that scrape."""

    def __init__(self, config: ExporterConfig, inventory: Inventory, node: Node,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._inventory = inventory
        self._node = node
        self._clock = clock
        self._lock = threading.Lock()  # scrapes may run concurrently (the HTTP server's workers)
        self._errors = dict.fromkeys(ERROR_REASONS, 0)
        self._open: dict[str, _Open] = {}
        self._last_health: dict[str, bool] = {}
        self._health = {"up": 0, "measured": 0, "gone": 0, "unlocated": 0, "capacity": None, "duration": 0.0}

    # ---------------------------------------------------------------- the scrape

    def render_tasks(self) -> str:
        with self._lock:
            try:
                return self._scrape()
            except Exception:  # a bug must not cost the exporter's own series too
                self._errors["internal_error"] += 1
                self._health.update(up=0, measured=0, gone=0)
                logger.exception("The scrape failed; only the exporter's own series are served")
                return ""

    def _scrape(self) -> str:
        started = time.perf_counter()
        config = self._config
        capacity = resolve_capacity(config.interface, config.capacity_mbps, config.sysfs_root)
        self._note_health("capacity", capacity is not None,
                          f"Capacity of interface {config.interface} is unknown (no speed under "
                          f"{config.sysfs_root}/class/net/{config.interface}): set --capacity-mbps; "
                          "no network percentages are published until then",
                          f"Capacity of interface {config.interface} is known again")
        if capacity is None:
            self._errors["capacity_unknown"] += 1
        try:
            tasks = self._inventory.tasks()
        except DockerUnavailable as error:
            self._errors["docker_unreachable"] += 1
            self._note_health("docker", False, f"Docker read failed: {error}", "")
            tasks = None
        else:
            self._note_health("docker", True, "", "Docker answers again")
        lines = self._task_lines(tasks, capacity) if tasks is not None else [[] for _ in TASK_SERIES]
        out = []
        for (name, kind, help_text), samples in zip(TASK_SERIES, lines):
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
            out.extend(f"{name}{sample}\n" for sample in samples)
        self._health.update(up=0 if tasks is None else 1, capacity=capacity,
                            duration=time.perf_counter() - started)
        return "".join(out)

    def _task_lines(self, tasks: list[TaskContainer], capacity: Capacity | None) -> list[list[str]]:
        lines = [[] for _ in TASK_SERIES]
        measured = gone = 0
        current = set()
        for task in tasks:
            current.add(task.container_id)
            # One task's bad file or a bug met on it costs that task only: it is left out
            # of this scrape and counted, and the others are served.
            try:
                samples = self._task_samples(task, capacity)
            except ContainerGone:
                gone += 1
                self._inventory.forget(task.container_id)
                continue
            except RefusedValue as error:
                self._errors["value_refused"] += 1
                logger.warning("Refused a reading of container %s of %s: %s", task.container_id[:12], task.service,
                               error)
                continue
            except (OSError, ValueError) as error:
                self._errors["container_unreadable"] += 1
                logger.warning("Cannot read container %s of %s: %s", task.container_id[:12], task.service, error)
                continue
            except Exception:
                self._errors["internal_error"] += 1
                logger.exception("Reading container %s of %s failed; it is left out of this scrape",
                                 task.container_id[:12], task.service)
                continue
            measured += 1
            for series, sample in zip(lines, samples):
                if sample is not None:
                    series.append(sample)
        for stopped in set(self._open) - current:
            self._open.pop(stopped).files.close()
        self._health.update(measured=measured, gone=gone, unlocated=self._inventory.unlocated)
        return lines

    def _task_samples(self, task: TaskContainer, capacity: Capacity | None) -> tuple[str | None, ...]:
        """One task's samples, in the order of TASK_SERIES (None: no network rate yet).
        All are computed before any is published, so a failure publishes none."""
        opened = self._open.get(task.container_id)
        if opened is None:
            opened = self._open[task.container_id] = _Open(task, self._config.proc_root)
        cpu_seconds, working_set, net_dev = opened.files.read()
        rx, tx = parse_net_dev(net_dev)
        labels = opened.labels
        rate = opened.network_rate(NetworkSample(self._clock(), rx, tx), self._config.min_rate_interval_seconds)
        network = None
        if rate is not None and capacity is not None:
            network = f"{labels} {percent_of_capacity(rate, capacity.bits_per_second)!r}"
        return (f"{labels} {cpu_seconds!r}",
                f"{labels} {task.cpu_limit_cores or self._node.cores!r}",
                f"{labels} {working_set}",
                f"{labels} {task.memory_limit_bytes or self._node.memory_bytes}",
                f"{labels} {task.started_at!r}",
                network)

    # ---------------------------------------------------------------- health (prometheus_client)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # registering the collector must not scrape

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            health, errors = dict(self._health), dict(self._errors)
        capacity = GaugeMetricFamily("swarmguard_interface_capacity_bits_per_second",
                                     "Capacity that 100 percent stands for: configured, or the interface's "
                                     "link speed.", labels=["interface", "source"])
        if health["capacity"] is not None:
            capacity.add_metric([health["capacity"].interface, health["capacity"].source],
                                health["capacity"].bits_per_second)
        yield capacity
        yield GaugeMetricFamily("swarmguard_exporter_docker_up", "1 if this scrape could list the node's swarm "
                                "tasks from its Docker daemon, 0 if not (no per-task values are published then).",
                                value=health["up"])
        counter = CounterMetricFamily("swarmguard_exporter_scrape_errors", "Scrape problems, by reason.",
                                      labels=["reason"])
        for reason, count in errors.items():
            counter.add_metric([reason], count)
        yield counter
        tasks = GaugeMetricFamily("swarmguard_exporter_tasks", "Swarm task containers on this node in this "
                                  "scrape: measured, gone (stopped while being read), or unlocated (cgroup not "
                                  "found).", labels=["outcome"])
        for outcome in ("measured", "gone", "unlocated"):
            tasks.add_metric([outcome], health[outcome])
        yield tasks
        yield GaugeMetricFamily("swarmguard_exporter_scrape_duration_seconds",
                                "Time the per-task part of this scrape took.", value=health["duration"])

    def count_error(self, reason: str) -> None:
        """Count a problem met outside a scrape: a failed read of the opted-in services
        (exporter/opt_in.py) is `docker_unreachable`. KeyError for a reason not in ERROR_REASONS."""
        with self._lock:
            self._errors[reason] += 1

    def _note_health(self, what: str, healthy: bool, on_failure: str, on_recovery: str) -> None:
        """Log a change of health once, not once per scrape (Prometheus scrapes twice a second)."""
        previous = self._last_health.get(what)
        self._last_health[what] = healthy
        if healthy == previous:
            return
        if not healthy:
            logger.warning("%s", on_failure)
        elif previous is False and on_recovery:
            logger.info("%s", on_recovery)

    def close(self) -> None:
        with self._lock:
            for opened in self._open.values():
                opened.files.close()
            self._open.clear()
        self._inventory.close()
