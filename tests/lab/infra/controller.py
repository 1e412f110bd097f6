"""up / down / status of the lab: the order of the steps, and nothing else."""
from __future__ import annotations

import dataclasses
import json
import shutil

from . import entrypoint, images, install, monitoring, network, nodes, rootfs
from ..config import LabConfig, lab_nodes
from .system import LabError, say


def up(cfg: LabConfig) -> None:
    if healthy(cfg):
        say("lab already up and healthy; refreshing configuration")
    install.install_packages(cfg)
    install.cadvisor_binary(cfg)
    for path in (cfg.state_dir, cfg.run_dir, cfg.log_dir, cfg.cache_dir):
        path.mkdir(parents=True, exist_ok=True)
    _check_flavour(cfg)
    _check_workers(cfg)
    if cfg.flavour == "current":
        rootfs.ensure(cfg)
    say(f"lab flavour {cfg.flavour}"
        + (f" (nodes refuse API versions below {cfg.min_api})" if cfg.min_api else ""))
    network.up(cfg)
    for node in cfg.nodes:
        nodes.start_dockerd(cfg, node)
    for node in cfg.nodes:
        nodes.wait_dockerd(cfg, node)
    nodes.form_swarm(cfg)
    images.ensure_images(cfg)
    monitoring.up(cfg)
    entrypoint.up(cfg)
    if not healthy(cfg):
        raise LabError("the lab came up but is not healthy; see `python -m tests.lab status` "
                       f"and the logs in {cfg.log_dir}")
    say("lab is up")


def _flavour_file(cfg: LabConfig):
    return cfg.state_dir / "flavour"


def running_flavour(cfg: LabConfig) -> str | None:
    """The flavour of the lab on this machine, None when there is none."""
    path, has_nodes = _flavour_file(cfg), (cfg.state_dir / "nodes").exists()
    # A lab made before there were flavours has nodes and no record: it is bookworm.
    return path.read_text() if path.exists() else ("bookworm" if has_nodes else None)


def _check_flavour(cfg: LabConfig) -> None:
    """One lab, one flavour: the nodes' data roots, once used by Engine 28.5, are not
    handed back to 20.10 (nor the reverse): switching needs `down` first."""
    path, has_nodes = _flavour_file(cfg), (cfg.state_dir / "nodes").exists()
    running = running_flavour(cfg)
    if has_nodes and running and running != cfg.flavour:
        raise LabError(f"the lab is up as {running!r}, asked for {cfg.flavour!r} "
                       "(SWARMGUARD_LAB_FLAVOUR): run `python -m tests.lab down` first")
    path.write_text(cfg.flavour)


def _workers_file(cfg: LabConfig):
    return cfg.state_dir / "workers"


def running_workers(cfg: LabConfig) -> int | None:
    """How many workers the lab on this machine has, None when it is down (a lab made
    before the count was recorded has the two it always had)."""
    path = _workers_file(cfg)
    if path.exists():
        return int(path.read_text())
    return 2 if (cfg.state_dir / "nodes").exists() else None


def _check_workers(cfg: LabConfig) -> None:
    """One lab, one size: a lab asked for with another SWARMGUARD_LAB_WORKERS than it runs
    with would leave the extra nodes unwatched, or `down` would leave them behind."""
    running = running_workers(cfg)
    if running is not None and running != len(cfg.workers):
        raise LabError(f"the lab is up with {running} workers, asked for {len(cfg.workers)} "
                       "(SWARMGUARD_LAB_WORKERS): run `python -m tests.lab down` first")
    _workers_file(cfg).write_text(str(len(cfg.workers)))


def as_running(cfg: LabConfig) -> LabConfig:
    """`cfg` with the nodes of the lab that runs: `down` removes every node `up` made,
    whatever SWARMGUARD_LAB_WORKERS says now."""
    running = running_workers(cfg)
    if running is None or running == len(cfg.workers):
        return cfg
    return dataclasses.replace(cfg, nodes=lab_nodes(str(running)))


def down(cfg: LabConfig) -> None:
    cfg = as_running(cfg)
    entrypoint.down(cfg)
    monitoring.down(cfg)
    nodes.stop_all(cfg)
    nodes.remove_data(cfg)
    network.down(cfg)
    for path in (cfg.run_dir, cfg.state_dir):
        shutil.rmtree(path, ignore_errors=True)
    say(f"lab is down (cache kept in {cfg.cache_dir})")


def remove_services(cfg: LabConfig) -> None:
    """Remove every service and stack from the lab's swarm (the lab is a test bed)."""
    from .services import remove_service
    for service in nodes.client(cfg, cfg.manager).services.list():
        say(f"removing leftover service {service.name}")
        remove_service(cfg, service.name)


def healthy(cfg: LabConfig) -> bool:
    """Up, every part answering, and of the flavour asked for: a lab of the other flavour
    is never reused by a test run, which would then test the wrong engines."""
    try:
        return (running_flavour(cfg) == cfg.flavour
                and network.healthy(cfg)
                and all(nodes.dockerd_running(cfg, n) for n in cfg.nodes)
                and nodes.all_ready(cfg)
                and (cfg.state_dir / "images.json").exists()
                and monitoring.healthy(cfg)
                and entrypoint.healthy(cfg))
    except Exception:
        return False


