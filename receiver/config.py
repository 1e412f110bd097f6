"""Receiver settings: one frozen dataclass, from defaults < YAML file < environment.

The environment wins over the file because it is what a deployment (a Swarm stack, the
lab) changes per instance, while the file holds a team's shared tuning.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping

import yaml

from receiver.kinds import KINDS

ENV_PREFIX = "SWARMGUARD_"
CONFIG_FILE_ENV = "SWARMGUARD_CONFIG_FILE"


class ConfigError(ValueError):
    """The receiver cannot start with this configuration."""


@dataclass(frozen=True)
class Settings:
    # Shared secret Alertmanager sends as `Authorization: Bearer <token>`. repr=False keeps it
    # out of logs and tracebacks.
    token: str = field(repr=False)
    dry_run: bool = False
    # None: the docker SDK's own default (DOCKER_HOST, else the local unix socket).
    docker_host: str | None = None
    # "auto": negotiated with the daemon in the background (cluster.negotiate), never at
    # start, so the receiver starts (and answers /readyz 503) while Docker is down. Engine
    # 29 refuses clients below API 1.44, so no one pinned version serves every engine.
    # A version such as "1.44" pins it (cluster.REQUIRED_API_VERSION is the floor).
    docker_api_version: str = "auto"
    docker_timeout: float = 10.0
    # Per-kind cooldowns in seconds; defaults in docs/contract.md.
    cooldown_migrate: float = 60.0
    cooldown_scale_up: float = 60.0
    cooldown_scale_down: float = 180.0
    # Replica limits when a service has no swarmguard.replicas.min/max label.
    replicas_min: int = 1
    replicas_max: int = 5
    # Alertmanager bodies are a few KiB per alert; 1 MiB is generous yet bounded.
    max_body_bytes: int = 1024 * 1024
    # Docker writes: attempts in all (conflicts and errors), exponential backoff from base.
    docker_attempts: int = 5
    docker_backoff: float = 0.5
    docker_backoff_max: float = 5.0
    # How long to watch a migration (new task running, old task shut down) before calling it
    # timed out, and how often to look.
    migration_timeout: float = 120.0
    watch_interval: float = 0.5
    # Background threads acting on alerts; the per-service guard keeps it to one per service.
    workers: int = 4
    # Services with work waiting for a thread (at most one piece of work each: a newer
    # alert replaces the older). Past it, webhooks get 503 with Retry-After and Alertmanager
    # retries: memory stays bounded whatever arrives.
    max_pending_services: int = 256
    # Seconds a startsAt may lie ahead of this receiver's clock (Prometheus and the receiver
    # on different hosts). Beyond it the alert is refused: a time in the future would pass
    # every freshness check ("began after the last action") forever.
    max_future_skew: float = 30.0
    # On SIGTERM: how long in-progress work may take to finish. Keep it below gunicorn's
    # graceful_timeout and the service's stop_grace_period (stack.yml), which derive from it.
    shutdown_deadline: float = 20.0
    # How often /readyz's answer (Docker reachable, API version, swarm manager) is refreshed
    # in the background; requests never wait for Docker.
    readiness_interval: float = 5.0
    # Storm budgets (receiver/storm.py; README, "Storms"). Actions in flight in the whole
    # cluster: as many as the action threads, so a budget, not a thread, is what waits.
    max_concurrent_actions: int = 4
    # Migrations in flight off one node: one, so that after each move the rest of a hot
    # node's tasks are judged again on fresh data (the node may be cool already).
    max_leaving_per_node: int = 1
    # Migrations in flight that may land on one node: two, enough for two hot nodes to
    # empty onto one cool node without making it the next hot one in a burst.
    max_arriving_per_node: int = 2
    # Actions started in any 60 s: a runaway loop (rules, a flapping node) stops here.
    max_actions_per_minute: int = 12
    # Seconds a hot task is remembered without a resend of its alert. Alertmanager resends
    # firing alerts every repeat_interval (15 s in the bundle) and resolved ones once; this
    # bounds the memory of an alert whose resolution was lost.
    hot_task_memory: float = 60.0
    # Receiver events kept in memory for GET /events (each a few hundred bytes).
    event_buffer: int = 4096
    log_level: str = "INFO"

    @property
    def cooldowns(self) -> Mapping[str, float]:
        """Each kind's cooldown, by kind name (receiver/kinds.py)."""
        return {k.name: getattr(self, k.cooldown_setting) for k in KINDS}

    def describe(self) -> str:
        """One log line with the effective configuration, token left out."""
        parts = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "token"
        ]
        return ", ".join(parts)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# Settings that can be set from the file or env under their own names; the token has its own
