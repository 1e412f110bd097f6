"""Bodies of the stress processes. Standard library only: they run in children.

Each process bounds itself, independently of the app that started it:
- it exits at its deadline (CLOCK_MONOTONIC, which is system-wide on Linux, so the
  app's deadline means the same instant here);
- it exits when the app process that owns it is gone (killed worker, crashed app), so
  no stress outlives its owner by more than about a second;
- it reports progress through a shared double the app reads for /stress/status.
"""

from __future__ import annotations

import mmap
import os
import socket
import time

from stress.shaping import bytes_due, ramp_fraction

OWNER_CHECK_INTERVAL_S = 0.5
MEMORY_CHUNK_MB = 8
MIB = 1024 * 1024


class _Owner:
    """Is the owning app process still alive? Checked at most every half second."""

    def __init__(self, pid: int):
        self.pid = pid
        self.next_check = 0.0

    def gone(self, now: float) -> bool:
        if now < self.next_check:
            return False
        self.next_check = now + OWNER_CHECK_INTERVAL_S
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # exists (under another user): cannot be ours gone
        return False


def _over(deadline: float, owner: _Owner) -> bool:
    now = time.monotonic()
    return now >= deadline or owner.gone(now)


def _lower_priority(nice: int) -> None:
    # Stress gets what the web app leaves over, so health checks stay fast.
    try:
        os.nice(nice)
    except OSError:
        pass


def burn_cpu(*, duty, ramp_s, slice_s, nice, deadline, owner_pid, progress, errors):
    """Busy-loop `duty` of each `slice_s`, sleep the rest; duty ramps up linearly."""
    _lower_priority(nice)
    owner = _Owner(owner_pid)
    start = time.monotonic()
    try:
        while not _over(deadline, owner):
            now = time.monotonic()
            fraction = duty * ramp_fraction(now - start, ramp_s)
            progress.value = fraction
            busy_until = now + fraction * slice_s
            while time.monotonic() < busy_until:
                pass
            rest = min(now + slice_s, deadline) - time.monotonic()
            if rest > 0:
                time.sleep(rest)
    except KeyboardInterrupt:
        pass


def hold_memory(*, mb, ramp_s, nice, deadline, owner_pid, progress, errors):
    """Allocate `mb` MB (ramped), touch every page so it is really resident, hold it
    until the deadline; exiting the process gives it all back."""
    _lower_priority(nice)
    owner = _Owner(owner_pid)
    start = time.monotonic()
    chunks: list[bytearray] = []
    allocated = 0
    try:
        while not _over(deadline, owner):
            wanted = int(mb * ramp_fraction(time.monotonic() - start, ramp_s))
            while allocated < wanted and not _over(deadline, owner):
                size = min(MEMORY_CHUNK_MB, wanted - allocated)
                chunks.append(_touched(size * MIB))
                allocated += size
                progress.value = allocated
            time.sleep(0.05)
    except MemoryError:
        errors.value += 1
        # Hold what we have until the deadline rather than dying mid-stress.
        while not _over(deadline, owner):
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        chunks.clear()
        progress.value = 0


def _touched(size: int) -> bytearray:
    block = bytearray(size)
    # Write one byte per page: an untouched allocation may be lazily mapped zero pages
    # that never show up as memory use.
    pages = len(range(0, size, mmap.PAGESIZE))
    block[:: mmap.PAGESIZE] = b"\x01" * pages
    return block


def send_udp(
    *, family, address, rate_bytes_per_s, ramp_s, datagram_bytes, nice, deadline,
    owner_pid, progress, errors,
):
    """Send UDP datagrams to `address`, paced so the total never runs ahead of
    rate x elapsed (with a linear ramp)."""
    _lower_priority(nice)
    owner = _Owner(owner_pid)
    payload = b"\x00" * datagram_bytes
    sent = 0
    # Bytes whose send failed still count against the schedule: after an outage the
    # sender carries on at the rate instead of bursting to catch up.
    skipped = 0
    # Unconnected socket: ICMP errors from a sink that has nothing listening are not
    # reported back to it, so a discard sink does not break the loop.
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        try:
            while not _over(deadline, owner):
                due = bytes_due(rate_bytes_per_s, time.monotonic() - start, ramp_s)
                while sent + skipped + datagram_bytes <= due:
                    try:
                        sock.sendto(payload, address)
                    except OSError:
                        # e.g. ENOBUFS, no route: count it, back off a little, go on.
                        errors.value += 1
                        skipped = due - sent
                        time.sleep(0.01)
                        break
                    sent += datagram_bytes
                progress.value = sent
                time.sleep(0.002)
        except KeyboardInterrupt:
            pass
