"""What to do about alerts, given a snapshot of the swarm. Pure: no Docker, no clock, no I/O.

`decide(alerts, snapshot, policy, now, storm)` returns one decision per alert (a Migration,
a ScaleStep or a Skip: receiver/actions.py), each with a sentence saying why. The checks, in
this order (receiver/README.md, "Freshness and cooldowns"; docs/contract.md, "Futile moves",
"Moves that cost data or requests" and "Storms"): freshness (service exists, opted in, task
still where the alert says, alert newer than the last action), a futile last move
(receiver/futile.py), cooldown, Swarm not mid-update, what the move would cost
(receiver/safety.py: data kept on the node, a certain outage), then what the action itself
needs (limits, an eligible node that is not hot), then the storm budgets (receiver/storm.py:
what else is in flight, and which hot task leaves a node first).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterable, Mapping

from receiver import futile
from receiver import kinds
from receiver import labels as L
from receiver import placement
from receiver import safety
# The decision types (receiver/actions.py), also read from here by decide()'s callers.
from receiver.actions import Action, Decision, FutileMove, Migration, ScaleStep, Skip, clock_of
from receiver.model import Node, Service, Snapshot, Task
from receiver.alerts import CPU_PERCENT, MEMORY_PERCENT, NETWORK_PERCENT, Alert
# The skip reasons decide() gives (all defined in reasons.py).
from receiver.reasons import (AT_LIMIT, BAD_LABEL, BUDGET, COOLDOWN, FUTILE, IN_PROGRESS,
                              NO_ELIGIBLE_NODE, NOT_OPTED_IN, STALE, UNSUPPORTED)
from receiver.storm import StormView, heat_of
if TYPE_CHECKING:
    from receiver.config import Settings


@dataclass(frozen=True)
class Policy:
    """What deciding needs of the receiver's settings, and nothing more (no token, no
    Docker address): the rules an operator tunes, fixed for one decision."""
    cooldowns: Mapping[str, float]  # seconds, by kind name (receiver/kinds.py)
    # Replica bounds of a service without swarmguard.replicas.min/max labels.
    replicas_min: int
    replicas_max: int
    max_scale_up_step: int  # replicas one scale-up may add
    futile_window: float  # seconds (receiver/futile.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(cooldowns=MappingProxyType(dict(settings.cooldowns)),
                   replicas_min=settings.replicas_min, replicas_max=settings.replicas_max,
                   max_scale_up_step=settings.max_scale_up_step,
                   futile_window=settings.futile_window)


def decide(alerts: Iterable[Alert], snapshot: Snapshot, policy: Policy,
           now: datetime, storm: StormView | None = None) -> list[Decision]:
    """One decision per alert, in the alerts' order, at most one Action per service (one
    action at a time). Of several hot tasks of one service, the hottest is judged first.
    `alerts` are firing: resolved ones never become work (worker.Dispatcher.submit).
    `storm`: what else is in flight and which nodes are hot; None: nothing is."""
    alerts = list(alerts)
    storm = storm or StormView()
    decisions: list[Decision | None] = [None] * len(alerts)
    acting: set[str] = set()
    for i in _hottest_migrations_first(alerts):
        alert = alerts[i]
        decision = decide_one(alert, snapshot, policy, now, storm)
        if isinstance(decision, Action):
            if decision.service.name in acting:
                decision = Skip(alert, IN_PROGRESS,
                                f"another alert for {decision.service.name} is being acted on",
                                lasting=False)
            else:
                acting.add(decision.service.name)
        decisions[i] = decision
    return decisions  # type: ignore[return-value]  # every slot was filled


def _hottest_migrations_first(alerts: list[Alert]) -> list[int]:
    """Indexes in the order to judge them: migrate alerts hottest first, each in one of
    the migrate alerts' places, every other alert where it is."""
    migrate = [i for i, a in enumerate(alerts) if a.kind == kinds.MIGRATE.name]
    by_heat = iter(sorted(migrate, key=lambda i: -heat_of(alerts[i])))
    slots = set(migrate)
    return [next(by_heat) if i in slots else i for i in range(len(alerts))]


