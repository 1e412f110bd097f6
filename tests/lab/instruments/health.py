"""What the dashboard's first row says, in one sentence: can SwarmGuard see and act?

    SwarmGuard sees 3 of 3 nodes, 2 of 2 opted-in tasks; Alertmanager delivers to the receiver

`read` asks the lab's Prometheus the very queries of the dashboard's row "Can SwarmGuard
see and act?" (grafana/dashboards/swarmguard.json, by panel title: one definition);
`describe` is pure formatting. `make demo` prints it first; tests print it on failure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable


from . import dashboard
from ..config import LabConfig
from . import prometheus

HEALTH_ALERTS = ("SwarmGuardBlind", "SwarmGuardCannotAct")
FIRING = 'ALERTS{alertname=~"%s", alertstate="firing"}' % "|".join(HEALTH_ALERTS)
RECEIVER_UP = 'max(up{job="swarmguard-receiver"})'


@dataclass(frozen=True)
class Health:
    nodes_seen: int
    nodes_ready: int
    tasks_seen: int
    tasks_running: int
    webhook_failures: int  # in the dashboard panel's window
    receiver_up: bool
    firing: tuple[dict, ...] = field(default=())  # label sets of firing health alerts


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(h: Health) -> str:
    """One line, then one line per firing health alert."""
    sight = (f"SwarmGuard sees {h.nodes_seen} of {_plural(h.nodes_ready, 'node')}, "
             f"{h.tasks_seen} of {h.tasks_running} opted-in {'task' if h.tasks_running == 1 else 'tasks'}")
    if not h.receiver_up:
        act = "the receiver is down: nothing would be acted on"
    elif h.webhook_failures:
        n = h.webhook_failures
        act = (f"Alertmanager failed {n} webhook deliver{'y' if n == 1 else 'ies'} to the receiver "
               "in the last 15 minutes")
    else:
        act = "Alertmanager delivers to the receiver"
    lines = [f"{sight}; {act}"]
    for labels in sorted(h.firing, key=lambda a: sorted(a.items())):
        where = ", ".join(f"{k} {labels[k]}" for k in ("node", "service", "kind") if labels.get(k))
        lines.append(f"  FIRING {labels.get('alertname')} ({labels.get('reason')})"
                     + (f": {where}" if where else ""))
    return "\n".join(lines)


def panel_queries(title: str) -> list[str]:
    """The PromQL of one panel of the dashboard, targets in order, as Prometheus gets it."""
    wanted = [q for q in dashboard.promql() if f"({title})" in q.where]
    if not wanted:
        raise LookupError(f"no panel {title!r} in {dashboard.DASHBOARD}")
    return [q.expr for q in wanted]


def read(cfg: LabConfig, query: Callable[[LabConfig, str], list[dict]] = prometheus.query) -> Health:
    def number(expr: str) -> int:
        result = query(cfg, expr)
        return round(float(result[0]["value"][1])) if result else 0

    nodes_seen, nodes_ready = map(number, panel_queries("Nodes seen"))
    tasks_seen, tasks_running = map(number, panel_queries("Opted-in tasks seen"))
    [failures] = map(number, panel_queries("Webhook deliveries failing (15 m)"))
    return Health(nodes_seen=nodes_seen, nodes_ready=nodes_ready, tasks_seen=tasks_seen,
                  tasks_running=tasks_running, webhook_failures=failures,
                  receiver_up=number(RECEIVER_UP) == 1,
                  firing=tuple(r["metric"] for r in query(cfg, FIRING)))


def sees_everything(h: Health) -> bool:
    """The receiver is up and every ready node and running opted-in task is measured."""
    return (h.receiver_up and h.nodes_ready > 0 and h.nodes_seen == h.nodes_ready
            and h.tasks_seen == h.tasks_running)


def healthy(h: Health) -> bool:
    """...and no health alert fires, no webhook delivery failed in the last 15 minutes."""
    return sees_everything(h) and not h.firing and not h.webhook_failures


# ------------------------------------------------------------- no false alarms, suite-wide
# Reasons the lab raises by design, outside any fault: it runs the receiver only inside
# the tests that need it (receiver_down between them), and some tests deliver alerts to a
# receiver they stopped on purpose (webhook_failing). In a deployment both are real alarms.
LAB_BY_DESIGN = frozenset({"receiver_down", "webhook_failing"})
# After a repair: one Prometheus resend (5 s) and Alertmanager's group interval.
AFTER_REPAIR = 60.0
_expected: list[tuple[float, float]] = []


def expect_alerts(start: float, end: float) -> None:
    """A fault test declares the time span of its fault: health alerts then are no alarm."""
    _expected.append((start, end + AFTER_REPAIR))


def unexplained(series: list[dict], expected: list[tuple[float, float]],
                by_design: frozenset[str] = LAB_BY_DESIGN) -> list[str]:
    """Firing health alerts (a query_range matrix of ALERTS) at moments no fault explains,
    one line per alert with its first such moment."""
    out = []
    for s in series:
        labels = s["metric"]
        if labels.get("reason") in by_design:
            continue
        times = [float(t) for t, _ in s["values"]
                 if not any(lo <= float(t) <= hi for lo, hi in expected)]
        if times:
            at = datetime.fromtimestamp(times[0], timezone.utc).strftime("%H:%M:%S")
            what = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())
                             if k not in ("__name__", "alertstate"))
            out.append(f"{what} firing at {at} UTC ({len(times)} samples)")
    return out


def false_alarms(cfg: LabConfig, since: float, until: float) -> list[str]:
    return unexplained(prometheus.query_range(cfg, FIRING, since, until), list(_expected))
