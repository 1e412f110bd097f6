"""make bench-detection: how long from a task getting hot to the webhook arriving.

Ten trials on the lab. In each, the stress app's only task starts burning CPU (little
network: Scenario 1) and we time each stage of the chain as seen from outside:
  stress start -> the recording rule swarmguard:task_cpu:percent first above the threshold
  (the exporter's scrape + rule evaluation) -> ALERTS pending -> ALERTS firing
  (the `for:` window) -> webhook received (Prometheus -> Alertmanager -> HTTP).
Prometheus is polled every 100 ms, so stage boundaries carry up to ~0.1 s of polling
error; the end-to-end figure (stress start -> webhook) does not.
Also measured: the exporter's own CPU time per scrape. Prints a table, writes
artifacts/bench-detection.json and artifacts/bench-detection.png.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import requests
import yaml

from tests.bench.common import ARTIFACTS, command_line, cpu_seconds, lab_up, progress, pyplot, save_figure, summarise, table, write_json
from tests.lab.infra import services
from tests.lab.config import PROJECT_ROOT, LabConfig
from tests.lab.instruments.prometheus import query, query_detection
from tests.lab.infra.services import stress
from tests.lab.infra.system import read_pid, wait_for
from tests.lab.infra.webhook_sink import WebhookSink

SERVICE = "bench-detect"
ALERT = "SwarmGuardMigrate"


class StageWatcher:
    """Polls Prometheus every 100 ms and notes when each stage was first seen."""

    def __init__(self, cfg: LabConfig):
        self.cfg, self.seen, self._stop = cfg, {}, threading.Event()
        self.probes = {
            "rule_above": f'swarmguard:task_cpu:percent{{service="{SERVICE}"}} > on() group_left() swarmguard:threshold:cpu_percent',
            "pending": f'ALERTS{{alertname="{ALERT}",service="{SERVICE}"}}',
            "firing": f'ALERTS{{alertname="{ALERT}",service="{SERVICE}",alertstate="firing"}}',
        }

    def _run(self):
        while not self._stop.is_set():
            for stage, promql in self.probes.items():
                # Where detection happens: the central copy is a federation, up to 2 s late.
                if stage not in self.seen and query_detection(self.cfg, promql):
                    self.seen[stage] = time.time()
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def quiet(cfg: LabConfig) -> bool:
    return not query(cfg, f'ALERTS{{service="{SERVICE}"}}') and all(
        float(r["value"][1]) < 20 for r in query(cfg, f'swarmguard:task_cpu:percent{{service="{SERVICE}"}}'))


def trial(cfg: LabConfig, sink: WebhookSink) -> dict:
    wait_for("the service to be quiet", lambda: quiet(cfg), timeout=90, interval=0.5)
    services.wait_settled(cfg, SERVICE)  # the rules ignore a task's start-up heat
    with StageWatcher(cfg) as watcher:
        started = time.time()
        stress(cfg, "cpu", target=100, duration=40)
        found = sink.wait(ALERT, SERVICE, since=started, timeout=40)
        time.sleep(0.5)  # let the watcher see the firing state it may have just missed
    stress(cfg, "stop")
    if not found:
        return {"detected": False}
    received = found[0].received
    stages = {k: v - started for k, v in watcher.seen.items()}
    # Wait for the resolved notification, so the next trial starts with no alert group.
    sink.wait(ALERT, SERVICE, status="resolved", since=received, timeout=60)
    return {"detected": True, "webhook": received - started, **{f"{k}_at": v for k, v in stages.items()}}


def exporter_cpu_per_scrape(cfg: LabConfig, scrapes: int = 200) -> dict:
    node = cfg.workers[0]
    pid = read_pid(cfg.run_dir / f"exporter-{node.name}.pid")
    before, t0 = cpu_seconds(pid), time.monotonic()
    for _ in range(scrapes):
        requests.get(f"http://{node.ip}:9101/metrics", timeout=5).raise_for_status()
    used, wall = cpu_seconds(pid) - before, time.monotonic() - t0
    return {"scrapes": scrapes, "cpu_ms_per_scrape": 1000 * used / scrapes, "wall_ms_per_scrape": 1000 * wall / scrapes}


def chain_settings(cfg: LabConfig) -> dict:
    """The settings of every link of the chain, read from what the lab actually runs."""
    # The detection Prometheus of the node the benchmark's task runs on (all alike).
    prom = yaml.safe_load((cfg.state_dir / f"prometheus-{cfg.workers[0].name}" / "prometheus.yml"
                           ).read_text())["global"]
    am = yaml.safe_load((cfg.state_dir / "alertmanager" / "alertmanager.yml").read_text())
    route = next(r for r in am["route"]["routes"] if r.get("receiver") == "swarmguard")
    rules = yaml.safe_load((PROJECT_ROOT / "prometheus" / "rules" / "swarmguard.yml").read_text())
    fors = {r["alert"]: r.get("for") for g in rules["groups"] for r in g["rules"] if "alert" in r}
    groups = {g["name"]: g.get("interval", prom.get("evaluation_interval")) for g in rules["groups"]}
    return {"scrape_interval": prom.get("scrape_interval"),
            "rule_group_intervals": groups, "alert_for": fors,
            "alertmanager_group_wait": route.get("group_wait"), "alertmanager_group_interval": route.get("group_interval")}


def plot(results: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colours = {"rule above threshold": "#8fb3d9", "alert pending": "#f2c14e", "alert firing": "#f08a4b",
               "webhook received": "#c0392b"}
    keys = [("rule above threshold", "rule_above_at"), ("alert pending", "pending_at"),
            ("alert firing", "firing_at"), ("webhook received", "webhook")]
    for i, r in enumerate(results, start=1):
        for label, key in keys:
            if r.get(key) is not None:
                ax.scatter(r[key], i, color=colours[label], s=60, label=label if i == 1 else None, zorder=3)
        ax.hlines(i, 0, r.get("webhook", 0), color="#bbbbbb", zorder=1)
    ax.axvline(4.0, color="#555555", linestyle="--", linewidth=1, label="goal: median 4 s")
    ax.set_xlabel("seconds since the stress started")
    ax.set_ylabel("trial")
    ax.set_yticks(range(1, len(results) + 1))
    ax.set_title("SwarmGuard detection latency, stage by stage (lab)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)
    cfg = lab_up()
    progress(f"deploying {SERVICE} (stress app, 1 task, 0.5 CPU limit)")
    services.deploy_stress(cfg, SERVICE)
    results = []
    try:
        with WebhookSink(cfg.receiver_port) as sink:
            for n in range(1, args.trials + 1):
                r = trial(cfg, sink)
                results.append(r)
                progress(f"trial {n}/{args.trials}: " + (f"webhook after {r['webhook']:.2f} s" if r["detected"] else "NOT detected"))
        exporter = exporter_cpu_per_scrape(cfg)
    finally:
        services.remove_service(cfg, SERVICE)
    detected = [r for r in results if r["detected"]]
    stages = {k: summarise([r[k] for r in detected if r.get(k) is not None])
              for k in ("rule_above_at", "pending_at", "firing_at", "webhook")}
    rows = [[name, s["n"], s["p50"], s["p95"], s["min"], s["max"]] for name, s in
            (("recording rule above threshold", stages["rule_above_at"]), ("ALERTS pending", stages["pending_at"]),
             ("ALERTS firing (after for:)", stages["firing_at"]), ("webhook received", stages["webhook"]))]
    print("\nDetection latency, seconds since the stress started (Scenario 1, CPU burn, low network)")
    print(table(["stage", "n", "p50", "p95", "min", "max"], rows))
    print(f"\nmissed: {len(results) - len(detected)} of {len(results)}")
    print(f"exporter: {exporter['cpu_ms_per_scrape']:.2f} ms CPU per scrape "
          f"({exporter['wall_ms_per_scrape']:.2f} ms wall), over {exporter['scrapes']} scrapes")
    settings = chain_settings(cfg)
    json_path = write_json("bench-detection", {"trials": results, "stages": stages, "missed": len(results) - len(detected),
                                                "exporter": exporter, "settings": settings})
    png_path = ARTIFACTS / "bench-detection.png"
    plot(detected, png_path)
    print("chain settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(f"\nwrote {json_path} and {png_path}")
    return 0 if detected else 1


if __name__ == "__main__":
    raise SystemExit(main())
