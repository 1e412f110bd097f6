"""How the lab reads the receiver's structured events (tests/lab/instruments/events.py): out of a
recorded receiver log, into timeline events and the benchmarks' detection times."""
from pathlib import Path

import pytest

from tests.lab.instruments import events as LE
from tests.lab.reports.analysis import recoveries
from tests.lab.reports.timeline import Event, Timeline, parse_time

LOG = Path(__file__).parent / "fixtures" / "recorder" / "receiver-events.log"
NODES = {"n-manager-000000000000000": "manager", "n-worker1-0000000000000000": "worker-1",
         "n-worker2-0000000000000000": "worker-2"}
RUN_STARTS = parse_time("2026-11-27T10:10:20Z")


def this_run():
    return [e for e in LE.read_events(LOG) if parse_time(e["at"]) >= RUN_STARTS]


def timeline_events(since="2026-11-27T10:10:20Z", services=("victim",)):
    return LE.timeline_events(LE.read_events(LOG), parse_time(since), services, NODES)


def test_only_whole_event_lines_are_read_from_the_log():
    found = LE.read_events(LOG)
    # Two runs in one file (seq restarts), gunicorn's lines, the access log, English
    # sentences, a traceback and a last line still being written are all left out.
    assert [e["seq"] for e in found] == [1, 2] + list(range(1, 14))
    assert {e["type"] for e in found} == {"started", "decision", "outcome", "notification",
                                          "dropped"}


def test_reading_from_an_offset_starts_at_that_run(tmp_path):
    log = tmp_path / "receiver.log"
    text = LOG.read_text()
    log.write_text(text)
    offset = text.index("[2026-11-27 10:10:20")
    assert [e["seq"] for e in LE.read_events(log, offset)] == list(range(1, 14))
    assert LE.read_events(tmp_path / "missing.log") == []


def test_event_times_are_utc_whatever_the_hosts_zone(host_in_tokyo):
    # The receiver writes `at` in UTC (receiver/events.py, format_time); read as local
    # time on a host at UTC+9 it would land nine hours early.
    [started] = [e for e in this_run() if e["type"] == "started"]
    assert LE.event_time(started) == pytest.approx(RUN_STARTS + 1.004512)
    assert LE.event_time({"at": "2026-11-27T10:10:21.004512Z"}) == pytest.approx(1795774221.004512)


def test_a_time_without_a_zone_is_refused_rather_than_read_as_local(host_in_tokyo):
    with pytest.raises(ValueError):
        LE.event_time({"at": "2026-11-27T10:10:21.004512"})


def test_the_events_become_timeline_events_of_the_watched_services_since_the_given_time():
    got = [(e.kind, e.service, e.text) for e in timeline_events()]
    assert got == [
        ("note", None, "receiver started"),
        ("action_started", "victim", "Migrating victim off worker-1 (cpu 95 %, net 2 %): start-first, "
                                     "excluding worker-1"),
        ("skip", "victim", "Ignoring SwarmGuardMigrate for victim: an action on it is already in progress"),
        ("action_done", "victim", "Migrated victim off worker-1 in 1.5 s: new task icuun4fnh1f9 running"),
        ("webhook", "victim", "receiver got SwarmGuardMigrate for victim resolved"),
        ("action_started", "victim", "Scaling up victim from 1 to 2 replicas (cpu 96 %, net 81 %)"),
        ("action_failed", "victim", "Migration of victim off worker-2 rolled back after 30.1 s: Swarm "
                                    "rolled the update back (state rollback_completed)"),
        ("action_failed", "victim", "Scale-down of victim failed: docker update failed: 500 Server Error"),
        ("note", "victim", "**DRY-RUN**: would migrate victim off worker-1 (cpu 95 %, net 2 %): "
                           "start-first, excluding worker-1"),
        ("note", "victim", "work on victim dropped at shutdown"),
    ]


def test_timeline_events_carry_the_events_own_time():
    started = next(e for e in timeline_events() if e.kind == "action_started")
    assert started.at == parse_time("2026-11-27T10:10:24.300125Z")


def test_events_before_since_are_an_earlier_run_or_scenario_and_ignored():
    kinds = [e.kind for e in timeline_events(since="2026-11-27T10:10:40Z")]
    assert kinds == ["action_started", "action_failed", "action_failed", "note", "note"]


def test_other_services_events_are_not_timeline_events():
    assert [e.text for e in timeline_events(services=("bystander",))] == [
        "receiver started",
        "Ignoring SwarmGuardMigrate for bystander: service is not opted in (swarmguard.enable=true)"]


def test_a_dry_run_receiver_says_so_when_it_starts():
    started = dict(next(e for e in this_run() if e["type"] == "started"), result="dry_run")
    [event] = LE.timeline_events([started], 0.0, ["victim"], NODES)
    assert (event.kind, event.text) == ("note", "receiver started (dry run)")


def test_a_node_the_lab_does_not_know_is_named_by_its_short_id():
    [done] = [e for e in this_run() if e["result"] == "success" and e["kind"] == "migrate"]
    [event] = LE.timeline_events([done], 0.0, ["victim"], {})
    assert event.text.startswith("Migrated victim off n-worker1-00 in 1.5 s")


def test_an_event_type_the_lab_does_not_know_is_not_a_timeline_event():
    future = dict(this_run()[0], type="something_new", result="x")
    assert LE.timeline_events([future], 0.0, ["victim"], NODES) == []


# -- detection, as the benchmarks measure it ---------------------------------------------------

def test_detection_ends_at_the_first_act_decision_for_the_service_and_kind():
    assert LE.action_started_at(this_run(), "migrate", "victim", after=RUN_STARTS) == parse_time(
        "2026-11-27T10:10:24.300125Z")
    assert LE.action_started_at(this_run(), "scale_up", "victim", after=RUN_STARTS) == parse_time(
        "2026-11-27T10:10:40.120000Z")


def test_an_act_decision_before_the_trial_or_of_a_dry_run_is_not_the_receiver_acting():
    after = parse_time("2026-11-27T10:10:30Z")
    assert LE.action_started_at(this_run(), "migrate", "victim", after=after) is None  # 10:54 was a dry run
    assert LE.action_started_at(this_run(), "migrate", "bystander", after=RUN_STARTS) is None


def test_an_action_still_under_way_counts_as_acting():
    decision = next(e for e in this_run() if e["type"] == "decision" and e["result"] == "act")
    assert LE.action_started_at([decision], "migrate", "victim", after=0.0) == LE.event_time(decision)


def test_the_timeline_detects_and_counts_actions_from_the_events():
    stress = Event(parse_time("2026-11-27T10:10:22Z"), "stress", "CPU stress started on victim",
                   "victim")
    timeline = Timeline("migrate", stress.at, (stress, *timeline_events()))
    [episode] = recoveries(timeline)
    assert episode["actions"] == 2  # the migration and the scale-up; not the dry run



def test_runs_in_one_log_are_told_apart_though_each_counts_from_one():
    run = this_run()
    dry = [dict(e, seq=n) for n, e in enumerate(run[-4:-1], start=1)]  # started, act, dry_run
    dry[0] = dict(run[0], seq=1, result="dry_run", at=dry[1]["at"])
    live = [dict(run[0], seq=1, at="2026-11-27T10:12:00Z"),
            dict(dry[1], seq=2, at="2026-11-27T10:12:01Z")]  # under way: no outcome yet
    assert LE.action_started_at(dry + live, "migrate", "victim", after=0.0) == parse_time(
        "2026-11-27T10:12:01Z")
