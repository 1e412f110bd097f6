"""SwarmGuard's invariants, judged over one soak's Observations. Pure: no I/O, no clock.

`check(obs)` runs every check in CHECKS (name -> function; a test calls one alone) and
adds `figures["cost"]`. A check returns a Judgement: its violations (when, and a sentence
about what) and its figures (what was measured, violated or not). The facts are
docs/contract.md's: "Receiver events" (what an action is, how it ends), "Storms" (the
budgets), "Futile moves" and "Service labels".

A reading of the cluster is taken every few seconds; a condition that holds over many
readings is one violation, counted when it starts or changes, not at every reading.
"""
from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Sequence

from receiver import events as E
from receiver.config import Settings
from receiver import labels as L
from receiver import reasons as R
from receiver.kinds import MIGRATE, SCALE_DOWN, SCALE_UP
from receiver.maintenance import DRAIN, REBALANCE
from receiver.placement import UnknownConstraint, parse, recorded_exclusions

from ..lab.instruments.events import event_time
from ..lab.instruments.health import HEALTH_ALERTS
from .model import (DOCKERD_STOP, NETWORK_CUT, RECEIVER_KILL, RECEIVER_SIGTERM, FaultSpan,
                    Observations, ResourceSample, ServiceState)


_SHIPPED = Settings(token="-")  # the receiver's defaults


@dataclass(frozen=True)
class Limits:
    # The receiver's storm budgets as shipped (receiver/config.py; docs/contract.md,
    # "Storms"), which the soak's receiver runs with: over one is a broken budget, not a
    # tuning question.
    max_concurrent_actions: int = field(default_factory=lambda: _SHIPPED.max_concurrent_actions)
    max_actions_per_minute: int = field(default_factory=lambda: _SHIPPED.max_actions_per_minute)
    max_leaving_per_node: int = field(default_factory=lambda: _SHIPPED.max_leaving_per_node)
    # Successful migrations of one service in any 3,600 s. A task hot by its own work is
    # moved at most once per futile window ("Futile moves": SWARMGUARD_FUTILE_WINDOW,
    # counted from the alert on its replacement, so two such moves are more than a window
    # apart): at most 6 in an hour with the shipped 600 s. One more is futile moving; a
    # service whose futile hold is broken moves about every minute (the migrate cooldown,
    # 60 s, plus detection).
    max_moves_per_hour: int = field(default_factory=lambda: math.ceil(3600 / _SHIPPED.futile_window))
    # Alerts that start, and resource samples taken, before this many seconds of the soak
    # are not judged: the rules need the exporters' first scrapes and the opt-in list (held
    # 1 m) before they can judge anything (until then a Prometheus is blind by design,
    # `opt_in_unknown`), and a process's start-up allocations are not growth.
    warmup_s: float = 150.0
    # A request failing this long after an action's outcome is still the action's: the
    # outcome is written when the new task runs, and a probe in flight then ends later.
    action_margin_s: float = 10.0
    # Largest RSS growth, MB (10^6 bytes) an hour, of one process, by kind (the name before
    # its first "-"). The receiver keeps a bounded event ring and no history, the exporter
    # keeps only the previous sample of each rate: neither should grow at all once warm,
    # and these leave room for the allocator's noise. Prometheus's head block grows with
    # every sample until its two-hour compaction, hence its larger allowance. A kind not
    # listed is measured, not judged.
    rss_slope_mb_per_hour: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(
        {"receiver": 20.0, "exporter": 10.0, "prometheus": 150.0}))
    # Largest rise of CPU use, % of one core an hour: a loop that does more at each turn
    # (a list scanned that only grows) shows here long before it shows as load.
    cpu_slope_percent_per_hour: float = 5.0
    # A process (one pid) watched for less than this is too short to fit a slope to: a
    # slope an hour extrapolated from minutes is the noise of a few samples (the soak found
    # it: a detection Prometheus's CPU "rose 5.2 % of a core an hour" over 330 s of an
    # 8-minute soak, a change of 0.5 % of a core inside samples that vary by more).
    min_segment_s: float = 900.0
    # And a slope is a trend only when it stands out of its own noise: the limit must lie
    # below the slope less this many standard errors of the fit.
    slope_confidence_se: float = 2.0


