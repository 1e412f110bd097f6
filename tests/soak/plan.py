"""What the soak deploys and what it breaks, and when: pure data and pure functions, no I/O.

`services` gives the twelve services (model.ServicePlan) and LOAD what the driver makes
each behaviour's tasks do; `fault_schedule` gives the seeded, non-overlapping faults
(model.Fault) with the alerts each must and may raise; `format_schedule` is the table the
soak prints before it starts. run.py carries all of it out; invariants.py judges it.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from .model import (ALERTMANAGER_RESTART, BURSTY, CENTRAL_PROMETHEUS_RESTART, DOCKERD_STOP,
                    DRAIN, EXPORTER_KILL, IDLE, LEAK, NEIGHBOUR_HOG, NETWORK_CUT,
                    NO_HEALTHCHECK, PLAIN_HOT, PROMETHEUS_RESTART, RECEIVER_KILL,
                    RECEIVER_SIGTERM, SELF_HOT, SLOW_START, STARVED, STATEFUL, Fault,
                    ServicePlan)

# -- the services --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSpec:
    """A service of the soak before it has a port and a node (see `services`)."""
    name: str
    behaviour: str
    opt_in: bool
    replicas: int
    min_replicas: int
    max_replicas: int
    # Starts on the first worker: the hog stays pinned there; the starved service's pin is
    # lifted once its task runs (run.py), so SwarmGuard may move it.
    on_first_worker: bool = False


# Ten opted in, two left alone. The first eight opted-in services are one of each opted-in
# behaviour; the last two are the second of a behaviour whose point a second shape makes:
#   soak-steady: idle with 2 replicas and min 2, at its floor from the start: an idle
#     service SwarmGuard must never scale down (soak-idle, with min 1, is the one it does);
#   soak-slow-start-pair: a slow starter with 2 replicas and min 2: when one of its tasks
#     is replaced (a drain, a dockerd stop on its node) the other must answer through the
#     new one's 8 s start, so not one request fails (soak-slow-start alone cannot show it).
SERVICES_SPEC: tuple[ServiceSpec, ...] = (
    ServiceSpec("soak-starved", STARVED, True, 1, 1, 2, on_first_worker=True),
    ServiceSpec("soak-self-hot", SELF_HOT, True, 1, 1, 2),
    ServiceSpec("soak-bursty", BURSTY, True, 1, 1, 3),
    ServiceSpec("soak-leak", LEAK, True, 1, 1, 2),
    ServiceSpec("soak-idle", IDLE, True, 2, 1, 3),
    ServiceSpec("soak-stateful", STATEFUL, True, 1, 1, 2),
    ServiceSpec("soak-no-healthcheck", NO_HEALTHCHECK, True, 1, 1, 2),
    ServiceSpec("soak-slow-start", SLOW_START, True, 1, 1, 2),
    ServiceSpec("soak-steady", IDLE, True, 2, 2, 4),
    ServiceSpec("soak-slow-start-pair", SLOW_START, True, 2, 2, 3),
    ServiceSpec("soak-neighbour-hog", NEIGHBOUR_HOG, False, 1, 1, 1, on_first_worker=True),
    ServiceSpec("soak-plain-hot", PLAIN_HOT, False, 1, 1, 1),
)


def services(ports: Sequence[int], workers: Sequence[str]) -> tuple[ServicePlan, ...]:
    """The soak's services, each with its own published port, taken in order from `ports`;
    the starved service and its hog are pinned to the first of `workers`."""
    if len(ports) < len(SERVICES_SPEC):
        raise ValueError(f"the soak's {len(SERVICES_SPEC)} services need {len(SERVICES_SPEC)} "
                         f"published ports, {len(ports)} given")
    if not workers:
        raise ValueError("the soak needs a worker: the starved service and its hog share one")
    return tuple(ServicePlan(s.name, s.behaviour, s.opt_in, s.replicas, s.min_replicas,
                             s.max_replicas, port, workers[0] if s.on_first_worker else None)
                 for s, port in zip(SERVICES_SPEC, ports))


@dataclass(frozen=True)
class Load:
    """What the driver makes every task of a service do, through the stress app
    (stress/app.py). CPU and network run in periods: `on_s` on, `off_s` off, the first
    from `delay_s` after the soak's start; `on_s` None runs them the whole soak. Memory
    grows from the start at `memory_mib_per_min` until `memory_cap_mib`."""
    cpu_percent: float = 0.0  # of the task's CPU allowance (the stress app's 100 %)
    network_percent: float = 0.0  # of the node's link (the lab's node_capacity_mbps)
    on_s: float | None = None
    off_s: float = 0.0
    delay_s: float = 0.0
    memory_mib_per_min: float = 0.0
    memory_cap_mib: float = 0.0
    memory_limit_mib: int | None = None  # the service's limits.memory at deploy

    def periods(self, until_s: float) -> list[tuple[float, float]]:
        """(start, end) of the CPU and network periods before `until_s`, in seconds after
        the soak's start; none for a load without CPU or network."""
        if not (self.cpu_percent or self.network_percent) or until_s <= self.delay_s:
            return []
        if self.on_s is None:
            return [(self.delay_s, until_s)]
        out, start = [], self.delay_s
        while start < until_s:
            out.append((start, min(start + self.on_s, until_s)))
            start += self.on_s + self.off_s
        return out


