"""What the soak reads while it runs: the services as the manager sees them, SwarmGuard's
processes (RSS, CPU time), the lab's container count, and at the end the alerts
Prometheus fired. Reading only: nothing here changes the lab."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from ..lab.config import LabConfig
from ..lab.infra import monitoring
from ..lab.infra.nodes import client
from ..lab.infra.procfs import cpu_seconds
from ..lab.infra.system import read_pid
from ..lab.instruments import prometheus
from .model import AlertSpan, Observations, ResourceSample, ServicePlan, ServiceState

log = logging.getLogger("soak.sampler")

STATE_EVERY_S = 3.0
RESOURCES_EVERY_S = 10.0
CONTAINERS_EVERY_S = 30.0
ALERT_STEP_S = 2


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(p) for p in task.read_text().split()]
        except (FileNotFoundError, ValueError):
            pass
    return out


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (gunicorn's master and its worker)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    return tree


def resource_sample(name: str, pid: int, at: float) -> ResourceSample | None:
    try:
        tree = process_tree(pid)
        return ResourceSample(name, pid, at, sum(_rss_bytes(p) for p in tree),
                              sum(cpu_seconds(p) for p in tree))
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None  # it is gone (a fault): the next sample finds its successor


def swarmguard_processes(cfg: LabConfig) -> dict[str, int]:
    """Name -> PID of every SwarmGuard process of the lab but the receiver: each node's
    exporter, cAdvisor and detection Prometheus, the central Prometheus, the Alertmanagers."""
    out = {}
    for name, _marker in monitoring.names(cfg):
        pid = read_pid(cfg.run_dir / f"{name}.pid")
        if pid:
            out[name] = pid
    return out


class NodeNames:
    """Node ID -> hostname, read once and again only for an ID not seen yet (a node keeps
    its ID through a dockerd restart)."""

    def __init__(self, cfg: LabConfig):
        self.cfg, self.names = cfg, {}

    def __call__(self, node_id: str) -> str:
        if node_id not in self.names:
            self.names = {n.attrs["ID"]: n.attrs["Description"]["Hostname"]
                          for n in client(self.cfg, self.cfg.manager, timeout=10).nodes.list()}
        return self.names.get(node_id, node_id)


def service_states(cfg: LabConfig, plans: tuple[ServicePlan, ...], at: float,
                   name_of: Callable[[str], str]) -> list[ServiceState]:
    c = client(cfg, cfg.manager, timeout=10)
    names = {p.name for p in plans}
    out = []
    for svc in c.api.services():
        spec = svc["Spec"]
        if spec["Name"] not in names:
            continue
        tasks = c.api.tasks(filters={"service": svc["ID"], "desired-state": "running"})
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        out.append(ServiceState(
            service=spec["Name"], at=at,
            replicas=spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0),
            running=len(running), labels=dict(spec.get("Labels") or {}),
            constraints=tuple(spec["TaskTemplate"].get("Placement", {}).get("Constraints") or ()),
            nodes=tuple(sorted(name_of(t["NodeID"]) for t in running if t.get("NodeID")))))
    return out


def container_count(cfg: LabConfig) -> int:
    total = 0
    for node in cfg.nodes:
        try:
            total += len(client(cfg, node, timeout=5).api.containers(quiet=True))
        except Exception:  # a node at fault: counted as none
            pass
    return total


class Sampler:
    def __init__(self, cfg: LabConfig, obs: Observations, receiver_pid: Callable[[], int | None]):
        self.cfg, self.obs, self.receiver_pid = cfg, obs, receiver_pid
        self.node_names = NodeNames(cfg)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors = 0

    def _every(self, seconds: float, what: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                what()
            except Exception as exc:  # the manager or a process at fault: read next time
                self.errors += 1
                log.debug("sampling: %s", exc)
            self._stop.wait(seconds)

    def _states(self) -> None:
        self.obs.states.extend(service_states(self.cfg, self.obs.plans, time.time(), self.node_names))

    def _resources(self) -> None:
        at = time.time()
        pids = swarmguard_processes(self.cfg)
        receiver = self.receiver_pid()
        if receiver:
            pids["receiver"] = receiver
        for name, pid in pids.items():
            sample = resource_sample(name, pid, at)
            if sample:
                self.obs.resources.append(sample)

    def _containers(self) -> None:
        self.obs.containers.append((time.time(), container_count(self.cfg)))

    def start(self) -> "Sampler":
        for seconds, what in ((STATE_EVERY_S, self._states), (RESOURCES_EVERY_S, self._resources),
                              (CONTAINERS_EVERY_S, self._containers)):
            t = threading.Thread(target=self._every, args=(seconds, what), daemon=True,
                                 name=f"soak-{what.__name__.strip('_')}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def alert_spans(cfg: LabConfig, start: float, end: float) -> list[AlertSpan]:
    """Every alert the central Prometheus saw firing (it federates each node's), as spans:
    a gap of more than two steps ends a span."""
    spans = []
    chunk = 3 * 3600 // ALERT_STEP_S * ALERT_STEP_S  # under the API's 11,000 points a series
    series: dict[tuple, list[float]] = {}
    t = start
    while t < end:
        upto = min(end, t + chunk)
        for s in prometheus.query_range(cfg, 'ALERTS{alertstate="firing"}', t, upto, step=f"{ALERT_STEP_S}s"):
            key = tuple(sorted((k, v) for k, v in s["metric"].items() if k not in ("alertstate", "__name__")))
            series.setdefault(key, []).extend(float(ts) for ts, _ in s["values"])
        t = upto
    for key, times in series.items():
        labels = dict(key)
        times = sorted(set(times))
        first = prev = times[0]
        for ts in times[1:]:
            if ts - prev > 2 * ALERT_STEP_S:
                spans.append(AlertSpan(labels["alertname"], labels, first, prev))
                first = ts
            prev = ts
        spans.append(AlertSpan(labels["alertname"], labels, first, None if end - prev <= 2 * ALERT_STEP_S else prev))
    return sorted(spans, key=lambda s: s.start)
