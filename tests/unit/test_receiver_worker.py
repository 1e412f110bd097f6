import dataclasses
from datetime import timedelta
from pathlib import Path

from receiver import actions
from receiver import reasons as R
from receiver.metrics import Metrics
from receiver.payload import parse_webhook
from receiver.worker import DUPLICATE_WINDOW_S, Dispatcher
from tests.inline_executor import InlineExecutor

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"


def recorded(name):
    return list(parse_webhook((FIXTURES / name).read_bytes()).alerts)


class ManualExecutor:
    """Holds jobs until the test runs them: a service stays 'in flight' meanwhile."""

    def __init__(self):
        self.jobs = []

    def submit(self, fn, *args):
        self.jobs.append((fn, args))

    def shutdown(self, wait=True, cancel_futures=False):
        pass  # the test decides what runs

    def run_all(self):
        jobs, self.jobs = self.jobs, []
        for fn, args in jobs:
            fn(*args)


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


def test_firing_alerts_are_grouped_by_service_and_resolved_ones_dropped():
    seen = []
    dispatcher = Dispatcher(lambda alerts: seen.append(alerts) or [], Metrics(),
                            executor=InlineExecutor())
    receipt = dispatcher.submit(recorded("grouped_migrate.json"))
    assert receipt.queued == ("demo_web", "demo_api")
    assert [[a.fingerprint for a in group] for group in seen] == [
        ["8a4f2c1d9e7b6035", "1b2c3d4e5f607182"], ["0f1e2d3c4b5a6978"]]


def test_an_alert_for_a_service_being_acted_on_is_skipped_as_in_progress():
    metrics = Metrics()
    handled, inner = [], []

    def handle(alerts):
        handled.append(alerts)
        if len(handled) == 1:  # while the first is being handled, the same alert again
            inner.append(dispatcher.submit(recorded("firing_migrate.json")))
        return []
    dispatcher = Dispatcher(handle, metrics, executor=InlineExecutor())
    first = dispatcher.submit(recorded("firing_migrate.json"))
    assert (first.queued, inner[0].queued, inner[0].busy) == (("demo_web",), (), ("demo_web",))
    assert len(handled) == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="in_progress") == 1
    assert dispatcher.busy() == set()
    assert sample(metrics, "swarmguard_actions_in_flight") == 0


def test_a_newer_alert_for_a_waiting_service_replaces_the_waiting_one():
    executor, metrics = ManualExecutor(), Metrics()
    handled = []
    dispatcher = Dispatcher(lambda alerts: handled.append(alerts) or [], metrics,
                            executor=executor)
    older = recorded("firing_migrate.json")
    newer = [later(older[0])]
    assert dispatcher.submit(older).queued == ("demo_web",)
    assert dispatcher.submit(newer).queued == ("demo_web",)
    assert dispatcher.busy() == {"demo_web"}
    assert len(executor.jobs) == 1  # one piece of work per service, whatever arrives
    assert sample(metrics, "swarmguard_actions_in_flight") == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="superseded") == 1

    executor.run_all()
    assert handled == [tuple(newer)]
    assert dispatcher.busy() == set()
    assert sample(metrics, "swarmguard_actions_in_flight") == 0


def later(alert, seconds: float = 30):
    """The same alert, firing again from a later start: a new alert instance."""
    return dataclasses.replace(alert, starts_at=alert.starts_at + timedelta(seconds=seconds))


def test_the_same_alert_instance_handled_moments_ago_is_skipped_as_a_duplicate_without_reading_the_cluster():
    now = [100.0]
    handled = []
    metrics = Metrics()
    dispatcher = Dispatcher(lambda alerts: handled.append(alerts) or [], metrics,
                            executor=InlineExecutor(), monotonic=lambda: now[0])
    dispatcher.submit(recorded("firing_migrate.json"))
    now[0] += DUPLICATE_WINDOW_S - 0.1
    assert dispatcher.submit(recorded("firing_migrate.json")).queued == ()
    assert len(handled) == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="duplicate") == 1
    # A new instance of the alert is handled at once; the old one again after the window.
    assert dispatcher.submit([later(recorded("firing_migrate.json")[0])]).queued == ("demo_web",)
    now[0] += 0.2
    assert dispatcher.submit(recorded("firing_migrate.json")).queued == ("demo_web",)
    assert len(handled) == 3


