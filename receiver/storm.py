"""Storm control: how much SwarmGuard changes at once, which nodes are hot, and which hot
task leaves a node first.

When a node starves every task on it, each opted-in task there raises its own
SwarmGuardMigrate alert within the same second. Acting on all of them at once would empty
the node in one go, pile the tasks onto whichever node the scheduler likes best (making it
the next hot node) and leave nobody to judge whether moving one or two would have been
enough. The rules of conduct for that (docs/contract.md, "Storms"):

- Budgets: at most `concurrent` actions in flight in the cluster, at most
  `leaving_per_node` migrations off one node and `arriving_per_node` that may land on one
  node at once, at most `per_minute` actions started in any 60 s. An alert over a budget
  is skipped with reason `budget`; Alertmanager resends it (repeat_interval) and it is
  judged again then, on fresh data.
- Never onto a hot node: a node is hot while a firing SwarmGuardMigrate alert names it
  (any service's, opted in or not: the node starves whoever runs there). A migration
  excludes every hot node besides the one it leaves.
- Hottest first: a node's leave budget goes to the hottest task in line to leave it. A
  hot task is in line from its first alert until its own alert is judged unable to move
  for a lasting reason (not opted in, cooldown, no node could ever take it: anything but
  a budget or a hot destination). The heat is the alert's cpu_percent or memory_percent
  annotation, whichever is higher, as of the latest webhook (Prometheus refreshes
  annotations at every resend to Alertmanager).

`StormLedger` holds that state for one receiver process (thread-safe, clock injected);
`decide()` reads a frozen `StormView` of it and stays pure. Across receiver replicas the
budgets hold per replica: Swarm's version compare-and-swap already keeps two replicas
from acting on one service at once.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from receiver.kinds import MIGRATE
from receiver.alerts import CPU_PERCENT, MEMORY_PERCENT, Alert

MIGRATE_ALERT = MIGRATE.alert
WINDOW_S = 60.0  # the per-minute budget's window
# A bound on remembered hot tasks, whatever a sender floods us with; the oldest go first.
HOT_TASKS_MAX = 4096


@dataclass(frozen=True)
class Budgets:
    # The defaults of SWARMGUARD_MAX_CONCURRENT_ACTIONS, _LEAVING_PER_NODE,
    # _ARRIVING_PER_NODE and _ACTIONS_PER_MINUTE (receiver/config.py says why each).
    concurrent: int = 4
    leaving_per_node: int = 1
    arriving_per_node: int = 2
    per_minute: int = 12


@dataclass(frozen=True)
class HotTask:
    """A task a firing SwarmGuardMigrate alert names."""
    task_id: str
    service: str
    node_id: str
    heat: float  # percent: the higher of the alert's CPU and memory evidence
    seen: float  # monotonic time of the latest webhook that carried the alert
    # In line to leave its node: until its own alert is judged unable to move for good.
    in_line: bool = True


@dataclass(frozen=True)
class Move:
    """An action in flight, from its decision until the receiver stops watching it."""
    service: str
    kind: str
    from_node: str | None = None  # migrate: the node it leaves
    # migrate: every node the new task may land on; narrowed to one once Swarm assigns it.
    destinations: frozenset[str] = frozenset()
    started: float = 0.0
    # A drain's or a rebalance's move (receiver/maintainer.py), not an alert's: alerts
    # about its service wait for it, and only maintenance ends it.
    maintenance: bool = False


@dataclass(frozen=True)
class StormView:
    """What `decide()` knows about the rest of the cluster's activity. Immutable."""
    budgets: Budgets = field(default_factory=Budgets)
    moves: tuple[Move, ...] = ()
    recent_starts: tuple[float, ...] = ()  # actions started within the last WINDOW_S
    hot: tuple[HotTask, ...] = ()

    def hot_nodes(self) -> frozenset[str]:
        return frozenset(h.node_id for h in self.hot)

    def leaving(self, node_id: str) -> int:
        return sum(1 for m in self.moves if m.from_node is not None and m.from_node == node_id)

    def arriving(self, node_id: str) -> int:
        return sum(1 for m in self.moves if m.from_node is not None and node_id in m.destinations)

    def maintenance_move(self, service: str) -> Move | None:
        """The drain's or rebalance's move of `service` in flight, if any."""
        return next((m for m in self.moves if m.service == service and m.maintenance), None)

    def over_cluster_budget(self) -> str | None:
        """Why no action may start now in the whole cluster, or None."""
        b = self.budgets
        if len(self.moves) >= b.concurrent:
            return (f"{len(self.moves)} action(s) already in flight "
                    f"(SWARMGUARD_MAX_CONCURRENT_ACTIONS={b.concurrent})")
        if len(self.recent_starts) >= b.per_minute:
            return (f"{len(self.recent_starts)} action(s) started in the last "
                    f"{WINDOW_S:.0f} s (SWARMGUARD_MAX_ACTIONS_PER_MINUTE={b.per_minute})")
        return None

    def over_leave_budget(self, node_id: str, node_name: str, task_id: str, heat: float
                          ) -> str | None:
        """Why this task may not leave its node now, or None: the node's leave budget is
        used up, or what is left of it belongs to hotter tasks in line to leave."""
        b = self.budgets
        leaving = self.leaving(node_id)
        if leaving >= b.leaving_per_node:
            return (f"{leaving} task(s) already leaving {node_name} "
                    f"(SWARMGUARD_MAX_LEAVING_PER_NODE={b.leaving_per_node})")
        moving = {m.service for m in self.moves}
        hotter = sorted((h for h in self.hot
                         if h.in_line and h.node_id == node_id and h.task_id != task_id
                         and h.service not in moving and h.heat > heat),
                        key=lambda h: -h.heat)
        free = b.leaving_per_node - leaving
        if len(hotter) >= free:
            first = hotter[0]
            return (f"{node_name} lets {free} task(s) leave at a time, hottest first: "
                    f"{first.service} ({first.heat:.0f} %) goes before this one "
                    f"({heat:.0f} %)")
        return None

    def over_arrival_budget(self, destinations: Iterable[tuple[str, str]]) -> str | None:
        """Why the task may not land now, or None. `destinations`: (node id, name) of every
        node it may land on. Swarm's scheduler picks one of them, so each must have room."""
        b = self.budgets
        full = [name for node_id, name in destinations
                if self.arriving(node_id) >= b.arriving_per_node]
        if full:
            return (f"{', '.join(full)} already receive(s) {b.arriving_per_node} task(s) "
                    f"(SWARMGUARD_MAX_ARRIVING_PER_NODE={b.arriving_per_node})")
        return None


