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
from ..lab.infra import services
from ..lab.infra.nodes import client
from . import model as M
from .model import ServicePlan

log = logging.getLogger("soak.load")

TICK_S = 5.0
# A stress request lasts a little longer than the time to the next one, so demand does
# not flicker between ticks, and ends by itself within seconds when the soak stops.
HOLD_S = 12.0
NETWORK_SHARE = 0.85  # Scenario 2's: above the high network threshold (65 %)


@dataclass(frozen=True)
class Pattern:
    """Demand in periods: `on_s` of it every `period_s`, from `offset_s` into the soak."""
    period_s: float
    on_s: float
    offset_s: float = 0.0

    def on(self, t: float) -> bool:
        return t >= self.offset_s and (t - self.offset_s) % self.period_s < self.on_s


# Why these shapes: each crosses its rule's threshold long enough to fire (for: 2 s on
# averages of seconds), and leaves quiet time between, so actions, their outcomes and
# the futile hold are all seen several times in 30 minutes.
PATTERNS = {
    M.STARVED: Pattern(period_s=300, on_s=120, offset_s=60),  # only on the hog's node
    M.SELF_HOT: Pattern(period_s=360, on_s=240, offset_s=90),  # wherever it runs
    M.BURSTY: Pattern(period_s=420, on_s=90, offset_s=120),  # then the 180 s scale-down window
    M.NO_HEALTHCHECK: Pattern(period_s=480, on_s=90, offset_s=200),  # SwarmGuard must not move it
    M.STATEFUL: Pattern(period_s=480, on_s=90, offset_s=260),  # nor this one
    M.SLOW_START: Pattern(period_s=600, on_s=60, offset_s=320),  # its move waits 8 s for the new task
    M.NEIGHBOUR_HOG: Pattern(period_s=1, on_s=1),  # always
    M.PLAIN_HOT: Pattern(period_s=1, on_s=1),  # always; not opted in, never touched
}
LEAK_START_MB = 8
LEAK_MB_PER_MINUTE = 8  # from about 25 % of the limit past the 80 % threshold in ~15 minutes
LEAK_CAP_MB = 128  # the stress app's own cap: its memory limit less its 64 MB headroom


def task_url(cfg: LabConfig, plan: ServicePlan, node: str) -> str:
    return f"http://{cfg.node(node).ip}:{plan.published_port}"


class Load:
    def __init__(self, cfg: LabConfig, plans: tuple[ServicePlan, ...], started: float):
        self.cfg, self.plans, self.started = cfg, plans, started
        self.hog_node: str | None = None  # set by the runner: where STARVED and the hog run
        self._leak_born: dict[str, float] = {}  # task ID -> when its leak began
        self._leak_sent: dict[str, tuple[int, float]] = {}  # task ID -> (MB, when) of its job
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
                out.append((task["ID"], services.node_name(self.cfg, task["NodeID"])))
        return out

    def _send(self, plan: ServicePlan, node: str, kind: str, **params) -> None:
        try:
            requests.get(f"{task_url(self.cfg, plan, node)}/stress/{kind}", params=params,
                         timeout=3).raise_for_status()
            self.requests_sent += 1
        except requests.RequestException as exc:  # a task going away, a node at fault
            self.errors += 1
            log.debug("stress %s on %s at %s: %s", kind, plan.name, node, exc)

    def demand(self, plan: ServicePlan, t: float, task_id: str, node: str) -> tuple[str, dict] | None:
        """The stress request a task is due at soak time `t`, or None."""
        b = plan.behaviour
        if b == M.LEAK:
            born = self._leak_born.setdefault(task_id, t)
            mb = min(LEAK_CAP_MB, LEAK_START_MB + int((t - born) / 60) * LEAK_MB_PER_MINUTE)
            # Once a minute, the next step: a memory job is replaced only when it grows
            # (or nearly ends), so the task's memory does not dip at every tick.
            if self._leak_sent.get(task_id, (None, -1e9))[0] == mb and t - self._leak_sent[task_id][1] < 50:
                return None
            self._leak_sent[task_id] = (mb, t)
            return "memory", {"mb": mb, "duration": 70}
        pattern = PATTERNS.get(b)
        if pattern is None or not pattern.on(t):
            return None
        if b == M.STARVED and node != self.hog_node:
            return None  # its node was the cause: off that node, it is cool
        if b == M.BURSTY:
            mbps = round(self.cfg.node_capacity_mbps * NETWORK_SHARE, 1)
            return "combined", {"cpu": 100, "network": mbps, "duration": HOLD_S}
        return "cpu", {"target": 100, "duration": HOLD_S}

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
            self.tick()

    def start(self) -> "Load":
        self._thread = threading.Thread(target=self._loop, name="soak-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)