def test_the_guard_is_released_even_when_handling_crashes():
    def crash(alerts):
        raise RuntimeError("boom")
    metrics = Metrics()
    dispatcher = Dispatcher(crash, metrics, executor=InlineExecutor())
    dispatcher.submit(recorded("firing_migrate.json"))
    assert dispatcher.busy() == set()
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="internal_error") == 1


def test_outcomes_are_counted_by_kind_result_and_reason():
    alerts = recorded("firing_migrate.json") + recorded("firing_scale_up.json")
    stale = actions.Skip(alerts[1], R.STALE, "service demo_web no longer exists")

    def handle(group):
        if group[0].kind == "migrate":
            return [actions.Outcome(_action(group[0]), R.SUCCESS, duration=4.0)]
        return [actions.Outcome(stale, R.SKIPPED)]

    metrics = Metrics()
    clock = iter([100.0, 106.5, 106.5])
    dispatcher = Dispatcher(handle, metrics, executor=InlineExecutor(),
                            monotonic=lambda: next(clock))
    # one service per submit, as Alertmanager groups by service
    dispatcher.submit(alerts[:1])
    assert sample(metrics, "swarmguard_actions_total", kind="migrate", result="success") == 1
    assert sample(metrics, "swarmguard_action_duration_seconds_sum", kind="migrate") == 4.0
    assert sample(metrics, "swarmguard_recovery_duration_seconds_sum", kind="migrate") == 6.5
    assert sample(metrics, "swarmguard_last_action_timestamp_seconds",
                  service="demo_web", kind="migrate") > 0

    clock = iter([200.0, 201.0, 201.0])
    dispatcher.submit(alerts[1:])
    assert sample(metrics, "swarmguard_stale_alerts_total", alertname="SwarmGuardScaleUp") == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardScaleUp", reason="stale") == 1


def _action(alert):
    from receiver.cluster import node_from_dict, service_from_dict
    from tests.fake_docker_api_client import node_dict, service_dict
    return actions.Migration(alert, service_from_dict(service_dict("demo_web")), "demo_web", task=None,
                       from_node=node_from_dict(node_dict(alert.node_id, "worker-1")),
                       constraints=(), exclusion="")


def test_a_resend_of_the_waiting_alerts_is_a_duplicate_not_a_replacement():
    executor, metrics = ManualExecutor(), Metrics()
    dispatcher = Dispatcher(lambda alerts: [], metrics, executor=executor)
    dispatcher.submit(recorded("firing_migrate.json"))
    assert dispatcher.submit(recorded("firing_migrate.json")).queued == ("demo_web",)
    assert len(executor.jobs) == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="duplicate") == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="superseded") == 0


# -- events: what the receiver tells about each alert it was given ------------------------------

from datetime import datetime, timezone  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402

import pytest  # noqa: E402

from receiver.events import EventLog  # noqa: E402
from receiver.gate import WriteGate  # noqa: E402
from receiver.worker import RecentlyHandled, WorkRefused  # noqa: E402

RECEIVED = datetime(2026, 11, 27, 10, 0, 30, tzinfo=timezone.utc)


def with_events(handle, executor=None, **kwargs):
    events = EventLog(64, lambda: RECEIVED)
    dispatcher = Dispatcher(handle, Metrics(), events=events,
                            executor=executor or InlineExecutor(), clock=lambda: RECEIVED,
                            **kwargs)
    return dispatcher, events


