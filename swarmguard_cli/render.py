"""What the CLI prints, from the maintenance API's documents (docs/contract.md,
"Maintenance"). Pure: dicts and `now` in, text out; no I/O.

Each function takes the document as the receiver sent it; a key the API marks as
nullable may be null, and the text says so rather than printing "None".
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

# `docker service ps` shows task IDs to 12 characters; people paste them from there.
SHORT_ID = 12
BAR_WIDTH = 30

Doc = Mapping[str, Any]


def short(task_id: str | None) -> str:
    return (task_id or "?")[:SHORT_ID]


# -- drain ------------------------------------------------------------------------------

def drain_plan(plan: Doc, *, dry_run: bool) -> str:
    """The plan of a drain: what moves start-first, what Swarm's drain stops, what is blocked."""
    node = _node_name(plan["node"])
    moves, left, blocked = plan["moves"], plan["left"], plan["blocked"]
    count = sum(len(m["tasks"]) for m in moves)
    if dry_run:
        head = f"**DRY-RUN**: would drain {node}"
    else:
        head = f"Draining {node}"
    lines = [f"{head}: {_tasks(count)} to move start-first, {len(left)} left to Swarm's drain, "
             f"{len(blocked)} blocked"]
    if moves:
        lines.append("  moved start-first:")
        for move in moves:
            ids = ", ".join(short(t) for t in move["tasks"])
            note = f"; {move['note']}" if move.get("note") else ""
            lines.append(f"    {move['service']}: {_tasks(len(move['tasks']))} of "
                         f"{_replicas(move.get('replicas'))} ({ids}){note}")
    if left:
        lines.append("  left to Swarm's drain (stopped on the node, started elsewhere by Swarm):")
        lines.extend(_task_why(entry) for entry in left)
    if blocked:
        lines.append("  blocked (no other node can take them):")
        lines.extend(_task_why(entry) for entry in blocked)
    return "\n".join(lines)


def drain_refused(error: str, plan: Doc | None) -> str:
    """A refused drain: the receiver's sentence, and the tasks that blocked it if any."""
    lines = [f"The receiver refused the drain: {error}"]
    blocked = (plan or {}).get("blocked") or []
    if blocked:
        lines.append("  blocked (no other node can take them; --force leaves them to "
                     "Swarm's drain):")
        lines.extend(_task_why(entry) for entry in blocked)
    return "\n".join(lines)


def _task_why(entry: Doc) -> str:
    return f"    {entry['service']} task {short(entry['task'])}: {entry['why']}"


def _node_name(node: Doc) -> str:
    hostname, node_id = node.get("hostname"), node.get("id")
    if hostname and node_id:
        return f"{hostname} ({short(node_id)})"
    return hostname or short(node_id)


# -- progress, shared by drain and rebalance ---------------------------------------------

def progress_line(done: int, total: int, activity: str) -> str:
    """`[#####-----] 2/4 tasks moved, moving web`: a bar, the count, what happens now."""
    total = max(total, done)
    filled = BAR_WIDTH if total == 0 else BAR_WIDTH * done // total
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total} moved, {activity}"


def drain_activity(drain: Doc) -> str:
    """What a drain is doing now, from a node's `drain` in /status."""
    if drain.get("state") != "moving":
        return str(drain.get("state"))
    if drain.get("current"):
        return f"moving {drain['current']}"
    if remaining_tasks(drain.get("remaining")):
        return "waiting for the next move"
    return "finishing"


def remaining_tasks(remaining: int | Sequence[Doc] | None) -> int:
    """Tasks still to move, from a `remaining` that is a count (a rebalance's, in the API
    notes) or a list of {service, tasks} (a drain's)."""
    if isinstance(remaining, int):
        return remaining
    return sum(entry.get("tasks") or 0 for entry in remaining or [])


def moved_line(entry: Doc) -> str:
    """One moved task: `web task abc123def456 -> worker-2 in 4.2 s: success`. An entry
    that stands for several tasks of one service (`tasks`: a count) says how many, and one
    that did not succeed adds its `detail` when it has one."""
    seconds = entry.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    count = entry.get("tasks")
    what = (f"{count} tasks from {short(entry.get('task'))}"
            if isinstance(count, int) and count != 1 else f"task {short(entry.get('task'))}")
    result = entry.get("result")
    detail = f" ({entry['detail']})" if result != "success" and entry.get("detail") else ""
    return (f"{entry.get('service')} {what} -> {entry.get('to') or '?'}{took}: "
            f"{result}{detail}")


# -- rebalance ---------------------------------------------------------------------------

def rebalance_plan(plan: Doc, *, dry_run: bool) -> str:
    """Running tasks per node, and the moves that even them out (or why there are none)."""
    counts = plan.get("counts") or {}
    spread = ", ".join(f"{host} {count}" for host, count in counts.items()) or "no node"
    moves = plan.get("moves") or []
    head = "**DRY-RUN**: would rebalance" if dry_run else "Rebalancing"
    lines = [f"Running tasks per node taking work: {spread} "
             f"(tolerance {plan.get('tolerance')})"]
    if not moves:
        why = plan.get("why_not") or "no move would even them out"
        lines.append(f"Nothing to rebalance: {why}")
        return "\n".join(lines)
    lines.append(f"{head}: {_tasks(len(moves))} to move start-first:")
    for move in moves:
        lines.append(f"    {move['service']} task {short(move['task'])}: {move['from']} -> "
                     f"{' or '.join(move['to']) or 'any other node'}")
    return "\n".join(lines)


