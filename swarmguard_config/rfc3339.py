"""RFC 3339 times, as Alertmanager writes startsAt, Docker writes a container's start and
SwarmGuard writes its labels and events.

Shared, so that every component reads a time by the same rules: the receiver (webhook
startsAt, service labels) and the exporter (a container's StartedAt) each ship this
package beside their own, neither the other's. Pure, and apart from the webhook parser:
the service labels (receiver/labels.py) are read without depending on the wire format.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any


class NotATime(ValueError):
    """A value that is not an RFC 3339 time; the message names the field."""


# RFC 3339 as Alertmanager writes it (Go's time.RFC3339Nano): fractions of any length,
# `Z` or a numeric offset. Python keeps microseconds, so extra digits are dropped.
# Digits are ASCII ones, as RFC 3339's ABNF says: `\d` would take any Unicode digit
# (Arabic-Indic, full-width), and int() would read them; and the whole text is the time
# (fullmatch: `$` would also let a trailing newline through).
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_time(text: Any, field_name: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime, or raise NotATime."""
    if not isinstance(text, str):
        raise NotATime(f"{field_name} must be an RFC 3339 string")
    m = _RFC3339.fullmatch(text)
    if not m:
        raise NotATime(f"{field_name} {text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    try:
        micro = int((frac or "0").ljust(6, "0")[:6])
        # Leap seconds (":60") are legal RFC 3339 but not for datetime; clamp to :59.
        tz = timezone.utc
        if not zulu:
            offset = timedelta(hours=int(oh), minutes=int(om))
            tz = timezone(offset if sign == "+" else -offset)
        value = datetime(int(year), int(month), int(day), int(hour), int(minute),
                         min(int(second), 59), micro, tzinfo=tz)
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise NotATime(f"{field_name} {text!r} is not a valid time: {exc}") from None


def utc_now() -> datetime:
    """The wall clock, aware and in UTC: what every `clock` defaults to."""
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds: comparable with Alertmanager's startsAt.
    isoformat, not strftime: glibc's %Y writes the year 1 as `1`, not `0001`."""
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"
