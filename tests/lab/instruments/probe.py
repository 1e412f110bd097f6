"""A request probe through the entry point: steady rate, every request recorded.

It is what a user sees during a move: each request's time, outcome and the node that
answered. Its zero means something only because it can fail: the tests also run it
while no healthy task exists and check that it counts failures then.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from ..infra.system import wait_for


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the probe started
    ok: bool
    status: int | None
    node: str | None
    error: str | None
    latency: float


@dataclass
class ProbeResult:
    samples: list[Sample] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if not s.ok)

    @property
    def nodes(self) -> list[str]:
        """Nodes that answered, in order of first appearance."""
        seen: list[str] = []
        for s in sorted(self.samples, key=lambda s: s.at):
            if s.ok and s.node and s.node not in seen:
                seen.append(s.node)
        return seen

    @property
    def longest_gap(self) -> float:
        """Longest time without a successful response, in seconds."""
        times = sorted(s.at for s in self.samples if s.ok)
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def rate(self) -> float:
        if self.total < 2:
            return 0.0
        times = [s.at for s in self.samples]
        return (self.total - 1) / (max(times) - min(times))

    def summary(self) -> str:
        failures = [f"{s.at:.2f}s {s.status or s.error}" for s in self.samples if not s.ok][:10]
        return (f"{self.total} requests, {self.failed} failed, {self.rate():.1f}/s, nodes {self.nodes}, "
                f"longest gap {self.longest_gap:.2f}s" + (f", first failures: {failures}" if failures else ""))


def _node_of(response: requests.Response) -> str | None:
    # The stress app names its node in a header; the lab's busybox page in its body.
    node = response.headers.get("X-Swarm-Node")
    if node:
        return node
    for part in response.text.split():
        if part.startswith("node="):
            return part[5:]
    return None


class Probe:
    """Send GET url at `rate` per second until stopped (or max_seconds, as a safety net)."""

    def __init__(self, url: str, rate: float = 20.0, timeout: float = 2.0, max_seconds: float = 300.0):
        self.url, self.rate, self.timeout, self.max_seconds = url, rate, timeout, max_seconds
        self._stop = threading.Event()
        self._result = ProbeResult()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _one(self) -> None:
        started = time.monotonic()
        at = started - self._t0
        try:
            r = requests.get(self.url, timeout=self.timeout, headers={"Connection": "close"})
            sample = Sample(at, r.status_code == 200, r.status_code, _node_of(r), None,
                            time.monotonic() - started)
        except requests.RequestException as exc:
            sample = Sample(at, False, None, None, type(exc).__name__, time.monotonic() - started)
        with self._lock:
            self._result.samples.append(sample)

    def _loop(self) -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            i = 0
            while not self._stop.is_set():
                due = self._t0 + i / self.rate
                if due - self._t0 > self.max_seconds:
                    break
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                pool.submit(self._one)
                i += 1

    def start(self) -> "Probe":
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="probe", daemon=True)
        self._thread.start()
        return self

    def so_far(self) -> ProbeResult:
        """The requests answered (or failed) so far, in the order sent; the probe goes on."""
        with self._lock:
            return ProbeResult(sorted(self._result.samples, key=lambda s: s.at))

    def wait_answered(self, by: str | None = None, *, last: int = 1, timeout: float = 60.0) -> None:
        """Until the `last` latest requests have all succeeded, answered by node `by` (any
        node when None): the service serves from there. With `last` a second's worth of
        requests, the entry point has settled there, so a failure it would cause on the way
        (routing to a task that is gone) is behind it and counted."""
        def settled() -> bool:
            latest = self.so_far().samples[-last:]
            return len(latest) == last and all(s.ok and (by is None or s.node == by) for s in latest)
        wait_for(f"{last} request(s) through the probe answered" + (f" by {by}" if by else ""),
                 settled, timeout=timeout, interval=0.1)

    def wait_failed(self, count: int, *, timeout: float = 60.0) -> None:
        """Until `count` requests have failed."""
        wait_for(f"{count} failed request(s) through the probe",
                 lambda: self.so_far().failed >= count, timeout=timeout, interval=0.1)

    def stop(self) -> ProbeResult:
        self._stop.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            self._result.samples.sort(key=lambda s: s.at)
            return self._result

    def __enter__(self) -> "Probe":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