# -- status ------------------------------------------------------------------------------

def status_screen(status: Doc, now: datetime) -> str:
    """One screen a person reads: nodes, opted-in services, work in flight, maintenance,
    and the receiver's last decisions with their reasons."""
    receiver = status.get("receiver") or {}
    mode = ("DRY-RUN: decides and logs, changes nothing" if receiver.get("dry_run")
            else "live")
    where = f" at {receiver['url']}" if receiver.get("url") else ""
    sections = [f"Receiver{where}: {mode}",
                _nodes(status.get("nodes") or []),
                _services(status.get("services") or [], now),
                _in_flight(status.get("in_flight") or []),
                _rebalance(status.get("rebalance")),
                _recent(status.get("recent") or [], now)]
    return "\n\n".join(sections)


def _nodes(nodes: Sequence[Doc]) -> str:
    rows = [[n.get("hostname") or short(n.get("id")), n.get("role") or "", n.get("availability") or "",
             n.get("state") or "", str(n.get("tasks", "")), "HOT" if n.get("hot") else "",
             _drain_cell(n.get("drain"))] for n in nodes]
    lines = ["Nodes", *_table(["NODE", "ROLE", "AVAILABILITY", "STATE", "TASKS", "HOT", "DRAIN"],
                              rows)]
    for n in nodes:
        problem = (n.get("drain") or {}).get("problem")
        if problem:
            lines.append(f"  {n.get('hostname')}: drain stuck: {problem}")
    return "\n".join(lines)


def _drain_cell(drain: Doc | None) -> str:
    if not drain:
        return ""
    if drain.get("state") == "drained":
        return "drained"
    moved = len(drain.get("moved") or [])
    force = " (forced)" if drain.get("force") else ""
    return (f"{moved} moved, {remaining_tasks(drain.get('remaining'))} to go, "
            f"{drain_activity(drain)}{force}")


def _services(services: Sequence[Doc], now: datetime) -> str:
    if not services:
        return "Services: none opted in (label swarmguard.enable=true)"
    rows, notes = [], []
    for s in services:
        last = ""
        if s.get("last_action"):
            last = f"{s['last_action']} {age(s.get('last_action_at'), now)}"
        held = ""
        if s.get("futile_until") and _later(s["futile_until"], now):
            held = f"until {clock(s['futile_until'])}"
        rows.append([s.get("name") or "?", f"{s.get('running')}/{_replicas(s.get('replicas'))}",
                     last, held])
        if s.get("last_action_reason"):
            notes.append(f"  {s.get('name')}: {s['last_action_reason']}")
    lines = ["Services (opted in)",
             *_table(["SERVICE", "RUNNING", "LAST ACTION", "FUTILE HOLD"], rows)]
    if notes:
        lines += ["Last actions' reasons:", *notes]
    return "\n".join(lines)


def _in_flight(in_flight: Sequence[Doc]) -> str:
    if not in_flight:
        return "Actions in flight: none"
    lines = ["Actions in flight"]
    for a in in_flight:
        off = f" off {a['from_node']}" if a.get("from_node") else ""
        seconds = a.get("seconds")
        since = f" for {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        lines.append(f"  {a.get('service')}: {a.get('kind')}{off}{since}")
    return "\n".join(lines)


def _rebalance(rebalance: Doc | None) -> str:
    if not rebalance:
        return "Rebalance: none"
    moved = len(rebalance.get("moved") or [])
    line = (f"Rebalance: {rebalance.get('state')}, {moved} moved, "
            f"{remaining_tasks(rebalance.get('remaining'))} to go")
    if rebalance.get("problem"):
        line += f"\n  problem: {rebalance['problem']}"
    return line


def _recent(events: Sequence[Doc], now: datetime) -> str:
    if not events:
        return "Recent decisions: none"
    lines = ["Recent decisions (newest last)"]
    rows = []
    for e in sorted(events, key=lambda e: e.get("seq") or 0):
        result = e.get("result") or ""
        if result == "skip" and e.get("reason"):
            result = f"skip ({e['reason']})"
        rows.append([age(e.get("at"), now), e.get("type") or "", result, e.get("service") or "",
                     e.get("message") or e.get("reason") or ""])
    lines += _table(["WHEN", "TYPE", "RESULT", "SERVICE", "WHY"], rows)
    return "\n".join(lines)


# -- small pieces ------------------------------------------------------------------------

def age(stamp: str | None, now: datetime) -> str:
    """'12 s ago', '3 min ago', '2 h ago', '4 d ago' from an RFC 3339 time; '?' if unreadable."""
    when = _parse(stamp)
    if when is None:
        return "?"
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def clock(stamp: str | None) -> str:
    """'2026-12-04 10:57:09 UTC' from an RFC 3339 time; the text as it is if unreadable."""
    when = _parse(stamp)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else str(stamp)


def _later(stamp: str, now: datetime) -> bool:
    when = _parse(stamp)
    return when is None or when > now


def _parse(stamp: str | None) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.astimezone(timezone.utc)


def _tasks(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"


def _replicas(replicas: int | None) -> str:
    return "global" if replicas is None else str(replicas)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, indented by two; trailing blanks dropped."""
    rows = [list(header), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
