"""The lab's stand-in for the routing mesh's service binding.

In production the routing mesh stops sending new connections to a task as soon as Swarm
tells the task to shut down (the agent deactivates the task's service binding, waits for
the network to converge, and only then stops the container). HAProxy alone learns of a
stopping task only from a failed health check, and a request that arrives in between can
hang in the closing server's backlog. This loop closes that gap the way the mesh does:
every 200 ms it reads the tasks from the manager, and puts a node's server into
maintenance in HAProxy when no task there is meant to run, and back to ready when one is
(health checks still decide when a starting task gets traffic).

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
    applied: dict[str, str] = {}
    node_names: dict[str, str] = {}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        try:
            if len(node_names) < len(cfg.nodes):
                node_names = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}
            ids = publishing_services(api.services(), cfg.app_published_port)
            tasks = api.tasks(filters={"desired-state": "running"}) if ids else []
            for server, state in server_states(tasks, ids, node_names, servers).items():
                if applied.get(server) != state:
                    haproxy_command(sock, f"set server app/{server} state {state}")
                    applied[server] = state
                    print(f"{time.strftime('%H:%M:%S')} {server} -> {state}", flush=True)
        except Exception as exc:  # the manager or HAProxy restarting: try again next tick
            print(f"{time.strftime('%H:%M:%S')} poll failed: {exc}", flush=True)
            applied.clear()
        time.sleep(interval)


if __name__ == "__main__":
    run(DEFAULT)
    sys.exit(0)
