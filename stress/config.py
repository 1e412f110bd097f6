"""Configuration of the stress app: one frozen dataclass, read once from the environment.

Follows the project's configuration pattern (swarmguard_config; docs/contract.md,
"Environment variables"): a field is read from STRESS_<FIELD> (or the name in its
metadata), coerced by its type and checked against its declared bounds. Fields marked
NOT_FROM_ENV are fixed, or set by tests, not by a deployment.

The caps here are the promise that a stress request cannot take the node further than
what it asked for: every request is checked against them (see params.py), and the
running processes enforce the duration themselves (see workers.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from stress.identity import Identity
from swarmguard_config import (NOT_FROM_ENV, NOT_NEGATIVE, POSITIVE, ConfigError,
                               listen_address, load)

ENV_PREFIX = "STRESS_"
# gunicorn's own names; it would take any other word as "info" without a word.
GUNICORN_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class StressLimits:
    """Hard caps and defaults for every stress request."""

    # Nothing runs longer than this, whatever the request says.
    max_duration_s: float = field(default=600.0, metadata=POSITIVE)
    # Used when a request names no duration: long enough for an alert's `for:` window.
    default_duration_s: float = field(default=60.0, metadata=POSITIVE)
    # Percent of the container's CPU allowance (its cgroup quota, else its cores): more
    # than all of it cannot be had, so it is not a setting.
    max_cpu_percent: float = field(default=100.0, metadata=NOT_FROM_ENV)
    # Absolute cap for a memory stress; the container's own limit minus headroom may
    # lower it further (params.Bounds), so the stress never gets the task OOM-killed.
    max_memory_mb: int = field(default=4096, metadata=POSITIVE)
    # Room left for the app itself (Python, gunicorn, the stress processes, page cache).
    memory_headroom_mb: int = field(default=64, metadata=NOT_NEGATIVE)
    # Mbit/s of UDP payload; a Python sender tops out at a few hundred anyway.
    max_network_mbps: float = field(default=1000.0, metadata=POSITIVE)


@dataclass(frozen=True)
class StressConfig:
    # Loaded as their own dataclasses: the limits with the same prefix, the identity from
    # Swarm's template variables (SWARM_*).
    limits: StressLimits = field(default_factory=StressLimits, metadata=NOT_FROM_ENV)
    identity: Identity = field(default_factory=Identity, metadata=NOT_FROM_ENV)
    # Where the cgroup hierarchy is mounted; a parameter so tests use fixture trees.
    cgroup_root: str = "/sys/fs/cgroup"
    # This process's cgroup membership, to find its own limits when it is not the
    # root of the mount (outside a container). Empty string: look at the root only.
    self_cgroup_path: str = field(default="/proc/self/cgroup", metadata=NOT_FROM_ENV)
    # Routing table read for the default gateway, the network stress's default sink.
    route_path: str = field(default="/proc/net/route", metadata=NOT_FROM_ENV)
    # "host:port" the network stress sends to when the request names no target.
    network_sink: str | None = None
    # Port used on the default gateway: discard (9) - nobody is meant to answer.
    default_sink_port: int = field(default=9, metadata=NOT_FROM_ENV)
    # UDP payload per datagram: below any overlay MTU (1450) so nothing fragments.
    datagram_bytes: int = field(default=1200, metadata=NOT_FROM_ENV)
    # CPU duty-cycle period; aligned with the CFS period (100 ms) so a quota is met
    # evenly instead of in bursts followed by throttling.
    cpu_slice_s: float = field(default=0.1, metadata=NOT_FROM_ENV)
    # Stress processes run niced, so the web app (health checks, probes) still gets
    # the CPU it needs first; they only take what is otherwise idle in the allowance.
    worker_nice: int = field(default=10, metadata=NOT_FROM_ENV)
    # forkserver: children are forked from a clean single-threaded server, not from the
    # multithreaded gunicorn worker (forking a threaded process can inherit held locks).
    start_method: str = field(default="forkserver", metadata={"env": "STRESS_MP_START_METHOD"})
    # How long to wait for a stress process to exit after SIGTERM before SIGKILL.
    stop_timeout_s: float = field(default=2.0, metadata=NOT_FROM_ENV)
    # Seconds of full-allowance CPU burnt from the moment the app starts, as a JVM's or a
    # big Python app's start-up does (0: none). The lab uses it to check that a freshly
    # moved task is not judged hot on its own start-up.
    startup_cpu_s: float = field(
        default=0.0, metadata={**NOT_NEGATIVE, "env": "STRESS_STARTUP_CPU_SECONDS"})
    # Seconds from the start during which the app serves nothing (0: none): a slow
    # starter. Its port is not even open, as a JVM server's is not until the application
    # context is up: held in gunicorn's master before it binds (gunicorn.conf.py,
    # on_starting), so every connection is refused, health checks included. A refused
    # connection rather than a 503 because that is what a slow app's clients really get,
    # and an entry point treats the two differently (HAProxy retries a refused connection
    # on another server, passes a 503 on). Such a service needs a health check whose
    # start period covers the delay, or Swarm kills it while it starts.
    startup_delay_s: float = field(
        default=0.0, metadata={**NOT_NEGATIVE, "env": "STRESS_STARTUP_DELAY_SECONDS"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "StressConfig":
        """Build the configuration from STRESS_* variables; a bad value raises ConfigError
        (a ValueError) naming the variable, so a misconfigured app refuses to start
        instead of running with surprise caps."""
        env = os.environ if environ is None else environ
        limits = load(StressLimits, ENV_PREFIX, env)
        if limits.default_duration_s > limits.max_duration_s:
            raise ConfigError(
                f"{ENV_PREFIX}DEFAULT_DURATION_S ({limits.default_duration_s}) exceeds "
                f"{ENV_PREFIX}MAX_DURATION_S ({limits.max_duration_s})"
            )
        return load(cls, ENV_PREFIX, env,
                    fixed={"limits": limits, "identity": Identity.from_env(env)})

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



@dataclass(frozen=True)
class ServingConfig:
    """gunicorn's settings for the stress app (stress/gunicorn.conf.py), read from the same
    STRESS_* variables by the same rules, before gunicorn listens."""

    # The whole listening address; unset: every interface, on `port`.
    bind: str | None = field(default=None, metadata={"check": listen_address})
    # The port when `bind` is unset; the image's HEALTHCHECK follows it.
    port: int = field(default=8080, metadata={"min": 0, "max": 65535})
    # Enough for a probe at tens of requests/s plus health checks while stress is starting.
    threads: int = field(default=8, metadata=POSITIVE)
    log_level: str = field(default="info", metadata={"one_of": GUNICORN_LOG_LEVELS})
    # Where gunicorn writes its access log ("-": standard output); unset: nowhere, as a
    # 20 requests/s probe would drown the interesting lines.
    access_log: str | None = None

    @property
    def address(self) -> str:
        return self.bind or f"0.0.0.0:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ServingConfig":
        """ConfigError (a ValueError) naming the variable on a bad value."""
        return load(cls, ENV_PREFIX, os.environ if environ is None else environ)
