"""A container's CPU time and memory working set, read straight from its cgroup.

This is the detection path's fast signal. cAdvisor computes the same numbers, but for
every container on the node at its own housekeeping pace; reading the two or three files
of one task at scrape time costs tens of microseconds and nothing between scrapes
(docs/contract.md, "Where the numbers come from").

Both cgroup versions are read, with the numbers cAdvisor reports for them, so that a
threshold means the same whichever source a user compares against:
- CPU: cgroup v2 `cpu.stat` usage_usec; v1 `cpuacct.usage` (nanoseconds).
- working set: usage minus inactive file pages, floored at 0; v2 `memory.current` and
  `memory.stat` inactive_file; v1 `memory.usage_in_bytes` and `memory.stat`
  total_inactive_file.

Where the cgroup is: `/proc/<pid>/cgroup` names it relative to the reader's cgroup
namespace. A host process (the lab) or a reader in the host's namespace gets a path that
resolves; a reader in a private cgroup namespace (a container, cgroup v2's default) gets
`/../..` paths, so the usual layouts of Docker's two cgroup drivers are tried by
container ID as well.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from exporter.counters import kernel_counter
from swarmguard_config.cgroup_paths import parse_proc_cgroup


class ContainerGone(OSError):
    """The container's files are gone: it stopped between discovery and this read."""


@dataclass(frozen=True)
class CgroupFiles:
    version: int  # 1 or 2
    cpu_usage: str  # usage_usec (v2 cpu.stat) or cpuacct.usage (v1)
    memory_usage: str
    memory_stat: str


def _field(text: bytes, name: bytes) -> int:
    """The value of the line `name value` of a flat-keyed cgroup file (cpu.stat, memory.stat)."""
    key = name + b" "
    if text.startswith(key):
        start = 0
    else:
        found = text.find(b"\n" + key)
        if found < 0:
            raise ValueError(f"no {name.decode()} in cgroup file")
        start = found + 1
    end = text.find(b"\n", start)
    return kernel_counter(text[start + len(key) : end if end >= 0 else len(text)], name.decode())


def parse_cpu_seconds(version: int, cpu_usage: bytes) -> float:
    if version == 2:
        return _field(cpu_usage, b"usage_usec") / 1e6
    return kernel_counter(cpu_usage, "cpuacct.usage") / 1e9


def parse_working_set(version: int, memory_usage: bytes, memory_stat: bytes) -> int:
    inactive = _field(memory_stat, b"inactive_file" if version == 2 else b"total_inactive_file")
    usage = kernel_counter(memory_usage, "memory.current" if version == 2 else "memory.usage_in_bytes")
    return max(0, usage - inactive)


# Errors that mean "the container is gone": its cgroup was removed (ENODEV on an open
# cgroup file, ENOENT on a path) or its process exited (ESRCH on /proc/<pid>/...).
_GONE = (errno.ENOENT, errno.ENODEV, errno.ESRCH)


class TaskFiles:
    """The four files read for one task at every scrape, kept open between scrapes.

    Each is re-read from offset 0 with one pread(2) (cgroup and /proc files are generated
    on every read), instead of open/read/close: a third of the system calls, measured
    with `make bench-density`.
    """

    _READ_SIZE = 16384  # memory.stat is 1-3 kB, net/dev ~130 bytes per interface

    def __init__(self, cgroup: CgroupFiles, net_dev: str) -> None:
        self.version = cgroup.version
        self._fds: list[int] = []
        try:
            for path in (cgroup.cpu_usage, cgroup.memory_usage, cgroup.memory_stat, net_dev):
                self._fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as error:
            self.close()
            if error.errno in _GONE:
                raise ContainerGone(error.errno, error.strerror, error.filename) from None
            raise

    def _read(self, index: int) -> bytes:
        try:
            data = os.pread(self._fds[index], self._READ_SIZE, 0)
        except OSError as error:
            if error.errno in _GONE:
                raise ContainerGone(error.errno, error.strerror) from None
            raise
        if not data:  # a /proc file of an exited process reads as empty
            raise ContainerGone(errno.ESRCH, "file reads empty: the process has exited")
        return data

    def read(self) -> tuple[float, int, bytes]:
        """(CPU seconds, working set bytes, the raw net/dev text)."""
        cpu = parse_cpu_seconds(self.version, self._read(0))
        working_set = parse_working_set(self.version, self._read(1), self._read(2))
        return cpu, working_set, self._read(3)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


# ---------------------------------------------------------------- finding the cgroup

def _files_v2(directory: str) -> CgroupFiles:
    return CgroupFiles(2, os.path.join(directory, "cpu.stat"), os.path.join(directory, "memory.current"),
                       os.path.join(directory, "memory.stat"))


def _files_v1(cpuacct: str, memory: str) -> CgroupFiles:
    return CgroupFiles(1, os.path.join(cpuacct, "cpuacct.usage"), os.path.join(memory, "memory.usage_in_bytes"),
                       os.path.join(memory, "memory.stat"))


def _complete(files: CgroupFiles) -> bool:
    return all(os.path.exists(p) for p in (files.cpu_usage, files.memory_usage, files.memory_stat))


def _v1_dir(cgroup_root: str, controller: str, path: str) -> str | None:
    # A v1 hierarchy is mounted under its controller's name, or under a combined name
    # ("cpu,cpuacct") that distributions link the single names to.
    for mount in (controller, "cpu,cpuacct" if controller in ("cpu", "cpuacct") else controller):
        candidate = os.path.join(cgroup_root, mount, path.lstrip("/"))
        if os.path.isdir(candidate):
            return candidate
    return None


def _by_id_candidates(container_id: str, cgroup_parent: str) -> list[str]:
    """Relative cgroup paths Docker uses for a container (cgroupfs and systemd drivers)."""
    parent = cgroup_parent.strip("/")
    out = []
    if parent:
        out += [f"{parent}/{container_id}", f"{parent}/docker-{container_id}.scope"]
    out += [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    return out


def locate(container_id: str, pid: int, *, proc_root: str, cgroup_root: str,
           cgroup_parent: str = "") -> CgroupFiles | None:
    """The cgroup files of a container, or None when none of the known places has them."""
    try:
        with open(os.path.join(proc_root, str(pid), "cgroup"), encoding="utf-8") as handle:
            own = parse_proc_cgroup(handle.read())
    except OSError:
        own = {}
    unified = os.path.exists(os.path.join(cgroup_root, "cgroup.controllers"))
    relative = []
    if "cpuacct" in own and "memory" in own and not unified:
        cpuacct = _v1_dir(cgroup_root, "cpuacct", own["cpuacct"])
        memory = _v1_dir(cgroup_root, "memory", own["memory"])
        if cpuacct and memory and _complete(_files_v1(cpuacct, memory)):
            return _files_v1(cpuacct, memory)
    if "" in own and ".." not in own[""]:
        relative.append(own[""])
    relative += _by_id_candidates(container_id, cgroup_parent)
    for path in relative:
        if unified:
            files = _files_v2(os.path.join(cgroup_root, path.lstrip("/")))
        else:
            cpuacct = _v1_dir(cgroup_root, "cpuacct", path)
            memory = _v1_dir(cgroup_root, "memory", path)
            if not (cpuacct and memory):
                continue
            files = _files_v1(cpuacct, memory)
        if _complete(files):
            return files
    return None