# Each hot period outlasts the 30 s CPU average plus `for: 2s` and a migration, so it raises
# Migrate once; the periods are staggered over an 8-minute cycle so that about two of them
# burn at once: on the lab's two shared cores, more would starve the lab itself.
LOAD: dict[str, Load] = {
    # Starved while the hog next to it burns: the lab's stand-in for a node that starves a
    # task is the task's own CPU at its limit with little network (Scenario 1), so the
    # driver burns it in the hog's periods, and only while it runs on the hog's node: once
    # moved off, it is cool, and stays where it was moved.
    STARVED: Load(cpu_percent=100, on_s=150, off_s=330, delay_s=30),
    # Hot by its own work wherever it runs: moved once, then held as futile.
    SELF_HOT: Load(cpu_percent=100, on_s=180, off_s=300, delay_s=150),
    # CPU, and network above 65 % of the node's link, in bursts: ScaleUp in each. The 270 s
    # between bursts cover the 30 s averages' fall and ScaleDown's 180 s window with a
    # minute to spare, so it is scaled up and back down in every 6-minute cycle (bursts
    # every 240 s would leave 150 s: never down between them).
    BURSTY: Load(cpu_percent=100, network_percent=80, on_s=90, off_s=270, delay_s=90),
    # 8 MiB a minute up to 192 MiB, the stress app's own cap under a 256 MiB limit (its
    # 64 MiB headroom): never OOM-killed; with the app's own memory the task passes the
    # 80 % memory threshold after about twenty minutes, network low: a memory Migrate.
    LEAK: Load(memory_mib_per_min=8, memory_cap_mib=192, memory_limit_mib=256),
    IDLE: Load(),
    # Hot like SELF_HOT, so SwarmGuard is asked to move it and must refuse (local volume).
    STATEFUL: Load(cpu_percent=100, on_s=120, off_s=360, delay_s=270),
    # Hot, so SwarmGuard is asked to move it and must refuse (no health check, one task).
    NO_HEALTHCHECK: Load(cpu_percent=100, on_s=120, off_s=360, delay_s=390),
    # No load: its 8 s start is the point, whenever a task of it is replaced.
    SLOW_START: Load(),
    # Starves the task pinned next to it, in periods, so the starved one is moved off once.
    NEIGHBOUR_HOG: Load(cpu_percent=100, on_s=150, off_s=330, delay_s=30),
    # Hot the whole soak and not opted in: SwarmGuard must never touch it.
    PLAIN_HOT: Load(cpu_percent=100),
}

# -- the faults ----------------------------------------------------------------------------

