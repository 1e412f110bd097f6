"""What the receiver knows of the swarm: services, their tasks, nodes, and a snapshot of them.

Pure and frozen: no Docker here, so decisions.py, placement.py and their tests read the
swarm without the Docker SDK. cluster.py reads Docker into these types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

# Service UpdateStatus.State values meaning Swarm itself is still moving tasks (or stopped
# halfway and waits for a human): acting then would race Swarm's own update.
UPDATE_IN_PROGRESS_STATES = frozenset({"updating", "paused", "rollback_started",
                                       "rollback_paused"})


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    role: str
    availability: str
    state: str
    labels: Mapping[str, str] = field(default_factory=dict)
    engine_labels: Mapping[str, str] = field(default_factory=dict)
    os: str = ""
    arch: str = ""
    # Swarm's Version.Index of the node object: the compare-and-swap of a node update.
    version: int = 0
    # Managers only: "reachable", "unreachable" or "unknown" (ManagerStatus.Reachability);
    # "" for a worker.
    manager_reachability: str = ""

    @property
    def schedulable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


@dataclass(frozen=True)
class Task:
    id: str
    service_id: str
    node_id: str
    slot: int | None
    desired_state: str
    state: str
    # When Swarm created the task (its manager's clock); None when Docker did not say.
    # Tells a migration's replacement from the tasks that ran before it (futile.py).
    created_at: datetime | None = None
    # No health field: the tasks API does not report container health. It does not need to:
    # swarmkit keeps a task with a HEALTHCHECK in "starting" until the container is healthy,
    # so state "running" already means healthy where there is a health check.

    @property
    def running(self) -> bool:
        return self.desired_state == "running" and self.state == "running"


# What the receiver can tell of a service's health check (Service.healthcheck).
HEALTHCHECK_SERVICE = "service"  # the service spec declares one (CMD or CMD-SHELL)
HEALTHCHECK_IMAGE = "image"  # the spec inherits one the image declares (inspected locally)
HEALTHCHECK_NONE = "none"  # none: disabled in the spec (["NONE"]), or the image has none
HEALTHCHECK_UNKNOWN = "unknown"  # the spec inherits the image's, and the image is not here


@dataclass(frozen=True)
class Mount:
    """One mount of the service's containers (TaskTemplate.ContainerSpec.Mounts)."""
    type: str  # bind, volume, tmpfs, npipe, cluster
    source: str  # host path, volume name; "" for an anonymous volume or tmpfs
    target: str  # path in the container
    driver: str = ""  # volumes: the driver's name ("local" when none is named)
    driver_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    version: int
    labels: Mapping[str, str]
    mode: str  # "replicated", "global", "replicated-job", "global-job"
    replicas: int | None
    constraints: tuple[str, ...]
    max_replicas_per_node: int
    # Host-mode published ports: two tasks of the service cannot share a node.
    host_ports: bool
    update_state: str | None
    mounts: tuple[Mount, ...] = ()
    healthcheck: str = HEALTHCHECK_UNKNOWN
    # The spec as read (with defaults inserted), for building the one update call. Not
    # compared: two reads of one version are the same service.
    spec: Mapping[str, Any] = field(compare=False, repr=False, default_factory=dict)

    @property
    def updating(self) -> bool:
        return self.update_state in UPDATE_IN_PROGRESS_STATES


@dataclass(frozen=True)
class Snapshot:
    services: Mapping[str, Service]  # by name
    tasks: tuple[Task, ...]
    nodes: Mapping[str, Node]  # by id

    def service(self, name: str) -> Service | None:
        return self.services.get(name)

    def node(self, node_id: str | None) -> Node | None:
        return self.nodes.get(node_id or "")

    def task(self, task_id: str | None) -> Task | None:
        return next((t for t in self.tasks if t.id == task_id), None)

    def tasks_of(self, service: Service) -> list[Task]:
        return [t for t in self.tasks if t.service_id == service.id]

    def hostname(self, node_id: str | None) -> str:
        """A node's hostname for messages, its id when the node is unknown."""
        node = self.node(node_id)
        return node.hostname if node and node.hostname else (node_id or "no node")