# rules (token / token_file), see _token().
_TUNABLE = [name for name in _FIELDS if name != "token"]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from SWARMGUARD_* variables and the optional YAML file.

    Raises ConfigError with a sentence naming the variable at fault: with no token the
    receiver refuses to start rather than run open.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    path = environ.get(CONFIG_FILE_ENV)
    if path:
        raw.update(_read_yaml(path))
    for name in _TUNABLE + ["token", "token_file"]:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            raw[name] = value

    values: dict[str, object] = {"token": _token(raw)}
    for name in _TUNABLE:
        if name in raw:
            values[name] = _coerce(name, raw[name])
    settings = Settings(**values)
    _validate(settings)
    return settings


def _read_yaml(path: str) -> dict[str, object]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {CONFIG_FILE_ENV}={path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of setting names to values")
    unknown = sorted(set(data) - set(_TUNABLE) - {"token", "token_file"})
    if unknown:
        # A typo in a cooldown name must not silently keep the default.
        raise ConfigError(f"{path}: unknown settings {', '.join(map(str, unknown))}")
    return dict(data)


def _token(raw: Mapping[str, object]) -> str:
    token, token_file = raw.get("token"), raw.get("token_file")
    if token and token_file:
        raise ConfigError("set only one of SWARMGUARD_TOKEN and SWARMGUARD_TOKEN_FILE")
    if token_file:
        try:
            with open(str(token_file), encoding="utf-8") as fh:
                # Swarm secrets and `echo` add a trailing newline that is not part of the token.
                token = fh.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read SWARMGUARD_TOKEN_FILE={token_file}: {exc.strerror}"
            ) from exc
    token = str(token or "").strip()
    if not token:
        raise ConfigError(
            "no webhook token: set SWARMGUARD_TOKEN or SWARMGUARD_TOKEN_FILE "
            "(the receiver refuses to run without authentication)"
        )
    return token


def _coerce(name: str, value: object) -> object:
    kind = _FIELDS[name].type
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(str(value).strip())
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(str(value).strip())
        return str(value).strip()
    except ValueError:
        raise ConfigError(
            f"{ENV_PREFIX}{name.upper()}={value!r} is not a valid {kind}"
        ) from None


def _validate(s: Settings) -> None:
    positive = [
        "docker_timeout", "max_body_bytes", "docker_attempts", "migration_timeout",
        "watch_interval", "workers", "max_pending_services", "shutdown_deadline",
        "readiness_interval", "event_buffer", "max_concurrent_actions",
        "max_leaving_per_node", "max_arriving_per_node", "max_actions_per_minute",
        "hot_task_memory",
    ]
    for name in positive:
        if getattr(s, name) <= 0:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive")
    for name in ["cooldown_migrate", "cooldown_scale_up", "cooldown_scale_down",
                 "docker_backoff", "docker_backoff_max", "max_future_skew"]:
        if getattr(s, name) < 0:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()} must not be negative")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"SWARMGUARD_LOG_LEVEL={s.log_level!r} is not a logging level")
    if not 1 <= s.replicas_min <= s.replicas_max:
        raise ConfigError(
            f"replica limits must satisfy 1 <= min <= max, got min {s.replicas_min}, "
            f"max {s.replicas_max}"
        )
