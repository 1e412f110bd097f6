"""Node maintenance, planned: which tasks a drain moves start-first, which it leaves to
Swarm, which nothing can take; whether a node may be drained at all; how a rebalance
evens out the nodes. Pure: no Docker, no clock (receiver/maintainer.py carries it out).

Why SwarmGuard drains instead of `docker node update --availability drain`: Swarm stops a
drained node's tasks before their replacements run, whatever the service's update order
(moby/moby#34139), so a service with one replica, or whose replicas all sit on the node,
is down until its new tasks start. A SwarmGuard drain first pauses the node (nothing new
lands there), then moves each replicated service's tasks off it with one start-first
update of the service that excludes the node (swarmkit replaces only the tasks whose node
no longer meets the constraints, one at a time, each healthy before its old task stops),
lifts that exclusion once the service has left, and only then sets the node to `drain`
for whatever is left (global services' tasks, jobs).

Which services a drain moves: every replicated one with a task on the node, opted in or
not. `swarmguard.enable` governs what SwarmGuard may do on its own; a drain is a person's
request for the node, and a service left out would not stay: Swarm's drain would stop it
the hard way. Two kinds are not moved, and refuse the drain unless it is forced (then
Swarm's drain takes them, as it would without SwarmGuard): a task no other node can take
(constraints, host ports, replicas per node), and a task that keeps data on the node
(receiver/safety.py) unless its service says `swarmguard.stateful=allow`: its data would
stay behind, and that must be a person's decision, made knowingly.

The drain's state lives in the node's labels (DRAIN_STATE and companions), so that a
restarted receiver, or another replica, finds a drain half done and finishes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from receiver import labels as L
from receiver import placement
from receiver import safety
from receiver.decisions import eligible_nodes
from receiver.kinds import MIGRATE
from receiver.model import HEALTHCHECK_NONE, Node, Service, Snapshot, Task

# Node labels written by SwarmGuard while it drains a node.
DRAIN_STATE = "swarmguard.drain"  # MOVING, then DRAINED
DRAIN_AT = "swarmguard.drain-at"  # when the drain was asked for, RFC 3339 UTC
DRAIN_FORCE = "swarmguard.drain-force"  # "true": tasks nothing can take are left to Swarm
DRAIN_LABELS = (DRAIN_STATE, DRAIN_AT, DRAIN_FORCE)
MOVING = "moving"  # paused; SwarmGuard moves its tasks off one service at a time
DRAINED = "drained"  # every movable task moved; the node's availability is `drain`

# The kinds of the moves maintenance makes (events' and metrics' `kind`, the services'
# swarmguard.last-action).
DRAIN = "drain"
REBALANCE = "rebalance"
MOVE_KINDS = (DRAIN, REBALANCE)

# The longest node name or ID a request may give (Docker's IDs are 25 characters;
# hostnames at most 253).
NODE_NAME_MAX = 256


class Refused(Exception):
    """The request cannot be carried out; nothing was changed. `status` is the HTTP one."""

    def __init__(self, status: int, reason: str, plan: "DrainPlan | None" = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.plan = plan


@dataclass(frozen=True)
class Left:
    """A task a drain does not move itself, and why."""
    service: str
    task: str
    why: str


@dataclass(frozen=True)
class ServiceMove:
    """One service's tasks on the node, moved by one start-first update."""
    service: str
    tasks: tuple[str, ...]
    replicas: int
    note: str | None = None


@dataclass(frozen=True)
class DrainPlan:
    node: Node
    moves: tuple[ServiceMove, ...] = ()
    left: tuple[Left, ...] = ()  # left to Swarm's drain
    blocked: tuple[Left, ...] = ()  # nothing can take them: refused unless forced

    def as_json(self) -> dict:
        return {"node": {"id": self.node.id, "hostname": self.node.hostname},
                "moves": [{"service": m.service, "tasks": list(m.tasks),
                           "replicas": m.replicas, "note": m.note} for m in self.moves],
                "left": [vars(x) for x in self.left],
                "blocked": [vars(x) for x in self.blocked]}


