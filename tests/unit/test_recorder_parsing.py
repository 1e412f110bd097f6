"""What the recorder makes of what the lab says: Prometheus answers, Docker tasks, the
receiver's /metrics, turned into samples and timeline events. (Its structured events:
test_lab_events.py.)"""
from pathlib import Path

import pytest

from tests.lab.instruments import recorder_parsing as P
from tests.lab.reports.timeline import CPU, MEMORY, NETWORK, REPLICAS, parse_time

FIXTURES = Path(__file__).parent / "fixtures" / "recorder"
NODES = {"n-manager-000000000000000": "manager", "n-worker1-0000000000000000": "worker-1",
         "n-worker2-0000000000000000": "worker-2"}
OLD_TASK = "abc123def456ghi789jkl0mno"  # 25 characters, as swarmkit's ids
NEW_TASK = "def456ghi789jkl0mno123pqr"
NOW = parse_time("2026-11-27T10:10:30Z")


# -- Prometheus: recording rules ---------------------------------------------------------------

def query_answer(*results):
    return {"status": "success", "data": {"resultType": "vector", "result": list(results)}}


def sample(name, value, at=1795775131.371, **labels):
    return {"metric": {"__name__": name, **labels}, "value": [at, str(value)]}


def test_the_rules_query_selects_the_four_recording_rules_of_exactly_the_watched_services():
    q = P.rules_query(["victim", "web.1"])
    assert 'service=~"victim|web\\.1"' in q
    for name in ("swarmguard:task_cpu:percent", "swarmguard:task_memory:percent",
                 "swarmguard:task_network:percent", "swarmguard:service_tasks:count"):
        assert name in q


def test_the_rules_query_can_ask_for_the_tasks_or_the_service_alone():
    tasks = P.rules_query(["victim"], P.TASK_RULE_METRICS)
    assert "swarmguard:task_cpu:percent" in tasks and "service_tasks" not in tasks
    assert P.rules_query(["victim"], P.SERVICE_RULE_METRICS) == \
        '{__name__=~"swarmguard:service_tasks:count",service=~"victim"}'


def test_rule_samples_are_keyed_by_metric_service_short_task_id_and_node_hostname():
    body = query_answer(
        sample("swarmguard:task_cpu:percent", 95.5, service="victim", task_id=OLD_TASK,
               node_id="n-worker1-0000000000000000"),
        sample("swarmguard:task_memory:percent", 1.35, service="victim", task_id=OLD_TASK,
               node_id="n-worker1-0000000000000000"),
        sample("swarmguard:task_network:percent", 2, service="victim", task_id=OLD_TASK,
               node_id="n-worker1-0000000000000000"),
        sample("swarmguard:service_tasks:count", 1, service="victim"))
    got = P.rule_samples(P.instant_vector(body), NODES)
    assert got == [
        (P.SeriesKey(CPU, "victim", "abc123def456", "worker-1"), 1795775131.371, 95.5),
        (P.SeriesKey(MEMORY, "victim", "abc123def456", "worker-1"), 1795775131.371, 1.35),
        (P.SeriesKey(NETWORK, "victim", "abc123def456", "worker-1"), 1795775131.371, 2.0),
        (P.SeriesKey(REPLICAS, "victim"), 1795775131.371, 1.0),
    ]


def test_a_node_the_recorder_does_not_know_is_named_by_its_short_id():
    body = query_answer(sample("swarmguard:task_cpu:percent", 5, service="victim", task_id=OLD_TASK,
                               node_id="zzzzzzzzzzzzzzzzzzzzzzzzz"))
    [(key, _, _)] = P.rule_samples(P.instant_vector(body), NODES)
    assert key.node == "zzzzzzzzzzzz"


def test_a_nan_sample_is_a_gap_not_a_value():
    body = query_answer(sample("swarmguard:task_cpu:percent", "NaN", service="victim", task_id=OLD_TASK))
    assert P.rule_samples(P.instant_vector(body), NODES) == []


def test_thresholds_are_read_from_their_recording_rules():
    body = query_answer(sample("swarmguard:threshold:cpu_percent", 75),
                        sample("swarmguard:threshold:network_high_percent", 65))
    assert P.thresholds(P.instant_vector(body)) == {"cpu_percent": 75.0, "network_high_percent": 65.0}


