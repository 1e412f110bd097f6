"""cAdvisor on every node, Prometheus and Alertmanager on the host, configured from the
project's own prometheus/ and alertmanager/ directories.

Only what the lab must change is changed: scrape targets (static, the lab has no Swarm
service discovery for processes that run beside the nodes), the Alertmanager address,
and the webhook's URL and credentials file. Rules are used unchanged, from the project.
"""
from __future__ import annotations

import contextlib
import copy
import math
import secrets
import sys
from pathlib import Path

import requests
import yaml

from . import rootfs
from ..config import PROJECT_ROOT, LabConfig, Node
from .images import SHARED_PACKAGES, tree_digest
from .install import cadvisor_binary
from .system import alive, in_netns, read_pid, say, start_daemon, stop_pid, wait_for

EXPORTER_PORT = 9101
# cAdvisor is not on the detection path (the exporter reads the tasks' cgroups): it runs
# at a dashboard's pace, as in stack.yml, with dynamic back-off for idle containers.
CADVISOR_HOUSEKEEPING = "10s"
CADVISOR_LABELS = "com.docker.swarm.service.name,com.docker.swarm.task.id,com.docker.swarm.node.id"


def _pidfile(cfg: LabConfig, name: str) -> Path:
    return cfg.run_dir / f"{name}.pid"


def _ensure(cfg: LabConfig, name: str, marker: str, cmd: list[str], code: str = "") -> bool:
    """Start the daemon unless ours already runs with this very command line and code (a
    changed flag, or a changed digest of the project code it runs, restarts it); True
    when it was started now."""
    pidfile, cmdfile = _pidfile(cfg, name), cfg.run_dir / f"{name}.cmd"
    identity = "\0".join(cmd) + (f"\0code={code}" if code else "")
    pid = read_pid(pidfile)
    if alive(pid, marker):
        if cmdfile.exists() and cmdfile.read_text() == identity:
            return False
        say(f"restarting {name} (its command line or code changed)")
        stop_pid(pid, marker)
    say(f"starting {name}")
    start_daemon(cmd, pidfile=pidfile, logfile=cfg.log_dir / f"{name}.log")
    cmdfile.write_text(identity)
    return True


# ---------------------------------------------------------------- cAdvisor

def cadvisor_url(cfg: LabConfig, node: Node) -> str:
    return f"http://{node.ip}:{cfg.cadvisor_port}"


def start_cadvisor(cfg: LabConfig, node: Node, docker_url: str | None = None) -> None:
    """`docker_url`: another Docker socket than the node's (fault tests: a cAdvisor that
    cannot register its Docker factory); starting again without it restores the node's."""
    binary = cadvisor_binary(cfg)
    # All dockerds share one cgroup tree: -docker_only with the node's own socket makes
    # this cAdvisor see (and label) only its own node's containers.
    _ensure(cfg, f"cadvisor-{node.name}", "cadvisor", in_netns(node.netns, [
        str(binary), f"-listen_ip={node.ip}", f"-port={cfg.cadvisor_port}",
        f"-docker={docker_url or cfg.docker_url(node)}", "-docker_only",
        f"-housekeeping_interval={CADVISOR_HOUSEKEEPING}",
        "-store_container_labels=false", f"-whitelisted_container_labels={CADVISOR_LABELS}",
        "-disable_metrics=advtcp,tcp,udp,sched,process,hugetlb,referenced_memory,cpu_topology,resctrl,disk,diskIO,percpu",
        "-logtostderr",
    ]))


def restart_cadvisor(cfg: LabConfig, node: Node) -> None:
    """A new cAdvisor for the node, up and answering. cAdvisor settles its Docker factory
    once, at start: after the node's dockerd restarted (say, under another API floor), a
    fresh cAdvisor is what a person upgrading Docker gets (its container restarts too)."""
    stop_pid(read_pid(_pidfile(cfg, f"cadvisor-{node.name}")), "cadvisor")
    start_cadvisor(cfg, node)
    wait_for(f"cAdvisor on {node.name}", lambda: requests.get(f"{cadvisor_url(cfg, node)}/healthz", timeout=2).ok)


# ---------------------------------------------------------------- the exporter

