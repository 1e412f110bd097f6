"""make bench: SwarmGuard against the problem it exists for, everything real, on the lab.

- 10 migrations (Scenario 1: CPU stress, little network): MTTR = stress start -> the new
  task serving (running, healthy) and the old task out of rotation (desired shutdown);
  detection = stress start -> the receiver starting to act on the webhook (its `act`
  decision event, recorded milliseconds after receipt, just before the update call).
- 3 scale cycles (Scenario 2: CPU + network stress): scale-up step time (stress start ->
  second replica healthy) and back down after the load ends. The slow windows are
  shortened for the bench (scale-down `for:` 20 s, Alertmanager repeat 10 s, cooldowns
  10 s), as in the end-to-end tests; the detection path itself is the shipped one.
- one probe through the entry point (20 requests/s) for the whole run: failed requests
  and the longest gap without a successful response.
- baselines, same run: the same stress with the receiver stopped (how long the task stays
  hot: nothing moves), and the task killed outright (Swarm's reactive restart: outage).
- monitoring overhead: CPU seconds per second of each monitoring process and the bytes
  a scrape of each node's targets returns per second.
Prints a table, writes artifacts/bench.json and artifacts/bench.png.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from tests.bench.common import cpu_seconds, progress, publish, summarise, table
from tests.lab import controller, services
from tests.lab.config import DEFAULT, LabConfig
from tests.lab.events import action_started_at
from tests.lab.monitoring import EXPORTER_PORT, prometheus_query as query, shortened_windows
from tests.lab.nodes import client
from tests.lab.probe import Probe
from tests.lab.receiver_proc import ReceiverProcess
from tests.lab.services import stop_stress_everywhere as stop_everywhere, stress
from tests.lab.system import LabError, read_pid, wait_for

SERVICE = "bench-e2e"
STRESS_SECONDS = 40


def inspect(cfg: LabConfig) -> dict:
    return client(cfg, cfg.manager).api.inspect_service(SERVICE)


def settle(cfg: LabConfig) -> None:
    """Quiet before a trial: no update under way, no alert, no lingering old container
    (it holds the host-mode port the next move may need), the task cool."""
    wait_for("no update under way", lambda: (inspect(cfg).get("UpdateStatus") or {}).get("State") != "updating",
             timeout=60)
    wait_for("old containers gone", lambda: len(services.containers(cfg, SERVICE)) == replicas(cfg), timeout=60)
    wait_for("no SwarmGuard alert", lambda: not query(cfg, f'ALERTS{{service="{SERVICE}"}}'), timeout=90)
    wait_for("the task cool", lambda: all(float(r["value"][1]) < 30 for r in query(
        cfg, f'swarmguard:task_cpu:percent{{service="{SERVICE}"}}')), timeout=60)
    # The rules ignore a task's first 20 s (start-up grace): heat applied earlier would be
    # judged late, and counted as slow detection.
    services.wait_settled(cfg, SERVICE)


def replicas(cfg: LabConfig) -> int:
    return inspect(cfg)["Spec"]["Mode"]["Replicated"]["Replicas"]


def migrations(cfg: LabConfig, receiver: ReceiverProcess, n: int) -> list[dict]:
    out = []
    for i in range(1, n + 1):
        settle(cfg)
        [task] = services.running_tasks(cfg, SERVICE)
        old = services.node_name(cfg, task["NodeID"])
        started_wall, started = time.time(), time.monotonic()
        stress(cfg, "cpu", target=100, duration=STRESS_SECONDS)
        try:
            new = services.wait_moved_off(cfg, SERVICE, old, timeout=60, poll=0.1)
        except LabError:
            # Counted as a miss, not a crash: a benchmark reports how often this happens.
            progress(f"migration {i}/{n}: not moved off {old} within 60 s")
            out.append({"started_at": started_wall, "ended_at": time.time(), "from": old, "to": None,
                        "mttr_s": None, "detection_s": None, "missed": True})
            stop_everywhere(cfg)
            continue
        mttr = time.monotonic() - started
        receiver.wait_idle()
        acting = action_started_at(receiver.events(), "migrate", SERVICE, after=started_wall)
        out.append({"started_at": started_wall, "ended_at": time.time(), "from": old, "to": new, "mttr_s": mttr,
                    "detection_s": (acting - started_wall) if acting else None})
        progress(f"migration {i}/{n}: {old} -> {new}, MTTR {mttr:.2f} s, detection "
                 + (f"{acting - started_wall:.2f} s" if acting else "?"))
    return out


def scale_cycles(cfg: LabConfig, receiver: ReceiverProcess, n: int) -> list[dict]:
    out = []
    for i in range(1, n + 1):
        settle(cfg)
        started_wall, started = time.time(), time.monotonic()
        stress(cfg, "combined", cpu=100, network=round(cfg.node_capacity_mbps * 0.85, 1), duration=STRESS_SECONDS)
        wait_for("two healthy replicas", lambda: len(services.running_tasks(cfg, SERVICE)) == 2, timeout=90,
                 interval=0.1)
        up = time.monotonic() - started
        acting = action_started_at(receiver.events(), "scale_up", SERVICE, after=started_wall)
        stop_everywhere(cfg)
        stopped = time.monotonic()
        wait_for("back to one replica", lambda: replicas(cfg) == 1, timeout=120, interval=0.2)
        down = time.monotonic() - stopped
        receiver.wait_idle()
        out.append({"started_at": started_wall, "load_ended_at": time.time() - (time.monotonic() - stopped),
                    "ended_at": time.time(), "scale_up_step_s": up, "scale_up_detection_s": (acting - started_wall) if acting else None,
                    "scale_down_after_load_end_s": down})
        progress(f"scale cycle {i}/{n}: up in {up:.2f} s, down {down:.1f} s after the load ended")
    return out


def phase_at(result: dict, at: float) -> str:
    """Which part of the run a moment belongs to, for attributing failed requests."""
    for i, m in enumerate(result.get("migrations", []), 1):
        if m["started_at"] <= at <= m["ended_at"]:
            return f"migration {i}"
    for i, c in enumerate(result.get("scale_cycles", []), 1):
        if c["started_at"] <= at < c["load_ended_at"]:
            return f"scale cycle {i}: up"
        if c["load_ended_at"] <= at <= c["ended_at"]:
            return f"scale cycle {i}: down"
    return "between trials"


def baseline_no_receiver(cfg: LabConfig, seconds: int = 30) -> dict:
    """Today's Swarm: the task is starved and nothing moves it. How long it stays hot."""
    settle(cfg)
    [task] = services.running_tasks(cfg, SERVICE)
    stress(cfg, "cpu", target=100, duration=seconds)
    started, hot = time.monotonic(), 0.0
    while time.monotonic() - started < seconds + 10:
        rows = query(cfg, f'swarmguard:task_cpu:percent{{service="{SERVICE}"}}')
        if any(float(r["value"][1]) > 75 for r in rows):
            hot += 0.5
        time.sleep(0.5)
    [after] = services.running_tasks(cfg, SERVICE)
    return {"stress_s": seconds, "hot_s": hot, "moved": after["ID"] != task["ID"]}


