"""make bench-scale: what SwarmGuard's Prometheus costs as the cluster grows, in each
layout of its rules, with no lab: real Prometheus 3.5 and Alertmanager 0.33 (the lab's
`current` root filesystem) against a fake cluster on loopback (tests/bench/fake_cluster.py).

    make bench-scale
    python -m tests.bench.scale [--steps 500x20,2000x20,5000x50,10000x50] [--quick]
        [--layouts today,central-opted-in,per-node] [--prometheus-dir DIR] [--today-rev 1ec3063]

Each step (TASKSxNODES) is a fake cluster: every node's exporter publishing its share of
idle tasks, 5 % of all tasks (`--opted-in`) in opted-in services of several replicas spread
over the nodes, the rest in services that are not opted in; the managers also serve
/opted-in; a fake receiver publishes the swarm as Docker reports it. Then, one layout at a
time (LAYOUTS below), its Prometheus instances are started, warmed up (`--warmup`), and
measured over a window (`--window`), each instance on its own:

- CPU in % of one core (utime + stime of all its threads, /proc/<pid>/stat) and RSS;
- samples ingested per second (prometheus_tsdb_head_samples_appended_total);
- each rule group's evaluation time, p50 and max over the window, against its interval
  (prometheus_rule_group_last_duration_seconds, read with the evaluation's timestamp
  every POLL_S, so each evaluation counts once), and its missed evaluations per minute
  (prometheus_rule_group_iterations_missed_total);
- the share of each scrape job's scrapes that succeeded.

Then detection: one opted-in task on the representative node (the last, a worker) gets
hot (its CPU counter rises at its full limit, its network stays low), and the time from
that moment until SwarmGuardMigrate is active in Alertmanager (the shipped
alertmanager.yml, its webhook pointed at a sink here), until the webhook reaches the sink,
and until each Prometheus of the layout shows it firing (the receiver asks every one
before it acts, and any one firing confirms it). The task goes back to idle after.

In the per-node layout one per-node Prometheus is real: the representative node's. Per-node
instances of a real cluster are identical in cost structure (each scrapes one exporter
and the managers' /opted-in and evaluates the same rules over its node's share of tasks),
so its cost is what each extra node costs. The central instance scrapes every node's
/federate: the real one's, and for every other node a copy of it with that node's names
and tasks, so it evaluates a whole cluster's aggregates.

Durations are reported, never asserted. The run fails (exit status 1) when an instance does
not start, or when the alert has not reached Alertmanager within `--alert-deadline`; what
was measured until then is still written. Prints progress and a table, writes
artifacts/bench-scale.json and artifacts/bench-scale.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

from tests.bench.common import command_line, cpu_seconds, progress, publish, pyplot, rss_mb, save_figure, summarise, table, write_json
from tests.bench.fake_cluster import Cluster, FakeCluster, Ports, Shape
from tests.lab.config import DEFAULT, PROJECT_ROOT, LabConfig
from tests.lab.infra import monitoring, rootfs

NAME = "bench-scale"
STEPS = "500x20,2000x20,5000x50,10000x50"
QUICK_STEPS = "200x4"
TODAY_REV = "1ec3063"  # the rules and scrape settings before opt-in and the per-node layout
DETECTION_GROUP = "swarmguard-detection"
ALERT = "SwarmGuardMigrate"
POLL_S = 0.25  # how often each instance's own /metrics is read (its groups run every 0.5 s and 1 s)
BASE_PORT = 19100

# ---------------------------------------------------------------- layouts

# Scrape jobs, by what they scrape in the fake cluster.
EXPORTERS = "exporters"  # every node's exporter /metrics
NODE_EXPORTER = "node-exporter"  # the representative node's exporter only
OPTED_IN = "opted-in"  # the managers' /opted-in
FEDERATION = "federation"  # every node's per-node Prometheus /federate
PEER_FEDERATION = "peer-federation"  # the layout's other (detection) instances' /federate
RECEIVER = "receiver"
ALERTMANAGER = "alertmanager"
SELF = "self"

# Each job's settings come from the source's prometheus*.yml files (the instance's own
# file first), found by job name, or for /opted-in and /federate by metrics path; service
# discovery, relabelling and credentials are taken out and static targets put in, as the
# lab does (tests/lab/infra/monitoring.py), and the file's global interval and timeout
# written into the job. These are used when no file has the job.
FEDERATE_MATCH = ['{__name__=~"swarmguard:(node_|task_(cpu|memory|network):percent$|opt_in).*"}',
                  'up{job="swarmguard-exporter"}', "swarmguard_exporter_docker_up",
                  'ALERTS{alertname=~"SwarmGuard.+"}']
JOB_DEFAULTS = {
    EXPORTERS: {"job_name": "swarmguard-exporter"},
    NODE_EXPORTER: {"job_name": "swarmguard-exporter"},
    OPTED_IN: {"job_name": "swarmguard-opted-in", "metrics_path": "/opted-in", "scrape_interval": "5s",
               "scrape_timeout": "5s"},
    FEDERATION: {"job_name": "swarmguard-detection-prometheus", "metrics_path": "/federate", "honor_labels": True,
                 "scrape_interval": "2s", "scrape_timeout": "2s", "params": {"match[]": FEDERATE_MATCH}},
    RECEIVER: {"job_name": "swarmguard-receiver"},
    ALERTMANAGER: {"job_name": "alertmanager", "scrape_interval": "5s", "scrape_timeout": "5s"},
    SELF: {"job_name": "prometheus", "scrape_interval": "15s", "scrape_timeout": "10s"},
}
JOB_DEFAULTS[PEER_FEDERATION] = JOB_DEFAULTS[FEDERATION]
NOT_STATIC = ("dockerswarm_sd_configs", "dns_sd_configs", "relabel_configs", "basic_auth", "static_configs")
MAIN_CONFIG = "prometheus.yml"
DETECTION_CONFIG = "prometheus-detection.yml"  # a detection (per-node) Prometheus's own file, when there is one

# Rule files of the new layouts (under the source's rules/). An entry may name
# alternatives, the first that exists is loaded: the detection rules are swarmguard.yml
# since f5124fa, swarmguard-detection.yml in the plan.
THRESHOLDS = "swarmguard-thresholds.yml"
DETECTION = ("swarmguard-detection.yml", "swarmguard.yml")
SCALE_DOWN = "swarmguard-scale-down.yml"
HEALTH = "swarmguard-health.yml"


@dataclass(frozen=True)
class Instance:
    name: str
    rule_files: tuple[str | tuple[str, ...], ...]  # () = every rule file of the source
    jobs: tuple[str, ...]
    config: str = MAIN_CONFIG  # the source's file whose global settings and jobs come first
    detects: bool = False  # evaluates the hot task's alert (sends it to Alertmanager)
    central: bool = False  # sees the whole cluster: detection health and the scale-down
    per_node: bool = False  # one of a per-node Prometheus per node: its cost is each extra node's


@dataclass(frozen=True)
class Layout:
    name: str
    source: str  # "today": the rules and prometheus.yml at --today-rev; "new": --prometheus-dir
    instances: tuple[Instance, ...]
    about: str


LAYOUTS = {layout.name: layout for layout in (
    Layout("today", "today", (
        Instance("prometheus", (), (EXPORTERS, RECEIVER, ALERTMANAGER, SELF), detects=True, central=True),),
        "one Prometheus with the rules and scrape settings of the commit before opt-in: every task of "
        "every service judged"),
    Layout("central-opted-in", "new", (
        Instance("prometheus", (), (EXPORTERS, OPTED_IN, RECEIVER, ALERTMANAGER, SELF), detects=True, central=True),),
        "one Prometheus with every new rule file: only tasks of opted-in services judged"),
    Layout("per-node", "new", (
        Instance("node", (THRESHOLDS, DETECTION), (NODE_EXPORTER, OPTED_IN), DETECTION_CONFIG, detects=True,
                 per_node=True),
        Instance("central", (THRESHOLDS, SCALE_DOWN, HEALTH), (FEDERATION, RECEIVER, ALERTMANAGER, SELF),
                 central=True)),
        "a Prometheus per node (one real, the representative node's) scraping its own exporter and the "
        "managers' /opted-in, and a central one fed by every node's /federate"),
    Layout("detection-central", "new", (
        Instance("detection", (THRESHOLDS, DETECTION), (EXPORTERS, OPTED_IN), DETECTION_CONFIG, detects=True),
        Instance("central", (THRESHOLDS, SCALE_DOWN, HEALTH), (PEER_FEDERATION, RECEIVER, ALERTMANAGER, SELF),
                 central=True)),
        "the bundle's default (stack.yml, SWARMGUARD_DETECTION_INSTANCES=1): one detection Prometheus "
        "scraping every exporter, and the central one federating it"),
)}
DEFAULT_LAYOUTS = ("today", "central-opted-in", "per-node")

PER_NODE_NOTE = ("Per-node instances of a real cluster are identical in cost structure: each scrapes its own "
                 "node's exporter and the managers' /opted-in and evaluates the same rules over its node's "
                 "share of tasks. The bench runs one, the representative node's; its cost is what each extra "
                 "node costs. The central instance reads every node's /federate: the real one's, and copies "
                 "of it rewritten to the other nodes' names and tasks. Where the opted-in tasks do not divide "
                 "evenly over the nodes (a step's opted_in_per_node), every copy carries the representative's "
                 "share, and the central one sees a few tasks fewer or more than Docker reports (then "
                 "SwarmGuardBlind tasks_unseen may fire for those nodes).")


# ---------------------------------------------------------------- where rules and settings come from

@dataclass(frozen=True)
class Source:
    where: str
    configs: dict  # file name -> parsed prometheus*.yml
    rules: dict  # rule file name -> text

    def config(self, preferred: str) -> dict:
        return self.configs.get(preferred) or self.configs.get(MAIN_CONFIG) or {}

    def rule_texts(self, entries: tuple[str | tuple[str, ...], ...]) -> dict[str, str]:
        """The named rule files' texts by name (each entry a name, or alternatives of
        which the first that exists); every rule file for ()."""
        if not entries:
            return dict(self.rules)
        out = {}
        for entry in entries:
            names = (entry,) if isinstance(entry, str) else entry
            found = next((n for n in names if n in self.rules), None)
            if found is None:
                raise BenchError(f"{self.where} has no rules/{' or rules/'.join(names)} "
                                 f"(it has {', '.join(sorted(self.rules)) or 'none'})")
            out[found] = self.rules[found]
        return out


class BenchError(RuntimeError):
    pass


def source_at_commit(rev: str, root: Path = PROJECT_ROOT) -> Source:
    def show(path: str) -> str:
        return subprocess.run(["git", "-C", str(root), "show", f"{rev}:{path}"], check=True, capture_output=True,
                              text=True).stdout
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-tree", "--name-only", rev, "prometheus/",
                                 "prometheus/rules/"], check=True, capture_output=True, text=True).stdout.split()
    except subprocess.CalledProcessError as error:
        raise BenchError(f"cannot read commit {rev}: {error.stderr.strip()}") from None
    configs = {Path(p).name: parse_config(show(p)) for p in listed
               if re.fullmatch(r"prometheus/prometheus[^/]*\.yml", p)}
    rules = {Path(p).name: show(p) for p in listed if re.fullmatch(r"prometheus/rules/[^/]+\.yml", p)}
    return Source(f"commit {rev}", configs, rules)


def source_in_dir(directory: Path) -> Source:
    configs = {p.name: parse_config(p.read_text()) for p in sorted(directory.glob("prometheus*.yml"))}
    rules = {p.name: p.read_text() for p in sorted((directory / "rules").glob("*.yml"))}
    return Source(str(directory), configs, rules)


def parse_config(text: str) -> dict:
    """A prometheus*.yml, parsed; a Swarm config template (prometheus-detection.yml)
    rendered as for the first of one instance: its slot and number of instances appear
    only in the relabelling that shares the nodes out, which the bench drops."""
    return yaml.safe_load(monitoring.render_swarm_template(text, slot=1, env=defaultdict(lambda: "1"))) or {}


def job_template(source: Source, kind: str, preferred: str = MAIN_CONFIG) -> dict:
    """The job's settings from the source's files, `preferred` first, then the main one,
    then the others (by job name; /opted-in and /federate by metrics path), with that
    file's global interval and timeout when the job sets none; or JOB_DEFAULTS."""
    default = JOB_DEFAULTS[kind]
    path = default.get("metrics_path")
    names = sorted(source.configs, key=lambda n: (n != preferred, n != MAIN_CONFIG, n))
    for name in names:
        config = source.configs[name]
        for job in config.get("scrape_configs") or []:
            if (job.get("metrics_path") == path) if path else (job["job_name"] == default["job_name"]):
                settings = {k: v for k, v in job.items() if k not in NOT_STATIC}
                for key in ("scrape_interval", "scrape_timeout"):
                    if key not in settings and key in (config.get("global") or {}):
                        settings[key] = config["global"][key]
                return settings
    return dict(default)