@dataclass(frozen=True)
class Violation:
    at: float  # unix seconds
    text: str  # a sentence about what broke


@dataclass(frozen=True)
class Judgement:
    violations: list[Violation]
    figures: dict


# -- actions, out of the receiver's events ------------------------------------------------

# Kinds whose action moves tasks off a node (the event's `node`): they take the leave budget
# ("Storms": a drain's or rebalance's move takes the same budgets as a migration).
MOVES = frozenset({MIGRATE.name, DRAIN, REBALANCE})
# Faults that take a receiver down: the actions it was running end unrecorded.
RECEIVER_DOWN = frozenset({RECEIVER_KILL, RECEIVER_SIGTERM})
# Node faults that cost a service's requests by themselves (its tasks there stop answering).
# A drain is SwarmGuard's own move, and a detection Prometheus or an exporter down costs no
# request: failures then are judged like any other.
COSTS_REQUESTS = frozenset({DOCKERD_STOP, NETWORK_CUT})
FIRST_SHOWN = 5  # violations (and other first times) listed per check


@dataclass(frozen=True)
class Action:
    """A `decision` `act` and how it ended ("Receiver events"). Positions are in obs.events."""
    run: int  # which receiver run (0, 1, ...: each begins with a `started` event)
    decision: Mapping
    decided: float
    position: int
    end: Mapping | None  # its `outcome`, or a `dropped`; None: no word of it
    ended: float | None
    end_position: int | None
    run_ended: float  # the next run's `started`, or the soak's end

    @property
    def service(self) -> str:
        return self.decision["service"]

    @property
    def kind(self) -> str:
        return self.decision["kind"]

    @property
    def node(self) -> str | None:
        return self.decision["node"]

    @property
    def outcome(self) -> Mapping | None:
        return self.end if self.end is not None and self.end["type"] == E.OUTCOME else None

    @property
    def pretended(self) -> bool:
        """A dry run's: nothing was changed."""
        return self.outcome is not None and self.outcome["result"] == R.DRY_RUN


def runs(events: Sequence[Mapping]) -> list[list[int]]:
    """Positions of the events of each receiver run, in the order recorded."""
    out: list[list[int]] = []
    for i, e in enumerate(events):
        if e["type"] == E.STARTED or not out:
            out.append([])
        out[-1].append(i)
    return out


def actions(obs: Observations) -> list[Action]:
    """Every action, paired with its end: the first `outcome` (or `dropped`
    `shutdown_unwatched`) after it in its run for the same service and kind."""
    events = obs.events
    times = [event_time(e) for e in events]
    out = []
    all_runs = runs(events)
    for run, positions in enumerate(all_runs):
        run_ended = times[all_runs[run + 1][0]] if run + 1 < len(all_runs) else obs.ended
        waiting: list[int] = []
        for i in positions:
            e = events[i]
            if e["type"] == E.DECISION and e["result"] == E.ACT:
                waiting.append(i)
            elif e["type"] == E.OUTCOME or (e["type"] == E.DROPPED
                                            and e["result"] == R.DROPPED_UNWATCHED):
                for d in waiting:
                    if (events[d]["service"] == e["service"]
                            and e["kind"] in (None, events[d]["kind"])):
                        waiting.remove(d)
                        out.append(Action(run, events[d], times[d], d, e, times[i], i, run_ended))
                        break
        out.extend(Action(run, events[d], times[d], d, None, None, None, run_ended)
                   for d in waiting)
    return sorted(out, key=lambda a: a.position)


def _first(times: Iterable[float]) -> list[float]:
    return sorted(times)[:FIRST_SHOWN]


def _plans(obs: Observations) -> dict:
    return {p.name: p for p in obs.plans}


def _states_by_service(obs: Observations) -> dict[str, list[ServiceState]]:
    out: dict[str, list[ServiceState]] = defaultdict(list)
    for s in sorted(obs.states, key=lambda s: s.at):
        out[s.service].append(s)
    return out