def test_an_error_answer_raises_so_the_poll_is_counted_as_failed():
    with pytest.raises(ValueError, match="bad_data"):
        P.instant_vector({"status": "error", "errorType": "bad_data", "error": "parse error"})


# -- Prometheus: alerts ------------------------------------------------------------------------

def alerts_answer(*alerts):
    return {"status": "success", "data": {"alerts": list(alerts)}}


def migrate_alert(state, active_at="2026-11-27T10:10:25.500Z", task=OLD_TASK, service="victim"):
    return {"labels": {"alertname": "SwarmGuardMigrate", "service": service, "task_id": task,
                       "node_id": "n-worker1-0000000000000000", "scenario": "migrate",
                       "severity": "warning"},
            "annotations": {"summary": "..."}, "state": state, "activeAt": active_at, "value": "9.5e+01"}


DURATIONS = {"SwarmGuardMigrate": 2.0, "SwarmGuardScaleUp": 2.0, "SwarmGuardScaleDown": 180.0}


def alerts(*raw):
    return P.active_alerts(alerts_answer(*raw), ["victim"])


def test_only_swarmguard_alerts_of_watched_services_are_kept():
    other = {**migrate_alert("firing", service="bystander")}
    foreign = {"labels": {"alertname": "Watchdog", "service": "victim"}, "state": "firing",
               "activeAt": "2026-11-27T10:00:00Z"}
    assert list(alerts(migrate_alert("pending"), other, foreign).values()) == [
        P.ActiveAlert("SwarmGuardMigrate", tuple(sorted(migrate_alert("pending")["labels"].items())),
                      "pending", parse_time("2026-11-27T10:10:25.500Z"))]


def test_rule_durations_are_the_for_windows_of_alerting_rules():
    body = {"status": "success", "data": {"groups": [{"name": "g", "rules": [
        {"name": "swarmguard:task_cpu:percent", "type": "recording"},
        {"name": "SwarmGuardMigrate", "type": "alerting", "duration": 2},
        {"name": "SwarmGuardScaleDown", "type": "alerting", "duration": 180}]}]}}
    assert P.rule_durations(body) == {"SwarmGuardMigrate": 2.0, "SwarmGuardScaleDown": 180.0}


def test_a_new_pending_alert_is_an_event_timed_at_its_active_at():
    [event] = P.alert_events({}, alerts(migrate_alert("pending")), NOW, DURATIONS, NODES)
    assert event.kind == "alert_pending"
    assert event.at == parse_time("2026-11-27T10:10:25.500Z")
    assert event.text == "SwarmGuardMigrate pending for victim (task abc123def456 on worker-1)"
    assert (event.service, event.task) == ("victim", "abc123def456")


def test_pending_to_firing_is_timed_at_active_at_plus_the_for_window_not_at_the_poll():
    before = alerts(migrate_alert("pending"))
    [event] = P.alert_events(before, alerts(migrate_alert("firing")), NOW, DURATIONS, NODES)
    assert event.kind == "alert_firing"
    assert event.at == parse_time("2026-11-27T10:10:27.500Z")
    assert event.text == "SwarmGuardMigrate firing for victim (task abc123def456 on worker-1)"


def test_an_alert_first_seen_firing_gets_both_its_pending_and_its_firing_event():
    events = P.alert_events({}, alerts(migrate_alert("firing")), NOW, DURATIONS, NODES)
    assert [e.kind for e in events] == ["alert_pending", "alert_firing"]


def test_without_the_for_window_firing_is_timed_to_the_poll():
    before = alerts(migrate_alert("pending"))
    [event] = P.alert_events(before, alerts(migrate_alert("firing")), NOW, {}, NODES)
    assert event.at == NOW


def test_firing_is_never_timed_after_the_poll_that_saw_it():
    before = alerts(migrate_alert("pending"))
    scale_down = {**DURATIONS, "SwarmGuardMigrate": 3600.0}  # e.g. rules reloaded meanwhile
    [event] = P.alert_events(before, alerts(migrate_alert("firing")), NOW, scale_down, NODES)
    assert event.at == NOW


def test_an_unchanged_alert_is_not_an_event():
    firing = alerts(migrate_alert("firing"))
    assert P.alert_events(firing, firing, NOW, DURATIONS, NODES) == []


