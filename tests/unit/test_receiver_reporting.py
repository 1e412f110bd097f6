"""What an operator reads of each outcome: the log line's level and text, the event and the
count the Reporter writes (receiver/reporting.py; docs/contract.md, "Receiver events")."""
import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from receiver import actions
from receiver import events as E
from receiver import reasons as R
from receiver.cluster import node_from_dict, service_from_dict
from receiver.events import EventLog
from receiver.maintenance import DRAIN, NodeMove
from receiver.metrics import Metrics
from receiver.payload import parse_webhook
from receiver.reporting import Reporter
from tests.fake_docker_api_client import node_dict, service_dict

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
NOW = datetime(2026, 11, 27, 10, 0, 30, tzinfo=timezone.utc)
HOT = node_from_dict(node_dict("w1a9d3f5h7j2", "worker-1"))
WEB = service_from_dict(service_dict("demo_web"))


@pytest.fixture
def reporter():
    return Reporter(Metrics(), EventLog(64, lambda: NOW))


@pytest.fixture
def lines(caplog):
    """(logger, level, message) of each line the Reporter writes; events' lines left out."""
    caplog.set_level(logging.INFO, logger="receiver")
    return lambda: [(r.name, r.levelno, r.getMessage()) for r in caplog.records
                    if r.name != E.EVENTS_LOGGER]


def the_events(reporter):
    return [{k: v for k, v in e.items() if k not in ("seq", "at", "starts_at")}
            for e in reporter.events.since(0)[0]]


def sample(reporter, name, **labels):
    return reporter.metrics.registry.get_sample_value(name, labels)


def webhook(name):
    return parse_webhook((FIXTURES / name).read_bytes())


def migration(alert):
    return actions.Migration(alert, WEB, "demo_web", task=None, from_node=HOT,
                             constraints=(), exclusion="")


def drain_move(tasks=("t1p4r7s0u3w6",)):
    return NodeMove(DRAIN, WEB, HOT, tasks=tasks, constraints=(), exclusion="worker-1",
                    destinations=())


# -- the HTTP layer ---------------------------------------------------------------------------

def test_the_ready_line_and_started_event_say_live_or_dry_run(reporter, lines):
    reporter.started(False, "live settings")
    reporter.started(True, "dry settings")
    assert lines() == [
        ("receiver.app", logging.INFO, "SwarmGuard receiver ready: live settings"),
        ("receiver.app", logging.INFO,
         "SwarmGuard receiver ready in DRY-RUN mode: dry settings")]
    assert [(e["type"], e["result"], e["message"]) for e in the_events(reporter)] == [
        ("started", "live", "SwarmGuard receiver ready"),
        ("started", "dry_run", "SwarmGuard receiver ready in DRY-RUN mode")]


def test_a_resolved_alert_is_an_information_line_and_a_notification_event(reporter, lines):
    reporter.received(webhook("resolved_migrate.json"), NOW)
    assert lines() == [("receiver.app", logging.INFO,
                        "SwarmGuardMigrate for demo_web resolved")]
    (event,) = the_events(reporter)
    assert (event["type"], event["result"], event["message"]) == (
        "notification", "resolved", "SwarmGuardMigrate for demo_web resolved")


def test_alerts_alertmanager_left_out_are_a_warning_naming_how_many_and_the_group(
        reporter, lines):
    truncated = dataclasses.replace(webhook("firing_migrate.json"), truncated_alerts=3,
                                    group_key="{}:{service=\"demo_web\"}")
    reporter.received(truncated, NOW)
    assert lines() == [("receiver.app", logging.WARNING,
                        "Alertmanager left out 3 alerts of group {}:{service=\"demo_web\"} "
                        "(max_alerts)")]


def test_a_firing_alerts_age_is_observed_as_is_and_never_below_zero(reporter):
    (alert,) = webhook("firing_migrate.json").alerts
    reporter.received(webhook("firing_migrate.json"), alert.starts_at + timedelta(seconds=0.5))
    reporter.received(webhook("firing_migrate.json"), alert.starts_at - timedelta(seconds=5))
    assert sample(reporter, "swarmguard_alert_age_seconds_sum",
                  alertname="SwarmGuardMigrate") == pytest.approx(0.5)
    assert sample(reporter, "swarmguard_alert_age_seconds_count",
                  alertname="SwarmGuardMigrate") == 2


def test_shutdown_says_how_many_services_work_was_dropped_on(reporter, lines):
    reporter.shut_down(2)
    assert lines() == [("receiver.app", logging.INFO, "Shutdown: work on 2 service(s) dropped")]


# -- the Dispatcher ---------------------------------------------------------------------------

def test_a_skip_is_an_information_line_unless_it_failed(reporter, lines):
    (alert,) = webhook("firing_migrate.json").alerts
    skip = actions.Skip(alert, R.COOLDOWN, "acted on 10 s ago")
    reporter.skipped(skip, NOW)
    assert lines() == [("receiver.worker", logging.INFO, skip.sentence)]


def test_a_withdrawn_decision_is_an_information_line_saying_why(reporter, lines):
    (alert,) = webhook("firing_migrate.json").alerts
    reporter.finished(actions.Outcome(migration(alert), R.WITHDRAWN,
                                      detail="the task left its node"), NOW, 3.0)
    assert lines() == [("receiver.worker", logging.INFO,
                        "Withdrew the decision to migrate demo_web: the task left its node")]
    (event,) = the_events(reporter)
    assert (event["type"], event["result"], event["reason"]) == (
        "outcome", "withdrawn", "the task left its node")