def _when_changed(states: Iterable[ServiceState], problem: Callable[[ServiceState], object],
                  say: Callable[[ServiceState, object], str]) -> list[Violation]:
    """A violation at each reading whose problem (falsy: none) differs from the reading
    before: a condition lasting many readings is counted once."""
    out, last = [], None
    for s in states:
        now = problem(s)
        if now and now != last:
            out.append(Violation(s.at, say(s, now)))
        last = now
    return out


def _in_window(span: FaultSpan, at: float) -> bool:
    return span.start <= at <= span.end + span.fault.grace_s


# -- 1 ------------------------------------------------------------------------------------

def no_failed_request_while_acting(obs: Observations, limits: Limits) -> Judgement:
    """A failed request of a service while SwarmGuard acts on it (decision to outcome +
    action_margin_s; with no outcome, to the end of the receiver's run) is a violation,
    unless a fault that costs requests (COSTS_REQUESTS) hit a node running one of the
    service's tasks then: those, and failures outside any action, are counted apart."""
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in actions(obs):
        if not a.pretended:
            end = a.ended + limits.action_margin_s if a.outcome is not None else a.run_ended
            windows[a.service].append((a.decided, end))
    states = _states_by_service(obs)
    faults = [f for f in obs.faults if f.fault.node is not None and f.fault.kind in COSTS_REQUESTS]

    def excusing_fault(service: str, at: float) -> FaultSpan | None:
        for f in faults:
            if _in_window(f, at) and any(
                    f.fault.node in s.nodes for s in states.get(service, ())
                    if f.start - 30 <= s.at <= f.end + f.fault.grace_s):
                return f
        return None

    violations, figures = [], {}
    by_service: dict[str, list] = defaultdict(list)
    for r in obs.requests:
        by_service[r.service].append(r)
    for service, requests in sorted(by_service.items()):
        in_fault: Counter = Counter()
        acting, other = [], []
        for r in sorted(requests, key=lambda r: r.at):
            if r.ok:
                continue
            fault = excusing_fault(service, r.at)
            if fault is not None:
                in_fault[fault.fault.kind] += 1
            elif any(start <= r.at <= end for start, end in windows[service]):
                acting.append(r.at)
                violations.append(Violation(r.at, f"a request to {service} failed while "
                                                  f"SwarmGuard was acting on it"))
            else:
                other.append(r.at)
        figures[service] = {
            "requests": len(requests),
            "failed": sum(not r.ok for r in requests),
            "failed_while_acting": len(acting),
            "failed_in_fault": dict(in_fault),
            "failed_other": len(other),
            "failed_other_first": _first(other),
        }
    return Judgement(violations, figures)


# -- 2 ------------------------------------------------------------------------------------

# Labels a person may set ("Service labels"); every other swarmguard.* label is SwarmGuard's.
USER_LABELS = frozenset({L.ENABLE, L.REPLICAS_MIN, L.REPLICAS_MAX, L.STATEFUL, L.UNSAFE})
# An operator's drain or rebalance moves every replicated service off the node, opted in
# or not (docs/contract.md, "Maintenance"), and records its move like any action.
MAINTENANCE_KINDS = frozenset({"drain", "rebalance", "undrain"})
MAINTENANCE_LABELS = frozenset({L.LAST_ACTION, L.LAST_ACTION_AT, L.LAST_ACTION_REASON,
                                L.PLACEMENT_EXCLUSION})


def _unasked_labels(labels: dict) -> tuple[str, ...]:
    """SwarmGuard's labels on a service not opted in that no maintenance move explains."""
    by_maintenance = labels.get(L.LAST_ACTION) in MAINTENANCE_KINDS
    return tuple(sorted(k for k in labels if k.startswith("swarmguard.") and k not in USER_LABELS
                        and not (by_maintenance and k in MAINTENANCE_LABELS)))


