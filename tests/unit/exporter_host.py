"""A host's /proc and cgroup tree in a temporary directory, for the exporter's readers.

Only the files the exporter reads are written, in the layouts Docker produces: cgroup v2
(pure unified, cgroupfs or systemd driver) and cgroup v1 (separate or combined cpu and
cpuacct hierarchies, as on the lab's Debian 12 host).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NET_DEV_HEADER = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
)


def net_dev(interfaces: dict[str, tuple[int, int]]) -> str:
    lines = [f"{name:>6}: {rx} 0 0 0 0 0 0 0 {tx} 0 0 0 0 0 0 0\n" for name, (rx, tx) in interfaces.items()]
    return NET_DEV_HEADER + "".join(lines)


@dataclass
class FakeHost:
    root: Path
    version: int = 2
    v1_cpu_mount: str = "cpuacct"  # or "cpu,cpuacct"

    @property
    def proc(self) -> Path:
        return self.root / "proc"

    @property
    def cgroup(self) -> Path:
        return self.root / "cgroup"

    def __post_init__(self) -> None:
        self.proc.mkdir(parents=True, exist_ok=True)
        self.cgroup.mkdir(parents=True, exist_ok=True)
        if self.version == 2:
            (self.cgroup / "cgroup.controllers").write_text("cpu memory pids\n")
        (self.proc / "meminfo").write_text("MemTotal:        4194304 kB\nMemFree:  1 kB\n")

    def container(self, pid: int, cgroup_path: str, *, proc_cgroup_path: str | None = None,
                  cpu_seconds: float = 0.0, usage: int = 0, inactive_file: int = 0,
                  net: dict[str, tuple[int, int]] | None = None) -> None:
        """A running container: its process's cgroup and net/dev, and its cgroup files."""
        shown = cgroup_path if proc_cgroup_path is None else proc_cgroup_path
        process = self.proc / str(pid)
        (process / "net").mkdir(parents=True, exist_ok=True)
        if self.version == 2:
            (process / "cgroup").write_text(f"0::{shown}\n")
        else:
            (process / "cgroup").write_text(
                f"12:memory:{shown}\n4:{self.v1_cpu_mount}:{shown}\n0::/\n")
        (process / "net" / "dev").write_text(net_dev(net or {"lo": (5, 5), "eth0": (0, 0)}))
        self.set_usage(cgroup_path, cpu_seconds=cpu_seconds, usage=usage, inactive_file=inactive_file)

    def set_usage(self, cgroup_path: str, *, cpu_seconds: float, usage: int, inactive_file: int) -> None:
        rel = cgroup_path.lstrip("/")
        if self.version == 2:
            d = self.cgroup / rel
            d.mkdir(parents=True, exist_ok=True)
            (d / "cpu.stat").write_text(
                f"usage_usec {round(cpu_seconds * 1e6)}\nuser_usec 1\nsystem_usec 1\n")
            (d / "memory.current").write_text(f"{usage}\n")
            (d / "memory.stat").write_text(f"anon 1\nfile 2\nactive_file 3\ninactive_file {inactive_file}\n")
        else:
            cpu = self.cgroup / self.v1_cpu_mount / rel
            mem = self.cgroup / "memory" / rel
            cpu.mkdir(parents=True, exist_ok=True)
            mem.mkdir(parents=True, exist_ok=True)
            (cpu / "cpuacct.usage").write_text(f"{round(cpu_seconds * 1e9)}\n")
            (mem / "memory.usage_in_bytes").write_text(f"{usage}\n")
            (mem / "memory.stat").write_text(
                f"cache 1\ninactive_file 999999\ntotal_cache 1\ntotal_inactive_file {inactive_file}\n")

    def set_net(self, pid: int, net: dict[str, tuple[int, int]]) -> None:
        (self.proc / str(pid) / "net" / "dev").write_text(net_dev(net))
