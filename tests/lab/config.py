"""Where the lab lives and how it is wired: one frozen dataclass, nothing else.

Every name the lab creates (namespaces, bridge, iptables comment, directories) comes from
here, so `down` can find and remove exactly what `up` made, and nothing else.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Node:
    name: str  # also the node's hostname inside the swarm
    ip: str
    role: str  # "manager" or "worker"

    @property
    def netns(self) -> str:
        return f"sglab-{self.name}"

    @property
    def host_veth(self) -> str:
        # Interface names are limited to 15 characters.
        return f"sgv-{self.name}"[:15]


@dataclass(frozen=True)
class EntryPoint:
    """One HAProxy frontend on loopback balancing one host-mode published port over every
    worker, as the routing mesh would that port (tests/lab/infra/entrypoint.py)."""
    published_port: int  # the services' port on every worker
    port: int  # where HAProxy listens, on 127.0.0.1
    name: str  # HAProxy's frontend and backend

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


FLAVOURS = ("current", "bookworm")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


# Each worker is a dockerd, a cAdvisor, an exporter and a detection Prometheus on the
# lab's two cores; 9 keeps the addresses below the manager's .10 + 10 and the lab usable.
MAX_WORKERS = 9


def lab_nodes(workers: str) -> tuple[Node, ...]:
    """The manager (10.200.0.10) and `workers` workers worker-1.. (10.200.0.11..): the
    value of SWARMGUARD_LAB_WORKERS."""
    if not re.fullmatch(r"[1-9]\d*", workers) or int(workers) > MAX_WORKERS:
        raise ValueError(f"SWARMGUARD_LAB_WORKERS={workers!r}: expected a whole number from 1 "
                         f"to {MAX_WORKERS}")
    return (Node("manager", "10.200.0.10", "manager"),
            *(Node(f"worker-{i}", f"10.200.0.{10 + i}", "worker") for i in range(1, int(workers) + 1)))


@dataclass(frozen=True)
class LabConfig:
    # Which engines the lab runs (docs/lab.md, "Lab flavours"). `current`: every node's dockerd,
    # and Prometheus, Alertmanager and HAProxy, from a Debian sid root filesystem (Engine
    # 28.5, Prometheus 3.5, Alertmanager 0.33, HAProxy 3.2; tests/lab/infra/rootfs.py).
    # `bookworm`: Debian 12's packages on the host (Engine 20.10, Prometheus 2.42,
    # Alertmanager 0.25). cAdvisor is bullseye's 0.38.7 in both: nothing newer is packaged.
    flavour: str = field(default_factory=lambda: _env("SWARMGUARD_LAB_FLAVOUR", "current"))
    # The lowest API version the nodes' dockerd accept (DOCKER_MIN_API_VERSION, read by
    # Engine 25+ at start; `current` only). "1.44" is Engine 29.0-29.2's floor, which
    # refuses cAdvisor before v0.54 and Prometheus 2.x's Swarm discovery. None: the
    # engine's own default (1.24 on 28.5).
    min_api: str | None = field(default_factory=lambda: _env("SWARMGUARD_LAB_MIN_API"))
    bridge: str = "sglab0"
    subnet: str = "10.200.0.0/24"
    bridge_ip: str = "10.200.0.1"
    prefix_len: int = 24
    # Overlay subnets come from here, kept well away from the lab's own subnet.
    overlay_pool: str = "10.210.0.0/16"
    # The manager and SWARMGUARD_LAB_WORKERS workers (2 unless set: lab_nodes).
    nodes: tuple[Node, ...] = field(default_factory=lambda: lab_nodes(_env("SWARMGUARD_LAB_WORKERS", "2")))
    iptables_comment: str = "swarmguard-lab"
    state_dir: Path = Path("/var/lib/swarmguard-lab")
    run_dir: Path = Path("/run/swarmguard-lab")
    cache_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("SWARMGUARD_LAB_CACHE", str(Path.home() / ".cache" / "swarmguard-lab"))
        )
    )
    # Host-side (loopback) services.
    # The central Prometheus (scale-down, detection health, the global view) and, from
    # node_prometheus_base_port up, one Prometheus per node for that node's detection:
    # the per-node layout (docs/contract.md, "Rule files and layouts").
    prometheus_port: int = 9090
    node_prometheus_base_port: int = 9290
    # Two Alertmanagers, clustered (gossip on the cluster ports), as the bundle's HA pair.
    alertmanager_port: int = 9093
    alertmanager_peer_port: int = 9095
    alertmanager_cluster_ports: tuple[int, int] = (9094, 9096)
    entrypoint_port: int = 8080  # HAProxy frontend, stands in for the routing mesh
    haproxy_stats_port: int = 8404
    receiver_port: int = 8000  # where the lab's Alertmanager delivers webhooks
    # A receiver only its test posts to. Alertmanager keeps delivering what earlier tests
    # left firing or resolving (it retries a receiver that was down), which a test that
    # counts its receiver's decisions must never see.
    private_receiver_port: int = 8020
    cadvisor_port: int = 8080  # on each node's own address
    # What 100 % network means on a lab node. The veths claim 10 Gbit/s, which no task
    # on two shared cores can approach; a small capacity lets a stress task cross the
    # thresholds (35 %, 65 %) with a few Mbit/s, as a busy task would on a 100 Mbit/s NIC.
    node_capacity_mbps: int = 20
    # Host-mode published port that the entry point balances over, on every worker.
    app_published_port: int = 8081
    # More apps, each with its own published port and entry point, so that several
    # single-replica services can each be followed across nodes at once (the drain
    # benchmark's four: the app's port and the first three).
    extra_apps: tuple[EntryPoint, ...] = (
        EntryPoint(8082, 8182, "app8082"),
        EntryPoint(8083, 8183, "app8083"),
        EntryPoint(8084, 8184, "app8084"),
        # The soak's dozen services, each followed by its own probe (tests/soak/).
        *(EntryPoint(port, port + 100, f"app{port}") for port in range(8085, 8093)),
    )
    apt_packages: tuple[str, ...] = (
        "docker.io",
        "prometheus",
        "prometheus-alertmanager",
        "haproxy",
        "busybox-static",
        "debootstrap",
        "iptables",
        "iproute2",
        "util-linux",
        "zstd",  # the `current` flavour's root filesystem is cached as a .tar.zst
    )
    debian_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"
    cadvisor_suite: str = "bullseye"

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"SWARMGUARD_LAB_FLAVOUR={self.flavour!r}: expected one of {', '.join(FLAVOURS)}")
        if self.min_api and not re.fullmatch(r"1\.\d+", self.min_api):
            raise ValueError(f"SWARMGUARD_LAB_MIN_API={self.min_api!r}: expected an API version such as 1.44")
        if self.min_api and self.flavour != "current":
            # Engine 20.10 has no minimum-API setting: the floor would silently not be there.
            raise ValueError(f"SWARMGUARD_LAB_MIN_API={self.min_api} needs the `current` flavour "
                             f"(Engine 28.5); {self.flavour} runs Engine 20.10")

    @property
    def client_api_version(self) -> str:
        """The API version the lab's own docker clients pin: Engine 20.10's 1.41 on
        `bookworm`; on `current` at least 1.44, the first version whose services carry a
        health check's StartInterval (below it the daemon zeroes the field), or the
        nodes' floor when that is higher."""
        if self.flavour == "bookworm":
            return "1.41"
        floor = self.min_api or "1.44"
        return max(floor, "1.44", key=lambda v: tuple(int(p) for p in v.split(".")))

    @property
    def health_start_interval_supported(self) -> bool:
        """Engine 25+ (API 1.44) probes every StartInterval (default 5 s) during a health
        check's start period; 20.10 has no such setting and probes every Interval."""
        return self.flavour != "bookworm"

    @property
    def manager(self) -> Node:
        return next(n for n in self.nodes if n.role == "manager")

    @property
    def workers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "worker")

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def docker_socket(self, node: Node) -> Path:
        return self.run_dir / f"{node.name}.sock"

    def docker_url(self, node: Node) -> str:
        return f"unix://{self.docker_socket(node)}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def node_prometheus_port(self, node: Node) -> int:
        return self.node_prometheus_base_port + self.nodes.index(node)

    def node_prometheus_url(self, node: Node) -> str:
        return f"http://127.0.0.1:{self.node_prometheus_port(node)}"

    @property
    def prometheus_urls(self) -> tuple[str, ...]:
        """Every Prometheus that fires SwarmGuard's alerts: the central one first, then
        each node's."""
        return (self.prometheus_url, *(self.node_prometheus_url(n) for n in self.nodes))

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def alertmanager_urls(self) -> tuple[str, ...]:
        """Both Alertmanagers of the clustered pair; the first is `alertmanager_url`."""
        return (self.alertmanager_url, f"http://127.0.0.1:{self.alertmanager_peer_port}")

    @property
    def entrypoint_url(self) -> str:
        return f"http://127.0.0.1:{self.entrypoint_port}"

    @property
    def entry_points(self) -> tuple[EntryPoint, ...]:
        """Every entry point: the app's (entrypoint_port, backend `app`) first."""
        return (EntryPoint(self.app_published_port, self.entrypoint_port, "app"), *self.extra_apps)

    def entry_url(self, published_port: int) -> str:
        """The entry point that balances `published_port`, as a URL."""
        for entry in self.entry_points:
            if entry.published_port == published_port:
                return entry.url
        raise ValueError(f"no entry point balances published port {published_port} "
                         f"(entry points: {', '.join(str(e.published_port) for e in self.entry_points)})")

    @property
    def receiver_webhook_url(self) -> str:
        # Alertmanager runs on the host, so the receiver is reached on loopback.
        return f"http://127.0.0.1:{self.receiver_port}/alerts"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "swarmguard_token"

    @property
    def web_password_file(self) -> Path:
        """The password of the user `swarmguard` on the stack's Prometheus and
        Alertmanager (their web config): made by the bundle's deploy, read by the bundle
        tests (tests/lab/infra/stack.py)."""
        return self.state_dir / "swarmguard_web_password"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


DEFAULT = LabConfig()
