"""What a move would cost a service: data it keeps on its node, requests it would fail. Pure.

Two judgements, read by decisions.py (whether to act) and ground_truth.py (what to warn
people about, `swarmguard_service_move_unsafe`):

- Node-local state (`node_local_state`). Swarm never moves a task: it starts a new one
  elsewhere, which gets that node's copy of the volume (empty, for a named or anonymous
  volume of the `local` driver) or that node's files (a bind mount), while the data stays
  behind with the old task. A new replica gets its own empty volume: the service's data
  is split between replicas. A replica removed takes the only copy of its data out of the
  service (the volume stays on its node, attached to nothing). So all three kinds are
  refused, `stateful`, unless the service carries `swarmguard.stateful=allow`.
  Not state: tmpfs (gone with the container anyway), npipe, Swarm secrets and configs
  (not mounts in the spec: Swarm gives them to every task on every node), cluster (CSI)
  volumes and volumes of another driver (reachable from other nodes), and `local`
  volumes whose options mount a network filesystem (`type: nfs`, `cifs`), the usual way
  to share data with the local driver. A read-only bind or volume still counts: what it
  reads is on this node only. Volumes the image declares (Dockerfile VOLUME) but the
  spec does not are not seen: the spec is all the receiver reads.

- Move problems (`move_problems`), for replicated services (the ones Swarm and SwarmGuard
  move):
  `no_healthcheck`: without a health check Swarm counts a new task as running as soon as
  its container starts, so a start-first move stops the old task, and the routing mesh
  sends requests to the new one, before it serves (measured: an app needing 8 s to start
  lost 161 of 376 requests). Swarm's own reschedules and rolling updates do the same.
  Only reported when known: a health check the spec declares, or disables with ["NONE"],
  and when the spec inherits the image's, what the manager's image store says of that
  image (cluster.image_healthcheck); an image the manager does not hold is `unknown`,
  and unknown is not reported.
  `host_port_no_free_node`: host-mode published ports admit one task per node, and no
  schedulable node that meets the service's own constraints runs none of its tasks: a
  start-first move has nowhere to start the new task (SwarmGuard then skips,
  `no_eligible_node`), and Swarm's own start-first update of it waits for a free node.
  Not reported, because SwarmGuard's moves do not depend on them: the update order and
  the failure action. The migration's own update sets start-first and rollback on
  failure (spec.py), a scale step changes no running task, and Swarm's reschedules of a
  failed or drained node's tasks do not follow UpdateConfig at all.
"""
from __future__ import annotations

from typing import Iterable

from receiver import labels as L
from receiver import placement
from receiver.kinds import MIGRATE, SCALE_DOWN, SCALE_UP
from receiver.model import HEALTHCHECK_NONE, Mount, Node, Service, Snapshot
from receiver.reasons import STATEFUL, UNSAFE

NO_HEALTHCHECK = "no_healthcheck"
HOST_PORT_NO_FREE_NODE = "host_port_no_free_node"
PROBLEMS = (NO_HEALTHCHECK, HOST_PORT_NO_FREE_NODE)

# `type` option of the local driver that mounts a network filesystem: not node-local.
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3"})


def node_local_state(service: Service) -> Mount | None:
    """The first mount whose data stays on the task's node, or None."""
    return next((m for m in service.mounts if _node_local(m)), None)


def _node_local(mount: Mount) -> bool:
    if mount.type == "bind":
        return True
    return (mount.type == "volume" and mount.driver == "local"
            and mount.driver_options.get("type", "").lower() not in NETWORK_FILESYSTEMS)


def describe(mount: Mount) -> str:
    if mount.type == "bind":
        return f"bind mount {mount.source} at {mount.target}"
    if not mount.source:
        return f"an anonymous local volume at {mount.target}"
    return f"local volume {mount.source} at {mount.target}"


def move_problems(service: Service, snapshot: Snapshot) -> tuple[str, ...]:
    """What would make a move of the service fail requests (PROBLEMS), in that order."""
    if service.mode != "replicated":
        return ()
    problems = []
    if service.healthcheck == HEALTHCHECK_NONE:
        problems.append(NO_HEALTHCHECK)
    if service.host_ports and not free_nodes(service, snapshot):
        problems.append(HOST_PORT_NO_FREE_NODE)
    return tuple(problems)


def free_nodes(service: Service, snapshot: Snapshot) -> list[Node]:
    """Schedulable nodes meeting the service's own constraints (SwarmGuard's exclusions
    left out: the next migration replaces them) that run none of its tasks."""
    constraints = placement.user_constraints(service.constraints, service.labels)
    busy = {t.node_id for t in snapshot.tasks_of(service) if t.desired_state == "running"}
    return [n for n in snapshot.nodes.values()
            if n.schedulable and n.id not in busy and _meets(n, constraints)]


def _meets(node: Node, constraints: Iterable[str]) -> bool:
    try:
        return placement.satisfies(node, constraints)
    except placement.UnknownConstraint:
        return False


# What each kind of action would do to a service's node-local data.
_STATE_LOST = {
    MIGRATE.name: "a task started on another node would start without it",
    SCALE_UP.name: "a new replica would start with an empty copy of its own",
    SCALE_DOWN.name: "removing a replica would take its data out of the service",
}


def refusal(service: Service, snapshot: Snapshot, kind: str) -> tuple[str, str] | None:
    """(skip reason, why) when an action of `kind` must not touch the service, else None.
    Raises labels.LabelError when swarmguard.stateful or swarmguard.unsafe is unreadable."""
    allow_state = L.allows(service.labels, L.STATEFUL)
    allow_unsafe = L.allows(service.labels, L.UNSAFE)
    mount = node_local_state(service)
    if mount is not None and not allow_state:
        return STATEFUL, (f"{service.name} keeps data on its node ({describe(mount)}): "
                          f"{_STATE_LOST[kind]} ({L.STATEFUL}={L.ALLOW} allows it)")
    # Only the certain outage is refused: the service's one running task replaced by a
    # task that Swarm lets take requests before it serves. With more replicas the others
    # keep serving, and a starved task is already failing requests: moving it is the
    # smaller loss. A scale-up adds a task and stops none.
    if (kind == MIGRATE.name and not allow_unsafe
            and NO_HEALTHCHECK in move_problems(service, snapshot)):
        running = [t for t in snapshot.tasks_of(service) if t.running]
        if len(running) <= 1:
            return UNSAFE, (f"{service.name} has no health check and one running task: Swarm "
                            f"would stop it as soon as the new task's container starts, before "
                            f"that task serves ({L.UNSAFE}={L.ALLOW} moves it anyway)")
    return None
