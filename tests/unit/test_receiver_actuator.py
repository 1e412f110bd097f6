import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType

import pytest
import requests

from receiver import actuator as A
from receiver import decisions as D
from receiver.actuator import Actuator
from receiver.config import Settings
from receiver.labels import format_time
from receiver.metrics import Metrics
from receiver.payload import Alert, parse_webhook
from tests.fake_swarm_api import (TASK, WEB_ID, WORKER_1, WORKER_2, WORKER_3, api_error,
                              example_api, out_of_sequence)

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
STARTED = datetime(2026, 11, 27, 10, 0, 1, 123456, tzinfo=timezone.utc)  # the fixtures'


class Clock:
    """Wall clock and monotonic clock that only move when the code sleeps."""

    def __init__(self, now=STARTED + timedelta(seconds=30)):
        self.now = now
        self.mono = 1000.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.mono += seconds
        self.now += timedelta(seconds=seconds)


def recorded(name):
    return list(parse_webhook((FIXTURES / name).read_bytes()).alerts)


def actuator(api, clock, **settings):
    s = Settings(token="t", **settings)
    metrics = Metrics()
    act = Actuator(api, s, metrics, clock=lambda: clock.now, monotonic=lambda: clock.mono,
                   sleep=clock.sleep, jitter=lambda: 1.0)
    return act, metrics


def swarm_moves_task_to(node_id):
    """after_update hook: Swarm starts the replacement on node_id and shuts the old down."""
    def hook(api, service_id, kwargs):
        running = [t for t in api.task_list
                   if t["ServiceID"] == service_id and t["DesiredState"] == "running"]
        api.move_task(running[0]["ID"], node_id)
    return hook


def test_a_migration_is_one_compare_and_swap_update_with_start_first_and_rollback():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    act, metrics = actuator(api, clock)

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == A.SUCCESS
    (update,) = api.updates
    assert update["version"] == 100  # the Version.Index read with this very spec
    assert update["update_config"]["Order"] == "start-first"
    assert update["update_config"]["FailureAction"] == "rollback"
    assert update["update_config"]["Monitor"] == 5000000000  # the rest is kept
    assert update["rollback_config"]["Order"] == "start-first"
    placement = update["task_template"]["Placement"]
    assert placement["Constraints"] == ["node.role==worker", "node.hostname!=worker-1"]
    labels = update["labels"]
    assert labels["swarmguard.enable"] == "true"
    assert labels["swarmguard.last-action"] == "migrate"
    assert labels["swarmguard.last-action-at"] == format_time(STARTED + timedelta(seconds=30))
    assert labels["swarmguard.last-migrate-at"] == labels["swarmguard.last-action-at"]
    assert labels["swarmguard.placement-exclusion"] == "node.hostname!=worker-1"
    assert labels["swarmguard.last-action-reason"].startswith("Migrating demo_web off worker-1")


def test_the_update_carries_the_whole_spec_so_nothing_is_reset():
    api, clock = example_api(host_port=8080), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    before = api.inspect_service(WEB_ID)["Spec"]
    act, _ = actuator(api, clock)
    act.handle(recorded("firing_migrate.json"))
    (update,) = api.updates
    assert update["name"] == "demo_web"
    assert update["mode"] == {"Replicated": {"Replicas": 1}}
    assert update["endpoint_spec"] == before["EndpointSpec"]
    template = update["task_template"]
    assert template["ContainerSpec"] == before["TaskTemplate"]["ContainerSpec"]
    assert template["Networks"] == before["TaskTemplate"]["Networks"]
    assert template["RestartPolicy"] == before["TaskTemplate"]["RestartPolicy"]
    assert "fetch_current_spec" not in update  # we send what we read, with its version


def test_a_migration_waits_for_the_new_task_and_records_its_duration():
    api, clock = example_api(), Clock()
    moved = []

    def swarm_is_slow(api):
        # Swarm starts the new task on the third look at the tasks.
        if len([c for c in api.calls if c[0] == "tasks"]) == 4 and not moved:
            moved.append(api.move_task(TASK, WORKER_3))
    api.before_tasks = swarm_is_slow
    act, _ = actuator(api, clock, watch_interval=0.5)

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == A.SUCCESS
    assert outcome.duration == pytest.approx(1.5)
    assert outcome.detail == f"new task {moved[0][:12]} running"


