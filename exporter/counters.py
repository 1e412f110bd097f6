"""The numbers the exporter reads from cgroup and /proc files, checked before they are used.

Every one of them (cpu.stat usage_usec, cpuacct.usage, memory.current,
memory.usage_in_bytes, memory.stat's inactive file pages, net/dev byte counters) is an
unsigned 64-bit integer in the kernel. A value outside 0 .. 2**64 - 1 did not come from
the kernel (a damaged or forged file, something else mounted there): published, it would
be a negative counter or an absurd rate, and past a float's range it would raise at the
division. Such a value is refused; the collector leaves that task out of the scrape and
counts it (docs/contract.md, `value_refused`). Within the range, every value and what is
computed from it (seconds, a rate, a percentage) is a finite float.
"""

from __future__ import annotations

U64_MAX = 2**64 - 1


class RefusedValue(ValueError):
    """A number that no kernel counter can hold."""


def kernel_counter(raw: bytes, what: str) -> int:
    """The integer in `raw`; ValueError when it is none, RefusedValue when it is outside
    an unsigned 64-bit counter's range."""
    value = int(raw)
    if not 0 <= value <= U64_MAX:
        shown = raw.strip()[:24].decode("ascii", errors="replace")
        raise RefusedValue(f"{what} {shown}{'...' if len(raw.strip()) > 24 else ''} "
                           "is not an unsigned 64-bit counter")
    return value
