"""The lab's stand-in for the routing mesh's service binding.

In production the routing mesh stops sending new connections to a task as soon as Swarm
tells the task to shut down (the agent deactivates the task's service binding, waits for
the network to converge, and only then stops the container). HAProxy alone learns of a
stopping task only from a failed health check, and a request that arrives in between can
hang in the closing server's backlog. This loop closes that gap the way the mesh does:
every 200 ms it reads the services and tasks from the manager once, and for each entry
point (one HAProxy backend per published port, LabConfig.entry_points) puts a node's
server into maintenance when no task there of a service publishing that port is meant to
run, and back to ready when one is (health checks still decide when a starting task gets
traffic).

Run by the lab controller as `python -m tests.lab.infra.meshsync`; stopped by `down`.
"""
from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterable

from ..config import DEFAULT, LabConfig
from .nodes import client


def publishing_services(services: Iterable[dict], port: int) -> set[str]:
    """IDs of services that publish `port` in host mode (what the entry point balances)."""
    out = set()
    for s in services:
        for p in (s.get("Spec", {}).get("EndpointSpec") or {}).get("Ports") or []:
            if p.get("PublishedPort") == port and p.get("PublishMode") == "host":
                out.add(s["ID"])
    return out


def server_states(tasks: Iterable[dict], service_ids: set[str], node_names: dict[str, str],
                  servers: Iterable[str]) -> dict[str, str]:
    """HAProxy server (node name) -> "ready" when a task of a balanced service is meant to
    run on that node, else "maint"."""
    wanted = {node_names.get(t.get("NodeID", ""), "") for t in tasks
              if t.get("ServiceID") in service_ids and t.get("DesiredState") == "running"}
    return {name: "ready" if name in wanted else "maint" for name in servers}


def backend_states(services: Iterable[dict], tasks: Iterable[dict], node_names: dict[str, str],
                   backends: dict[int, str], servers: Iterable[str]) -> dict[tuple[str, str], str]:
    """(HAProxy backend, server) -> "ready" or "maint" for every entry point, from one read
    of the services and tasks; `backends`: published port -> its backend's name."""
    services, tasks, servers = list(services), list(tasks), list(servers)
    return {(backend, server): state
            for port, backend in backends.items()
            for server, state in server_states(tasks, publishing_services(services, port), node_names,
                                               servers).items()}


def haproxy_command(sock_path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(sock_path)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def run(cfg: LabConfig, interval: float = 0.2) -> None:
    api = client(cfg, cfg.manager, timeout=5).api
    sock = str(cfg.run_dir / "haproxy.sock")
    servers = [n.name for n in cfg.workers]
    backends = {entry.published_port: entry.name for entry in cfg.entry_points}
    applied: dict[tuple[str, str], str] = {}
    node_names: dict[str, str] = {}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        try:
            if len(node_names) < len(cfg.nodes):
                node_names = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}
            services = api.services()
            balanced = any(publishing_services(services, port) for port in backends)
            tasks = api.tasks(filters={"desired-state": "running"}) if balanced else []
            for (backend, server), state in backend_states(services, tasks, node_names, backends,
                                                           servers).items():
                if applied.get((backend, server)) != state:
                    haproxy_command(sock, f"set server {backend}/{server} state {state}")
                    applied[(backend, server)] = state
                    print(f"{time.strftime('%H:%M:%S')} {backend}/{server} -> {state}", flush=True)
        except Exception as exc:  # the manager or HAProxy restarting: try again next tick
            print(f"{time.strftime('%H:%M:%S')} poll failed: {exc}", flush=True)
            applied.clear()
        time.sleep(interval)


if __name__ == "__main__":
    run(DEFAULT)
    sys.exit(0)
