"""Configuration of the stress app: one frozen dataclass, read once from the environment.

The caps here are the promise that a stress request cannot take the node further than
what it asked for: every request is checked against them (see params.py), and the
running processes enforce the duration themselves (see workers.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from stress.identity import Identity

ENV_PREFIX = "STRESS_"


@dataclass(frozen=True)
class StressLimits:
    """Hard caps and defaults for every stress request."""

    # Nothing runs longer than this, whatever the request says.
    max_duration_s: float = 600.0
    # Used when a request names no duration: long enough for an alert's `for:` window.
    default_duration_s: float = 60.0
    # Percent of the container's CPU allowance (its cgroup quota, else its cores).
    max_cpu_percent: float = 100.0
    # Absolute cap for a memory stress; the container's own limit minus headroom may
    # lower it further (params.Bounds), so the stress never gets the task OOM-killed.
    max_memory_mb: int = 4096
    # Room left for the app itself (Python, gunicorn, the stress processes, page cache).
    memory_headroom_mb: int = 64
    # Mbit/s of UDP payload; a Python sender tops out at a few hundred anyway.
    max_network_mbps: float = 1000.0


@dataclass(frozen=True)
class StressConfig:
    limits: StressLimits = field(default_factory=StressLimits)
    identity: Identity = field(default_factory=Identity)
    # Where the cgroup hierarchy is mounted; a parameter so tests use fixture trees.
    cgroup_root: str = "/sys/fs/cgroup"
    # This process's cgroup membership, to find its own limits when it is not the
    # root of the mount (outside a container). Empty string: look at the root only.
    self_cgroup_path: str = "/proc/self/cgroup"
    # Routing table read for the default gateway, the network stress's default sink.
    route_path: str = "/proc/net/route"
    # "host:port" the network stress sends to when the request names no target.
    network_sink: str | None = None
    # Port used on the default gateway: discard (9) - nobody is meant to answer.
    default_sink_port: int = 9
    # UDP payload per datagram: below any overlay MTU (1450) so nothing fragments.
    datagram_bytes: int = 1200
    # CPU duty-cycle period; aligned with the CFS period (100 ms) so a quota is met
    # evenly instead of in bursts followed by throttling.
    cpu_slice_s: float = 0.1
    # Stress processes run niced, so the web app (health checks, probes) still gets
    # the CPU it needs first; they only take what is otherwise idle in the allowance.
    worker_nice: int = 10
    # forkserver: children are forked from a clean single-threaded server, not from the
    # multithreaded gunicorn worker (forking a threaded process can inherit held locks).
    start_method: str = "forkserver"
    # How long to wait for a stress process to exit after SIGTERM before SIGKILL.
    stop_timeout_s: float = 2.0
    # Seconds of full-allowance CPU burnt from the moment the app starts, as a JVM's or a
    # big Python app's start-up does (0: none). The lab uses it to check that a freshly
    # moved task is not judged hot on its own start-up.
    startup_cpu_s: float = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "StressConfig":
        """Build the configuration from STRESS_* variables; a bad value raises ValueError,
        so a misconfigured app refuses to start instead of running with surprise caps."""
        env = os.environ if environ is None else environ
        base_limits = StressLimits()
        limits = StressLimits(
            max_duration_s=_positive(env, "MAX_DURATION_S", base_limits.max_duration_s),
            default_duration_s=_positive(
                env, "DEFAULT_DURATION_S", base_limits.default_duration_s
            ),
            max_cpu_percent=base_limits.max_cpu_percent,
            max_memory_mb=int(_positive(env, "MAX_MEMORY_MB", base_limits.max_memory_mb)),
            memory_headroom_mb=int(
                _non_negative(env, "MEMORY_HEADROOM_MB", base_limits.memory_headroom_mb)
            ),
            max_network_mbps=_positive(env, "MAX_NETWORK_MBPS", base_limits.max_network_mbps),
        )
        if limits.default_duration_s > limits.max_duration_s:
            raise ValueError(
                f"{ENV_PREFIX}DEFAULT_DURATION_S ({limits.default_duration_s}) exceeds "
                f"{ENV_PREFIX}MAX_DURATION_S ({limits.max_duration_s})"
            )
        base = cls()
        return cls(
            limits=limits,
            identity=Identity.from_env(env),
            cgroup_root=env.get(ENV_PREFIX + "CGROUP_ROOT", base.cgroup_root),
            network_sink=env.get(ENV_PREFIX + "NETWORK_SINK") or None,
            start_method=env.get(ENV_PREFIX + "MP_START_METHOD", base.start_method),
            startup_cpu_s=_non_negative(env, "STARTUP_CPU_SECONDS", base.startup_cpu_s),
        )

    def public_limits(self) -> dict:
        """The caps as JSON, for /stress/status."""
        return {
            "max_duration_s": self.limits.max_duration_s,
            "default_duration_s": self.limits.default_duration_s,
            "max_cpu_percent": self.limits.max_cpu_percent,
            "max_memory_mb": self.limits.max_memory_mb,
            "memory_headroom_mb": self.limits.memory_headroom_mb,
            "max_network_mbps": self.limits.max_network_mbps,
        }


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if value <= 0:
        raise ValueError(f"{ENV_PREFIX}{name} must be > 0, got {value}")
    return value


def _non_negative(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if value < 0:
        raise ValueError(f"{ENV_PREFIX}{name} must be >= 0, got {value}")
    return value


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name} must be a number, got {raw!r}") from None
