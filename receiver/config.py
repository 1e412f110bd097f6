"""Receiver settings: one frozen dataclass, from defaults < YAML file < environment.

Follows the project's configuration pattern (swarmguard_config; docs/contract.md,
"Environment variables"): each field is read from SWARMGUARD_<FIELD>, coerced by its type
and checked against the bounds in its metadata. What is the receiver's own stays here:
the file, the token's rules and the checks across fields.

The environment wins over the file because it is what a deployment (a Swarm stack, the
lab) changes per instance, while the file holds a team's shared tuning.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

import yaml

from receiver.kinds import KINDS
from receiver.storm import Budgets
# ConfigError is re-exported: callers (receiver/app.py, tests) import it from here.
from swarmguard_config import (NOT_FROM_ENV, NOT_NEGATIVE, POSITIVE, ConfigError, Layer,
                               listen_address, load)

ENV_PREFIX = "SWARMGUARD_"
CONFIG_FILE_ENV = "SWARMGUARD_CONFIG_FILE"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# Prometheus's label names (its data model).
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def comma_list(text: str) -> tuple[str, ...]:
    """The entries of a comma-separated setting, without the spaces around each; none for
    an empty text."""
    return tuple(entry.strip() for entry in text.split(",")) if text.strip() else ()


def _http_urls(text: str) -> None:
    for url in comma_list(text):
        if not url:
            raise ValueError("an entry is empty")
        parts = urlsplit(url)
        try:
            parts.port  # raises ValueError on a port that is not one
        except ValueError:
            raise ValueError(f"{url!r} has a bad port") from None
        if "@" in parts.netloc:
            # It would be logged with the settings and in every complaint about the URL.
            raise ValueError(f"{url!r} holds credentials: the password goes in "
                             f"{ENV_PREFIX}PROMETHEUS_PASSWORD_FILE")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
                or parts.fragment:
            raise ValueError(f"{url!r} is not an http(s) URL (http[s]://host[:port][/path])")


def _label_names(text: str) -> None:
    for name in comma_list(text):
        if not LABEL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a label name")


@dataclass(frozen=True)
class ServerSettings:
    """What gunicorn and its worker need before the app exists (receiver/gunicorn.conf.py,
    receiver/serving.py); the app reads them too, as part of Settings. Loaded without the
    token: the benchmarks serve a bare app under the receiver's gunicorn settings."""
    # gunicorn's listening address.
    bind: str = field(default="0.0.0.0:8000", metadata={"check": listen_address})
    # Request threads of the one worker (gunicorn.conf.py says why one).
    threads: int = field(default=8, metadata=POSITIVE)
    # Alertmanager bodies are a few KiB per alert; 1 MiB is generous yet bounded.
    max_body_bytes: int = field(default=1024 * 1024, metadata=POSITIVE)
    # Seconds a connection has, from a request's first byte, to send it whole
    # (receiver/serving.py); past them it is closed.
    request_read_timeout: float = field(default=5.0, metadata=POSITIVE)
    # On SIGTERM: how long in-progress work may take to finish. gunicorn's graceful_timeout
    # derives from it; keep the service's stop_grace_period (stack.yml) above both.
    shutdown_deadline: float = field(default=20.0, metadata=POSITIVE)
    log_level: str = field(default="INFO", metadata={"one_of": LOG_LEVELS})


