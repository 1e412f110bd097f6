"""The lab's timeline: what `make demo` prints and draws, and the numbers `make bench` keeps."""
import struct

import pytest

from tests.lab.reports.analysis import probe_stats, recoveries, summary
from tests.lab.reports.png import render_png, short_label
from tests.lab.reports.text import render_text
from tests.lab.reports.timeline import (CPU, DEFAULT_THRESHOLDS, DESIRED_REPLICAS, NETWORK,
                                        REPLICAS, THRESHOLDS_FILE, Event, ProbePoint, Series,
                                        Timeline, parse_time, shipped_thresholds)

T0 = 1_795_000_000.0  # a wall-clock instant; everything below is T0 + seconds


def at(seconds: float) -> float:
    return T0 + seconds


def probes(start: float, end: float, rate: float = 20, node="worker-1", failed_at=(), switch_at=None,
           then="worker-2"):
    """A probe at `rate`/s from start to end; failed requests at `failed_at` (seconds)."""
    out, n = [], 0
    while start + n / rate < end:
        t = round(start + n / rate, 3)
        answered_by = then if switch_at is not None and t >= switch_at else node
        if t in failed_at:
            out.append(ProbePoint(at(t), False, None))
        else:
            out.append(ProbePoint(at(t), True, answered_by))
        n += 1
    return tuple(out)


def migration(probe=None, **overrides) -> Timeline:
    """Scenario 1 as the recorder would see it, events added out of order on purpose."""
    events = (
        Event(at(5.2), "action_done", "Migrated victim off worker-1 in 1.5 s: new task def456ghi789 running", "victim"),
        Event(at(0.0), "stress", "CPU stress started on victim (task abc123def456 on worker-1)", "victim",
              task="abc123def456", node="worker-1"),
        Event(at(2.0), "alert_pending", "SwarmGuardMigrate pending for victim (task abc123def456 on worker-1)",
              "victim", task="abc123def456"),
        Event(at(3.5), "alert_firing", "SwarmGuardMigrate firing for victim (task abc123def456 on worker-1)",
              "victim", task="abc123def456"),
        Event(at(3.6), "webhook", "receiver got SwarmGuardMigrate for victim", "victim"),
        Event(at(3.6), "action_started", "Migrating victim off worker-1 (cpu 95 %, net 2 %): start-first, "
              "excluding worker-1", "victim"),
        Event(at(5.1), "task_running", "task def456ghi789 running on worker-2", "victim",
              task="def456ghi789", node="worker-2"),
        Event(at(5.15), "task_shutdown", "task abc123def456 on worker-1 shut down (desired state shutdown)",
              "victim", task="abc123def456", node="worker-1"),
    )
    cpu_old = Series(CPU, "victim", "abc123def456", "worker-1",
                     tuple((at(x / 2), 5.0 if x < 2 else 95.0) for x in range(-4, 11)))
    cpu_new = Series(CPU, "victim", "def456ghi789", "worker-2", tuple((at(5.5 + x / 2), 3.0) for x in range(8)))
    net_old = Series(NETWORK, "victim", "abc123def456", "worker-1", tuple((at(x / 2), 2.0) for x in range(-4, 11)))
    replicas = Series(REPLICAS, "victim", points=((at(-2), 1.0), (at(5.2), 2.0), (at(6.0), 1.0)))
    desired = Series(DESIRED_REPLICAS, "victim", points=((at(-2), 1.0), (at(9), 1.0)))
    fields = dict(scenario="Scenario 1: migrate", t0=T0, events=events,
                  series=(cpu_old, cpu_new, net_old, replicas, desired),
                  probes=probes(-2, 8.6, switch_at=5.2) if probe is None else probe)
    return Timeline(**{**fields, **overrides})


# -- time ------------------------------------------------------------------------------------

def test_rfc3339_with_nanoseconds_reads_as_unix_seconds():
    assert parse_time("2026-11-27T10:10:28.871234567Z") == pytest.approx(
        parse_time("2026-11-27T10:10:28Z") + 0.871234, abs=1e-6)
    assert parse_time("1970-01-01T00:01:00Z") == 60.0


def test_an_offset_is_read_as_the_same_instant_in_utc():
    assert parse_time("2026-11-27T12:10:28.5+02:00") == parse_time("2026-11-27T10:10:28.500000Z")