def test_a_rolled_back_migration_is_reported_and_its_cooldown_written_back():
    api, clock = example_api(), Clock()
    original_labels = dict(api.services[WEB_ID]["Spec"]["Labels"])

    def swarm_rolls_back(api, service_id, kwargs):
        # Swarm's rollback restores the previous spec, our labels with it.
        svc = api.services[service_id]
        svc["Spec"], svc["Version"]["Index"] = svc["PreviousSpec"], svc["Version"]["Index"] + 1
        svc["UpdateStatus"] = {"State": "rollback_started"}
        api.after_update = None
    api.after_update = swarm_rolls_back
    act, _ = actuator(api, clock)

    def sleep(seconds):
        clock.sleep(seconds)
        status = api.services[WEB_ID].get("UpdateStatus", {})
        if status.get("State") == "rollback_started":
            status["State"] = "rollback_completed"  # the rollback finishes a moment later
    act.sleep = sleep

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == A.ROLLED_BACK
    migrate, record = api.updates
    # read after the rollback: 100, our update 101, Swarm's rollback 102
    assert (migrate["version"], record["version"]) == (100, 102)
    assert record["task_template"] == api.services[WEB_ID]["PreviousSpec"]["TaskTemplate"]
    assert record["update_config"]["Order"] == "stop-first"  # the user's, as rolled back
    labels = api.services[WEB_ID]["Spec"]["Labels"]
    assert labels["swarmguard.last-action"] == "migrate"
    assert labels["swarmguard.last-action-reason"].startswith("rolled back: Migrating demo_web")
    assert {k: labels[k] for k in original_labels} == original_labels


