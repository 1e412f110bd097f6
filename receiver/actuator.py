"""The one module that writes to Docker.

`Actuator.handle(alerts)` takes the alerts about ONE service, reads a fresh snapshot, decides
(decisions.decide), and carries out at most one action as ONE `update_service` call with the
Version.Index it read: a compare-and-swap. When Swarm answers "update out of sequence"
(someone, maybe another receiver, changed the service since our read) it re-reads and
decides again, so a second receiver sees the first one's labels and stands down. Other
Docker errors are retried with backoff, then reported. Dry run decides and logs, and writes
nothing. The only other writes are labels-only updates: after Swarm rolls a migration back
(which restores the old labels too), the record of the attempt is put back; and when a
migration proves futile (receiver/futile.py), the service's migrations are held. Every
write, and the announcement of an action, first passes the shutdown gate (gate.py).
"""
from __future__ import annotations

import copy
import dataclasses
import random
import time
from datetime import datetime
from typing import Callable, Sequence

import docker.errors

from receiver import events as E
from receiver import labels as L
from receiver.cluster import DOCKER_FAILURES, read_snapshot, task_from_dict
from receiver.config import Settings
from receiver.confirmation import FiringAlerts, Unanswered
from receiver.actions import Action, Decision, FutileMove, Migration, Outcome, Skip
from receiver.decisions import Policy, decide
from receiver.gate import ShuttingDown, WriteGate
from receiver.kinds import MIGRATE
from receiver.metrics import Metrics
from receiver.alerts import Alert
from receiver.model import Task
from receiver.reasons import (DOCKER_ERROR, DRY_RUN, FAILED, PROMETHEUS_UNREACHABLE,
                              ROLLED_BACK, SKIPPED, SUCCESS, TIMEOUT, UNCONFIRMED, WITHDRAWN)
from receiver.reporting import Reporter
from receiver.maintenance import NodeMove
from receiver.spec import (futile_arguments, lift_arguments, move_arguments, record_arguments,
                           update_arguments)
from receiver.storm import StormLedger, StormView
from swarmguard_config.rfc3339 import utc_now

# move_tasks: the service changed between read and write; nothing was written.
CONFLICT = "conflict"
ROLLBACK_STATES = frozenset({"rollback_started", "rollback_paused", "rollback_completed"})


