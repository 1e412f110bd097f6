"""The soak's demand: what each service's tasks are asked to do, and when.

Each behaviour (model.py) is a rule from the soak's clock and the task's place to one
stress request; `Load.tick()` runs every few seconds and sends what is due, straight to
each task on its node's published port, so a task that has moved gets its load again
within a tick: demand follows the service, as real work does.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import requests

from ..lab.config import LabConfig
from ..lab.infra.nodes import client
from . import model as M
from .model import ServicePlan
from .plan import LOAD, Load
from .sampler import NodeNames

log = logging.getLogger("soak.load")

TICK_S = 5.0
# A stress request lasts a little longer than the time to the next one, so demand does
# not flicker between ticks, and ends by itself within seconds when the soak stops.
HOLD_S = 12.0


def on(load: Load, t: float) -> bool:
    """The load's CPU and network period is on at soak time `t`."""
    if not (load.cpu_percent or load.network_percent) or t < load.delay_s:
        return False
    return load.on_s is None or (t - load.delay_s) % (load.on_s + load.off_s) < load.on_s


def task_url(cfg: LabConfig, plan: ServicePlan, node: str) -> str:
    return f"http://{cfg.node(node).ip}:{plan.published_port}"


class Load:
    def __init__(self, cfg: LabConfig, plans: tuple[ServicePlan, ...], started: float):
        self.cfg, self.plans, self.started = cfg, plans, started
        # Where the starved service starts and its hog is pinned (plan.services).
        self.hog_node = next((p.node for p in plans if p.behaviour == M.NEIGHBOUR_HOG), None)
        self._leak_born: dict[str, float] = {}  # task ID -> when its leak began
        self._leak_sent: dict[str, tuple[int, float]] = {}  # task ID -> (MB, when) of its job
        self.node_names = NodeNames(cfg)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.requests_sent = 0
        self.errors = 0

    def _tasks(self, plan: ServicePlan) -> list[tuple[str, str]]:
        """(task ID, hostname) of the service's running tasks."""
        c = client(self.cfg, self.cfg.manager, timeout=10)
        out = []
        for task in c.api.tasks(filters={"service": plan.name, "desired-state": "running"}):
            if task["Status"]["State"] == "running" and task.get("NodeID"):
                out.append((task["ID"], self.node_names(task["NodeID"])))
        return out

    def _send(self, plan: ServicePlan, node: str, endpoint: str, **params) -> None:
        try:
            requests.get(f"{task_url(self.cfg, plan, node)}/stress/{endpoint}", params=params,
                         timeout=3).raise_for_status()
            self.requests_sent += 1
        except requests.RequestException as exc:  # a task going away, a node at fault
            self.errors += 1
            log.debug("stress %s on %s at %s: %s", endpoint, plan.name, node, exc)

    def demand(self, plan: ServicePlan, t: float, task_id: str, node: str) -> tuple[str, dict] | None:
        """The stress request a task is due at soak time `t` (plan.LOAD), or None."""
        load = LOAD[plan.behaviour]
        if load.memory_mib_per_min:
            born = self._leak_born.setdefault(task_id, t)
            mb = int(min(load.memory_cap_mib, max(8, (t - born) // 60 * load.memory_mib_per_min)))
            # Once a minute, the next step: a memory job is replaced only when it grows
            # (or nearly ends), so the task's memory does not dip at every tick.
            sent_mb, sent_at = self._leak_sent.get(task_id, (None, -1e9))
            if sent_mb == mb and t - sent_at < 50:
                return None
            self._leak_sent[task_id] = (mb, t)
            return "memory", {"mb": mb, "duration": 70}
        if not on(load, t):
            return None
        if plan.behaviour == M.STARVED and node != self.hog_node:
            return None  # its node was the cause: off that node, it is cool
        if load.network_percent:
            mbps = round(self.cfg.node_capacity_mbps * load.network_percent / 100, 1)
            return "combined", {"cpu": load.cpu_percent, "network": mbps, "duration": HOLD_S}
        return "cpu", {"target": load.cpu_percent, "duration": HOLD_S}

    def tick(self) -> None:
        t = time.time() - self.started
        for plan in self.plans:
            try:
                tasks = self._tasks(plan)
            except Exception as exc:  # the manager at fault: the next tick tries again
                log.debug("tasks of %s: %s", plan.name, exc)
                continue
            for task_id, node in tasks:
                due = self.demand(plan, t, task_id, node)
                if due is not None:
                    kind, params = due
                    if kind == "memory":  # one memory job per task: the new one replaces it
                        self._send(plan, node, "stop", kind="memory")
                    self._send(plan, node, kind, **params)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception as exc:  # a bug here must not end the demand silently
                self.errors += 1
                log.exception("soak demand: %s", exc)

    def start(self) -> "Load":
        self._thread = threading.Thread(target=self._loop, name="soak-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)
