"""Alertmanager webhook (version 4) parsing and validation. Pure: bytes in, dataclasses out
(the Alerts of receiver/alerts.py, in a Webhook).

Every problem with the input becomes a PayloadError whose reason names the field, so the
HTTP layer can answer 400 with it; nothing else may escape (a property test holds us to it).
A payload is accepted or rejected whole: bad input changes nothing.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Mapping

from receiver import kinds
from receiver.alerts import FIRING, RESOLVED, Alert
# What log lines escape (a control character can start a forged line): no label holds one.
from receiver.events import CONTROLS
from swarmguard_config import rfc3339

# The public contract (docs/contract.md): the labels each alert must carry for the receiver to act.
REQUIRED_LABELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {k.alert: k.required_labels for k in kinds.KINDS})

# Labels that name Docker objects reach Docker's URLs (`GET /services/<service>`): each is
# checked against what such a name can be, so that `service="../images/x/get"` is refused
# here instead of making the SDK request another endpoint.
# Service names: swarmkit's rule (controlapi validateAnnotations, isValidDNSName), at most
# 63 characters: letters, digits, '-' and '_', starting and ending with a letter or digit.
SERVICE_NAME = re.compile(r"[A-Za-z0-9](?:[-_]*[A-Za-z0-9]+)*")
SERVICE_NAME_MAX = 63
# Task and node IDs: swarmkit's identity.NewID, 25 characters of base 36, lower case.
OBJECT_ID = re.compile(r"[a-z0-9]{25}")
ID_LABELS = ("task_id", "node_id")
# No alert starts before this: Prometheus stamps startsAt with the time the rule fired.
# Go's zero time (0001-01-01T00:00:00Z) is what Alertmanager writes for an unset time,
# which an endsAt may be (a firing alert) and a startsAt never is.
EARLIEST_START = datetime(1970, 1, 1, tzinfo=timezone.utc)
# How much an alert may carry, checked before anything else reads it: every label is kept
# with the alert until its work is done, so the body's size alone bounded them too loosely
# (701 webhooks of one 1 MB label each in 20 s took the receiver from 41 to 302 MB).
# Generous: Swarm's names have at most 63 characters, its IDs 25, and the recorded alerts
# (tests/unit/fixtures) carry 8 labels. Annotations' text is bounded by the body alone.
LABEL_MAX = 1024  # characters in a label's name, and in its value
ENTRIES_MAX = 64  # labels of an alert, and annotations of an alert
# How much of an offending value a reason quotes: a 900 KB label must not come back whole
# in the 400's body, nor fill a log line. Every name and ID a label holds is shorter.
QUOTED_MAX = 64


class TooManyServices(Exception):
    """The webhook names more services than may ever wait for work at once: refused before
    its alerts are built (a flood's alerts would take ten times its bytes in memory)."""

    def __init__(self, services: int, limit: int):
        super().__init__(f"the webhook names {services} services; at most {limit} may wait "
                         f"for work (SWARMGUARD_MAX_PENDING_SERVICES)")
        self.reason = str(self)


class PayloadError(ValueError):
    """The webhook body is not one the receiver can act on; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Webhook:
    receiver: str
    status: str
    # Each alert once: copies (the same instance, the same status) are left out, so that a
    # body of one alert many times is decided, recorded and told about once.
    alerts: tuple[Alert, ...]
    # Where each of `alerts` is in the body (its first copy), for the reasons that name it.
    positions: tuple[int, ...]
    # The copies left out, by (alertname, status): counted, never acted on nor an event.
    copies: Mapping[tuple[str, str], int]
    group_key: str
    truncated_alerts: int
    external_url: str

    # Computed once per Webhook, which ParseCache hands out again for identical bodies.
    @cached_property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.firing)

    @cached_property
    def counts(self) -> Mapping[tuple[str, str], int]:
        """How many alerts of each (alertname, status) the webhook carries."""
        counts: dict[tuple[str, str], int] = {}
        for alert in self.alerts:
            key = (alert.name, alert.status)
            counts[key] = counts.get(key, 0) + 1
        return MappingProxyType(counts)


def parse_time(text: Any, field_name: str = "time") -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime, or raise PayloadError."""
    if isinstance(text, str) and len(text) > QUOTED_MAX:
        # No RFC 3339 time is this long (35 characters at most); rfc3339 would quote it whole.
        raise PayloadError(f"{field_name} {quoted(text)} is not an RFC 3339 timestamp")
    try:
        return rfc3339.parse_time(text, field_name)
    except rfc3339.NotATime as exc:
        raise PayloadError(str(exc)) from None


def parse_webhook(body: bytes | str, now: datetime | None = None,
                  max_future_skew: float = 30.0, max_services: int | None = None) -> Webhook:
    """Parse and validate a whole webhook body. With `now`, an alert that starts more than
    `max_future_skew` seconds after it is refused; with `max_services`, a webhook naming
    more services raises TooManyServices."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise PayloadError("body is nested too deeply to be an Alertmanager webhook") from None
    except (ValueError, TypeError) as exc:
        # ValueError covers JSONDecodeError and undecodable bytes.
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    webhook = webhook_from_dict(data, max_services)
    if now is not None:
        check_not_in_future(webhook, now, max_future_skew)
    return webhook


def check_not_in_future(webhook: Webhook, now: datetime, max_future_skew: float) -> None:
    latest = now + timedelta(seconds=max_future_skew)
    for i, alert in zip(webhook.positions, webhook.alerts):
        if alert.starts_at > latest:
            ahead = (alert.starts_at - now).total_seconds()
            raise PayloadError(
                f"alerts[{i}].startsAt is {ahead:.0f} s in the future (more than the "
                f"{max_future_skew:g} s of clock skew allowed, SWARMGUARD_MAX_FUTURE_SKEW)")


class ParseCache:
    """parse_webhook for bodies seen moments ago, without parsing them again.

    Alertmanager sends byte-identical bodies: one from each replica of an HA pair, again
    on every retry and every repeat of a group. Parsing is pure and its result immutable,
    so the last `entries` bodies (each at most `max_body` bytes, which bounds the memory)
    and their outcome, a Webhook or the PayloadError, are kept. The time check, which
    depends on now, runs every time."""

    # 32 bodies of at most 16 KiB (a group of a hundred alerts): a few MB at the most.
    def __init__(self, entries: int = 32, max_body: int = 16 * 1024):
        self._entries, self._max_body = entries, max_body
        self._seen: OrderedDict[bytes, Webhook | PayloadError] = OrderedDict()
        self._lock = threading.Lock()

    def parse(self, body: bytes, now: datetime, max_future_skew: float,
              max_services: int | None = None) -> Webhook:
        if len(body) > self._max_body:
            return parse_webhook(body, now, max_future_skew, max_services)
        with self._lock:
            outcome = self._seen.get(body)
            if outcome is not None:
                self._seen.move_to_end(body)
        if outcome is None:
            try:
                outcome = parse_webhook(body, max_services=max_services)
            except PayloadError as exc:
                outcome = exc
            with self._lock:
                self._seen[body] = outcome
                if len(self._seen) > self._entries:
                    self._seen.popitem(last=False)
        if isinstance(outcome, PayloadError):
            raise PayloadError(outcome.reason)
        check_not_in_future(outcome, now, max_future_skew)
        return outcome


def webhook_from_dict(data: Any, max_services: int | None = None) -> Webhook:
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    version = data.get("version")
    if version != "4":
        raise PayloadError(f"unsupported webhook version {quoted(version)}, expected \"4\"")
    alerts = data.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise PayloadError("alerts must be a non-empty list")
    if max_services is not None and len(alerts) > max_services:
        # Only names are counted: a service that is not a string (a list cannot even be
        # put in a set) is refused below, naming the alert, like any other bad label.
        labels = [item["labels"] for item in alerts
                  if isinstance(item, dict) and isinstance(item.get("labels"), dict)]
        named = {service for service in (each.get("service") for each in labels)
                 if isinstance(service, str)}
        if len(named) > max_services:
            raise TooManyServices(len(named), max_services)
    truncated = data.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise PayloadError("truncatedAlerts must be a non-negative integer")
    # Every alert is checked, copies too: a payload is accepted or refused whole.
    kept, positions, copies = _distinct([_alert(item, f"alerts[{i}]")
                                         for i, item in enumerate(alerts)])
    return Webhook(
        receiver=_optional_str(data, "receiver", "receiver"),
        status=_optional_str(data, "status", "status"),
        alerts=kept,
        positions=positions,
        copies=copies,
        group_key=_optional_str(data, "groupKey", "groupKey"),
        truncated_alerts=truncated,
        external_url=_optional_str(data, "externalURL", "externalURL"),
    )


def _distinct(alerts: list[Alert]) -> tuple[tuple[Alert, ...], tuple[int, ...],
                                            Mapping[tuple[str, str], int]]:
    """The alerts without copies (the same instance with the same status: Alertmanager
    never sends one twice, a hostile sender thousands of times), in the order first seen;
    where each was; and how many copies of each alert name and status were left out."""
    seen: set[tuple[bytes, str]] = set()
    kept: list[Alert] = []
    positions: list[int] = []
    copies: dict[tuple[str, str], int] = {}
    for i, alert in enumerate(alerts):
        key = (alert.instance, alert.status)
        if key in seen:
            copies[alert.name, alert.status] = copies.get((alert.name, alert.status), 0) + 1
            continue
        seen.add(key)
        kept.append(alert)
        positions.append(i)
    return tuple(kept), tuple(positions), MappingProxyType(copies)


def _alert(item: Any, where: str) -> Alert:
    if not isinstance(item, dict):
        raise PayloadError(f"{where} must be an object")
    status = item.get("status")
    if status not in (FIRING, RESOLVED):
        raise PayloadError(f"{where}.status must be \"firing\" or \"resolved\", "
                           f"got {quoted(status)}")
    labels = _string_map(item.get("labels"), f"{where}.labels", required=True)
    annotations = _string_map(item.get("annotations"), f"{where}.annotations", required=False)
    name = labels.get("alertname")
    if name is None:
        raise PayloadError(f"{where}.labels has no alertname")
    if name not in REQUIRED_LABELS:
        raise PayloadError(
            f"{where}: unknown alertname {quoted(name)}; this receiver handles "
            f"{', '.join(REQUIRED_LABELS)}"
        )
    missing = [key for key in REQUIRED_LABELS[name] if not labels.get(key)]
    if missing:
        raise PayloadError(f"{where}: {name} is missing label(s) {', '.join(missing)}")
    _check_names(labels, f"{where}.labels")
    starts_at = parse_time(item.get("startsAt"), f"{where}.startsAt")
    if starts_at < EARLIEST_START:
        raise PayloadError(f"{where}.startsAt {item['startsAt']!r} is before 1970: not the "
                           f"start of a real alert")
    ends_at = None
    if item.get("endsAt") is not None:
        ends_at = parse_time(item.get("endsAt"), f"{where}.endsAt")
        # Alertmanager writes Go's zero time while an alert fires: it means "no end".
        if ends_at.year == 1:
            ends_at = None
    return Alert(
        name=name,
        status=status,
        labels=MappingProxyType(labels),
        annotations=MappingProxyType(annotations),
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=_optional_str(item, "fingerprint", f"{where}.fingerprint"),
        generator_url=_optional_str(item, "generatorURL", f"{where}.generatorURL"),
    )


def _check_names(labels: Mapping[str, str], where: str) -> None:
    service = labels.get("service")
    if service is not None and (len(service) > SERVICE_NAME_MAX
                                or not SERVICE_NAME.fullmatch(service)):
        raise PayloadError(
            f"{where}.service {quoted(service)} is not a Docker service name (at most "
            f"{SERVICE_NAME_MAX} letters, digits, '-' and '_', starting and ending with a "
            f"letter or digit)")
    for key in ID_LABELS:
        value = labels.get(key)
        if value is not None and not OBJECT_ID.fullmatch(value):
            raise PayloadError(f"{where}.{key} {quoted(value)} is not a Swarm ID (25 lower-case "
                               f"letters and digits)")


def _string_map(value: Any, where: str, required: bool) -> dict[str, str]:
    """A JSON object of strings. Labels (required) are free of control characters;
    annotations may hold newlines (descriptions do). Neither may hold a lone surrogate:
    JSON's \\ud800 escape makes one, and nothing can encode it later (a log line, a
    Docker label), so it is refused here rather than crash a background job."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object of strings")
    if len(value) > ENTRIES_MAX:
        raise PayloadError(f"{where} has {len(value)} entries; an alert may have at most "
                           f"{ENTRIES_MAX}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{where}.{_printable(key)} must be a string")
        if required and (len(key) > LABEL_MAX or len(item) > LABEL_MAX):
            if len(key) > LABEL_MAX:
                raise PayloadError(f"{where} name {_printable(key)} is longer than the "
                                   f"{LABEL_MAX} characters a label may have")
            raise PayloadError(f"{where}.{_printable(key)} is {len(item)} characters long; "
                               f"a label may have at most {LABEL_MAX}")
    # One look at all the text at once (this runs for every alert of every webhook); the
    # field at fault is looked for only when there is one.
    text = "".join(value) + "".join(value.values())
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            for key, item in value.items():
                _encodable(key, f"{where} key {_printable(key)}")
                _encodable(item, f"{where}.{_printable(key)}")
    if required and CONTROLS.search(text):
        bad = next(k for k, v in value.items() if CONTROLS.search(k) or CONTROLS.search(v))
        raise PayloadError(f"{where}.{_printable(bad)} contains a control character")
    return dict(value)


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{where} contains a lone surrogate (not valid Unicode)") from None


def quoted(value: Any) -> str:
    """A value as a reason quotes it: its repr (controls and lone surrogates escaped), of
    a long one the first QUOTED_MAX characters and its length, of a JSON array or object
    only what it is. A reason is the 400's body and a log line."""
    if isinstance(value, (list, dict)):
        return "a JSON array" if isinstance(value, list) else "a JSON object"
    if not isinstance(value, str):
        value = repr(value)  # a number (up to 4,300 digits), true, false or null
        return value if len(value) <= QUOTED_MAX else _cut(value)
    return repr(value) if len(value) <= QUOTED_MAX else _cut(value, repr)


def _printable(text: str) -> str:
    """A name as it may appear in a reason's path (`alerts[0].labels.<name>`): controls
    escaped, and of a long one the first QUOTED_MAX characters and its length."""
    if len(text) > QUOTED_MAX:
        return _cut(text, _printable)
    return repr(text)[1:-1] if CONTROLS.search(text) or not text.isprintable() else text


def _cut(text: str, show=str) -> str:
    return f"{show(text[:QUOTED_MAX])}... ({len(text)} characters)"


def _optional_str(data: dict, key: str, where: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be a string")
    _encodable(value, where)
    return value
