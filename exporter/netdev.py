"""A container's network byte counters, from `/proc/<pid>/net/dev`.

That file lists the interfaces of the network namespace the process lives in, so reading
it for a task's main process gives the task's own interfaces whatever namespace the
reader is in. Every interface but loopback counts: a swarm task has one per network it
is attached to, and traffic on any of them uses the node's interface.
"""

from __future__ import annotations

from exporter.counters import kernel_counter

# Per interface: received bytes are the 1st counter after the colon, transmitted the 9th
# (the first of the header's Transmit columns).
RECEIVED, TRANSMITTED = 0, 8


def parse_net_dev(text: bytes) -> tuple[int, int]:
    """(received, transmitted) bytes summed over the non-loopback interfaces; ValueError
    when a line has not the counters it should."""
    received = transmitted = 0
    for line in text.splitlines()[2:]:  # two header lines
        name, _, counters = line.partition(b":")
        if not counters or name.strip() == b"lo":
            continue
        fields = counters.split()
        if len(fields) <= TRANSMITTED:
            raise ValueError(f"net/dev line of {name.strip().decode(errors='replace')} has "
                             f"{len(fields)} counters, fewer than the {TRANSMITTED + 1} read")
        received += kernel_counter(fields[RECEIVED], "net/dev received bytes")
        transmitted += kernel_counter(fields[TRANSMITTED], "net/dev transmitted bytes")
    return received, transmitted