def decide_one(alert: Alert, snapshot: Snapshot, policy: Policy,
               now: datetime, storm: StormView | None = None) -> Decision:
    storm = storm or StormView()
    service = snapshot.service(alert.service)
    if service is None:
        return Skip(alert, STALE, f"service {alert.service} no longer exists")
    if not L.opted_in(service.labels):
        return Skip(alert, NOT_OPTED_IN, f"service is not opted in ({L.ENABLE}=true)")
    if alert.kind == kinds.MIGRATE.name:
        moved = _task_moved(alert, snapshot, service)
        if moved:
            return Skip(alert, STALE, moved)
    try:
        history = L.read_history(service.labels)
    except L.LabelError as exc:
        return Skip(alert, BAD_LABEL, str(exc))

    cooldown = policy.cooldowns[alert.kind]
    kind_at = history.kind_at.get(alert.kind)
    since_kind = (now - kind_at).total_seconds() if kind_at else None
    if history.last_at and alert.starts_at <= history.last_at:
        # Evidence from before the last action says nothing about the world after it. One
        # exception makes "one step per cooldown" possible: the same alert still firing
        # after an action of its own kind, once that kind's cooldown has passed (e.g. load
        # still too high after a scale up).
        continues = (history.last_kind == alert.kind and since_kind is not None
                     and since_kind >= cooldown)
        if not continues:
            return Skip(alert, STALE,
                        f"the alert began at {clock_of(alert.starts_at)}, before the last "
                        f"SwarmGuard action ({history.last_kind} at {clock_of(history.last_at)})")
    if alert.kind == kinds.MIGRATE.name:
        # Before the cooldown: the replacement is judged hot again within the cooldown (20 s
        # of start-up grace and the rule's `for:`), and that is when the finding is news.
        found = _futile(alert, snapshot, service, history, policy, now)
        if found:
            return found
    if since_kind is not None and since_kind < cooldown:
        return Skip(alert, COOLDOWN,
                    f"cooldown, last {kinds.BY_NAME[alert.kind].do} "
                    f"{max(since_kind, 0):.0f} s ago "
                    f"(cooldown {cooldown:.0f} s)")
    moving = storm.maintenance_move(service.name)
    if moving is not None:
        return Skip(alert, IN_PROGRESS,
                    f"a {moving.kind} is moving {service.name} (swarmguard {moving.kind})",
                    lasting=False)
    if service.updating:
        return Skip(alert, IN_PROGRESS,
                    f"Swarm's own update of {service.name} is {service.update_state}")
    if service.mode != "replicated":
        return Skip(alert, UNSUPPORTED,
                    f"{service.name} is a {service.mode} service; only replicated services "
                    f"can be {'migrated' if alert.kind == kinds.MIGRATE.name else 'scaled'}")
    try:
        refused = safety.refusal(service, snapshot, alert.kind)  # stateful, unsafe
    except L.LabelError as exc:
        return Skip(alert, BAD_LABEL, str(exc))
    if refused:
        return Skip(alert, *refused)
    if alert.kind == kinds.MIGRATE.name:
        return _migrate(alert, snapshot, service, storm)
    decision = _scale(alert, snapshot, service, policy)
    if isinstance(decision, Action):
        over = storm.over_cluster_budget()
        if over:
            return Skip(alert, BUDGET, over, lasting=False)
    return decision


def _task_moved(alert: Alert, snapshot: Snapshot, service: Service) -> str | None:
    """Why the task the alert names is no longer where it says, or None if it is."""
    task = snapshot.task(alert.task_id)
    short = (alert.task_id or "")[:12]
    if task is None or task.service_id != service.id:
        return f"task {short} no longer exists"
    if not task.running:
        # Swarm never moves a task: it replaces it by a new task in the same slot. Say where
        # that slot runs now, which is what an operator reading the log wants to know.
        successor = next((t for t in snapshot.tasks_of(service)
                          if t.running and t.slot is not None and t.slot == task.slot), None)
        if successor and successor.node_id != alert.node_id:
            return (f"task {short} reported on {snapshot.hostname(alert.node_id)}, running on "
                    f"{snapshot.hostname(successor.node_id)} (as task {successor.id[:12]})")
        return (f"task {short} is no longer running (state {task.state}, desired "
                f"{task.desired_state})")
    if task.node_id != alert.node_id:
        return (f"task {short} reported on {snapshot.hostname(alert.node_id)}, running on "
                f"{snapshot.hostname(task.node_id)}")
    return None


_OWN_HEAT = ("the heat is the task's own work, not its node's (raise its CPU or memory "
             "limit, or let it scale)")