def find_node(snapshot: Snapshot, name: str) -> Node:
    """The node a person named, by hostname or ID. Raises Refused (404) when none is, or
    (409) when the hostname is shared: then the ID must be given."""
    by_id = snapshot.nodes.get(name)
    if by_id is not None:
        return by_id
    named = [n for n in snapshot.nodes.values() if n.hostname == name]
    if len(named) == 1:
        return named[0]
    if named:
        raise Refused(409, f"{len(named)} nodes are called {name}; give the node's ID "
                           f"({', '.join(sorted(n.id for n in named))})")
    known = ", ".join(sorted(n.hostname or n.id for n in snapshot.nodes.values()))
    raise Refused(404, f"no node is called {name} (the swarm has {known})")


def drain_state(node: Node) -> str | None:
    return node.labels.get(DRAIN_STATE) or None


def drain_refusal(snapshot: Snapshot, node: Node) -> str | None:
    """Why the node may not be drained now, or None."""
    state = drain_state(node)
    if state == MOVING:
        return f"{node.hostname} is already being drained (since {node.labels.get(DRAIN_AT)})"
    if state == DRAINED or node.availability == "drain":
        return f"{node.hostname} is already drained (availability {node.availability})"
    others = [n for n in snapshot.nodes.values()
              if n.id != node.id and n.schedulable and not drain_state(n)]
    if not others:
        return (f"{node.hostname} is the last node that takes work: its tasks would have "
                f"nowhere to go")
    return quorum_refusal(snapshot, node)


def quorum_refusal(snapshot: Snapshot, node: Node) -> str | None:
    """A manager taken down for maintenance leaves the Raft quorum: refuse when the
    managers still reachable without it would be fewer than a majority of all managers
    (the swarm could then neither schedule nor change anything until it returns)."""
    if node.role != "manager":
        return None
    managers = [n for n in snapshot.nodes.values() if n.role == "manager"]
    staying = [n for n in managers if n.id != node.id and n.manager_reachability == "reachable"
               and not drain_state(n)]
    quorum = len(managers) // 2 + 1
    if len(staying) >= quorum:
        return None
    return (f"{node.hostname} is a manager: without it {len(staying)} of {len(managers)} "
            f"manager(s) stay reachable and the Raft quorum needs {quorum}; add managers "
            f"first (docker node promote)")


def running_on(snapshot: Snapshot, service: Service, node: Node) -> list[Task]:
    """The service's tasks Swarm means to run on the node (starting ones too)."""
    return [t for t in snapshot.tasks_of(service)
            if t.node_id == node.id and t.desired_state == "running"]


def plan_drain(snapshot: Snapshot, node: Node, failed: Mapping[str, str] | None = None
               ) -> DrainPlan:
    """What a drain of `node` does with each task there. `failed`: services whose move
    already failed in this drain, and why: not tried again (an action that did not help
    is not repeated), they count as blocked."""
    failed = failed or {}
    moves, left, blocked = [], [], []
    for service in sorted(snapshot.services.values(), key=lambda s: s.name):
        tasks = running_on(snapshot, service, node)
        if not tasks:
            continue
        ids = tuple(t.id for t in tasks)
        if service.mode != "replicated":
            why = ("a global service runs a task on every node: Swarm's drain stops this one"
                   if service.mode == "global" else
                   f"a {service.mode} service runs to completion: Swarm's drain stops it")
            left.extend(Left(service.name, t, why) for t in ids)
            continue
        why = failed.get(service.name) or _cannot_move(snapshot, service, node, len(ids))
        if why:
            blocked.extend(Left(service.name, t, why) for t in ids)
            continue
        note = None
        if service.healthcheck == HEALTHCHECK_NONE:
            note = ("no health check: Swarm counts a new task as running when its container "
                    "starts, so requests may reach it before it serves")
        moves.append(ServiceMove(service.name, ids, service.replicas or 0, note))
    return DrainPlan(node, tuple(moves), tuple(left), tuple(blocked))


