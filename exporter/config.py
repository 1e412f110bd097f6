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
    # Base URL of this node's cAdvisor. The exporter must read the cAdvisor of its own
    # node: cAdvisor only knows the containers of the Docker daemon it watches.
    cadvisor_url: str = "http://127.0.0.1:8080"
    listen_address: str = "0.0.0.0"
    listen_port: int = 9101
    # Interface capacity in Mbit/s. None: read /sys/class/net/<interface>/speed.
    capacity_mbps: float | None = None
    interface: str = "eth0"
    # Where sysfs is mounted; a container that reads the host's speed mounts it elsewhere.
    sysfs_root: str = "/sys"
    # Must stay well under Prometheus' scrape timeout (1 s on the detection path), so that
    # a slow cAdvisor turns into "cadvisor_up 0" rather than a failed scrape.
    timeout_seconds: float = 0.5
    # A container whose newest cAdvisor sample is older than this publishes no value: its
    # rate would describe the past, not now. cAdvisor samples every 1-2 s when run with
    # -housekeeping_interval=1s -allow_dynamic_housekeeping=false.
    max_sample_age_seconds: float = 10.0
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
            "Publish the network use of each Docker Swarm task on this node as a "
            "percentage of the node interface's capacity, read from the node's cAdvisor."
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

    add("--cadvisor-url", defaults.cadvisor_url, help="base URL of this node's cAdvisor")
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
    add(
        "--timeout-seconds",
        defaults.timeout_seconds,
        type=_positive_float,
        help="timeout of one cAdvisor request",
    )
    add(
        "--max-sample-age-seconds",
        defaults.max_sample_age_seconds,
        type=_positive_float,
        help="ignore containers whose newest cAdvisor sample is older than this",
    )
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