def heat_of(alert: Alert) -> float:
    """The alert's heat in percent: the higher of its CPU and memory evidence, 0 when it
    carries neither (rules without those annotations: arrival order then)."""
    values = []
    for key in (CPU_PERCENT, MEMORY_PERCENT):
        try:
            value = float(alert.annotations.get(key, ""))
        except (TypeError, ValueError):
            continue
        if value == value and abs(value) != float("inf"):  # neither NaN nor infinite
            values.append(value)
    return max(values, default=0.0)


class StormLedger:
    """The receiver's memory of hot tasks and of actions in flight. Thread-safe: webhook
    threads observe alerts; action threads take a view, decide, and begin and end moves
    under `lock` so that no two decisions spend the same budget."""

    @classmethod
    def from_settings(cls, settings, monotonic: Callable[[], float] = time.monotonic
                      ) -> "StormLedger":
        """From the receiver's Settings (receiver/config.py)."""
        return cls(Budgets(settings.max_concurrent_actions, settings.max_leaving_per_node,
                           settings.max_arriving_per_node, settings.max_actions_per_minute),
                   settings.hot_task_memory, monotonic)

    def __init__(self, budgets: Budgets, hot_memory_s: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 capacity: int = HOT_TASKS_MAX):
        self.budgets = budgets
        self._hot_memory_s = hot_memory_s
        self._monotonic = monotonic
        self._capacity = capacity
        self._hot: OrderedDict[str, HotTask] = OrderedDict()  # by task id, least recent first
        self._moves: dict[str, Move] = {}  # by service
        self._starts: deque[float] = deque()
        self.lock = threading.RLock()

    # -- webhooks ---------------------------------------------------------------------------

    def observe(self, alerts: Iterable[Alert]) -> None:
        """Remember firing SwarmGuardMigrate alerts (their task, node and heat); forget
        resolved ones."""
        now = self._monotonic()
        with self.lock:
            for alert in alerts:
                if alert.name != MIGRATE_ALERT or not alert.task_id or not alert.node_id:
                    continue
                if not alert.firing:
                    self._hot.pop(alert.task_id, None)
                    continue
                before = self._hot.pop(alert.task_id, None)
                self._hot[alert.task_id] = HotTask(
                    alert.task_id, alert.service, alert.node_id, heat_of(alert), now,
                    in_line=before.in_line if before and before.node_id == alert.node_id else True)
                if len(self._hot) > self._capacity:
                    self._hot.popitem(last=False)

    # -- decisions --------------------------------------------------------------------------

    def view(self, retry_of: float | None = None) -> StormView:
        """`retry_of`: the start of an action being decided again (a retry after Docker
        failed it), which is left out: an action spends one start of the per-minute
        budget however many attempts it takes, and never stands in its own way."""
        now = self._monotonic()
        with self.lock:
            self._forget(now)
            starts = list(self._starts)
            if retry_of is not None and retry_of in starts:
                starts.remove(retry_of)
            return StormView(self.budgets, tuple(self._moves.values()), tuple(starts),
                             tuple(self._hot.values()))

    def in_line(self, task_id: str | None, in_line: bool) -> None:
        """Its own alert was judged: it may move once a budget or a destination frees
        (True), or it is moving or cannot move for good (False: it no longer holds back
        cooler tasks on its node)."""
        with self.lock:
            hot = self._hot.get(task_id or "")
            if hot is not None and hot.in_line != in_line:
                self._hot[hot.task_id] = HotTask(hot.task_id, hot.service, hot.node_id,
                                                 hot.heat, hot.seen, in_line)

    def begin(self, service: str, kind: str, from_node: str | None = None,
              destinations: Iterable[str] = (), maintenance: bool = False,
              retry_of: float | None = None) -> None:
        """An action on `service` starts now (replacing a retry's earlier begin).
        `retry_of`: the start of the attempt this one retries (ended since, to be decided
        again): it keeps that start and counts no new one."""
        now = self._monotonic()
        with self.lock:
            if service not in self._moves and retry_of is None:
                self._starts.append(now)
            started = retry_of if retry_of is not None else now
            self._moves[service] = Move(service, kind, from_node, frozenset(destinations),
                                        started, maintenance)

    def landed(self, service: str, node_id: str) -> None:
        """Swarm assigned the migrating task's replacement to `node_id`."""
        with self.lock:
            move = self._moves.get(service)
            if move is not None and node_id and move.destinations != {node_id}:
                self._moves[service] = Move(move.service, move.kind, move.from_node,
                                            frozenset({node_id}), move.started,
                                            move.maintenance)

    def end(self, service: str, maintenance: bool = False) -> float | None:
        """The action on `service` is over; returns when it started, if one was in flight.
        An alert's handling never ends a drain's or a rebalance's move of the same service
        (`maintenance` says whose end it is)."""
        with self.lock:
            move = self._moves.get(service)
            if move is not None and move.maintenance == maintenance:
                del self._moves[service]
                return move.started
            return None

    def _forget(self, now: float) -> None:
        while self._starts and now - self._starts[0] >= WINDOW_S:
            self._starts.popleft()
        # Alertmanager resends a firing alert every repeat_interval and sends its
        # resolution once; an alert not seen for hot_memory_s lost its resolution.
        for task_id in [t for t, h in self._hot.items() if now - h.seen >= self._hot_memory_s]:
            del self._hot[task_id]