# ---------------------------------------------------------------- a Prometheus's configuration

@dataclass(frozen=True)
class Wiring:
    """Where everything listens in one layout's run."""

    ports: Ports
    alertmanager: int
    instances: dict  # instance name -> its port


def targets(kind: str, cluster: Cluster, wiring: Wiring, self_port: int) -> list[dict]:
    """The job's static targets. A node's exporter is `instance` and `node` its hostname,
    as the bundle's relabelling makes it; a node's Prometheus has its `node`."""
    ports = wiring.ports

    def exporters(nodes) -> list[dict]:
        return [{"targets": [ports.address(n.index)], "labels": {"instance": n.name, "node": n.name}} for n in nodes]
    if kind == EXPORTERS:
        return exporters(cluster.nodes)
    if kind == NODE_EXPORTER:
        return exporters([cluster.representative])
    if kind == OPTED_IN:
        return exporters(cluster.managers)
    if kind == FEDERATION:
        return [{"targets": [ports.address(n.index)], "labels": {"node": n.name}} for n in cluster.nodes]
    if kind == PEER_FEDERATION:
        return [{"targets": [f"127.0.0.1:{port}"]} for port in wiring.instances.values() if port != self_port]
    if kind == RECEIVER:
        return [{"targets": [f"127.0.0.1:{ports.receiver}"]}]
    if kind == ALERTMANAGER:
        return [{"targets": [f"127.0.0.1:{wiring.alertmanager}"]}]
    if kind == SELF:
        return [{"targets": [f"127.0.0.1:{self_port}"]}]
    raise ValueError(f"unknown scrape job kind {kind!r}")


