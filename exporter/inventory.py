"""Which swarm tasks run on this node, from the node's own Docker daemon.

The list changes only when a container starts or stops, so it is not read at every scrape:
a background thread follows Docker's event stream and marks the list out of date when a
container starts, dies or is destroyed; the next scrape then re-lists (one call) and
inspects only the containers it has not seen (one call each). A full re-list every
`resync_seconds` covers events missed while the stream reconnected. Between events a
scrape costs Docker nothing.

`container_record` (pure) turns an inspect answer into a TaskContainer, so it is tested
with captured answers; `Inventory` is the part that talks to Docker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import docker.errors

from exporter.cgroups import CgroupFiles
from swarmguard_config.rfc3339 import parse_time

logger = logging.getLogger(__name__)

# Labels Docker puts on every swarm task's container; a container without them is not a
# swarm task (`docker run`, the exporter itself in some set-ups) and is ignored.
SERVICE_LABEL = "com.docker.swarm.service.name"
TASK_ID_LABEL = "com.docker.swarm.task.id"
NODE_ID_LABEL = "com.docker.swarm.node.id"
TASK_NAME_LABEL = "com.docker.swarm.task.name"
CPU_PERIOD_DEFAULT_US = 100_000  # the kernel's CFS period when none is set


class DockerUnavailable(RuntimeError):
    """The node's Docker daemon cannot be read; the reason is in the message."""


@dataclass(frozen=True)
class TaskContainer:
    service: str
    task_id: str
    node_id: str
    task_name: str
    container_id: str
    pid: int
    started_at: float  # Unix seconds
    cpu_limit_cores: float | None  # None: no limit
    memory_limit_bytes: int | None  # None: no limit
    cgroup: CgroupFiles


def parse_docker_time(text: str) -> float:
    """Unix seconds from Docker's RFC 3339 time (nanoseconds, 'Z'), read to the microsecond
    as the receiver reads Alertmanager's; raises NotATime (a ValueError) on anything else."""
    return parse_time(text, "StartedAt").timestamp()


def cpu_limit_cores(host_config: Mapping) -> float | None:
    """The CPU limit Swarm gave the container (NanoCpus) or a CFS quota set by hand."""
    nano = host_config.get("NanoCpus") or 0
    if nano > 0:
        return nano / 1e9
    quota = host_config.get("CpuQuota") or 0
    if quota > 0:
        return quota / (host_config.get("CpuPeriod") or CPU_PERIOD_DEFAULT_US)
    return None


def container_record(inspected: Mapping, locate: Callable[[str, int, str], CgroupFiles | None]
                     ) -> TaskContainer | None:
    """A running swarm task's container as the exporter reads it, or None when it is not
    one (no swarm labels, not running) or its cgroup cannot be found."""
    labels = (inspected.get("Config") or {}).get("Labels") or {}
    state = inspected.get("State") or {}
    if not all(labels.get(k) for k in (SERVICE_LABEL, TASK_ID_LABEL, NODE_ID_LABEL)):
        return None
    pid = state.get("Pid") or 0
    if not state.get("Running") or pid <= 0:
        return None
    host_config = inspected.get("HostConfig") or {}
    cgroup = locate(inspected["Id"], pid, host_config.get("CgroupParent") or "")
    if cgroup is None:
        return None
    memory = host_config.get("Memory") or 0
    return TaskContainer(
        service=labels[SERVICE_LABEL], task_id=labels[TASK_ID_LABEL], node_id=labels[NODE_ID_LABEL],
        task_name=labels.get(TASK_NAME_LABEL, ""), container_id=inspected["Id"], pid=pid,
        started_at=parse_docker_time(state.get("StartedAt") or "1970-01-01T00:00:00Z"),
        cpu_limit_cores=cpu_limit_cores(host_config), memory_limit_bytes=memory if memory > 0 else None,
        cgroup=cgroup)


class Inventory:
    """The node's running task containers, kept current by Docker's event stream."""

    def __init__(self, connect: Callable[[], object], locate: Callable[[str, int, str], CgroupFiles | None],
                 *, resync_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect  # returns a docker.APIClient; called again after a failure
        self._locate = locate
        self._resync_seconds = resync_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._api = None
        self._tasks: dict[str, TaskContainer] = {}
        self._unlocated: set[str] = set()  # running task containers whose cgroup was not found
        self._dirty = True
        self._listed_at = float("-inf")
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- read at scrape time

    def tasks(self) -> list[TaskContainer]:
        """The current list; re-read from Docker only when an event or the resync interval
        says it may have changed. Raises DockerUnavailable."""
        with self._lock:
            if self._dirty or self._clock() - self._listed_at >= self._resync_seconds:
                self._relist()
            return list(self._tasks.values())

    @property
    def unlocated(self) -> int:
        return len(self._unlocated)

    def forget(self, container_id: str) -> None:
        """A read found the container gone: drop it now, re-list at the next scrape."""
        with self._lock:
            self._tasks.pop(container_id, None)
            self._dirty = True

    def _client(self):
        if self._api is None:
            try:
                self._api = self._connect()
            except Exception as error:  # docker raises several kinds; all mean "cannot read"
                raise DockerUnavailable(f"cannot connect to Docker: {error}") from error
        return self._api

    def _relist(self) -> None:
        api = self._client()
        try:
            listed = api.containers(filters={"label": [TASK_ID_LABEL], "status": "running"})
            running = {c["Id"] for c in listed}
            for gone in set(self._tasks) - running:
                del self._tasks[gone]
            self._unlocated &= running
            new = [c["Id"] for c in listed if c["Id"] not in self._tasks and c["Id"] not in self._unlocated]
            for container_id in new:
                try:
                    inspected = api.inspect_container(container_id)
                except docker.errors.NotFound:
                    continue  # removed since the list was read
                record = container_record(inspected, self._locate)
                if record is None:
                    self._unlocated.add(container_id)
                    logger.warning("No cgroup found for swarm task container %s: it is not measured",
                                   container_id[:12])
                else:
                    self._tasks[container_id] = record
        except Exception as error:
            self._api = None  # reconnect next time, e.g. after a daemon restart
            self._dirty = True
            raise DockerUnavailable(f"cannot list containers: {error}") from error
        self._dirty = False
        self._listed_at = self._clock()

    # -- the event stream

    def start_watching(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="docker-events", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._connect().events(
                    decode=True, filters={"type": "container", "event": ["start", "die", "destroy"]})
                with self._lock:
                    self._dirty = True  # anything may have happened while not watching
                for _event in events:
                    with self._lock:
                        self._dirty = True
                    if self._stop.is_set():
                        return
            except Exception as error:
                logger.info("Docker event stream interrupted (%s); reconnecting", error)
            with self._lock:
                self._dirty = True
            self._stop.wait(2.0)

    def close(self) -> None:
        self._stop.set()
