"""The exporter's configuration: one frozen dataclass, filled from flags whose defaults
come from ``SWARMGUARD_EXPORTER_*`` environment variables.

Each flag ``--some-name`` takes its default from ``SWARMGUARD_EXPORTER_SOME_NAME``, so a
Swarm service can be configured with environment variables alone and a person at a shell
with flags alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ENV_PREFIX = "SWARMGUARD_EXPORTER_"


@dataclass(frozen=True)
class ExporterConfig:
    # This node's Docker daemon: the exporter lists the node's swarm task containers there
    # (read-only; the socket is mounted :ro in the bundle). The API version is negotiated.
    docker_url: str = "unix:///var/run/docker.sock"
    docker_timeout_seconds: float = 5.0
    listen_address: str = "0.0.0.0"
    listen_port: int = 9101
    # Interface capacity in Mbit/s. None: read /sys/class/net/<interface>/speed.
    capacity_mbps: float | None = None
    interface: str = "eth0"
    # Where sysfs is mounted; a container that reads the host's speed mounts it elsewhere.
    sysfs_root: str = "/sys"
    # The host's /proc (task processes' cgroup and net/dev, the node's memory) and cgroup
    # tree; a container mounts them read-only elsewhere, e.g. /host/proc.
    proc_root: str = "/proc"
    cgroup_root: str = "/sys/fs/cgroup"
    # Docker's event stream says when to re-list the node's tasks; a full re-list this
    # often as well covers events lost while the stream reconnected.
    resync_seconds: float = 30.0
    # Two readings of a container closer than this (two Prometheus servers scraping close
    # together) give no new network rate: the last one is repeated.
    min_rate_interval_seconds: float = 0.2
    log_level: str = "INFO"


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def _optional_capacity(text: str) -> float | None:
    # An empty value (e.g. SWARMGUARD_EXPORTER_CAPACITY_MBPS="") means "not configured".
    if text.strip() == "":
        return None
    return _positive_float(text)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (0-65535), not {text!r}")
    return value


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    defaults = ExporterConfig()
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

    def add(flag: str, default: object, **kwargs: object) -> None:
        env = _env_name(flag)
        # argparse applies `type` to string defaults, so a bad environment value is
        # reported exactly like a bad flag.
        parser.add_argument(flag, default=environ.get(env, default), **kwargs)

    add("--docker-url", defaults.docker_url, help="this node's Docker daemon")
    add("--docker-timeout-seconds", defaults.docker_timeout_seconds, type=_positive_float,
        help="timeout of one Docker API call")
    add("--listen-address", defaults.listen_address, help="address to serve /metrics on")
    add("--listen-port", defaults.listen_port, type=_port, help="port to serve /metrics on")
    add(
        "--capacity-mbps",
        defaults.capacity_mbps,
        type=_optional_capacity,
        help="interface capacity in Mbit/s; unset: read it from sysfs",
    )
    add("--interface", defaults.interface, help="node interface whose capacity is 100 %%")
    add("--sysfs-root", defaults.sysfs_root, help="where sysfs is mounted")
    add("--proc-root", defaults.proc_root, help="where the host's /proc is mounted")
    add("--cgroup-root", defaults.cgroup_root, help="where the host's cgroup tree is mounted")
    add("--resync-seconds", defaults.resync_seconds, type=_positive_float,
        help="re-list the node's tasks at least this often")
    add("--min-rate-interval-seconds", defaults.min_rate_interval_seconds, type=_positive_float,
        help="shortest interval a network rate is computed over")
    add(
        "--log-level",
        defaults.log_level,
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    return parser


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> ExporterConfig:
    """Return the effective configuration; exits with status 2 on a bad flag or variable."""
    args = build_parser(environ).parse_args(argv)
    return ExporterConfig(**vars(args))
