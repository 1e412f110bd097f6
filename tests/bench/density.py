"""make bench-density: what SwarmGuard's monitoring costs as a node fills with containers.

One worker (worker-1) gets idle swarm tasks in steps (default 0, 25, 50, 100, 200): a
sleeping busybox container started from the image's ID, so no pull is attempted. Four of
them belong to an opted-in service (as on a real node, a few opted-in tasks among many);
the rest to a service that is not opted in. Beside them runs the opted-in stress service
that the migrations move. At each step, after the node has settled:

- CPU (% of one core) of each node's cAdvisor and exporter, and of Prometheus, over a
  fixed window, from /proc;
- per scrape job on worker-1: samples per scrape, scrape duration (mean and p99 over the
  window, from Prometheus' own `scrape_duration_seconds`), and the bytes a scrape puts on
  the wire (fetched the way Prometheus fetches it, gzip accepted) times scrapes per second;
- the detection rule group's evaluation time;
- detection p50 and MTTR p50 of Scenario 1 migrations (--trials per step), as `make bench`
  measures them.

A least-squares line through each component's cost against containers on the node gives
the cost per extra container as one number. Prints a table, writes
artifacts/bench-density.json and artifacts/bench-density.png.
"""
from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import docker
import requests
from docker.types import ServiceMode

from tests.bench import end_to_end
from tests.bench.common import ARTIFACTS, command_line, cpu_seconds, lab_up, progress, pyplot, save_figure, summarise, table, write_json
from tests.lab.infra import services
from tests.lab.config import LabConfig
from tests.lab.infra.images import BUSYBOX, image_ids
from tests.lab.instruments.prometheus import query
from tests.lab.infra.nodes import client
from tests.lab.instruments.probe import Probe
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.system import read_pid, wait_for

DENSE_NODE = "worker-1"
IDLE_SERVICE = "density-idle"
IDLE_OPTED_IN_SERVICE = "density-idle-optin"
OPTED_IN_IDLE_TASKS = 4
STEPS = (0, 25, 50, 100, 200)


# ---------------------------------------------------------------- the idle tasks

def _idle_service(cfg: LabConfig, name: str, replicas: int, opt_in: bool) -> None:
    """Create or rescale a service of sleeping containers pinned to the dense node."""
    c = client(cfg, cfg.manager)
    try:
        service = c.services.get(name)
    except docker.errors.NotFound:
        if replicas == 0:
            return
        labels = {"swarmguard.enable": "true" if opt_in else "false"}
        if opt_in:  # idle on purpose: the receiver must not scale it down under the bench
            labels["swarmguard.replicas.min"] = str(replicas)
        c.services.create(image_ids(cfg)[BUSYBOX], name=name, command=["sleep", "86400"], labels=labels,
                          constraints=[f"node.hostname=={DENSE_NODE}"],
                          mode=ServiceMode("replicated", replicas=replicas), stop_grace_period=1)
        return
    service.scale(replicas)


def idle_containers(cfg: LabConfig) -> int:
    node = client(cfg, cfg.node(DENSE_NODE))
    return sum(len(node.containers.list(filters={"label": f"com.docker.swarm.service.name={name}"}))
               for name in (IDLE_SERVICE, IDLE_OPTED_IN_SERVICE))


def set_idle_tasks(cfg: LabConfig, n: int) -> None:
    opted_in = min(OPTED_IN_IDLE_TASKS, n)
    _idle_service(cfg, IDLE_OPTED_IN_SERVICE, opted_in, opt_in=True)
    _idle_service(cfg, IDLE_SERVICE, n - opted_in, opt_in=False)
    wait_for(f"{n} idle tasks on {DENSE_NODE}", lambda: idle_containers(cfg) == n, timeout=60 + 3 * n, interval=1)


def remove_idle(cfg: LabConfig) -> None:
    for name in (IDLE_SERVICE, IDLE_OPTED_IN_SERVICE):
        services.remove_service(cfg, name)


# ---------------------------------------------------------------- measuring one step

def monitoring_pids(cfg: LabConfig) -> dict[str, int]:
    pids = {"prometheus": read_pid(cfg.run_dir / "prometheus.pid")}
    for node in cfg.nodes:
        pids[f"cadvisor@{node.name}"] = read_pid(cfg.run_dir / f"cadvisor-{node.name}.pid")
        pids[f"exporter@{node.name}"] = read_pid(cfg.run_dir / f"exporter-{node.name}.pid")
    return {k: v for k, v in pids.items() if v}