def start_exporter(cfg: LabConfig, node: Node, docker_url: str | None = None) -> None:
    """`docker_url`: another Docker socket than the node's (fault tests); starting again
    without it restores the node's."""
    # With its code's digest (as the images' cache keys): an exporter running older code
    # is restarted by `up`, so no test or benchmark measures yesterday's exporter.
    _ensure(cfg, f"exporter-{node.name}", "exporter", in_netns(node.netns, [
        sys.executable, "-m", "exporter",
        # The node's own dockerd; /proc and the cgroup tree are the host's, shared by all
        # lab nodes, and the exporter finds each container's files by its PID and ID.
        f"--docker-url={docker_url or cfg.docker_url(node)}",
        f"--listen-address={node.ip}", f"--listen-port={EXPORTER_PORT}",
        f"--capacity-mbps={cfg.node_capacity_mbps}",
    ]), code=tree_digest([PROJECT_ROOT / "exporter",
                          *(PROJECT_ROOT / p for p in SHARED_PACKAGES)]))


# ---------------------------------------------------------------- Prometheus

def _token(cfg: LabConfig) -> Path:
    if not cfg.token_file.exists():
        cfg.token_file.parent.mkdir(parents=True, exist_ok=True)
        cfg.token_file.write_text(secrets.token_urlsafe(32))
        cfg.token_file.chmod(0o600)
    return cfg.token_file


def prometheus_config(cfg: LabConfig) -> dict:
    """The project's prometheus.yml with the lab's targets: each per-node job keeps its own
    settings (interval, timeout, metric filters) and gets static targets in place of Swarm
    service discovery, which cannot find processes that run beside the nodes."""
    base = yaml.safe_load((PROJECT_ROOT / "prometheus" / "prometheus.yml").read_text())
    config = {"global": dict(base["global"])}
    config["global"].pop("external_labels", None)
    config["rule_files"] = [str(rules_dir(cfg) / "*.yml")]
    config["alerting"] = {"alertmanagers": [{"static_configs": [
        {"targets": [f"127.0.0.1:{cfg.alertmanager_port}"]}]}]}
    jobs = {job["job_name"]: job for job in base["scrape_configs"]}

    def per_node(job: str, port: int, nodes=cfg.nodes) -> dict:
        settings = {k: v for k, v in jobs[job].items()
                    if k not in ("dockerswarm_sd_configs", "dns_sd_configs", "relabel_configs")}
        return {**settings, "static_configs": [
            {"targets": [f"{n.ip}:{port}"], "labels": {"node": n.name}} for n in nodes]}

    config["scrape_configs"] = [
        per_node("cadvisor", cfg.cadvisor_port),
        per_node("swarmguard-exporter", EXPORTER_PORT),
        # The managers' exporters, as the bundle keeps them (node role manager).
        per_node("swarmguard-opt-in", EXPORTER_PORT, [n for n in cfg.nodes if n.role == "manager"]),
        {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{cfg.prometheus_port}"]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": [f"127.0.0.1:{cfg.alertmanager_port}"]}]},
        {"job_name": "swarmguard-receiver", "static_configs": [{"targets": [f"127.0.0.1:{cfg.receiver_port}"]}]},
    ]
    return config


def alertmanager_config(cfg: LabConfig) -> dict:
    # The shipped file, always: a made-up stand-in would test something nobody runs.
    config = yaml.safe_load((PROJECT_ROOT / "alertmanager" / "alertmanager.yml").read_text())
    token = str(_token(cfg))
    for receiver in config.get("receivers", []):
        for hook in receiver.get("webhook_configs", []) or []:
            # The bundle reaches the receiver by service name with a Swarm secret; the lab
            # reaches it on loopback with a token file of its own.
            hook["url"] = cfg.receiver_webhook_url
            hook.setdefault("http_config", {})["authorization"] = {"type": "Bearer", "credentials_file": token}
    return config


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def rules_dir(cfg: LabConfig):
    """The lab's copy of prometheus/rules. Prometheus keeps alert state across a reload
    only for groups of the same file: a copy at one fixed path lets the shortened-window
    profile swap rule contents without losing (and never resolving) active alerts."""
    return cfg.state_dir / "prometheus" / "rules"


def shipped_rule_files() -> dict[str, dict]:
    """prometheus/rules/*.yml as shipped, parsed, by file name."""
    return {p.name: yaml.safe_load(p.read_text())
            for p in sorted((PROJECT_ROOT / "prometheus" / "rules").glob("*.yml"))}