def test_a_migration_that_never_settles_times_out():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock, migration_timeout=5, watch_interval=1)
    (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == A.TIMEOUT
    assert outcome.duration == pytest.approx(5)


def test_out_of_sequence_rereads_decides_again_and_retries_with_the_new_version():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    api.update_failures = [out_of_sequence()]
    act, metrics = actuator(api, clock, docker_backoff=0.5)

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == A.SUCCESS
    assert [u["version"] for u in api.updates] == [100, 100]
    reads = [c for c in api.calls if c[0] == "inspect_service" and c[2]["insert_defaults"] is False]
    assert len(reads) == 2  # the spec was read again before the retry
    assert clock.sleeps[0] == 0.5  # backoff before the retry
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update_conflict"}) == 1


def test_when_another_receiver_acted_first_the_retry_stands_down():
    api, clock = example_api(), Clock()
    other = format_time(clock.now - timedelta(seconds=1))
    bumped = []

    def other_receiver_writes(api):
        # Between our read of the service and our update, another replica migrates it.
        if not bumped:
            bumped.append(True)
            api.bump(WEB_ID, **{"swarmguard.last-action": "migrate",
                                "swarmguard.last-action-at": other,
                                "swarmguard.last-migrate-at": other})
    api.before_tasks = other_receiver_writes
    act, _ = actuator(api, clock)

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == A.SKIPPED
    assert outcome.decision.reason == D.STALE
    assert len(api.updates) == 1  # our one failed compare-and-swap, no second write


def test_other_docker_errors_are_retried_with_backoff_then_reported():
    api, clock = example_api(), Clock()
    api.update_failures = [api_error(500, "rpc error: code = Unavailable")] * 10
    act, metrics = actuator(api, clock, docker_attempts=3, docker_backoff=1,
                            docker_backoff_max=10)

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == A.FAILED
    assert "Unavailable" in outcome.detail
    assert len(api.updates) == 3
    assert clock.sleeps == [1, 2]  # exponential
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == 3


def test_a_spec_docker_refuses_is_not_retried():
    api, clock = example_api(), Clock()
    api.update_failures = [api_error(400, "invalid placement constraint")]
    act, _ = actuator(api, clock)
    (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == A.FAILED
    assert len(api.updates) == 1


def test_an_update_that_landed_despite_a_timeout_is_not_made_twice():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    real_update = api.update_service

    def applied_then_timed_out(service, version, **kwargs):
        real_update(service, version, **kwargs)
        raise requests.exceptions.ReadTimeout("read timed out")
    api.update_service = applied_then_timed_out
    act, _ = actuator(api, clock)

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == A.SUCCESS
    assert len(api.updates) == 1


def test_unreachable_docker_is_reported_after_the_retries():
    api, clock = example_api(), Clock()
    api.nodes = lambda filters=None: (_ for _ in ()).throw(
        requests.exceptions.ConnectionError("connection refused"))
    act, metrics = actuator(api, clock, docker_attempts=2)
    (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == A.FAILED
    assert outcome.decision.reason == A.DOCKER_ERROR
    assert api.updates == []


def test_dry_run_decides_and_logs_but_writes_nothing(caplog):
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock, dry_run=True)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == A.DRY_RUN
    assert api.updates == []
    assert ("**DRY-RUN**: would migrate demo_web off worker-1 (cpu 91 %, mem 40 %, net 3 %): "
            "start-first, excluding worker-1") in caplog.messages


def test_scaling_changes_only_the_replica_count_and_the_labels():
    api, clock = example_api(replicas=2), Clock()
    act, _ = actuator(api, clock)
    (outcome,) = act.handle(recorded("firing_scale_up.json"))
    assert outcome.result == A.SUCCESS
    (update,) = api.updates
    assert update["mode"] == {"Replicated": {"Replicas": 3}}
    assert update["update_config"]["Order"] == "stop-first"  # untouched
    assert update["task_template"]["Placement"] == {"Constraints": ["node.role==worker"]}
    assert update["labels"]["swarmguard.last-action"] == "scale_up"
    assert "swarmguard.last-scale-up-at" in update["labels"]


def test_a_stale_alert_changes_nothing():
    api, clock = example_api(), Clock()
    new_task = api.move_task(TASK, WORKER_2)  # Swarm already replaced it elsewhere
    act, _ = actuator(api, clock)
    (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == A.SKIPPED
    assert outcome.decision.why == (f"task t1p4r7s0u3w6 reported on worker-1, running on "
                                    f"worker-2 (as task {new_task[:12]})")
    assert api.updates == []


def test_five_migrations_in_a_row_leave_exactly_one_swarmguard_constraint():
    api, clock = example_api(constraints=["node.role==worker", "node.labels.disk!=hdd"]), Clock()
    nodes = [WORKER_1, WORKER_2, WORKER_3]
    act, _ = actuator(api, clock)
    for i in range(5):
        task = next(t for t in api.task_list if t["DesiredState"] == "running")
        hot, target = task["NodeID"], nodes[(nodes.index(task["NodeID"]) + 1) % 3]
        api.after_update = swarm_moves_task_to(target)
        clock.now += timedelta(seconds=120)  # past the cooldown
        alert = Alert("SwarmGuardMigrate", "firing",
                      MappingProxyType({"alertname": "SwarmGuardMigrate", "service": "demo_web",
                                        "task_id": task["ID"], "node_id": hot}),
                      MappingProxyType({}), clock.now - timedelta(seconds=20), None, f"fp{i}")
        (outcome,) = act.handle([alert])
        assert outcome.result == A.SUCCESS, outcome

    constraints = api.services[WEB_ID]["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    ours = [c for c in constraints if c.startswith("node.hostname!=")]
    assert len(api.updates) == 5
    assert constraints[:2] == ["node.role==worker", "node.labels.disk!=hdd"]
    assert len(ours) == 1
    assert api.services[WEB_ID]["Spec"]["Labels"]["swarmguard.placement-exclusion"] == ours[0]


def test_top_level_networks_of_old_specs_are_kept():
    from receiver.cluster import service_from_dict
    from receiver.spec import update_arguments
    api = example_api()
    data = api.inspect_service(WEB_ID)
    data["Spec"]["Networks"] = data["Spec"]["TaskTemplate"].pop("Networks")
    svc = service_from_dict(data)
    action = D.Action("scale_up", recorded("firing_scale_up.json")[0], svc, "x", replicas=2)
    args = update_arguments(action, STARTED)
    assert args["task_template"]["Networks"] == [{"Target": "o1s6h8x3lk2g"}]


def test_a_scale_up_that_lifts_swarmguards_exclusion_writes_the_users_constraints_and_drops_the_label():
    from receiver.cluster import service_from_dict
    from receiver.spec import update_arguments
    api = example_api()
    data = api.inspect_service(WEB_ID)
    data["Spec"]["TaskTemplate"]["Placement"] = {"Constraints": ["node.role==worker", "node.hostname!=w2"]}
    data["Spec"]["Labels"]["swarmguard.placement-exclusion"] = "node.hostname!=w2"
    action = D.Action("scale_up", recorded("firing_scale_up.json")[0], service_from_dict(data), "x",
                      replicas=3, constraints=("node.role==worker",), lift_exclusion=True)
    args = update_arguments(action, STARTED)
    assert args["task_template"]["Placement"]["Constraints"] == ["node.role==worker"]
    assert "swarmguard.placement-exclusion" not in args["labels"]
    assert args["mode"]["Replicated"]["Replicas"] == 3


def test_handle_refuses_alerts_of_several_services():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock)
    with pytest.raises(ValueError):
        act.handle(recorded("grouped_migrate.json"))