def _futile(alert: Alert, snapshot: Snapshot, service: Service, history: L.History,
            policy: Policy, now: datetime) -> Skip | None:
    """A Skip when the service's migrations are held, or its last move proves futile now."""
    until = futile.held_until(history, now)
    if until:
        return Skip(alert, FUTILE,
                    f"moving {service.name} did not help: {_OWN_HEAT}; not migrated until "
                    f"{clock_of(until)} ({L.FUTILE_UNTIL})")
    # While Swarm's own update runs, the finding waits (in_progress): the hold is written
    # by an update of its own, which must not race Swarm's.
    task = snapshot.task(alert.task_id)
    if service.updating or not futile.replacement_hot_again(
            task, history, policy.futile_window, now):
        return None
    until = futile.hold_until(now, policy.futile_window)
    moved_at = history.kind_at[kinds.MIGRATE.name]
    return FutileMove(
        alert, FUTILE,
        f"task {(alert.task_id or '')[:12]} is hot again on "
        f"{snapshot.hostname(alert.node_id)}, "
        f"{(now - moved_at).total_seconds():.0f} s after it was moved there: {_OWN_HEAT}; "
        f"{service.name} is not migrated until {clock_of(until)}",
        service=service, until=until)


def _migrate(alert: Alert, snapshot: Snapshot, service: Service, storm: StormView
             ) -> Decision:
    task = snapshot.task(alert.task_id)
    hot = snapshot.node(alert.node_id) or Node(alert.node_id or "", "", "", "", "")
    nodes = snapshot.nodes.values()
    leaving_only, _ = placement.migrate_constraints(
        service.constraints, service.labels, [placement.exclusion_for(hot, nodes)])
    eligible, refused = eligible_nodes(service, snapshot, leaving_only, hot, moving=task)
    if not eligible:
        return Skip(alert, NO_ELIGIBLE_NODE,
                    f"no other node can take it ({'; '.join(refused) or 'no other nodes'})")
    # Never onto a hot node: moving a starved task onto another starving node moves the
    # heat around, and it would be moved again.
    hot_nodes = storm.hot_nodes()
    also_hot = [n for n in eligible if n.id in hot_nodes]
    cool = [n for n in eligible if n.id not in hot_nodes]
    if not cool:
        return Skip(alert, NO_ELIGIBLE_NODE,
                    f"every node that could take it is hot itself "
                    f"({', '.join(snapshot.hostname(n.id) for n in also_hot)})", lasting=False)
    hot_name = snapshot.hostname(hot.id)
    over = (storm.over_cluster_budget()
            or storm.over_leave_budget(hot.id, hot_name, alert.task_id or "", heat_of(alert))
            or storm.over_arrival_budget((n.id, snapshot.hostname(n.id)) for n in cool))
    if over:
        return Skip(alert, BUDGET, over, lasting=False)
    constraints, recorded = placement.migrate_constraints(
        service.constraints, service.labels,
        [placement.exclusion_for(n, nodes) for n in [hot, *also_hot]])
    excluding = ", ".join([hot_name] + [f"{snapshot.hostname(n.id)} (hot)" for n in also_hot])
    return Migration(
        alert=alert,
        service=service,
        what=(f"{service.name} off {hot_name}{_evidence(alert)}: start-first, excluding "
              f"{excluding}"),
        task=task,
        from_node=hot,
        constraints=tuple(constraints),
        exclusion=recorded,
        destinations=tuple(n.id for n in cool),
    )


def _scale(alert: Alert, snapshot: Snapshot, service: Service, policy: Policy
           ) -> Decision:
    try:
        low, high = L.replica_limits(service.labels, policy.replicas_min,
                                     policy.replicas_max)
    except L.LabelError as exc:
        return Skip(alert, BAD_LABEL, str(exc))
    current = service.replicas or 0
    if alert.kind == kinds.SCALE_DOWN.name:
        if current <= low:
            return Skip(alert, AT_LIMIT, f"already at the minimum of {low} replicas")
        return ScaleStep(
            kind=alert.kind, alert=alert, service=service,
            what=f"{service.name} from {current} to {current - 1} replicas{_evidence(alert)}",
            replicas=current - 1)
    if current >= high:
        return Skip(alert, AT_LIMIT, f"already at the maximum of {high} replicas")
    step = policy.max_scale_up_step
    bounds = [(high, f"at the maximum of {high}"), (current + step, f"at most {step} a step")]
    constraints: tuple[str, ...] | None = None
    lifting = ""
    if service.host_ports:
        # A host-mode port admits one task per node: each new replica needs a free node.
        free, refused = eligible_nodes(service, snapshot, service.constraints, None)
        user = tuple(placement.user_constraints(service.constraints, service.labels))
        if not free and user != tuple(service.constraints):
            # SwarmGuard's own exclusion (from an earlier migration) keeps the only
            # free nodes out. It moved one starved task away at the time; real demand
            # now needs capacity, so the new replicas may go wherever the user allows.
            # Lifting a constraint moves no running task.
            free, refused = eligible_nodes(service, snapshot, user, None)
            if free:
                constraints = user
                lifting = (f", lifting SwarmGuard's earlier exclusion "
                           f"{service.labels.get(L.PLACEMENT_EXCLUSION, '')}")
        if not free:
            return Skip(alert, NO_ELIGIBLE_NODE,
                        f"no node is free for another replica ({'; '.join(refused)})")
        bounds.append((current + len(free),
                       f"{len(free)} node{'s' if len(free) > 1 else ''} free"))
    target, why = scale_up_target(current, replicas_needed(alert), bounds)
    return ScaleStep(
        kind=alert.kind, alert=alert, service=service,
        what=f"{service.name} from {current} to {target} replicas{why}{_evidence(alert)}{lifting}",
        replicas=target, constraints=constraints)