BLIND = "SwarmGuardBlind"
CANNOT_ACT = "SwarmGuardCannotAct"
# Every reason of SwarmGuardBlind (prometheus/rules/swarmguard-health.yml).
BLIND_REASONS = ("target_down", "docker_unreachable", "detection_prometheus_down",
                 "opt_in_unknown", "tasks_unseen", "cadvisor_down", "cadvisor_blind")

WARMUP_S = 150.0  # no fault before: the stack settles, the hot services' first alerts pass
TAIL_S = 60.0  # no fault window ends later than this before the soak's end
QUIET_S = 30.0  # at least this between one fault's window and the next fault's start

# What a fault hits: one of `workers`, one of `nodes`, or a part with no node (None).
WORKER, NODE = "worker", "node"


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    hits: str | None  # WORKER, NODE or None
    duration_s: float
    expected: tuple[tuple[str, str], ...] = ()
    allowed: tuple[tuple[str, str], ...] = ()
    grace_s: float = 90.0

    @property
    def window_s(self) -> float:
        return self.duration_s + self.grace_s


def _blind(*reasons: str) -> tuple[tuple[str, str], ...]:
    return tuple((BLIND, r) for r in reasons)


# Durations and alerts per kind; the `for:` windows are those of swarmguard-health.yml.
FAULTS: tuple[FaultSpec, ...] = (
    # Down 50 s, longer than receiver_down's `for: 30s`; while it is down Alertmanager's
    # webhook fails, and webhook_failing (`for: 40s`) may fire too.
    FaultSpec(RECEIVER_KILL, None, 50, expected=((CANNOT_ACT, "receiver_down"),),
              allowed=((CANNOT_ACT, "webhook_failing"),)),
    # Restarted at once: shorter than any `for:`; the restart's scrape gap or a notification
    # sent while it starts may still raise receiver_down or webhook_failing.
    FaultSpec(RECEIVER_SIGTERM, None, 0,
              allowed=((CANNOT_ACT, "receiver_down"), (CANNOT_ACT, "webhook_failing"))),
    # Down 30 s, longer than detection_prometheus_down's `for: 10s`. The rule's own comment:
    # the exporters it scraped go stale centrally too, so target_down follows (also
    # `for: 10s`), and their tasks lose their series for tasks_unseen's 20 s.
    FaultSpec(PROMETHEUS_RESTART, NODE, 30, expected=_blind("detection_prometheus_down"),
              allowed=_blind("target_down", "tasks_unseen")),
    # Down 20 s: no alert is evaluated while it is down, and its rules restart with empty
    # state on half-filled series: any Blind reason may fire briefly after it.
    FaultSpec(CENTRAL_PROMETHEUS_RESTART, None, 20, allowed=_blind(*BLIND_REASONS)),
    # One of the pair, 20 s: the other delivers; notifications the stopped one had in
    # flight fail, which may be enough for webhook_failing.
    FaultSpec(ALERTMANAGER_RESTART, None, 20, allowed=((CANNOT_ACT, "webhook_failing"),)),
    # 60 s, longer than docker_unreachable's `for: 10s`. The exporter then has no tasks to
    # publish (target_down if it fails its scrapes, tasks_unseen after 20 s), cAdvisor loses
    # its containers (cadvisor_down 45 s, cadvisor_blind 1 m), and an action on the node
    # fails (actions_failing). 150 s grace: Swarm restarts the node's tasks when dockerd is
    # back, and the new ones need their two scrapes and the receiver's 5 s refresh.
    FaultSpec(DOCKERD_STOP, WORKER, 60, expected=_blind("docker_unreachable"),
              allowed=(*_blind("target_down", "tasks_unseen", "cadvisor_down", "cadvisor_blind"),
                       (CANNOT_ACT, "actions_failing")),
              grace_s=150),
    # 20 s. Nothing need fire: within seconds Swarm reports the node down, and a node Docker
    # reports down is no blind spot (target_down leaves it out: Swarm reschedules its
    # tasks). The soak found this: target_down fired only when the lab was so busy that
    # Swarm was slower than the rule's `for: 10s`. Until Swarm says so it may fire, and
    # the node's tasks lose their series (tasks_unseen), its cAdvisor is not scraped.
    FaultSpec(NETWORK_CUT, WORKER, 20,
              allowed=_blind("target_down", "tasks_unseen", "detection_prometheus_down",
                             "cadvisor_down")),
    # Drained 60 s, then undrained: no part is down, nothing need fire; the tasks it moves
    # may be running before their first scrapes (tasks_unseen).
    FaultSpec(DRAIN, WORKER, 60, allowed=_blind("tasks_unseen")),
    # 30 s, longer than target_down's `for: 10s`; a manager's exporter is also the one that
    # lists the opted-in services (opt_in_unknown).
    FaultSpec(EXPORTER_KILL, NODE, 30, expected=_blind("target_down"),
              allowed=_blind("tasks_unseen", "opt_in_unknown")),
)
FAULT_SPECS: dict[str, FaultSpec] = {f.kind: f for f in FAULTS}


