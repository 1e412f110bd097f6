"""What /proc/<pid>/stat says about a process: its state and the CPU time it has used.

One reader, because the command name in the middle of the line (in parentheses) may hold
spaces and parentheses itself: fields are counted from the last ")", never by splitting
the whole line."""
from __future__ import annotations

import os
from pathlib import Path


def stat_fields(text: str) -> list[str]:
    """A /proc/<pid>/stat line -> its fields after the command name: [0] is the state
    (field 3 of proc(5)), [11] and [12] utime and stime in clock ticks."""
    return text.rsplit(")", 1)[1].split()


def _fields(pid: int) -> list[str]:
    return stat_fields(Path(f"/proc/{pid}/stat").read_text())


def state(pid: int) -> str:
    """R, S, D, Z, ...; raises FileNotFoundError when there is no such process."""
    return _fields(pid)[0]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = _fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
