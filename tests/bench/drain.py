"""make bench-drain: what taking a node out for maintenance costs the services on it,
Swarm's own drain against `swarmguard drain`, on the lab; one run.

Four single-replica, health-checked, opted-in stress services run on worker-1, each on
its own published port behind its own entry point (LabConfig.entry_points); one of them
starts slowly (STRESS_STARTUP_DELAY_SECONDS=8, with a health check start period that
allows for it). A probe per service (20 requests/s through its entry point) runs through
each step:
  (a) `docker node update --availability drain worker-1`: Swarm stops each task and
      starts its replacement on worker-2; timed until every service runs healthy there.
  The services are put back on worker-1 (not measured).
  (b) `swarmguard drain worker-1` with the receiver running (it moves each task
      start-first, then drains the node); timed from the command's start to its exit.
  (c) `swarmguard undrain worker-1`, then `swarmguard rebalance`: what the moves back
      cost, and the running tasks per worker before and after the rebalance.
Per service and step: requests, failed requests, the longest gap without a successful
answer. Prints a table, writes artifacts/bench-drain.json and artifacts/bench-drain.png.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import requests

from tests.bench.common import command_line, lab_up, progress, publish, table
from tests.lab.config import LabConfig
from tests.lab.infra import cli, controller, services
from tests.lab.infra.nodes import client
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.system import LabError, wait_for
from tests.lab.instruments.probe import Probe, ProbeResult

NODE, OTHER = "worker-1", "worker-2"  # the node taken out, the one that takes its work
SERVICES = ("drain-a", "drain-b", "drain-c", "drain-d")  # on the entry points, in order
SLOW = "drain-d"
SLOW_START_S = 8.0
RATE = 20.0  # requests/s per probe
SETTLE_S = 3.0  # probing before each step's action and after its end
MOVE_TIMEOUT_S = 120.0
COMMAND_TIMEOUT_S = 600.0
# Steps in the order they run: key in the results, title in the picture, table heading.
STEPS = (("plain", "Swarm's drain", "Swarm drain"), ("swarmguard", "swarmguard drain", "swarmguard drain"),
         ("rebalance", "swarmguard undrain + rebalance", "undrain+rebalance"))


def receiver_port(cfg: LabConfig) -> int:
    # Not the port the lab's Alertmanager delivers to: no alert moves a service mid-step.
    return cfg.receiver_port + 2


# -- the lab: services, where they run, the swarmguard command -----------------------------

def service_ports(cfg: LabConfig) -> dict[str, int]:
    """Service -> its published port: one service per entry point."""
    ports = [entry.published_port for entry in cfg.entry_points]
    if len(ports) < len(SERVICES):
        raise LabError(f"the drain benchmark needs {len(SERVICES)} entry points, the lab has {len(ports)}")
    return dict(zip(SERVICES, ports))


def clean_slate(cfg: LabConfig) -> None:
    """No other service (a drain moves every task on its node, a rebalance any task), every
    worker active."""
    controller.remove_services(cfg)
    for worker in cfg.workers:
        services.set_availability(cfg, worker.name, "active")


def deploy(cfg: LabConfig, ports: dict[str, int]) -> None:
    """Every service on NODE: OTHER paused while they are created (a paused node keeps its
    tasks and takes no new one)."""
    services.set_availability(cfg, OTHER, "pause")
    try:
        for name, port in ports.items():
            slow = name == SLOW
            progress(f"deploying {name} on {NODE}: stress app, published port {port}, entry point "
                     f"{cfg.entry_url(port)}" + (f", {SLOW_START_S:g} s to start" if slow else ""))
            # The slow starter's checks fail until its port opens: a start period beyond its
            # start-up (failures within it do not count) and a retry to spare after it.
            services.deploy_stress(
                cfg, name, published_port=port,
                env=(f"STRESS_STARTUP_DELAY_SECONDS={SLOW_START_S:g}",) if slow else (),
                health_start_period_s=SLOW_START_S + 20 if slow else 1.0,
                health_retries=3 if slow else 2)
    finally:
        services.set_availability(cfg, OTHER, "active")
    wait_for(f"every service running healthy only on {NODE}", lambda: all_off(cfg, OTHER),
             timeout=MOVE_TIMEOUT_S)


def all_off(cfg: LabConfig, node: str) -> bool:
    """Every service runs healthy elsewhere than `node`, and nothing of them is left to run
    there."""
    return all(services.moved_off(cfg, name, node) for name in SERVICES)


def wait_quiet(cfg: LabConfig) -> None:
    """No update under way and no old container left: a stopping container holds its
    host-mode port on its node until its stop grace period ends."""
    for name in SERVICES:
        wait_for(f"{name}: no update under way", lambda: (services.inspect(cfg, name).get("UpdateStatus") or {})
                 .get("State") not in ("updating", "rollback_started"), timeout=MOVE_TIMEOUT_S)
        wait_for(f"{name}: old containers gone", lambda: len(services.containers(cfg, name)) == 1, timeout=60)


def wait_serving_from(cfg: LabConfig, urls: dict[str, str], node: str) -> None:
    """Quiet (wait_quiet), and each entry point answers from its service's task on `node`:
    HAProxy has it up."""
    wait_quiet(cfg)

    def answers(url: str) -> bool:
        r = requests.get(url + "/health", timeout=1)
        return r.status_code == 200 and r.headers.get("X-Swarm-Node") == node
    for name, url in urls.items():
        wait_for(f"{name} answering from {node} at {url}", lambda: answers(url), timeout=30)


def _force(spec: dict) -> None:
    spec["TaskTemplate"]["ForceUpdate"] = spec["TaskTemplate"].get("ForceUpdate", 0) + 1


def put_back(cfg: LabConfig, urls: dict[str, str]) -> None:
    """Every service back on NODE, not measured: NODE active, OTHER paused, and a forced
    update of each (start-first: the new task starts on NODE, then the old one stops)."""
    progress(f"putting the services back on {NODE}")
    wait_quiet(cfg)
    services.set_availability(cfg, NODE, "active")
    services.set_availability(cfg, OTHER, "pause")
    try:
        for name in SERVICES:
            services.update_service(cfg, name, _force)
        wait_for(f"every service running healthy only on {NODE}", lambda: all_off(cfg, OTHER),
                 timeout=MOVE_TIMEOUT_S)
    finally:
        services.set_availability(cfg, OTHER, "active")
    wait_serving_from(cfg, urls, NODE)


def tasks_per_worker(cfg: LabConfig) -> dict[str, int]:
    api = client(cfg, cfg.manager).api
    names = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}
    ids = {services.inspect(cfg, name)["ID"] for name in SERVICES}
    return count_running(api.tasks(filters={"desired-state": "running"}), names,
                         [w.name for w in cfg.workers], ids)


def swarmguard(cfg: LabConfig, receiver: ReceiverProcess, *args: str) -> dict:
    """Run `swarmguard ARGS` against the receiver as the lab tests do (tests/lab/infra/cli.py:
    the installed command, its output streamed as progress); its exit code (None: stopped
    after COMMAND_TIMEOUT_S), seconds and output."""
    run = cli.swarmguard(cfg, receiver.url, *args, timeout=COMMAND_TIMEOUT_S)
    progress(f"swarmguard {args[0]} exited {run.exit_code} after {run.seconds:.1f} s")
    return {"args": list(run.args), "exit_code": run.exit_code, "seconds": round(run.seconds, 3),
            "output": list(run.output)}


class Probes:
    """A probe per service through its entry point, on one clock: seconds since the step
    began (each probe's own times are shifted by when it started). It probes SETTLE_S
    before the block goes on and SETTLE_S more at stop(), so each step's picture shows
    the calm on both sides of its action."""

    def __init__(self, urls: dict[str, str]):
        self.urls = urls
        self.probes: dict[str, Probe] = {}
        self.offsets: dict[str, float] = {}

    def __enter__(self) -> "Probes":
        self.t0 = time.monotonic()
        for name, url in self.urls.items():
            self.offsets[name] = self.now()
            self.probes[name] = Probe(url + "/health", rate=RATE, max_seconds=900).start()
        time.sleep(SETTLE_S)
        return self

    def now(self) -> float:
        return time.monotonic() - self.t0

    def stop(self) -> dict[str, dict]:
        time.sleep(SETTLE_S)
        return {name: probe_summary(probe.stop(), self.offsets[name]) for name, probe in self.probes.items()}

    def __exit__(self, *exc) -> None:
        for probe in self.probes.values():
            probe.stop()  # again after stop(): harmless


# -- the three steps -------------------------------------------------------------------------

def plain_drain(cfg: LabConfig, urls: dict[str, str]) -> dict:
    wait_serving_from(cfg, urls, NODE)
    progress(f"(a) Swarm's drain: docker node update --availability drain {NODE}")
    with Probes(urls) as probes:
        started = probes.now()
        services.set_availability(cfg, NODE, "drain")
        wait_for(f"every service running healthy only on {OTHER}", lambda: all_off(cfg, NODE),
                 timeout=MOVE_TIMEOUT_S, interval=0.1)
        empty = probes.now()
        progress(f"{NODE} empty {empty - started:.1f} s after the drain")
        probed = probes.stop()
    return {"empty_s": round(empty - started, 3), "services": probed,
            "marks": [[round(started, 3), "drain"], [round(empty, 3), f"{NODE} empty"]]}


def swarmguard_drain(cfg: LabConfig, urls: dict[str, str], receiver: ReceiverProcess) -> dict:
    wait_serving_from(cfg, urls, NODE)
    progress(f"(b) swarmguard drain {NODE}")
    with Probes(urls) as probes:
        started = probes.now()
        command = swarmguard(cfg, receiver, "drain", NODE)
        ended = probes.now()
        off = all_off(cfg, NODE)
        probed = probes.stop()
    done = command["exit_code"] == 0
    return {"empty_s": round(ended - started, 3) if done else None, "off_at_exit": off, "command": command,
            "marks": [[round(started, 3), "swarmguard drain"],
                      [round(ended, 3), "exited" if done else f"exit {command['exit_code']}"]],
            "services": probed}


def undrain_and_rebalance(cfg: LabConfig, urls: dict[str, str], receiver: ReceiverProcess) -> dict:
    wait_quiet(cfg)
    progress(f"(c) swarmguard undrain {NODE}, then swarmguard rebalance")
    with Probes(urls) as probes:
        undrain_at = probes.now()
        undrain = swarmguard(cfg, receiver, "undrain", NODE)
        before = tasks_per_worker(cfg)
        rebalance_at = probes.now()
        rebalance = swarmguard(cfg, receiver, "rebalance")
        ended = probes.now()
        wait_quiet(cfg)
        after = tasks_per_worker(cfg)
        progress(f"running tasks per worker: before the rebalance {before}, after {after}")
        probed = probes.stop()
    return {"undrain": undrain, "rebalance": rebalance, "tasks_before": before, "tasks_after": after,
            "marks": [[round(undrain_at, 3), "undrain"], [round(rebalance_at, 3), "rebalance"],
                      [round(ended, 3), "exited"]],
            "services": probed}


def run_steps(cfg: LabConfig, data: dict) -> None:
    """Setup and the three steps; each step's result goes into `data` as it ends, so a
    failure later leaves the earlier ones to report."""
    clean_slate(cfg)
    deploy(cfg, {name: s["published_port"] for name, s in data["services"].items()})
    urls = {name: services.entry_url(cfg, name) for name in SERVICES}
    data["plain"] = plain_drain(cfg, urls)
    put_back(cfg, urls)
    with ReceiverProcess(cfg, port=receiver_port(cfg)) as receiver:
        data["swarmguard"] = swarmguard_drain(cfg, urls, receiver)
        data["rebalance"] = undrain_and_rebalance(cfg, urls, receiver)


def clean_up(cfg: LabConfig) -> None:
    try:
        for name in SERVICES:
            services.remove_service(cfg, name)
    finally:
        for worker in cfg.workers:
            services.set_availability(cfg, worker.name, "active")


# -- pure: what the probes and the tasks say, the table ----------------------------------------

def probe_summary(result: ProbeResult, offset: float) -> dict:
    """One probe's run for the JSON: counts, the longest gap, and when each answer came
    (by the node that gave it) or each failure happened, in the step's seconds."""
    answers: dict[str, list[float]] = {}
    failures: list[list] = []
    for s in result.samples:
        at = round(offset + s.at, 3)
        if s.ok:
            answers.setdefault(s.node or "?", []).append(at)
        else:
            failures.append([at, str(s.status) if s.status is not None else s.error])
    return {"requests": result.total, "failed": result.failed, "longest_gap_s": round(result.longest_gap, 3),
            "answers": answers, "failures": failures}


def count_running(tasks: Iterable[dict], node_names: dict[str, str], workers: list[str],
                  service_ids: set[str]) -> dict[str, int]:
    """Running tasks of the given services per worker (tasks meant to run and running)."""
    counts = dict.fromkeys(workers, 0)
    for t in tasks:
        node = node_names.get(t.get("NodeID", ""))
        if (t.get("ServiceID") in service_ids and node in counts and t.get("DesiredState") == "running"
                and (t.get("Status") or {}).get("State") == "running"):
            counts[node] += 1
    return counts


def _cell(data: dict, step: str, name: str, key: str):
    return data.get(step, {}).get("services", {}).get(name, {}).get(key)


def rows(data: dict) -> list[list]:
    out = []
    for name, s in data["services"].items():
        start = f"{s['startup_delay_s']:g} s" if s["startup_delay_s"] else "-"
        out.append([name, s["published_port"], start]
                   + [_cell(data, step, name, key) for step, *_ in STEPS for key in ("failed", "longest_gap_s")])
    return out


def _command(result: dict | None) -> str:
    if not result:
        return "not run"
    return f"exit {result['exit_code']} after {result['seconds']:.1f} s"


def report(data: dict) -> str:
    headers = ["service", "port", "start-up"] + [f"{heading}: {what}" for _, _, heading in STEPS
                                                 for what in ("failed", "gap s")]
    lines = [f"Taking {data['node']} out: {len(data['services'])} single-replica services, a probe each "
             f"at {data['rate_per_s']:g} requests/s", table(headers, rows(data)), ""]
    plain, guard, rebalance = (data.get(step) for step, *_ in STEPS)
    lines.append(f"time to empty {data['node']}: Swarm's drain "
                 + (f"{plain['empty_s']:.1f} s" if plain else "not run") + "; swarmguard drain "
                 + (f"{guard['empty_s']:.1f} s (command start to exit 0)" if guard and guard["empty_s"] is not None
                    else _command(guard and guard["command"])))
    if guard and not guard["off_at_exit"]:
        lines.append(f"  (when swarmguard drain exited, some service still ran on {data['node']} or was not healthy)")
    if rebalance:
        lines.append(f"undrain: {_command(rebalance['undrain'])}; rebalance: {_command(rebalance['rebalance'])}")
        lines.append("running tasks per worker: before the rebalance "
                     + ", ".join(f"{k} {v}" for k, v in rebalance["tasks_before"].items())
                     + "; after " + ", ".join(f"{k} {v}" for k, v in rebalance["tasks_after"].items()))
    if data.get("error"):
        lines.append(f"stopped early: {data['error']}")
    return "\n".join(lines)


def finished(data: dict) -> bool:
    """Every step ran and every swarmguard command exited 0."""
    commands = [data.get("swarmguard", {}).get("command"), *(data.get("rebalance", {}).get(k)
                                                            for k in ("undrain", "rebalance"))]
    return "error" not in data and all(c and c["exit_code"] == 0 for c in commands)


# -- the picture ------------------------------------------------------------------------------

NODE_COLOURS = {"worker-1": "#2e86de", "worker-2": "#27ae60"}
STEP_COLOURS = {"plain": "#e67e22", "swarmguard": "#2e86de", "rebalance": "#8e44ad"}


def plot(data: dict, path: Path) -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global state, no backend

    fig = Figure(figsize=(16, 9), dpi=110)
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.1])
    _bars(fig.add_subplot(grid[0, 0]), data, "failed", "failed requests")
    _bars(fig.add_subplot(grid[0, 1]), data, "longest_gap_s", "longest gap without an answer, s")
    _spread(fig.add_subplot(grid[0, 2]), data.get("rebalance"))
    for column, (step, title, _) in enumerate(STEPS):
        ax = fig.add_subplot(grid[1, column])
        if step in data:
            _timeline(ax, data[step], title)
        else:
            ax.set_title(f"{title}: not run", fontsize=10)
            ax.set_axis_off()
    fig.suptitle(f"Taking {data['node']} out for maintenance: Swarm's drain against swarmguard drain", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _bars(ax, data: dict, key: str, label: str) -> None:
    names = list(data["services"])
    steps = [(step, title) for step, title, _ in STEPS if step in data]
    width = 0.8 / max(1, len(steps))
    for i, (step, title) in enumerate(steps):
        values = [_cell(data, step, name, key) or 0 for name in names]
        xs = [n + (i - (len(steps) - 1) / 2) * width for n in range(len(names))]
        ax.bar(xs, values, width, label=title, color=STEP_COLOURS[step])
        for x, v in zip(xs, values):
            ax.text(x, v, f"{v:g}" if key == "failed" else f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    slow = [f"{n}\n({s['startup_delay_s']:g} s start)" if s["startup_delay_s"] else n
            for n, s in data["services"].items()]
    ax.set_xticks(range(len(names)), slow, fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(label[0].upper() + label[1:] + ", per service", fontsize=10)
    ax.legend(fontsize=8)


def _spread(ax, rebalance: dict | None) -> None:
    if not rebalance:
        ax.set_title("Rebalance: not run", fontsize=10)
        ax.set_axis_off()
        return
    workers = list(rebalance["tasks_before"])
    for i, (key, title) in enumerate((("tasks_before", "after undrain"), ("tasks_after", "after rebalance"))):
        xs = [n + (i - 0.5) * 0.4 for n in range(len(workers))]
        ax.bar(xs, [rebalance[key][w] for w in workers], 0.4, label=title,
               color=("#bdc3c7", "#8e44ad")[i])
    ax.set_xticks(range(len(workers)), workers)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("running tasks")
    ax.set_title("Tasks per worker around the rebalance", fontsize=10)
    ax.legend(fontsize=8)


def _timeline(ax, step: dict, title: str) -> None:
    names = list(step["services"])
    seen: set[str] = set()
    for row, name in enumerate(names):
        probed = step["services"][name]
        for node, times in probed["answers"].items():
            ax.plot(times, [row] * len(times), ls="none", marker="|", ms=7, color=NODE_COLOURS.get(node, "#7f8c8d"),
                    label=f"answered by {node}" if node not in seen else None)
            seen.add(node)
        failed = [at for at, _ in probed["failures"]]
        if failed:
            ax.plot(failed, [row] * len(failed), ls="none", marker="x", ms=5, color="#c0392b",
                    label="failed" if "failed" not in seen else None)
            seen.add("failed")
    for at, text in step["marks"]:
        ax.axvline(at, color="#555555", ls="--", lw=1)
        ax.text(at, len(names) - 0.45, f" {text}", fontsize=7, rotation=90, va="top")
    ax.set_yticks(range(len(names)), [f"{n}\n{step['services'][n]['failed']} failed" for n in names], fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("seconds since the probes started")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


# -- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.parse_args(argv)
    cfg = lab_up()
    data: dict = {"flavour": cfg.flavour, "versions": controller.running_versions(cfg), "node": NODE,
                  "rate_per_s": RATE, "services": {
                      name: {"published_port": port, "entry_url": cfg.entry_url(port),
                             "startup_delay_s": SLOW_START_S if name == SLOW else 0.0}
                      for name, port in service_ports(cfg).items()}}
    try:
        run_steps(cfg, data)
    except LabError as exc:
        data["error"] = str(exc)
        progress(f"stopped: {exc}")
    finally:
        progress("removing the services, every worker active")
        clean_up(cfg)
    print("\n" + report(data))
    publish("bench-drain", data, lambda png: plot(data, png))
    return 0 if finished(data) else 1


if __name__ == "__main__":
    raise SystemExit(main())