def test_a_vanished_alert_is_resolved_at_the_poll():
    [event] = P.alert_events(alerts(migrate_alert("firing")), {}, NOW, DURATIONS, NODES)
    assert (event.kind, event.at) == ("alert_resolved", NOW)
    assert event.text == "SwarmGuardMigrate resolved for victim (task abc123def456 on worker-1)"


def test_a_pending_alert_that_vanishes_says_it_never_fired():
    [event] = P.alert_events(alerts(migrate_alert("pending")), {}, NOW, DURATIONS, NODES)
    assert event.kind == "alert_resolved"
    assert "no longer pending (never fired)" in event.text


def test_an_alert_that_came_back_between_polls_is_resolved_then_new():
    before = alerts(migrate_alert("firing", active_at="2026-11-27T10:10:00Z"))
    after = alerts(migrate_alert("pending", active_at="2026-11-27T10:10:29Z"))
    assert [e.kind for e in P.alert_events(before, after, NOW, DURATIONS, NODES)] == [
        "alert_resolved", "alert_pending"]


def test_a_scale_up_alert_names_only_its_service():
    raw = {"labels": {"alertname": "SwarmGuardScaleUp", "service": "victim", "scenario": "scale_up"},
           "state": "pending", "activeAt": "2026-11-27T10:10:25Z"}
    [event] = P.alert_events({}, alerts(raw), NOW, DURATIONS, NODES)
    assert event.text == "SwarmGuardScaleUp pending for victim"
    assert event.task is None


# -- Docker tasks ------------------------------------------------------------------------------

def task(tid, state, desired="running", node="n-worker1-0000000000000000",
         state_at="2026-11-27T10:10:20.250000000Z", updated_at=None, message="started", err=None):
    status = {"Timestamp": state_at, "State": state, "Message": message}
    if err:
        status["Err"] = err
    return {"ID": tid, "ServiceID": "svc", "NodeID": node, "Slot": 1, "DesiredState": desired,
            "UpdatedAt": updated_at or state_at, "Status": status}


def views(*tasks):
    return P.task_views(tasks, "victim", NODES)


def test_task_views_carry_short_id_hostname_states_and_docker_timestamps():
    [view] = views(task(OLD_TASK, "running")).values()
    assert view == P.TaskView("abc123def456", "victim", "worker-1", "running", "running",
                              parse_time("2026-11-27T10:10:20.25Z"),
                              parse_time("2026-11-27T10:10:20.25Z"), "started")


def test_a_task_reaching_running_is_an_event_at_its_status_timestamp():
    before = views(task(OLD_TASK, "running"), task(NEW_TASK, "starting", node="n-worker2-0000000000000000"))
    after = views(task(OLD_TASK, "running"),
                  task(NEW_TASK, "running", node="n-worker2-0000000000000000",
                       state_at="2026-11-27T10:10:26.100Z"))
    [event] = P.task_events(before, after, NOW)
    assert event.kind == "task_running"
    assert event.at == parse_time("2026-11-27T10:10:26.1Z")
    assert event.text == "task def456ghi789 running on worker-2"
    assert (event.service, event.task, event.node) == ("victim", "def456ghi789", "worker-2")


def test_a_task_never_seen_before_that_already_runs_is_an_event_too():
    after = views(task(NEW_TASK, "running", node="n-worker2-0000000000000000"))
    assert [e.kind for e in P.task_events({}, after, NOW)] == ["task_running"]


def test_desired_state_shutdown_is_the_task_leaving_rotation_timed_at_updated_at():
    before = views(task(OLD_TASK, "running"))
    after = views(task(OLD_TASK, "running", desired="shutdown",
                       updated_at="2026-11-27T10:10:26.200Z"))
    [event] = P.task_events(before, after, NOW)
    assert event.kind == "task_shutdown"
    assert event.at == parse_time("2026-11-27T10:10:26.2Z")
    assert event.text == "task abc123def456 on worker-1 shut down (desired state shutdown)"


def test_desired_state_remove_is_swarms_scale_down_and_also_leaves_rotation():
    before = views(task(OLD_TASK, "running"))
    after = views(task(OLD_TASK, "running", desired="remove", updated_at="2026-11-27T10:10:26Z"))
    assert [e.kind for e in P.task_events(before, after, NOW)] == ["task_shutdown"]


