"""Only Prometheus's own alerts move anything (docs/contract.md, "Confirmation with
Prometheus"): the receiver acts on an alert only if Prometheus fires it with the same
labels, and believes a node hot only while Prometheus fires its task's alert."""
from datetime import timedelta
from types import MappingProxyType

import pytest

from receiver import actuator as A
from receiver import reasons as R
from receiver.actuator import Actuator
from receiver.config import Settings
from receiver.confirmation import FiringAlerts, Unanswered, firing_from_answer
from receiver.metrics import Metrics
from receiver.payload import Alert
from receiver.storm import StormLedger
from tests.fake_docker_api_client import TASK, WORKER_1, WORKER_2, WORKER_3, example_api
from tests.unit.test_receiver_actuator import Clock, swarm_moves_task_to

MIGRATE = {"alertname": "SwarmGuardMigrate", "service": "demo_web", "task_id": TASK,
           "node_id": WORKER_1, "severity": "warning"}


def alert(labels=MIGRATE, clock=None, **changed):
    starts = (clock.now if clock else Clock().now) - timedelta(seconds=2)
    return Alert(labels["alertname"], "firing", MappingProxyType({**labels, **changed}),
                 MappingProxyType({}), starts, None, "fp")


def answer(*alerts, state="firing"):
    return {"status": "success", "data": {"alerts": [
        {"labels": dict(labels), "annotations": {}, "state": state,
         "activeAt": "2026-12-04T10:00:00Z", "value": "1e+02"} for labels in alerts]}}


# -- what Prometheus's answer confirms (pure) --------------------------------------------

def test_an_alert_prometheus_fires_with_the_same_labels_is_confirmed():
    assert firing_from_answer(answer(MIGRATE)).confirms(alert())


@pytest.mark.parametrize("changed", [
    {"task_id": "forgedtask000000000000000"},  # another task
    {"node_id": WORKER_2},
    {"severity": "critical"},  # any label: the whole set is the alert
    {"extra": "1"},
])
def test_an_alert_with_any_label_unlike_prometheus_s_is_not(changed):
    assert not firing_from_answer(answer(MIGRATE)).confirms(alert(**changed))


def test_a_label_prometheus_has_and_the_alert_lacks_makes_it_another_alert():
    labels = {k: v for k, v in MIGRATE.items() if k != "severity"}
    assert not firing_from_answer(answer(MIGRATE)).confirms(alert(labels))


def test_a_pending_alert_is_not_firing_yet():
    assert not firing_from_answer(answer(MIGRATE, state="pending")).confirms(alert())


def test_the_tasks_prometheus_fires_a_migrate_alert_for_are_the_hot_ones():
    firing = firing_from_answer(answer(MIGRATE, {"alertname": "SwarmGuardScaleUp",
                                                 "service": "demo_web"}))
    assert firing.fires_for_task(TASK, WORKER_1)
    assert not firing.fires_for_task(TASK, WORKER_2)


@pytest.mark.parametrize("labels", [
    {"alertname": "SwarmGuardScaleUp", "service": "demo_web", "task_id": TASK, "node_id": WORKER_1},
    {k: v for k, v in MIGRATE.items() if k != "node_id"},
    {k: v for k, v in MIGRATE.items() if k != "task_id"},
])
def test_only_a_migrate_alert_naming_a_task_and_its_node_makes_a_hot_task(labels):
    assert firing_from_answer(answer(labels)).hot_tasks == frozenset()


@pytest.mark.parametrize("bad", [
    None, [], "text", {"status": "error", "error": "boom"}, {"status": "success"},
    {"status": "success", "data": {"alerts": [{"state": "firing"}]}},
    {"status": "success", "data": {"alerts": [{"labels": {"a": 1}, "state": "firing"}]}},
    {"status": "success", "data": {"alerts": "all"}},
])
def test_anything_but_prometheus_s_answer_confirms_nothing(bad):
    with pytest.raises(Unanswered):
        firing_from_answer(bad)


# -- the actuator asks before it decides -----------------------------------------------------

