"""The shape of a stress over time: pure arithmetic shared by the app and its workers.

Kept free of processes and sockets so the numbers (how many processes, what duty
cycle, how many bytes by when) are tested on their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuPlan:
    processes: int
    duty: float  # fraction of wall time each process spends busy, 0..1


def cpu_plan(target_percent: float, allowance_cores: float) -> CpuPlan:
    """How to burn `target_percent` of an allowance of `allowance_cores`.

    Threads cannot do it: under the GIL a Python process burns at most one core. So the
    load is split over the fewest processes that can carry it, each at the same duty
    cycle (never above 1): 80 % of 2 cores -> 2 processes at 0.8; 80 % of 0.5 cores
    -> 1 process at 0.4.
    """
    cores = max(0.0, target_percent) / 100.0 * max(0.0, allowance_cores)
    # The epsilon keeps 2.0000000001 cores from becoming three processes.
    processes = max(1, math.ceil(cores - 1e-9))
    return CpuPlan(processes=processes, duty=min(1.0, cores / processes))


def ramp_fraction(elapsed_s: float, ramp_s: float) -> float:
    """0 -> 1 linearly over the ramp, then 1."""
    if ramp_s <= 0 or elapsed_s >= ramp_s:
        return 1.0
    return max(0.0, elapsed_s / ramp_s)


def bytes_due(rate_bytes_per_s: float, elapsed_s: float, ramp_s: float) -> float:
    """Bytes a paced sender should have sent after `elapsed_s`, with a linear ramp
    (the integral of the ramped rate). The sender never runs ahead of it, so the
    total over a stress never exceeds rate x duration."""
    if elapsed_s <= 0:
        return 0.0
    if ramp_s > 0 and elapsed_s < ramp_s:
        return rate_bytes_per_s * elapsed_s * elapsed_s / (2.0 * ramp_s)
    ramp_part = rate_bytes_per_s * ramp_s / 2.0 if ramp_s > 0 else 0.0
    return ramp_part + rate_bytes_per_s * (elapsed_s - max(0.0, ramp_s))


def mbps_to_bytes_per_s(mbps: float) -> float:
    # Megabits in the network sense: 10^6 bits.
    return mbps * 1_000_000 / 8
