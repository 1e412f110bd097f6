"""At shutdown, the line between work that is dropped and work that is seen through.

Every write to Docker, and the `decision act` event that announces an action, first
passes the gate (`through`). At the shutdown deadline the Dispatcher closes it for good
(`close`), which says at the same instant which pieces of work had passed: those wrote,
or are writing, and are reported so; any other is dropped, and since no write starts
after the gate closed, it never writes. Without the gate, work recorded as dropped went
on and made its update a second later (events: dropped, act, outcome success).
"""
from __future__ import annotations

import threading
from typing import Hashable


class ShuttingDown(Exception):
    """The gate is closed: the write (or the announcement) was not made, nor will any."""


class WriteGate:
    """Open until closed, once; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._closed = False
        self._passed: set[Hashable] = set()

    @property
    def closed(self) -> bool:
        return self._closed

    def through(self, work: Hashable | None = None) -> None:
        """Right before a write (or the event announcing one). Raises ShuttingDown once
        the gate is closed; otherwise remembers that `work` (if named) has passed."""
        with self._lock:
            if self._closed:
                raise ShuttingDown("shutting down: no more writes to Docker")
            if work is not None:
                self._passed.add(work)

    def release(self, work: Hashable) -> None:
        """`work` ended: the next piece of work under that name has passed nothing yet."""
        with self._lock:
            self._passed.discard(work)

    def close(self) -> frozenset:
        """No write starts from now on. Returns the work that had passed."""
        with self._lock:
            self._closed = True
            return frozenset(self._passed)
