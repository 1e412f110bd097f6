"""A soak's results for programs (artifacts/soak.json) and for people (artifacts/soak.png).

`to_json` gathers what was planned (services, schedule), what happened (faults as applied,
requests) and what was judged (invariants.py's results) into plain JSON values; `render_png`
draws the whole soak on one time axis. `write` does both. Nothing here judges: a violation
is drawn and listed exactly as invariants.py reported it (its `at` in Unix seconds, as
every time in model.py).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..lab.instruments.events import event_time
from .model import AlertSpan, Fault, Observations
from .plan import BLIND, CANNOT_ACT

# The alerts drawn, one row per alertname and reason, in this order.
ALERTNAMES = (BLIND, CANNOT_ACT, "SwarmGuardMigrate", "SwarmGuardScaleUp", "SwarmGuardScaleDown",
              "SwarmGuardMoveFutile")
_ALERT_COLOURS = dict(zip(ALERTNAMES, ("#e67e22", "#c0392b", "#2e86de", "#27ae60", "#16a085",
                                       "#8e44ad")))
# Outcome results (receiver/reasons.py) and their colours; others are drawn dark grey.
_OUTCOME_COLOURS = {"success": "#27ae60", "failed": "#c0392b", "timeout": "#e67e22",
                    "rolled_back": "#8e44ad", "withdrawn": "#7f8c8d", "dry_run": "#5dade2"}
_FAILED = "#c0392b"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


# -- JSON ----------------------------------------------------------------------------------

def to_json(obs: Observations, schedule: Sequence[Fault], not_scheduled: Sequence[str],
            results: dict, figures: dict, seed: int, minutes: float) -> dict:
    """Everything the soak planned, saw and judged, as JSON values (tuples as lists,
    NaN and infinities as null), so json.loads(json.dumps(doc)) == doc."""
    t0 = obs.started
    doc = {
        "seed": seed,
        "minutes": minutes,
        "started": obs.started,
        "ended": obs.ended,
        "started_utc": _utc(obs.started),
        "ended_utc": _utc(obs.ended),
        "held": not results["violations"],
        "violations": results["violations"],
        "invariants": results["invariants"],
        "services": [asdict(p) for p in obs.plans],
        "requests": request_totals(obs),
        "schedule": [_fault(f) for f in schedule],
        "not_scheduled": list(not_scheduled),
        "faults": [{**_fault(span.fault), "applied_start": span.start, "applied_end": span.end,
                    "applied_start_s": span.start - t0, "applied_end_s": span.end - t0,
                    "note": span.note}
                   for span in obs.faults],
        "figures": figures,
    }
    return _plain(doc)


def request_totals(obs: Observations) -> dict[str, dict[str, int]]:
    """Per service, its probe requests and how many failed: every planned service (zero
    when none was probed), then any other that was."""
    total = Counter(r.service for r in obs.requests)
    failed = Counter(r.service for r in obs.requests if not r.ok)
    names = [p.name for p in obs.plans] + sorted(set(total) - {p.name for p in obs.plans})
    return {name: {"requests": total[name], "failed": failed[name]} for name in names}


def write(path_json: str | Path, path_png: str | Path, obs: Observations,
          schedule: Sequence[Fault], not_scheduled: Sequence[str], results: dict,
          figures: dict, seed: int, minutes: float) -> tuple[Path, Path]:
    """The JSON and the PNG, where asked (their folders made); returns both paths."""
    path_json = Path(path_json)
    doc = to_json(obs, schedule, not_scheduled, results, figures, seed, minutes)
    path_json.parent.mkdir(parents=True, exist_ok=True)
    path_json.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path_json, render_png(obs, results, path_png)


def _fault(f: Fault) -> dict:
    return {**asdict(f), "end_s": f.end_s, "window_end_s": f.window_end_s}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat()


# -- the picture ---------------------------------------------------------------------------

def render_png(obs: Observations, results: dict, path: str | Path) -> Path:
    """One timeline of the whole soak, minutes since its start on one x axis: (1) the faults
    as applied, and their grace; (2) per service, the receiver's `act` decisions and
    outcomes, and the failed requests; (3) SwarmGuard's alerts firing, one row per
    alertname and reason; (4) each SwarmGuard process's RSS, a new line at each restart.
    Violations are red vertical lines across every panel."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no backend
    from matplotlib.lines import Line2D

    path = Path(path)
    services = _service_rows(obs)
    alerts = _alert_rows(obs.alerts)
    heights = [1.1, 0.3 * max(len(services), 2) + 0.3, 0.3 * max(len(alerts), 2) + 0.3, 2.4]
    fig = Figure(figsize=(13, sum(heights) + 2.0), dpi=100)
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": heights})
    ax_faults, ax_services, ax_alerts, ax_rss = axes
    fig.subplots_adjust(left=0.16, right=0.80, top=1 - 0.9 / fig.get_figheight(),
                        bottom=0.75 / fig.get_figheight(), hspace=0.1)

    def m(at: float) -> float:
        return (at - obs.started) / 60

    end = max(m(obs.ended), 0.5)
    _draw_faults(ax_faults, axes, obs, m)
    _draw_services(ax_services, obs, services, m)
    _draw_alerts(ax_alerts, obs.alerts, alerts, obs.ended, m)
    _draw_rss(ax_rss, obs, m)

    violations = results["violations"]
    for ax in axes:
        for v in violations:
            ax.axvline(m(v["at"]), color=_FAILED, lw=1.2, alpha=0.9)
        ax.grid(axis="x", alpha=0.25)
        ax.set_xlim(0, end)
    if violations:
        ax_faults.legend([Line2D([], [], color=_FAILED, lw=1.2)],
                         [f"violation ({len(violations)})"], loc="upper left",
                         bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)

    started = datetime.fromtimestamp(obs.started, timezone.utc)
    ax_rss.set_xlabel(f"minutes since the soak's start ({started:%Y-%m-%d %H:%M:%S} UTC)")
    held = sum(1 for r in results["invariants"].values() if not r["violations"])
    verdict = ("no invariant judged" if not results["invariants"]
               else f"every invariant held ({held})" if not violations
               else f"{len(violations)} violation(s); {held} of {len(results['invariants'])} "
                    "invariants held")
    fig.suptitle(f"SwarmGuard soak: {len(obs.faults)} faults, {len(obs.requests)} requests, "
                 f"{verdict}", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _nothing(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#999999")


def _draw_faults(ax, axes, obs: Observations, m) -> None:
    for i, span in enumerate(sorted(obs.faults, key=lambda s: s.start)):
        start, end = m(span.start), max(m(span.end), m(span.start) + 0.05)  # an instant shows
        for other in axes[1:]:
            other.axvspan(start, end, color="#e74c3c", alpha=0.06, lw=0)
        ax.axvspan(start, end, color="#e74c3c", alpha=0.45, lw=0)
        ax.axvspan(end, m(span.end + span.fault.grace_s), color="#e74c3c", alpha=0.12, lw=0)
        label = span.fault.kind.replace("_", " ")
        if span.fault.node:
            label += f"\n{span.fault.node}"
        ax.text(start, 0.88 if i % 2 == 0 else 0.42, label, fontsize=7, va="top", ha="left")
    ax.set_yticks([])
    ax.set_ylabel("faults", rotation=0, ha="right", va="center")
    if not obs.faults:
        _nothing(ax, "no fault applied")


def _service_rows(obs: Observations) -> list[str]:
    planned = [p.name for p in obs.plans]
    seen = {r.service for r in obs.requests} | {e["service"] for e in obs.events if e["service"]}
    return planned + sorted(seen - set(planned))


def _draw_services(ax, obs: Observations, rows: list[str], m) -> None:
    y = {name: i for i, name in enumerate(rows)}
    acts, outcomes = [], {}
    for e in obs.events:
        if e["service"] not in y:
            continue
        if e["type"] == "decision" and e["result"] == "act":
            acts.append((m(event_time(e)), y[e["service"]] - 0.2))  # above its outcome
        elif e["type"] == "outcome":
            outcomes.setdefault(e["result"], []).append((m(event_time(e)), y[e["service"]]))
    failed = [(m(r.at), y[r.service]) for r in obs.requests if not r.ok]
    if failed:
        ax.scatter(*zip(*failed), marker="|", s=60, color=_FAILED, lw=1.2,
                   label=f"failed request ({len(failed)})")
    if acts:
        ax.scatter(*zip(*acts), marker="v", s=28, color="#222222", label=f"act ({len(acts)})")
    for result, points in sorted(outcomes.items()):
        ax.scatter(*zip(*points), marker="o", s=22, color=_OUTCOME_COLOURS.get(result, "#34495e"),
                   edgecolors="white", linewidths=0.5,
                   label=f"{result.replace('_', ' ')} ({len(points)})")
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)  # the first service on top
    if failed or acts or outcomes:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    else:
        _nothing(ax, "no action, no failed request")


def _alert_row(a: AlertSpan) -> str:
    reason = a.labels.get("reason")
    return a.alertname.removeprefix("SwarmGuard") + (f" ({reason})" if reason else "")


def _alert_rows(alerts: Sequence[AlertSpan]) -> list[tuple[str, str]]:
    """(alertname, row label) of the drawn alerts that fired, in ALERTNAMES' order."""
    rows = {(a.alertname, _alert_row(a)) for a in alerts if a.alertname in ALERTNAMES}
    return sorted(rows, key=lambda r: (ALERTNAMES.index(r[0]), r[1]))


def _draw_alerts(ax, alerts: Sequence[AlertSpan], rows: list[tuple[str, str]], ended: float,
                 m) -> None:
    y = {label: i for i, (_, label) in enumerate(rows)}
    for a in alerts:
        if a.alertname not in ALERTNAMES:
            continue
        start, end = m(a.start), m(a.end if a.end is not None else ended)
        ax.broken_barh([(start, max(end - start, 0.05))], (y[_alert_row(a)] - 0.3, 0.6),
                       color=_ALERT_COLOURS[a.alertname])
    ax.set_yticks(range(len(rows)), [label for _, label in rows], fontsize=7)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    if not rows:
        _nothing(ax, "no SwarmGuard alert fired")


def _draw_rss(ax, obs: Observations, m) -> None:
    by_process: dict[str, dict[int, list]] = {}
    for s in sorted(obs.resources, key=lambda s: s.at):
        by_process.setdefault(s.process, {}).setdefault(s.pid, []).append(s)
    for i, (process, runs) in enumerate(by_process.items()):
        colour = _PALETTE[i % len(_PALETTE)]
        label = process + (f" ({len(runs)} runs)" if len(runs) > 1 else "")
        for j, samples in enumerate(runs.values()):
            # Each run (pid) its own line; a restart's first sample is marked.
            ax.plot([m(s.at) for s in samples], [s.rss_bytes / 1e6 for s in samples], color=colour,
                    lw=1.2, marker="o" if j else None, markevery=[0], ms=3,
                    label=None if j else label)
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(bottom=0)
    if by_process:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    else:
        _nothing(ax, "no resource sample")