def baseline_kill(cfg: LabConfig) -> dict:
    """Swarm's reactive recovery: the only task's container is killed outright."""
    settle(cfg)
    [task] = services.running_tasks(cfg, SERVICE)
    node = cfg.node(services.node_name(cfg, task["NodeID"]))
    container = task["Status"]["ContainerStatus"]["ContainerID"]
    with Probe(cfg.entrypoint_url + "/health", rate=20, max_seconds=120) as probe:
        time.sleep(2)
        client(cfg, node).api.kill(container)
        wait_for("Swarm to restart the task", lambda: any(t["ID"] != task["ID"] for t in
                                                          services.running_tasks(cfg, SERVICE)), timeout=90)
        time.sleep(2)
    result = probe.stop()
    return {"outage_s": result.longest_gap, "failed_requests": result.failed, "requests": result.total}


def overhead(cfg: LabConfig, receiver: ReceiverProcess, seconds: int = 30) -> dict:
    pids = {"prometheus": read_pid(cfg.run_dir / "prometheus.pid"),
            "alertmanager": read_pid(cfg.run_dir / "alertmanager.pid"),
            "receiver": receiver.proc.pid}
    for node in cfg.nodes:
        pids[f"cadvisor@{node.name}"] = read_pid(cfg.run_dir / f"cadvisor-{node.name}.pid")
        pids[f"exporter@{node.name}"] = read_pid(cfg.run_dir / f"exporter-{node.name}.pid")
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    time.sleep(seconds)
    used = {k: (cpu_seconds(p) - before[k]) / seconds for k, p in pids.items()}
    scrape_per_second = 2  # scrape_interval 500ms
    bytes_per_node = {}
    for node in cfg.nodes:
        size = sum(len(requests.get(url, timeout=5).content) for url in (
            f"http://{node.ip}:{cfg.cadvisor_port}/metrics", f"http://{node.ip}:{EXPORTER_PORT}/metrics"))
        bytes_per_node[node.name] = size * scrape_per_second
    per_node_cores = {n.name: used[f"cadvisor@{n.name}"] + used[f"exporter@{n.name}"] for n in cfg.nodes}
    return {"window_s": seconds, "cpu_seconds_per_second": used, "per_node_agents_cores": per_node_cores,
            "scraped_bytes_per_second_per_node": bytes_per_node}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    a, b, c = axes
    mttr = [m["mttr_s"] for m in result["migrations"] if m["mttr_s"] is not None]
    det = [m["detection_s"] for m in result["migrations"] if m["detection_s"] is not None]
    up = [s["scale_up_step_s"] for s in result["scale_cycles"]]
    a.boxplot([det, mttr, up], tick_labels=["detection\n(migrate)", "MTTR\n(migrate)", "scale-up\nstep"])
    a.axhline(6, color="#c0392b", linestyle="--", linewidth=1, label="MTTR goal p50 6 s")
    a.set_ylabel("seconds since the stress started")
    a.set_title(f"SwarmGuard ({len(mttr)} migrations, {len(up)} scale cycles)")
    a.legend(fontsize=8)
    kill = result["baselines"]["kill"]
    bars = {f"SwarmGuard\nMTTR p50\n({result['probe']['failed']} failed)": result["summary"]["mttr"]["p50"],
            f"task killed:\nSwarm restart outage\n({kill['failed_requests']} failed)": kill["outage_s"],
            "no SwarmGuard:\ntask stays hot": result["baselines"]["no_receiver"]["hot_s"]}
    b.bar(list(bars), list(bars.values()), color=["#2e86de", "#e67e22", "#95a5a6"])
    for i, v in enumerate(bars.values()):
        b.text(i, v, f"{v:.1f} s", ha="center", va="bottom")
    b.set_ylabel("seconds")
    b.set_title("Against today's Swarm")
    b.tick_params(axis="x", labelsize=8)
    use = result["overhead"]["cpu_seconds_per_second"]
    c.barh(list(use), [100 * v for v in use.values()], color="#27ae60")
    c.axvline(5, color="#c0392b", linestyle="--", linewidth=1, label="goal: 5 % of a core per node\n(cAdvisor + exporter)")
    c.set_xlabel("% of one core")
    c.set_title("Monitoring overhead")
    c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--migrations", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args(argv)
    cfg = DEFAULT
    if not controller.healthy(cfg):
        controller.up(cfg)
    services.remove_service(cfg, "web")  # the demo service holds the entry point's port
    progress(f"deploying {SERVICE} (stress app: 0.5 CPU, 256 MiB, max 2 replicas)")
    services.deploy_stress(cfg, SERVICE, labels={"swarmguard.replicas.max": "2"})
    result: dict = {"flavour": cfg.flavour, "versions": controller.running_versions(cfg)}
    try:
        probe_wall = time.time()
        with Probe(cfg.entrypoint_url + "/health", rate=20, max_seconds=3600) as probe:
            # The shortened windows for the whole run: one reload before anything fires.
            with shortened_windows(cfg), ReceiverProcess(
                    cfg, cooldown_migrate=5, cooldown_scale_up=10, cooldown_scale_down=10) as receiver:
                result["migrations"] = migrations(cfg, receiver, args.migrations)
                result["scale_cycles"] = scale_cycles(cfg, receiver, args.cycles)
                progress("measuring monitoring overhead (30 s, idle service)")
                result["overhead"] = overhead(cfg, receiver)
            r = probe.stop()
            result["probe"] = {"requests": r.total, "failed": r.failed, "longest_gap_s": r.longest_gap,
                               "failures": [{"at": probe_wall + s.at, "phase": phase_at(result, probe_wall + s.at),
                                             "status": s.status, "error": s.error} for s in r.samples if not s.ok]}
        progress("baseline: the same stress with the receiver stopped")
        result["baselines"] = {"no_receiver": baseline_no_receiver(cfg)}
        progress("baseline: the task killed outright (Swarm's reactive restart)")
        result["baselines"]["kill"] = baseline_kill(cfg)
    finally:
        stop_everywhere(cfg)
        services.remove_service(cfg, SERVICE)
    mttr = summarise([m["mttr_s"] for m in result["migrations"] if m["mttr_s"] is not None])
    det = summarise([m["detection_s"] for m in result["migrations"] if m["detection_s"] is not None])
    up = summarise([s["scale_up_step_s"] for s in result["scale_cycles"]])
    result["summary"] = {"mttr": mttr, "detection": det, "scale_up_step": up}
    print("\nSwarmGuard end to end (lab: 3 nodes on one machine)")
    print(table(["measure", "n", "p50 s", "p95 s", "max s"], [
        ["detection (stress -> receiver acts)", det["n"], det["p50"], det["p95"], det["max"]],
        ["MTTR (stress -> new task serving, old out)", mttr["n"], mttr["p50"], mttr["p95"], mttr["max"]],
        ["scale-up step (stress -> 2nd replica healthy)", up["n"], up["p50"], up["p95"], up["max"]],
    ]))
    p = result["probe"]
    print(f"\nprobe: {p['requests']} requests, {p['failed']} failed, longest gap without success {p['longest_gap_s']:.2f} s")
    for f in p["failures"]:
        print(f"  failed request at {datetime.fromtimestamp(f['at'], timezone.utc):%H:%M:%S.%f} UTC "
              f"({f['phase']}): {f['status'] or f['error']}")
    b = result["baselines"]
    print(f"baseline, no SwarmGuard: the task stayed hot {b['no_receiver']['hot_s']:.0f} s of a "
          f"{b['no_receiver']['stress_s']} s stress (moved: {b['no_receiver']['moved']})")
    print(f"baseline, task killed (Swarm restarts it): outage {b['kill']['outage_s']:.1f} s, "
          f"{b['kill']['failed_requests']} failed of {b['kill']['requests']} requests")
    o = result["overhead"]
    print("\nmonitoring overhead, % of one core: " + ", ".join(
        f"{k} {100 * v:.1f}" for k, v in o["cpu_seconds_per_second"].items()))
    print("per node (cAdvisor + exporter), % of one core: " + ", ".join(
        f"{k} {100 * v:.1f}" for k, v in o["per_node_agents_cores"].items()))
    print("scraped per node, kB/s: " + ", ".join(
        f"{k} {v / 1000:.1f}" for k, v in o["scraped_bytes_per_second_per_node"].items()))
    publish("bench", result, lambda png: plot(result, png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
