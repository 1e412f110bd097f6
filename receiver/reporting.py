"""What the receiver tells about everything that becomes of an alert: the log line, the
metric increments and the structured event, written together for each outcome.

The app, the Dispatcher and the Actuator say what happened (a webhook arrived, an alert was
skipped, an action started or ended, work was dropped, Docker failed) and the Reporter
writes all of it, so one outcome cannot be logged without its count or its event. Metric
names and labels, event fields and log sentences are public contract (docs/contract.md,
"Receiver events" and "Receiver metrics").

Each line keeps the logger of the stage it tells about, so an operator's log filters keep
working: receiver.app (what arrived), receiver.worker (what became of a piece of work),
receiver.actuator (an action being carried out).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Hashable, Sequence

from receiver import events as E
from receiver import labels as L
from receiver.actions import Action, FutileMove, Migration, Outcome, Skip, clock_of
from receiver.kinds import MIGRATE
if TYPE_CHECKING:
    from receiver.maintenance import NodeMove
from receiver.metrics import Metrics
from receiver.alerts import FIRING, Alert
from receiver.payload import Webhook
from receiver.reasons import (DROPPED_UNFINISHED, DROPPED_UNWATCHED, DROPPED_WAITING, DRY_RUN,
                              DUPLICATE, FAILED, STALE, SUCCESS, WITHDRAWN)

_arriving = E.safe_logger("receiver.app")
_dispatching = E.safe_logger("receiver.worker")
_acting = E.safe_logger("receiver.actuator")


# A refused request is counted every time, and logged at most once per status code in
# this many seconds: each 401 of an unauthenticated flood wrote a WARNING line. Per code,
# not per reason: a 400's reason quotes the sender's values, so varied bad input would
# still write a line each.
REJECTION_LOG_INTERVAL_S = 60.0


class Reporter:
    def __init__(self, metrics: Metrics, events: E.EventLog | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.metrics = metrics
        # None: no event stream (an Actuator driven on its own, as in tests).
        self.events = events
        self._rejections = _OncePer(REJECTION_LOG_INTERVAL_S, monotonic)

    def _emit(self, type: str, result: str, **fields) -> None:
        if self.events is not None:
            self.events.emit(type, result, **fields)

    # -- the HTTP layer (app.py) --------------------------------------------------------------

    def started(self, dry_run: bool, settings: str) -> None:
        ready = "SwarmGuard receiver ready" + (" in DRY-RUN mode" if dry_run else "")
        _arriving.info("%s: %s", ready, settings)
        self._emit(E.STARTED, E.DRY_RUN if dry_run else E.LIVE, message=ready)

    def rejected(self, sender: str | None, code: int, reason: str) -> None:
        self.metrics.rejected_requests.labels(str(code)).inc()
        held_back = self._rejections.due(code)
        if held_back is None:
            return
        if held_back:
            _arriving.warning("Rejected request from %s: %d %s (and %d more %d answers since "
                              "the last such line, not logged)", sender, code, reason,
                              held_back, code)
        else:
            _arriving.warning("Rejected request from %s: %d %s", sender, code, reason)

    def received(self, webhook: Webhook, now: datetime) -> None:
        """A webhook was taken: its alerts counted, the firing ones' age observed, each
        resolved one recorded (never acted on: the action an alert caused is not undone).
        Copies of an alert in the webhook are counted as received, and firing ones as
        skipped `duplicate`; nothing else (payload.Webhook left them out)."""
        for (name, status), count in webhook.counts.items():
            self.metrics.count_received(name, status, count)
        for (name, status), count in webhook.copies.items():
            self.metrics.count_received(name, status, count)
            if status == FIRING:
                self.metrics.alerts_skipped.labels(name, DUPLICATE).inc(count)
        for alert in webhook.firing:
            self.metrics.observe_age(alert.name,
                                     max((now - alert.starts_at).total_seconds(), 0.0))
        if len(webhook.firing) < len(webhook.alerts):
            for alert in webhook.alerts:
                if not alert.firing:
                    resolved = f"{alert.name} for {alert.service} resolved"
                    _arriving.info("%s", resolved)
                    self._emit(E.NOTIFICATION, E.RESOLVED, alert=alert, message=resolved,
                               received_at=now)
        if webhook.truncated_alerts:
            _arriving.warning("Alertmanager left out %d alerts of group %s (max_alerts)",
                              webhook.truncated_alerts, webhook.group_key)

    def shut_down(self, dropped: int) -> None:
        _arriving.info("Shutdown: work on %d service(s) dropped", dropped)

    # -- the Dispatcher (worker.py) -----------------------------------------------------------

    def duplicate(self, alert: Alert) -> None:
        # Counted, not logged nor an event: Alertmanager resends in bulk, and this is the
        # hot path of such floods (an event each halved the acknowledgement rate).
        self.metrics.count_skipped(alert.name, DUPLICATE)

    def skipped(self, skip: Skip, received_at: datetime | None, failed: bool = False) -> None:
        """An alert not acted on; `failed`: because the receiver could not (an error)."""
        self.metrics.count_skipped(skip.alert.name, skip.reason)
        if skip.reason == STALE:
            self.metrics.stale_alerts.labels(skip.alert.name).inc()
        if failed:
            _dispatching.error("%s", skip.sentence)
        else:
            _dispatching.info("%s", skip.sentence)
        self._emit(E.DECISION, E.SKIP, alert=skip.alert, reason=skip.reason,
                   message=skip.sentence, received_at=received_at)

    def finished(self, outcome: Outcome, received_at: datetime, recovery_s: float) -> None:
        """How one alert's handling ended. `recovery_s`: from the webhook's arrival to now."""
        d = outcome.decision
        if isinstance(d, Skip):
            self.skipped(d, received_at, failed=outcome.result == FAILED)
            return
        m = self.metrics
        m.actions.labels(d.kind, outcome.result).inc()
        if outcome.result == SUCCESS:
            m.last_action.labels(d.service.name, d.kind).set(time.time())
        if outcome.duration is not None:
            m.action_duration.labels(d.kind).observe(outcome.duration)
        if outcome.result == SUCCESS:
            m.recovery_duration.labels(d.kind).observe(recovery_s)
        if outcome.result == FAILED:
            _dispatching.error("Could not %s: %s", d.plan, outcome.detail)
        elif outcome.result == WITHDRAWN:
            _dispatching.info("Withdrew the decision to %s: %s", d.plan, outcome.detail)
        self._emit(E.OUTCOME, outcome.result, alert=d.alert, reason=outcome.detail or None,
                   message=d.dry_run_sentence if outcome.result == DRY_RUN else d.sentence,
                   received_at=received_at, duration_s=outcome.duration)

    def crashed(self, service: str) -> None:
        """Call from the `except` block: the traceback goes with the line."""
        _dispatching.exception("Unexpected error while handling alerts for %s", service)

    def dropped_waiting(self, service: str, alerts: Sequence[Alert],
                        received_at: datetime) -> None:
        _dispatching.warning("Dropping the waiting work on %s (%d alert(s)) at shutdown; "
                             "Alertmanager sends them again", service, len(alerts))
        self.metrics.work_dropped.labels(DROPPED_WAITING).inc()
        for alert in alerts:
            self._emit(E.DROPPED, DROPPED_WAITING, alert=alert, reason=DROPPED_WAITING,
                       received_at=received_at, message=f"work on {service} dropped at shutdown")

    def dropped_unfinished(self, service: str, deadline_s: float) -> None:
        """Work given up at the shutdown deadline before any write: it never writes."""
        _dispatching.warning("Shutting down with the work on %s unfinished after %.0f s: "
                             "dropped before any write to Docker; Alertmanager sends its "
                             "alerts again", service, deadline_s)
        self.metrics.work_dropped.labels(DROPPED_UNFINISHED).inc()
        self._emit(E.DROPPED, DROPPED_UNFINISHED, service=service, reason=DROPPED_UNFINISHED,
                   message=f"work on {service} dropped at shutdown before any write")

    def unwatched(self, service: str, deadline_s: float) -> None:
        """Work given up at the shutdown deadline after its first write: its end is not
        recorded."""
        _dispatching.error("Shutting down with the action on %s still unfinished after %.0f s; "
                           "Swarm completes or rolls back the update itself, but its outcome "
                           "goes unrecorded here", service, deadline_s)
        self.metrics.work_dropped.labels(DROPPED_UNWATCHED).inc()
        self._emit(E.DROPPED, DROPPED_UNWATCHED, service=service, reason=DROPPED_UNWATCHED,
                   message=f"action on {service} unwatched at shutdown: its outcome goes "
                           f"unrecorded")

    def ended_after_deadline(self, service: str, outcomes: int) -> None:
        """The thread of work given up at the deadline ended: already reported."""
        _dispatching.info("The work on %s ended after the shutdown deadline (%d outcome(s) "
                          "not reported: it was given up at the deadline)", service, outcomes)

    # -- the Actuator (actuator.py) -----------------------------------------------------------

    def acting(self, action: Action, dry_run: bool) -> None:
        """An action is decided: the event goes out before its first update call."""
        sentence = action.dry_run_sentence if dry_run else action.sentence
        # The event's service comes from the alert: the snapshot was read by that name.
        self._emit(E.DECISION, E.ACT, alert=action.alert, message=sentence)
        _acting.info("%s", sentence)

    def migration_ended(self, migration: Migration, outcome: Outcome) -> None:
        hot = migration.from_node.hostname or migration.from_node.id
        if outcome.result == SUCCESS:
            _acting.info("Migrated %s off %s in %.1f s: %s", migration.service.name, hot,
                         outcome.duration, outcome.detail)
        else:
            _acting.warning("%s of %s off %s %s after %.1f s: %s", MIGRATE.noun,
                            migration.service.name, hot, outcome.result.replace("_", " "),
                            outcome.duration, outcome.detail)

    def docker_error(self, operation: str, exc: Exception) -> str:
        """A Docker call failed: counted and logged; returns the sentence."""
        self.count_docker_error(operation)
        text = f"docker {operation} failed: {exc}"
        _acting.warning("%s", text)
        return text

    def prometheus_unanswered(self, why: str) -> None:
        """Prometheus could not say which alerts fire: this decision's alerts are skipped
        (counted there, reason prometheus_unreachable; SwarmGuardCannotAct reads it)."""
        _acting.warning("cannot confirm alerts with Prometheus, acting on none: %s", why)

    def prometheus_partly_unanswered(self, why: str) -> None:
        """One Prometheus did not answer, others did: their answers are used, and the
        alerts only the silent one fires are skipped unconfirmed."""
        _acting.warning("cannot ask one Prometheus, confirming with the others' answers: %s",
                        why)

    def count_docker_error(self, operation: str) -> None:
        self.metrics.docker_errors.labels(operation).inc()

    def conflict(self, failure: str) -> None:
        """The update lost a compare-and-swap: nothing was written."""
        self.count_docker_error("update_conflict")
        _acting.info("%s; re-reading and deciding again", failure)

    def landed_despite_error(self, service: str) -> None:
        _acting.info("The update of %s did land despite the error", service)

    def gave_up(self, service: str, attempts: int, failure: str) -> None:
        _acting.error("Gave up on %s after %d attempts: %s", service, attempts, failure)

    def rollback_recorded(self, service: str) -> None:
        _acting.info("Recorded the rolled-back migration of %s in its labels", service)

    def futile_found(self, found: FutileMove, dry_run: bool) -> None:
        """The hold of a futile move is written (the skip itself is reported as a skip)."""
        hold = (f"{found.service.name}'s migrations until {clock_of(found.until)} "
                f"({L.FUTILE_UNTIL})")
        if dry_run:
            _acting.info("**DRY-RUN**: would hold %s", hold)
        else:
            _acting.warning("Holding %s: moving it did not help", hold)

    def rollback_left_alone(self, service: str, state: str | None) -> None:
        _acting.warning("Not recording the rollback of %s: update state is %s", service, state)

    # -- maintenance (maintainer.py) ---------------------------------------------------------

    def moving(self, move: "NodeMove") -> None:
        """A drain's or rebalance's move is decided: the event goes out before the update."""
        self._emit(E.DECISION, E.ACT, service=move.service.name, kind=move.kind,
                   node=move.from_node.id, task=move.tasks[0] if move.tasks else None,
                   message=move.sentence)
        _acting.info("%s", move.sentence)

    def moved(self, move: "NodeMove", result: str, detail: str, duration: float | None) -> None:
        """A move's outcome; `duration` None: it was not made (withdrawn)."""
        self.metrics.actions.labels(move.kind, result).inc()
        if duration is not None:
            self.metrics.action_duration.labels(move.kind).observe(duration)
        if result == WITHDRAWN:
            _acting.info("Withdrew the move of %s off %s: %s", move.service.name,
                         move.from_node.hostname, detail)
        elif result == SUCCESS:
            self.metrics.last_action.labels(move.service.name, move.kind).set(time.time())
            _acting.info("Moved %s off %s in %.1f s: %s", move.service.name,
                         move.from_node.hostname, duration, detail)
        else:
            _acting.warning("Move of %s off %s %s after %.1f s: %s", move.service.name,
                            move.from_node.hostname, result.replace("_", " "), duration, detail)
        self._emit(E.OUTCOME, result, service=move.service.name, kind=move.kind,
                   node=move.from_node.id, task=move.tasks[0] if move.tasks else None,
                   reason=detail or None, message=move.sentence, duration_s=duration)

    def move_unwatched(self, move: "NodeMove") -> None:
        """A drain's or rebalance's move under way at the shutdown deadline: its end goes
        unrecorded (the next receiver resumes the drain and lifts its exclusion)."""
        _acting.error("Shutting down with the move of %s off %s still under way; Swarm "
                      "completes or rolls it back itself, but its outcome goes unrecorded "
                      "here (the next receiver resumes the drain)", move.service.name,
                      move.from_node.hostname)
        self.metrics.work_dropped.labels(DROPPED_UNWATCHED).inc()
        self._emit(E.DROPPED, DROPPED_UNWATCHED, service=move.service.name, kind=move.kind,
                   node=move.from_node.id, task=move.tasks[0] if move.tasks else None,
                   reason=DROPPED_UNWATCHED,
                   message=f"move of {move.service.name} unwatched at shutdown: its outcome "
                           f"goes unrecorded")

    def maintenance(self, kind: str, result: str, node: str | None, message: str) -> None:
        """A drain, undrain or rebalance began, resumed, ended or stopped."""
        if result == E.STOPPED:
            _acting.warning("%s", message)
        else:
            _acting.info("%s", message)
        self._emit(E.MAINTENANCE, result, kind=kind, node=node, message=message)

    def rollback_unfinished(self, service: str, timeout_s: float) -> None:
        _acting.warning("Rollback of %s did not complete within %.0f s; not recorded",
                        service, timeout_s)


class _OncePer:
    """At most one log line per key every `interval` seconds, and how many were held back."""

    def __init__(self, interval: float, monotonic: Callable[[], float]):
        self._interval = interval
        self._monotonic = monotonic
        self._last: dict[Hashable, float] = {}  # key -> when its last line was written
        self._held: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def due(self, key: Hashable) -> int | None:
        """None: hold this line back. Else write it: the number of lines held back since
        the last one of `key`."""
        now = self._monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)
