"""What a Timeline adds up to: probe statistics, detection and recovery per stress
episode, and the summary the demo prints and writes as JSON.

Pure: a Timeline in, numbers out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .timeline import Event, ProbePoint, Timeline


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
            # Detection is defined (docs/benchmarks.md, "Results") as stress -> webhook received; a run without a
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
