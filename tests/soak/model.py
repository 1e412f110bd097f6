"""What a soak plans and what it observes: plain frozen records, no I/O.

Times are Unix seconds (float). The driver (run.py) fills an Observations while the soak
runs; invariants.py judges it; report.py writes it out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# -- the plan --------------------------------------------------------------------------

# Behaviours of the soak's services (plan.SERVICES).
STARVED = "starved"  # a steady task whose node a hog (NEIGHBOUR_HOG) starves
SELF_HOT = "self_hot"  # hot by its own work wherever it runs: moved at most once per window
BURSTY = "bursty"  # demand with network in bursts: Scenario 2 up and down, several times
LEAK = "leak"  # memory that grows slowly
IDLE = "idle"
STATEFUL = "stateful"  # a local volume: never moved or scaled
NO_HEALTHCHECK = "no_healthcheck"  # one task, no health check: never migrated
SLOW_START = "slow_start"  # 8 s before it answers
NEIGHBOUR_HOG = "neighbour_hog"  # not opted in: the noisy neighbour of STARVED
PLAIN_HOT = "plain_hot"  # not opted in, hot: SwarmGuard must never touch it

# Fault kinds (plan.fault_schedule).
RECEIVER_KILL = "receiver_kill"  # SIGKILL, left down, restarted
RECEIVER_SIGTERM = "receiver_sigterm"  # SIGTERM while an action runs, restarted at once
PROMETHEUS_RESTART = "prometheus_restart"  # a node's detection Prometheus stopped, restarted
CENTRAL_PROMETHEUS_RESTART = "central_prometheus_restart"
ALERTMANAGER_RESTART = "alertmanager_restart"  # one of the pair
DOCKERD_STOP = "dockerd_stop"  # one worker's dockerd stopped for 60 s
NETWORK_CUT = "network_cut"  # one worker's link down for 20 s, in its own namespace
DRAIN = "drain"  # `swarmguard drain`, then `swarmguard undrain`, of one worker
EXPORTER_KILL = "exporter_kill"  # one node's exporter SIGKILLed, restarted after the window


@dataclass(frozen=True)
class ServicePlan:
    name: str
    behaviour: str
    opt_in: bool
    replicas: int  # at deploy
    min_replicas: int  # swarmguard.replicas.min (opted-in services)
    max_replicas: int  # swarmguard.replicas.max
    published_port: int  # host-mode port; each service has its own entry point
    node: str | None = None  # pinned to this node (node.hostname==), or anywhere on workers


@dataclass(frozen=True)
class Fault:
    kind: str
    node: str | None  # the node it hits; None for the receiver and the Alertmanager pair
    start_s: float  # seconds after the soak's start
    duration_s: float  # how long the part stays down (0: an instant, e.g. SIGTERM)
    # (alertname, reason) pairs: at least one must fire within the fault's window
    # (start .. end + grace); empty when the fault is too short for any alert.
    expected: tuple[tuple[str, str], ...] = ()
    # (alertname, reason) pairs that may fire within the window without being a violation.
    allowed: tuple[tuple[str, str], ...] = ()
    grace_s: float = 90.0  # after the fault's end, for alerts to fire and to resolve

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def window_end_s(self) -> float:
        return self.end_s + self.grace_s


# -- what is observed ---------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One probe request to a service's entry point."""
    service: str
    at: float
    ok: bool
    node: str | None  # the node that answered, when it did


@dataclass(frozen=True)
class ServiceState:
    """One reading of a service from the manager."""
    service: str
    at: float
    replicas: int  # desired
    running: int  # tasks running
    labels: dict  # the service's labels
    constraints: tuple[str, ...]  # placement constraints
    nodes: tuple[str, ...]  # hostnames its running tasks are on


@dataclass(frozen=True)
class AlertSpan:
    """An alert firing from `start` to `end` (None: still firing at the soak's end)."""
    alertname: str
    labels: dict
    start: float
    end: float | None


@dataclass(frozen=True)
class FaultSpan:
    """A fault as it was really applied: `start`/`end` when the part went down and came back."""
    fault: Fault
    start: float
    end: float
    note: str = ""  # how it went, when that matters (a SIGTERM that found no action under way)


@dataclass(frozen=True)
class ResourceSample:
    process: str  # "receiver", "exporter-worker-1", "prometheus", "prometheus-worker-1", ...
    pid: int  # a restart (a fault) starts a new process: slopes are per pid
    at: float
    rss_bytes: int
    cpu_seconds: float  # cumulative user + system


@dataclass
class Observations:
    started: float
    ended: float
    plans: tuple[ServicePlan, ...]
    faults: list[FaultSpan] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    states: list[ServiceState] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)  # the receivers' events (docs/contract.md)
    alerts: list[AlertSpan] = field(default_factory=list)
    resources: list[ResourceSample] = field(default_factory=list)
    containers: list[tuple[float, int]] = field(default_factory=list)  # (at, containers in the lab)
    node_names: dict = field(default_factory=dict)  # node ID -> hostname (events name nodes by ID)
