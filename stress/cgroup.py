"""The container's CPU and memory allowance, read from its cgroup.

"100 % CPU" for a stress request means 100 % of what the container may use: its CFS
quota when it has one (a Swarm `limits.cpus`), else the cores it may run on. Memory
stress is capped below the container's memory limit so it never gets the task
OOM-killed. Parsing is pure (strings in, numbers out); `read_limits` only reads files
under a root given as a parameter, so tests run it on fixture trees.

cgroup v2: <root>/cpu.max ("max 100000" or "50000 100000"), <root>/memory.max ("max"
or bytes). cgroup v1: <root>/cpu/cpu.cfs_quota_us (-1 = none) and cpu.cfs_period_us,
<root>/memory/memory.limit_in_bytes (a huge number = none).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from swarmguard_config.cgroup_paths import parse_proc_cgroup

# v1 reports "no limit" as the largest page-aligned signed 64-bit value
# (9223372036854771712); anything this large is not a real limit.
V1_UNLIMITED_THRESHOLD = 1 << 60

# v1 hierarchies may be mounted separately or co-mounted; Docker's usual layout has
# "cpu,cpuacct" with a "cpu" symlink, but not every host makes the symlink.
V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
V1_MEMORY_DIRS = ("memory",)


@dataclass(frozen=True)
class CgroupLimits:
    version: int | None  # 1, 2, or None when no cgroup hierarchy was found
    cpu_quota_cores: float | None  # None: no CPU quota
    memory_limit_bytes: int | None  # None: no memory limit


@dataclass(frozen=True)
class Allowance:
    """What this container may use; the reference for percentages and caps."""

    cpu_cores: float
    cpu_source: str  # "cgroup quota" or "cores"
    memory_bytes: int | None
    memory_source: str  # "cgroup limit", "node memory" or "unknown"


def parse_cpu_max(text: str) -> float | None:
    """v2 cpu.max -> cores, or None when unlimited."""
    fields = text.split()
    if not fields:
        raise ValueError("empty cpu.max")
    if fields[0] == "max":
        return None
    quota = int(fields[0])
    period = int(fields[1]) if len(fields) > 1 else 100_000
    return _cores(quota, period)


def parse_v1_cpu(quota_text: str, period_text: str) -> float | None:
    """v1 cpu.cfs_quota_us / cpu.cfs_period_us -> cores, or None when unlimited."""
    quota = int(quota_text.strip())
    if quota < 0:
        return None
    return _cores(quota, int(period_text.strip()))


def parse_memory_max(text: str) -> int | None:
    """v2 memory.max -> bytes, or None when unlimited."""
    value = text.strip()
    if value == "max":
        return None
    return int(value)


def parse_v1_memory(text: str) -> int | None:
    """v1 memory.limit_in_bytes -> bytes, or None when unlimited."""
    value = int(text.strip())
    if value >= V1_UNLIMITED_THRESHOLD:
        return None
    return value


def read_limits(root: str | os.PathLike, self_cgroup: str = "") -> CgroupLimits:
    """Read the limits that apply to this process under the cgroup mount `root`.

    Inside a container the mount's root is the container's own cgroup. Outside one,
    `self_cgroup` (the text of /proc/self/cgroup) names the process's cgroup below the
    root; the tightest limit on the way from there up to the root applies, as the
    kernel applies it.
    """
    root = Path(root)
    paths = parse_proc_cgroup(self_cgroup)
    if (root / "cgroup.controllers").exists():
        dirs = _ancestry(root, paths.get("", "/"))
        return CgroupLimits(
            version=2,
            cpu_quota_cores=_tightest(_read(d / "cpu.max", parse_cpu_max) for d in dirs),
            memory_limit_bytes=_tightest(
                _read(d / "memory.max", parse_memory_max) for d in dirs
            ),
        )
    cpu_dirs = _v1_dirs(root, V1_CPU_DIRS, paths)
    memory_dirs = _v1_dirs(root, V1_MEMORY_DIRS, paths)
    if not cpu_dirs and not memory_dirs:
        return CgroupLimits(version=None, cpu_quota_cores=None, memory_limit_bytes=None)
    return CgroupLimits(
        version=1,
        cpu_quota_cores=_tightest(_read_v1_cpu(d) for d in cpu_dirs),
        memory_limit_bytes=_tightest(
            _read(d / "memory.limit_in_bytes", parse_v1_memory) for d in memory_dirs
        ),
    )


def allowance(limits: CgroupLimits, cores: int, node_memory_bytes: int | None) -> Allowance:
    """Combine the cgroup limits with the node's cores and memory."""
    if limits.cpu_quota_cores is not None and limits.cpu_quota_cores < cores:
        cpu, cpu_source = limits.cpu_quota_cores, "cgroup quota"
    else:
        cpu, cpu_source = float(cores), "cores"
    memory = limits.memory_limit_bytes
    if memory is not None and (node_memory_bytes is None or memory < node_memory_bytes):
        return Allowance(cpu, cpu_source, memory, "cgroup limit")
    if node_memory_bytes is not None:
        return Allowance(cpu, cpu_source, node_memory_bytes, "node memory")
    return Allowance(cpu, cpu_source, None, "unknown")


def read_allowance(root: str | os.PathLike, self_cgroup_path: str = "") -> Allowance:
    """The live allowance of this process: cgroup limits, usable cores, node memory."""
    self_cgroup = ""
    if self_cgroup_path:
        try:
            self_cgroup = Path(self_cgroup_path).read_text()
        except OSError:
            self_cgroup = ""
    return allowance(read_limits(root, self_cgroup), usable_cores(), node_memory_bytes())


def usable_cores() -> int:
    # The cpuset (e.g. --cpuset-cpus) bounds the cores even without a quota.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def node_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _cores(quota: int, period: int) -> float:
    if period <= 0:
        raise ValueError(f"bad CFS period {period}")
    return quota / period


def _ancestry(base: Path, path: str) -> list[Path]:
    """The existing directories from base/path up to base itself, deepest first."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    dirs = []
    for depth in range(len(parts), -1, -1):
        candidate = base.joinpath(*parts[:depth])
        if candidate.is_dir():
            dirs.append(candidate)
    return dirs


def _v1_dirs(root: Path, names: tuple[str, ...], paths: dict[str, str]) -> list[Path]:
    for name in names:
        base = root / name
        if base.is_dir():
            controller = name.split(",")[0]
            return _ancestry(base, paths.get(controller, "/"))
    return []


def _read_v1_cpu(directory: Path) -> float | None:
    quota = directory / "cpu.cfs_quota_us"
    period = directory / "cpu.cfs_period_us"
    try:
        return parse_v1_cpu(quota.read_text(), period.read_text())
    except (OSError, ValueError):
        return None


def _read(path: Path, parse) -> float | int | None:
    # A missing or garbled file means "no limit known here", never a crash: the caps in
    # config.StressLimits still bound every request.
    try:
        return parse(path.read_text())
    except (OSError, ValueError):
        return None


def _tightest(values) -> float | int | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None