def _cannot_move(snapshot: Snapshot, service: Service, node: Node, count: int) -> str | None:
    try:
        allowed = L.allows(service.labels, L.STATEFUL)
    except L.LabelError as exc:
        return str(exc)
    mount = safety.node_local_state(service)
    if mount is not None and not allowed:
        return (f"keeps data on {node.hostname} ({safety.describe(mount)}): a task started "
                f"elsewhere would start without it ({L.STATEFUL}={L.ALLOW} moves it anyway)")
    constraints, _ = placement.migrate_constraints(
        service.constraints, service.labels, [placement.exclusion_for(node, snapshot.nodes.values())])
    eligible, refused = eligible_nodes(service, snapshot, constraints, node)
    eligible = [n for n in eligible if not drain_state(n)]
    if not eligible:
        return f"no other node can take it ({'; '.join(refused) or 'no other node takes work'})"
    return None


def move_constraints(snapshot: Snapshot, service: Service, node: Node
                     ) -> tuple[tuple[str, ...], str]:
    """The service's constraints during a move off `node`, and the exclusion to record."""
    constraints, recorded = placement.migrate_constraints(
        service.constraints, service.labels, [placement.exclusion_for(node, snapshot.nodes.values())])
    return tuple(constraints), recorded


def leftover_exclusions(snapshot: Snapshot, moving: frozenset[str]
                        ) -> list[tuple[str, str]]:
    """(service, exclusion) for each service whose drain or rebalance move is over, yet
    still carries the move's exclusion: every task it means to run is on a node that meets
    its constraints, Swarm is not updating it, and no action on it is in flight (`moving`).
    That is a move a receiver could not finish itself (restarted mid-move); lifting the
    exclusion replaces no task."""
    found = []
    for service in sorted(snapshot.services.values(), key=lambda s: s.name):
        exclusion = service.labels.get(L.PLACEMENT_EXCLUSION)
        if (not exclusion or service.labels.get(L.LAST_ACTION) not in MOVE_KINDS
                or service.updating or service.name in moving):
            continue
        hosts = [snapshot.node(t.node_id) for t in snapshot.tasks_of(service)
                 if t.desired_state == "running"]
        if all(h is not None and _meets(h, service.constraints) for h in hosts):
            found.append((service.name, exclusion))
    return found


def exclusions_of_drain(snapshot: Snapshot, node: Node) -> list[str]:
    """Services that still carry this drain's exclusion of `node`: the drain is not over
    until each is lifted (leftover_exclusions), so that "drained" leaves every service's
    placement as its owner wrote it."""
    exclusion = placement.exclusion_for(node, snapshot.nodes.values())
    return sorted(s.name for s in snapshot.services.values()
                  if s.labels.get(L.PLACEMENT_EXCLUSION) == exclusion
                  and s.labels.get(L.LAST_ACTION) == DRAIN)


# -- rebalance ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RebalanceMove:
    service: str
    task: str
    from_node: Node
    to: tuple[Node, ...]  # where it may land: lighter nodes, none hot


@dataclass(frozen=True)
class RebalancePlan:
    tolerance: int
    counts: Mapping[str, int]  # node id -> tasks meant to run there, now
    moves: tuple[RebalanceMove, ...] = ()
    why_not: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)  # node id -> hostname

    def as_json(self) -> dict:
        return {"tolerance": self.tolerance,
                "counts": {self.names.get(i, i): c for i, c in sorted(
                    self.counts.items(), key=lambda kv: self.names.get(kv[0], kv[0]))},
                "moves": [{"service": m.service, "task": m.task,
                           "from": m.from_node.hostname or m.from_node.id,
                           "to": [n.hostname or n.id for n in m.to]} for m in self.moves],
                "why_not": self.why_not}


def task_counts(snapshot: Snapshot, nodes: Iterable[Node]) -> dict[str, int]:
    """Tasks Swarm means to run on each of `nodes`, every service's: what the spread is
    judged by."""
    counts = {n.id: 0 for n in nodes}
    for t in snapshot.tasks:
        if t.desired_state == "running" and t.node_id in counts:
            counts[t.node_id] += 1
    return counts