@dataclass(frozen=True)
class Settings(ServerSettings):
    # Shared secret Alertmanager sends as `Authorization: Bearer <token>`. repr=False keeps it
    # out of logs and tracebacks. Read by _token (SWARMGUARD_TOKEN or SWARMGUARD_TOKEN_FILE).
    # Keyword-only: it has no default, and the fields it follows (ServerSettings') do.
    token: str = field(repr=False, metadata=NOT_FROM_ENV, kw_only=True)
    dry_run: bool = False
    # None: the docker SDK's own default (DOCKER_HOST, else the local unix socket).
    docker_host: str | None = None
    # "auto": negotiated with the daemon before its first versioned request
    # (cluster.NegotiatingClient), never at start, so the receiver starts (and answers
    # /readyz 503) while Docker is down. Engine 29 refuses clients below API 1.44, so no
    # one pinned version serves every engine.
    # A version such as "1.44" pins it (cluster.REQUIRED_API_VERSION is the floor).
    docker_api_version: str = "auto"
    docker_timeout: float = field(default=10.0, metadata=POSITIVE)
    # Per-kind cooldowns in seconds (docs/contract.md, "Receiver settings").
    cooldown_migrate: float = field(default=60.0, metadata=NOT_NEGATIVE)
    cooldown_scale_up: float = field(default=60.0, metadata=NOT_NEGATIVE)
    cooldown_scale_down: float = field(default=180.0, metadata=NOT_NEGATIVE)
    # Replica limits when a service has no swarmguard.replicas.min/max label.
    replicas_min: int = field(default=1, metadata={"min": 1})
    replicas_max: int = 5
    # Replicas one scale-up may add when the alert says the demand needs more
    # (`replicas_needed`). 4: Kubernetes HPA's default scale-up policy (+4 pods per
    # period); 1: one replica per step.
    max_scale_up_step: int = field(default=4, metadata={"min": 1})
    # Docker writes: attempts in all (conflicts and errors), exponential backoff from base.
    docker_attempts: int = field(default=5, metadata=POSITIVE)
    docker_backoff: float = field(default=0.5, metadata=NOT_NEGATIVE)
    docker_backoff_max: float = field(default=5.0, metadata=NOT_NEGATIVE)
    # How long to watch a migration (new task running, old task shut down) before calling it
    # timed out, and how often to look.
    migration_timeout: float = field(default=120.0, metadata=POSITIVE)
    watch_interval: float = field(default=0.5, metadata=POSITIVE)
    # Background threads acting on alerts; the per-service guard keeps it to one per service.
    workers: int = field(default=4, metadata=POSITIVE)
    # Services with work waiting for a thread (at most one piece of work each: a newer
    # alert replaces the older). Past it, webhooks get 503 with Retry-After and Alertmanager
    # retries: memory stays bounded whatever arrives.
    max_pending_services: int = field(default=256, metadata=POSITIVE)
    # Seconds a startsAt may lie ahead of this receiver's clock (Prometheus and the receiver
    # on different hosts). Beyond it the alert is refused: a time in the future would pass
    # every freshness check ("began after the last action") forever.
    max_future_skew: float = field(default=30.0, metadata=NOT_NEGATIVE)
    # How often /readyz's answer (Docker reachable, API version, swarm manager) is refreshed
    # in the background; requests never wait for Docker.
    readiness_interval: float = field(default=5.0, metadata=POSITIVE)
    # Storm budgets (receiver/storm.py; docs/contract.md, "Storms"). Actions in flight in the whole
    # cluster: as many as the action threads, so a budget, not a thread, is what waits.
    max_concurrent_actions: int = field(default=Budgets.concurrent, metadata=POSITIVE)
    # Migrations in flight off one node: one, so that after each move the rest of a hot
    # node's tasks are judged again on fresh data (the node may be cool already).
    max_leaving_per_node: int = field(default=Budgets.leaving_per_node, metadata=POSITIVE)
    # Migrations in flight that may land on one node: two, enough for two hot nodes to
    # empty onto one cool node without making it the next hot one in a burst.
    max_arriving_per_node: int = field(default=Budgets.arriving_per_node, metadata=POSITIVE)
    # Actions started in any 60 s: a runaway loop (rules, a flapping node) stops here.
    max_actions_per_minute: int = field(default=Budgets.per_minute, metadata=POSITIVE)
    # `swarmguard rebalance` stops when the busiest and the quietest node taking work are
    # within this many tasks of each other (receiver/maintenance.py). 1: as even as whole
    # tasks allow; 0 could never be met with an odd number of tasks on two nodes.
    rebalance_tolerance: int = field(default=1, metadata=NOT_NEGATIVE)
    # Seconds a hot task is remembered without a resend of its alert. Alertmanager resends
    # firing alerts every repeat_interval (15 s in the bundle) and resolved ones once; this
    # bounds the memory of an alert whose resolution was lost.
    hot_task_memory: float = field(default=60.0, metadata=POSITIVE)
    # Futile moves (receiver/futile.py): a migrated task hot again on its new node within
    # this many seconds of the move was not starved by its node; the service is then not
    # migrated for this long again. 600 s: ten migrate cooldowns, so a task that is hot
    # wherever it runs moves at most once in ten minutes instead of once a minute. 0 never
    # calls a move futile.
    futile_window: float = field(default=600.0, metadata=NOT_NEGATIVE)
    # Only Prometheus's own alerts move anything (receiver/confirmation.py): before each
    # decision the receiver asks these Prometheus servers (comma-separated; a `tasks.<service>`
    # host stands for every task of the service) which alerts fire, and skips any other.
    prometheus_url: str = field(default="http://prometheus:9090", metadata={"check": _http_urls})
    prometheus_user: str = "swarmguard"
    # A file holding Prometheus's basic-auth password (the bundle's Swarm secret); unset:
    # no authentication.
    prometheus_password_file: str | None = None
    # One query per decision; a decision never waits longer for it (Alertmanager resends).
    prometheus_timeout: float = field(default=2.0, metadata=POSITIVE)
    # Label names (comma-separated) a Prometheus adds to the alerts it sends (its external
    # labels) but not to its own list of alerts: left out of the comparison.
    prometheus_external_labels: str = field(default="", metadata={"check": _label_names})
    # Off only where alerts are posted straight to the receiver on purpose (tests of the
    # receiver itself): anyone with the webhook's token could then move tasks.
    confirm_with_prometheus: bool = True
    # Receiver events kept in memory for GET /events (each a few hundred bytes).
    event_buffer: int = field(default=4096, metadata=POSITIVE)

    @property
    def cooldowns(self) -> Mapping[str, float]:
        """Each kind's cooldown, by kind name (receiver/kinds.py)."""
        return {k.name: getattr(self, k.cooldown_setting) for k in KINDS}

    @property
    def prometheus_urls(self) -> tuple[str, ...]:
        return comma_list(self.prometheus_url)

    @property
    def prometheus_external_label_names(self) -> frozenset[str]:
        return frozenset(comma_list(self.prometheus_external_labels))

    def describe(self) -> str:
        """One log line with the effective configuration, token left out."""
        parts = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "token"
        ]
        return ", ".join(parts)