def prometheus_config(source: Source, instance: Instance, cluster: Cluster, wiring: Wiring,
                      rules_dir: Path) -> dict:
    """The instance's prometheus.yml: the global settings of its file in the source, its
    rule files (under rules_dir), Alertmanager, and each job with the fake cluster's
    static targets."""
    config = {"global": {k: v for k, v in (source.config(instance.config).get("global") or {}).items()
                         if k != "external_labels"}}
    config["rule_files"] = [str(rules_dir / name) for name in sorted(source.rule_texts(instance.rule_files))]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{wiring.alertmanager}"]}]}]}
    self_port = wiring.instances[instance.name]
    config["scrape_configs"] = [{**job_template(source, kind, instance.config),
                                 "static_configs": targets(kind, cluster, wiring, self_port)} for kind in instance.jobs]
    return config


# ---------------------------------------------------------------- reading an instance's own metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
WANTED = ("prometheus_rule_group_last_duration_seconds", "prometheus_rule_group_last_evaluation_timestamp_seconds",
          "prometheus_rule_group_interval_seconds", "prometheus_rule_group_iterations_missed_total",
          "prometheus_rule_group_iterations_total", "prometheus_tsdb_head_samples_appended_total",
          "prometheus_tsdb_head_series")
_GROUP_FIELDS = {"prometheus_rule_group_last_duration_seconds": "duration_s",
                 "prometheus_rule_group_last_evaluation_timestamp_seconds": "evaluated_at",
                 "prometheus_rule_group_interval_seconds": "interval_s",
                 "prometheus_rule_group_iterations_missed_total": "missed",
                 "prometheus_rule_group_iterations_total": "iterations"}


