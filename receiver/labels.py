"""The `swarmguard.*` service labels: what users set, and what SwarmGuard remembers in them.

SwarmGuard keeps no state of its own: the time of its last action of each kind lives in the
service's labels, written in the same update as the change itself, so a restarted receiver
or a second replica sees the same cooldowns.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from receiver import kinds
from swarmguard_config.rfc3339 import NotATime, format_time, parse_time
# The opt-in label is read by the exporter too, whose image has no receiver/.
from swarmguard_config.opt_in import ENABLE, opted_in  # noqa: F401 (L.ENABLE, L.opted_in)

# Set by users (and ENABLE above).
REPLICAS_MIN = "swarmguard.replicas.min"
REPLICAS_MAX = "swarmguard.replicas.max"
# "allow": move and scale the service although its tasks keep data on their node
# (receiver/safety.py), or migrate it although the move is an outage.
STATEFUL = "swarmguard.stateful"
UNSAFE = "swarmguard.unsafe"
ALLOW = "allow"

# Written by SwarmGuard.
LAST_ACTION = "swarmguard.last-action"  # migrate | scale_up | scale_down | drain | rebalance
LAST_ACTION_AT = "swarmguard.last-action-at"  # RFC 3339, UTC, microseconds
LAST_ACTION_REASON = "swarmguard.last-action-reason"  # one sentence, for humans
# The exact placement constraint SwarmGuard added at its last migration (placement.py).
PLACEMENT_EXCLUSION = "swarmguard.placement-exclusion"
LAST_KIND_AT = {k.name: k.last_at_label for k in kinds.KINDS}
# Until when the service is not migrated because its last migration did not help (RFC 3339,
# UTC; futile.py). Written alone, in a labels-only update; a person may remove it.
FUTILE_UNTIL = "swarmguard.futile-until"


class LabelError(ValueError):
    """A swarmguard.* label holds a value SwarmGuard cannot use."""


def allows(labels: Mapping[str, str], name: str) -> bool:
    """Whether the label `name` says "allow" (any case); absent or empty: no."""
    text = labels.get(name, "").strip()
    if text.lower() not in ("", ALLOW):
        raise LabelError(f"label {name}={text!r} is not {ALLOW!r}")
    return text != ""


def read_time(labels: Mapping[str, str], name: str) -> datetime | None:
    text = labels.get(name)
    if not text:
        return None
    try:
        return parse_time(text, name)
    except NotATime:
        pass
    try:
        # Also accept unix seconds, in case an operator sets a cooldown by hand; in ASCII
        # digits, as the RFC 3339 form (float() would read any Unicode digit).
        if not text.isascii():
            raise ValueError(text)
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise LabelError(f"label {name}={text!r} is not a time") from None


@dataclass(frozen=True)
class History:
    """What SwarmGuard last did to a service, read back from its labels."""
    last_kind: str | None
    last_at: datetime | None
    kind_at: Mapping[str, datetime | None]
    futile_until: datetime | None = None


def read_history(labels: Mapping[str, str]) -> History:
    return History(
        last_kind=labels.get(LAST_ACTION) or None,
        last_at=read_time(labels, LAST_ACTION_AT),
        kind_at={kind: read_time(labels, name) for kind, name in LAST_KIND_AT.items()},
        futile_until=read_time(labels, FUTILE_UNTIL),
    )


def replica_limits(labels: Mapping[str, str], default_min: int, default_max: int
                   ) -> tuple[int, int]:
    low = _whole(labels, REPLICAS_MIN, default_min)
    high = _whole(labels, REPLICAS_MAX, default_max)
    if low > high:
        raise LabelError(f"labels {REPLICAS_MIN}={low} and {REPLICAS_MAX}={high} contradict")
    return low, high


def _whole(labels: Mapping[str, str], name: str, default: int) -> int:
    text = labels.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise LabelError(f"label {name}={text!r} is not a whole number of at least 1")
    return value


def action_labels(labels: Mapping[str, str], kind: str, at: datetime, reason: str
                  ) -> dict[str, str]:
    """The service's labels with this action recorded."""
    stamp = format_time(at)
    new = dict(labels)
    new[LAST_ACTION] = kind
    new[LAST_ACTION_AT] = stamp
    if kind in LAST_KIND_AT:  # maintenance moves (drain, rebalance) have no cooldown of their own
        new[LAST_KIND_AT[kind]] = stamp
    new[LAST_ACTION_REASON] = reason[:500]
    return new


def futile_labels(labels: Mapping[str, str], until: datetime) -> dict[str, str]:
    """The service's labels with its migrations held until `until`; the history stays."""
    return {**labels, FUTILE_UNTIL: format_time(until)}
