"""Scenario 1 (migrate) and Scenario 2 (scale), run on the live lab, each as one function
that returns its result (results.py). The demo, the end-to-end lab tests and the
end-to-end benchmark call these; what differs between them (how long the stress lasts,
the receiver's settings, what is checked at the maximum) is a parameter.

Every scenario starts with settle(): nothing is timed before the service is quiet and
its tasks are past the rules' start-up grace, or the grace would read as slow detection.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from ..config import LabConfig
from ..infra import services
from ..infra.monitoring import shortened_windows
from ..infra.receiver_proc import ReceiverProcess
from ..infra.system import LabError, wait_for
from ..instruments import prometheus
from ..instruments.events import action_started_at
from ..instruments.probe import Probe
from ..instruments.recorder import Recorder
from ..reports.timeline import Timeline
from .results import MigrateResult, ScaleResult

# Scenario 2's demand: CPU and this share of a node's network capacity, above the rules'
# high network threshold (65 %), so the answer to the heat is more replicas, not a move.
NETWORK_SHARE = 0.85
SHORT_COOLDOWN = 10  # seconds; the shipped cooldowns would make a scale cycle minutes long
DEMO_SCALE_DOWN_WINDOW_S = 20  # the scale-down window (180 s as shipped), shortened alike


def deploy(cfg: LabConfig, service: str, maximum: int = 2) -> None:
    """The stress app as `service`, opted in, at most `maximum` replicas. The busybox demo
    service `web` is removed first: it holds the entry point's published port."""
    services.remove_service(cfg, "web")
    services.deploy_stress(cfg, service, labels={"swarmguard.replicas.max": str(maximum)})


@contextmanager
def shortened_receiver(cfg: LabConfig, **settings) -> Iterator[ReceiverProcess]:
    """The receiver under gunicorn with the slow windows shortened (scale-down window 20 s,
    Alertmanager's repeat 10 s) and 10 s scale cooldowns, so a scale cycle fits in a
    test; the detection path and every decision are the shipped ones. `settings` are
    more SWARMGUARD_* settings (cooldown_migrate=5, dry_run=1, ...)."""
    settings = {"cooldown_scale_up": SHORT_COOLDOWN, "cooldown_scale_down": SHORT_COOLDOWN, **settings}
    with shortened_windows(cfg, scale_down_window_s=DEMO_SCALE_DOWN_WINDOW_S), \
            ReceiverProcess(cfg, **settings) as receiver:
        yield receiver


def settle(cfg: LabConfig, service: str) -> None:
    """Quiet before a run: no update under way, no lingering old container (it holds the
    host-mode port the next move may need), no SwarmGuard alert, the task cool, and every
    running task past the start-up grace."""
    wait_for("no update under way", lambda: (services.inspect(cfg, service).get("UpdateStatus") or {})
             .get("State") != "updating", timeout=60)
    wait_for("old containers gone",
             lambda: len(services.containers(cfg, service)) == services.replicas(cfg, service), timeout=60)
    wait_for("no SwarmGuard alert", lambda: not prometheus.alerts(cfg, service), timeout=90)
    wait_for("the task cool", lambda: all(float(r["value"][1]) < 30 for r in prometheus.query(
        cfg, f'swarmguard:task_cpu:percent{{service="{service}"}}')), timeout=60)
    services.wait_settled(cfg, service)


def _stress_started(recorder: Recorder | None, service: str, text: str, task: dict | None = None,
                    node: str | None = None) -> None:
    if recorder is not None:
        recorder.event("stress", text, service, task=task["ID"] if task else None, node=node)


def _stress_stopped(cfg: LabConfig, recorder: Recorder | None, service: str, text: str) -> None:
    services.stop_stress_everywhere(cfg)
    if recorder is not None:
        recorder.event("stress_stopped", text, service)