def plan_rebalance(snapshot: Snapshot, hot_nodes: frozenset[str], tolerance: int,
                   already_moved: Iterable[str] = ()) -> RebalancePlan:
    """Moves that bring the busiest and the quietest node within `tolerance` tasks of each
    other, each from the busiest node to a lighter one that is not hot.

    Judged by task count, not measured CPU: it is what Swarm's own scheduler spreads by,
    so Swarm's later placements keep the balance instead of fighting it; and heat is the
    migrate alert's job, which moves a starved task at once, while CPU averaged over
    minutes would move tasks after every burst. Only opted-in services move (a rebalance
    is not needed for the node's sake, unlike a drain), each at most once per rebalance
    (so no task is moved back and forth), only tasks a move would not cost requests or
    data (receiver/safety.py), and only to nodes that run no task of the service yet
    (Swarm's spread prefers them anyway). `already_moved`: services this rebalance moved.

    The nodes compared are those taking work that could run some opted-in service (a
    manager kept free of applications by their constraints is not "empty")."""
    opted = [s for s in snapshot.services.values()
             if L.opted_in(s.labels) and s.mode == "replicated"]
    nodes = [n for n in snapshot.nodes.values() if n.schedulable and not drain_state(n)
             and any(_meets(n, placement.user_constraints(s.constraints, s.labels)) for s in opted)]
    names = {n.id: n.hostname or n.id for n in nodes}
    counts = task_counts(snapshot, nodes)
    if len(nodes) < 2:
        return RebalancePlan(tolerance, counts, why_not="fewer than two nodes take work",
                             names=names)
    planned = dict(counts)
    moved_services: set[str] = set(already_moved)
    moves: list[RebalanceMove] = []
    while True:
        busiest = max(nodes, key=lambda n: (planned[n.id], n.hostname))
        quietest = min(planned.values())
        if planned[busiest.id] - quietest <= tolerance:
            break
        move = _one_rebalance_move(snapshot, busiest, nodes, planned, hot_nodes, moved_services)
        if move is None:
            break
        moves.append(move)
        moved_services.add(move.service)
        planned[busiest.id] -= 1
        lightest = min(move.to, key=lambda n: (planned[n.id], n.hostname))
        planned[lightest.id] += 1
    why_not = None
    if not moves:
        spread = max(counts.values()) - min(counts.values())
        busiest = max(nodes, key=lambda n: counts[n.id])
        why_not = (f"the nodes are within {tolerance} task(s) of each other (spread {spread})"
                   if spread <= tolerance else
                   f"no task on {busiest.hostname} can move to a lighter node (opted in, safe "
                   f"to move, no task of its service there, node not hot)"
                   + _still_updating(opted, snapshot, busiest))
    return RebalancePlan(tolerance, counts, tuple(moves), why_not, names)


def _still_updating(opted: Iterable[Service], snapshot: Snapshot, node: Node) -> str:
    """What an operator can wait for: the services on `node` that Swarm is still updating
    (right after an undrain, say), which a rebalance never moves mid-update."""
    updating = sorted(s.name for s in opted if s.updating and running_on(snapshot, s, node))
    if not updating:
        return ""
    return (f"; Swarm is still updating {', '.join(updating)} there: rebalance again once "
            f"{'its update has' if len(updating) == 1 else 'their updates have'} finished")


def _meets(node: Node, constraints: Iterable[str]) -> bool:
    try:
        return placement.satisfies(node, constraints)
    except placement.UnknownConstraint:
        return False


def _one_rebalance_move(snapshot: Snapshot, busiest: Node, nodes: list[Node],
                        planned: Mapping[str, int], hot_nodes: frozenset[str],
                        moved_services: set[str]) -> RebalanceMove | None:
    lighter = [n for n in nodes if n.id != busiest.id and n.id not in hot_nodes
               and planned[n.id] < planned[busiest.id] - 1]
    for service in sorted(snapshot.services.values(), key=lambda s: s.name):
        if service.name in moved_services or not L.opted_in(service.labels):
            continue
        if service.mode != "replicated" or service.updating:
            continue
        try:
            if safety.refusal(service, snapshot, MIGRATE.name):
                continue
        except L.LabelError:
            continue
        here = running_on(snapshot, service, busiest)
        if not here:
            continue
        hosting = {t.node_id for t in snapshot.tasks_of(service) if t.desired_state == "running"}
        constraints, _ = move_constraints(snapshot, service, busiest)
        eligible, _ = eligible_nodes(service, snapshot, constraints, busiest)
        ok = {n.id for n in eligible}
        to = [n for n in lighter if n.id in ok and n.id not in hosting]
        if to:
            # The lightest of them only: Swarm picks among the nodes a move allows, and
            # would not always pick the one the plan counted on.
            least = min(planned[n.id] for n in to)
            to = tuple(n for n in to if planned[n.id] == least)
            return RebalanceMove(service.name, here[0].id, busiest, to)
    return None


