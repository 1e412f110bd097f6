"""make demo: SwarmGuard at work in the lab, both scenarios, live.

Deploys the stress app as the demo service `demo` (opted in, at most 2 replicas: the lab
has two workers), starts the receiver under gunicorn, and then:
  Scenario 1: the demo task burns CPU with little network -> SwarmGuard migrates it;
  Scenario 2: it burns CPU and sends traffic -> a replica is added; the load stops ->
              after the scale-down window the extra replica is removed.
A probe sends 20 requests/s through the entry point the whole time. Each scenario ends
with a readable timeline and a PNG (artifacts/demo-scenario-*.png).

The scale-down window (180 s of 30 s averages) and Alertmanager's repeat (15 s) are
shortened to 20 s (of 10 s averages) and 10 s for the demo, and the receiver's cooldowns to 10 s, so the whole show takes about
two minutes; the detection path and every decision are the shipped ones.
"""
from __future__ import annotations

import json
import sys
import time

from tests.lab.artifacts import ARTIFACTS
from tests.lab.config import DEFAULT, LabConfig
from tests.lab.infra import controller
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.system import LabError, say, wait_for
from tests.lab.instruments import health
from tests.lab.reports.analysis import summary
from tests.lab.reports.png import render_png
from tests.lab.reports.text import render_text
from tests.lab.scenarios import run

SERVICE = "demo"


def show(cfg: LabConfig, receiver: ReceiverProcess, title: str, scenario) -> dict:
    """Run one scenario under the recorder, print its timeline, draw its PNG; its numbers."""
    say(f"{title}: starting")
    recording = run.recorded(cfg, receiver, title, SERVICE, scenario)
    print()
    print(render_text(recording.timeline))
    slug = title.split(":")[0].lower().replace(" ", "-")
    png = render_png(recording.timeline, ARTIFACTS / f"demo-{slug}.png")
    print(f"           picture     {png}")
    numbers = summary(recording.timeline)
    down = getattr(recording.result, "down_after_load_end_s", None)
    if down is not None:
        # The number a user of Scenario 2 asks for: how long extra capacity outlives demand.
        print(f"           scale-down  the spec asked for 1 replica {down:.1f} s after the load ended "
              f"(window {run.DEMO_SCALE_DOWN_WINDOW_S} s, cooldown {run.SHORT_COOLDOWN} s)")
        numbers["scale_down_after_load_end_s"] = round(down, 3)
    return numbers


def scenario_1(cfg: LabConfig, receiver: ReceiverProcess):
    def migrate(rec):
        # The stress is held 3 s after the move: the picture shows the new task cool.
        result = run.migrate(cfg, SERVICE, receiver, recorder=rec, stress_seconds=40, hold_s=3)
        if not result.moved:
            raise LabError(f"{SERVICE} was not moved off {result.from_node} within 60 s")
        say(f"Scenario 1: {SERVICE} moved from {result.from_node} to {result.to_node}")
        return result
    return migrate


def scenario_2(cfg: LabConfig, receiver: ReceiverProcess):
    def scale(rec):
        result = run.scale_cycle(cfg, SERVICE, receiver, recorder=rec, stress_seconds=60,
                                 at_maximum=lambda: (say(f"Scenario 2: {SERVICE} scaled up to 2 replicas"),
                                                     time.sleep(5)))
        say(f"Scenario 2: {SERVICE} scaled back down to 1 replica")
        return result
    return scale


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
    versions = controller.running_versions(cfg)
    say(f"lab flavour {cfg.flavour}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    say(f"deploying the demo service {SERVICE} (stress app, opted in, 0.5 CPU, max 2 replicas)")
    run.deploy(cfg, SERVICE, maximum=2)
    results: dict = {"flavour": cfg.flavour, "versions": versions}
    with run.shortened_receiver(cfg) as receiver:
        print_health(cfg)
        results["scenario_1"] = show(cfg, receiver, "Scenario 1: migrate a starved task", scenario_1(cfg, receiver))
        results["scenario_2"] = show(cfg, receiver, "Scenario 2: scale with real demand", scenario_2(cfg, receiver))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "demo.json").write_text(json.dumps(results, indent=2, default=str))
    print()
    print(controller.format_status(controller.status(cfg)))
    print(f"\nTimelines: {ARTIFACTS}/demo-scenario-1.png, {ARTIFACTS}/demo-scenario-2.png; "
          f"numbers in {ARTIFACTS}/demo.json. `make lab-down` removes the lab.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