@pytest.mark.parametrize("text", ["2026-11-27 10:10:28,871", "2026-11-27T10:10:28"])
def test_a_time_without_its_zone_is_refused_not_guessed_as_local(text):
    with pytest.raises(ValueError):
        parse_time(text)


# -- thresholds ------------------------------------------------------------------------------

def test_the_thresholds_are_read_from_the_rules_file_as_each_records_them(tmp_path):
    rules = tmp_path / "thresholds.yml"
    rules.write_text("groups:\n"
                     "  - name: g\n"
                     "    rules:\n"
                     "      - record: swarmguard:threshold:cpu_percent\n"
                     "        expr: vector(70)\n"
                     "      - record: swarmguard:task_cpu:percent\n"
                     "        expr: vector(1)\n")
    assert shipped_thresholds(rules) == {"cpu_percent": 70.0}


def test_the_default_thresholds_are_the_shipped_ones_that_the_graphs_draw():
    assert DEFAULT_THRESHOLDS == shipped_thresholds(THRESHOLDS_FILE)
    assert {"cpu_percent", "memory_percent", "network_low_percent",
            "network_high_percent"} <= set(DEFAULT_THRESHOLDS)


# -- text ------------------------------------------------------------------------------------

def test_the_text_lists_every_event_in_time_order_with_its_offset_from_t0():
    lines = render_text(migration()).splitlines()
    body = [line for line in lines if line.lstrip().startswith(("+", "-"))]
    assert [line.split()[2] for line in body] == [
        "stress", "alert", "alert", "webhook", "action", "task", "task", "action"]
    assert body[0] == "   +0.0 s  stress      CPU stress started on victim (task abc123def456 on worker-1)"
    assert body[2] == "   +3.5 s  alert       SwarmGuardMigrate firing for victim (task abc123def456 on worker-1)"
    assert body[-1].startswith("   +5.2 s  action      Migrated victim off worker-1 in 1.5 s")


def test_events_at_the_same_instant_keep_the_order_they_were_added_in():
    body = render_text(migration()).splitlines()
    webhook = next(i for i, line in enumerate(body) if "receiver got" in line)
    assert "Migrating victim" in body[webhook + 1]


def test_the_text_starts_with_the_scenario_and_ends_with_detection_recovery_and_requests():
    lines = render_text(migration()).splitlines()
    assert lines[0].startswith("Scenario 1: migrate")
    assert lines[-3].split() [0] == "detection"
    assert "webhook received 3.6 s after the stress started (alert firing after 3.5 s)" in lines[-3]
    assert "new task running and old task shut down 5.2 s after the stress started" in lines[-2]
    assert lines[-1] == ("           requests    212 sent, 0 failed, longest gap without an answer "
                         "0.05 s, answered by worker-1, worker-2")


def test_events_before_t0_read_as_negative_offsets():
    timeline = migration(events=(Event(at(-1.25), "note", "receiver started"),))
    assert "   -1.2 s  note        receiver started" in render_text(timeline)


def test_failed_polls_are_said_out_loud():
    text = render_text(migration(poll_errors={"prometheus": 3, "docker": 0}))
    assert "some polls failed (prometheus 3): the record has gaps there" in text


def test_an_event_of_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown event kind"):
        Event(T0, "alert", "too vague")


# -- numbers ---------------------------------------------------------------------------------

def test_detection_is_stress_start_to_webhook_and_mttr_is_until_new_running_and_old_shut_down():
    s = summary(migration())
    assert s["webhook_s"] == 3.6
    assert s["alert_firing_s"] == 3.5
    assert s["detection_s"] == 3.6 and s["detection_from"] == "webhook"
    # The new task ran at 5.1 s, the old one left rotation at 5.15 s: recovered at the later.
    assert s["mttr_s"] == 5.15


def test_without_a_webhook_detection_falls_back_to_the_alert_firing():
    timeline = migration()
    timeline = migration(events=tuple(e for e in timeline.events if e.kind != "webhook"))
    s = summary(timeline)
    assert s["detection_s"] == 3.5 and s["detection_from"] == "alert_firing"


def test_no_mttr_until_the_stressed_task_itself_is_shut_down():
    timeline = migration()
    other = Event(at(4.0), "task_shutdown", "task zzz on worker-2 shut down", "victim", task="zzzzzzzzzzzz")
    events = tuple(e for e in timeline.events if e.kind != "task_shutdown") + (other,)
    s = summary(migration(events=events))
    assert s["mttr_s"] is None
    assert recoveries(migration(events=events))[0]["new_task_running_s"] == 5.1


