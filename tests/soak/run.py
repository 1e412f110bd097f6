"""make soak: the soak's one driver. Deploys the plan's services, runs the receiver as
shipped (the shipped rule windows, its default cooldowns and futile window), probes every
service, drives their demand, applies the seeded faults one after another, then judges
what it saw (invariants.py) and writes artifacts/soak.json and artifacts/soak.png.

Exit status: 0 when every invariant held, 1 when one did not, 2 when the soak could not
run (the lab is down, too few workers, a bad setting).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

import requests
from docker.types import Mount
from receiver.config import Settings

from ..lab.config import PROJECT_ROOT, LabConfig
from ..lab.infra import controller, monitoring, services
from ..lab.infra.nodes import client
from ..lab.infra.system import LabError, say
from ..lab.instruments.probe import Probe
from . import faults as F
from . import invariants, plan, report
from . import model as M
from .load import Load
from .model import FaultSpan, Observations, Request, ServicePlan
from .plan import LOAD
from .sampler import Sampler, alert_spans

ARTIFACTS = PROJECT_ROOT / "artifacts"
PROBE_RATE = 2.0  # requests/s per service: 12 services, 24/s, on two shared cores
# Health checks every 5 s once started (each execs a Python in the task: at 1 s, fifteen
# tasks' checks alone took most of a core), every second within the start period (Engine
# 25+'s StartInterval), so a new task is found healthy as soon as it is.
HEALTH_INTERVAL_S = 5.0
HEALTH_START_PERIOD_S = 10.0
STRESS_CPUS = 0.25  # each task's CPU limit: the hot ones together stay under a core
STRESS_MEMORY_MB = 192
SLOW_START_S = 8
MIN_WORKERS = 2
PROGRESS_EVERY_S = 60.0
FINAL_IDLE_TIMEOUT_S = 180.0


def _minutes(text: str) -> float:
    value = float(text)
    if not 1 <= value <= 24 * 60:
        raise argparse.ArgumentTypeError(f"SOAK_MINUTES={text}: expected 1 to 1440 minutes")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=_minutes, default=_minutes(os.environ.get("SOAK_MINUTES") or "30"),
                   help="how long the soak runs (SOAK_MINUTES, default 30)")
    p.add_argument("--seed", type=int, default=int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED")
                   else random.SystemRandom().randrange(1, 1_000_000),
                   help="the fault schedule's seed (SOAK_SEED; default: a new one, printed)")
    p.add_argument("--out", type=Path, default=ARTIFACTS / "soak.json")
    return p.parse_args(argv)


# -- the services ------------------------------------------------------------------------

def deploy(cfg: LabConfig, plans: tuple[ServicePlan, ...]) -> None:
    """Every service of the plan, healthy. A service with a node starts there; the starved
    one's pin is then lifted (a placement change its task still meets: Swarm leaves the
    task where it is), so it starts beside its hog and SwarmGuard may still move it."""
    for p in plans:
        labels = {"swarmguard.replicas.min": str(p.min_replicas),
                  "swarmguard.replicas.max": str(p.max_replicas)} if p.opt_in else {}
        constraints = services.WORKERS_ONLY + ((f"node.hostname=={p.node}",) if p.node else ())
        slow = p.behaviour == M.SLOW_START
        say(f"deploying {p.name} ({p.behaviour}, {'opted in' if p.opt_in else 'not opted in'}, "
            f"{p.replicas} replica(s), port {p.published_port}{', on ' + p.node if p.node else ''})")
        services.deploy_stress(
            cfg, p.name, replicas=p.replicas, opt_in=p.opt_in, labels=labels, cpus=STRESS_CPUS,
            memory_mb=LOAD[p.behaviour].memory_limit_mib or STRESS_MEMORY_MB,
            published_port=p.published_port, constraints=constraints,
            env=(f"STRESS_STARTUP_DELAY_SECONDS={SLOW_START_S}",) if slow else (),
            health_start_period_s=SLOW_START_S + 12 if slow else HEALTH_START_PERIOD_S,
            health_interval_s=HEALTH_INTERVAL_S,
            health_check=p.behaviour != M.NO_HEALTHCHECK,
            mounts=(Mount(target="/data", source=f"{p.name}-data", type="volume"),)
            if p.behaviour == M.STATEFUL else ())
        if p.behaviour == M.STARVED and p.node:
            [before] = services.running_tasks(cfg, p.name)

            def unpinned(spec: dict) -> None:
                spec["TaskTemplate"]["Placement"]["Constraints"] = list(services.WORKERS_ONLY)
            services.update_service(cfg, p.name, unpinned)
            services.wait_settled(cfg, p.name)
            [after] = services.running_tasks(cfg, p.name)
            if after["ID"] != before["ID"]:
                raise LabError(f"lifting {p.name}'s pin replaced its task: Swarm moved it off {p.node}")


def stop_stress(cfg: LabConfig, plans: tuple[ServicePlan, ...]) -> None:
    """/stress/stop on every task of every service, on its node's port."""
    for p in plans:
        for worker in cfg.workers:
            try:
                requests.get(f"http://{worker.ip}:{p.published_port}/stress/stop", timeout=2)
            except requests.RequestException:
                pass  # no task of it there


def remove(cfg: LabConfig, plans: tuple[ServicePlan, ...]) -> None:
    for p in plans:
        services.remove_service(cfg, p.name)


# -- the run -----------------------------------------------------------------------------