def migrate(cfg: LabConfig, service: str, receiver: ReceiverProcess, *, recorder: Recorder | None = None,
            stress_seconds: int = 40, timeout: float = 60, poll: float = 0.25, hold_s: float = 0.0,
            stop_stress: bool = True) -> MigrateResult:
    """Scenario 1: CPU stress with little network on the service's only task until the
    receiver moves it. A task not moved within `timeout` is a result (to_node None), not
    an error: a benchmark counts how often that happens. `hold_s`: seconds the stress is
    kept on after the move (the demo shows the new task staying cool)."""
    settle(cfg, service)
    [task] = services.running_tasks(cfg, service)
    old = services.node_name(cfg, task["NodeID"])
    started_wall, started = time.time(), time.monotonic()
    answer = services.stress(cfg, "cpu", target=100, duration=stress_seconds)
    _stress_started(recorder, service, f"CPU stress started on {service} (task {task['ID'][:12]} on {old}), "
                                       "little network", task, old)
    try:
        new: str | None = services.wait_moved_off(cfg, service, old, timeout=timeout, poll=poll)
        mttr: float | None = time.monotonic() - started
    except LabError:
        new, mttr = None, None
    ended_wall = time.time()
    if new is not None:
        receiver.wait_idle()
        time.sleep(hold_s)
    acting = action_started_at(receiver.events(), "migrate", service, after=started_wall)
    if stop_stress:
        _stress_stopped(cfg, recorder, service, "stress stopped")
    return MigrateResult(service=service, task=task["ID"], from_node=old,
                         stressed_node=answer.headers.get("X-Swarm-Node"), to_node=new,
                         started_at=started_wall, ended_at=ended_wall, mttr_s=mttr,
                         detection_s=(acting - started_wall) if acting else None)


def scale_cycle(cfg: LabConfig, service: str, receiver: ReceiverProcess, *, recorder: Recorder | None = None,
                maximum: int = 2, stress_seconds: int = 60, up_timeout: float = 90, down_timeout: float = 120,
                poll: float = 0.2, at_maximum: Callable[[], None] | None = None) -> ScaleResult:
    """Scenario 2: CPU + network stress until the spec asks for `maximum` replicas and they
    all run healthy; then `at_maximum()` (what a caller checks or shows while demand is
    real); then the stress stops and the service is scaled back to one replica after the
    scale-down window. Needs the shortened windows (shortened_receiver) to fit the
    default timeouts."""
    settle(cfg, service)
    [task] = services.running_tasks(cfg, service)
    node = services.node_name(cfg, task["NodeID"])
    mbps = round(cfg.node_capacity_mbps * NETWORK_SHARE, 1)
    started_wall, started = time.time(), time.monotonic()
    services.stress(cfg, "combined", cpu=100, network=mbps, duration=stress_seconds)
    _stress_started(recorder, service, f"CPU + network stress ({mbps} Mbit/s of {cfg.node_capacity_mbps}) "
                                       f"on {service} (task {task['ID'][:12]} on {node})", task, node)
    wait_for(f"scale up to {maximum}", lambda: services.replicas(cfg, service) == maximum,
             timeout=up_timeout, interval=poll)
    scaled_up = time.monotonic() - started
    wait_for(f"{maximum} healthy replicas", lambda: len(services.running_tasks(cfg, service)) == maximum,
             timeout=up_timeout, interval=poll)
    up_step = time.monotonic() - started
    if at_maximum is not None:
        at_maximum()
    _stress_stopped(cfg, recorder, service, "stress stopped: demand is gone")
    load_ended_wall, stopped = time.time(), time.monotonic()
    wait_for("scale down to 1 replica", lambda: services.replicas(cfg, service) == 1,
             timeout=down_timeout, interval=poll)
    down = time.monotonic() - stopped
    wait_for("one healthy task", lambda: len(services.running_tasks(cfg, service)) == 1, timeout=30)
    receiver.wait_idle()
    acting = action_started_at(receiver.events(), "scale_up", service, after=started_wall)
    return ScaleResult(service=service, maximum=maximum, started_at=started_wall,
                       load_ended_at=load_ended_wall, ended_at=time.time(), scaled_up_s=scaled_up,
                       up_step_s=up_step, detection_s=(acting - started_wall) if acting else None,
                       down_after_load_end_s=down)


@dataclass(frozen=True)
class Recording:
    timeline: Timeline
    result: MigrateResult | ScaleResult


def recorded(cfg: LabConfig, receiver: ReceiverProcess, title: str, service: str,
             scenario: Callable[[Recorder], MigrateResult | ScaleResult]) -> Recording:
    """Run `scenario(recorder)` with a recorder and a 20 requests/s probe through the
    entry point around it; the Timeline of it all (metrics, alerts, tasks, the receiver's
    decisions, the probe) with the result. A little time before and after, so the
    picture shows the calm on both sides."""
    with Recorder(cfg, [service]) as rec:
        probe_started = time.time()
        with Probe(cfg.entrypoint_url + "/health", rate=20, max_seconds=300) as probe:
            time.sleep(2)
            result = scenario(rec)
            time.sleep(3)
        rec.add_probe(probe.stop(), probe_started)
        receiver.wait_idle()
        rec.add_receiver_events(receiver.events(), since_wall=rec.started_at)
        return Recording(rec.timeline(title), result)