def fits(cfg: LabConfig) -> bool:
    """A lab runs, of the flavour and size `cfg` asks for (else `up` would refuse it)."""
    return running_flavour(cfg) == cfg.flavour and running_workers(cfg) == len(cfg.workers)


def status(cfg: LabConfig) -> dict:
    """Everything a person wants to know about the lab, as plain data."""
    cfg = as_running(cfg)
    running = running_flavour(cfg)
    report: dict = {"healthy": healthy(cfg), "flavour": running or "none (down)", "asked": cfg.flavour,
                    "workers": len(cfg.workers),
                    "min_api": cfg.min_api,
                    "packages": rootfs.versions(cfg) if running == "current" else {},
                    "nodes": [], "services": [], "urls": {
        "prometheus": cfg.prometheus_url, "alertmanager": cfg.alertmanager_url,
        "entrypoint": cfg.entrypoint_url,
        **{f"entrypoint_{e.published_port}": e.url for e in cfg.extra_apps},
        "haproxy_stats": f"http://127.0.0.1:{cfg.haproxy_stats_port}/",
        "receiver_webhook": cfg.receiver_webhook_url,
    }, "docker_hosts": {n.name: cfg.docker_url(n) for n in cfg.nodes}}
    if not all(nodes.dockerd_running(cfg, n) for n in cfg.nodes):
        return report
    c = nodes.client(cfg, cfg.manager, timeout=10)
    hostnames = {}
    for n in c.nodes.list():
        a = n.attrs
        hostnames[a["ID"]] = a["Description"]["Hostname"]
        report["nodes"].append({"hostname": a["Description"]["Hostname"], "id": a["ID"][:12],
                                "role": a["Spec"]["Role"], "state": a["Status"]["State"],
                                "availability": a["Spec"]["Availability"], "addr": a["Status"]["Addr"]})
    for s in c.services.list():
        tasks = [{"id": t["ID"][:12], "node": hostnames.get(t.get("NodeID"), "-"),
                  "desired": t["DesiredState"], "state": t["Status"]["State"]}
                 for t in s.tasks() if t["DesiredState"] == "running" or t["Status"]["State"] == "running"]
        report["services"].append({"name": s.name, "labels": s.attrs["Spec"].get("Labels", {}),
                                   "tasks": tasks})
    return report


def format_status(report: dict) -> str:
    floor = f", nodes refuse API < {report['min_api']}" if report["min_api"] else ""
    asked = "" if report["flavour"] == report["asked"] else f"; asked for {report['asked']}"
    lines = [f"SwarmGuard lab: {'healthy' if report['healthy'] else 'NOT healthy'} "
             f"(flavour {report['flavour']}, {report['workers']} workers{floor}{asked})"]
    if report["packages"]:
        lines.append("  from Debian sid: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items()))
    lines += ["", "Nodes:"]
    for n in sorted(report["nodes"], key=lambda n: n["hostname"]):
        lines.append(f"  {n['hostname']:<10} {n['role']:<8} {n['state']:<6} {n['availability']:<7} "
                     f"{n['addr']:<13} {n['id']}")
    lines += ["", "Services:"]
    if not report["services"]:
        lines.append("  (none)")
    for s in report["services"]:
        lines.append(f"  {s['name']}")
        for t in s["tasks"]:
            lines.append(f"    task {t['id']} on {t['node']:<9} {t['state']} (desired {t['desired']})")
    lines += ["", "URLs:"] + [f"  {k:<17} {v}" for k, v in report["urls"].items()]
    lines += ["", "Docker hosts (export DOCKER_HOST=... to use the docker CLI):"]
    lines += [f"  {k:<9} {v}" for k, v in report["docker_hosts"].items()]
    return "\n".join(lines)


def status_json(cfg: LabConfig) -> str:
    return json.dumps(status(cfg), indent=2)


def running_versions(cfg: LabConfig) -> dict[str, str]:
    """The versions of the parts the lab runs, asked of each running part itself (not of
    the packages): what a demo or a benchmark really ran against."""
    import requests

    def ask(read) -> str:
        try:
            return str(read())
        except Exception as exc:  # a part that does not answer is reported, not fatal
            return f"? ({type(exc).__name__})"

    def get(url: str) -> dict:
        r = requests.get(url, timeout=5)
        r.raise_for_status()
        return r.json()

    cadvisor = f"http://{cfg.manager.ip}:{cfg.cadvisor_port}"
    return {
        "Docker Engine": ask(lambda: nodes.client(cfg, cfg.manager, timeout=10).version()["Version"]),
        "Prometheus": ask(lambda: get(f"{cfg.prometheus_url}/api/v1/status/buildinfo")["data"]["version"]),
        "Alertmanager": ask(lambda: get(f"{cfg.alertmanager_url}/api/v2/status")["versionInfo"]["version"]),
        "cAdvisor": ask(lambda: get(f"{cadvisor}/api/v2.0/version")),
    }
