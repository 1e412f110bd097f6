"""The receiver's event stream (docs/contract.md, "Receiver events"): its schema, the
JSON log lines, GET /events."""
import json
import logging
import re

import pytest

from receiver import events as E
from tests.fake_docker_api_client import TASK, WORKER_1, WORKER_2
from tests.unit.test_receiver_app import AUTH, NOW, body, make, moves_task_to, post

# The receiver's clock in these tests (NOW) as every event writes a time: RFC 3339, UTC,
# microseconds.
NOW_AS_WRITTEN = "2026-11-27T10:00:31.000000Z"

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def events(app, since=0, headers=AUTH):
    return app.test_client().get(f"/events?since={since}", headers=headers)


def about_alerts(app):
    """The decisions and outcomes, without the receiver's own `started` event."""
    return [e for e in events(app).get_json()["events"] if e["type"] in (E.DECISION, E.OUTCOME)]


def test_every_event_has_exactly_the_documented_fields_with_their_types():
    app, api = make()
    api.after_update = moves_task_to(WORKER_2)
    post(app, body("firing_migrate.json"))
    post(app, body("grouped_migrate.json"))
    found = events(app).get_json()["events"]
    assert found
    for event in found:
        assert tuple(event) == E.FIELDS
        assert isinstance(event["seq"], int)
        assert event["type"] in (E.DECISION, E.OUTCOME, E.DROPPED, E.STARTED, E.NOTIFICATION)
        for key in ("at", "starts_at", "received_at"):
            assert event[key] is None or TIME.match(event[key]), (key, event)
        for key in ("alert", "service", "task", "node", "kind", "reason", "message"):
            assert event[key] is None or isinstance(event[key], str)
        assert event["duration_s"] is None or isinstance(event["duration_s"], float)
    assert [e["seq"] for e in found] == list(range(1, len(found) + 1))


def test_a_migration_is_one_decision_then_one_outcome_naming_alert_service_task_and_node():
    app, api = make()
    api.after_update = moves_task_to(WORKER_2)
    post(app, body("firing_migrate.json"))
    decision, outcome = about_alerts(app)
    assert {k: decision[k] for k in ("type", "result", "alert", "service", "task", "node",
                                     "kind")} == {
        "type": "decision", "result": "act", "alert": "SwarmGuardMigrate",
        "service": "demo_web", "task": TASK, "node": WORKER_1, "kind": "migrate"}
    assert decision["message"].startswith("Migrating demo_web off worker-1")
    assert (outcome["type"], outcome["result"], outcome["task"]) == ("outcome", "success", TASK)
    assert outcome["starts_at"] == "2026-11-27T10:00:01.123456Z"
    assert outcome["received_at"] == NOW_AS_WRITTEN
    assert outcome["duration_s"] is not None


def test_an_action_retried_after_docker_errors_is_one_decision_then_one_outcome_counted_once():
    from tests.fake_docker_api_client import api_error
    from tests.unit.test_receiver_app import sample
    app, api = make()
    api.after_update = moves_task_to(WORKER_2)
    api.update_failures = [api_error(500, "rpc error: code = Unavailable")] * 4
    post(app, body("firing_migrate.json"))
    assert [(e["type"], e["result"]) for e in about_alerts(app)] == [
        ("decision", "act"), ("outcome", "success")]
    assert len(api.updates) == 5
    assert sample(app, "swarmguard_actions_total", kind="migrate", result="success") == 1
    assert sample(app, "swarmguard_docker_errors_total", operation="update") == 4


def test_an_action_that_lost_to_another_receiver_is_answered_as_withdrawn():
    from tests.fake_docker_api_client import WEB_ID
    app, api = make()
    bumped = []

    def other_receiver_writes(api):
        # Between our read and our update, another replica migrates the service.
        if not bumped:
            bumped.append(True)
            api.bump(WEB_ID, **{"swarmguard.last-action": "migrate",
                                "swarmguard.last-action-at": "2026-11-27T10:00:30.000000Z",
                                "swarmguard.last-migrate-at": "2026-11-27T10:00:30.000000Z"})
    api.before_tasks = other_receiver_writes
    post(app, body("firing_migrate.json"))
    decision, outcome = about_alerts(app)
    assert (decision["type"], decision["result"]) == ("decision", "act")
    assert (outcome["type"], outcome["result"], outcome["task"]) == ("outcome", "withdrawn", TASK)
    assert outcome["reason"].startswith("not made: decided again, stale: ")
    assert len(api.updates) == 1


