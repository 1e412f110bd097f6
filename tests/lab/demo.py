"""make demo: SwarmGuard at work in the lab, both scenarios, live.

Deploys the stress app as the demo service `demo` (opted in, at most 2 replicas: the lab
has two workers), starts the receiver under gunicorn, and then:
  Scenario 1: the demo task burns CPU with little network -> SwarmGuard migrates it;
  Scenario 2: it burns CPU and sends traffic -> a replica is added; the load stops ->
              after the scale-down window the extra replica is removed.
A probe sends 20 requests/s through the entry point the whole time. Each scenario ends
with a readable timeline and a PNG (artifacts/demo-scenario-*.png).

The scale-down window (180 s) and Alertmanager's repeat (1 m) are shortened to 20 s and
10 s for the demo, and the receiver's cooldowns to 10 s, so the whole show takes about
two minutes; the detection path and every decision are the shipped ones.
"""
from __future__ import annotations

import json
import sys
import time

import requests

from tests.bench.common import ARTIFACTS
from tests.lab import controller, health, services
from tests.lab.config import DEFAULT, LabConfig
from tests.lab.monitoring import shortened_windows
from tests.lab.probe import Probe
from tests.lab.receiver_proc import ReceiverProcess
from tests.lab.recorder import Recorder
from tests.lab.services import stop_stress_everywhere as stop_everywhere, stress
from tests.lab.system import LabError, say, wait_for
from tests.lab.timeline import render_png, render_text, summary

SERVICE = "demo"


def replicas(cfg: LabConfig) -> int:
    return services.client(cfg, cfg.manager).api.inspect_service(SERVICE)["Spec"]["Mode"]["Replicated"]["Replicas"]


def scenario(cfg: LabConfig, receiver: ReceiverProcess, title: str, run) -> dict:
    say(f"{title}: starting")
    with Recorder(cfg, [SERVICE]) as rec:
        probe_started = time.time()
        with Probe(cfg.entrypoint_url + "/health", rate=20, max_seconds=300) as probe:
            time.sleep(2)
            run(rec)
            time.sleep(3)
        rec.add_probe(probe.stop(), probe_started)
        receiver.wait_idle()
        rec.add_receiver_events(receiver.events(), since_wall=rec.started_at)
        timeline = rec.timeline(title)
    print()
    print(render_text(timeline))
    slug = title.split(":")[0].lower().replace(" ", "-")
    png = render_png(timeline, ARTIFACTS / f"demo-{slug}.png")
    print(f"           picture     {png}")
    return summary(timeline)


def scenario_1(cfg: LabConfig):
    def run(rec: Recorder) -> None:
        services.wait_settled(cfg, SERVICE)  # the rules ignore a task's start-up heat
        [(task, node)] = rec.running_tasks(SERVICE) or [("?", "?")]
        stress(cfg, "cpu", target=100, duration=40)
        rec.event("stress", f"CPU stress started on {SERVICE} (task {task} on {node}), little network",
                  SERVICE, task=task, node=node)
        old = node
        moved_to = services.wait_moved_off(cfg, SERVICE, old, timeout=60)
        say(f"Scenario 1: {SERVICE} moved from {old} to {moved_to}")
        time.sleep(3)
        stop_everywhere(cfg)
        rec.event("stress_stopped", "stress stopped", SERVICE)
    return run


def scenario_2(cfg: LabConfig):
    def run(rec: Recorder) -> None:
        wait_for("the migrated task to cool down", lambda: not requests.get(
            f"{cfg.prometheus_url}/api/v1/query", timeout=5,
            params={"query": f'ALERTS{{service="{SERVICE}"}}'}).json()["data"]["result"], timeout=60)
        services.wait_settled(cfg, SERVICE)
        [(task, node)] = rec.running_tasks(SERVICE) or [("?", "?")]
        mbps = round(cfg.node_capacity_mbps * 0.85, 1)
        stress(cfg, "combined", cpu=100, network=mbps, duration=60)
        rec.event("stress", f"CPU + network stress ({mbps} Mbit/s of {cfg.node_capacity_mbps}) on {SERVICE} "
                            f"(task {task} on {node})", SERVICE, task=task, node=node)
        wait_for("a second replica", lambda: len(services.running_tasks(cfg, SERVICE)) == 2, timeout=60)
        say(f"Scenario 2: {SERVICE} scaled up to 2 replicas")
        time.sleep(5)
        stop_everywhere(cfg)
        rec.event("stress_stopped", "stress stopped: demand is gone", SERVICE)
        wait_for("scale down to 1 replica", lambda: replicas(cfg) == 1, timeout=120)
        say(f"Scenario 2: {SERVICE} scaled back down to 1 replica")
        wait_for("one task", lambda: len(services.running_tasks(cfg, SERVICE)) == 1, timeout=30)
    return run


def print_health(cfg: LabConfig) -> None:
    """Can SwarmGuard see and act? Once the receiver's first read of the swarm has been
    scraped (a few seconds); printed as it stands after 30 s otherwise."""
    try:
        wait_for("SwarmGuard to see every node and opted-in task",
                 lambda: health.healthy(health.read(cfg)), timeout=30, interval=1)
    except LabError:
        pass
    say(health.describe(health.read(cfg)))


def main() -> int:
    cfg = DEFAULT
    if not controller.healthy(cfg):
        controller.up(cfg)
    services.remove_service(cfg, "web")
    versions = controller.running_versions(cfg)
    say(f"lab flavour {cfg.flavour}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    say(f"deploying the demo service {SERVICE} (stress app, opted in, 0.5 CPU, max 2 replicas)")
    services.deploy_stress(cfg, SERVICE, labels={"swarmguard.replicas.max": "2"})
    results: dict = {"flavour": cfg.flavour, "versions": versions}
    with shortened_windows(cfg), ReceiverProcess(cfg, cooldown_scale_up=10, cooldown_scale_down=10) as receiver:
        print_health(cfg)
        results["scenario_1"] = scenario(cfg, receiver, "Scenario 1: migrate a starved task", scenario_1(cfg))
        results["scenario_2"] = scenario(cfg, receiver, "Scenario 2: scale with real demand", scenario_2(cfg))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "demo.json").write_text(json.dumps(results, indent=2, default=str))
    print()
    print(controller.format_status(controller.status(cfg)))
    print(f"\nTimelines: {ARTIFACTS}/demo-scenario-1.png, {ARTIFACTS}/demo-scenario-2.png; "
          f"numbers in {ARTIFACTS}/demo.json. `make lab-down` removes the lab.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
