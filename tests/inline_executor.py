"""An Executor for tests that run the receiver's background work deterministically."""
from __future__ import annotations

from concurrent.futures import Executor, Future


class InlineExecutor(Executor):
    """Runs each job at once in the caller's thread."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # a Future carries whatever the job raised
            future.set_exception(exc)
        return future