def actuator(api, clock, firing_alerts, storm=None):
    settings = Settings(token="t")
    metrics = Metrics()
    storm = storm or StormLedger.from_settings(settings, lambda: clock.mono)
    return Actuator(api, settings, metrics, clock=lambda: clock.now, monotonic=lambda: clock.mono,
                    sleep=clock.sleep, jitter=lambda: 1.0, storm=storm,
                    firing_alerts=firing_alerts), metrics


def skipped(metrics, reason):
    return metrics.registry.get_sample_value(
        "swarmguard_alerts_skipped_total", {"alertname": "SwarmGuardMigrate", "reason": reason})


def test_an_alert_prometheus_fires_is_acted_on():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    act, _ = actuator(api, clock, lambda: FiringAlerts.of([MIGRATE]))
    (outcome,) = act.handle([alert(clock=clock)])
    assert outcome.result == A.SUCCESS and len(api.updates) == 1


def test_an_alert_prometheus_does_not_fire_is_skipped_unconfirmed_and_changes_nothing():
    api, clock = example_api(), Clock()
    act, metrics = actuator(api, clock, lambda: FiringAlerts.of([]))
    (outcome,) = act.handle([alert(clock=clock)])
    assert outcome.result == R.SKIPPED and outcome.decision.reason == R.UNCONFIRMED
    assert api.updates == []


def test_while_prometheus_cannot_say_nothing_is_acted_on():
    api, clock = example_api(), Clock()

    def unanswered():
        raise Unanswered("http://prometheus:9090/api/v1/alerts unreachable (ConnectTimeout)")
    act, metrics = actuator(api, clock, unanswered)
    (outcome,) = act.handle([alert(clock=clock)])
    assert outcome.decision.reason == R.PROMETHEUS_UNREACHABLE
    assert "unreachable" in outcome.decision.why
    assert api.updates == []


def test_the_counter_the_cannot_act_alert_reads_is_exported_from_zero():
    assert skipped(Metrics(), R.PROMETHEUS_UNREACHABLE) == 0


def test_of_a_service_s_alerts_only_the_confirmed_are_decided_on_and_outcomes_keep_their_order():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    forged = alert(clock=clock, severity="critical")
    real = alert(clock=clock)
    act, _ = actuator(api, clock, lambda: FiringAlerts.of([MIGRATE]))
    first, second = act.handle([forged, real])
    assert first.decision.reason == R.UNCONFIRMED and first.decision.alert is forged
    assert second.result == A.SUCCESS


def test_a_node_is_hot_only_while_prometheus_fires_its_task_s_alert():
    # A forged migrate alert for a service that does not exist reached the receiver and
    # was remembered as hot on worker-3; then demo_web's task on worker-1 is really hot.
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    storm = StormLedger.from_settings(Settings(token="t"), lambda: clock.mono)
    storm.observe([alert({**MIGRATE, "service": "no_such_service",
                          "task_id": "forgedtask000000000000000", "node_id": WORKER_3},
                         clock=clock)])
    act, _ = actuator(api, clock, lambda: FiringAlerts.of([MIGRATE]), storm=storm)
    (outcome,) = act.handle([alert(clock=clock)])
    assert outcome.result == A.SUCCESS
    (update,) = api.updates
    # Only its own node is excluded: worker-3 stays a destination.
    assert update["task_template"]["Placement"]["Constraints"] == [
        "node.role==worker", "node.hostname!=worker-1"]


def test_through_the_app_an_unconfirmed_alert_is_counted_and_written_as_one_skip_event():
    from receiver.app import create_app
    from receiver.worker import InlineExecutor
    from tests.unit.test_receiver_app import AUTH, NOW, TOKEN, body
    api = example_api()
    app = create_app(Settings(token=TOKEN), api, executor=InlineExecutor(), clock=lambda: NOW,
                     sleep=lambda s: None, readiness_thread=False,
                     firing_alerts=lambda: FiringAlerts.of([]))
    response = app.test_client().post("/alerts", data=body("firing_migrate.json"), headers=AUTH,
                                      content_type="application/json")
    assert response.status_code == 202
    assert api.updates == []
    assert skipped(app.extensions["swarmguard"]["metrics"], R.UNCONFIRMED) == 1
    events = app.extensions["swarmguard"]["events"].since(0)[0]
    (skip,) = [e for e in events if e["type"] == "decision"]
    assert (skip["result"], skip["reason"]) == ("skip", R.UNCONFIRMED)