def read_self_metrics(text: str) -> dict:
    """From a Prometheus's own /metrics: per rule group (by its name, without the file)
    its last evaluation's duration and timestamp, interval, missed and total iterations;
    the samples appended to the head so far (all types) and the head's series."""
    groups: dict[str, dict] = {}
    out = {"groups": groups, "samples_appended": 0.0, "head_series": None}
    for line in text.splitlines():
        if not line.startswith(WANTED):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.group(1), dict(_LABEL.findall(match.group(2) or "")), float(match.group(3))
        if name in _GROUP_FIELDS:
            group = labels.get("rule_group", "").rsplit(";", 1)[-1]
            groups.setdefault(group, {})[_GROUP_FIELDS[name]] = value
        elif name == "prometheus_tsdb_head_samples_appended_total":
            out["samples_appended"] += value
        elif name == "prometheus_tsdb_head_series":
            out["head_series"] = value
    return out


def group_summary(evaluations: dict[float, float], interval_s: float | None, missed: float, seconds: float) -> dict:
    """A rule group over a window: its evaluations' durations (by evaluation timestamp)
    as p50, p95 and max in ms, how many took longer than the interval, and the missed
    evaluations per minute."""
    durations = [d * 1000 for _, d in sorted(evaluations.items())]
    stats = summarise(durations)
    interval_ms = None if interval_s is None else interval_s * 1000
    return {"evaluations": len(durations), "interval_ms": interval_ms,
            "p50_ms": stats["p50"], "p95_ms": stats["p95"], "max_ms": stats["max"],
            "over_interval": None if interval_ms is None else sum(1 for d in durations if d > interval_ms),
            "missed_per_minute": 60 * missed / seconds if seconds > 0 else None}


class SelfSampler(threading.Thread):
    """Reads an instance's /metrics every POLL_S: keeps each rule group's evaluations
    (timestamp -> duration) and the latest reading."""

    def __init__(self, url: str) -> None:
        super().__init__(name=f"sampler {url}", daemon=True)
        self.url = url
        self.evaluations: dict[str, dict[float, float]] = {}
        self.latest: dict | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def reading(self) -> dict:
        """A fresh reading, or the latest one when the instance is too busy to answer."""
        try:
            return self.read()
        except (requests.RequestException, ValueError):
            with self._lock:
                if self.latest is None:
                    raise
                return self.latest

    def read(self) -> dict:
        response = requests.get(f"{self.url}/metrics", timeout=5)
        response.raise_for_status()
        reading = read_self_metrics(response.text)
        with self._lock:
            self.latest = reading
            for group, fields in reading["groups"].items():
                if fields.get("evaluated_at") and "duration_s" in fields:
                    self.evaluations.setdefault(group, {})[fields["evaluated_at"]] = fields["duration_s"]
        return reading

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.read()
            except (requests.RequestException, ValueError):
                pass  # a slow or busy instance: the next reading catches up
            self._halt.wait(POLL_S)

    def between(self, start: float, end: float) -> dict[str, dict[float, float]]:
        with self._lock:
            return {g: {t: d for t, d in ev.items() if start <= t <= end} for g, ev in self.evaluations.items()}

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


# ---------------------------------------------------------------- processes

class Daemon:
    """A program of the `current` root filesystem (Prometheus or Alertmanager), started
    by `rootfs.command`, which execs into it: the PID is the program's."""

    def __init__(self, cfg: LabConfig, name: str, cmd: list[str], url: str, log: Path) -> None:
        self.name, self.url, self.log = name, url, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(rootfs.command(cfg, cmd), stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.name} was not ready within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Sink(ThreadingHTTPServer):
    """Where Alertmanager's webhook delivers: keeps (arrival time, alert) of each alert of
    each notification."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.received: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _SinkHandler)
        threading.Thread(target=self.serve_forever, name="webhook-sink", daemon=True).start()

    def first(self, after: float, alertname: str, task_id: str) -> float | None:
        with self.lock:
            return next((at for at, alert in self.received if at >= after and alert.get("status") == "firing"
                         and alert.get("labels", {}).get("alertname") == alertname
                         and alert.get("labels", {}).get("task_id") == task_id), None)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _SinkHandler(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        at = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            alerts = json.loads(body).get("alerts", [])
        except ValueError:
            alerts = []
        with self.server.lock:
            self.server.received += [(at, alert) for alert in alerts]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- one layout, one step

@dataclass(frozen=True)
class Settings:
    warmup_s: float
    window_s: float
    alert_deadline_s: float
    base_port: int
    prometheus_dir: Path
    today_rev: str


def bench_cfg(work: Path) -> LabConfig:
    """The lab's configuration with its state and run directories in `work`: the
    programs run from the lab's root filesystem see `work` at the same path, and nothing
    of the lab's own is touched."""
    return dataclasses.replace(DEFAULT, state_dir=work, run_dir=work / "run")


def start_alertmanager(cfg: LabConfig, work: Path, port: int, sink_port: int) -> Daemon:
    cfg = dataclasses.replace(cfg, alertmanager_port=port, receiver_port=sink_port)
    # The lab's adaptation of the shipped file: its webhook to our sink, with a token file.
    conf = work / "alertmanager.yml"
    conf.write_text(yaml.safe_dump(monitoring.alertmanager_config(cfg), sort_keys=False))
    daemon = Daemon(cfg, "Alertmanager", [
        "prometheus-alertmanager", f"--config.file={conf}", f"--storage.path={work / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="], f"http://127.0.0.1:{port}",
        work / "alertmanager.log")
    return daemon


