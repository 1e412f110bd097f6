"""The capacity that 100 % stands for: configured, or the link speed the kernel reports."""

from __future__ import annotations

import os
from dataclasses import dataclass

from exporter.rates import megabits_to_bits


@dataclass(frozen=True)
class Capacity:
    bits_per_second: float
    interface: str
    source: str  # "configured" or "sysfs": a dashboard can tell a guess from a setting


def read_speed_mbps(sysfs_root: str, interface: str) -> int | None:
    """The link speed of `interface` in Mbit/s from sysfs, or None when unknown.

    The kernel reports -1 for links without a speed (bridges, most virtual devices) and
    fails the read with EINVAL for a link that is down; both mean "unknown" here.
    """
    path = os.path.join(sysfs_root, "class", "net", interface, "speed")
    try:
        with open(path, encoding="ascii") as handle:
            speed = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return speed if speed > 0 else None


def resolve_capacity(
    interface: str, configured_mbps: float | None, sysfs_root: str
) -> Capacity | None:
    """A configured capacity wins; else the link speed; None when neither is known."""
    if configured_mbps is not None:
        return Capacity(megabits_to_bits(configured_mbps), interface, "configured")
    speed = read_speed_mbps(sysfs_root, interface)
    if speed is None:
        return None
    return Capacity(megabits_to_bits(speed), interface, "sysfs")