def the_events(events):
    return [{k: v for k, v in e.items() if k not in ("seq", "at", "starts_at")}
            for e in events.since(0)[0]]


def test_an_action_ends_in_an_outcome_event_with_the_alert_its_result_and_duration():
    (alert,) = recorded("firing_migrate.json")
    action = _action(alert)
    dispatcher, events = with_events(lambda alerts: [actions.Outcome(action, R.SUCCESS, 4.0)])
    dispatcher.submit([alert])
    assert the_events(events) == [{
        "type": "outcome", "alert": "SwarmGuardMigrate", "service": "demo_web",
        "task": alert.task_id, "node": alert.node_id, "kind": "migrate", "result": "success",
        "reason": None, "message": "Migrating demo_web", "received_at": "2026-11-27T10:00:30.000000Z",
        "duration_s": 4.0}]


def test_a_failed_action_says_why_in_its_event_and_in_an_error_line(caplog):
    (alert,) = recorded("firing_migrate.json")
    outcome = actions.Outcome(_action(alert), R.FAILED, detail="docker update failed: boom")
    dispatcher, events = with_events(lambda alerts: [outcome])
    with caplog.at_level(logging.INFO, logger="receiver"):
        dispatcher.submit([alert])
    (event,) = the_events(events)
    assert (event["result"], event["reason"]) == ("failed", "docker update failed: boom")
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert line.getMessage() == "Could not migrate demo_web: docker update failed: boom"


def test_a_dry_run_outcome_event_says_what_would_have_been_done():
    (alert,) = recorded("firing_migrate.json")
    dispatcher, events = with_events(lambda alerts: [actions.Outcome(_action(alert), R.DRY_RUN)])
    dispatcher.submit([alert])
    (event,) = the_events(events)
    assert event["message"] == "**DRY-RUN**: would migrate demo_web"
    assert event["duration_s"] is None


def test_a_skip_is_a_decision_event_logged_as_information_or_as_an_error_when_it_failed(caplog):
    alerts = recorded("firing_migrate.json")
    stale = actions.Skip(alerts[0], R.STALE, "task t1p4r7s0u3w6 no longer exists")
    dispatcher, events = with_events(lambda group: [actions.Outcome(stale, R.SKIPPED)])
    with caplog.at_level(logging.INFO, logger="receiver"):
        dispatcher.submit(alerts)
    (event,) = the_events(events)
    assert {k: event[k] for k in ("type", "result", "alert", "task", "reason", "message",
                                  "received_at")} == {
        "type": "decision", "result": "skip", "alert": "SwarmGuardMigrate",
        "task": alerts[0].task_id, "reason": "stale", "message": stale.sentence,
        "received_at": "2026-11-27T10:00:30.000000Z"}
    assert [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "receiver.worker"] == [(logging.INFO, stale.sentence)]


def test_a_crash_while_handling_is_logged_and_each_alert_skipped_as_an_internal_error(caplog):
    def crash(alerts):
        raise RuntimeError("boom")
    dispatcher, events = with_events(crash)
    with caplog.at_level(logging.INFO, logger="receiver"):
        dispatcher.submit(recorded("firing_migrate.json"))
    (event,) = the_events(events)
    assert (event["reason"], event["message"]) == (
        "internal_error", "Ignoring SwarmGuardMigrate for demo_web: unexpected error: boom")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["Unexpected error while handling alerts for demo_web", event["message"]]


def test_an_alert_for_a_running_service_is_a_skip_event_saying_so(caplog):
    inner = []

    def handle(alerts):
        if not inner:
            inner.append(dispatcher.submit(recorded("firing_migrate.json")))
        return []
    dispatcher, events = with_events(handle)
    with caplog.at_level(logging.INFO, logger="receiver"):
        dispatcher.submit(recorded("firing_migrate.json"))
    (event,) = the_events(events)
    assert (event["type"], event["result"], event["reason"], event["alert"]) == (
        "decision", "skip", "in_progress", "SwarmGuardMigrate")
    assert event["message"] == ("Ignoring SwarmGuardMigrate for demo_web: an action on it is "
                                "already in progress")
    assert event["received_at"] == "2026-11-27T10:00:30.000000Z"
    assert event["message"] in caplog.messages


