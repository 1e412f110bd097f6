"""A Timeline as text: one line per event, then what it adds up to."""
from __future__ import annotations

from datetime import datetime, timezone

from .analysis import probe_stats, recoveries
from .timeline import KINDS, Timeline


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
