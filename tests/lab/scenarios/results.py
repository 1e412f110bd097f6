"""What one run of a scenario returns. Pure values: callers print them, assert on them
or aggregate them; nothing here talks to the lab.

Times: `*_at` are wall-clock unix seconds (to line up with Prometheus, Docker and the
receiver's events); `*_s` are durations measured on the monotonic clock, except
detection, which compares the receiver's recorded time with the stress start."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MigrateResult:
    """Scenario 1: CPU stress on the only task until SwarmGuard moves it."""
    service: str
    task: str  # the stressed task's ID
    from_node: str  # where it ran when the stress started
    stressed_node: str | None  # the node that answered the stress request (X-Swarm-Node)
    to_node: str | None  # where it runs now; None: it was not moved in time
    started_at: float  # the stress started
    ended_at: float  # the move was seen (or given up on)
    mttr_s: float | None  # stress start -> new task serving and old one out of rotation
    detection_s: float | None  # stress start -> the receiver starting to act

    @property
    def moved(self) -> bool:
        return self.to_node is not None and self.to_node != self.from_node

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScaleResult:
    """Scenario 2: real demand scales the service up to its maximum; when the load ends it
    is scaled back down after the scale-down window."""
    service: str
    maximum: int
    started_at: float  # the stress started
    load_ended_at: float  # the stress was stopped
    ended_at: float  # back to one replica
    scaled_up_s: float  # stress start -> the spec asks for `maximum` replicas
    up_step_s: float  # stress start -> `maximum` healthy replicas running
    detection_s: float | None  # stress start -> the receiver starting to scale up
    down_after_load_end_s: float  # load end -> the spec asks for one replica again

    def as_dict(self) -> dict:
        return asdict(self)
