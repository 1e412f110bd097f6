"""Hostile or broken senders (receiver/README.md): eight cases, each as the receiver must
behave. Each test failed against the receiver before its hardening."""
from datetime import datetime, timedelta, timezone

import pytest

from receiver import actions
from receiver import reasons as R
from receiver.app import receiver_of
from receiver.metrics import Metrics
from tests import webhooks
from tests.fake_docker_api_client import TASK, WEB_ID, WORKER_1, WORKER_2
from receiver.worker import DUPLICATE_WINDOW_S, Dispatcher
from swarmguard_config.rfc3339 import format_time
from tests.inline_executor import InlineExecutor
from tests.unit.test_receiver_app import AUTH, NOW, make, post, sample
from tests.unit.test_receiver_worker import ManualExecutor, recorded


def alert(labels, starts_at=NOW - timedelta(seconds=30), status="firing"):
    return webhooks.alert(labels, format_time(starts_at), status=status, annotations={},
                          ends_at=webhooks.STILL_FIRING, fingerprint="0123456789abcdef")


def webhook(*alerts) -> bytes:
    return webhooks.encoded(webhooks.webhook(alerts))


def scale_up(service, **kw):
    return alert({"alertname": "SwarmGuardScaleUp", "service": service}, **kw)


def migrate(service="demo_web", task_id=TASK, node_id=WORKER_1, **kw):
    return alert({"alertname": "SwarmGuardMigrate", "service": service, "task_id": task_id,
                  "node_id": node_id}, **kw)


# -- 1. work is bounded ------------------------------------------------------------------

def test_a_flood_of_distinct_services_is_refused_with_503_and_retry_after_beyond_the_bound():
    executor = ManualExecutor()
    app, api = make(executor=executor, dry_run=True)  # at most 256 services waiting
    first = post(app, webhook(*(scale_up(f"svc-{i}") for i in range(60))))
    assert first.status_code == 202
    flood = post(app, webhook(*(scale_up(f"flood-{i}") for i in range(2000))))
    assert flood.status_code == 503
    assert flood.headers["Retry-After"].isdigit()
    assert "names 2000 services; at most 256 may wait" in flood.get_json()["error"]
    more = post(app, webhook(*(scale_up(f"more-{i}") for i in range(200))))
    assert more.status_code == 503
    assert more.headers["Retry-After"].isdigit()
    assert "work for 60 services is waiting and this webhook adds 200; the limit is 256" \
        in more.get_json()["error"]
    # Refused whole: nothing of it waits, nothing of it was counted as received.
    assert len(executor.jobs) == 60
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardScaleUp", status="firing") == 60
    assert sample(app, "swarmguard_pending_services") == 60
    # Room again once the waiting work is done: a real alert is taken and acted on.
    executor.run_all()
    assert post(app, webhook(scale_up("demo_web"))).status_code == 202
    executor.run_all()
    assert sample(app, "swarmguard_actions_total", kind="scale_up", result="dry_run") == 1
    assert api.updates == []