def sync_rules(cfg: LabConfig, *, scale_down_window_s: int | None = None) -> None:
    """The lab's copy of the project's rule files: as shipped, or with the scale-down
    window shortened to `scale_down_window_s` (shortened_windows)."""
    target = rules_dir(cfg)
    target.mkdir(parents=True, exist_ok=True)
    sources = {p.name: p for p in (PROJECT_ROOT / "prometheus" / "rules").glob("*.yml")}
    for stale in target.glob("*.yml"):
        if stale.name not in sources:
            stale.unlink()
    short = (shorten_scale_down(shipped_rule_files(), scale_down_window_s)
             if scale_down_window_s else {})
    for name, source in sources.items():
        text = (yaml.safe_dump(short[name], sort_keys=False) if name in short
                else source.read_text())
        _write_if_changed(target / name, text)


def start_prometheus(cfg: LabConfig) -> None:
    sync_rules(cfg)
    conf = cfg.state_dir / "prometheus" / "prometheus.yml"
    changed = _write_if_changed(conf, yaml.safe_dump(prometheus_config(cfg), sort_keys=False))
    started = _ensure(cfg, "prometheus", "prometheus", rootfs.for_flavour(cfg, [
        "prometheus", f"--config.file={conf}",
        f"--storage.tsdb.path={cfg.state_dir / 'prometheus' / 'data'}",
        f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}",
        "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d",
        "--rules.alert.resend-delay=5s",  # as in stack.yml: stale alerts expire in 20 s
    ]))
    wait_for("Prometheus ready", lambda: requests.get(f"{cfg.prometheus_url}/-/ready", timeout=2).ok)
    if changed and not started:
        say("reloading Prometheus (configuration or rules changed)")
    if not started:  # rules may have changed even when the file did not
        requests.post(f"{cfg.prometheus_url}/-/reload", timeout=10).raise_for_status()


def start_alertmanager(cfg: LabConfig) -> None:
    conf = cfg.state_dir / "alertmanager" / "alertmanager.yml"
    changed = _write_if_changed(conf, yaml.safe_dump(alertmanager_config(cfg), sort_keys=False))
    started = _ensure(cfg, "alertmanager", "alertmanager", rootfs.for_flavour(cfg, [
        "prometheus-alertmanager", f"--config.file={conf}",
        f"--storage.path={cfg.state_dir / 'alertmanager' / 'data'}",
        f"--web.listen-address=127.0.0.1:{cfg.alertmanager_port}",
        "--cluster.listen-address=",  # one instance: no gossip port
    ]))
    wait_for("Alertmanager ready", lambda: requests.get(f"{cfg.alertmanager_url}/-/ready", timeout=2).ok)
    if changed and not started:
        say("reloading Alertmanager (configuration changed)")
        requests.post(f"{cfg.alertmanager_url}/-/reload", timeout=10).raise_for_status()


def up(cfg: LabConfig) -> None:
    for node in cfg.nodes:
        start_cadvisor(cfg, node)
        start_exporter(cfg, node)
    for node in cfg.nodes:
        wait_for(f"cAdvisor on {node.name}",
                 lambda n=node: requests.get(f"{cadvisor_url(cfg, n)}/healthz", timeout=2).ok)
    start_alertmanager(cfg)
    start_prometheus(cfg)


def names(cfg: LabConfig) -> list[tuple[str, str]]:
    """(pidfile name, command-line marker) of every daemon this module may have started."""
    out = [("prometheus", "prometheus"), ("alertmanager", "alertmanager")]
    for node in cfg.nodes:
        out += [(f"cadvisor-{node.name}", "cadvisor"), (f"exporter-{node.name}", "exporter")]
    return out


def down(cfg: LabConfig) -> None:
    for name, marker in names(cfg):
        pid = read_pid(_pidfile(cfg, name))
        if alive(pid, marker):
            say(f"stopping {name}")
        stop_pid(pid, marker)
        _pidfile(cfg, name).unlink(missing_ok=True)


def stop(cfg: LabConfig, name: str) -> None:
    """Stop one daemon this module started (`cadvisor-worker-1`, `exporter-worker-1`...);
    `up` (or its start_* function) starts it again."""
    marker = dict(names(cfg))[name]
    stop_pid(read_pid(_pidfile(cfg, name)), marker)
    _pidfile(cfg, name).unlink(missing_ok=True)


