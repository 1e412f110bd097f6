"""One dockerd per swarm node, each in its own network namespace and UTS namespace,
joined into one swarm: a manager and workers, with distinct hostnames."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import docker

from . import rootfs
from ..config import LabConfig, Node
from .system import LabError, alive, in_netns, read_pid, say, start_daemon, stop_pid, wait_for


def client(cfg: LabConfig, node: Node, timeout: int = 60) -> docker.DockerClient:
    return docker.DockerClient(base_url=cfg.docker_url(node), version=cfg.client_api_version,
                               timeout=timeout)


def data_root(cfg: LabConfig, node: Node) -> Path:
    return cfg.state_dir / "nodes" / node.name


def exec_root(cfg: LabConfig, node: Node) -> Path:
    return cfg.run_dir / "exec" / node.name


def pidfile(cfg: LabConfig, node: Node) -> Path:
    return cfg.run_dir / f"{node.name}.dockerd.pid"


def dockerd_running(cfg: LabConfig, node: Node) -> bool:
    return alive(read_pid(pidfile(cfg, node)), "dockerd")


def _launch(cfg: LabConfig, node: Node) -> tuple[list[str], dict[str, str]]:
    """The command that starts the node's dockerd, and the environment it adds."""
    dockerd = [
        "dockerd",
        f"--data-root={data_root(cfg, node)}",
        f"--exec-root={exec_root(cfg, node)}",
        f"--host={cfg.docker_url(node)}",
        f"--pidfile={pidfile(cfg, node)}",
        "--log-level=warn",
        # Each node is its own machine: no shared containerd, no shared state.
        f"--label=swarmguard-lab.node={node.name}",
    ]
    if cfg.flavour == "current":
        # From the sid root (rootfs.py), with its own mount namespace and hostname.
        launcher = rootfs.command(cfg, dockerd, hostname=node.name)
    else:
        # unshare --uts gives the node its own hostname, so node.hostname constraints and
        # the swarm node's Description.Hostname mean something.
        launcher = ["unshare", "--uts", "sh", "-c", f"hostname {node.name} && exec {' '.join(dockerd)}"]
    # dockerd 28.5 reads its minimum API version from the environment only
    # (cmd/dockerd/daemon.go, loadDaemonCliConfig: DOCKER_MIN_API_VERSION).
    env = {"DOCKER_MIN_API_VERSION": cfg.min_api} if cfg.min_api else {}
    return in_netns(node.netns, launcher), env


def _launch_file(cfg: LabConfig, node: Node) -> Path:
    return cfg.run_dir / f"{node.name}.dockerd.cmd"


def start_dockerd(cfg: LabConfig, node: Node) -> None:
    """Start the node's dockerd; restart it when it runs with another launch (another
    API floor): its swarm state stays in its data root, Swarm restarts its tasks."""
    cmd, env = _launch(cfg, node)
    launch = "\0".join([*cmd, *(f"{k}={v}" for k, v in env.items())])
    recorded = _launch_file(cfg, node)
    if dockerd_running(cfg, node):
        # No record: started before launches were recorded, with the engine's own floor.
        if (recorded.read_text() == launch) if recorded.exists() else not cfg.min_api:
            return
        say(f"restarting dockerd for {node.name} (API floor now {cfg.min_api or 'the default'})")
        stop_dockerd(cfg, node)
    say(f"starting dockerd for {node.name}")
    data_root(cfg, node).mkdir(parents=True, exist_ok=True)
    exec_root(cfg, node).mkdir(parents=True, exist_ok=True)
    start_daemon(cmd, pidfile=cfg.run_dir / f"{node.name}.dockerd.launcher.pid",
                 logfile=cfg.log_dir / f"{node.name}-dockerd.log", env={**os.environ, **env})
    recorded.write_text(launch)


def stop_dockerd(cfg: LabConfig, node: Node) -> None:
    stop_pid(read_pid(pidfile(cfg, node)), "dockerd", timeout=30)
    stop_pid(read_pid(cfg.run_dir / f"{node.name}.dockerd.launcher.pid"), "dockerd", timeout=5)


def wait_dockerd(cfg: LabConfig, node: Node) -> None:
    wait_for(f"dockerd on {node.name}", lambda: client(cfg, node, timeout=5).ping(), timeout=90)


def form_swarm(cfg: LabConfig) -> None:
    manager = cfg.manager
    mc = client(cfg, manager)
    info = mc.info()["Swarm"]
    if info.get("LocalNodeState") != "active":
        say(f"initialising the swarm on {manager.name} ({manager.ip})")
        mc.swarm.init(advertise_addr=manager.ip, listen_addr=f"{manager.ip}:2377",
                      default_addr_pool=[cfg.overlay_pool], subnet_size=24)
    mc.swarm.reload()
    token = mc.swarm.attrs["JoinTokens"]["Worker"]
    for worker in cfg.workers:
        wc = client(cfg, worker)
        if wc.info()["Swarm"].get("LocalNodeState") == "active":
            continue
        say(f"joining {worker.name} ({worker.ip}) to the swarm")
        wc.swarm.join(remote_addrs=[f"{manager.ip}:2377"], join_token=token,
                      advertise_addr=worker.ip, listen_addr=f"{worker.ip}:2377")
    wait_for("every node Ready", lambda: all_ready(cfg), timeout=60)
    for node in mc.nodes.list():
        # Labels mirror the hostname so constraints can also use node.labels.
        spec = node.attrs["Spec"]
        name = node.attrs["Description"]["Hostname"]
        if spec.get("Labels", {}).get("swarmguard-lab.node") != name:
            spec.setdefault("Labels", {})["swarmguard-lab.node"] = name
            node.update(spec)


def all_ready(cfg: LabConfig) -> bool:
    nodes = client(cfg, cfg.manager).nodes.list()
    ready = {n.attrs["Description"]["Hostname"] for n in nodes if n.attrs["Status"]["State"] == "ready"}
    return ready >= {n.name for n in cfg.nodes}


def stop_all(cfg: LabConfig) -> None:
    for node in reversed(cfg.nodes):
        pid = read_pid(pidfile(cfg, node))
        if not alive(pid, "dockerd"):
            continue
        say(f"stopping dockerd for {node.name}")
        try:  # removing containers first keeps dockerd's shutdown short and clean
            c = client(cfg, node, timeout=20)
            for container in c.containers.list(all=True):
                container.remove(force=True)
        except Exception as exc:  # a broken node must still be torn down
            say(f"  could not remove containers on {node.name}: {exc}")
        stop_dockerd(cfg, node)


def unmount_under(path: Path) -> None:
    """Unmount whatever a dockerd left mounted below path (deepest first)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].encode().decode("unicode_escape")
        if mount_point == str(path) or mount_point.startswith(str(path) + "/"):
            mounts.append(mount_point)
    for mount_point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)


def remove_data(cfg: LabConfig) -> None:
    for path in (cfg.state_dir / "nodes", cfg.run_dir / "exec"):
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            raise LabError(f"could not remove {path}")