def scrape_jobs(cfg: LabConfig) -> dict[str, dict]:
    """Every scrape job with a target on the dense node: its URL and scrape interval."""
    r = requests.get(f"{cfg.prometheus_url}/api/v1/targets", params={"state": "active"}, timeout=10)
    r.raise_for_status()
    jobs = {}
    for t in r.json()["data"]["activeTargets"]:
        if t["labels"].get("node") == DENSE_NODE or t["labels"].get("instance") == DENSE_NODE:
            jobs[t["labels"]["job"]] = {"url": t["scrapeUrl"], "interval_s": _seconds(t.get("scrapeInterval", "1s"))}
    return jobs


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60}
    for unit in ("ms", "s", "m"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def wire_bytes(url: str) -> tuple[int, int]:
    """(bytes on the wire, bytes uncompressed) of one scrape, asked as Prometheus asks."""
    r = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    raw = r.raw.read()
    r.close()
    if r.headers.get("Content-Encoding") == "gzip":
        return len(raw), len(gzip.decompress(raw))
    return len(raw), len(raw)


def _scalar(cfg: LabConfig, promql: str) -> float | None:
    rows = query(cfg, promql)
    return float(rows[0]["value"][1]) if rows else None


def measure_cost(cfg: LabConfig, window: int) -> dict:
    pids = monitoring_pids(cfg)
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    cpu = {k: 100 * (cpu_seconds(p) - before[k]) / elapsed for k, p in pids.items()}
    w = f"{window}s"
    jobs = {}
    for job, target in scrape_jobs(cfg).items():
        sel = f'{{job="{job}",node="{DENSE_NODE}"}}'
        wire, raw = wire_bytes(target["url"])
        per_second = 1 / target["interval_s"]
        jobs[job] = {
            "interval_s": target["interval_s"],
            "samples_per_scrape": _scalar(cfg, f"max(scrape_samples_scraped{sel})"),
            "scrape_mean_ms": 1000 * (_scalar(cfg, f"avg(avg_over_time(scrape_duration_seconds{sel}[{w}]))") or 0),
            "scrape_p99_ms": 1000 * (_scalar(cfg, f"max(quantile_over_time(0.99, scrape_duration_seconds{sel}[{w}]))") or 0),
            "wire_bytes_per_scrape": wire, "raw_bytes_per_scrape": raw,
            "wire_bits_per_second": 8 * wire * per_second,
            "samples_per_second": (_scalar(cfg, f"max(scrape_samples_scraped{sel})") or 0) * per_second,
        }
    groups = {}
    for row in query(cfg, f'avg_over_time(prometheus_rule_group_last_duration_seconds{{rule_group=~".*swarmguard.*"}}[{w}])'):
        groups[row["metric"]["rule_group"].rsplit(";", 1)[-1]] = 1000 * float(row["value"][1])
    node_cpu = sum(v for k, v in cpu.items() if k.endswith(f"@{DENSE_NODE}"))
    return {"window_s": window, "cpu_percent": cpu, "dense_node_cpu_percent": node_cpu, "scrape_jobs": jobs,
            "rule_group_ms": groups,
            "dense_node_wire_mbps": sum(j["wire_bits_per_second"] for j in jobs.values()) / 1e6}


# ---------------------------------------------------------------- analysis and report

def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x; (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def fits(steps: list[dict]) -> dict:
    xs = [s["containers"] for s in steps]
    out = {}
    if len(xs) < 2:
        return out
    components = {f"cadvisor@{DENSE_NODE}", f"exporter@{DENSE_NODE}", "prometheus"}
    for comp in sorted(components):
        ys = [s["cost"]["cpu_percent"].get(comp, 0.0) for s in steps]
        a, b = linear_fit(xs, ys)
        out[comp] = {"intercept_percent": a, "percent_per_container": b}
    a, b = linear_fit(xs, [s["cost"]["dense_node_cpu_percent"] for s in steps])
    out["node total"] = {"intercept_percent": a, "percent_per_container": b}
    return out


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    steps = result["steps"]
    xs = [s["containers"] for s in steps]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.8))
    for comp, colour in ((f"cadvisor@{DENSE_NODE}", "#2e86de"), (f"exporter@{DENSE_NODE}", "#27ae60"),
                         ("prometheus", "#8e44ad")):
        ys = [s["cost"]["cpu_percent"].get(comp, 0.0) for s in steps]
        fit = result["fits"].get(comp)
        a.plot(xs, ys, "o", color=colour)
        if fit:
            a.plot(xs, [fit["intercept_percent"] + fit["percent_per_container"] * x for x in xs], "-", color=colour,
                   label=f"{comp}: {fit['percent_per_container']:.3f} %/container")
    a.axhline(5, color="#c0392b", linestyle="--", linewidth=1, label="goal: 5 % per node")
    a.set_xlabel(f"containers on {DENSE_NODE}")
    a.set_ylabel("% of one core")
    a.set_title(f"Monitoring CPU ({result['label']})")
    a.legend(fontsize=7)
    for job in sorted({j for s in steps for j in s["cost"]["scrape_jobs"]}):
        b.plot(xs, [s["cost"]["scrape_jobs"].get(job, {}).get("wire_bits_per_second", 0) / 1e6 for s in steps],
               "o-", label=job)
    b.axhline(1, color="#c0392b", linestyle="--", linewidth=1, label="goal: 1 Mbit/s per node")
    b.set_xlabel(f"containers on {DENSE_NODE}")
    b.set_ylabel("Mbit/s scraped from the node (gzip)")
    b.set_title("Scrape traffic")
    b.legend(fontsize=7)
    det = [s["latency"]["detection"]["p50"] for s in steps]
    mttr = [s["latency"]["mttr"]["p50"] for s in steps]
    c.plot(xs, det, "o-", label="detection p50")
    c.plot(xs, mttr, "s-", label="MTTR p50")
    c.axhline(3, color="#2e86de", linestyle=":", linewidth=1, label="detection goal 3 s")
    c.axhline(5, color="#c0392b", linestyle="--", linewidth=1, label="MTTR goal 5 s")
    c.set_xlabel(f"containers on {DENSE_NODE}")
    c.set_ylabel("seconds")
    c.set_title("Scenario 1 latency")
    c.legend(fontsize=7)
    save_figure(fig, path)


