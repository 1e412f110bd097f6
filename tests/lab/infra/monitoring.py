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
import re
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


def render_swarm_template(text: str, *, slot: int, env: dict[str, str]) -> str:
    """A Swarm config template (template_driver: golang) as Swarm renders it for the task
    in `slot`, for the placeholders the project's templates use: {{ .Task.Slot }} and
    {{ env "NAME" }}."""
    text = text.replace("{{ .Task.Slot }}", str(slot))
    return re.sub(r'\{\{ env "(\w+)" \}\}', lambda m: env[m.group(1)], text)


def _static(job: dict, targets: list[tuple[str, dict]]) -> dict:
    """A bundle job with static targets (target, labels) in place of its discovery."""
    settings = {k: v for k, v in job.items()
                if k not in ("dockerswarm_sd_configs", "dns_sd_configs", "relabel_configs")}
    return {**settings, "static_configs": [{"targets": [target], "labels": labels}
                                           for target, labels in targets]}


def _alerting(cfg: LabConfig) -> dict:
    # Every Prometheus sends to both Alertmanagers of the pair, as the bundle's do.
    return {"alertmanagers": [{"static_configs": [
        {"targets": [url.removeprefix("http://") for url in cfg.alertmanager_urls]}]}]}


def _rule_files(cfg: LabConfig, config: dict) -> list[str]:
    # The bundle's own list for this Prometheus, from the lab's copy of the rules.
    return [str(rules_dir(cfg) / Path(f).name) for f in config["rule_files"]]


def detection_config(cfg: LabConfig, node: Node) -> dict:
    """The project's prometheus-detection.yml for one node, as the lab runs it: one
    detection Prometheus per node (the bundle's shards, one node each), with static
    targets in place of Swarm service discovery: its node's exporter, and the managers'
    /opted-in."""
    base = yaml.safe_load(render_swarm_template(
        (PROJECT_ROOT / "prometheus" / "prometheus-detection.yml").read_text(),
        slot=1, env={"SWARMGUARD_DETECTION_INSTANCES": "1"}))
    jobs = {job["job_name"]: job for job in base["scrape_configs"]}
    managers = [n for n in cfg.nodes if n.role == "manager"]
    return {
        "global": dict(base["global"]),
        "rule_files": _rule_files(cfg, base),
        "alerting": _alerting(cfg),
        "scrape_configs": [
            _static(jobs["swarmguard-exporter"],
                    [(f"{node.ip}:{EXPORTER_PORT}", {"instance": node.name, "node": node.name})]),
            _static(jobs["swarmguard-opt-in"],
                    [(f"{n.ip}:{EXPORTER_PORT}", {"instance": n.name, "node": n.name}) for n in managers]),
        ],
    }