def test_a_task_already_shut_down_at_the_baseline_is_not_an_event_again():
    old = views(task(OLD_TASK, "shutdown", desired="shutdown"))
    assert P.task_events(old, old, NOW) == []


def test_a_failed_task_is_an_event_with_dockers_reason():
    before = views(task(NEW_TASK, "starting"))
    after = views(task(NEW_TASK, "failed", desired="shutdown", message="started",
                       err="task: non-zero exit (1)", state_at="2026-11-27T10:10:27Z",
                       updated_at="2026-11-27T10:10:27Z"))
    kinds = [(e.kind, e.text) for e in P.task_events(before, after, NOW)]
    assert ("task_failed", "task def456ghi789 failed on worker-1: task: non-zero exit (1)") in kinds


def test_with_several_services_task_events_name_their_service():
    after = views(task(NEW_TASK, "running"))
    [event] = P.task_events({}, after, NOW, with_service=True)
    assert event.text == "victim: task def456ghi789 running on worker-1"


def test_node_names_and_desired_replicas_come_from_docker_attrs():
    nodes = [{"ID": "n1", "Description": {"Hostname": "manager"}},
             {"ID": "n2", "Description": {"Hostname": "worker-1"}}]
    assert P.node_names(nodes) == {"n1": "manager", "n2": "worker-1"}
    assert P.desired_replicas({"Spec": {"Mode": {"Replicated": {"Replicas": 3}}}}) == 3
    assert P.desired_replicas({"Spec": {"Mode": {"Global": {}}}}) is None


# -- the receiver: /metrics ---------------------------------------------------------------------

METRICS = """\
# HELP swarmguard_alerts_received_total Alerts received from Alertmanager, by alert name and status.
# TYPE swarmguard_alerts_received_total counter
swarmguard_alerts_received_total{alertname="SwarmGuardMigrate",status="firing"} 3.0
swarmguard_alerts_received_total{alertname="SwarmGuardMigrate",status="resolved"} 1.0
# HELP swarmguard_alerts_received_created Alerts received from Alertmanager, by alert name and status.
# TYPE swarmguard_alerts_received_created gauge
swarmguard_alerts_received_created{alertname="SwarmGuardMigrate",status="firing"} 1.7957751e+09
# HELP swarmguard_actions_in_flight Services with an action being decided or carried out right now.
# TYPE swarmguard_actions_in_flight gauge
swarmguard_actions_in_flight 0.0
"""


def test_alerts_received_are_read_by_name_and_status():
    assert P.alerts_received(METRICS) == {("SwarmGuardMigrate", "firing"): 3.0,
                                          ("SwarmGuardMigrate", "resolved"): 1.0}


def test_more_firing_alerts_received_than_at_the_last_poll_is_a_webhook_event():
    before = {("SwarmGuardMigrate", "firing"): 2.0}
    [event] = P.webhook_events(before, P.alerts_received(METRICS), NOW,
                               {"SwarmGuardMigrate": {"victim"}})
    assert (event.kind, event.at, event.service) == ("webhook", NOW, "victim")
    assert event.text == "receiver got SwarmGuardMigrate for victim"


def test_the_webhook_names_no_service_when_the_alert_fires_for_several():
    [event] = P.webhook_events({}, {("SwarmGuardMigrate", "firing"): 2.0}, NOW,
                               {"SwarmGuardMigrate": {"a", "b"}})
    assert event.service is None
    assert event.text == "receiver got 2 × SwarmGuardMigrate"


def test_no_new_alerts_no_event_and_resolved_ones_are_left_to_the_log():
    counts = P.alerts_received(METRICS)
    assert P.webhook_events(counts, counts, NOW) == []
    more_resolved = {**counts, ("SwarmGuardMigrate", "resolved"): 5.0}
    assert P.webhook_events(counts, more_resolved, NOW) == []


def test_a_counter_lower_than_before_means_a_restarted_receiver_and_its_count_is_all_new():
    [event] = P.webhook_events({("SwarmGuardMigrate", "firing"): 7.0},
                               {("SwarmGuardMigrate", "firing"): 1.0}, NOW)
    assert event.text == "receiver got SwarmGuardMigrate"

