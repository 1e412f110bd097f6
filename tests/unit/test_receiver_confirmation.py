"""Only Prometheus's own alerts move anything (docs/contract.md, "Confirmation with
Prometheus"): the receiver acts on an alert only if a Prometheus it asks fires it with the
same labels (external labels aside), and believes a node hot only while one fires its
task's alert."""
from datetime import timedelta
from types import MappingProxyType

import pytest

from receiver import reasons as R
from receiver.actuator import Actuator
from receiver.config import Settings
from receiver.confirmation import (FiringAlerts, Unanswered, firing_from_answer, instance_urls,
                                   merge, tasks_host)
from receiver.metrics import Metrics
from receiver.alerts import Alert
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


# -- external labels (pure) -----------------------------------------------------------------

NODE_PROMETHEUS = {"node_prometheus": "worker-1"}  # an external label of a per-node Prometheus


def test_an_external_label_named_is_left_out_of_the_comparison():
    sent = alert(**NODE_PROMETHEUS)  # Alertmanager's copy carries it; Prometheus's list does not
    assert firing_from_answer(answer(MIGRATE)).confirms(sent, ignoring={"node_prometheus"})


def test_an_external_label_not_named_is_compared_like_any_other():
    assert not firing_from_answer(answer(MIGRATE)).confirms(alert(**NODE_PROMETHEUS))
    assert not firing_from_answer(answer(MIGRATE)).confirms(alert(**NODE_PROMETHEUS),
                                                             ignoring={"cluster"})


def test_naming_external_labels_leaves_every_other_label_compared_whole():
    firing = firing_from_answer(answer(MIGRATE))
    assert not firing.confirms(alert(severity="critical", **NODE_PROMETHEUS),
                               ignoring={"node_prometheus"})
    assert not firing.confirms(alert(extra="1"), ignoring={"node_prometheus"})


def test_a_rule_s_own_label_of_an_external_label_s_name_is_left_out_too():
    # Prometheus adds an external label only to an alert without a label of that name: the
    # rule's value is what Alertmanager gets, whatever the webhook says of it.
    firing = firing_from_answer(answer({**MIGRATE, "node_prometheus": "rule"}))
    assert firing.confirms(alert(node_prometheus="rule"), ignoring={"node_prometheus"})
    assert firing.confirms(alert(), ignoring={"node_prometheus"})


# -- several Prometheus servers: one answer per instance, merged (pure) ---------------------

SCALE_UP = {"alertname": "SwarmGuardScaleUp", "service": "demo_web", "severity": "warning"}
OTHER_TASK = "othertask0000000000000000"


def test_an_alert_fired_by_one_of_three_instances_is_confirmed():
    merged = merge([FiringAlerts.of([]), FiringAlerts.of([MIGRATE]), FiringAlerts.of([])], [])
    assert merged.confirms(alert())
    assert merged.fires_for_task(TASK, WORKER_1)


def test_the_merge_is_the_union_of_every_answer_s_alerts_and_hot_tasks():
    other = {**MIGRATE, "task_id": OTHER_TASK, "node_id": WORKER_2}
    merged = merge([FiringAlerts.of([MIGRATE]), FiringAlerts.of([other, SCALE_UP])], [])
    assert merged.label_sets == FiringAlerts.of([MIGRATE, other, SCALE_UP]).label_sets
    assert merged.hot_tasks == {(TASK, WORKER_1), (OTHER_TASK, WORKER_2)}
    assert merged.unanswered == ()


def test_with_some_instances_answering_their_answers_count_and_the_others_are_told():
    merged = merge([FiringAlerts.of([MIGRATE])],
                   ["http://10.0.1.7:9090/api/v1/alerts unreachable (ConnectTimeout)"])
    assert merged.confirms(alert())
    assert merged.unanswered == ("http://10.0.1.7:9090/api/v1/alerts unreachable (ConnectTimeout)",)


def test_with_no_instance_answering_nothing_is_confirmed_and_every_cause_is_said():
    with pytest.raises(Unanswered, match="^a unreachable; b answered HTTP 503$"):
        merge([], ["a unreachable", "b answered HTTP 503"])
    with pytest.raises(Unanswered, match="^no Prometheus to ask$"):
        merge([], [])


# -- `tasks.<service>` URLs stand for every task's address (pure) -------------------------

def resolver(addresses):
    """A DNS stand-in: the addresses of each host it holds; a KeyError for any other, as a
    test expects no other lookup."""
    return addresses.__getitem__


def test_a_tasks_url_becomes_one_url_per_address_keeping_scheme_port_and_path():
    urls, unresolved = instance_urls(
        ["https://tasks.prometheus-node:9443/prom"],
        resolver({"tasks.prometheus-node": ["10.0.1.9", "10.0.1.10", "10.0.1.9"]}))
    assert urls == ["https://10.0.1.9:9443/prom", "https://10.0.1.10:9443/prom"]
    assert unresolved == []


def test_a_tasks_url_without_a_port_keeps_none():
    urls, _ = instance_urls(["http://tasks.prometheus-node"],
                            resolver({"tasks.prometheus-node": ["10.0.1.9"]}))
    assert urls == ["http://10.0.1.9"]