def test_a_replaced_waiting_alert_is_a_skip_event_saying_so():
    dispatcher, events = with_events(lambda alerts: [], executor=ManualExecutor())
    older = recorded("firing_migrate.json")
    dispatcher.submit(older)
    dispatcher.submit([later(older[0])])
    (event,) = the_events(events)
    assert (event["reason"], event["alert"], event["received_at"]) == (
        "superseded", "SwarmGuardMigrate", "2026-11-27T10:00:30.000000Z")
    assert event["message"] == ("Ignoring SwarmGuardMigrate for demo_web: a newer alert for "
                                "the service replaced it while it waited")


# -- what one webhook does for each of its services ---------------------------------------------

def test_a_busy_service_does_not_stop_the_webhooks_other_services_from_queueing():
    inner, handled = [], []

    def handle(alerts):
        handled.append(alerts[0].service)
        if alerts[0].service == "demo_web" and not inner:
            inner.append(dispatcher.submit(recorded("grouped_migrate.json")))
        return []
    dispatcher = Dispatcher(handle, Metrics(), executor=InlineExecutor())
    dispatcher.submit(recorded("firing_migrate.json"))
    assert (inner[0].busy, inner[0].queued) == (("demo_web",), ("demo_api",))
    assert handled == ["demo_web", "demo_api"]


def test_a_resend_for_one_waiting_service_does_not_stop_the_webhooks_other_services():
    executor = ManualExecutor()
    dispatcher = Dispatcher(lambda alerts: [], Metrics(), executor=executor)
    dispatcher.submit([a for a in recorded("grouped_migrate.json") if a.service == "demo_web"])
    dispatcher.submit(recorded("grouped_migrate.json"))
    assert dispatcher.busy() == {"demo_web", "demo_api"}
    assert len(executor.jobs) == 2


def test_exactly_as_many_services_as_may_wait_are_taken_and_one_more_is_refused():
    dispatcher = Dispatcher(lambda alerts: [], Metrics(), executor=ManualExecutor(),
                            max_pending_services=2)
    assert dispatcher.submit(recorded("grouped_migrate.json")).queued == ("demo_web", "demo_api")
    (scale_down,) = recorded("firing_scale_down.json")
    a_third = dataclasses.replace(scale_down, labels={**scale_down.labels, "service": "demo_db"})
    with pytest.raises(WorkRefused):
        dispatcher.submit([a_third])


def test_an_alert_for_a_running_service_is_taken_even_when_the_waiting_room_is_full():
    executor, receipts = ManualExecutor(), []

    def handle(alerts):
        if alerts[0].service == "demo_web":
            (other,) = recorded("firing_scale_down.json")
            dispatcher.submit([dataclasses.replace(  # another service fills the one place
                other, labels={**other.labels, "service": "demo_db"})])
            receipts.append(dispatcher.submit(recorded("firing_migrate.json")))
        return []
    dispatcher = Dispatcher(handle, Metrics(), executor=executor, max_pending_services=1)
    dispatcher.submit(recorded("firing_migrate.json"))
    executor.run_all()
    assert receipts[0].busy == ("demo_web",)


def test_a_refusal_says_why():
    dispatcher = Dispatcher(lambda alerts: [], Metrics(), executor=ManualExecutor())
    dispatcher.stop_accepting()
    with pytest.raises(WorkRefused) as refused:
        dispatcher.submit(recorded("firing_migrate.json"))
    assert str(refused.value) == refused.value.reason == "the receiver is shutting down"


# -- shutdown ----------------------------------------------------------------------------------