def plot_comparison(results: list[dict], path: Path) -> None:
    """Several runs (e.g. before and after a change) on the same axes."""
    plt = pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.8))
    for result, style in zip(results, ("o--", "s-", "^-.")):
        xs = [s["containers"] for s in result["steps"]]
        fit = result["fits"].get("node total", {})
        a.plot(xs, [s["cost"]["dense_node_cpu_percent"] for s in result["steps"]], style,
               label=f"{result['label']}: {fit.get('percent_per_container', 0):.3f} %/container")
        b.plot(xs, [s["cost"]["dense_node_wire_mbps"] for s in result["steps"]], style, label=result["label"])
        c.plot(xs, [s["latency"]["detection"]["p50"] for s in result["steps"]], style,
               label=f"{result['label']}: detection p50")
        c.plot(xs, [s["latency"]["mttr"]["p50"] for s in result["steps"]], style, alpha=0.5,
               label=f"{result['label']}: MTTR p50")
    a.axhline(5, color="#c0392b", linestyle=":", linewidth=1, label="goal 5 %")
    b.axhline(1, color="#c0392b", linestyle=":", linewidth=1, label="goal 1 Mbit/s")
    c.axhline(3, color="#2e86de", linestyle=":", linewidth=1, label="detection goal 3 s")
    c.axhline(5, color="#c0392b", linestyle=":", linewidth=1, label="MTTR goal 5 s")
    for ax, title, ylabel in ((a, "SwarmGuard's CPU on the node (cAdvisor + exporter)", "% of one core"),
                              (b, "Scraped from the node (gzip)", "Mbit/s"),
                              (c, "Scenario 1 (missing points: no migration in 60 s)", "seconds")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"containers on {DENSE_NODE}")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def report(result: dict) -> None:
    rows = []
    for s in result["steps"]:
        cost, lat = s["cost"], s["latency"]
        jobs = cost["scrape_jobs"]
        rows.append([s["containers"], cost["cpu_percent"].get(f"cadvisor@{DENSE_NODE}"),
                     cost["cpu_percent"].get(f"exporter@{DENSE_NODE}"), cost["dense_node_cpu_percent"],
                     cost["cpu_percent"].get("prometheus"), cost["dense_node_wire_mbps"],
                     max((j["scrape_p99_ms"] for j in jobs.values()), default=None),
                     sum((j["samples_per_second"] for j in jobs.values())),
                     cost["rule_group_ms"].get("swarmguard-detection"),
                     lat["detection"]["p50"], lat["mttr"]["p50"], lat.get("missed", 0), lat["failed_requests"]])
    print(f"\nSwarmGuard monitoring density ({result['label']}), containers on {DENSE_NODE}")
    print(table(["containers", "cAdvisor %", "exporter %", "node %", "Prometheus %", "Mbit/s", "scrape p99 ms",
                 "samples/s", "detect group ms", "detect p50 s", "MTTR p50 s", "missed", "failed req"], rows))
    print("\nper scrape job on the dense node (last step):")
    last = result["steps"][-1]["cost"]["scrape_jobs"]
    print(table(["job", "interval s", "samples", "mean ms", "p99 ms", "wire kB", "raw kB"], [
        [job, j["interval_s"], j["samples_per_scrape"], j["scrape_mean_ms"], j["scrape_p99_ms"],
         j["wire_bytes_per_scrape"] / 1000, j["raw_bytes_per_scrape"] / 1000] for job, j in sorted(last.items())]))
    print("\ncost per extra container (least squares over the steps):")
    for comp, fit in result["fits"].items():
        print(f"  {comp}: {fit['percent_per_container']:.4f} % of a core per container "
              f"(intercept {fit['intercept_percent']:.2f} %)")


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="idle tasks per step, comma-separated")
    parser.add_argument("--trials", type=int, default=5, help="Scenario 1 migrations per step")
    parser.add_argument("--window", type=int, default=30, help="seconds over which cost is measured")
    parser.add_argument("--label", default="current design", help="names this run in the report")
    parser.add_argument("--name", default="bench-density", help="artifact name (JSON and PNG)")
    parser.add_argument("--compare", nargs="+", metavar="JSON",
                        help="draw earlier runs' JSON files on the same axes (no lab needed) and stop")
    args = parser.parse_args(argv)
    if args.compare:
        results = [json.loads(Path(p).read_text()) for p in args.compare]
        for result in results:
            report(result)
        png = ARTIFACTS / f"{args.name}-comparison.png"
        plot_comparison(results, png)
        print(f"\nwrote {png}")
        return 0
    steps = [int(s) for s in args.steps.split(",")]
    cfg = lab_up()
    services.remove_service(cfg, "web")  # the demo service holds the entry point's port
    progress(f"deploying {end_to_end.SERVICE} (the opted-in stress service the migrations move)")
    services.deploy_stress(cfg, end_to_end.SERVICE, labels={"swarmguard.replicas.max": "2"})
    result: dict = {"label": args.label, "dense_node": DENSE_NODE, "steps": []}
    try:
        with ReceiverProcess(cfg, cooldown_migrate=5) as receiver:
            for n in steps:
                progress(f"step {n}: {n} idle tasks on {DENSE_NODE}")
                set_idle_tasks(cfg, n)
                wait_for("every scrape target up", lambda: not query(cfg, "up == 0"), timeout=60)
                time.sleep(10)  # let the new containers' first samples and rule evaluations pass
                progress(f"step {n}: measuring cost over {args.window} s")
                cost = measure_cost(cfg, args.window)
                progress(f"step {n}: {cost['dense_node_cpu_percent']:.1f} % of a core on {DENSE_NODE}, "
                         f"{cost['dense_node_wire_mbps']:.2f} Mbit/s scraped; {args.trials} migrations")
                probe_started = time.time()
                with Probe(cfg.entrypoint_url + "/health", rate=20, max_seconds=1800) as probe:
                    trials = end_to_end.migrations(cfg, receiver, args.trials)
                probed = probe.stop()
                containers = len(client(cfg, cfg.node(DENSE_NODE)).containers.list())
                result["steps"].append({
                    "idle_tasks": n, "containers": containers, "cost": cost, "trials": trials,
                    "latency": {"detection": summarise([t["detection_s"] for t in trials if t["detection_s"]]),
                                "mttr": summarise([t["mttr_s"] for t in trials if t["mttr_s"] is not None]),
                                "missed": sum(1 for t in trials if t.get("missed")),
                                "failed_requests": probed.failed, "requests": probed.total,
                                "probe_started_at": probe_started}})
                end_to_end.stop_everywhere(cfg)
                write_json(args.name, result)  # partial results survive a crash later on
    finally:
        end_to_end.stop_everywhere(cfg)
        remove_idle(cfg)
        services.remove_service(cfg, end_to_end.SERVICE)
    result["fits"] = fits(result["steps"])
    report(result)
    path = write_json(args.name, result)
    png = ARTIFACTS / f"{args.name}.png"
    plot(result, png)
    print(f"\nwrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
