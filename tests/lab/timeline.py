"""What happened during a lab run, as one value: events, metric series and probe samples
on one wall clock, and three ways to show it: text, numbers, a PNG.

Pure: nothing here talks to the lab. recorder.py fills a Timeline from the live lab; the
unit tests build them by hand. Every time is wall-clock unix seconds (time.time()), so
Prometheus sample times, Docker task timestamps, the receiver's events and the probe line
up; every timestamp the lab reads is RFC 3339 and goes through parse_time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

from receiver.payload import parse_time as _rfc3339

# Every event kind, with the word render_text shows for it.
KINDS: Mapping[str, str] = {
    "stress": "stress",  # the caller started load on a task
    "stress_stopped": "stress",  # the caller stopped it
    "alert_pending": "alert",  # Prometheus: condition true, the `for:` window running
    "alert_firing": "alert",  # Prometheus: held for `for:`, sent to Alertmanager
    "alert_resolved": "alert",  # Prometheus: the alert is gone (was pending or firing)
    "webhook": "webhook",  # the receiver got a notification from Alertmanager
    "action_started": "action",  # the receiver is updating the service
    "action_done": "action",  # the receiver saw its migration settle
    "action_failed": "action",  # rolled back, timed out, or Docker refused
    "skip": "skip",  # the receiver ignored an alert, and says why
    "task_running": "task",  # a task's container reached `running` (healthy, if checked)
    "task_shutdown": "task",  # Swarm took a task out of rotation (desired shutdown/remove)
    "task_failed": "task",  # a task failed or was rejected
    "note": "note",  # anything else worth a line
}

# Metric names of Series.
CPU, MEMORY, NETWORK = "cpu", "memory", "network"
REPLICAS = "replicas"  # running tasks, as Prometheus (cAdvisor) counts them
DESIRED_REPLICAS = "desired_replicas"  # the service spec's count, from Docker

# The shipped thresholds (prometheus/rules/swarmguard.yml); a recorder that reads the
# swarmguard:threshold:* series replaces them with what the lab really uses.
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "cpu_percent": 75.0, "memory_percent": 80.0,
    "network_low_percent": 35.0, "network_high_percent": 65.0,
}

SHORT_ID = 12  # as `docker service ps` and the receiver's log print task ids


def parse_time(text: str) -> float:
    """RFC 3339 (Docker's and Prometheus's nanoseconds, the receiver's events' microseconds;
    `Z` or an offset, never a local time) -> unix seconds. The receiver's own parser of
    Alertmanager's startsAt, so the lab and the receiver read time the same way; raises
    receiver.payload.PayloadError (a ValueError) on anything else."""
    return _rfc3339(text).timestamp()


@dataclass(frozen=True)
class Event:
    at: float  # wall clock, unix seconds
    kind: str  # one of KINDS
    text: str  # a sentence about what happened
    service: str | None = None
    task: str | None = None  # short task id, when the event is about one task
    node: str | None = None  # node hostname, likewise

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; one of {sorted(KINDS)}")


@dataclass(frozen=True)
class Series:
    metric: str  # CPU, MEMORY, NETWORK (per task) or REPLICAS, DESIRED_REPLICAS (per service)
    service: str
    task: str | None = None  # short task id; None for per-service series
    node: str | None = None  # hostname of the task's node
    points: tuple[tuple[float, float], ...] = ()  # (wall clock, value), in time order

    @property
    def label(self) -> str:
        if self.task is None:
            return self.service
        return f"{self.service} {self.task} on {self.node or '?'}"


@dataclass(frozen=True)
class ProbePoint:
    at: float  # wall clock when the request was sent
    ok: bool
    node: str | None  # the node that answered, when one did


@dataclass(frozen=True)
class Timeline:
    scenario: str
    t0: float  # wall clock that reads as +0.0 s; usually the stress start
    events: tuple[Event, ...] = ()
    series: tuple[Series, ...] = ()
    probes: tuple[ProbePoint, ...] = ()
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    poll_errors: Mapping[str, int] = field(default_factory=dict)  # source -> failed polls

    def offset(self, at: float) -> float:
        return at - self.t0

    def ordered_events(self) -> list[Event]:
        # sorted() is stable: events at the same instant keep the order they were added in.
        return sorted(self.events, key=lambda e: e.at)

    def series_of(self, metric: str) -> list[Series]:
        return [s for s in self.series if s.metric == metric]


# -- numbers ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeStats:
    sent: int
    failed: int
    longest_gap: float  # longest time between two successful answers, seconds
    nodes: tuple[str, ...]  # nodes that answered, in order of first answer


def probe_stats(probes: Iterable[ProbePoint]) -> ProbeStats:
    ordered = sorted(probes, key=lambda p: p.at)
    ok_times = [p.at for p in ordered if p.ok]
    nodes: list[str] = []
    for p in ordered:
        if p.ok and p.node and p.node not in nodes:
            nodes.append(p.node)
    return ProbeStats(
        sent=len(ordered), failed=sum(1 for p in ordered if not p.ok),
        longest_gap=max((b - a for a, b in zip(ok_times, ok_times[1:])), default=0.0),
        nodes=tuple(nodes))


def recoveries(timeline: Timeline) -> list[dict]:
    """One entry per stress event: how long until SwarmGuard noticed, and until it had
    recovered. An episode ends at the next stress event, so a benchmark can record ten
    migrations in one timeline. Offsets are seconds after that stress event.

    Recovered (MTTR) means what a user needs: a new task of the service running and the
    stressed task out of rotation (desired state shutdown; its container may still be in
    its stop grace period). It needs the stress event to name its task: without one (a
    scale-up stresses the service, not a task) there is no MTTR, only the first new task.
    """
    events = timeline.ordered_events()
    stresses = [e for e in events if e.kind == "stress"]
    out = []
    for i, stress in enumerate(stresses):
        end = stresses[i + 1].at if i + 1 < len(stresses) else float("inf")

        def first(kind: str, *, other_task: bool = False, same_task: bool = False) -> Event | None:
            for e in events:
                if e.kind != kind or not (stress.at <= e.at < end):
                    continue
                if e.service is not None and stress.service is not None and e.service != stress.service:
                    continue
                if other_task and stress.task and e.task == stress.task:
                    continue
                if same_task and e.task != stress.task:
                    continue
                return e
            return None

        firing, webhook = first("alert_firing"), first("webhook")
        new_running = first("task_running", other_task=True)
        old_out = first("task_shutdown", same_task=True) if stress.task else None
        detected = webhook or firing
        out.append({
            "stress_at_s": round(timeline.offset(stress.at), 3),
            "service": stress.service,
            "task": stress.task,
            "alert_firing_s": _after(firing, stress),
            "webhook_s": _after(webhook, stress),
            # Detection is defined (README, Results) as stress -> webhook received; a run without a
            # receiver (or with its metrics unreadable) falls back to the alert firing.
            "detection_s": _after(detected, stress),
            "detection_from": detected.kind if detected else None,
            "new_task_running_s": _after(new_running, stress),
            "old_task_shutdown_s": _after(old_out, stress),
            "mttr_s": (round(max(new_running.at, old_out.at) - stress.at, 3)
                       if new_running and old_out else None),
            "actions": sum(1 for e in events if e.kind == "action_started" and stress.at <= e.at < end
                           and (e.service in (None, stress.service))),
        })
    return out


def _after(event: Event | None, start: Event) -> float | None:
    return round(event.at - start.at, 3) if event else None


def summary(timeline: Timeline) -> dict:
    """The numbers of a run, for printing and for JSON. The top-level detection and MTTR
    are those of the first stress event; `episodes` has every one."""
    episodes = recoveries(timeline)
    first = episodes[0] if episodes else {}
    stats = probe_stats(timeline.probes)
    events = timeline.ordered_events()

    def listed(kinds: tuple[str, ...]) -> list[dict]:
        return [{"at_s": round(timeline.offset(e.at), 3), "kind": e.kind, "service": e.service,
                 "text": e.text} for e in events if e.kind in kinds]

    return {
        "scenario": timeline.scenario,
        "t0": timeline.t0,
        "stress_at_s": first.get("stress_at_s"),
        "alert_firing_s": first.get("alert_firing_s"),
        "webhook_s": first.get("webhook_s"),
        "detection_s": first.get("detection_s"),
        "detection_from": first.get("detection_from"),
        "mttr_s": first.get("mttr_s"),
        "requests": stats.sent,
        "failed_requests": stats.failed,
        "longest_gap_s": round(stats.longest_gap, 3),
        "nodes_answering": list(stats.nodes),
        "actions": listed(("action_started", "action_done", "action_failed")),
        "skips": len(listed(("skip",))),
        "episodes": episodes,
        "poll_errors": dict(timeline.poll_errors),
    }


# -- text ------------------------------------------------------------------------------------

_MARGIN = " " * len("   +0.0 s  ")


def render_text(timeline: Timeline) -> str:
    """One line per event, in time order, then what it adds up to."""
    start = datetime.fromtimestamp(timeline.t0, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    lines = [f"{timeline.scenario or 'SwarmGuard lab run'}   (+0.0 s = {start} UTC)"]
    for e in timeline.ordered_events():
        lines.append(f"{timeline.offset(e.at):+7.1f} s  {KINDS[e.kind]:<10}  {e.text}")

    episodes = recoveries(timeline)
    for n, ep in enumerate(episodes, start=1):
        prefix = f"#{n} (stress at {ep['stress_at_s']:+.1f} s): " if len(episodes) > 1 else ""
        lines.append(f"{_MARGIN}{'detection':<10}  {prefix}{_detection_sentence(ep)}")
        lines.append(f"{_MARGIN}{'recovery':<10}  {prefix}{_recovery_sentence(ep)}")
    stats = probe_stats(timeline.probes)
    if stats.sent:
        lines.append(f"{_MARGIN}{'requests':<10}  {stats.sent} sent, {stats.failed} failed, "
                     f"longest gap without an answer {stats.longest_gap:.2f} s"
                     + (f", answered by {', '.join(stats.nodes)}" if stats.nodes else ""))
    else:
        lines.append(f"{_MARGIN}{'requests':<10}  no probe ran")
    if any(timeline.poll_errors.values()):
        # Said out loud: a gap in the record is not a gap in the service.
        failed = ", ".join(f"{k} {v}" for k, v in sorted(timeline.poll_errors.items()) if v)
        lines.append(f"{_MARGIN}{'recorder':<10}  some polls failed ({failed}): "
                     f"the record has gaps there")
    return "\n".join(lines)


def _detection_sentence(ep: dict) -> str:
    if ep["detection_s"] is None:
        return "no alert fired"
    if ep["detection_from"] == "webhook":
        extra = (f" (alert firing after {ep['alert_firing_s']:.1f} s)"
                 if ep["alert_firing_s"] is not None else "")
        return f"webhook received {ep['webhook_s']:.1f} s after the stress started{extra}"
    return f"alert firing {ep['alert_firing_s']:.1f} s after the stress started (no webhook seen)"


def _recovery_sentence(ep: dict) -> str:
    if ep["mttr_s"] is not None:
        return (f"new task running and old task shut down {ep['mttr_s']:.1f} s "
                f"after the stress started (MTTR)")
    if ep["new_task_running_s"] is None:
        return "no new task ran"
    first = f"a new task running {ep['new_task_running_s']:.1f} s after the stress started"
    if ep["task"] is None:
        return first
    return f"{first}; task {ep['task']} was not shut down"


# -- picture ---------------------------------------------------------------------------------

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