# Settings that can be set from the file or env under their own names; the token has its own
# rules (token / token_file), see _token().
_TUNABLE = [f.name for f in dataclasses.fields(Settings) if f.name != "token"]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from SWARMGUARD_* variables and the optional YAML file.

    Raises ConfigError with a sentence naming the variable at fault: with no token the
    receiver refuses to start rather than run open.
    """
    environ = os.environ if environ is None else environ
    from_file = _file_layer(environ)
    token = _token({
        name: environ.get(ENV_PREFIX + name.upper()) or from_file.values.get(name)
        for name in ("token", "token_file")
    })
    settings = load(Settings, ENV_PREFIX, environ, beneath_env=from_file,
                    fixed={"token": token})
    _validate(settings)
    return settings


def load_server_settings(environ: Mapping[str, str] | None = None) -> ServerSettings:
    """gunicorn's and its worker's settings, from the same variables and YAML file as
    load_settings, by the same rules; ConfigError naming the variable at fault."""
    environ = os.environ if environ is None else environ
    return load(ServerSettings, ENV_PREFIX, environ, beneath_env=_file_layer(environ))


def _file_layer(environ: Mapping[str, str]) -> Layer:
    """The YAML file's settings (none without SWARMGUARD_CONFIG_FILE), beneath the
    environment."""
    path = environ.get(CONFIG_FILE_ENV)
    from_file = _read_yaml(path) if path else {}
    return Layer(from_file, lambda name: f"{path}: {name}")


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


def read_secret_file(path: str, variable: str) -> str:
    """A secret from its file (a Swarm secret); ConfigError naming `variable` if it cannot
    be read: refuse to start rather than run without it."""
    try:
        with open(path, encoding="utf-8") as fh:
            # Swarm secrets and `echo` add a trailing newline that is not part of the secret.
            return fh.read().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {variable}={path}: {exc.strerror}") from exc


def _token(raw: Mapping[str, object]) -> str:
    token, token_file = raw.get("token"), raw.get("token_file")
    if token and token_file:
        raise ConfigError("set only one of SWARMGUARD_TOKEN and SWARMGUARD_TOKEN_FILE")
    if token_file:
        token = read_secret_file(str(token_file), "SWARMGUARD_TOKEN_FILE")
    token = str(token or "").strip()
    if not token:
        raise ConfigError(
            "no webhook token: set SWARMGUARD_TOKEN or SWARMGUARD_TOKEN_FILE "
            "(the receiver refuses to run without authentication)"
        )
    return token


def _validate(s: Settings) -> None:
    # Bounds of one setting are declared on its field; here only what relates two.
    if not s.replicas_min <= s.replicas_max:
        raise ConfigError(
            f"replica limits must satisfy 1 <= min <= max, got min {s.replicas_min}, "
            f"max {s.replicas_max} ({ENV_PREFIX}REPLICAS_MIN, {ENV_PREFIX}REPLICAS_MAX)"
        )