@pytest.mark.parametrize("dry_run, result", [(False, "live"), (True, "dry_run")])
def test_the_first_event_of_a_run_says_the_receiver_started_and_whether_it_only_pretends(
        dry_run, result):
    app, _ = make(dry_run=dry_run)
    [started] = events(app).get_json()["events"]
    assert {k: v for k, v in started.items() if v is not None} == {
        "seq": 1, "type": "started", "at": NOW_AS_WRITTEN,
        "result": result, "message": started["message"]}


def test_a_resolved_alert_is_a_notification_naming_alert_service_and_arrival():
    app, api = make()
    post(app, body("resolved_migrate.json"))
    [_, resolved] = events(app).get_json()["events"]
    assert {k: resolved[k] for k in ("type", "result", "alert", "service", "kind",
                                     "received_at")} == {
        "type": "notification", "result": "resolved", "alert": "SwarmGuardMigrate",
        "service": "demo_web", "kind": "migrate",
        "received_at": NOW_AS_WRITTEN}
    assert api.calls == []  # recorded, never acted on


def test_a_skip_is_a_decision_with_its_reason():
    app, _ = make(dry_run=True)
    post(app, body("grouped_migrate.json"))
    skips = [e for e in events(app).get_json()["events"] if e["result"] == "skip"]
    assert {(e["service"], e["reason"]) for e in skips} >= {("demo_api", "stale")}
    assert all(e["message"].startswith("Ignoring SwarmGuardMigrate for") for e in skips)


def test_a_dry_run_is_an_act_decision_and_a_dry_run_outcome():
    app, api = make(dry_run=True)
    post(app, body("firing_scale_up.json"))
    assert [(e["type"], e["result"]) for e in about_alerts(app)] == [
        ("decision", "act"), ("outcome", "dry_run")]
    assert api.updates == []


def test_events_since_returns_only_the_newer_ones_and_says_when_some_were_missed():
    app, _ = make(dry_run=True, event_buffer=2)
    post(app, body("firing_scale_up.json"))  # seq 2 and 3, after `started`
    assert events(app, since=2).get_json() == {
        "events": [events(app).get_json()["events"][-1]], "last": 3, "missed": False}
    post(app, body("firing_scale_down.json"))  # seq 4: at the minimum of 1 replica
    post(app, body("firing_migrate.json"))  # seq 5 and 6; 3 and 4 leave the ring
    answer = events(app, since=2).get_json()
    assert ([e["seq"] for e in answer["events"]], answer["missed"]) == ([5, 6], True)
    assert events(app, since=6).get_json() == {"events": [], "last": 6, "missed": False}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_events_need_the_token(headers):
    app, _ = make()
    assert events(app, headers=headers).status_code == 401


@pytest.mark.parametrize("since", ["-1", "x", "1.5", "\u0661"])
def test_a_bad_since_is_400_naming_it(since):
    app, _ = make()
    response = events(app, since=since)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("since must be a whole number")


@pytest.mark.parametrize("since", [str(2**63 - 1), str(2**63), str(2**64), "9" * 5000])
def test_a_since_past_the_last_event_however_large_gets_no_events_and_nothing_missed(since):
    # Any whole number is a place in the stream; past the last event there is nothing yet.
    app, _ = make(dry_run=True)
    post(app, body("firing_scale_up.json"))  # seq 2 and 3, after `started`
    response = events(app, since=since)
    assert response.status_code == 200
    assert response.get_json() == {"events": [], "last": 3, "missed": False}


def test_a_long_bad_since_is_quoted_by_its_first_64_characters_and_its_length():
    app, _ = make()
    response = events(app, since="x" * 5000)
    assert response.status_code == 400
    assert response.get_json()["error"].endswith(f"got {'x' * 64!r}... (5000 characters)")


def test_a_since_with_leading_zeros_is_the_number_it_writes():
    app, _ = make(dry_run=True)
    post(app, body("firing_scale_up.json"))
    assert [e["seq"] for e in events(app, since="0" * 5000 + "2").get_json()["events"]] == [3]


def test_each_event_is_also_one_ascii_json_log_line(caplog):
    caplog.set_level(logging.INFO, logger=E.EVENTS_LOGGER)
    app, _ = make(dry_run=True)
    post(app, body("firing_scale_up.json"))
    lines = [r.getMessage() for r in caplog.records if r.name == E.EVENTS_LOGGER]
    assert [json.loads(line) for line in lines] == events(app).get_json()["events"]
    assert all(line.isascii() and "\n" not in line for line in lines)


def test_escape_controls_leaves_one_printable_line():
    assert E.escape_controls("a\nb\x1b[31m\u2028\ud800") == "a\\nb\\x1b[31m\\u2028\\ud800"
    assert E.escape_controls("plain é") == "plain é"