def no_action_on_a_service_not_opted_in(obs: Observations, limits: Limits) -> Judgement:
    """SwarmGuard never touches a service not opted in: no `act` decision or outcome about
    it, its replicas stay as deployed, and it carries no label SwarmGuard writes."""
    left_alone = {p.name: p for p in obs.plans if not p.opt_in}
    violations = []
    for e in obs.events:
        if e["service"] in left_alone and e["kind"] not in MAINTENANCE_KINDS and (
                e["type"] == E.OUTCOME or (e["type"] == E.DECISION and e["result"] == E.ACT)):
            violations.append(Violation(event_time(e), (
                f"SwarmGuard acted on {e['service']}, which is not opted in "
                f"({e['type']} {e['result']}, {e['kind']})")))
    for service, states in _states_by_service(obs).items():
        plan = left_alone.get(service)
        if plan is None:
            continue
        violations += _when_changed(
            states, lambda s: s.replicas if s.replicas != plan.replicas else None,
            lambda s, n: f"{service}, not opted in, runs {n} replicas; it was deployed with "
                         f"{plan.replicas}")
        violations += _when_changed(
            states, lambda s: _unasked_labels(s.labels),
            lambda s, keys: f"{service}, not opted in, carries {', '.join(keys)}")
    return Judgement(sorted(violations, key=lambda v: v.at), {"services": sorted(left_alone)})


# -- 3 ------------------------------------------------------------------------------------

def replicas_within_bounds(obs: Observations, limits: Limits) -> Judgement:
    """Every reading of an opted-in service has min_replicas <= replicas <= max_replicas."""
    plans = _plans(obs)
    violations, figures = [], {}
    for service, states in _states_by_service(obs).items():
        plan = plans.get(service)
        if plan is None or not plan.opt_in:
            continue
        violations += _when_changed(
            states,
            lambda s: (s.replicas if not plan.min_replicas <= s.replicas <= plan.max_replicas
                       else None),
            lambda s, n: f"{service} runs {n} replicas, outside "
                         f"{plan.min_replicas}..{plan.max_replicas}")
        figures[service] = {"min": min(s.replicas for s in states),
                            "max": max(s.replicas for s in states)}
    return Judgement(sorted(violations, key=lambda v: v.at), figures)


# -- 4 ------------------------------------------------------------------------------------

def _same_text(constraint: str) -> str:
    return constraint.replace(" ", "")  # as receiver/placement.py compares them


def _exclusion_problems(state: ServiceState) -> tuple[str, ...]:
    seen = Counter(_same_text(c) for c in state.constraints)
    problems = [f"{c} twice" for c, n in sorted(seen.items()) if n > 1]
    recorded = {_same_text(c) for c in recorded_exclusions(state.labels)}
    for c in sorted(seen):
        try:
            parsed = parse(c)
        except UnknownConstraint:
            continue  # not a constraint SwarmGuard writes
        if (parsed.op == "!=" and parsed.key.lower() in ("node.hostname", "node.id")
                and c not in recorded):
            problems.append(f"{c} left over")
    return tuple(problems)


def at_most_one_exclusion_set(obs: Observations, limits: Limits) -> Judgement:
    """A service's constraints hold no duplicate, and every node exclusion
    (node.hostname!= or node.id!=) among them is one its label
    swarmguard.placement-exclusion lists: the set SwarmGuard's last migration wrote, which
    the next replaces ("Service labels"). Any other is a leftover."""
    violations = []
    for service, states in _states_by_service(obs).items():
        violations += _when_changed(
            states, _exclusion_problems,
            lambda s, problems: f"{service}'s constraints: {'; '.join(problems)}")
    return Judgement(sorted(violations, key=lambda v: v.at), {})


# -- 5 ------------------------------------------------------------------------------------

