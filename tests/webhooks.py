"""Alertmanager webhook bodies (version 4, as Alertmanager 0.25 sends them) for the unit
tests, the lab tests and the benchmarks: one builder, so each caller states only what it
varies.

An alert carries exactly the keys its caller gives: the receiver reads `status`,
`labels`, `annotations` and `startsAt` (docs/contract.md), and a benchmark that packs
thousands of alerts into a body of a given size leaves out the rest. The envelope holds
what the receiver checks (version, status, receiver, groupKey); what else Alertmanager
sends (`groupLabels`, `commonLabels`, ...) a caller adds after the alerts. Bodies keep
their keys in this order, so a size or a byte pattern a test counts on stays put.

The lab tests also post alerts to Alertmanager itself (`POST /api/v2/alerts`), a
different body: `posted_alert` builds one and `resolved` takes it back.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Iterable

from swarmguard_config.rfc3339 import format_time

# Alertmanager's endsAt of an alert still firing (Go's zero time).
STILL_FIRING = "0001-01-01T00:00:00Z"


def alert(labels: dict, starts_at: str, *, status: str = "firing", annotations: dict | None = None,
          ends_at: str | None = None, **more) -> dict:
    """One alert of a webhook. `annotations` and `ends_at` only when given; `more`: other
    keys as Alertmanager names them (generatorURL, fingerprint)."""
    out: dict = {"status": status, "labels": labels}
    if annotations is not None:
        out["annotations"] = annotations
    out["startsAt"] = starts_at
    if ends_at is not None:
        out["endsAt"] = ends_at
    return {**out, **more}


def webhook(alerts: Iterable[dict], *, status: str = "firing", group_key: str = "{}", **more) -> dict:
    """A webhook body around `alerts`, to the receiver named `swarmguard`; `more`: the rest
    of Alertmanager's envelope where a caller wants it (groupLabels, commonLabels,
    commonAnnotations, externalURL, truncatedAlerts)."""
    return {"version": "4", "status": status, "receiver": "swarmguard", "groupKey": group_key,
            "alerts": list(alerts), **more}


def encoded(body: dict, *, compact: bool = False) -> bytes:
    """The body as sent: JSON in UTF-8; `compact` without the spaces after separators."""
    return json.dumps(body, separators=(",", ":") if compact else None).encode()


def stamp(at: datetime | None = None) -> str:
    """`at` (now when not given) as an RFC 3339 time, as the receiver reads and writes them."""
    return format_time(at or datetime.now(timezone.utc))


def posted_alert(labels: dict, *, annotations: dict | None = None, starts_at: datetime | None = None,
                 lasting: timedelta = timedelta(minutes=5), **more) -> dict:
    """An alert to post to Alertmanager's API (a postableAlert): it fires from `starts_at`
    (now) for `lasting`, unless `resolved` sooner; `more`: generatorURL."""
    start = starts_at or datetime.now(timezone.utc)
    out: dict = {"labels": labels}
    if annotations is not None:
        out["annotations"] = annotations
    return {**out, "startsAt": stamp(start), "endsAt": stamp(start + lasting), **more}


def resolved(posted: dict) -> dict:
    """The same alert ending now: posted again, Alertmanager resolves it and sends the
    resolution on, so a test leaves nothing firing for the next one."""
    return {**posted, "endsAt": stamp()}