def prometheus_config(cfg: LabConfig) -> dict:
    """The project's central prometheus.yml with the lab's targets: each job keeps its
    own settings (interval, timeout, federation's match[], metric filters) and gets
    static targets in place of Swarm service discovery, which cannot find processes that
    run beside the nodes."""
    base = yaml.safe_load((PROJECT_ROOT / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in base["scrape_configs"]}
    for job in jobs.values():
        job.pop("basic_auth", None)  # the lab's Prometheus and Alertmanagers ask for none
    return {
        "global": dict(base["global"]),
        "rule_files": _rule_files(cfg, base),
        "alerting": _alerting(cfg),
        "scrape_configs": [
            _static(jobs["cadvisor"], [(f"{n.ip}:{cfg.cadvisor_port}", {"node": n.name})
                                       for n in cfg.nodes]),
            _static(jobs["swarmguard-detection-prometheus"],
                    [(cfg.node_prometheus_url(n).removeprefix("http://"), {"node": n.name})
                     for n in cfg.nodes]),
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{cfg.prometheus_port}"]}]},
            _static(jobs["alertmanager"], [(url.removeprefix("http://"), {})
                                           for url in cfg.alertmanager_urls]),
            {"job_name": "swarmguard-receiver", "static_configs": [{"targets": [f"127.0.0.1:{cfg.receiver_port}"]}]},
        ],
    }


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


def _start_one_prometheus(cfg: LabConfig, name: str, config: dict, port: int) -> None:
    home = cfg.state_dir / name
    conf = home / "prometheus.yml"
    changed = _write_if_changed(conf, yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    started = _ensure(cfg, name, "prometheus", rootfs.for_flavour(cfg, [
        "prometheus", f"--config.file={conf}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d",
        "--rules.alert.resend-delay=5s",  # as in stack.yml: stale alerts expire in 20 s
    ]))
    wait_for(f"{name} ready", lambda: requests.get(f"{url}/-/ready", timeout=2).ok)
    if changed and not started:
        say(f"reloading {name} (configuration or rules changed)")
    if not started:  # rules may have changed even when the file did not
        requests.post(f"{url}/-/reload", timeout=10).raise_for_status()


def prometheus_instances(cfg: LabConfig) -> list[tuple[str, str]]:
    """(pidfile name, URL) of every Prometheus of the lab: the central one, then each
    node's detection Prometheus."""
    return [("prometheus", cfg.prometheus_url),
            *((f"prometheus-{n.name}", cfg.node_prometheus_url(n)) for n in cfg.nodes)]


def start_prometheus(cfg: LabConfig) -> None:
    """The central Prometheus and one detection Prometheus per node (the bundle's layout,
    with one node per detection instance), all reading the lab's copy of the rules."""
    sync_rules(cfg)
    for node in cfg.nodes:
        _start_one_prometheus(cfg, f"prometheus-{node.name}", detection_config(cfg, node),
                              cfg.node_prometheus_port(node))
    _start_one_prometheus(cfg, "prometheus", prometheus_config(cfg), cfg.prometheus_port)


def _alertmanager_instances(cfg: LabConfig) -> list[tuple[str, int, int, int]]:
    """(pidfile name, port, cluster port, peer's cluster port) of the clustered pair."""
    (first, second), (gossip_a, gossip_b) = (cfg.alertmanager_port, cfg.alertmanager_peer_port), \
        cfg.alertmanager_cluster_ports
    return [("alertmanager", first, gossip_a, gossip_b),
            ("alertmanager-peer", second, gossip_b, gossip_a)]


def start_alertmanager(cfg: LabConfig) -> None:
    """Two Alertmanagers gossiping on loopback, as the bundle's HA pair: every Prometheus
    sends to both; they share silences and the notification log, so the receiver is
    notified once."""
    conf = cfg.state_dir / "alertmanager" / "alertmanager.yml"
    changed = _write_if_changed(conf, yaml.safe_dump(alertmanager_config(cfg), sort_keys=False))
    for name, port, gossip, peer in _alertmanager_instances(cfg):
        started = _ensure(cfg, name, "alertmanager", rootfs.for_flavour(cfg, [
            "prometheus-alertmanager", f"--config.file={conf}",
            f"--storage.path={cfg.state_dir / name / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--cluster.listen-address=127.0.0.1:{gossip}",
            f"--cluster.peer=127.0.0.1:{peer}",
            # Loopback is not a private address: say which one to announce.
            f"--cluster.advertise-address=127.0.0.1:{gossip}",
        ]))
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{name} ready", lambda u=url: requests.get(f"{u}/-/ready", timeout=2).ok)
        if changed and not started:
            say(f"reloading {name} (configuration changed)")
            requests.post(f"{url}/-/reload", timeout=10).raise_for_status()


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
    out = [(name, "prometheus") for name, _ in prometheus_instances(cfg)]
    out += [(name, "alertmanager") for name, *_ in _alertmanager_instances(cfg)]
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
    for url in (*cfg.prometheus_urls, *cfg.alertmanager_urls):
        requests.post(f"{url}/-/reload", timeout=10).raise_for_status()