def budgets_held(obs: Observations, limits: Limits) -> Judgement:
    """The storm budgets, per receiver run ("Storms": per receiver process): actions in flight
    (decision act to its end) <= max_concurrent_actions; `act` decisions in any 60 s <=
    max_actions_per_minute; moves in flight off one node <= max_leaving_per_node."""
    violations = []
    most = {"in_flight": 0, "per_minute": 0, "leaving_one_node": 0}
    by_run: dict[int, list[Action]] = defaultdict(list)
    for a in actions(obs):
        by_run[a.run].append(a)
    for run in by_run.values():
        for a in run:
            flying = [b for b in run if b.position <= a.position
                      and (b.end_position is None or b.end_position > a.position)]
            most["in_flight"] = max(most["in_flight"], len(flying))
            if len(flying) > limits.max_concurrent_actions:
                violations.append(Violation(a.decided, (
                    f"{len(flying)} actions in flight when {a.kind} of {a.service} began "
                    f"(budget {limits.max_concurrent_actions})")))
            if a.kind in MOVES and a.node:
                leaving = [b for b in flying if b.kind in MOVES and b.node == a.node]
                most["leaving_one_node"] = max(most["leaving_one_node"], len(leaving))
                if len(leaving) > limits.max_leaving_per_node:
                    violations.append(Violation(a.decided, (
                        f"{len(leaving)} moves in flight off node {a.node} when {a.kind} of "
                        f"{a.service} began (budget {limits.max_leaving_per_node})")))
        starts = sorted(a.decided for a in run)
        for j, t in enumerate(starts):
            in_minute = j + 1 - bisect.bisect_right(starts, t - 60.0, 0, j + 1)
            most["per_minute"] = max(most["per_minute"], in_minute)
            if in_minute > limits.max_actions_per_minute:
                violations.append(Violation(t, (
                    f"{in_minute} actions started within 60 s "
                    f"(budget {limits.max_actions_per_minute})")))
    return Judgement(sorted(violations, key=lambda v: v.at), most)


# -- 6 ------------------------------------------------------------------------------------

def no_service_moved_too_often(obs: Observations, limits: Limits) -> Judgement:
    """Successful migrations of one service in any 3,600 s (the whole soak, if shorter)
    <= max_moves_per_hour: more is futile moving ("Futile moves")."""
    moves: dict[str, list[float]] = defaultdict(list)
    for e in obs.events:
        if (e["type"] == E.OUTCOME and e["kind"] == MIGRATE.name
                and e["result"] == R.SUCCESS):
            moves[e["service"]].append(event_time(e))
    violations, figures = [], {}
    for service, times in sorted(moves.items()):
        times.sort()
        most = 0
        for j, t in enumerate(times):
            in_hour = j + 1 - bisect.bisect_right(times, t - 3600.0, 0, j + 1)
            most = max(most, in_hour)
            if in_hour > limits.max_moves_per_hour:
                violations.append(Violation(t, (
                    f"{service} moved {in_hour} times within an hour "
                    f"(at most {limits.max_moves_per_hour})")))
        figures[service] = {"moves": len(times), "most_in_an_hour": most}
    return Judgement(violations, figures)


# -- 7 ------------------------------------------------------------------------------------

def every_action_has_an_outcome(obs: Observations, limits: Limits) -> Judgement:
    """Each `act` decision is followed, in its run, by an outcome for the same service and
    kind. Excused, and counted apart: a run a receiver kill or SIGTERM ended (a fault span
    overlapping the time from the decision to the next run), and a decision within 120 s
    of the soak's end."""
    counts = Counter(actions=0, with_an_outcome=0, lost_to_a_fault=0, unfinished_at_the_end=0,
                     missing=0)
    violations = []
    downs = [f for f in obs.faults if f.fault.kind in RECEIVER_DOWN]
    for a in actions(obs):
        counts["actions"] += 1
        if a.outcome is not None:
            counts["with_an_outcome"] += 1
        elif any(f.start <= a.run_ended and f.end >= a.decided for f in downs):
            counts["lost_to_a_fault"] += 1
        elif a.decided >= obs.ended - 120.0:
            counts["unfinished_at_the_end"] += 1
        else:
            counts["missing"] += 1
            how = " (dropped at shutdown)" if a.end is not None else ""
            violations.append(Violation(a.decided, (
                f"{a.kind} of {a.service} never got an outcome{how}")))
    return Judgement(violations, dict(counts))


# -- 8 ------------------------------------------------------------------------------------

SETTLE_S = 60.0  # an outcome shows in a reading of the cluster within this


def _hostname(obs: Observations, node: str) -> str:
    """An event's node (a Swarm node ID) as the readings name it (a hostname)."""
    return obs.node_names.get(node, node)


