"""Acknowledge fast, act in the background, one action per service at a time, bounded.

Alertmanager times out and resends a webhook that blocks for a whole migration, so the HTTP
handler only hands alerts to the Dispatcher. The Dispatcher keeps, per service, at most ONE
piece of work waiting (a newer alert replaces the waiting one: it is decided on fresher
evidence anyway) and at most one running; further alerts about a running service are
skipped as "already in progress" (Alertmanager repeats them if they stay true). At most
`max_pending_services` services wait; past that a webhook is refused whole (WorkRefused:
503 with Retry-After, so Alertmanager retries) instead of growing memory. Measured before
this bound: an unbounded executor queue grew to 109,769 jobs and 363 MB under a flood of
distinct services, and a real alert waited behind all of them.

All this lives in one process, which is why gunicorn runs one worker with threads
(gunicorn.conf.py); across receiver replicas, Swarm's version compare-and-swap does it.
On SIGTERM, `drain()` stops taking work, drops what has not started (logged, counted,
an event each) and gives what is running until a deadline. Then it closes the write gate
(gate.py) and gives up what still runs: work that has not passed the gate is dropped and
never writes; work that has is reported as unwatched. Neither reports its own end.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Hashable, Sequence

from receiver import events as E
from receiver.actions import Outcome, Skip
from receiver.gate import ShuttingDown, WriteGate
from receiver.metrics import Metrics
from receiver.alerts import Alert
from receiver.reasons import FAILED, IN_PROGRESS, INTERNAL_ERROR, SUPERSEDED
from receiver.reporting import Reporter
from swarmguard_config.rfc3339 import utc_now

# An alert instance (same alert, same start) that was fully handled this recently is not
# handled again: Alertmanager resends on retries, from HA replicas and on every group
# change, and each handling reads the cluster. The decision could not have changed
# within seconds except by our own action, which makes the alert stale anyway. Measured
# (make bench-receiver): without it, a flood of one webhook kept the background threads
# reading Docker and halved the acknowledgement rate.
DUPLICATE_WINDOW_S = 5.0
# A hard bound on remembered instances, whatever arrives within one window (the oldest
# are forgotten first: at worst one extra read of the cluster).
REMEMBERED_MAX = 65536
# Seconds Alertmanager is asked to wait before resending (it may retry sooner: its own
# backoff decides; the header is for other senders and for humans).
RETRY_FULL_S = 10
RETRY_SHUTTING_DOWN_S = 5


class WorkRefused(Exception):
    """The webhook cannot be taken now; nothing of it was queued or counted. The HTTP
    layer answers 503 with Retry-After, and Alertmanager sends it again."""

    def __init__(self, reason: str, retry_after_s: int):
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Receipt:
    """What the webhook's answer tells Alertmanager (and a human with curl)."""
    queued: tuple[str, ...]  # services now waiting or about to be handled
    busy: tuple[str, ...]  # services skipped: an action was already in progress


@dataclass(frozen=True)
class _Work:
    alerts: tuple[Alert, ...]
    received: float  # monotonic, for durations
    received_at: datetime  # wall clock, for events


class RecentlyHandled:
    """Alert instances handled within the last `window` seconds, oldest first, so that
    forgetting the expired ones costs O(1) amortised: each is removed once, from the front.
    (Rebuilding a dict of them per alert held a request thread for 95-115 s on one
    8,400-alert webhook sent twice.) Not thread-safe: the Dispatcher's lock."""

    def __init__(self, window: float, capacity: int = REMEMBERED_MAX):
        self._window = window
        self._capacity = capacity
        self._ended: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ended)

    def add(self, key: Hashable, ended: float) -> None:
        """`ended` must not go backwards between calls (a monotonic clock, read under the
        caller's lock), which keeps the order oldest first."""
        self._ended[key] = ended
        self._ended.move_to_end(key)
        if len(self._ended) > self._capacity:
            self._ended.popitem(last=False)

    def forget_expired(self, now: float) -> None:
        while self._ended:
            oldest = next(iter(self._ended.values()))
            if now - oldest < self._window:
                return
            self._ended.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        """Handled within the window as of the last forget_expired()."""
        return key in self._ended


