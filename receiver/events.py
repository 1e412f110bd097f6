"""The receiver's structured event stream, and log lines that cannot be forged.

One JSON object per decision and per outcome (schema: docs/contract.md, "Receiver
events"), written as a JSON log line on the `receiver.events` logger and kept in a bounded
ring for `GET /events?since=<seq>`. Programs (the lab, benchmarks, operators' scripts) read
these instead of the English sentences, which may change.

`escape_controls` is applied to every record of the receiver's loggers (`safe_logger`):
a label or reason with a newline cannot start a line of its own (a forged log line).
"""
from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections import deque
from datetime import datetime
from typing import Callable

from receiver import alerts, reasons
from swarmguard_config.rfc3339 import format_time

EVENTS_LOGGER = "receiver.events"

# Event types.
DECISION = "decision"  # what the receiver decided about one alert: act or skip, and why
OUTCOME = "outcome"  # how an action ended (success, dry_run, failed, timeout, rolled_back)
DROPPED = "dropped"  # acknowledged work the receiver will not do (shutdown)
STARTED = "started"  # the receiver is ready for webhooks; first event of every run
NOTIFICATION = "notification"  # a resolved alert in a webhook: recorded, never acted on
MAINTENANCE = "maintenance"  # a drain, undrain or rebalance began, resumed, ended or stopped

# Results of decision events (outcome results are reasons.SUCCESS and its companions).
ACT = "act"
SKIP = "skip"
# Results of started events: acting on alerts, or only saying what it would do.
LIVE = "live"
DRY_RUN = reasons.DRY_RUN  # the word an action's outcome has in dry-run mode
# Result of notification events: the alert's status.
RESOLVED = alerts.RESOLVED
# Results of maintenance events (kind: drain, undrain or rebalance).
BEGUN = "started"
RESUMED = "resumed"  # a drain found half done by a (restarted) receiver
FINISHED = "finished"
STOPPED = "stopped"  # given up, or ended by an undrain

# Every event has exactly these keys (None where a value does not apply); the unit tests
# and docs/contract.md pin them.
FIELDS = ("seq", "type", "at", "alert", "service", "task", "node", "kind", "result",
          "reason", "message", "starts_at", "received_at", "duration_s")

# C0 and C1 controls and DEL, plus the Unicode line and paragraph separators: each can
# start a forged line in a log viewer. payload.py refuses labels that hold one.
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Control characters (and lone surrogates) as Python escapes: one line, printable."""
    if CONTROLS.search(text):
        text = CONTROLS.sub(lambda m: repr(m.group())[1:-1], text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _EscapeControls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = escape_controls(record.getMessage()), None
        return True


_ESCAPE = _EscapeControls()


def safe_logger(name: str) -> logging.Logger:
    """The module's logger, with control characters escaped in every message it logs."""
    logger = logging.getLogger(name)
    if _ESCAPE not in logger.filters:
        logger.addFilter(_ESCAPE)
    return logger


class EventLog:
    """A bounded, thread-safe ring of events with increasing sequence numbers."""

    def __init__(self, capacity: int, clock: Callable[[], datetime]):
        self._ring: deque[dict] = deque(maxlen=capacity)
        self._seq = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._log = logging.getLogger(EVENTS_LOGGER)

    def emit(self, type: str, result: str, *, alert=None, service: str | None = None,
             kind: str | None = None, reason: str | None = None, message: str | None = None,
             received_at: datetime | None = None, duration_s: float | None = None,
             task: str | None = None, node: str | None = None) -> dict:
        """Record one event. `alert` (an alerts.Alert) fills alert, service, task, node,
        kind and starts_at; maintenance gives service, task and node itself."""
        event = {
            "type": type,
            "at": format_time(self._clock()),
            "alert": alert.name if alert else None,
            "service": service or (alert.labels.get("service") if alert else None),
            "task": task or (alert.labels.get("task_id") if alert else None),
            "node": node or (alert.labels.get("node_id") if alert else None),
            "kind": kind or (alert.kind if alert else None),
            "result": result,
            "reason": reason,
            "message": message,
            "starts_at": format_time(alert.starts_at) if alert else None,
            "received_at": format_time(received_at) if received_at else None,
            "duration_s": round(duration_s, 6) if duration_s is not None else None,
        }
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, **event}
            self._ring.append(event)
            # Under the lock, so that the log's lines are in sequence order too.
            if self._log.isEnabledFor(logging.INFO):
                # ensure_ascii: the line is pure ASCII whatever the labels held.
                self._log.info("%s", json.dumps(event, ensure_ascii=True,
                                                separators=(",", ":")))
        return event

    def since(self, seq: int) -> tuple[list[dict], int, bool]:
        """(events after `seq`, the last sequence number, whether some events after `seq`
        were already pushed out of the ring)."""
        with self._lock:
            last = self._seq
            seq = min(seq, last)  # past the last event: none yet, nothing missed
            first = last - len(self._ring) + 1  # the ring holds first..last, in order
            events = list(itertools.islice(self._ring, max(seq + 1 - first, 0), None))
        return events, last, seq + 1 < first