def test_failed_requests_and_the_longest_gap_come_from_the_probe():
    probe = probes(0, 10, failed_at=(4.0, 4.05, 4.1))
    s = summary(migration(probe=probe))
    assert s["requests"] == 200
    assert s["failed_requests"] == 3
    assert s["longest_gap_s"] == pytest.approx(0.2)  # last answer 3.95 s, next 4.15 s


def test_the_summary_lists_the_actions_with_their_offsets():
    s = summary(migration())
    assert [(a["at_s"], a["kind"]) for a in s["actions"]] == [(3.6, "action_started"), (5.2, "action_done")]


def test_each_stress_event_is_an_episode_of_its_own():
    first = migration()
    shifted = tuple(Event(e.at + 30, e.kind, e.text, e.service, e.task, e.node) for e in first.events)
    episodes = recoveries(migration(events=first.events + shifted))
    assert [e["stress_at_s"] for e in episodes] == [0.0, 30.0]
    assert [e["mttr_s"] for e in episodes] == [5.15, 5.15]
    assert [e["detection_s"] for e in episodes] == [3.6, 3.6]


def test_events_of_another_service_do_not_count_for_the_stressed_one():
    base = migration()
    other = Event(at(1.0), "alert_firing", "SwarmGuardScaleUp firing for web", "web")
    assert summary(migration(events=base.events + (other,)))["alert_firing_s"] == 3.5


def test_a_timeline_without_anything_still_has_a_summary_and_a_text():
    empty = Timeline("nothing", T0)
    s = summary(empty)
    assert s["detection_s"] is None and s["mttr_s"] is None
    assert s["requests"] == 0 and s["failed_requests"] == 0 and s["longest_gap_s"] == 0
    assert render_text(empty).splitlines()[-1].split() == ["requests", "no", "probe", "ran"]


def test_probe_stats_name_the_nodes_in_order_of_first_answer():
    assert probe_stats(probes(0, 2, switch_at=1.0)).nodes == ("worker-1", "worker-2")


# -- picture ---------------------------------------------------------------------------------

def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_png_is_written_at_a_legible_size(tmp_path):
    path = render_png(migration(), tmp_path / "demo" / "timeline.png")
    width, height = png_size(path)
    assert (width, height) == (1320, 990)  # 12 x 9 inches at 110 dpi
    assert path.stat().st_size > 20_000  # four panels of lines and dots, not a blank page


def test_a_png_of_an_empty_timeline_is_still_written(tmp_path):
    width, height = png_size(render_png(Timeline("nothing", T0), tmp_path / "empty.png"))
    assert width > 0 and height > 0


def test_a_png_with_failed_requests_and_empty_series_is_written(tmp_path):
    timeline = migration(probe=probes(0, 6, failed_at=(2.0, 2.05)),
                         series=(Series(CPU, "victim", "abc123def456", "worker-1"),))
    width, height = png_size(render_png(timeline, tmp_path / "sparse.png"))
    assert width > 0 and height > 0


def test_vertical_lines_get_short_labels():
    labels = [short_label(e) for e in migration().ordered_events()]
    assert labels == ["stress start", "Migrate pending", "Migrate firing", "webhook", "migrating",
                      "task running", "task shutdown", "migrated"]
    assert short_label(Event(T0, "action_started", "Scaling up victim from 1 to 2 replicas")) == "scaling up"


def test_a_stress_that_names_no_task_has_no_mttr_only_its_first_new_task():
    # Scenario 2 stresses the service; a later scale-down shutdown is not a recovery.
    events = (Event(at(0), "stress", "CPU and network stress on victim", "victim"),
              Event(at(6), "task_running", "task t2 running on worker-2", "victim", task="t2"),
              Event(at(84), "task_shutdown", "task t2 on worker-2 shut down", "victim", task="t2"))
    timeline = migration(events=events)
    [episode] = recoveries(timeline)
    assert episode["mttr_s"] is None and episode["new_task_running_s"] == 6.0
    assert "a new task running 6.0 s after the stress started" in render_text(timeline)


def test_the_summary_is_plain_json():
    import json
    assert json.loads(json.dumps(summary(migration())))["mttr_s"] == 5.15