def scale_up_target(current: int, needed: int | None, bounds: list[tuple[int, str]]
                    ) -> tuple[int, str]:
    """The replica count a scale-up goes to, and the words saying why (" (...)", or "" when
    the alert says nothing of the demand): what the demand needs, at least one more than
    now, within every bound (a count, and how to name it). Every bound is above `current`,
    so the step is at least one replica."""
    wanted = current + 1 if needed is None else max(current + 1, needed)
    target = min([wanted] + [limit for limit, _ in bounds])
    if needed is None:
        return target, ""
    why = f"the demand needs {needed}"
    if needed <= current:
        why += ", one more at least"
    binding = [name for limit, name in bounds if limit == target < wanted]
    return target, f" ({', '.join([why, *binding])})"


def eligible_nodes(service: Service, snapshot: Snapshot, constraints: Iterable[str],
                   excluded: Node | None, moving: Task | None = None
                   ) -> tuple[list[Node], list[str]]:
    """Nodes that could run one more task of the service, and why each other node cannot.

    Ready and active, meeting `constraints`, not `excluded`, and with room for the task: a
    host-mode port or Placement.MaxReplicas limit counts the service's live tasks there
    (the task being moved away does not count).
    """
    constraints = list(constraints)
    live: dict[str, int] = {}
    for t in snapshot.tasks_of(service):
        if t.desired_state == "running" and (moving is None or t.id != moving.id):
            live[t.node_id] = live.get(t.node_id, 0) + 1
    per_node = 1 if service.host_ports else 0
    if service.max_replicas_per_node:
        per_node = min(filter(None, [per_node, service.max_replicas_per_node]))
    eligible, refused = [], []
    for node in sorted(snapshot.nodes.values(), key=lambda n: n.hostname or n.id):
        name = node.hostname or node.id
        if excluded is not None and node.id == excluded.id:
            continue
        if not node.schedulable:
            refused.append(f"{name} is {node.state}/{node.availability}")
            continue
        try:
            if not placement.satisfies(node, constraints):
                refused.append(f"{name} does not meet {', '.join(constraints)}")
                continue
        except placement.UnknownConstraint as exc:
            refused.append(f"{name}: {exc}")
            continue
        if per_node and live.get(node.id, 0) >= per_node:
            refused.append(f"{name} already runs {live[node.id]} task(s) of {service.name}")
            continue
        eligible.append(node)
    return eligible, refused


# Optional annotations the alert rules may carry so that log lines show the evidence.
EVIDENCE_ANNOTATIONS = ((CPU_PERCENT, "cpu"), (MEMORY_PERCENT, "mem"), (NETWORK_PERCENT, "net"))


def _evidence(alert: Alert) -> str:
    parts = []
    for key, short in EVIDENCE_ANNOTATIONS:
        try:
            parts.append(f"{short} {float(alert.annotations[key]):.0f} %")
        except (KeyError, ValueError, OverflowError):
            continue
    return f" ({', '.join(parts)})" if parts else ""


# The optional annotation of SwarmGuardScaleUp: the replica count the service's demand
# needs (docs/contract.md, "Alerts").
REPLICAS_NEEDED = "replicas_needed"


def replicas_needed(alert: Alert) -> int | None:
    """The alert's `replicas_needed` as a whole number of at least 1, else None: the
    annotation is optional, and anything else in it means one replica more, as without
    it."""
    try:
        value = float(alert.annotations.get(REPLICAS_NEEDED))
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value != int(value) or value < 1:
        return None
    return int(value)