def outcomes_match_the_cluster(obs: Observations, limits: Limits) -> Judgement:
    """What an outcome says shows in the readings of the service within 60 s after it: a
    successful migration (or a drain's move) left its node; a successful scale-up (scale-down)
    has more (fewer) replicas than the last reading before its decision; a scale that failed,
    rolled back or was withdrawn has as many."""
    states = _states_by_service(obs)
    hostnames = {n for s in obs.states for n in s.nodes}
    counts = Counter(judged=0, node_not_named=0, no_reading_before=0)
    violations = []
    for a in actions(obs):
        o = a.outcome
        if o is None:
            continue
        result, service = o["result"], a.service
        after = [s for s in states.get(service, ()) if a.ended <= s.at <= a.ended + SETTLE_S]
        before = [s for s in states.get(service, ()) if s.at <= a.decided]
        if result == R.SUCCESS and a.kind in (MIGRATE.name, DRAIN) and a.node:
            left = _hostname(obs, a.node)
            if left not in hostnames:
                counts["node_not_named"] += 1
                continue
            holds = any(left not in s.nodes for s in after)
            broken = f"{service} still runs on {left} 60 s after its {a.kind} off it"
        elif a.kind in (SCALE_UP.name, SCALE_DOWN.name) and result in (
                R.SUCCESS, R.FAILED, R.ROLLED_BACK, R.WITHDRAWN):
            if not before:
                counts["no_reading_before"] += 1
                continue
            was = before[-1].replicas
            if result != R.SUCCESS:
                holds = any(s.replicas == was for s in after)
                broken = (f"{service} does not have its {was} replicas back after its "
                          f"{a.kind} {result}")
            elif a.kind == SCALE_UP.name:
                holds = any(s.replicas > was for s in after)
                broken = f"{service} has no more than {was} replicas 60 s after its scale_up"
            else:
                holds = any(s.replicas < was for s in after)
                broken = f"{service} has no fewer than {was} replicas 60 s after its scale_down"
        else:
            continue
        counts["judged"] += 1
        if not after:
            violations.append(Violation(a.ended, (
                f"no reading of {service} after the outcome of its {a.kind} ({result})")))
        elif not holds:
            violations.append(Violation(a.ended, broken))
    return Judgement(violations, dict(counts))


# -- 9 ------------------------------------------------------------------------------------

def _alert_key(alert) -> tuple[str, str | None]:
    return alert.alertname, alert.labels.get("reason")


def health_alerts_match_faults(obs: Observations, limits: Limits) -> Judgement:
    """A fault with expected alerts raises one of them within its window (start .. end +
    grace; on its node, when both name one). A health alert (SwarmGuardBlind,
    SwarmGuardCannotAct) starting after the warm-up starts in the window of a fault that
    expects or allows its (alertname, reason)."""
    violations, per_fault = [], []
    for f in sorted(obs.faults, key=lambda f: f.start):
        if not f.fault.expected:
            continue
        raised = [a.start for a in obs.alerts
                  if _alert_key(a) in f.fault.expected and _in_window(f, a.start)
                  and (f.fault.node is None or a.labels.get("node") in (None, "", f.fault.node))]
        first = min(raised, default=None)
        per_fault.append({"kind": f.fault.kind, "node": f.fault.node, "at": f.start,
                          "first_alert_after_s": None if first is None else first - f.start})
        if first is None:
            where = f" on {f.fault.node}" if f.fault.node else ""
            wanted = " or ".join(f"{name} {reason}" for name, reason in f.fault.expected)
            violations.append(Violation(f.start, f"{f.fault.kind}{where} raised no {wanted}"))
    outside = 0
    for a in sorted(obs.alerts, key=lambda a: a.start):
        if a.alertname not in HEALTH_ALERTS or a.start < obs.started + limits.warmup_s:
            continue
        if not any(_in_window(f, a.start) and _alert_key(a) in f.fault.expected + f.fault.allowed
                   for f in obs.faults):
            outside += 1
            node = a.labels.get("node")
            violations.append(Violation(a.start, (
                f"{a.alertname} {a.labels.get('reason')}{f' on {node}' if node else ''} "
                f"fired outside a fault")))
    return Judgement(sorted(violations, key=lambda v: v.at),
                     {"faults": per_fault, "fired_outside_a_fault": outside})