def start_prometheus(cfg: LabConfig, work: Path, instance: Instance, config: dict, rules: dict[str, str],
                     port: int) -> Daemon:
    home = work / instance.name
    (home / "rules").mkdir(parents=True)
    for name, text in rules.items():
        (home / "rules" / name).write_text(text)
    conf = home / "prometheus.yml"
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    return Daemon(cfg, f"Prometheus {instance.name}", [
        "prometheus", f"--config.file={conf}", f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
        "--rules.alert.resend-delay=5s"],  # as stack.yml
        f"http://127.0.0.1:{port}", home / "prometheus.log")


def scrape_success(url: str, seconds: float) -> dict[str, float]:
    """Per job, the share of scrapes over the last `seconds` whose `up` was 1."""
    try:
        response = requests.get(f"{url}/api/v1/query", timeout=30,
                                params={"query": f"avg by (job) (avg_over_time(up[{int(seconds)}s]))"})
        response.raise_for_status()
        return {row["metric"].get("job", ""): round(float(row["value"][1]), 4)
                for row in response.json()["data"]["result"]}
    except (requests.RequestException, ValueError, KeyError):
        return {}


# What the central (or only) Prometheus sees at the end of the window: every opted-in task
# (or, today, every task) of every node judged, and which alerts fire (none expected but
# SwarmGuardBlind cadvisor_down: the fake cluster has no cAdvisor).
VIEWS = {"tasks_judged": "count(swarmguard:task_cpu:percent)",
         "nodes_judged": "count(count by (node_id) (swarmguard:task_cpu:percent))",
         "alerts_firing": 'count by (alertname, reason) (ALERTS{alertstate="firing"})'}


