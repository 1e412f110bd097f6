"""A Timeline as a PNG: stacked panels on one time axis, events as vertical lines."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from .analysis import summary
from .timeline import CPU, DEFAULT_THRESHOLDS, DESIRED_REPLICAS, NETWORK, REPLICAS, Event, ProbePoint, Series, Timeline


# Events drawn as vertical lines across every panel: (colour, line style).
_DRAWN = {
    "stress": ("#c0392b", "-"),
    "stress_stopped": ("#c0392b", ":"),
    "alert_firing": ("#e67e22", "--"),
    "action_started": ("#2e86de", "-"),
    "action_done": ("#27ae60", "-"),
    "action_failed": ("#8e44ad", "-"),
}
_DRAWN_NAMES = {"stress": "stress start", "stress_stopped": "stress stop",
                "alert_firing": "alert firing", "action_started": "action started",
                "action_done": "action done", "action_failed": "action failed"}


def short_label(event: Event) -> str:
    """A few words for a vertical line: 'Migrate firing', 'migrating', 'migrated'."""
    words = event.text.split()
    if event.kind.startswith("alert_") and words:
        return f"{words[0].removeprefix('SwarmGuard')} {event.kind.removeprefix('alert_')}"
    if event.kind.startswith("action_") and words:
        verb = " ".join(words[:2]) if words[0] == "Scaling" else words[0]
        return verb.lower()
    return _DRAWN_NAMES.get(event.kind, event.kind.replace("_", " "))


def render_png(timeline: Timeline, path: str | Path) -> Path:
    """Stacked panels on one time axis (seconds since t0): CPU %, network %, replicas,
    the node that answered each probe request, with events as vertical lines."""
    # The object-oriented API, not pyplot: no global state, safe off the main thread,
    # and no backend to select.
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    path = Path(path)
    fig = Figure(figsize=(12, 9), dpi=110)
    ax_cpu, ax_net, ax_rep, ax_probe = fig.subplots(
        4, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2.2, 1.4, 1.6]})
    fig.subplots_adjust(left=0.09, right=0.80, top=0.82, bottom=0.10, hspace=0.12)
    t = timeline.offset

    colours = _task_colours(timeline)
    th = {**DEFAULT_THRESHOLDS, **timeline.thresholds}

    # (1) CPU
    for s in timeline.series_of(CPU):
        ax_cpu.plot([t(a) for a, _ in s.points], [v for _, v in s.points], lw=1.4,
                    color=colours[(s.service, s.task)], label=s.label)
    ax_cpu.axhline(th["cpu_percent"], color="#555555", ls="--", lw=1,
                   label=f"CPU threshold {th['cpu_percent']:.0f} %")
    ax_cpu.set_ylabel("CPU %")
    ax_cpu.set_ylim(0, max(105.0, _max_value(timeline.series_of(CPU)) * 1.08))
    ax_cpu.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)

    # (2) network
    for s in timeline.series_of(NETWORK):
        ax_net.plot([t(a) for a, _ in s.points], [v for _, v in s.points], lw=1.4,
                    color=colours[(s.service, s.task)], label=s.label)
    ax_net.axhline(th["network_low_percent"], color="#7f8c8d", ls=":", lw=1,
                   label=f"low {th['network_low_percent']:.0f} % (migrate below)")
    ax_net.axhline(th["network_high_percent"], color="#555555", ls="--", lw=1,
                   label=f"high {th['network_high_percent']:.0f} % (scale up above)")
    ax_net.set_ylabel("network %\nof node capacity")
    ax_net.set_ylim(0, max(100.0, _max_value(timeline.series_of(NETWORK)) * 1.08))
    ax_net.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)

    # (3) replicas
    replica_series = timeline.series_of(REPLICAS) + timeline.series_of(DESIRED_REPLICAS)
    service_colours = {name: _PALETTE[i % len(_PALETTE)]
                       for i, name in enumerate(dict.fromkeys(s.service for s in replica_series))}
    for s in replica_series:
        # Same colour per service: solid what runs (Prometheus), dashed what the spec asks.
        desired = s.metric == DESIRED_REPLICAS
        ax_rep.step([t(a) for a, _ in s.points], [v for _, v in s.points], where="post",
                    color=service_colours[s.service], lw=1.2 if desired else 1.8,
                    ls="--" if desired else "-",
                    label=f"{s.service} {'desired (spec)' if desired else 'running'}")
    ax_rep.set_ylabel("replicas")
    ax_rep.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_rep.set_ylim(0, max(2.0, _max_value(replica_series)) + 0.6)
    if replica_series:
        ax_rep.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)

    # (4) probe: the node that answered each request, and the ones nobody answered
    _draw_probe(ax_probe, timeline)

    for ax, metric in ((ax_cpu, (CPU,)), (ax_net, (NETWORK,)),
                       (ax_rep, (REPLICAS, DESIRED_REPLICAS))):
        if not any(timeline.series_of(m) for m in metric):
            ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center",
                    va="center", color="#999999")
    for ax in (ax_cpu, ax_net, ax_rep, ax_probe):
        ax.grid(alpha=0.25)

    # (5) events across every panel, with short labels above the top panel
    drawn = [e for e in timeline.ordered_events() if e.kind in _DRAWN]
    times = ([t(e.at) for e in timeline.events] + [t(p.at) for p in timeline.probes]
             + [t(a) for s in timeline.series for a, _ in s.points])
    if times:
        lo, hi = min(times), max(times)
        pad = max((hi - lo) * 0.01, 0.5)
        ax_probe.set_xlim(lo - pad, hi + pad)
    lo, hi = ax_probe.get_xlim()
    min_gap = (hi - lo) * 0.013  # about one rotated 7-point line of text
    label_x = float("-inf")
    above = blended_transform_factory(ax_cpu.transData, ax_cpu.transAxes)
    for e in drawn:
        colour, style = _DRAWN[e.kind]
        for ax in (ax_cpu, ax_net, ax_rep, ax_probe):
            ax.axvline(t(e.at), color=colour, ls=style, lw=1.0, alpha=0.8)
        label_x = max(t(e.at), label_x + min_gap)  # nudge labels apart, never the lines
        ax_cpu.text(label_x, 1.02, short_label(e), transform=above, rotation=90, fontsize=7,
                    ha="center", va="bottom", color=colour, clip_on=False)
    kinds = list(dict.fromkeys(e.kind for e in drawn))
    if kinds:
        fig.legend([Line2D([], [], color=_DRAWN[k][0], ls=_DRAWN[k][1]) for k in kinds],
                   [_DRAWN_NAMES[k] for k in kinds], loc="lower center", ncol=len(kinds),
                   fontsize=8, frameon=False, bbox_to_anchor=(0.45, 0.0))

    ax_probe.set_xlabel("seconds since t0 "
                        + datetime.fromtimestamp(timeline.t0, timezone.utc).strftime("(%H:%M:%S UTC)"))
    fig.suptitle(f"SwarmGuard: {timeline.scenario or 'lab run'}", fontsize=13, y=0.985)
    fig.text(0.5, 0.945, _headline(timeline), ha="center", fontsize=9, color="#333333")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _probe_row(p: ProbePoint) -> str:
    if p.node:
        return p.node
    return "no answer" if not p.ok else "node unknown"


def _draw_probe(ax, timeline: Timeline) -> None:
    names = {_probe_row(p) for p in timeline.probes}
    specials = [r for r in ("node unknown", "no answer") if r in names]
    rows = sorted(names - set(specials)) + specials  # nodes first, the misses on top
    y = {name: i for i, name in enumerate(rows)}
    t = timeline.offset
    ok = [p for p in timeline.probes if p.ok]
    bad = [p for p in timeline.probes if not p.ok]
    if ok:
        ax.scatter([t(p.at) for p in ok], [y[_probe_row(p)] for p in ok], s=6,
                   color="#27ae60", label="answered (ok)")
    if bad:
        ax.scatter([t(p.at) for p in bad], [y[_probe_row(p)] for p in bad], s=30, marker="x",
                   color="#c0392b", label=f"failed ({len(bad)})")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(-0.6, max(len(rows) - 0.4, 0.6))
    ax.set_ylabel("answered by")
    if not timeline.probes:
        ax.text(0.5, 0.5, "no probe ran", transform=ax.transAxes, ha="center", va="center",
                color="#999999")
        return
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def _headline(timeline: Timeline) -> str:
    s = summary(timeline)
    parts = []
    if s["detection_s"] is not None:
        parts.append(f"detection {s['detection_s']:.1f} s ({s['detection_from'].replace('_', ' ')})")
    if s["mttr_s"] is not None:
        parts.append(f"MTTR {s['mttr_s']:.1f} s")
    parts.append(f"{s['requests']} requests, {s['failed_requests']} failed, "
                 f"longest gap {s['longest_gap_s']:.2f} s")
    return "   ·   ".join(parts)


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def _max_value(series: list[Series]) -> float:
    return max((v for s in series for _, v in s.points), default=0.0)


def _task_colours(timeline: Timeline) -> dict:
    # One colour per task, the same in the CPU and network panels, in order of appearance.
    keys: list = []
    for s in sorted(timeline.series_of(CPU) + timeline.series_of(NETWORK),
                    key=lambda s: s.points[0][0] if s.points else float("inf")):
        if (s.service, s.task) not in keys:
            keys.append((s.service, s.task))
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}
