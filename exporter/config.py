"""The exporter's configuration: one frozen dataclass, filled from flags whose defaults
come from ``SWARMGUARD_EXPORTER_*`` environment variables.

Follows the project's configuration pattern (swarmguard_config; docs/contract.md,
"Environment variables"): each field is read from SWARMGUARD_EXPORTER_<FIELD>, coerced by
its type and checked against the bounds in its metadata. Each flag ``--some-name`` sets
the field ``some_name`` and wins over the variable, so a Swarm service can be configured
with environment variables alone and a person at a shell with flags alone.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from swarmguard_config import POSITIVE, ConfigError, Layer, load

ENV_PREFIX = "SWARMGUARD_EXPORTER_"


@dataclass(frozen=True)
class ExporterConfig:
    # This node's Docker daemon: the exporter lists the node's swarm task containers there
    # (read-only; the socket is mounted :ro in the bundle). The API version is negotiated.
    docker_url: str = "unix:///var/run/docker.sock"
    docker_timeout_seconds: float = field(default=5.0, metadata=POSITIVE)
    listen_address: str = "0.0.0.0"
    listen_port: int = field(default=9101, metadata={"min": 0, "max": 65535})
    # What a connection to /metrics or /opted-in may hold (exporter/server.py says how each is used):
    # seconds to send a whole request head (from its opening, or from the first byte of a
    # later request) and to take its answer; seconds a kept-alive connection may send
    # nothing; connections open at once. Prometheus scrapes every 500 ms on one kept-alive
    # connection, its request in one packet.
    request_timeout_seconds: float = field(default=5.0, metadata=POSITIVE)
    idle_timeout_seconds: float = field(default=10.0, metadata=POSITIVE)
    max_connections: int = field(default=512, metadata={"min": 1})
    # Interface capacity in Mbit/s. None (unset or empty): read
    # /sys/class/net/<interface>/speed.
    capacity_mbps: float | None = field(default=None, metadata=POSITIVE)
    interface: str = "eth0"
    # Where sysfs is mounted; a container that reads the host's speed mounts it elsewhere.
    sysfs_root: str = "/sys"
    # The host's /proc (task processes' cgroup and net/dev, the node's memory) and cgroup
    # tree; a container mounts them read-only elsewhere, e.g. /host/proc.
    proc_root: str = "/proc"
    cgroup_root: str = "/sys/fs/cgroup"
    # Docker's event stream says when to re-list the node's tasks; a full re-list this
    # often as well covers events lost while the stream reconnected.
    resync_seconds: float = field(default=30.0, metadata=POSITIVE)
    # Two readings of a container closer than this (two Prometheus servers scraping close
    # together) give no new network rate: the last one is repeated.
    min_rate_interval_seconds: float = field(default=0.2, metadata=POSITIVE)
    # On a manager, how often the services opted in to SwarmGuard are read for GET
    # /opted-in (exporter/opt_in.py).
    opt_in_interval_seconds: float = field(default=5.0, metadata=POSITIVE)
    log_level: str = field(default="INFO",
                           metadata={"one_of": ("DEBUG", "INFO", "WARNING", "ERROR")})


# One line of --help per field; the flag's name, variable and default are added to it.
_HELP = {
    "docker_url": "this node's Docker daemon",
    "docker_timeout_seconds": "timeout of one Docker API call",
    "listen_address": "address to serve /metrics on",
    "listen_port": "port to serve /metrics on",
    "request_timeout_seconds": "seconds a connection has to send a whole request, and to take its answer",
    "idle_timeout_seconds": "seconds a kept-alive connection may send nothing before it is closed",
    "max_connections": "connections open at once; past it, the one that waited longest is closed",
    "capacity_mbps": "interface capacity in Mbit/s; unset: read it from sysfs",
    "interface": "node interface whose capacity is 100 %%",
    "sysfs_root": "where sysfs is mounted",
    "proc_root": "where the host's /proc is mounted",
    "cgroup_root": "where the host's cgroup tree is mounted",
    "resync_seconds": "re-list the node's tasks at least this often",
    "min_rate_interval_seconds": "shortest interval a network rate is computed over",
    "opt_in_interval_seconds": "on a manager, read the services opted in to SwarmGuard this often",
    "log_level": "logging level: DEBUG, INFO, WARNING or ERROR",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exporter",
        description=(
            "Publish each Docker Swarm task's CPU, memory and network use on this node, read "
            "from its cgroup and network namespace at scrape time (docs/contract.md)."
        ),
        epilog=(
            f"Every flag --some-name defaults to the environment variable {ENV_PREFIX}SOME_NAME."
        ),
    )
    for f in dataclasses.fields(ExporterConfig):
        # No argparse default and no type: a flag left out must let the variable through,
        # and both are coerced and checked by the same code (swarmguard_config).
        parser.add_argument(
            _flag(f.name), dest=f.name,
            help=f"{_HELP[f.name]} ({ENV_PREFIX}{f.name.upper()}, default {f.default})",
        )
    return parser


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> ExporterConfig:
    """Return the effective configuration; exits with status 2 on a bad flag or variable."""
    parser = build_parser()
    flags = {name: value for name, value in vars(parser.parse_args(argv)).items()
             if value is not None}
    try:
        return load(ExporterConfig, ENV_PREFIX, environ, above_env=Layer(flags, _flag))
    except ConfigError as exc:
        # argparse's own way out: usage, the message, status 2, as for an unknown flag.
        parser.error(str(exc))