def test_waiting_work_dropped_at_shutdown_is_an_event_per_alert_and_a_warning(caplog):
    metrics = Metrics()
    events = EventLog(64, lambda: RECEIVED)
    dispatcher = Dispatcher(lambda alerts: [], metrics, events=events,
                            executor=ManualExecutor(), clock=lambda: RECEIVED)
    web = [a for a in recorded("grouped_migrate.json") if a.service == "demo_web" and a.firing]
    dispatcher.submit(web)
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert dispatcher.drain(deadline_s=1.0) == 1
    assert [(e["type"], e["result"], e["reason"], e["task"], e["message"], e["received_at"])
            for e in the_events(events)] == [
        ("dropped", "shutdown_waiting", "shutdown_waiting", a.task_id,
         "work on demo_web dropped at shutdown", "2026-11-27T10:00:30.000000Z") for a in web]
    assert sample(metrics, "swarmguard_pending_services") == 0
    assert ("Dropping the waiting work on demo_web (2 alert(s)) at shutdown; Alertmanager "
            "sends them again") in caplog.messages


def test_work_running_at_the_deadline_that_wrote_nothing_is_dropped_and_never_writes(caplog):
    metrics = Metrics()
    events = EventLog(64, lambda: RECEIVED)
    gate = WriteGate()
    dropped, wrote = [], []

    def handle(alerts):  # the shutdown comes while this work decides, before its write
        dropped.append(dispatcher.drain(deadline_s=0))
        gate.through("demo_web")  # the write it was about to make
        wrote.append(True)
        return [actions.Outcome(_action(alerts[0]), R.SUCCESS, 1.0)]
    dispatcher = Dispatcher(handle, metrics, events=events, executor=InlineExecutor(),
                            clock=lambda: RECEIVED, monotonic=lambda: 100.0, gate=gate)
    with caplog.at_level(logging.INFO, logger="receiver"):
        dispatcher.submit(recorded("firing_migrate.json"))
    assert dropped == [1] and wrote == []
    (event,) = the_events(events)
    assert {k: event[k] for k in ("type", "result", "reason", "service", "message")} == {
        "type": "dropped", "result": "shutdown_unfinished", "reason": "shutdown_unfinished",
        "service": "demo_web", "message": "work on demo_web dropped at shutdown before any write"}
    assert ("Shutting down with the work on demo_web unfinished after 0 s: dropped before any "
            "write to Docker; Alertmanager sends its alerts again" in caplog.messages)
    assert dispatcher.busy() == set()


def test_work_running_at_the_deadline_past_its_write_is_unwatched_and_its_end_not_reported(
        caplog):
    metrics = Metrics()
    events = EventLog(64, lambda: RECEIVED)
    gate = WriteGate()

    def handle(alerts):  # the shutdown comes after this action's write
        gate.through("demo_web")
        dispatcher.drain(deadline_s=0)
        return [actions.Outcome(_action(alerts[0]), R.SUCCESS, 1.0)]  # it ends after all
    dispatcher = Dispatcher(handle, metrics, events=events, executor=InlineExecutor(),
                            clock=lambda: RECEIVED, monotonic=lambda: 100.0, gate=gate)
    with caplog.at_level(logging.INFO, logger="receiver"):
        dispatcher.submit(recorded("firing_migrate.json"))
    (event,) = the_events(events)
    assert {k: event[k] for k in ("type", "result", "reason", "service", "message")} == {
        "type": "dropped", "result": "shutdown_unwatched", "reason": "shutdown_unwatched",
        "service": "demo_web",
        "message": "action on demo_web unwatched at shutdown: its outcome goes unrecorded"}
    assert sample(metrics, "swarmguard_actions_total", kind="migrate", result="success") == 0
    assert ("Shutting down with the action on demo_web still unfinished after 0 s; Swarm "
            "completes or rolls back the update itself, but its outcome goes unrecorded here"
            in caplog.messages)
    assert ("The work on demo_web ended after the shutdown deadline (1 outcome(s) not "
            "reported: it was given up at the deadline)" in caplog.messages)