def test_repeats_for_a_waiting_service_never_add_work():
    executor = ManualExecutor()
    app, _ = make(executor=executor, dry_run=True)
    for seconds in range(5):
        response = post(app, webhook(scale_up("demo_web", starts_at=NOW - timedelta(
            seconds=60 - seconds))))
        assert response.status_code == 202
    assert len(executor.jobs) == 1
    assert sample(app, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardScaleUp", reason="superseded") == 4


# -- 2. remembered alerts are pruned in O(1) amortised ------------------------------------

class CountingTime(float):
    """A monotonic reading that counts how often the code subtracts times, and fails the
    test once it has done so more often than the budget allows."""
    budget = [0]

    def __sub__(self, other):
        CountingTime.budget[0] -= 1
        if CountingTime.budget[0] < 0:
            raise AssertionError("more time arithmetic than O(alerts + remembered)")
        return float(self) - float(other)

    def __rsub__(self, other):
        return CountingTime(other).__sub__(self)


def test_a_large_webhook_sent_twice_costs_time_linear_in_its_alerts():
    alerts = 6000
    now = [CountingTime(100.0)]
    dispatcher = Dispatcher(lambda group: [], Metrics(), executor=InlineExecutor(),
                            monotonic=lambda: now[0])
    one = recorded("firing_migrate.json")[0]
    many = [A_later(one, i) for i in range(alerts)]
    CountingTime.budget[0] = 10 * alerts  # the quadratic pruning needed 36,000,000
    dispatcher.submit(many)
    now[0] = CountingTime(101.0)
    assert dispatcher.submit(many).queued == ()  # all duplicates, handled a second ago
    now[0] = CountingTime(100.0 + DUPLICATE_WINDOW_S + 1)
    assert dispatcher.submit(many[:1]).queued == ("demo_web",)  # forgotten after the window


def A_later(alert_, seconds):
    import dataclasses
    return dataclasses.replace(alert_, starts_at=alert_.starts_at + timedelta(seconds=seconds))


# -- the in-flight gauge -------------------------------------------------------------------

def test_nothing_is_in_flight_only_once_the_outcome_is_counted():
    metrics = Metrics()
    seen_when_idle = []
    decrement = metrics.in_flight.dec

    def dec(amount=1):
        seen_when_idle.append(metrics.registry.get_sample_value(
            "swarmguard_alerts_skipped_total",
            {"alertname": "SwarmGuardMigrate", "reason": "stale"}))
        decrement(amount)
    metrics.in_flight.dec = dec
    from receiver.decisions import STALE, Skip
    group = recorded("firing_migrate.json")
    dispatcher = Dispatcher(lambda alerts: [actions.Outcome(Skip(alerts[0], STALE, "gone"),
                                                      R.SKIPPED)],
                            metrics, executor=InlineExecutor())
    dispatcher.submit(group)
    assert seen_when_idle == [1.0]


# -- 3. slow clients (serving.py, test_receiver_serving.py) and /readyz -------------------

def test_readyz_answers_from_the_background_state_without_calling_docker():
    app, api = make()
    for _ in range(8):
        assert app.test_client().get("/readyz").status_code == 503  # not checked yet
    assert api.calls == []


# -- 4. SIGTERM --------------------------------------------------------------------------

def test_after_sigterm_webhooks_get_503_so_alertmanager_resends_them():
    from receiver.app import stop_taking_work
    app, api = make(dry_run=True)
    stop_taking_work(app)
    response = post(app, webhook(scale_up("demo_web")))
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json() == {"error": "the receiver is shutting down"}
    assert api.calls == []


def test_on_shutdown_waiting_work_is_dropped_logged_and_counted(caplog):
    executor, metrics = ManualExecutor(), Metrics()
    dispatcher = Dispatcher(lambda alerts: [], metrics, executor=executor)
    dispatcher.submit(recorded("grouped_migrate.json"))  # two services wait
    assert dispatcher.drain(deadline_s=1.0) == 2
    assert sample_of(metrics, "swarmguard_work_dropped_total", reason="shutdown_waiting") == 2
    assert sample_of(metrics, "swarmguard_actions_in_flight") == 0
    assert "Dropping the waiting work on demo_web" in caplog.text
    executor.run_all()  # the executor's jobs find nothing left to do


def test_on_shutdown_running_work_gets_until_the_deadline_and_the_unfinished_is_counted(caplog):
    import threading
    release, started = threading.Event(), threading.Event()

    def slow(alerts):
        started.set()
        release.wait(5)
        return []
    metrics = Metrics()
    dispatcher = Dispatcher(slow, metrics, workers=1)
    dispatcher.submit(recorded("firing_migrate.json"))
    started.wait(5)
    assert dispatcher.drain(deadline_s=0.2) == 1
    release.set()
    assert sample_of(metrics, "swarmguard_work_dropped_total", reason="shutdown_unfinished") == 1
    assert "unfinished after 0 s: dropped before any write to Docker" in caplog.text

    finished = Dispatcher(lambda alerts: [], Metrics(), workers=1)
    finished.submit(recorded("firing_migrate.json"))
    assert finished.drain(deadline_s=5.0) == 0


def shutting_down_at(app, look):
    """before_tasks hook: the shutdown deadline passes (SIGTERM, then a deadline of 0) at
    the `look`-th read of the tasks: 1 is the action's snapshot, before it decides; 2 is
    its watch's first look, after its update. Swarm finishes the migration at the look
    after that."""
    looks = []

    def hook(api):
        looks.append(True)
        if len(looks) == look:
            receiver_of(app).dispatcher.drain(deadline_s=0)
        if len(looks) == look + 1:
            api.move_task(TASK, WORKER_2)
    return hook


def said(app):
    return [(e["type"], e["result"]) for e in app.test_client().get(
        "/events?since=1", headers=AUTH).get_json()["events"]]


def test_work_given_up_at_the_deadline_before_it_wrote_never_writes_afterwards():
    app, api = make()
    api.before_tasks = shutting_down_at(app, look=1)
    post(app, webhook(migrate()))
    # Recorded dropped, then nothing: no act, no update, no outcome.
    assert said(app) == [("dropped", "shutdown_unfinished")]
    assert api.updates == []
    assert sample(app, "swarmguard_work_dropped_total", reason="shutdown_unfinished") == 1


def test_an_action_past_its_update_at_the_deadline_is_reported_unwatched_and_its_watch_stops(
        caplog):
    app, api = make()
    api.before_tasks = shutting_down_at(app, look=2)
    with caplog.at_level("INFO", logger="receiver"):
        post(app, webhook(migrate()))
    assert said(app) == [("decision", "act"), ("dropped", "shutdown_unwatched")]
    assert len(api.updates) == 1
    assert len([c for c in api.calls if c[0] == "tasks"]) == 2  # no look after the deadline
    assert sample(app, "swarmguard_work_dropped_total", reason="shutdown_unwatched") == 1
    assert sample(app, "swarmguard_actions_total", kind="migrate", result="timeout") == 0
    assert ("Shutting down with the action on demo_web still unfinished after 0 s; Swarm "
            "completes or rolls back the update itself, but its outcome goes unrecorded here"
            in caplog.messages)


def sample_of(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


# -- 5. labels are what they name ---------------------------------------------------------

@pytest.mark.parametrize("labels, named", [
    ({"service": "../images/alpine/get"}, "alerts[0].labels.service"),
    ({"service": "web?x=1"}, "alerts[0].labels.service"),
    ({"service": "-web"}, "alerts[0].labels.service"),
    ({"service": "w" * 64}, "alerts[0].labels.service"),
    ({"task_id": "../../containers/x"}, "alerts[0].labels.task_id"),
    ({"task_id": TASK.upper()}, "alerts[0].labels.task_id"),
    ({"node_id": WORKER_1[:-1]}, "alerts[0].labels.node_id"),
])
def test_a_label_that_cannot_be_what_it_names_is_400_naming_it_and_docker_is_not_called(
        labels, named):
    app, api = make()
    response = post(app, webhook(migrate(**{"service": "demo_web", "task_id": TASK,
                                            "node_id": WORKER_1, **labels})))
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(named)
    assert api.calls == []


def test_stack_service_names_and_real_ids_are_accepted():
    app, _ = make(dry_run=True)
    assert post(app, webhook(scale_up("swarmguard_stress-2"))).status_code == 202
    assert post(app, webhook(migrate())).status_code == 202


# -- 6. startsAt in the future ------------------------------------------------------------

def test_an_alert_starting_in_the_future_beyond_the_skew_is_400_and_changes_nothing():
    app, api = make()  # 30 s of skew allowed
    far = post(app, webhook(scale_up("demo_web", starts_at=datetime(9999, 1, 1,
                                                                   tzinfo=timezone.utc))))
    assert far.status_code == 400
    assert "alerts[0].startsAt is" in far.get_json()["error"]
    assert "in the future" in far.get_json()["error"]
    assert post(app, webhook(scale_up("demo_web", starts_at=NOW + timedelta(seconds=31)))
                ).status_code == 400
    assert api.calls == []
    # Within the skew: clocks of two hosts, fine.
    assert post(app, webhook(scale_up("demo_web", starts_at=NOW + timedelta(seconds=29)))
                ).status_code == 202


# -- 7. log injection ---------------------------------------------------------------------

FORGED = "web\nINFO receiver.actuator: Scaling up web"


@pytest.mark.parametrize("payload", [
    webhook(scale_up(FORGED, status="resolved")),
    webhook(alert({"alertname": "SwarmGuardScaleUp", "service": "web", "team": FORGED})),
    webhook(alert({"alertname": "SwarmGuardScaleUp", "service": "web", FORGED: "x"})),
    webhook({**scale_up("web"), "annotations": {FORGED: 1}}),
    webhook({**scale_up("web"), "status": FORGED}),
    webhooks.encoded(webhooks.webhook([scale_up("demo_web")], group_key=FORGED, truncatedAlerts=3)),
])
def test_no_log_line_carries_a_raw_control_character(payload, caplog):
    caplog.set_level("DEBUG")
    app, _ = make(dry_run=True)
    post(app, payload)
    messages = [r.getMessage() for r in caplog.records]
    assert messages
    assert not [m for m in messages if any(c in m for c in "\n\r\x1b\x00")], messages


def test_a_label_with_a_control_character_is_400_naming_the_label():
    app, api = make()
    response = post(app, webhook(scale_up(FORGED, status="resolved")))
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("alerts[0].labels.service")
    response = post(app, webhook(alert({"alertname": "SwarmGuardScaleUp", "service": "web",
                                        "team": "a\x1b[31mb"})))
    assert response.get_json()["error"] == "alerts[0].labels.team contains a control character"
    assert api.calls == []


# -- 8. lone surrogates --------------------------------------------------------------------

@pytest.mark.parametrize("raw, named", [
    (b'{"alertname": "SwarmGuardScaleUp", "service": "web", "team": "\\ud800"}',
     "alerts[0].labels.team"),
    (b'{"alertname": "SwarmGuardScaleUp", "service": "web", "\\udfff": "x"}',
     "alerts[0].labels key"),
])
def test_a_lone_surrogate_in_a_label_is_400_not_a_crash_in_the_background(raw, named):
    app, api = make(dry_run=True)
    body = webhook(alert({"alertname": "SwarmGuardScaleUp", "service": "web"})).replace(
        b'{"alertname": "SwarmGuardScaleUp", "service": "web"}', raw)
    response = post(app, body)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(named)
    assert "lone surrogate" in response.get_json()["error"]
    assert api.calls == []


def test_a_lone_surrogate_in_an_annotation_is_400_too():
    app, _ = make(dry_run=True)
    body = webhook({**scale_up("demo_web"), "annotations": {"summary": "x"}}).replace(
        b'"summary": "x"', b'"summary": "\\ud83d"')
    response = post(app, body)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("alerts[0].annotations.summary")


def test_the_recorded_payloads_still_pass():
    app, api = make(dry_run=True)
    api.services[WEB_ID]["Spec"]["Labels"]["swarmguard.enable"] = "true"
    for name in ["firing_migrate.json", "grouped_migrate.json", "firing_scale_up.json",
                 "firing_scale_down.json", "resolved_migrate.json"]:
        from tests.unit.test_receiver_app import body
        assert post(app, body(name), headers=AUTH).status_code == 202, name


def test_more_alerts_than_may_wait_whose_service_is_a_list_are_400_naming_the_label():
    app, api = make()
    flood = post(app, webhook(*(scale_up(["web"]) for _ in range(257))))
    assert flood.status_code == 400
    assert flood.get_json()["error"] == "alerts[0].labels.service must be a string"
    assert api.calls == []


def test_an_alert_starting_at_the_zero_time_is_400_naming_startsat_and_writes_no_event():
    app, api = make(dry_run=True)
    response = post(app, webhook(scale_up("demo_web", starts_at=datetime(
        1, 1, 1, tzinfo=timezone.utc))))
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("alerts[0].startsAt '0001-01-01T00:00:00")
    assert [e["type"] for e in app.test_client().get(
        "/events", headers=AUTH).get_json()["events"]] == ["started"]
    assert api.calls == []


def test_a_huge_bad_label_is_quoted_short_in_the_400_and_in_the_log_line(caplog):
    app, api = make()
    huge = "w" * 900 * 1024
    response = post(app, webhook(migrate(task_id=huge)))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error.startswith("alerts[0].labels.task_id")
    assert len(error) < 300
    [line] = [r.getMessage() for r in caplog.records if "Rejected request" in r.getMessage()]
    assert error in line and len(line) < 400
    assert api.calls == []


def test_a_900_kb_label_is_400_naming_the_label_and_changes_nothing():
    app, api = make(dry_run=True)
    response = post(app, webhook(alert({"alertname": "SwarmGuardScaleUp", "service": "demo_web",
                                        "team": "t" * 900 * 1024})))
    assert response.status_code == 400
    assert response.get_json()["error"] == ("alerts[0].labels.team is 921600 characters long; "
                                            "a label may have at most 1024")
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardScaleUp", status="firing") == 0
    assert api.calls == []


# -- a flood of refusals is counted whole and logged sparingly ---------------------------------

def rejection_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Rejected")]


def test_a_flood_of_401s_is_counted_whole_but_logged_once(caplog):
    app, api = make()
    for _ in range(500):
        assert post(app, b"{}", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert sample(app, "swarmguard_rejected_requests_total", code="401") == 500
    assert rejection_lines(caplog) == [
        "Rejected request from 127.0.0.1: 401 missing or wrong bearer token"]
    # Each status code has its own line: a bad payload is still seen among the 401s.
    assert post(app, b"[]").status_code == 400
    assert rejection_lines(caplog)[1:] == [
        "Rejected request from 127.0.0.1: 400 body must be a JSON object"]


def test_after_the_interval_the_next_refusal_is_logged_with_how_many_were_not(caplog):
    from receiver.reporting import REJECTION_LOG_INTERVAL_S, Reporter
    now = [1000.0]
    report = Reporter(Metrics(), monotonic=lambda: now[0])
    for _ in range(3):
        report.rejected("10.0.0.9", 401, "missing or wrong bearer token")
    now[0] += REJECTION_LOG_INTERVAL_S - 0.1
    report.rejected("10.0.0.9", 401, "missing or wrong bearer token")
    now[0] += 0.1
    report.rejected("10.0.0.7", 401, "missing or wrong bearer token")
    report.rejected("10.0.0.7", 401, "missing or wrong bearer token")
    assert REJECTION_LOG_INTERVAL_S == 60
    assert rejection_lines(caplog) == [
        "Rejected request from 10.0.0.9: 401 missing or wrong bearer token",
        "Rejected request from 10.0.0.7: 401 missing or wrong bearer token (and 3 more 401 "
        "answers since the last such line, not logged)"]
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]


# -- copies of one alert in one webhook ---------------------------------------------------------

def event_list(app):
    answer = app.test_client().get("/events?since=0", headers=AUTH).get_json()
    return answer["events"], answer["missed"]


def test_a_webhook_of_copies_of_one_firing_alert_writes_the_events_of_one_alert():
    # 3,000 copies of one alert: before, each copy was decided and wrote an event, and
    # one 1 MiB webhook of them pushed every earlier event out of the GET /events ring.
    app, api = make(dry_run=True, event_buffer=64)
    response = post(app, webhook(*[scale_up("demo_web")] * 3000))
    assert response.status_code == 202
    assert response.get_json()["firing"] == 1
    found, missed = event_list(app)
    assert ([(e["type"], e["result"]) for e in found], missed) == (
        [("started", "dry_run"), ("decision", "act"), ("outcome", "dry_run")], False)
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardScaleUp", status="firing") == 3000
    assert sample(app, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardScaleUp", reason="duplicate") == 2999
    assert sample(app, "swarmguard_actions_total", kind="scale_up", result="dry_run") == 1


def test_a_webhook_of_copies_of_one_resolved_alert_writes_one_notification():
    app, api = make(dry_run=True, event_buffer=64)
    assert post(app, webhook(*[scale_up("demo_web", status="resolved")] * 3000)
                ).status_code == 202
    found, missed = event_list(app)
    assert ([(e["type"], e["result"]) for e in found], missed) == (
        [("started", "dry_run"), ("notification", "resolved")], False)
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardScaleUp", status="resolved") == 3000
    assert sample(app, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardScaleUp", reason="duplicate") == 0
    assert api.calls == []