def fault_schedule(minutes: float, seed: int, workers: Sequence[str], nodes: Sequence[str]
                   ) -> tuple[list[Fault], list[str]]:
    """Every fault kind once, in an order and on nodes chosen by `seed`: (the faults that
    fit in `minutes`, sorted by start; one line per kind left out, saying why).

    No fault starts before WARMUP_S; each one's window (start .. end + grace) is followed
    by at least QUIET_S without a fault; the last window ends TAIL_S before the end. The
    time left over is shared out between the gaps, each share jittered by the seed."""
    rng = random.Random(seed)
    order = list(FAULTS)
    rng.shuffle(order)
    targets = {WORKER: list(workers), NODE: list(nodes), None: [None]}
    chosen = {f.kind: rng.choice(targets[f.hits]) if targets[f.hits] else None for f in order}

    room = minutes * 60 - WARMUP_S - TAIL_S
    fitting, not_scheduled, used = [], [], 0.0
    for spec in order:
        if not targets[spec.hits]:
            not_scheduled.append(f"{spec.kind}: no {spec.hits} to hit")
            continue
        needed = used + (QUIET_S if fitting else 0) + spec.window_s
        if needed > room:
            not_scheduled.append(f"{spec.kind}: no room in {minutes:g} minutes "
                                 f"(its window is {spec.window_s:g} s)")
            continue
        fitting.append(spec)
        used = needed

    # The free time goes to the gap before each fault and to the one after the last.
    weights = [rng.uniform(0.5, 1.5) for _ in range(len(fitting) + 1)]
    shares = [math.floor((room - used) * w / sum(weights)) for w in weights]
    faults, at = [], WARMUP_S
    for spec, share in zip(fitting, shares):
        at += share
        faults.append(Fault(spec.kind, chosen[spec.kind], at, spec.duration_s, spec.expected,
                            spec.allowed, spec.grace_s))
        at += spec.window_s + QUIET_S
    return faults, not_scheduled


def format_schedule(faults: Sequence[Fault], not_scheduled: Sequence[str],
                    started_at: float | None = None) -> str:
    """The schedule as a table for people: when (after the start, and on the clock when
    `started_at` is given), what, where, how long, and the alert it must raise."""
    header = ["after", *(["at (UTC)"] if started_at is not None else []), "fault", "node",
              "down", "expected alert"]
    rows = []
    for f in faults:
        clock = ([datetime.fromtimestamp(started_at + f.start_s, timezone.utc).strftime("%H:%M:%S")]
                 if started_at is not None else [])
        expected = ", ".join(f"{name} ({reason})" for name, reason in f.expected) or "none"
        rows.append([_mmss(f.start_s), *clock, f.kind, f.node or "-", f"{f.duration_s:g} s",
                     expected])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    if not faults:
        lines.append("(no fault scheduled)")
    if not_scheduled:
        lines.append("Not scheduled:")
        lines.extend(f"  {line}" for line in not_scheduled)
    return "\n".join(lines)


def _mmss(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"