def rebalance_exclusions(snapshot: Snapshot, service: Service, move: RebalanceMove
                         ) -> list[str]:
    """The constraints that steer the moved task onto one of `move.to`: the node it
    leaves, and every other node that runs no task of the service (excluding a node that
    runs one would replace that task too: swarmkit replaces every task whose node no
    longer meets the constraints)."""
    nodes = list(snapshot.nodes.values())
    hosting = {t.node_id for t in snapshot.tasks_of(service) if t.desired_state == "running"}
    allowed = {n.id for n in move.to}
    excluded = [move.from_node] + [n for n in sorted(nodes, key=lambda n: n.hostname)
                                   if n.id != move.from_node.id and n.id not in allowed
                                   and n.id not in hosting]
    return [placement.exclusion_for(n, nodes) for n in excluded]


@dataclass(frozen=True)
class NodeMove:
    """One service's tasks on `from_node` replaced start-first elsewhere by ONE update of
    the service (the compare-and-swap on `service.version`), for a drain or a rebalance."""
    kind: str  # DRAIN or REBALANCE
    service: Service
    from_node: Node
    tasks: tuple[str, ...]  # the tasks it replaces
    constraints: tuple[str, ...]  # Placement.Constraints during the move
    exclusion: str  # SwarmGuard's exclusion recorded in the service's labels
    destinations: tuple[str, ...]  # node ids it may land on (the storm's arrival budget)
    destination_names: tuple[str, ...] = ()  # their hostnames, in the same order (messages)
    # Every task of the service Swarm meant to run when the move was planned: what is not
    # among them afterwards is the move's replacement (the storm's arrivals).
    known_tasks: tuple[str, ...] = ()

    @property
    def sentence(self) -> str:
        count = f"{len(self.tasks)} tasks of " if len(self.tasks) > 1 else ""
        return (f"Moving {count}{self.service.name} off {self.from_node.hostname} "
                f"({self.kind}): start-first, excluding {self.exclusion or 'nothing new'}")


def drain_move(snapshot: Snapshot, service: Service, node: Node) -> NodeMove | None:
    """The move of `service`'s tasks off `node` for a drain, on a fresh read of it; None
    when nothing of it is left there."""
    tasks = running_on(snapshot, service, node)
    if not tasks:
        return None
    constraints, recorded = move_constraints(snapshot, service, node)
    eligible, _ = eligible_nodes(service, snapshot, constraints, node)
    destinations = [n for n in eligible if not drain_state(n)]
    return NodeMove(DRAIN, service, node, tuple(t.id for t in tasks), constraints, recorded,
                    tuple(n.id for n in destinations),
                    tuple(n.hostname or n.id for n in destinations), _known(snapshot, service))


def rebalance_move(snapshot: Snapshot, service: Service, move: RebalanceMove
                   ) -> NodeMove | None:
    """The planned rebalance move on a fresh read of its service; None when its task is
    no longer on the busy node."""
    here = running_on(snapshot, service, move.from_node)
    if not any(t.id == move.task for t in here):
        return None
    constraints, recorded = placement.migrate_constraints(
        service.constraints, service.labels, rebalance_exclusions(snapshot, service, move))
    # Every task of the service on that node is replaced: they all stop meeting the
    # constraints (the plan counts one; the next plan sees the rest).
    return NodeMove(REBALANCE, service, move.from_node, tuple(t.id for t in here),
                    tuple(constraints), recorded, tuple(n.id for n in move.to),
                    tuple(n.hostname or n.id for n in move.to), _known(snapshot, service))


def _known(snapshot: Snapshot, service: Service) -> tuple[str, ...]:
    return tuple(t.id for t in snapshot.tasks_of(service) if t.desired_state == "running")
