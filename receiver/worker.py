"""Acknowledge fast, act in the background, one action per service at a time.

Alertmanager times out and resends a webhook that blocks for a whole migration, so the HTTP
handler only hands alerts to the Dispatcher. The Dispatcher keeps an in-flight set of
service names: while a service is being handled, further alerts about it are skipped as
"already in progress" (Alertmanager repeats them anyway if they stay true). The set lives
in this process, which is why gunicorn runs one worker with threads (gunicorn.conf.py);
across receiver replicas, Swarm's version compare-and-swap does the same job.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from receiver import actuator as A
from receiver.decisions import IN_PROGRESS, STALE, Action, Skip
from receiver.metrics import Metrics
from receiver.payload import Alert

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
DUPLICATE = "duplicate"
# An alert instance (same alert, same start) that was fully handled this recently is not
# handled again: Alertmanager resends on retries, from HA replicas and on every group
# change, and each handling reads the cluster. The decision could not have changed
# within seconds except by our own action, which makes the alert stale anyway. Measured
# (make bench-receiver): without it, a flood of one webhook kept the background threads
# reading Docker and halved the acknowledgement rate.
DUPLICATE_WINDOW_S = 5.0
_RECENT_PRUNE_AT = 4096


@dataclass(frozen=True)
class Receipt:
    """What the webhook's answer tells Alertmanager (and a human with curl)."""
    queued: tuple[str, ...]  # services now being handled
    busy: tuple[str, ...]  # services skipped: an action was already in progress


class InlineExecutor(Executor):
    """Runs each job at once in the caller's thread: deterministic tests and benchmarks."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # a Future carries whatever the job raised
            future.set_exception(exc)
        return future


class Dispatcher:
    def __init__(self, handle: Callable[[Sequence[Alert]], list[A.Outcome]],
                 metrics: Metrics, executor: Executor | None = None, workers: int = 4,
                 monotonic: Callable[[], float] = time.monotonic):
        self._handle = handle
        self._metrics = metrics
        self._executor = executor or ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="swarmguard-action")
        self._monotonic = monotonic
        self._busy: set[str] = set()
        self._recent: dict[tuple, float] = {}  # alert instance -> when its handling ended
        self._lock = threading.Lock()

    def submit(self, alerts: Sequence[Alert]) -> Receipt:
        """Queue the firing alerts, grouped by service; never blocks on Docker."""
        received = self._monotonic()
        groups: dict[str, list[Alert]] = {}
        for alert in alerts:
            if not alert.firing:
                continue
            if self._handled_recently(alert, received):
                self._metrics.count_skipped(alert.name, DUPLICATE)
                continue
            groups.setdefault(alert.service, []).append(alert)
        queued, busy = [], []
        for service, group in groups.items():
            with self._lock:
                if service in self._busy:
                    busy.append(service)
                    for alert in group:
                        self._record(A.Outcome(Skip(alert, IN_PROGRESS,
                                                    "an action on it is already in progress"),
                                               A.SKIPPED), received)
                    continue
                self._busy.add(service)
            self._metrics.in_flight.inc()
            try:
                self._executor.submit(self._run, service, group, received)
            except RuntimeError:  # the executor is shutting down: the worker is exiting
                with self._lock:
                    self._busy.discard(service)
                self._metrics.in_flight.dec()
                busy.append(service)
                continue
            queued.append(service)
        return Receipt(tuple(queued), tuple(busy))

    def busy(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._busy)

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)

    def _run(self, service: str, alerts: list[Alert], received: float) -> None:
        try:
            outcomes = self._handle(alerts)
        except Exception as exc:  # a background thread has no one else to tell
            log.exception("Unexpected error while handling alerts for %s", service)
            outcomes = [A.Outcome(Skip(a, INTERNAL_ERROR, f"unexpected error: {exc}"), A.FAILED)
                        for a in alerts]
        finally:
            ended = self._monotonic()
            with self._lock:
                self._busy.discard(service)
                for alert in alerts:
                    self._recent[_instance(alert)] = ended
            self._metrics.in_flight.dec()
        for outcome in outcomes:
            self._record(outcome, received, ended)

    def _handled_recently(self, alert: Alert, now: float) -> bool:
        with self._lock:
            if len(self._recent) > _RECENT_PRUNE_AT:
                self._recent = {k: t for k, t in self._recent.items() if now - t < DUPLICATE_WINDOW_S}
            ended = self._recent.get(_instance(alert))
        return ended is not None and now - ended < DUPLICATE_WINDOW_S

    def _record(self, outcome: A.Outcome, received: float, ended: float | None = None) -> None:
        m, d = self._metrics, outcome.decision
        if isinstance(d, Skip):
            m.alerts_skipped.labels(d.alert.name, d.reason).inc()
            if d.reason == STALE:
                m.stale_alerts.labels(d.alert.name).inc()
            if outcome.result == A.FAILED:
                log.error("%s", d.sentence)
            else:
                log.info("%s", d.sentence)
            return
        assert isinstance(d, Action)
        m.actions.labels(d.kind, outcome.result).inc()
        if outcome.result == A.SUCCESS:
            m.last_action.labels(d.service.name, d.kind).set(time.time())
        if outcome.duration is not None:
            m.action_duration.labels(d.kind).observe(outcome.duration)
        if outcome.result == A.SUCCESS:
            m.recovery_duration.labels(d.kind).observe(
                (ended if ended is not None else self._monotonic()) - received)
        if outcome.result == A.FAILED:
            log.error("Could not %s: %s", d.plan, outcome.detail)


def _instance(alert: Alert) -> tuple:
    """One alert instance: the same alert (by its labels) that started at the same time."""
    return (alert.name, tuple(sorted(alert.labels.items())), alert.starts_at)