class Actuator:
    def __init__(self, api, settings: Settings, metrics: Metrics, *,
                 clock: Callable[[], datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random,
                 events: E.EventLog | None = None,
                 storm: StormLedger | None = None,
                 firing_alerts: Callable[[], FiringAlerts] | None = None,
                 gate: WriteGate | None = None,
                 report: Reporter | None = None):
        self.api = api
        self.metrics = metrics
        # Which alerts Prometheus fires now (receiver/confirmation.py): asked once per
        # decision. None: every alert counts as confirmed (tests of the receiver itself).
        self.firing_alerts = firing_alerts
        # Passed before each write and each announcement; closed at the shutdown deadline
        # (receiver/gate.py). An alert's work passes it under its service's name.
        self.gate = gate or WriteGate()
        # Hot tasks and actions in flight, shared by every action thread (receiver/storm.py).
        self.storm = storm or StormLedger.from_settings(settings, monotonic)
        # Every log line, metric and event of an action (receiver/reporting.py): the app's
        # one Reporter, else one on `metrics` and `events` (an Actuator driven on its own).
        # `events` gets a decision event for each action, before the update call.
        self.report = report or Reporter(metrics, events)
        self.settings = settings
        # What deciding needs of the settings, taken once: they are frozen.
        self.policy = Policy.from_settings(settings)
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.jitter = jitter

    def handle(self, alerts: Sequence[Alert]) -> list[Outcome]:
        """Decide on fresh state and act; one Outcome per alert, in order."""
        names = {a.service for a in alerts}
        if len(names) != 1:
            raise ValueError(f"handle() takes the alerts of one service, got {sorted(names)}")
        name = next(iter(names))
        # The actions announced (their `decision act` event), by their alert's instance.
        announced: dict[tuple, Action] = {}
        try:
            firing, refused = self._confirm(alerts)
            confirmed = [a for a in alerts if id(a) not in refused]
            outcomes = iter(self._handle(confirmed, name, announced, firing)
                            if confirmed else ())
            return [Outcome(refused[id(a)], SKIPPED) if id(a) in refused
                    else _withdrawn(next(outcomes), announced) for a in alerts]
        finally:
            # Whatever happened, this service's action no longer holds any budget.
            self.storm.end(name)

    def _confirm(self, alerts: Sequence[Alert]) -> tuple[FiringAlerts | None, dict[int, Skip]]:
        """(what Prometheus fires, the alerts it does not confirm by id): nothing Prometheus
        does not fire is decided on, and while it cannot say, nothing is."""
        if self.firing_alerts is None:
            return None, {}
        asked = self.monotonic()
        try:
            firing = self.firing_alerts()
        except Unanswered as exc:
            self.report.prometheus_unanswered(str(exc))
            self.metrics.confirmation_duration.observe(self.monotonic() - asked)
            return None, {id(a): Skip(a, PROMETHEUS_UNREACHABLE,
                                      f"cannot confirm it with Prometheus: {exc}")
                          for a in alerts}
        self.metrics.confirmation_duration.observe(self.monotonic() - asked)
        for why in firing.unanswered:
            self.report.prometheus_partly_unanswered(why)
        ignoring = self.settings.prometheus_external_label_names
        return firing, {id(a): Skip(a, UNCONFIRMED, "no Prometheus fires this alert "
                                                   "with these labels")
                        for a in alerts if not firing.confirms(a, ignoring)}

    def _storm_view(self, firing: FiringAlerts | None, retry_of: float | None = None
                    ) -> StormView:
        """The storm ledger's view, with only the hot tasks Prometheus still fires for."""
        view = self.storm.view(retry_of)
        if firing is None:
            return view
        return dataclasses.replace(view, hot=tuple(
            h for h in view.hot if firing.fires_for_task(h.task_id, h.node_id)))

    def _handle(self, alerts: Sequence[Alert], name: str, announced: dict[tuple, Action],
                firing: FiringAlerts | None = None) -> list[Outcome]:
        failure = ""
        decisions: list[Decision] = []
        action: Action | None = None
        # An update that failed ambiguously (no answer, a 5xx, an answer that could not be
        # read) may still have been applied:
        # (action, decisions, start time, the label stamp it wrote).
        pending: tuple[Action, list[Decision], float, str] | None = None
        # When this action began to count against the per-minute budget (its first attempt).
        retry_of: float | None = None
        for attempt in range(1, self.settings.docker_attempts + 1):
            if attempt > 1:
                self.sleep(self._backoff(attempt - 1))
            try:
                snapshot = read_snapshot(self.api, [name])
            except DOCKER_FAILURES as exc:
                failure = self.report.docker_error("read", exc)
                continue
            if pending:
                svc = snapshot.service(name)
                if svc and svc.labels.get(L.LAST_ACTION_AT) == pending[3]:
                    # Our stamp is on the service: that update landed. Do not make another.
                    self.report.landed_despite_error(name)
                    action, decisions, started, _ = pending
                    self._begin(action)
                    return self._outcomes(decisions, action, self._complete(action, started))
                pending = None
            now = self.clock()
            with self.storm.lock:
                # Decide and take the budget in one step: two action threads never spend
                # the same budget. A retry first gives back what its last attempt took,
                # and keeps the start it counted: one action is one start per minute.
                ended = self.storm.end(name)
                retry_of = ended if ended is not None else retry_of
                decisions = decide(alerts, snapshot, self.policy, now,
                                   self._storm_view(firing, retry_of))
                action = next((d for d in decisions if isinstance(d, Action)), None)
                self._note_in_line(decisions)
                if action is not None and not self.settings.dry_run:
                    self._begin(action, retry_of)
            if action is None:
                self._hold_futile(decisions)
                return [Outcome(d, SKIPPED) for d in decisions]
            self._announce(action, announced)
            if self.settings.dry_run:
                return self._outcomes(decisions, action, Outcome(action, DRY_RUN))

            started = self.monotonic()
            try:
                self.api.update_service(action.service.id, version=action.service.version,
                                        **update_arguments(action, now))
            except docker.errors.APIError as exc:
                if _out_of_sequence(exc) or isinstance(exc, docker.errors.NotFound):
                    # Nothing was written: decide again on what is there now. Another
                    # receiver's labels will make this alert stale or in cooldown.
                    failure = f"{name} changed under us ({exc.explanation or exc})"
                    self.report.conflict(failure)
                    continue
                failure = self.report.docker_error("update", exc)
                if exc.is_client_error():
                    # The daemon refused the spec itself: retrying cannot help.
                    return self._outcomes(decisions, action,
                                          Outcome(action, FAILED, detail=failure))
                pending = (action, decisions, started, L.format_time(now))
                continue
            except DOCKER_FAILURES as exc:
                # No answer, or one that could not be read: the stamp read back tells.
                failure = self.report.docker_error("update", exc)
                pending = (action, decisions, started, L.format_time(now))
                continue
            return self._outcomes(decisions, action, self._complete(action, started))

        if pending:
            # The last update sent may have landed, and no read has told yet: one more.
            self.sleep(self._backoff(self.settings.docker_attempts))
            landed = self._stamp_on(name, pending[3])
            if landed:
                self.report.landed_despite_error(name)
                action, decisions, started, _ = pending
                return self._outcomes(decisions, action, self._complete(action, started))
            if landed is None:
                failure += "; whether its update landed is not known"
        self.report.gave_up(name, self.settings.docker_attempts, failure)
        if action is not None:
            return self._outcomes(decisions, action, Outcome(action, FAILED, detail=failure))
        return [Outcome(Skip(a, DOCKER_ERROR, failure), FAILED) for a in alerts]

    def _stamp_on(self, name: str, stamp: str) -> bool | None:
        """Whether the service carries the label stamp of our update (it landed), read
        again; None when that read fails too (counted)."""
        try:
            data = self.api.inspect_service(name, insert_defaults=False)
        except docker.errors.NotFound:
            return False
        except DOCKER_FAILURES as exc:
            self.report.docker_error("read", exc)
            return None
        return ((data.get("Spec") or {}).get("Labels") or {}).get(L.LAST_ACTION_AT) == stamp

    # -- after the update -------------------------------------------------------------------

    def _complete(self, action: Action, started: float) -> Outcome:
        if not isinstance(action, Migration):
            # A scale step is done when Swarm accepts the update: nothing moves to watch.
            return Outcome(action, SUCCESS, self.monotonic() - started)
        result, detail = self._watch_migration(action, started)
        if result == ROLLED_BACK:
            self._remember_rollback(action)
        outcome = Outcome(action, result, self.monotonic() - started, detail)
        self.report.migration_ended(action, outcome)
        return outcome

    def _watch_migration(self, action: Migration, started: float) -> tuple[str, str]:
        """Until the new task runs (healthy, where there is a health check: swarmkit only
        reports running after that) and the old one is out of rotation (desired shutdown)."""
        old_id = action.task.id if action.task else None
        slot = action.task.slot if action.task else None

        def settled(tasks: list[Task]) -> tuple[str, str] | None:
            old = next((t for t in tasks if t.id == old_id), None)
            assigned = [t for t in tasks if t.id != old_id and t.slot == slot and t.node_id
                        and t.desired_state == "running"]
            if assigned:
                self.storm.landed(action.service.name, assigned[0].node_id)
            new = [t for t in tasks if t.id != old_id and t.slot == slot and t.running]
            if new and (old is None or old.desired_state != "running"):
                return SUCCESS, f"new task {new[0].id[:12]} running"
            return None
        return self._watch(action.service.id, started, self.settings.migration_timeout,
                           settled)

    def _watch(self, service_id: str, started: float, timeout: float,
               settled: Callable[[list[Task]], tuple[str, str] | None],
               removed: str | None = None) -> tuple[str, str]:
        """(result, detail) of an update being made: read the service's tasks every
        watch_interval until `settled(tasks)` tells how it ended, Swarm's update ends
        badly, or `timeout` seconds since `started` have passed. `removed`: the detail
        that ends the watch as failed when the service is gone; None: a read failure like
        any other."""
        deadline = started + timeout
        while self.monotonic() < deadline:
            self.sleep(self.settings.watch_interval)
            self._still_watching()
            try:
                tasks, state = self._read_update(service_id)
            except DOCKER_FAILURES as exc:
                if removed is not None and isinstance(exc, docker.errors.NotFound):
                    return FAILED, removed
                self.report.docker_error("watch", exc)
                continue
            ended = _ended_badly(state) or settled(tasks)
            if ended:
                return ended
        return TIMEOUT, f"not settled within {timeout:.0f} s"

    def _read_update(self, service_id: str):
        """The service's tasks, and the state of Swarm's update of it. Raises what Docker
        raises."""
        tasks = [task_from_dict(t) for t in self.api.tasks(filters={"service": service_id})]
        state = (self.api.inspect_service(service_id).get("UpdateStatus") or {}).get("State")
        return tasks, state

    def _remember_rollback(self, action: Migration) -> None:
        """Swarm's rollback restores the previous spec, labels included, so our record of
        the migration vanishes with it and the next repeat of the alert would try again at
        once. Once the rollback has completed, write the record back in a labels-only update
        (which reschedules no task), so the migrate cooldown holds across receivers."""
        deadline = self.monotonic() + self.settings.migration_timeout
        while self.monotonic() < deadline:
            self._still_watching()
            try:
                data = self.api.inspect_service(action.service.id, insert_defaults=False)
                state = (data.get("UpdateStatus") or {}).get("State")
                if state == "rollback_completed":
                    reason = f"rolled back: {action.sentence}"
                    self.gate.through(action.alert.service)
                    self.api.update_service(
                        data["ID"], version=data["Version"]["Index"],
                        **record_arguments(data["Spec"], action.kind, self.clock(), reason))
                    self.report.rollback_recorded(action.service.name)
                    return
                if state != "rollback_started":
                    # Paused, or someone updated the service meanwhile: leave it to them.
                    self.report.rollback_left_alone(action.service.name, state)
                    return
            except docker.errors.APIError as exc:
                if not _out_of_sequence(exc):
                    self.report.docker_error("record", exc)
                    return
            except DOCKER_FAILURES as exc:
                self.report.docker_error("record", exc)
            self.sleep(self.settings.watch_interval)
        self.report.rollback_unfinished(action.service.name, self.settings.migration_timeout)

    def _hold_futile(self, decisions: Sequence[Decision]) -> None:
        """A migration found futile: hold the service's migrations in its labels, in ONE
        labels-only update with the Version just read (a compare-and-swap). Whatever fails
        (someone changed the service since, Docker), nothing is written: it is counted and
        logged, the skip stands, and the alert's next resend finds it again. Only when
        nothing else is done: an action in the same batch changes the service, and its
        alert is judged again after it."""
        found = next((d for d in decisions if isinstance(d, FutileMove)), None)
        if found is None:
            return
        if self.settings.dry_run:
            self.report.futile_found(found, dry_run=True)
            return
        self.gate.through(found.alert.service)
        try:
            self.api.update_service(found.service.id, version=found.service.version,
                                    **futile_arguments(found.service.spec, found.until))
        except DOCKER_FAILURES as exc:
            self.report.docker_error("record", exc)
            return
        self.report.futile_found(found, dry_run=False)

    # -- maintenance (receiver/maintainer.py decides; these are its writes) -----------------

    def update_node(self, node_id: str, change: Callable[[dict], dict],
                    expect: Callable[[dict], str | None] | None = None) -> dict:
        """ONE update of the node's spec, a compare-and-swap on the version just read:
        `change(spec)` returns the new spec; `expect(node)`, checked on that same read,
        returns why the update must not be made (raised as NodeChanged, nothing written).
        "update out of sequence" (someone changed the node between read and write) is
        raised as NodeChanged. An update whose answer is missing or unreadable, or a server
        error, may still have landed: the node is read again, and if it holds the new spec
        the update is done (the error counted, not raised). Otherwise Docker's error
        propagates."""
        data = self.api.inspect_node(node_id)
        why = expect(data) if expect else None
        if why:
            raise NodeChanged(why)
        version = data["Version"]["Index"]
        spec = change(copy.deepcopy(data.get("Spec") or {}))
        self.gate.through()
        try:
            self.api.update_node(node_id, version=version, node_spec=spec)
        except DOCKER_FAILURES as exc:
            if isinstance(exc, docker.errors.APIError):
                if _out_of_sequence(exc):
                    raise NodeChanged(f"the node changed while it was being updated ({exc.explanation})") from exc
                if exc.is_client_error():
                    raise  # refused: nothing was written
            if not self._node_holds(node_id, version, spec):
                raise
            self.report.docker_error("node_update", exc)
            self.report.landed_despite_error(f"node {node_id}")
        return spec

    def _node_holds(self, node_id: str, version: int, spec: dict) -> bool:
        """Whether the node, read again, carries `spec` in a version after `version`: an
        update whose call failed landed. False when that cannot be read either."""
        try:
            data = self.api.inspect_node(node_id)
        except DOCKER_FAILURES:
            return False
        return data["Version"]["Index"] > version and data.get("Spec") == spec

    def move_tasks(self, move: NodeMove, reason: str) -> tuple[str, str, float]:
        """Carry out a drain's or rebalance's move: one update of the service (its Version
        as read: a compare-and-swap), then watch until no task of it is meant to run on the
        node it leaves and its replicas run elsewhere (healthy, where checked). Then take
        the exclusion off again. Returns (result, detail, seconds); result CONFLICT when
        the service changed since it was read: nothing was written, plan again."""
        started = self.monotonic()
        self.gate.through()
        try:
            self.api.update_service(move.service.id, version=move.service.version,
                                    **move_arguments(move.service.spec, move.kind,
                                                     move.constraints, move.exclusion,
                                                     self.clock(), reason))
        except docker.errors.APIError as exc:
            if _out_of_sequence(exc) or isinstance(exc, docker.errors.NotFound):
                self.report.conflict(f"{move.service.name} changed under us ({exc.explanation or exc})")
                return CONFLICT, str(exc.explanation or exc), 0.0
            if exc.is_client_error():
                # The daemon refused the spec itself: nothing was written.
                return FAILED, self.report.docker_error("update", exc), self.monotonic() - started
            # A server error may still have been applied (as in _handle): the watch tells.
            self.report.docker_error("update", exc)
        except DOCKER_FAILURES as exc:
            # No answer, or one that could not be read: maybe applied; the watch tells.
            self.report.docker_error("update", exc)
        result, detail = self._watch_move(move, started)
        if result == SUCCESS:
            self.lift_exclusion(move.service.name, move.exclusion)
        return result, detail, self.monotonic() - started

    def _watch_move(self, move: NodeMove, started: float) -> tuple[str, str]:
        replicas = move.service.replicas or 0
        # The tasks from before the update (the moved ones included): any other is a
        # replacement, and the node it lands on is the move's arrival.
        old = set(move.known_tasks) | set(move.tasks)

        def settled(tasks: list[Task]) -> tuple[str, str] | None:
            live = [t for t in tasks if t.desired_state == "running"]
            for t in live:
                if t.node_id and t.node_id != move.from_node.id and t.id not in old:
                    self.storm.landed(move.service.name, t.node_id)
            behind = [t for t in live if t.node_id == move.from_node.id]
            elsewhere = [t for t in live if t.running and t.node_id != move.from_node.id]
            if not behind and len(elsewhere) >= replicas:
                where = sorted({t.node_id[:12] for t in elsewhere if t.id not in old})
                return SUCCESS, f"{len(elsewhere)} task(s) running elsewhere ({', '.join(where)})"
            return None
        # Each task replaced waits for its successor's health: allow each the whole
        # migration timeout.
        return self._watch(move.service.id, started,
                           self.settings.migration_timeout * max(len(move.tasks), 1), settled,
                           removed=f"{move.service.name} was removed during the move")

    def lift_exclusion(self, name: str, exclusion: str) -> bool:
        """Take SwarmGuard's exclusion off the service again, if it is still the one given
        (a later migration's own is left alone): a labels-and-constraints update that
        replaces no task. Retried on a conflict; False when it could not be made (logged;
        the maintainer finds it again: maintenance.drain_leftovers)."""
        for attempt in range(1, self.settings.docker_attempts + 1):
            if attempt > 1:
                self.sleep(self._backoff(attempt - 1))
            try:
                data = self.api.inspect_service(name, insert_defaults=False)
                labels = (data.get("Spec") or {}).get("Labels") or {}
                if not exclusion or labels.get(L.PLACEMENT_EXCLUSION) != exclusion:
                    return True
                self.gate.through()
                self.api.update_service(data["ID"], version=data["Version"]["Index"],
                                        **lift_arguments(data["Spec"]))
                return True
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as exc:
                if not _out_of_sequence(exc):
                    self.report.docker_error("lift", exc)
                    return False
            except DOCKER_FAILURES as exc:
                self.report.docker_error("lift", exc)
        return False

    # -- helpers -----------------------------------------------------------------------------

    def _announce(self, action: Action, announced: dict[tuple, Action]) -> None:
        """Right before each attempt's update call: through the gate (ShuttingDown once it
        is closed: nothing is announced nor written). The `decision act` event goes out once
        per action, however many attempts its update takes: a retry is logged and counted
        as a Docker error, not announced again."""
        self.gate.through(action.alert.service)
        if action.alert.instance not in announced:
            self.report.acting(action, self.settings.dry_run)
        announced[action.alert.instance] = action

    def _begin(self, action: Action, retry_of: float | None = None) -> None:
        if isinstance(action, Migration):
            self.storm.begin(action.service.name, action.kind, action.from_node.id,
                             action.destinations, retry_of=retry_of)
        else:
            self.storm.begin(action.service.name, action.kind, retry_of=retry_of)

    def _still_watching(self) -> None:
        """A watch stops once the gate is closed: past the shutdown deadline its end is
        no longer recorded (the Dispatcher reported it unwatched), and the process is
        about to exit."""
        if self.gate.closed:
            raise ShuttingDown("shutting down: the watch is abandoned")

    def _note_in_line(self, decisions: Sequence[Decision]) -> None:
        """A hot task held back by something that passes (a budget, a hot destination)
        stays in line to leave its node; one acted on, or unable to move for good, no
        longer holds back cooler ones."""
        for d in decisions:
            if d.alert.kind == MIGRATE.name:
                self.storm.in_line(d.alert.task_id, isinstance(d, Skip) and not d.lasting)

    @staticmethod
    def _outcomes(decisions: list[Decision], action: Action, outcome: Outcome
                  ) -> list[Outcome]:
        return [outcome if d is action else Outcome(d, SKIPPED) for d in decisions]

    def _backoff(self, retry: int) -> float:
        delay = min(self.settings.docker_backoff_max,
                    self.settings.docker_backoff * 2 ** (retry - 1))
        # Jitter keeps two receivers that collided from colliding again in lockstep.
        return delay * (0.5 + 0.5 * self.jitter())


def _withdrawn(outcome: Outcome, announced: dict[tuple, Action]) -> Outcome:
    """An announced action is answered by an outcome even when it was not made: an attempt
    failed without writing, and its alert, decided again on what is there now, is skipped
    (another receiver acted first, Swarm moved the task itself...)."""
    skip = outcome.decision
    action = announced.get(skip.alert.instance) if isinstance(skip, Skip) else None
    if action is None:
        return outcome
    return Outcome(action, WITHDRAWN, detail=f"not made: decided again, {skip.reason}: {skip.why}")


def _ended_badly(state: str | None) -> tuple[str, str] | None:
    """(result, detail) when Swarm's update of a service ended without its new tasks:
    rolled back, or paused waiting for a person."""
    if state in ROLLBACK_STATES:
        return ROLLED_BACK, f"Swarm rolled the update back (state {state})"
    if state == "paused":
        return FAILED, "Swarm paused the update"
    return None


class NodeChanged(Exception):
    """A node update was not made: the node is not as expected, or changed meanwhile."""


def _out_of_sequence(exc: docker.errors.APIError) -> bool:
    return "out of sequence" in f"{exc.explanation or ''} {exc}".lower()