# -- 10 and the cost ----------------------------------------------------------------------

MB = 1_000_000


def _kind(process: str) -> str:
    return process.split("-", 1)[0]


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares slope of y over x and its standard error, both per hour of x
    (seconds); None for too few points."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    if n < 3:
        return slope * 3600.0, 0.0
    residual = sum((y - (my + slope * (x - mx))) ** 2 for x, y in points) / (n - 2)
    return slope * 3600.0, (residual / sxx) ** 0.5 * 3600.0


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x, per hour of x (seconds); None for too few points."""
    fit = _fit(points)
    return None if fit is None else fit[0]


def _above(fit: tuple[float, float] | None, limit: float, limits: Limits) -> bool:
    """The slope is above `limit` by more than its noise (slope_confidence_se errors)."""
    return fit is not None and fit[0] - limits.slope_confidence_se * fit[1] > limit


def _cpu_rates(samples: Sequence[ResourceSample]) -> list[tuple[float, float]]:
    """(mid-time, % of one core) between consecutive samples of one pid."""
    return [((a.at + b.at) / 2, (b.cpu_seconds - a.cpu_seconds) / (b.at - a.at) * 100.0)
            for a, b in zip(samples, samples[1:]) if b.at > a.at]


def _segments(obs: Observations, limits: Limits) -> dict[str, dict[int, list[ResourceSample]]]:
    """Samples after the warm-up, by process, then by pid, in time order."""
    out: dict[str, dict[int, list[ResourceSample]]] = defaultdict(lambda: defaultdict(list))
    for s in sorted(obs.resources, key=lambda s: s.at):
        if s.at >= obs.started + limits.warmup_s:
            out[s.process][s.pid].append(s)
    return out


def _means(pids: Mapping[int, list[ResourceSample]]) -> tuple[float, float]:
    """(mean % of one core, mean RSS MB) of one process over its pids."""
    samples = [s for seg in pids.values() for s in seg]
    busy = sum(b.cpu_seconds - a.cpu_seconds for seg in pids.values()
               for a, b in zip(seg, seg[1:]) if b.at > a.at)
    span = sum(b.at - a.at for seg in pids.values() for a, b in zip(seg, seg[1:]) if b.at > a.at)
    return (busy / span * 100.0 if span else 0.0,
            sum(s.rss_bytes for s in samples) / len(samples) / MB)


def resources_flat(obs: Observations, limits: Limits) -> Judgement:
    """Per process and pid (a restart is a new process, not growth), after the warm-up: the
    least-squares slope of RSS (MB an hour) and of CPU use (% of a core an hour, the rates
    between consecutive samples fitted against time), judged for segments at least
    min_segment_s long. Above the kind's limit by more than the fit's noise is a leak (RSS)
    or a creeping loop (CPU)."""
    violations, figures = [], {}
    for process, pids in sorted(_segments(obs, limits).items()):
        rss_limit = limits.rss_slope_mb_per_hour.get(_kind(process))
        segments, judged, too_short = [], 0, 0
        for pid, seg in pids.items():
            seconds = seg[-1].at - seg[0].at
            rss_fit = _fit([(s.at, s.rss_bytes / MB) for s in seg])
            cpu_fit = _fit(_cpu_rates(seg))
            rss, cpu = (rss_fit or (None,))[0], (cpu_fit or (None,))[0]
            long_enough = seconds >= limits.min_segment_s
            segments.append({"pid": pid, "from": seg[0].at, "seconds": seconds,
                             "rss_mb_per_hour": rss, "cpu_percent_per_hour": cpu,
                             "rss_se": (rss_fit or (None, None))[1], "cpu_se": (cpu_fit or (None, None))[1],
                             "judged": long_enough})
            if not long_enough:
                too_short += 1
                continue
            judged += 1
            if rss_limit is not None and _above(rss_fit, rss_limit, limits):
                violations.append(Violation(seg[-1].at, (
                    f"{process} (pid {pid}) grew {rss:.1f} ± {rss_fit[1]:.1f} MB an hour over "
                    f"{seconds:.0f} s (at most {rss_limit:g})")))
            if _above(cpu_fit, limits.cpu_slope_percent_per_hour, limits):
                violations.append(Violation(seg[-1].at, (
                    f"{process} (pid {pid}) CPU use rose {cpu:.1f} ± {cpu_fit[1]:.1f} % of a core "
                    f"an hour over {seconds:.0f} s (at most {limits.cpu_slope_percent_per_hour:g})")))
        cpu_mean, rss_mean = _means(pids)
        figures[process] = {"mean_rss_mb": rss_mean, "mean_cpu_percent": cpu_mean,
                            "rss_limit_mb_per_hour": rss_limit, "segments": segments,
                            "segments_judged": judged, "segments_too_short": too_short}
    return Judgement(sorted(violations, key=lambda v: v.at), figures)


def _central(process: str) -> bool:
    """One for the whole cluster, its cost shared by the nodes."""
    return process in ("receiver", "prometheus") or process.startswith("alertmanager")


def cost(obs: Observations, limits: Limits = Limits()) -> dict:
    """What SwarmGuard costs, after the warm-up: mean % of one core and mean RSS MB of each
    process; per node, its own processes ("<kind>-<node>") plus an equal share of the
    central ones (receiver, prometheus, alertmanager*); per container in the lab, the
    whole cost over the mean number of containers."""
    per_process = {}
    for process, pids in sorted(_segments(obs, limits).items()):
        cpu, rss = _means(pids)
        per_process[process] = {"cpu_percent": cpu, "rss_mb": rss}
    central = {p: v for p, v in per_process.items() if _central(p)}
    by_node: dict[str, dict[str, float]] = defaultdict(lambda: {"cpu_percent": 0.0, "rss_mb": 0.0})
    for p, v in per_process.items():
        if not _central(p) and "-" in p:
            node = by_node[p.split("-", 1)[1]]
            node["cpu_percent"] += v["cpu_percent"]
            node["rss_mb"] += v["rss_mb"]
    for node in by_node.values():
        for what in ("cpu_percent", "rss_mb"):
            node[what] += sum(v[what] for v in central.values()) / len(by_node)
    total = {what: sum(v[what] for v in per_process.values()) for what in ("cpu_percent", "rss_mb")}
    counts = [n for at, n in obs.containers if at >= obs.started + limits.warmup_s] or \
             [n for _, n in obs.containers]
    containers = sum(counts) / len(counts) if counts else None
    per_container = ({what: v / containers for what, v in total.items()}
                     if containers else None)
    return {"per_process": per_process, "per_node": dict(by_node), "total": total,
            "mean_containers": containers, "per_container": per_container}


# -- all ----------------------------------------------------------------------------------

CHECKS: Mapping[str, Callable[[Observations, Limits], Judgement]] = MappingProxyType({
    f.__name__: f for f in (
        no_failed_request_while_acting,
        no_action_on_a_service_not_opted_in,
        replicas_within_bounds,
        at_most_one_exclusion_set,
        budgets_held,
        no_service_moved_too_often,
        every_action_has_an_outcome,
        outcomes_match_the_cluster,
        health_alerts_match_faults,
        resources_flat,
    )})


def check(obs: Observations, limits: Limits = Limits()) -> dict:
    """Every check's violations and figures, and the cost, as the soak's report keeps them."""
    invariants, every, figures = {}, [], {}
    for name, judge in CHECKS.items():
        j = judge(obs, limits)
        ordered = sorted(j.violations, key=lambda v: v.at)
        invariants[name] = {"violations": len(ordered),
                            "first": [{"at": v.at, "text": v.text} for v in ordered[:FIRST_SHOWN]]}
        every += [{"invariant": name, "at": v.at, "text": v.text} for v in ordered]
        figures[name] = j.figures
    figures["cost"] = cost(obs, limits)
    return {"invariants": invariants, "violations": sorted(every, key=lambda v: v["at"]),
            "figures": figures}