def healthy(cfg: LabConfig) -> bool:
    return all(alive(read_pid(_pidfile(cfg, name)), marker) for name, marker in names(cfg))


# The scale-down window's literals as shipped (prometheus/rules/swarmguard.yml, the
# header of the group swarmguard-scale-down): the 30 s the averages span, the 180 s window
# (the peak's range and the window's start), and the window's coverage (90 % of its
# evaluations, one a second).
SHIPPED_AVERAGE_S, SHIPPED_WINDOW_S = 30, 180


def scale_down_literals(window_s: int, average_s: int) -> dict[str, str]:
    """The literals of a scale-down window of `window_s` seconds whose averages span
    `average_s`, by the shipped literal each replaces."""
    return {f"[{SHIPPED_AVERAGE_S}s]": f"[{average_s}s]",
            f"[{SHIPPED_WINDOW_S}s]": f"[{window_s}s]",
            f">= {math.ceil(0.9 * SHIPPED_WINDOW_S)})": f">= {math.ceil(0.9 * window_s)})",
            f"offset {SHIPPED_WINDOW_S}s": f"offset {window_s}s"}


# The groups the window's literals are written in: each node's holding and averages
# (swarmguard.yml) and the central window (swarmguard-scale-down.yml).
SCALE_DOWN_GROUPS = ("swarmguard-node-aggregates", "swarmguard-scale-down")


def shorten_scale_down(rule_files: dict[str, dict], window_s: int = 20, average_s: int = 10
                       ) -> dict[str, dict]:
    """The rule files (parsed, by name) with the scale-down window (180 s of 30 s averages
    as shipped) set to `window_s` seconds of `average_s` s averages; files without its
    groups unchanged. Every shipped literal must be found, so a change to the rules that
    this does not follow fails here, not in a slow lab run."""
    literals = scale_down_literals(window_s, average_s)
    found = set()
    shortened = {}
    for name, rules in rule_files.items():
        rules = copy.deepcopy(rules)
        for group in rules["groups"]:
            if group["name"] not in SCALE_DOWN_GROUPS:
                continue
            for rule in group["rules"]:
                texts = [("expr", rule["expr"])] + list(rule.get("annotations", {}).items())
                for key, text in texts:
                    for shipped, short in literals.items():
                        if shipped in text:
                            found.add(shipped)
                            text = text.replace(shipped, short)
                    if key == "expr":
                        rule["expr"] = text
                    else:
                        rule["annotations"][key] = text
        shortened[name] = rules
    missing = set(literals) - found
    if missing:
        raise ValueError(f"the scale-down rules no longer contain {sorted(missing)}: "
                         "update tests/lab/infra/monitoring.py with them")
    return shortened


def shorten_repeat(alertmanager: dict, repeat_interval: str = "10s") -> dict:
    """Alertmanager's config with the SwarmGuard route's repeat (15 s as shipped) set."""
    for route in alertmanager["route"].get("routes", []):
        if route.get("receiver") == "swarmguard":
            route["repeat_interval"] = repeat_interval
    return alertmanager


@contextlib.contextmanager
def shortened_windows(cfg: LabConfig, *, scale_down_window_s: int = 20, repeat_interval: str = "10s"):
    """For end-to-end tests and the demo only: the shipped rules and routing with the
    slow windows shortened (scale-down's 180 s window, Alertmanager's 15 s repeat), so a
    whole scale-up-and-down cycle fits in about a minute. Everything else is the project's
    own files; the originals are restored on exit."""
    am = shorten_repeat(alertmanager_config(cfg), repeat_interval)
    am_file = cfg.state_dir / "alertmanager" / "alertmanager.yml"
    try:
        sync_rules(cfg, scale_down_window_s=scale_down_window_s)
        am_file.write_text(yaml.safe_dump(am, sort_keys=False))
        _reload(cfg)
        yield
    finally:
        sync_rules(cfg)
        am_file.write_text(yaml.safe_dump(alertmanager_config(cfg), sort_keys=False))
        _reload(cfg)


def _reload(cfg: LabConfig) -> None:
    requests.post(f"{cfg.prometheus_url}/-/reload", timeout=10).raise_for_status()
    requests.post(f"{cfg.alertmanager_url}/-/reload", timeout=10).raise_for_status()