class Progress:
    """A line a minute: where the soak is, what it has seen so far."""

    def __init__(self, started: float, minutes: float, probes: dict[str, Probe], slot: F.ReceiverSlot):
        self.started, self.minutes, self.probes, self.slot = started, minutes, probes, slot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="soak-progress")

    def _loop(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY_S):
            try:
                results = {name: p._result for name, p in self.probes.items()}
                total = sum(len(r.samples) for r in results.values())
                failed = sum(1 for r in results.values() for s in list(r.samples) if not s.ok)
                events = self.slot.events()
                acts = sum(1 for e in events if e["type"] == "decision" and e["result"] == "act")
                skips = sum(1 for e in events if e["type"] == "decision" and e["result"] == "skip")
                say(f"soak {(time.time() - self.started) / 60:5.1f} of {self.minutes:g} min: "
                    f"{total} requests, {failed} failed; {acts} actions, {skips} skips")
            except Exception as exc:  # progress is a courtesy: never stops the soak
                say(f"soak progress unavailable: {exc}")

    def start(self) -> "Progress":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


def run_faults(cfg: LabConfig, schedule: list[M.Fault], started: float, ends: float,
               slot: F.ReceiverSlot, obs: Observations) -> None:
    for fault in schedule:
        due = started + fault.start_s
        time.sleep(max(0.0, due - time.time()))
        if time.time() + fault.duration_s > ends:
            say(f"fault {fault.kind} skipped: it would outlast the soak")
            continue
        where = f" on {fault.node}" if fault.node else ""
        say(f"fault: {fault.kind}{where} for {fault.duration_s:g} s")
        broken, repaired, note = F.apply(cfg, fault, slot)
        obs.faults.append(FaultSpan(fault, broken, repaired, note))
        say(f"fault {fault.kind}{where} repaired after {repaired - broken:.1f} s")


def soak(cfg: LabConfig, minutes: float, seed: int, out: Path) -> int:
    if len(cfg.workers) < MIN_WORKERS:
        raise LabError(f"the soak needs at least {MIN_WORKERS} workers (SWARMGUARD_LAB_WORKERS)")
    if not controller.healthy(cfg):
        raise LabError("the lab is not up: `make soak` brings it up first")
    ports = [e.published_port for e in cfg.entry_points]
    plans = plan.services(ports, [w.name for w in cfg.workers])
    schedule, not_scheduled = plan.fault_schedule(minutes, seed, [w.name for w in cfg.workers],
                                                  [n.name for n in cfg.nodes])
    say(f"soak: {minutes:g} minutes, seed {seed} (SOAK_SEED={seed} repeats this schedule), "
        f"{len(cfg.workers)} workers, {len(plans)} services")
    print(plan.format_schedule(schedule, not_scheduled), flush=True)

    monitoring.sync_rules(cfg)  # the shipped windows, whatever an interrupted demo left
    controller.remove_services(cfg)
    deploy(cfg, plans)
    # As shipped: the receiver's defaults (ReceiverProcess turns the futile hold off for
    # tests that move one service again and again; a soak is how a user runs it).
    slot = F.ReceiverSlot(cfg, futile_window=Settings(token="-").futile_window)
    slot.begin()
    started = time.time()
    ends = started + minutes * 60
    obs = Observations(started=started, ended=ends, plans=plans)
    probes = {p.name: Probe(cfg.entry_url(p.published_port) + "/", rate=PROBE_RATE, timeout=2.0,
                            max_seconds=minutes * 60 + 900).start() for p in plans}
    probe_t0 = {name: time.time() for name in probes}
    load = Load(cfg, plans, started).start()
    sampler = Sampler(cfg, obs, lambda: slot.current.proc.pid if slot.current and slot.current.proc else None).start()
    progress = Progress(started, minutes, probes, slot).start()
    try:
        run_faults(cfg, schedule, started, ends, slot, obs)
        time.sleep(max(0.0, ends - time.time()))
    finally:
        say("soak time is up: stopping the demand, letting SwarmGuard finish")
        progress.stop()
        load.stop()
        stop_stress(cfg, plans)
        try:
            slot.current.wait_idle(timeout=FINAL_IDLE_TIMEOUT_S)
        except Exception as exc:
            say(f"the receiver did not go idle: {exc}")
        results = {name: probe.stop() for name, probe in probes.items()}
        sampler.stop()
    obs.ended = time.time()
    for name, result in results.items():
        obs.requests.extend(Request(name, probe_t0[name] + s.at, s.ok, s.node) for s in result.samples)
    obs.events = slot.events()
    obs.node_names = {n.attrs["ID"]: n.attrs["Description"]["Hostname"]
                      for n in client(cfg, cfg.manager).nodes.list()}
    obs.alerts = alert_spans(cfg, started, obs.ended)
    slot.current.stop()
    judged = invariants.check(obs)  # the limits: the receiver as shipped (invariants.Limits)
    png = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    report.write(out, png, obs, schedule, not_scheduled, judged, judged["figures"], seed, minutes)
    print(summary(judged), flush=True)
    say(f"wrote {out} and {png}")
    remove(cfg, plans)
    return 1 if judged["violations"] else 0


def summary(judged: dict) -> str:
    lines = ["", "invariant                                    violations  first"]
    for name, result in judged["invariants"].items():
        first = result["first"][0]["text"] if result["first"] else ""
        lines.append(f"  {name:<44} {result['violations']:>5}  {first[:90]}")
    lines.append("")
    lines.append("all invariants held" if not judged["violations"]
                 else f"{len(judged['violations'])} violation(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        cfg = LabConfig()
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    try:
        return soak(cfg, args.minutes, args.seed, args.out)
    except LabError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