def test_work_reporting_its_end_when_the_deadline_passes_is_not_given_up():
    gate, drained = WriteGate(), []

    class ShutdownWhileReporting(EventLog):
        def emit(self, type, result, **fields):
            event = super().emit(type, result, **fields)
            if type == "outcome":  # the deadline passes as the outcome is being reported
                drained.append(dispatcher.drain(deadline_s=0))
            return event
    events = ShutdownWhileReporting(64, lambda: RECEIVED)

    def handle(alerts):
        gate.through("demo_web")
        return [actions.Outcome(_action(alerts[0]), R.SUCCESS, 1.0)]
    dispatcher = Dispatcher(handle, Metrics(), events=events, executor=InlineExecutor(),
                            clock=lambda: RECEIVED, monotonic=lambda: 100.0, gate=gate)
    dispatcher.submit(recorded("firing_migrate.json"))
    assert drained == [0]
    assert [(e["type"], e["result"]) for e in the_events(events)] == [("outcome", "success")]


def test_work_that_passed_the_gate_before_leaves_no_mark_on_the_next_work_of_its_service():
    events = EventLog(64, lambda: RECEIVED)
    gate = WriteGate()
    runs = []

    def handle(alerts):
        runs.append(True)
        if len(runs) == 1:
            gate.through("demo_web")  # the first work writes and ends
            return []
        dispatcher.drain(deadline_s=0)  # the second is still deciding at the deadline
        return []
    dispatcher = Dispatcher(handle, Metrics(), events=events, executor=InlineExecutor(),
                            clock=lambda: RECEIVED, monotonic=lambda: 100.0, gate=gate)
    dispatcher.submit(recorded("firing_migrate.json"))
    dispatcher.submit([later(recorded("firing_migrate.json")[0])])
    assert [e["result"] for e in the_events(events)] == ["shutdown_unfinished"]


def of_service(name):
    (alert,) = recorded("firing_scale_down.json")
    return dataclasses.replace(alert, labels={**alert.labels, "service": name})


def test_actions_run_on_as_many_threads_as_configured_named_for_operators():
    # Operators tell the action threads apart by name (py-spy dump, thread names in logs).
    started = {name: threading.Event() for name in ("demo_a", "demo_b", "demo_c")}
    release, threads = threading.Event(), []

    def handle(alerts):
        threads.append(threading.current_thread().name)
        started[alerts[0].service].set()
        release.wait(30)
        return []
    dispatcher = Dispatcher(handle, Metrics(), workers=2)
    for service in ("demo_a", "demo_b"):
        dispatcher.submit([of_service(service)])
        assert started[service].wait(30)
    dispatcher.submit([of_service("demo_c")])  # both threads are busy: it waits for one
    release.set()
    assert started["demo_c"].wait(30)
    assert dispatcher.drain(deadline_s=30) == 0
    assert len(threads) == 3
    assert set(threads) == {"swarmguard-action_0", "swarmguard-action_1"}


def test_shutdown_waits_for_running_work_that_ends_within_the_deadline():
    started, release, draining = threading.Event(), threading.Event(), threading.Event()

    def slow(alerts):
        started.set()
        release.wait(5)
        return []

    ticks = []

    def monotonic():  # a second per look once the shutdown has begun
        if draining.is_set():
            release.set()  # the running action ends once the shutdown has begun
            ticks.append(True)
        return 100.0 + len(ticks)
    dispatcher = Dispatcher(slow, Metrics(), workers=1, monotonic=monotonic)
    dispatcher.submit(recorded("firing_migrate.json"))
    started.wait(5)
    draining.set()
    assert dispatcher.drain(deadline_s=5.0) == 0


class RecordedWaits(threading.Condition):
    """The Dispatcher's condition, recording how long each wait may last."""

    def __init__(self, lock):
        super().__init__(lock)
        self.timeouts = []

    def wait(self, timeout=None):
        self.timeouts.append(timeout)
        return super().wait(timeout)


