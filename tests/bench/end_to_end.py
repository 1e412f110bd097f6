"""make bench: SwarmGuard against the problem it exists for, everything real, on the lab.

- 10 migrations (Scenario 1: CPU stress, little network): MTTR = stress start -> the new
  task serving (running, healthy) and the old task out of rotation (desired shutdown);
  detection = stress start -> the receiver starting to act on the webhook (its `act`
  decision event, recorded milliseconds after receipt, just before the update call).
- 3 scale cycles (Scenario 2: CPU + network stress): scale-up step time (stress start ->
  second replica healthy) and back down after the load ends. The slow windows are
  shortened for the bench (scale-down window 20 s, Alertmanager repeat 10 s, cooldowns
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

import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from tests.bench.common import command_line, cpu_seconds, lab_up, progress, publish, pyplot, save_figure, summarise, table
from tests.lab.infra import controller, services
from tests.lab.config import LabConfig
from tests.lab.infra.monitoring import EXPORTER_PORT
from tests.lab.instruments.prometheus import query
from tests.lab.infra.nodes import client
from tests.lab.instruments.probe import Probe
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.services import stop_stress_everywhere as stop_everywhere, stress
from tests.lab.infra.system import read_pid, wait_for
from tests.lab.scenarios import run

SERVICE = "bench-e2e"
STRESS_SECONDS = 40


def migrations(cfg: LabConfig, receiver: ReceiverProcess, n: int) -> list[dict]:
    out = []
    for i in range(1, n + 1):
        m = run.migrate(cfg, SERVICE, receiver, stress_seconds=STRESS_SECONDS, timeout=60, poll=0.1,
                        stop_stress=False)
        if not m.moved:
            # Counted as a miss, not a crash: a benchmark reports how often this happens.
            progress(f"migration {i}/{n}: not moved off {m.from_node} within 60 s")
            stop_everywhere(cfg)
        else:
            progress(f"migration {i}/{n}: {m.from_node} -> {m.to_node}, MTTR {m.mttr_s:.2f} s, detection "
                     + (f"{m.detection_s:.2f} s" if m.detection_s is not None else "?"))
        out.append({"started_at": m.started_at, "ended_at": m.ended_at, "from": m.from_node, "to": m.to_node,
                    "mttr_s": m.mttr_s, "detection_s": m.detection_s, **({"missed": True} if not m.moved else {})})
    return out


def scale_cycles(cfg: LabConfig, receiver: ReceiverProcess, n: int) -> list[dict]:
    out = []
    for i in range(1, n + 1):
        c = run.scale_cycle(cfg, SERVICE, receiver, stress_seconds=STRESS_SECONDS, poll=0.1)
        out.append({"started_at": c.started_at, "load_ended_at": c.load_ended_at, "ended_at": c.ended_at,
                    "scale_up_step_s": c.up_step_s, "scale_up_detection_s": c.detection_s,
                    "scale_down_after_load_end_s": c.down_after_load_end_s})
        progress(f"scale cycle {i}/{n}: up in {c.up_step_s:.2f} s, down {c.down_after_load_end_s:.1f} s "
                 "after the load ended")
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
    run.settle(cfg, SERVICE)
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
    run.settle(cfg, SERVICE)
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
    plt = pyplot()
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
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--migrations", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args(argv)
    cfg = lab_up()
    progress(f"deploying {SERVICE} (stress app: 0.5 CPU, 256 MiB, max 2 replicas)")
    run.deploy(cfg, SERVICE, maximum=2)
    result: dict = {"flavour": cfg.flavour, "versions": controller.running_versions(cfg)}
    try:
        probe_wall = time.time()
        with Probe(cfg.entrypoint_url + "/health", rate=20, max_seconds=3600) as probe:
            # The shortened windows for the whole run: one reload before anything fires.
            with run.shortened_receiver(cfg, cooldown_migrate=5) as receiver:
                result["migrations"] = migrations(cfg, receiver, args.migrations)
                result["scale_cycles"] = scale_cycles(cfg, receiver, args.cycles)
                progress("measuring monitoring overhead (30 s, idle service)")
                result["overhead"] = overhead(cfg, receiver)
                # One question to Prometheus per decision (docs/contract.md, "Confirmation
                # with Prometheus"): what it cost in this run.
                asked = receiver.metric("swarmguard_confirmation_duration_seconds_count")
                result["confirmation"] = {
                    "queries": asked,
                    "mean_ms": 1000 * receiver.metric("swarmguard_confirmation_duration_seconds_sum")
                    / asked if asked else None,
                    "unconfirmed": receiver.metric("swarmguard_alerts_skipped_total",
                                                   reason="unconfirmed"),
                    "prometheus_unreachable": receiver.metric("swarmguard_alerts_skipped_total",
                                                              reason="prometheus_unreachable")}
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
    c = result["confirmation"]
    print(f"\nconfirmation with Prometheus: {c['queries']:.0f} queries, mean "
          f"{c['mean_ms'] or 0:.1f} ms; skipped unconfirmed {c['unconfirmed']:.0f}, "
          f"prometheus_unreachable {c['prometheus_unreachable']:.0f}")
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