class Dispatcher:
    def __init__(self, handle: Callable[[Sequence[Alert]], list[Outcome]],
                 metrics: Metrics, events: E.EventLog | None = None,
                 executor: Executor | None = None,
                 workers: int = 4, max_pending_services: int = 256,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], datetime] = utc_now,
                 gate: WriteGate | None = None,
                 report: Reporter | None = None):
        self._handle = handle
        # The one `handle` passes, under the service's name, before each write.
        self._gate = gate or WriteGate()
        self._metrics = metrics  # the queue's own gauges
        # Every log line, metric and event of what becomes of the work: the app's one
        # Reporter, else one of its own.
        self._report = report or Reporter(metrics, events or E.EventLog(1024, clock))
        self._executor = executor or ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="swarmguard-action")
        self._max_pending = max_pending_services
        self._monotonic = monotonic
        self._clock = clock
        self._pending: OrderedDict[str, _Work] = OrderedDict()  # oldest first
        self._running: set[str] = set()
        self._ending: set[str] = set()  # running, and reporting their own end now
        self._given_up: set[str] = set()  # running at the deadline: reported by drain()
        self._recent = RecentlyHandled(DUPLICATE_WINDOW_S)
        self._accepting = True
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a job ends

    def submit(self, alerts: Sequence[Alert]) -> Receipt:
        """Queue the firing alerts, grouped by service; never blocks on Docker. Raises
        WorkRefused, having changed nothing, when shutting down or full."""
        received, received_at = self._monotonic(), self._clock()
        duplicates: list[Alert] = []
        groups: dict[str, list[Alert]] = {}
        busy: dict[str, list[Alert]] = {}
        replaced: list[_Work] = []
        fresh: list[str] = []
        with self._lock:
            if not self._accepting:
                raise WorkRefused("the receiver is shutting down",
                                  retry_after_s=RETRY_SHUTTING_DOWN_S)
            self._recent.forget_expired(received)
            for alert in alerts:
                if not alert.firing:
                    # The one place resolved alerts are left out of the work: recorded by
                    # the app, never acted on (the action an alert caused is not undone).
                    continue
                if alert.instance in self._recent:
                    duplicates.append(alert)
                else:
                    groups.setdefault(alert.service, []).append(alert)
            new = [s for s in groups if s not in self._pending and s not in self._running]
            if len(self._pending) + len(new) > self._max_pending:
                raise WorkRefused(
                    f"work for {len(self._pending)} services is waiting and this webhook "
                    f"adds {len(new)}; the limit is {self._max_pending} "
                    f"(SWARMGUARD_MAX_PENDING_SERVICES)", retry_after_s=RETRY_FULL_S)
            for service, group in groups.items():
                if service in self._running:
                    busy[service] = group
                    continue
                waiting = self._pending.get(service)
                if waiting and {a.instance for a in waiting.alerts} == {a.instance for a in group}:
                    duplicates.extend(group)  # a resend of what waits: nothing is newer
                    continue
                if waiting:
                    # Replaced in place: it keeps its turn, so repeats cannot starve it.
                    replaced.append(waiting)
                else:
                    fresh.append(service)
                self._pending[service] = _Work(tuple(group), received, received_at)
            self._metrics.pending_services.set(len(self._pending))
        for alert in duplicates:
            self._report.duplicate(alert)
        for group in busy.values():
            for alert in group:
                self._skip(alert, IN_PROGRESS, "an action on it is already in progress",
                           received_at)
        for work in replaced:
            for alert in work.alerts:
                self._skip(alert, SUPERSEDED, "a newer alert for the service replaced it "
                                              "while it waited", received_at)
        for _ in fresh:
            self._metrics.in_flight.inc()
            try:
                self._executor.submit(self._run_next)
            except RuntimeError:  # the executor is shutting down: the worker is exiting
                self._drop_waiting()
        return Receipt(tuple(s for s in groups if s not in busy), tuple(busy))

    def busy(self) -> frozenset[str]:
        """Services waiting or being handled."""
        with self._lock:
            return frozenset(self._running | set(self._pending))

    def stop_accepting(self) -> None:
        # No lock: it is called from a signal handler, which must never wait for one (the
        # flag is read under the lock, and a bool store is atomic).
        self._accepting = False

    def drain(self, deadline_s: float) -> int:
        """SIGTERM: refuse new work from now on, drop what has not started, and wait up to
        `deadline_s` for what is running. Then close the write gate and give up what still
        runs: work that has not passed the gate is dropped (it can no longer write), work
        that has is unwatched (it wrote, or is writing, and its end goes unrecorded); its
        thread reports nothing more. Returns how many services' work was given up; each is
        logged, counted and an event."""
        self.stop_accepting()
        dropped = self._drop_waiting()
        end = self._monotonic() + deadline_s
        with self._lock:
            while self._running and self._monotonic() < end:
                self._idle.wait(timeout=min(0.5, max(end - self._monotonic(), 0.01)))
            # One step under the lock: a job either reports its own end (it is ending) or
            # is given up here, and none passes the gate after this.
            passed = self._gate.close()
            unfinished = sorted(self._running - self._ending)
            self._given_up.update(unfinished)
        for service in unfinished:
            if service in passed:
                self._report.unwatched(service, deadline_s)
            else:
                self._report.dropped_unfinished(service, deadline_s)
        self._executor.shutdown(wait=False, cancel_futures=True)
        return dropped + len(unfinished)

    def _drop_waiting(self) -> int:
        with self._lock:
            waiting = list(self._pending.items())
            self._pending.clear()
            self._metrics.pending_services.set(0)
        for service, work in waiting:
            self._report.dropped_waiting(service, work.alerts, work.received_at)
            self._metrics.in_flight.dec()
        return len(waiting)

    def _run_next(self) -> None:
        with self._lock:
            if not self._pending:
                return  # dropped at shutdown
            service, work = self._pending.popitem(last=False)
            self._running.add(service)
            self._metrics.pending_services.set(len(self._pending))
        try:
            outcomes = self._handle(work.alerts)
        except ShuttingDown:
            outcomes = []  # stopped at the closed gate: drain() gave it up and said so
        except Exception as exc:  # a background thread has no one else to tell
            self._report.crashed(service)
            outcomes = [Outcome(Skip(a, INTERNAL_ERROR, f"unexpected error: {exc}"), FAILED)
                        for a in work.alerts]
        finished = self._monotonic()
        with self._lock:
            given_up = service in self._given_up
            if not given_up:
                self._ending.add(service)
        if given_up:
            self._report.ended_after_deadline(service, len(outcomes))
        else:
            for outcome in outcomes:
                self._report.finished(outcome, work.received_at, finished - work.received)
        with self._lock:
            self._running.discard(service)
            self._ending.discard(service)
            self._given_up.discard(service)
            self._gate.release(service)
            ended = self._monotonic()
            for alert in work.alerts:
                self._recent.add(alert.instance, ended)
            self._idle.notify_all()
        # Last: whoever waits for "nothing in flight" then reads complete counters.
        self._metrics.in_flight.dec()

    def _skip(self, alert: Alert, reason: str, why: str, received_at: datetime) -> None:
        self._report.skipped(Skip(alert, reason, why), received_at)