def test_any_other_url_stands_for_itself_and_is_never_looked_up():
    urls, unresolved = instance_urls(
        ["http://prometheus:9090", "http://tasks.prometheus-node:9090", "http://tasks:9090",
         "http://mytasks.example:9090", "http://tasks.:9090"],
        resolver({"tasks.prometheus-node": ["10.0.1.9"]}))
    assert urls == ["http://prometheus:9090", "http://10.0.1.9:9090", "http://tasks:9090",
                    "http://mytasks.example:9090", "http://tasks.:9090"]
    assert unresolved == []


def test_the_same_instance_named_twice_is_asked_once():
    urls, _ = instance_urls(["http://tasks.a:9090", "http://tasks.b:9090", "http://10.0.1.9:9090"],
                            resolver({"tasks.a": ["10.0.1.9"], "tasks.b": ["10.0.1.9"]}))
    assert urls == ["http://10.0.1.9:9090"]


def test_a_tasks_host_without_an_address_or_whose_lookup_fails_is_said_and_the_rest_kept():
    def resolve(host):
        if host == "tasks.gone":
            raise Unanswered("cannot resolve tasks.gone (Name or service not known)")
        return []
    urls, unresolved = instance_urls(
        ["http://tasks.prometheus-node:9090", "http://tasks.gone:9090", "http://prometheus:9090"],
        resolve)
    assert urls == ["http://prometheus:9090"]
    assert unresolved == ["tasks.prometheus-node has no address (no task of the service runs)",
                          "cannot resolve tasks.gone (Name or service not known)"]


@pytest.mark.parametrize("url, host", [
    ("http://tasks.prometheus-node:9090", "tasks.prometheus-node"),
    ("http://TASKS.Prometheus-Node:9090/x", "tasks.prometheus-node"),
    ("http://prometheus:9090", None),
    ("http://tasks.:9090", None),
])
def test_a_tasks_host_is_told_apart_from_any_other(url, host):
    assert tasks_host(url) == host


# -- the actuator asks before it decides -----------------------------------------------------

def actuator(api, clock, firing_alerts, storm=None, settings=None):
    settings = settings or Settings(token="t")
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
    assert outcome.result == R.SUCCESS and len(api.updates) == 1


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


def test_with_one_prometheus_silent_the_others_answers_decide_and_its_silence_is_logged(caplog):
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    why = "http://10.0.1.7:9090/api/v1/alerts unreachable (ConnectTimeout)"
    act, metrics = actuator(api, clock, lambda: merge([FiringAlerts.of([MIGRATE])], [why]))
    (outcome,) = act.handle([alert(clock=clock)])
    assert outcome.result == R.SUCCESS
    assert skipped(metrics, R.PROMETHEUS_UNREACHABLE) == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"cannot ask one Prometheus, confirming with the others' answers: {why}"]


def test_an_alert_only_a_silent_prometheus_would_fire_stays_unconfirmed():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock, lambda: merge([FiringAlerts.of([])], ["worker-1's is down"]))
    (outcome,) = act.handle([alert(clock=clock)])
    assert outcome.decision.reason == R.UNCONFIRMED
    assert api.updates == []


def test_the_external_labels_the_settings_name_are_left_out_of_the_comparison():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    settings = Settings(token="t", prometheus_external_labels="node_prometheus, cluster")
    act, _ = actuator(api, clock, lambda: FiringAlerts.of([MIGRATE]), settings=settings)
    (outcome,) = act.handle([alert(clock=clock, node_prometheus="worker-1", cluster="eu")])
    assert outcome.result == R.SUCCESS


def test_without_external_labels_named_an_alert_carrying_one_is_unconfirmed():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock, lambda: FiringAlerts.of([MIGRATE]))
    (outcome,) = act.handle([alert(clock=clock, node_prometheus="worker-1")])
    assert outcome.decision.reason == R.UNCONFIRMED


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
    assert second.result == R.SUCCESS


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
    assert outcome.result == R.SUCCESS
    (update,) = api.updates
    # Only its own node is excluded: worker-3 stays a destination.
    assert update["task_template"]["Placement"]["Constraints"] == [
        "node.role==worker", "node.hostname!=worker-1"]


def test_through_the_app_an_unconfirmed_alert_is_counted_and_written_as_one_skip_event():
    from receiver.app import create_app, receiver_of
    from tests.inline_executor import InlineExecutor
    from tests.unit.test_receiver_app import AUTH, NOW, TOKEN, body
    api = example_api()
    app = create_app(Settings(token=TOKEN), api, executor=InlineExecutor(), clock=lambda: NOW,
                     sleep=lambda s: None, readiness_thread=False,
                     firing_alerts=lambda: FiringAlerts.of([]))
    response = app.test_client().post("/alerts", data=body("firing_migrate.json"), headers=AUTH,
                                      content_type="application/json")
    assert response.status_code == 202
    assert api.updates == []
    assert skipped(receiver_of(app).metrics, R.UNCONFIRMED) == 1
    events = receiver_of(app).events.since(0)[0]
    (skip,) = [e for e in events if e["type"] == "decision"]
    assert (skip["result"], skip["reason"]) == ("skip", R.UNCONFIRMED)
