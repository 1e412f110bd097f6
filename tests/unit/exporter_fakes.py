"""Fakes the exporter's unit tests share: a clock the test moves by hand, and a Docker
client that fails the test on any call its fake does not define."""
from __future__ import annotations


class Clock:
    """Stands for time.time or time.monotonic; the test moves it (`clock.now += 5`)."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class StrictDocker:
    """Base of a fake Docker client: a call the subclass does not define fails the test,
    so a test notices when the code starts asking Docker something new."""

    def __getattr__(self, name):
        raise AssertionError(f"unexpected Docker call {name}")