def test_a_successful_action_writes_no_line_of_its_own(reporter, lines):
    (alert,) = webhook("firing_migrate.json").alerts
    reporter.finished(actions.Outcome(migration(alert), R.SUCCESS, 4.0), NOW, 5.0)
    assert lines() == []


# -- the Actuator -----------------------------------------------------------------------------

def test_an_unanswered_prometheus_is_a_warning_that_nothing_is_acted_on(reporter, lines):
    reporter.prometheus_unanswered("connection refused")
    assert lines() == [("receiver.actuator", logging.WARNING,
                        "cannot confirm alerts with Prometheus, acting on none: "
                        "connection refused")]


def test_a_futile_hold_is_a_warning_naming_until_when_or_a_dry_run_line(reporter, lines):
    (alert,) = webhook("firing_migrate.json").alerts
    found = actions.FutileMove(alert, R.FUTILE, "its last move did not help", service=WEB,
                               until=datetime(2026, 11, 27, 10, 30, 5, tzinfo=timezone.utc))
    reporter.futile_found(found, dry_run=False)
    reporter.futile_found(found, dry_run=True)
    hold = "demo_web's migrations until 10:30:05 (swarmguard.futile-until)"
    assert lines() == [
        ("receiver.actuator", logging.WARNING, f"Holding {hold}: moving it did not help"),
        ("receiver.actuator", logging.INFO, f"**DRY-RUN**: would hold {hold}")]


# -- maintenance ------------------------------------------------------------------------------

def test_a_move_decided_is_an_information_line_and_an_act_event(reporter, lines):
    move = drain_move()
    reporter.moving(move)
    assert lines() == [("receiver.actuator", logging.INFO, move.sentence)]
    (event,) = the_events(reporter)
    assert (event["type"], event["result"], event["task"]) == ("decision", "act", "t1p4r7s0u3w6")


def test_a_move_of_no_particular_task_names_none_in_its_events(reporter):
    move = drain_move(tasks=())
    reporter.moving(move)
    reporter.moved(move, R.SUCCESS, "", 2.0)
    reporter.move_unwatched(move)
    assert [e["task"] for e in the_events(reporter)] == [None, None, None]


def test_a_successful_move_is_an_information_line_counted_by_kind(reporter, lines):
    reporter.moved(drain_move(), R.SUCCESS, "1 task running on worker-2", 2.25)
    assert lines() == [("receiver.actuator", logging.INFO,
                        "Moved demo_web off worker-1 in 2.2 s: 1 task running on worker-2")]
    assert sample(reporter, "swarmguard_actions_total", kind="drain", result="success") == 1
    assert sample(reporter, "swarmguard_action_duration_seconds_count", kind="drain") == 1
    assert sample(reporter, "swarmguard_last_action_timestamp_seconds",
                  service="demo_web", kind="drain") > 0


def test_a_move_that_did_not_land_is_a_warning_with_its_result_in_words(reporter, lines):
    reporter.moved(drain_move(), R.ROLLED_BACK, "Swarm rolled the update back", 7.0)
    assert lines() == [("receiver.actuator", logging.WARNING,
                        "Move of demo_web off worker-1 rolled back after 7.0 s: "
                        "Swarm rolled the update back")]
    assert sample(reporter, "swarmguard_actions_total", kind="drain", result="rolled_back") == 1
    assert sample(reporter, "swarmguard_last_action_timestamp_seconds",
                  service="demo_web", kind="drain") is None


def test_a_withdrawn_move_is_an_information_line_saying_why_and_takes_no_time(
        reporter, lines):
    reporter.moved(drain_move(), R.WITHDRAWN, "the task left the node", None)
    assert lines() == [("receiver.actuator", logging.INFO,
                        "Withdrew the move of demo_web off worker-1: the task left the node")]
    assert sample(reporter, "swarmguard_actions_total", kind="drain", result="withdrawn") == 1
    assert sample(reporter, "swarmguard_action_duration_seconds_count", kind="drain") is None
    (event,) = the_events(reporter)
    assert (event["type"], event["result"], event["reason"], event["duration_s"]) == (
        "outcome", "withdrawn", "the task left the node", None)


def test_a_move_under_way_at_the_deadline_is_an_error_line_and_counted_dropped(
        reporter, lines):
    reporter.move_unwatched(drain_move())
    assert lines() == [("receiver.actuator", logging.ERROR,
                        "Shutting down with the move of demo_web off worker-1 still under way; "
                        "Swarm completes or rolls it back itself, but its outcome goes "
                        "unrecorded here (the next receiver resumes the drain)")]
    assert sample(reporter, "swarmguard_work_dropped_total", reason="shutdown_unwatched") == 1


def test_a_stopped_maintenance_is_a_warning_and_any_other_step_information(reporter, lines):
    reporter.maintenance(DRAIN, E.STOPPED, "w1", "Stopped draining worker-1: undrained")
    reporter.maintenance(DRAIN, "ended", "w1", "Drained worker-1")
    assert lines() == [
        ("receiver.actuator", logging.WARNING, "Stopped draining worker-1: undrained"),
        ("receiver.actuator", logging.INFO, "Drained worker-1")]
    assert [(e["type"], e["result"], e["kind"], e["node"]) for e in the_events(reporter)] == [
        ("maintenance", "stopped", "drain", "w1"), ("maintenance", "ended", "drain", "w1")]