def views(url: str) -> dict:
    out = {}
    for key, promql in VIEWS.items():
        try:
            response = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=30)
            response.raise_for_status()
            rows = response.json()["data"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            out[key] = None
            continue
        if key == "alerts_firing":
            out[key] = {"/".join(filter(None, (r["metric"].get("alertname"), r["metric"].get("reason")))):
                        int(float(r["value"][1])) for r in rows}
        else:
            out[key] = int(float(rows[0]["value"][1])) if rows else 0
    return out


def measure(daemons: dict[str, Daemon], samplers: dict[str, SelfSampler], load_pid: int, window_s: float) -> dict:
    """Every instance's cost over the next `window_s` seconds (module docstring)."""
    cpu0 = {name: cpu_seconds(d.pid) for name, d in daemons.items()}
    load0 = cpu_seconds(load_pid)
    start = {name: s.reading() for name, s in samplers.items()}
    t0, wall0 = time.monotonic(), time.time()
    time.sleep(window_s)
    elapsed = time.monotonic() - t0
    wall1 = time.time()
    out = {}
    for name, daemon in daemons.items():
        cpu = 100 * (cpu_seconds(daemon.pid) - cpu0[name]) / elapsed
        end = samplers[name].reading()
        evaluations = samplers[name].between(wall0, wall1)
        groups = {}
        for group, fields in end["groups"].items():
            missed = fields.get("missed", 0.0) - start[name]["groups"].get(group, {}).get("missed", 0.0)
            groups[group] = group_summary(evaluations.get(group, {}), fields.get("interval_s"), missed, elapsed)
        out[name] = {"cpu_percent": round(cpu, 1), "rss_mb": round(rss_mb(daemon.pid), 1),
                     "rss_peak_mb": round(rss_mb(daemon.pid, "VmHWM"), 1),
                     "samples_per_second": round((end["samples_appended"] - start[name]["samples_appended"]) / elapsed),
                     "head_series": end["head_series"], "rule_groups": groups,
                     "scrape_success": scrape_success(daemon.url, elapsed)}
    return {"window_s": round(elapsed, 1), "instances": out,
            "load_generator_cpu_percent": round(100 * (cpu_seconds(load_pid) - load0) / elapsed, 1)}


def alert_active(alertmanager_url: str, task_id: str) -> bool:
    response = requests.get(f"{alertmanager_url}/api/v2/alerts", timeout=5,
                            params={"filter": [f'alertname="{ALERT}"', f'task_id="{task_id}"'], "active": "true"})
    response.raise_for_status()
    return bool(response.json())


def alert_firing(prometheus_url: str, task_id: str) -> bool:
    response = requests.get(f"{prometheus_url}/api/v1/query", timeout=5, params={
        "query": f'ALERTS{{alertname="{ALERT}",alertstate="firing",task_id="{task_id}"}}'})
    response.raise_for_status()
    return bool(response.json()["data"]["result"])


def detect(fake: FakeCluster, alertmanager: Daemon, sink: Sink, daemons: dict[str, Daemon],
           deadline_s: float) -> dict:
    """Make the hot task hot; seconds until its SwarmGuardMigrate is active in
    Alertmanager, delivered to the webhook sink, and firing in each Prometheus of the
    layout (`firing_in`: the receiver asks every one, and acts when any says it fires:
    `confirmable_s`). None for what did not happen within `deadline_s`."""
    task = fake.cluster.hot_task
    started = fake.heat()
    seen: dict[str, float | None] = {"alertmanager_s": None, "webhook_s": None,
                                     **{f"firing_in_{name}_s": None for name in daemons}}
    checks = {"alertmanager_s": lambda: alert_active(alertmanager.url, task.task_id),
              "webhook_s": lambda: sink.first(started, ALERT, task.task_id) is not None,
              **{f"firing_in_{name}_s": (lambda d=daemon: alert_firing(d.url, task.task_id))
                 for name, daemon in daemons.items()}}
    try:
        while time.time() - started < deadline_s and None in seen.values():
            for key, check in checks.items():
                if seen[key] is None:
                    try:
                        if check():
                            seen[key] = round(time.time() - started, 2)
                    except (requests.RequestException, ValueError, KeyError):
                        pass
            time.sleep(0.1)
    finally:
        fake.cool()
    delivered = sink.first(started, ALERT, task.task_id)
    if delivered is not None:  # the sink's own arrival time, finer than the polling above
        seen["webhook_s"] = round(delivered - started, 2)
    firing = [seen[f"firing_in_{name}_s"] for name in daemons if seen[f"firing_in_{name}_s"] is not None]
    return {"task_id": task.task_id, "service": task.service, "node": fake.cluster.representative.name,
            "deadline_s": deadline_s, **seen, "confirmable_s": min(firing, default=None)}


def run_layout(layout: Layout, source: Source, fake: FakeCluster, sink: Sink, settings: Settings,
               work: Path) -> dict:
    cluster, ports = fake.cluster, fake.ports
    cfg = bench_cfg(work)
    base = settings.base_port + 300
    wiring = Wiring(ports, base + 50, {inst.name: base + k for k, inst in enumerate(layout.instances)})
    for port in (wiring.alertmanager, *wiring.instances.values()):
        if not port_free(port):
            raise BenchError(f"port {port} is taken: choose another --base-port")
    daemons: dict[str, Daemon] = {}
    samplers: dict[str, SelfSampler] = {}
    alertmanager = None
    try:
        alertmanager = start_alertmanager(cfg, work, wiring.alertmanager, sink.server_port)
        alertmanager.wait_ready()
        # The per-node instance first: the central one's first scrape of /federate finds it.
        for instance in sorted(layout.instances, key=lambda i: not i.detects):
            config = prometheus_config(source, instance, cluster, wiring, work / instance.name / "rules")
            daemons[instance.name] = start_prometheus(cfg, work, instance, config,
                                                      source.rule_texts(instance.rule_files),
                                                      wiring.instances[instance.name])
        for name, daemon in daemons.items():
            daemon.wait_ready()
        if any(FEDERATION in i.jobs for i in layout.instances):  # the fake nodes' /federate copy the real one's
            fake.set_upstream(wiring.instances[next(i.name for i in layout.instances if i.per_node)])
        for name, daemon in daemons.items():
            samplers[name] = SelfSampler(daemon.url)
            samplers[name].start()
        progress(f"  {layout.name}: {', '.join(daemons)} up; warming up {settings.warmup_s:.0f} s")
        time.sleep(settings.warmup_s)
        progress(f"  {layout.name}: measuring over {settings.window_s:.0f} s")
        result = measure(daemons, samplers, fake.pid, settings.window_s)
        for name, cost in result["instances"].items():
            detection = cost["rule_groups"].get(DETECTION_GROUP)
            progress(f"  {layout.name}/{name}: {cost['cpu_percent']:.0f} % of a core, {cost['rss_mb']:.0f} MiB, "
                     f"{cost['samples_per_second']} samples/s"
                     + (f", detection group p50 {detection['p50_ms']:.0f} ms max {detection['max_ms']:.0f} ms, "
                        f"{detection['missed_per_minute']:.0f} missed/min"
                        if detection and detection["p50_ms"] is not None else ""))
        central = next(i.name for i in layout.instances if i.central)
        result["central_sees"] = views(daemons[central].url)
        progress(f"  {layout.name}: {central} sees {result['central_sees']}")
        progress(f"  {layout.name}: task {cluster.hot_task.task_id} of {cluster.hot_task.service} on "
                 f"{cluster.representative.name} hot; waiting for {ALERT}")
        result["detection"] = detect(fake, alertmanager, sink, daemons, settings.alert_deadline_s)
        d = result["detection"]
        progress(f"  {layout.name}: {ALERT} in Alertmanager after {d['alertmanager_s']} s, webhook "
                 f"{d['webhook_s']} s, confirmable (firing in a Prometheus the receiver asks) after "
                 f"{d['confirmable_s']} s; firing in the central one after "
                 f"{d[f'firing_in_{central}_s']} s")
        return result
    finally:
        for daemon in [*daemons.values(), alertmanager]:
            if daemon:
                daemon.stop()
        fake.set_upstream(0)
        for sampler in samplers.values():
            sampler.stop()


# ---------------------------------------------------------------- the run

def parse_steps(text: str) -> list[Shape]:
    shapes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", part)
        if not match:
            raise argparse.ArgumentTypeError(f"step {part!r}: expected TASKSxNODES, e.g. 5000x50")
        shapes.append(Shape(int(match.group(1)), int(match.group(2))))
    return shapes


def busiest(layout_result: dict) -> tuple[str, dict]:
    instances = layout_result["instances"]
    name = max(instances, key=lambda n: instances[n]["cpu_percent"])
    return name, instances[name]


def detection_group(layout: Layout, layout_result: dict) -> dict | None:
    detecting = next(i.name for i in layout.instances if i.detects)
    return layout_result["instances"][detecting]["rule_groups"].get(DETECTION_GROUP)


def report(result: dict) -> None:
    rows = []
    for step in result["steps"]:
        for name, run in step["layouts"].items():
            for instance, cost in run["instances"].items():
                group = cost["rule_groups"].get(DETECTION_GROUP) or {}
                det = run.get("detection") or {}
                if instance == step["per_node_instances"].get(name):
                    instance += " (each node)"
                rows.append([step["tasks"], step["nodes"], name, instance, cost["cpu_percent"], cost["rss_mb"],
                             cost["samples_per_second"], group.get("p50_ms"), group.get("max_ms"),
                             group.get("missed_per_minute"), det.get("alertmanager_s"), det.get("confirmable_s"),
                             run["load_generator_cpu_percent"]])
    print(f"\nSwarmGuard's Prometheus against cluster size ({result['machine_cpus']} cores)")
    print(table(["tasks", "nodes", "layout", "instance", "CPU %", "RSS MiB", "samples/s", "detect p50 ms",
                 "detect max ms", "missed/min", "alert s", "confirm s", "fake CPU %"], rows))
    print(f"\n{PER_NODE_NOTE}")


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, (cpu_ax, eval_ax) = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = {"today": "#c0392b", "central-opted-in": "#2e86de", "per-node": "#27ae60",
               "detection-central": "#8e44ad"}
    for name in result["layouts"]:
        points = [(s["tasks"], s["layouts"][name]) for s in result["steps"] if name in s["layouts"]]
        if not points:
            continue
        xs = [x for x, _ in points]
        colour = colours.get(name)
        cpu_ax.plot(xs, [r["busiest_cpu_percent"] for _, r in points], "o-", color=colour,
                    label=f"{name} (busiest instance)")
        if all("each_extra_node" in r for _, r in points):
            cpu_ax.plot(xs, [r["each_extra_node"]["cpu_percent"] for _, r in points], "^:", color=colour,
                        label=f"{name}: each node's own instance")
        groups = [r.get("detection_group") or {} for _, r in points]
        eval_ax.plot(xs, [g.get("p50_ms") for g in groups], "o-", color=colour, label=f"{name} p50")
        eval_ax.plot(xs, [g.get("max_ms") for g in groups], "s--", color=colour, alpha=0.6, label=f"{name} max")
    cpu_ax.axhline(100, color="#7f8c8d", linestyle=":", linewidth=1, label="one core")
    eval_ax.axhline(500, color="#7f8c8d", linestyle=":", linewidth=1, label="interval (500 ms)")
    cpu_ax.set_title("CPU of the busiest SwarmGuard Prometheus")
    cpu_ax.set_ylabel("% of one core")
    eval_ax.set_title(f"{DETECTION_GROUP} group evaluation (where the hot task is judged)")
    eval_ax.set_ylabel("ms (log)")
    eval_ax.set_yscale("log")
    share = 100 * result["settings"]["opted_in_fraction"]
    for ax in (cpu_ax, eval_ax):
        ax.set_xlabel(f"tasks in the cluster ({share:g} % opted in)")
        ax.legend(fontsize=7)
    fig.suptitle(f"make bench-scale ({result['machine_cpus']} cores); per-node: each extra node adds its own "
                 "instance's cost", fontsize=9)
    save_figure(fig, path)


def opted_in_per_node(cluster: Cluster) -> dict[str, int]:
    """How many nodes hold how many opted-in tasks ("count": nodes)."""
    counts: dict[str, int] = {}
    for node in cluster.nodes:
        key = str(sum(t.opted_in for t in node.tasks))
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def describe(layouts: list[Layout], sources: dict[str, Source]) -> dict:
    """Each layout's instances as run: rule files, and scrape jobs with their settings."""
    return {l.name: {"about": l.about, "source": sources[l.source].where, "instances": {
        i.name: {"rule_files": sorted(sources[l.source].rule_texts(i.rule_files)),
                 "jobs": {kind: job_template(sources[l.source], kind, i.config) for kind in i.jobs},
                 "detects": i.detects, "central": i.central, "per_node": i.per_node} for i in l.instances}}
        for l in layouts}


def run_step(shape: Shape, layouts: list[Layout], sources: dict[str, Source], sink: Sink, settings: Settings,
             work_root: Path, result: dict, name: str) -> None:
    """Every layout against one fake cluster; each layout's result (and any failure) is
    added to `result` and written as soon as it is known."""
    cluster = Cluster(shape)
    step = {"tasks": shape.tasks, "nodes": shape.nodes, "opted_in_tasks": shape.opted_in_tasks,
            "services": len(cluster.services), "opted_in_services": len(cluster.opted_in),
            "tasks_on_representative": len(cluster.representative.tasks),
            "opted_in_on_representative": sum(t.opted_in for t in cluster.representative.tasks),
            "opted_in_per_node": opted_in_per_node(cluster),
            "per_node_instances": {l.name: i.name for l in layouts for i in l.instances if i.per_node},
            "layouts": {}}
    result["steps"].append(step)
    progress(f"step {shape.label} ({shape.opted_in_tasks} opted in, {step['tasks_on_representative']} tasks "
             f"on the representative node, {step['opted_in_on_representative']} of them opted in)")
    with FakeCluster(shape, Ports(settings.base_port)) as fake:
        for layout in layouts:
            work = work_root / f"{shape.tasks}x{shape.nodes}-{layout.name}"
            work.mkdir(parents=True)
            run = run_layout(layout, sources[layout.source], fake, sink, settings, work)
            busiest_name, cost = busiest(run)
            run.update(busiest=busiest_name, busiest_cpu_percent=cost["cpu_percent"],
                       detection_group=detection_group(layout, run))
            if layout.name in step["per_node_instances"]:
                run["each_extra_node"] = run["instances"][step["per_node_instances"][layout.name]]
            step["layouts"][layout.name] = run
            if run["detection"]["alertmanager_s"] is None:
                failure = (f"{shape.label}, {layout.name}: {ALERT} did not reach Alertmanager within "
                           f"{settings.alert_deadline_s:.0f} s")
                result["failures"].append(failure)
                progress(f"FAILED: {failure}")
            write_json(name, result)  # what was measured survives a failure later on


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--steps", type=parse_steps, default=None,
                        help=f"TASKSxNODES, comma-separated (default {STEPS}; --quick: {QUICK_STEPS})")
    parser.add_argument("--layouts", default=",".join(DEFAULT_LAYOUTS),
                        help=f"comma-separated, of {', '.join(LAYOUTS)} (default {','.join(DEFAULT_LAYOUTS)})")
    parser.add_argument("--opted-in", type=float, default=0.05, help="share of tasks in opted-in services")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before measuring (default 20; quick 5)")
    parser.add_argument("--window", type=float, default=None, help="seconds measured (default 40; quick 10)")
    parser.add_argument("--alert-deadline", type=float, default=180.0,
                        help="seconds the hot task's alert may take before the run fails")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: one small step, short windows")
    parser.add_argument("--base-port", type=int, default=BASE_PORT,
                        help="loopback ports from here: the fake cluster, then base+300 on for Prometheus, "
                             "base+350 Alertmanager, base+351 the webhook sink")
    parser.add_argument("--prometheus-dir", type=Path, default=PROJECT_ROOT / "prometheus",
                        help="rules/ and prometheus*.yml of the new layouts (default: this tree's)")
    parser.add_argument("--today-rev", default=TODAY_REV, help="the commit whose rules and settings `today` runs")
    parser.add_argument("--name", default=NAME, help="artifact name (JSON and PNG)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: every instance and the fake cluster are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    shapes = [dataclasses.replace(s, opted_in_fraction=args.opted_in)
              for s in args.steps or parse_steps(QUICK_STEPS if args.quick else STEPS)]
    unknown = set(args.layouts.split(",")) - set(LAYOUTS)
    if unknown:
        raise SystemExit(f"no layout {', '.join(sorted(unknown))}: the layouts are {', '.join(LAYOUTS)}")
    layouts = [LAYOUTS[name] for name in args.layouts.split(",")]
    settings = Settings(warmup_s=args.warmup if args.warmup is not None else (5 if args.quick else 20),
                        window_s=args.window if args.window is not None else (10 if args.quick else 40),
                        alert_deadline_s=args.alert_deadline, base_port=args.base_port,
                        prometheus_dir=args.prometheus_dir.resolve(), today_rev=args.today_rev)
    most_nodes = max(s.nodes for s in shapes)
    if most_nodes > 298:
        raise SystemExit("at most 298 nodes: the fake cluster's ports would reach the instances' (base + 300)")
    if not (rootfs.root(DEFAULT) / ".complete").exists():
        raise SystemExit(f"the lab's `current` root filesystem is not unpacked at {rootfs.root(DEFAULT)}: "
                         "`make lab-up` builds it")
    sources = {"today": source_at_commit(settings.today_rev), "new": source_in_dir(settings.prometheus_dir)}
    try:  # every rule file a layout names exists before anything starts
        described = describe(layouts, sources)
    except BenchError as error:
        raise SystemExit(str(error)) from None
    sink_port = settings.base_port + 351
    busy = [p for p in (*range(settings.base_port, settings.base_port + 1 + most_nodes), sink_port)
            if not port_free(p)]
    if busy:
        raise SystemExit(f"ports {busy} are taken: choose another --base-port")
    progress(f"steps {', '.join(s.label for s in shapes)}; layouts {', '.join(l.name for l in layouts)}; "
             f"warm-up {settings.warmup_s:.0f} s, window {settings.window_s:.0f} s; today from "
             f"{sources['today'].where}, new layouts from {sources['new'].where}")
    result: dict = {
        "settings": {"warmup_s": settings.warmup_s, "window_s": settings.window_s,
                     "alert_deadline_s": settings.alert_deadline_s, "opted_in_fraction": args.opted_in,
                     "today": sources["today"].where, "new": sources["new"].where},
        "machine_cpus": os.cpu_count(), "layouts": described,
        "notes": [PER_NODE_NOTE, "CPU is in % of one core; every instance, the fake cluster and the bench share "
                  "this machine's cores. Bodies are served uncompressed. There is no cAdvisor: its job is left "
                  "out of every layout (SwarmGuardBlind cadvisor_down may fire after 45 s)."],
        "steps": [], "failures": []}
    work_root = Path(tempfile.mkdtemp(prefix="swarmguard-bench-scale-"))
    sink = Sink(sink_port)
    keep = False
    try:
        for shape in shapes:
            run_step(shape, layouts, sources, sink, settings, work_root, result, args.name)
    except BenchError as error:
        result["failures"].append(str(error))
        write_json(args.name, result)
        progress(f"FAILED: {error}\n(logs and data kept in {work_root})")
        keep = True
        return 1
    finally:
        sink.close()
        if not keep:
            shutil.rmtree(work_root, ignore_errors=True)
    report(result)
    publish(args.name, result, lambda png: plot(result, png))
    if result["failures"]:
        print("\nFAILED:\n  " + "\n  ".join(result["failures"]))
        return 1
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
