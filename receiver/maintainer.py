"""Node maintenance, carried out: `swarmguard drain`, `undrain` and `rebalance` (the
receiver's /maintenance/* API, app.py), and what `swarmguard status` shows.

The plans are receiver/maintenance.py's; every write is the Actuator's (the one writer),
under the same storm budgets as the alerts' actions (receiver/storm.py): a drain's move
takes the node's leave budget, counts against the cluster's budgets and the arrival
budget of the nodes it may land on, and alerts about a service being moved wait for it.

One background thread does the work, one move at a time: each tick it reads the
cluster, and for each node whose labels say it is being drained (maintenance.DRAIN_STATE)
it makes the next move, or finishes the drain. Because the drain's state is in the
node's labels, a receiver restarted mid-drain (or another replica) picks it up at its
first tick; a move Swarm was making when the receiver died completes or rolls back on
its own, and its leftover exclusion is lifted (maintenance.leftover_exclusions). What is
kept in memory only is the progress shown to people (which moves were made, by this
process) and a rebalance, which a restart ends (run it again).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import docker.errors

from receiver import events as E
from receiver import labels as L
from receiver import maintenance as M
from receiver.actuator import CONFLICT, Actuator, NodeChanged
from receiver.cluster import DOCKER_FAILURES, read_cluster, read_snapshot, task_from_dict
from receiver.config import Settings
from receiver.gate import ShuttingDown
from receiver.model import Node, Snapshot
from receiver.reasons import SUCCESS, WITHDRAWN
from receiver.reporting import Reporter
from receiver.storm import StormLedger
from swarmguard_config.rfc3339 import format_time, utc_now

_log = E.safe_logger("receiver.maintainer")
# Moves remembered per drain and rebalance for status (the newest kept).
PROGRESS_KEPT = 200
# How often the cluster is read while a drain or rebalance has moves left to make.
BUSY_INTERVAL_S = 1.0
# How often the cluster is read for drains to resume while nothing is being done: a
# drain found in a node's labels waits at most this long after a restart.
IDLE_INTERVAL_S = 5.0
# Events `swarmguard status` shows.
RECENT_EVENTS = 10


class Unavailable(Exception):
    """Docker could not be read or written (HTTP 503): nothing was changed, unless a node
    update whose answer was lost could not be read back either (Actuator.update_node)."""


@dataclass
class Progress:
    """What a drain or rebalance did and does, for `swarmguard status`."""
    state: str = "running"  # drain: moving | drained | stopped; rebalance: running | finished | stopped
    started_at: str = ""
    force: bool = False
    moved: list[dict] = field(default_factory=list)
    remaining: list[dict] = field(default_factory=list)
    current: str | None = None
    problem: str | None = None
    # service -> why its move failed: not tried again in this drain or rebalance
    failed: dict[str, str] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)  # rebalance: services already moved

    def as_json(self) -> dict:
        return {"state": self.state, "started_at": self.started_at, "force": self.force,
                "moved": list(self.moved), "remaining": list(self.remaining),
                "current": self.current, "problem": self.problem}


class Maintainer:
    def __init__(self, api, actuator: Actuator, storm: StormLedger, report: Reporter,
                 settings: Settings, *, events: E.EventLog | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic):
        self.api = api
        self.actuator = actuator
        self.storm = storm
        self.report = report
        self.settings = settings
        self.events = events
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._drains: dict[str, Progress] = {}  # by node id
        self._rebalance: Progress | None = None
        # The move announced (its `decision act`) and not yet answered by its outcome.
        self._moving: M.NodeMove | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the background thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="swarmguard-maintainer",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No move starts from now on (SIGTERM). A move being made finishes in Swarm on its
        own; the next receiver resumes the drain from the node's labels."""
        self._stopping.set()
        self._wake.set()

    def give_up(self) -> int:
        """At the shutdown deadline, once nothing may write to Docker any more (the gate is
        closed): a move announced and not yet answered is reported unwatched, and its
        thread reports nothing more. Returns how many (0 or 1)."""
        with self._lock:
            move, self._moving = self._moving, None
        if move is None:
            return 0
        self.report.move_unwatched(move)
        return 1

    def _run(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                self.tick()
                failing = False
            except ShuttingDown:
                return  # past the shutdown deadline: give_up() told what was left
            except DOCKER_FAILURES as exc:
                # Counted each time; logged once per outage (readiness says the rest).
                if failing:
                    self.report.count_docker_error("maintenance")
                else:
                    self.report.docker_error("maintenance", exc)
                failing = True
            except Exception:  # a background thread has no one else to tell
                _log.exception("Unexpected error in the maintenance loop")
            self._wake.wait(BUSY_INTERVAL_S if self._busy() else IDLE_INTERVAL_S)
            self._wake.clear()

    def _busy(self) -> bool:
        with self._lock:
            return (any(p.state == M.MOVING for p in self._drains.values())
                    or (self._rebalance is not None and self._rebalance.state == "running"))

    def tick(self) -> None:
        """One step: lift leftover exclusions, then at most one move (a drain's first, then
        a rebalance's), or finish what has nothing left to move."""
        snapshot = read_cluster(self.api)
        for service, exclusion in M.leftover_exclusions(snapshot, self._moving_now()):
            self.actuator.lift_exclusion(service, exclusion)
        for node in sorted(snapshot.nodes.values(), key=lambda n: n.hostname):
            if self._stopping.is_set():
                return
            if M.drain_state(node) == M.MOVING:
                if self._drain_step(snapshot, node):
                    return
            else:
                self._forget_drain(node)
        if self._rebalance is not None and self._rebalance.state == "running":
            self._rebalance_step(snapshot)

    def _moving_now(self) -> frozenset[str]:
        return frozenset(m.service for m in self.storm.view().moves)

    # -- drain ----------------------------------------------------------------------------------

    def drain(self, name: str, force: bool, dry_run: bool) -> tuple[int, dict]:
        """The answer to POST /maintenance/drain. Raises M.Refused or Unavailable, having
        changed nothing."""
        snapshot = self._read()
        node = M.find_node(snapshot, name)
        why = M.drain_refusal(snapshot, node)
        if why:
            raise M.Refused(409, why)
        plan = M.plan_drain(snapshot, node)
        if plan.blocked and not force:
            tasks = ", ".join(f"{b.service} ({b.task[:12]}): {b.why}" for b in plan.blocked)
            raise M.Refused(409, f"no other node can take {len(plan.blocked)} task(s) on "
                                 f"{node.hostname}: {tasks}; --force leaves them to Swarm's "
                                 f"drain", plan)
        if dry_run or self.settings.dry_run:
            return 200, {"dry_run": True, "changed": False, "plan": plan.as_json()}
        started_at = format_time(self.clock())

        def pause(spec: dict) -> dict:
            labels = dict(spec.get("Labels") or {})
            labels.update({M.DRAIN_STATE: M.MOVING, M.DRAIN_AT: started_at})
            if force:
                labels[M.DRAIN_FORCE] = "true"
            else:
                labels.pop(M.DRAIN_FORCE, None)
            return {**spec, "Availability": "pause", "Labels": labels}

        def still_drainable(data: dict) -> str | None:
            labels = (data.get("Spec") or {}).get("Labels") or {}
            if labels.get(M.DRAIN_STATE) or (data.get("Spec") or {}).get("Availability") == "drain":
                return f"{node.hostname} is already being drained"
            return None

        self._write_node(node, pause, still_drainable)
        with self._lock:
            self._drains[node.id] = Progress(M.MOVING, started_at, force)
        self.report.maintenance(M.DRAIN, E.BEGUN, node.id,
                                f"Draining {node.hostname}: paused; moving "
                                f"{sum(len(m.tasks) for m in plan.moves)} task(s) of "
                                f"{len(plan.moves)} service(s) start-first"
                                + (f", leaving {len(plan.left) + len(plan.blocked)} to Swarm"
                                   if plan.left or plan.blocked else ""))
        self._wake.set()
        return 202, {"dry_run": False, "changed": True, "plan": plan.as_json()}

    def _drain_step(self, snapshot: Snapshot, node: Node) -> bool:
        """Work on one draining node; True when a move was made (the tick ends there)."""
        progress = self._progress_of(node)
        force = node.labels.get(M.DRAIN_FORCE) == "true"
        plan = M.plan_drain(snapshot, node, progress.failed)
        progress.remaining = [{"service": m.service, "tasks": len(m.tasks)} for m in plan.moves]
        for planned in plan.moves:
            service = snapshot.service(planned.service)
            if service is None or service.updating or planned.service in self._moving_now():
                progress.problem = None
                progress.current = None
                continue
            fresh = read_snapshot(self.api, [planned.service])
            fresh_service = fresh.service(planned.service)
            fresh_node = fresh.node(node.id)
            move = (M.drain_move(fresh, fresh_service, fresh_node)
                    if fresh_service and fresh_node else None)
            if move is None:
                continue
            if not self._begin(move, progress):
                return False
            self._make(move, progress)
            return True
        if plan.moves:
            return False  # each waits for Swarm's own update, or another action, to end
        progress.current = None
        lifting = M.exclusions_of_drain(snapshot, node)
        if lifting:
            # Lifted at a next tick, once Swarm's update of each has ended.
            progress.remaining = [{"service": name, "tasks": 0} for name in lifting]
            return False
        if plan.blocked and not force:
            progress.problem = (f"{len(plan.blocked)} task(s) cannot move: "
                                + "; ".join(f"{b.service}: {b.why}" for b in plan.blocked[:3])
                                + " (undrain, or drain again with --force)")
            return False
        self._finish_drain(node, progress, plan)
        return False

    def _finish_drain(self, node: Node, progress: Progress, plan: M.DrainPlan) -> None:
        def drain(spec: dict) -> dict:
            labels = {**(spec.get("Labels") or {}), M.DRAIN_STATE: M.DRAINED}
            return {**spec, "Availability": "drain", "Labels": labels}

        def still_moving(data: dict) -> str | None:
            labels = (data.get("Spec") or {}).get("Labels") or {}
            return None if labels.get(M.DRAIN_STATE) == M.MOVING else "no longer being drained"

        try:
            self.actuator.update_node(node.id, drain, still_moving)
        except NodeChanged as exc:
            progress.problem = str(exc)
            return
        progress.state = M.DRAINED
        progress.problem = None
        progress.remaining = []
        left = len(plan.left) + len(plan.blocked)
        self.report.maintenance(M.DRAIN, E.FINISHED, node.id,
                                f"Drained {node.hostname}: {len(progress.moved)} move(s) made; "
                                f"availability drain"
                                + (f" (Swarm stops the {left} task(s) left)" if left else ""))

    def _progress_of(self, node: Node) -> Progress:
        with self._lock:
            progress = self._drains.get(node.id)
            if progress is None or progress.state != M.MOVING:
                progress = Progress(M.MOVING, node.labels.get(M.DRAIN_AT, ""),
                                    node.labels.get(M.DRAIN_FORCE) == "true")
                self._drains[node.id] = progress
                resumed = True
            else:
                resumed = False
        if resumed:
            self.report.maintenance(M.DRAIN, E.RESUMED, node.id,
                                    f"Resuming the drain of {node.hostname} "
                                    f"(asked for at {progress.started_at})")
        return progress

    def _forget_drain(self, node: Node) -> None:
        with self._lock:
            progress = self._drains.get(node.id)
            if progress is not None and progress.state == M.MOVING:
                # Undrained (by us or by hand) while moving.
                progress.state = "stopped"
                progress.current = None
            if progress is not None and M.drain_state(node) == M.DRAINED:
                progress.state = M.DRAINED

    # -- undrain --------------------------------------------------------------------------------

    def undrain(self, name: str, dry_run: bool) -> tuple[int, dict]:
        snapshot = self._read()
        node = M.find_node(snapshot, name)
        if node.availability == "active" and not M.drain_state(node):
            return 200, {"dry_run": dry_run, "changed": False,
                         "message": f"{node.hostname} already takes work"}
        message = (f"{node.hostname}: availability {node.availability} -> active"
                   + (f"; drain ({M.drain_state(node)}) ended" if M.drain_state(node) else ""))
        if dry_run or self.settings.dry_run:
            return 200, {"dry_run": True, "changed": False, "message": f"would set {message}"}

        def activate(spec: dict) -> dict:
            labels = {k: v for k, v in (spec.get("Labels") or {}).items()
                      if k not in M.DRAIN_LABELS}
            return {**spec, "Availability": "active", "Labels": labels}

        self._write_node(node, activate, None)
        with self._lock:
            progress = self._drains.pop(node.id, None)
        if progress is not None and progress.state == M.MOVING:
            self.report.maintenance(M.DRAIN, E.STOPPED, node.id,
                                    f"The drain of {node.hostname} ended by an undrain")
        self.report.maintenance("undrain", E.FINISHED, node.id, f"Undrained {message}")
        self._wake.set()
        return 200, {"dry_run": False, "changed": True, "message": message}

    # -- rebalance ------------------------------------------------------------------------------

    def rebalance(self, dry_run: bool) -> tuple[int, dict]:
        snapshot = self._read()
        with self._lock:
            running = self._rebalance is not None and self._rebalance.state == "running"
        if running:
            raise M.Refused(409, "a rebalance is already running")
        draining = [n.hostname for n in snapshot.nodes.values() if M.drain_state(n) == M.MOVING]
        if draining:
            raise M.Refused(409, f"{', '.join(draining)} is being drained; rebalance after "
                                 f"the drain")
        plan = M.plan_rebalance(snapshot, self.storm.view().hot_nodes(),
                                self.settings.rebalance_tolerance)
        if dry_run or self.settings.dry_run or not plan.moves:
            return 200, {"dry_run": dry_run or self.settings.dry_run, "changed": False,
                         "plan": plan.as_json()}
        with self._lock:
            self._rebalance = Progress("running", format_time(self.clock()))
        self.report.maintenance(M.REBALANCE, E.BEGUN, None,
                                f"Rebalancing: about {len(plan.moves)} move(s) planned")
        self._wake.set()
        return 202, {"dry_run": False, "changed": True, "plan": plan.as_json()}

    def _rebalance_step(self, snapshot: Snapshot) -> None:
        progress = self._rebalance
        assert progress is not None
        if any(M.drain_state(n) == M.MOVING for n in snapshot.nodes.values()):
            progress.state = "stopped"
            progress.problem = "a drain began: the rebalance stopped (run it again after)"
            self.report.maintenance(M.REBALANCE, E.STOPPED, None, progress.problem)
            return
        plan = M.plan_rebalance(snapshot, self.storm.view().hot_nodes(),
                                self.settings.rebalance_tolerance,
                                progress.done | set(progress.failed))
        progress.remaining = [{"service": m.service, "tasks": 1} for m in plan.moves]
        if not plan.moves:
            progress.state = "finished"
            progress.current = None
            counts = ", ".join(f"{k} {v}" for k, v in plan.as_json()["counts"].items())
            self.report.maintenance(M.REBALANCE, E.FINISHED, None,
                                    f"Rebalanced: {len(progress.moved)} move(s); tasks per "
                                    f"node {counts}")
            return
        planned = plan.moves[0]
        if planned.service in self._moving_now():
            return
        fresh = read_snapshot(self.api, [planned.service])
        service = fresh.service(planned.service)
        move = M.rebalance_move(fresh, service, planned) if service else None
        if move is None or service.updating:
            progress.done.add(planned.service)  # gone or busy: judged again next run
            return
        if self._begin(move, progress):
            self._make(move, progress)
            progress.done.add(move.service.name)

    # -- moves ----------------------------------------------------------------------------------

    def _begin(self, move: M.NodeMove, progress: Progress) -> bool:
        """Take the budgets for the move, as an alert's migration would, or say why not."""
        with self.storm.lock:
            view = self.storm.view()
            b = view.budgets
            over = view.over_cluster_budget()
            if not over and view.leaving(move.from_node.id) >= b.leaving_per_node:
                over = (f"{view.leaving(move.from_node.id)} task(s) already leaving "
                        f"{move.from_node.hostname} (SWARMGUARD_MAX_LEAVING_PER_NODE="
                        f"{b.leaving_per_node})")
            if not over:
                names = move.destination_names or move.destinations
                over = view.over_arrival_budget(zip(move.destinations, names))
            if over:
                progress.problem = f"waiting: {over}"
                return False
            self.storm.begin(move.service.name, move.kind, move.from_node.id,
                             move.destinations, maintenance=True)
        progress.problem = None
        return True

    def _make(self, move: M.NodeMove, progress: Progress) -> None:
        progress.current = move.service.name
        try:
            with self._lock:
                # Announced only while the receiver is not stopping, and in one step with
                # give_up(): an announced move is answered by its outcome or as unwatched.
                if self._stopping.is_set():
                    return
                self.actuator.gate.through()
                self.report.moving(move)
                self._moving = move
            result, detail, seconds = self.actuator.move_tasks(move, move.sentence)
        finally:
            self.storm.end(move.service.name, maintenance=True)
            progress.current = None
        with self._lock:
            given_up = self._moving is not move
            self._moving = None
        if given_up:
            return  # reported unwatched at the shutdown deadline
        if result == CONFLICT:
            # Nothing written: its act is answered, and a move planned again at the next
            # tick is announced afresh.
            self.report.moved(move, WITHDRAWN, f"not made: {detail}; planned again", None)
            return
        self.report.moved(move, result, detail, seconds)
        # Done with, whatever the result: status no longer shows it as to go.
        progress.remaining = [r for r in progress.remaining if r["service"] != move.service.name]
        where = sorted({t.node_id for t in self._tasks_now(move) if t.node_id != move.from_node.id})
        progress.moved.append({"service": move.service.name, "tasks": len(move.tasks),
                               "task": move.tasks[0] if move.tasks else None,
                               "to": ", ".join(self._hostname(n) for n in where) or None,
                               "seconds": round(seconds, 1), "result": result,
                               "detail": detail})
        del progress.moved[:-PROGRESS_KEPT]
        if result != SUCCESS:
            progress.failed[move.service.name] = f"its move {result.replace('_', ' ')}: {detail}"

    def _tasks_now(self, move: M.NodeMove):
        """Where the service's tasks are meant to run now: one list call (a whole
        read_snapshot would inspect the service, every node and its image again)."""
        try:
            return [t for t in map(task_from_dict, self.api.tasks(filters={"service": move.service.id}))
                    if t.desired_state == "running"]
        except DOCKER_FAILURES:
            return []

    def _hostname(self, node_id: str) -> str:
        try:
            return (self.api.inspect_node(node_id).get("Description") or {}).get("Hostname") or node_id
        except DOCKER_FAILURES:
            return node_id

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> dict:
        snapshot = self._read()
        view = self.storm.view()
        hot = view.hot_nodes()
        now = self.monotonic()
        with self._lock:
            drains = {k: v.as_json() for k, v in self._drains.items()}
            rebalance = self._rebalance.as_json() if self._rebalance else None
        nodes = []
        counts = M.task_counts(snapshot, snapshot.nodes.values())
        for node in sorted(snapshot.nodes.values(), key=lambda n: n.hostname):
            drain = None
            if M.drain_state(node):
                # A drain this process has no record of: what the node's labels say. The
                # state shown is the label's either way.
                drain = drains.get(node.id) or Progress(
                    started_at=node.labels.get(M.DRAIN_AT, ""),
                    force=node.labels.get(M.DRAIN_FORCE) == "true").as_json()
                drain["state"] = M.drain_state(node)
            nodes.append({"id": node.id, "hostname": node.hostname, "role": node.role,
                          "availability": node.availability, "state": node.state,
                          "tasks": counts.get(node.id, 0), "hot": node.id in hot,
                          "drain": drain})
        services = []
        for service in sorted(snapshot.services.values(), key=lambda s: s.name):
            if not L.opted_in(service.labels):
                continue
            running = [t for t in snapshot.tasks_of(service) if t.running]
            services.append({
                "name": service.name, "replicas": service.replicas, "running": len(running),
                "last_action": service.labels.get(L.LAST_ACTION),
                "last_action_at": service.labels.get(L.LAST_ACTION_AT),
                "last_action_reason": service.labels.get(L.LAST_ACTION_REASON),
                "futile_until": service.labels.get(L.FUTILE_UNTIL)})
        in_flight = [{"service": m.service, "kind": m.kind,
                      "from_node": snapshot.hostname(m.from_node) if m.from_node else None,
                      "seconds": round(now - m.started, 1)} for m in view.moves]
        return {"receiver": {"dry_run": self.settings.dry_run}, "nodes": nodes,
                "services": services, "in_flight": in_flight, "rebalance": rebalance,
                "recent": self._recent()}

    def _recent(self) -> list[dict]:
        if self.events is None:
            return []
        found, _, _ = self.events.since(0)
        wanted = [e for e in found if e["type"] in (E.DECISION, E.OUTCOME, E.MAINTENANCE)]
        return wanted[-RECENT_EVENTS:]

    # -- Docker ---------------------------------------------------------------------------------

    def _read(self) -> Snapshot:
        try:
            return read_cluster(self.api)
        except DOCKER_FAILURES as exc:
            raise Unavailable(self.report.docker_error("read", exc)) from exc

    def _write_node(self, node: Node, change, expect) -> None:
        try:
            self.actuator.update_node(node.id, change, expect)
        except NodeChanged as exc:
            raise M.Refused(409, f"{node.hostname}: {exc}; nothing was changed") from exc
        except docker.errors.APIError as exc:
            if exc.is_client_error():
                raise M.Refused(409, f"Docker refused the update of {node.hostname}: "
                                     f"{exc.explanation or exc}") from exc
            raise Unavailable(self.report.docker_error("node_update", exc)) from exc
        except DOCKER_FAILURES as exc:
            raise Unavailable(self.report.docker_error("node_update", exc)) from exc
