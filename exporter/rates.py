"""Pure arithmetic of the exporter: a bit rate from two counter samples, a percentage of
an interface's capacity. No I/O here, so it is tested with plain numbers."""

from __future__ import annotations

from dataclasses import dataclass

BITS_PER_BYTE = 8
BITS_PER_MEGABIT = 1_000_000  # interface speeds (sysfs, ethtool) are in decimal Mbit/s


@dataclass(frozen=True)
class NetworkSample:
    """Cumulative byte counters of one container at one instant (Unix seconds)."""

    timestamp: float
    rx_bytes: int
    tx_bytes: int


def bits_per_second(older: NetworkSample, newer: NetworkSample) -> float | None:
    """Receive plus transmit rate between two samples, or None when it cannot be known.

    None when the samples are not in time order (no interval to divide by) or a counter
    went backwards (the container's interfaces were recreated): a made-up value would be
    worse than none, because Prometheus alerts on it.
    """
    elapsed = newer.timestamp - older.timestamp
    if elapsed <= 0:
        return None
    received = newer.rx_bytes - older.rx_bytes
    transmitted = newer.tx_bytes - older.tx_bytes
    if received < 0 or transmitted < 0:
        return None
    return (received + transmitted) * BITS_PER_BYTE / elapsed


def megabits_to_bits(mbps: float) -> float:
    return mbps * BITS_PER_MEGABIT


def percent_of_capacity(rate_bits_per_second: float, capacity_bits_per_second: float) -> float:
    """The rate as a percentage of the capacity; not capped, since receive plus transmit on
    a full-duplex link can honestly exceed 100."""
    if capacity_bits_per_second <= 0:
        raise ValueError(f"capacity must be positive, not {capacity_bits_per_second}")
    return rate_bits_per_second / capacity_bits_per_second * 100.0
