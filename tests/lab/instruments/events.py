"""The receiver's structured events (docs/contract.md, "Receiver events"), as the lab reads
them: the recorder's timelines, the demo, the benchmarks and the lab tests all come here.
Nothing in the lab reads the receiver's English sentences; an event's `message` is shown
to people, never parsed.

Read from the JSON lines of the receiver's log, not from GET /events: the log outlives
the process (a test that SIGTERMs the receiver reads what it did on its way out, after the
listening socket is gone), holds a whole run whatever SWARMGUARD_EVENT_BUFFER is, and
needs no token. What that costs is handled in ReceiverProcess: the file is appended to
across runs (it notes where its run starts), and event lines are written at INFO (it
refuses to read events of a receiver started with a higher log level).

Times: an event's `at` is RFC 3339 UTC; timeline.parse_time turns it into unix seconds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

from receiver import events as E
from receiver import kinds
from receiver.reasons import DRY_RUN, SUCCESS

from ..reports.timeline import SHORT_ID, Event, parse_time



def parse_events(lines: Iterable[str]) -> list[dict]:
    """The event objects among a receiver log's lines (kept with their line ends). Skipped:
    gunicorn's own lines, the access log, English sentences, tracebacks, and a last line
    the receiver is still writing (no line end yet)."""
    out = []
    for line in lines:
        if not (line.startswith("{") and line.endswith("\n")):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "seq" in event and "type" in event:
            out.append(event)
    return out


def read_events(log_path: str | Path, offset: int = 0) -> list[dict]:
    """The events in the receiver's log from byte `offset` on (where a run started); no
    file, no events."""
    path = Path(log_path)
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return parse_events(text.splitlines(keepends=True))


def event_time(event: Mapping) -> float:
    """When the receiver recorded the event, in unix seconds."""
    return parse_time(event["at"])


def _pretended(events: list[Mapping]) -> set[int]:
    """Positions (in `events`, in the order recorded) of the `act` decisions of a dry run:
    those whose action's outcome (the next outcome for the same service; one action per
    service at a time) is `dry_run`. A decision with no outcome yet is an action under
    way. Positions, not `seq`: a log may hold several runs, each counting from 1."""
    out: set[int] = set()
    waiting: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        if e["type"] == E.STARTED:
            waiting.clear()  # a new run: what the last one left unfinished stays so
        elif e["type"] == E.DECISION and e["result"] == E.ACT:
            waiting.setdefault(e["service"], []).append(i)
        elif e["type"] == E.OUTCOME:
            decided = waiting.pop(e["service"], [])
            if e["result"] == DRY_RUN:
                out.update(decided)
    return out


def action_started_at(events: Iterable[Mapping], kind: str, service: str, after: float
                      ) -> float | None:
    """When the receiver first started to act (an `act` decision, recorded just before its
    update call, milliseconds after the webhook arrived) on `service` with `kind`, at or
    after `after`; None if it did not. Dry-run decisions do not count."""
    events = list(events)
    pretended = _pretended(events)
    times = [event_time(e) for i, e in enumerate(events)
             if e["type"] == E.DECISION and e["result"] == E.ACT and e["kind"] == kind
             and e["service"] == service and i not in pretended]
    return min((t for t in times if t >= after), default=None)


def timeline_events(events: Iterable[Mapping], since: float, services: Iterable[str],
                    node_names: Mapping[str, str]) -> list[Event]:
    """Receiver events recorded at or after `since` -> timeline Events of these services
    (and the receiver's own start, which concerns them all):

      act decision -> action_started; of a dry run -> nothing (its outcome is the note)
      successful migration -> action_done (a scale is done when its update is accepted:
        its start says it all); failed, timed out, rolled back -> action_failed
      dry_run outcome -> note; skip decision -> skip; resolved notification -> webhook;
      started -> note; dropped at shutdown -> note
    """
    events = list(events)
    pretended = _pretended(events)
    wanted = set(services)
    out = []
    for i, e in enumerate(events):
        at = event_time(e)
        service = e["service"]
        if at < since or (service is not None and service not in wanted):
            continue
        kind_text = _kind_and_text(e, i in pretended, node_names)
        if kind_text is not None:
            out.append(Event(at, *kind_text, service))
    return out


def _kind_and_text(e: Mapping, pretended: bool, node_names: Mapping[str, str]
                   ) -> tuple[str, str] | None:
    etype, result = e["type"], e["result"]
    if etype == E.STARTED:
        return "note", "receiver started" + (" (dry run)" if result == E.DRY_RUN else "")
    if etype == E.NOTIFICATION:
        return "webhook", f"receiver got {e['alert']} for {e['service']} {result}"
    # The receiver's own sentence (`message`) is shown as it is, never parsed.
    if etype == E.DROPPED:
        return "note", e["message"]
    if etype == E.DECISION:
        if result == E.SKIP:
            return "skip", e["message"]
        return None if pretended else ("action_started", e["message"])
    if etype != E.OUTCOME:
        return None  # a type this reader does not know yet: not a timeline event
    if result == DRY_RUN:
        return "note", e["message"]
    off = ""
    if e["kind"] == kinds.MIGRATE.name and e["node"]:
        off = f" off {node_names.get(e['node'], e['node'][:SHORT_ID])}"
    took = f"{e['duration_s']:.1f} s" if e["duration_s"] is not None else None
    why = f": {e['reason']}" if e["reason"] else ""
    if result == SUCCESS:
        if e["kind"] != kinds.MIGRATE.name:
            return None
        return "action_done", f"Migrated {e['service']}{off}" + (f" in {took}" if took else "") + why
    # What the receiver calls the action (a drain's or rebalance's move: "Action").
    noun = kinds.BY_NAME[e["kind"]].noun if e["kind"] in kinds.BY_NAME else "Action"
    return "action_failed", (f"{noun} of {e['service']}{off} {result.replace('_', ' ')}"
                             + (f" after {took}" if took else "") + why)