def test_shutdown_looks_again_at_least_every_half_second_and_waits_no_longer_than_what_is_left():
    started, release, draining = threading.Event(), threading.Event(), threading.Event()
    looks = []

    def stuck(alerts):
        started.set()
        release.wait(30)
        return []

    def monotonic():  # a quarter second per look once the shutdown has begun
        if not draining.is_set():
            return 100.0
        looks.append(True)
        return 100.0 + 0.25 * (len(looks) - 1)
    dispatcher = Dispatcher(stuck, Metrics(), workers=1, monotonic=monotonic)
    waits = dispatcher._idle = RecordedWaits(dispatcher._lock)
    dispatcher.submit(recorded("firing_migrate.json"))
    assert started.wait(30)
    draining.set()
    assert dispatcher.drain(deadline_s=1.25) == 1
    release.set()
    # Looks at 100.25 and 100.75 find the deadline (101.25) ahead; the waits, reckoned at
    # 100.5 and 101.0, are capped at half a second and at the quarter second left.
    assert waits.timeouts == [0.5, 0.25]


def test_shutdown_does_not_wait_for_running_work_past_the_deadline():
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(alerts):
        started.set()
        release.wait(5)
        finished.set()
        return []
    dispatcher = Dispatcher(slow, Metrics(), workers=1)
    dispatcher.submit(recorded("firing_migrate.json"))
    started.wait(5)
    assert dispatcher.drain(deadline_s=0) == 1
    assert not finished.is_set()  # drain returned while the action still ran
    release.set()


# -- the memory of handled alert instances ------------------------------------------------------

def test_the_oldest_handled_instances_are_forgotten_first_beyond_the_capacity():
    recent = RecentlyHandled(window=60, capacity=2)
    for key, ended in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        recent.add(key, ended)
    assert ("a" in recent, "b" in recent, "c" in recent) == (False, True, True)


def test_an_instance_handled_exactly_one_window_ago_is_forgotten_and_newer_ones_kept():
    recent = RecentlyHandled(window=5)
    recent.add("old", 10.0)
    recent.add("new", 12.0)
    recent.forget_expired(15.0)
    assert ("old" in recent, "new" in recent) == (False, True)


def test_what_is_remembered_of_a_handled_alert_does_not_grow_with_its_labels():
    # 100 handled alerts of the most an alert may carry: 64 labels of 1,024 characters.
    import gc
    import tracemalloc
    from types import MappingProxyType
    one = recorded("firing_scale_up.json")[0]
    dispatcher = Dispatcher(lambda alerts: [], Metrics(), executor=InlineExecutor(),
                            monotonic=lambda: 100.0)
    dispatcher.submit([one])  # the first submit builds what every later one reuses
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100):
            labels = {**one.labels, **{f"l{n}": f"{i:04d}" + "v" * 1020 for n in range(60)}}
            dispatcher.submit([dataclasses.replace(one, labels=MappingProxyType(labels))])
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # A few hundred bytes each (a digest, a time, a dict slot) and whatever a test runner
    # allocates around the calls (mutmut's brings it to ~1.2 KB): not their 64 KB of labels.
    assert kept < 100 * 4096, kept
    assert dispatcher.submit([one]).queued == ()  # still remembered: a duplicate


def test_an_alert_instance_is_a_16_byte_digest_of_its_name_labels_and_start():
    from types import MappingProxyType
    one = recorded("firing_migrate.json")[0]
    reordered = dataclasses.replace(one, labels=MappingProxyType(
        dict(reversed(list(one.labels.items())))))
    relabelled = dataclasses.replace(one, labels=MappingProxyType({**one.labels, "team": "b"}))
    assert isinstance(one.instance, bytes) and len(one.instance) == 16
    assert reordered.instance == one.instance
    assert relabelled.instance != one.instance
    assert later(one, 1).instance != one.instance
