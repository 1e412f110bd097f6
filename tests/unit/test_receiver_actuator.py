import copy
import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType

import docker.errors
import pytest
import requests

from receiver import actuator as A
from receiver import actions
from receiver import maintenance as M
from receiver import reasons as R
from receiver.actuator import Actuator
from receiver.cluster import read_snapshot
from receiver.config import Settings
from receiver.confirmation import FiringAlerts, Unanswered
from receiver.gate import ShuttingDown
from receiver.metrics import Metrics
from receiver.alerts import Alert
from receiver.payload import parse_webhook
from swarmguard_config.rfc3339 import format_time, utc_now
from tests.fake_docker_api_client import (TASK, TASK_2, WEB_ID, WORKER_1, WORKER_2, WORKER_3,
                                  FakeDockerAPI, Landed, api_error, example_api, example_nodes,
                                  out_of_sequence, service_dict, task_dict, unreadable_answers)

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


# An answer that cannot be read (a proxy's HTML page, a body cut off...) is Docker failing
# (receiver/cluster.py, DOCKER_FAILURES): counted, retried, and a write may have landed.
UNREADABLE = [pytest.param(error, id=what) for what, error in unreadable_answers().items()]


def actuator(api, clock, events=None, firing_alerts=None, **settings):
    s = Settings(token="t", **settings)
    metrics = Metrics()
    act = Actuator(api, s, metrics, clock=lambda: clock.now, monotonic=lambda: clock.mono,
                   sleep=clock.sleep, jitter=lambda: 1.0, events=events,
                   firing_alerts=firing_alerts)
    return act, metrics


def migrate(api, clock, **settings):
    """What the Actuator makes of the recorded SwarmGuardMigrate alert, and its metrics."""
    act, metrics = actuator(api, clock, **settings)
    (outcome,) = act.handle(recorded("firing_migrate.json"))
    return outcome, metrics


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
    outcome, metrics = migrate(api, clock)

    assert outcome.result == R.SUCCESS
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
    outcome, _ = migrate(api, clock, watch_interval=0.5)

    assert outcome.result == R.SUCCESS
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

    assert outcome.result == R.ROLLED_BACK
    moved, record = api.updates
    # read after the rollback: 100, our update 101, Swarm's rollback 102
    assert (moved["version"], record["version"]) == (100, 102)
    assert record["task_template"] == api.services[WEB_ID]["PreviousSpec"]["TaskTemplate"]
    assert record["update_config"]["Order"] == "stop-first"  # the user's, as rolled back
    labels = api.services[WEB_ID]["Spec"]["Labels"]
    assert labels["swarmguard.last-action"] == "migrate"
    assert labels["swarmguard.last-action-reason"].startswith("rolled back: Migrating demo_web")
    assert {k: labels[k] for k in original_labels} == original_labels


def test_a_migration_that_never_settles_times_out():
    api, clock = example_api(), Clock()
    outcome, _ = migrate(api, clock, migration_timeout=5, watch_interval=1)
    assert outcome.result == R.TIMEOUT
    assert outcome.duration == pytest.approx(5)


def test_out_of_sequence_rereads_decides_again_and_retries_with_the_new_version():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    api.update_failures = [out_of_sequence()]
    outcome, metrics = migrate(api, clock, docker_backoff=0.5)

    assert outcome.result == R.SUCCESS
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
    outcome, _ = migrate(api, clock)

    # The migration was announced before its update: it is answered as withdrawn, why.
    assert isinstance(outcome.decision, actions.Migration)
    assert outcome.result == R.WITHDRAWN
    assert outcome.detail.startswith("not made: decided again, stale: ")
    assert len(api.updates) == 1  # our one failed compare-and-swap, no second write


def test_other_docker_errors_are_retried_with_backoff_then_reported():
    api, clock = example_api(), Clock()
    api.update_failures = [api_error(500, "rpc error: code = Unavailable")] * 10
    act, metrics = actuator(api, clock, docker_attempts=3, docker_backoff=1,
                            docker_backoff_max=10)

    (outcome,) = act.handle(recorded("firing_migrate.json"))

    assert outcome.result == R.FAILED
    assert "Unavailable" in outcome.detail
    assert len(api.updates) == 3
    # Exponential; the last wait is before reading back whether the last update landed.
    assert clock.sleeps == [1, 2, 4]
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == 3


@pytest.mark.parametrize("replicas, fixture", [(1, "firing_migrate.json"),
                                               (2, "firing_scale_up.json")])
def test_an_action_retried_after_docker_errors_spends_one_start_of_the_per_minute_budget(
        replicas, fixture):
    api, clock = example_api(replicas=replicas), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    api.update_failures = [api_error(500, "rpc error: code = Unavailable")] * 3
    # One start a minute: the retries must not spend more, nor be refused by their own.
    act, _ = actuator(api, clock, docker_attempts=5, max_actions_per_minute=1)

    (outcome,) = act.handle(recorded(fixture))

    assert outcome.result == R.SUCCESS
    assert len(api.updates) == 4
    assert len(act.storm.view().recent_starts) == 1


@pytest.mark.parametrize("failure", [
    pytest.param(api_error(500, "rpc error: code = DeadlineExceeded"), id="server error"),
    pytest.param(requests.exceptions.ReadTimeout("read timed out"), id="timeout"),
    *UNREADABLE])
def test_an_update_whose_last_attempt_landed_despite_its_error_is_watched_to_its_outcome(
        failure, caplog):
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    api.update_failures = [api_error(500, "rpc error: code = Unavailable"), Landed(failure)]
    with caplog.at_level(logging.INFO, logger="receiver"):
        outcome, _ = migrate(api, clock, docker_attempts=2)
    assert (outcome.result, outcome.detail) == (R.SUCCESS, "new task newtask0001 running")
    assert len(api.updates) == 2
    assert "The update of demo_web did land despite the error" in caplog.messages
    # Read back as stored, to find our stamp in the service's own labels.
    last_update = max(i for i, c in enumerate(api.calls) if c[0] == "update_service")
    read_back = next(c for c in api.calls[last_update:] if c[0] == "inspect_service")
    assert read_back == ("inspect_service", ("demo_web",), {"insert_defaults": False})


def test_an_update_whose_landing_cannot_be_read_back_fails_saying_so(caplog):
    api, clock = example_api(), Clock()
    api.update_failures = [requests.exceptions.ReadTimeout("read timed out")]
    act, metrics = actuator(api, clock, docker_attempts=1)
    real_inspect = api.inspect_service
    reads = []

    def inspect(service, insert_defaults=None):
        reads.append(service)
        if len(reads) > 1:  # Docker stops answering after the update was sent
            raise requests.exceptions.ConnectionError("connection refused")
        return real_inspect(service, insert_defaults=insert_defaults)
    api.inspect_service = inspect
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert (outcome.result, outcome.detail) == (
        R.FAILED, "docker update failed: read timed out; whether its update landed is not known")
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "read"}) == 1
    assert "docker read failed: connection refused" in caplog.messages


def test_a_service_removed_after_an_update_that_may_have_landed_is_not_taken_as_updated(
        caplog):
    api, clock = example_api(), Clock()
    api.update_failures = [Landed(requests.exceptions.ReadTimeout("read timed out"))]
    api.after_update = lambda api, sid, kw: api.services.pop(sid)  # removed by its owner
    act, _ = actuator(api, clock, docker_attempts=1)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert (outcome.result, outcome.detail) == (R.FAILED, "docker update failed: read timed out")
    assert "The update of demo_web did land despite the error" not in caplog.messages


def test_a_spec_docker_refuses_is_not_retried():
    api, clock = example_api(), Clock()
    api.update_failures = [api_error(400, "invalid placement constraint")]
    outcome, _ = migrate(api, clock)
    assert outcome.result == R.FAILED
    assert len(api.updates) == 1


def test_an_update_that_landed_despite_a_timeout_is_not_made_twice():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    real_update = api.update_service

    def applied_then_timed_out(service, version, **kwargs):
        real_update(service, version, **kwargs)
        raise requests.exceptions.ReadTimeout("read timed out")
    api.update_service = applied_then_timed_out
    outcome, _ = migrate(api, clock)

    assert outcome.result == R.SUCCESS
    assert len(api.updates) == 1


def test_unreachable_docker_is_reported_after_the_retries():
    api, clock = example_api(), Clock()
    api.nodes = lambda filters=None: (_ for _ in ()).throw(
        requests.exceptions.ConnectionError("connection refused"))
    outcome, metrics = migrate(api, clock, docker_attempts=2)
    assert outcome.result == R.FAILED
    assert outcome.decision.reason == R.DOCKER_ERROR
    assert api.updates == []


def test_dry_run_decides_and_logs_but_writes_nothing(caplog):
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock, dry_run=True)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == R.DRY_RUN
    assert api.updates == []
    assert ("**DRY-RUN**: would migrate demo_web off worker-1 (cpu 91 %, mem 40 %, net 3 %): "
            "start-first, excluding worker-1") in caplog.messages


def test_scaling_changes_only_the_replica_count_and_the_labels():
    api, clock = example_api(replicas=2), Clock()
    act, _ = actuator(api, clock)
    (outcome,) = act.handle(recorded("firing_scale_up.json"))
    assert outcome.result == R.SUCCESS
    (update,) = api.updates
    assert update["mode"] == {"Replicated": {"Replicas": 3}}
    assert update["update_config"]["Order"] == "stop-first"  # untouched
    assert update["task_template"]["Placement"] == {"Constraints": ["node.role==worker"]}
    assert update["labels"]["swarmguard.last-action"] == "scale_up"
    assert "swarmguard.last-scale-up-at" in update["labels"]


def test_a_stale_alert_changes_nothing():
    api, clock = example_api(), Clock()
    new_task = api.move_task(TASK, WORKER_2)  # Swarm already replaced it elsewhere
    outcome, _ = migrate(api, clock)
    assert outcome.result == R.SKIPPED
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
        assert outcome.result == R.SUCCESS, outcome

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
    action = actions.ScaleStep("scale_up", recorded("firing_scale_up.json")[0], svc, "x", replicas=2)
    args = update_arguments(action, STARTED)
    assert args["task_template"]["Networks"] == [{"Target": "o1s6h8x3lk2g"}]


def test_a_scale_up_that_lifts_swarmguards_exclusion_writes_the_users_constraints_and_drops_the_label():
    from receiver.cluster import service_from_dict
    from receiver.spec import update_arguments
    api = example_api()
    data = api.inspect_service(WEB_ID)
    data["Spec"]["TaskTemplate"]["Placement"] = {"Constraints": ["node.role==worker", "node.hostname!=w2"]}
    data["Spec"]["Labels"]["swarmguard.placement-exclusion"] = "node.hostname!=w2"
    action = actions.ScaleStep("scale_up", recorded("firing_scale_up.json")[0], service_from_dict(data),
                         "x", replicas=3, constraints=("node.role==worker",))
    args = update_arguments(action, STARTED)
    assert args["task_template"]["Placement"]["Constraints"] == ["node.role==worker"]
    assert "swarmguard.placement-exclusion" not in args["labels"]
    assert args["mode"]["Replicated"]["Replicas"] == 3


def test_handle_refuses_alerts_of_several_services():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock)
    with pytest.raises(ValueError):
        act.handle(recorded("grouped_migrate.json"))


# -- when a migration is done ----------------------------------------------------------------

NEW_TASK = "n3wt4sk5r7s0u3w6y9a2c5e8g"  # a full-length Swarm ID


def swarm_starts(api, task_id, node_id, state="running", old_desired="running"):
    """Swarm's start-first update: a new task in the old one's slot, the old one's desired
    state as given (it stays "running" until the new one is up)."""
    old = next(t for t in api.task_list if t["ID"] == TASK)
    old["DesiredState"] = old_desired
    api.task_list.append(task_dict(task_id, WEB_ID, node_id, slot=old["Slot"], state=state))


def test_a_migration_is_not_done_while_the_old_task_stays_in_rotation():
    api, clock = example_api(), Clock()
    api.after_update = lambda api, sid, kw: swarm_starts(api, NEW_TASK, WORKER_2)
    outcome, _ = migrate(api, clock, migration_timeout=5, watch_interval=1)
    assert (outcome.result, outcome.detail) == (R.TIMEOUT, "not settled within 5 s")


def test_a_migration_is_done_once_the_new_task_runs_and_the_old_one_is_shut_down():
    api, clock = example_api(), Clock()
    api.after_update = lambda api, sid, kw: swarm_starts(api, NEW_TASK, WORKER_2)
    looks = []

    def old_task_leaves_on_the_third_look(api):
        looks.append(True)
        if len(looks) == 4:  # the snapshot's read, then three looks while watching
            next(t for t in api.task_list if t["ID"] == TASK)["DesiredState"] = "shutdown"
    api.before_tasks = old_task_leaves_on_the_third_look
    outcome, _ = migrate(api, clock, watch_interval=0.5)
    assert outcome.result == R.SUCCESS
    assert outcome.duration == pytest.approx(1.5)
    assert outcome.detail == "new task n3wt4sk5r7s0 running"  # shortened as docker's CLI does


def test_a_migration_is_done_when_swarm_has_already_forgotten_the_old_task():
    api, clock = example_api(), Clock()

    def replaced(api, sid, kw):
        swarm_starts(api, NEW_TASK, WORKER_2)
        api.task_list[:] = [t for t in api.task_list if t["ID"] != TASK]
    api.after_update = replaced
    outcome, _ = migrate(api, clock)
    assert outcome.result == R.SUCCESS


def test_only_a_running_task_in_the_old_ones_slot_of_the_same_service_is_its_replacement():
    # The old task is being stopped (desired shutdown, still running); its replacement is
    # still starting. Neither the stopping task, nor the service's other replica, nor
    # another service's task in a slot of the same number is the new task.
    other = service_dict("demo_api", "a" * 25)
    api = FakeDockerAPI(services=[service_dict("demo_web", WEB_ID, replicas=2,
                                               constraints=["node.role==worker"]), other],
                        tasks=[task_dict(TASK, WEB_ID, WORKER_1),
                               task_dict(TASK_2, WEB_ID, WORKER_2, slot=2),
                               task_dict("b" * 25, "a" * 25, WORKER_2, slot=1)],
                        nodes=example_nodes())
    api.after_update = lambda api, sid, kw: swarm_starts(
        api, NEW_TASK, WORKER_3, state="starting", old_desired="shutdown")
    clock = Clock()
    outcome, _ = migrate(api, clock, migration_timeout=3, watch_interval=1)
    assert outcome.result == R.TIMEOUT


@pytest.mark.parametrize("hiccup", [requests.exceptions.ConnectionError("connection reset"),
                                    *UNREADABLE])
def test_a_docker_hiccup_while_watching_is_counted_and_the_watch_goes_on(hiccup, caplog):
    api, clock = example_api(), Clock()
    looks = []

    def flaky_then_moved(api):
        looks.append(True)
        if len(looks) == 2:
            raise hiccup
        if len(looks) == 3:
            api.move_task(TASK, WORKER_2)
    api.before_tasks = flaky_then_moved
    act, metrics = actuator(api, clock)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == R.SUCCESS
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "watch"}) == 1
    assert f"docker watch failed: {hiccup}" in caplog.messages


def test_a_migration_swarm_paused_is_a_failure_and_logged_as_one(caplog):
    api, clock = example_api(), Clock()

    def paused(api, sid, kw):
        api.services[sid]["UpdateStatus"] = {"State": "paused"}
    api.after_update = paused
    act, _ = actuator(api, clock, watch_interval=0.5)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert (outcome.result, outcome.detail) == (R.FAILED, "Swarm paused the update")
    assert isinstance(outcome.decision, actions.Action)
    assert ("Migration of demo_web off worker-1 failed after 0.5 s: Swarm paused the update"
            in caplog.messages)
    assert len(api.updates) == 1  # a pause is no rollback: nothing to record


def test_a_finished_migration_is_logged_with_where_from_how_long_and_the_new_task(caplog):
    api, clock = example_api(), Clock()
    api.after_update = lambda api, sid, kw: swarm_starts(api, NEW_TASK, WORKER_2,
                                                         old_desired="shutdown")
    act, _ = actuator(api, clock, watch_interval=0.5)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.decision.kind == "migrate"
    assert caplog.messages[-1] == ("Migrated demo_web off worker-1 in 0.5 s: new task "
                                   "n3wt4sk5r7s0 running")
    assert caplog.messages[0].startswith("Migrating demo_web off worker-1 (cpu 91 %")


# -- after a rollback ------------------------------------------------------------------------

def swarm_rolls_back_to(final_state):
    """after_update hook: Swarm rolls the migration back (restoring the old spec and labels);
    the rollback reaches `final_state` two looks later."""
    def hook(api, service_id, kwargs):
        svc = api.services[service_id]
        svc["Spec"], svc["Version"]["Index"] = svc["PreviousSpec"], svc["Version"]["Index"] + 1
        svc["UpdateStatus"] = {"State": "rollback_started"}
        api.after_update = None
        looks = []
        real_inspect = api.inspect_service

        def inspect(service, insert_defaults=None):
            looks.append(True)
            if len(looks) == 3 and final_state:
                svc["UpdateStatus"] = {"State": final_state}
            return real_inspect(service, insert_defaults=insert_defaults)
        api.inspect_service = inspect
    return hook


def rolled_back(final_state, caplog, **settings):
    """(the outcome, the fake) of a migration Swarm rolls back, ending in `final_state`,
    handled with the receiver's log lines in `caplog`."""
    api, clock = example_api(), Clock()
    api.after_update = swarm_rolls_back_to(final_state)
    with caplog.at_level(logging.INFO, logger="receiver"):
        outcome, _ = migrate(api, clock, **settings)
    return outcome, api


def test_the_record_of_a_rolled_back_migration_waits_for_the_rollback_to_complete(caplog):
    outcome, api = rolled_back("rollback_completed", caplog, watch_interval=0.5)
    assert outcome.result == R.ROLLED_BACK
    assert outcome.detail == "Swarm rolled the update back (state rollback_started)"
    assert isinstance(outcome.decision, actions.Action)
    _, record = api.updates
    # The spec as stored, without the defaults Docker would fill in.
    assert "StopGracePeriod" not in record["task_template"]["ContainerSpec"]
    assert api.services[WEB_ID]["Spec"]["Labels"]["swarmguard.last-action"] == "migrate"
    # 0.5 s to see the rollback, 0.5 s more until it completed and was recorded
    assert ("Migration of demo_web off worker-1 rolled back after 1.0 s: Swarm rolled the "
            "update back (state rollback_started)") in caplog.messages
    assert "Recorded the rolled-back migration of demo_web in its labels" in caplog.messages


def test_a_rollback_that_pauses_is_left_to_the_operator_unrecorded(caplog):
    outcome, api = rolled_back("rollback_paused", caplog, watch_interval=0.5)
    assert outcome.result == R.ROLLED_BACK
    assert len(api.updates) == 1
    assert ("Not recording the rollback of demo_web: update state is rollback_paused"
            in caplog.messages)


def test_the_rollback_is_watched_for_the_migration_timeout_and_no_look_longer(caplog):
    """Seen rolling back 1 s in, then looked at once more; it completes at the third look,
    exactly when the next second (the timeout) is up: too late, it is left unrecorded."""
    outcome, api = rolled_back("rollback_completed", caplog, migration_timeout=1, watch_interval=1.0)
    assert outcome.result == R.ROLLED_BACK
    assert len(api.updates) == 1
    assert "Rollback of demo_web did not complete within 1 s; not recorded" in caplog.messages


def test_a_rollback_that_never_completes_is_not_recorded(caplog):
    outcome, api = rolled_back(None, caplog, migration_timeout=5, watch_interval=0.5)
    assert outcome.result == R.ROLLED_BACK
    assert len(api.updates) == 1
    assert "Rollback of demo_web did not complete within 5 s; not recorded" in caplog.messages


def test_a_record_that_races_another_update_is_read_again_and_written():
    api, clock = example_api(), Clock()
    api.after_update = swarm_rolls_back_to("rollback_completed")
    api.update_failures = [None, out_of_sequence()]
    outcome, metrics = migrate(api, clock, watch_interval=0.5)
    assert outcome.result == R.ROLLED_BACK
    assert len(api.updates) == 3
    assert api.services[WEB_ID]["Spec"]["Labels"]["swarmguard.last-action"] == "migrate"


def test_a_record_docker_refuses_is_given_up_and_counted(caplog):
    api, clock = example_api(), Clock()
    api.after_update = swarm_rolls_back_to("rollback_completed")
    api.update_failures = [None, api_error(500, "rpc error: code = Internal")]
    act, metrics = actuator(api, clock, watch_interval=0.5)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert any(m.startswith("docker record failed: 500") for m in caplog.messages)
    assert outcome.result == R.ROLLED_BACK
    assert len(api.updates) == 2
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "record"}) == 1


def test_an_unreachable_docker_while_recording_is_counted_and_tried_again(caplog):
    api, clock = example_api(), Clock()
    rolled_back = swarm_rolls_back_to("rollback_completed")
    failures = [requests.exceptions.ConnectionError("connection refused")]

    def hook(api, service_id, kwargs):
        rolled_back(api, service_id, kwargs)
        watching = api.inspect_service

        def inspect(service, insert_defaults=None):
            if insert_defaults is False and failures:  # the record's first read
                raise failures.pop()
            return watching(service, insert_defaults=insert_defaults)
        api.inspect_service = inspect
    api.after_update = hook
    act, metrics = actuator(api, clock, watch_interval=0.5)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert outcome.result == R.ROLLED_BACK
    assert len(api.updates) == 2
    assert "docker record failed: connection refused" in caplog.messages
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "record"}) == 1


# -- outcomes, events, retries -----------------------------------------------------------------

def test_a_scale_outcome_is_its_action_with_the_time_the_update_took():
    api, clock = example_api(replicas=2), Clock()

    def slow_update(api, sid, kw):
        clock.mono += 0.25
    api.after_update = slow_update
    act, _ = actuator(api, clock)
    (outcome,) = act.handle(recorded("firing_scale_up.json"))
    assert outcome.result == R.SUCCESS
    assert outcome.decision.replicas == 3
    assert outcome.duration == pytest.approx(0.25)


def test_the_other_alerts_of_the_service_are_skipped_beside_the_one_acted_on():
    api, clock = example_api(replicas=2), Clock()
    api.task_list.append(task_dict(TASK_2, WEB_ID, WORKER_2, slot=2))
    api.after_update = swarm_moves_task_to(WORKER_3)
    # The firing ones, as the Dispatcher hands them over.
    alerts = [a for a in recorded("grouped_migrate.json") if a.service == "demo_web" and a.firing]
    act, _ = actuator(api, clock)
    outcomes = act.handle(alerts)
    assert [o.result for o in outcomes] == [R.SUCCESS, R.SKIPPED]
    assert [o.decision.alert for o in outcomes] == alerts
    assert [o.decision.reason for o in outcomes[1:]] == [R.IN_PROGRESS]


def test_each_action_is_announced_as_an_event_before_the_update():
    from receiver.events import EventLog
    api, clock = example_api(), Clock()
    events = EventLog(16, lambda: clock.now)
    seen_at_update = []
    api.after_update = lambda api, sid, kw: seen_at_update.append(events.since(0)[0])
    act, _ = actuator(api, clock, events=events)
    act.handle(recorded("firing_migrate.json"))
    (event,) = seen_at_update[0]
    assert (event["type"], event["result"]) == ("decision", "act")
    assert (event["alert"], event["service"], event["task"], event["node"]) == (
        "SwarmGuardMigrate", "demo_web", TASK, WORKER_1)
    assert event["message"].startswith("Migrating demo_web off worker-1")


def acts(events):
    return [e for e in events.since(0)[0] if (e["type"], e["result"]) == ("decision", "act")]


@pytest.mark.parametrize("failures, result", [(2, R.SUCCESS), (5, R.FAILED)])
def test_an_action_is_announced_once_however_many_attempts_its_update_takes(failures, result,
                                                                            caplog):
    from receiver.events import EventLog
    api, clock = example_api(replicas=2), Clock()
    api.update_failures = [api_error(500, "rpc error: code = Unavailable")] * failures
    events = EventLog(16, lambda: clock.now)
    act, metrics = actuator(api, clock, events=events, docker_attempts=5)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_scale_up.json"))
    assert outcome.result == result
    assert len(api.updates) == min(failures + 1, 5)
    (act_event,) = acts(events)
    assert act_event["message"] == outcome.decision.sentence
    # The retries show in the log and the Docker error metric.
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == failures
    assert caplog.messages.count("docker update failed: 500 Server Error for "
                                 "http+docker://localhost/v1.41/services/x/update: Internal "
                                 "Server Error (\"rpc error: code = Unavailable\")") == failures


def test_an_action_that_lost_a_race_is_announced_once_when_decided_again_and_made():
    from receiver.events import EventLog
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    api.update_failures = [out_of_sequence()]
    events = EventLog(16, lambda: clock.now)
    outcome, _ = migrate(api, clock, events=events)
    assert outcome.result == R.SUCCESS
    assert len(acts(events)) == 1


def test_a_dry_run_announces_what_it_would_do():
    from receiver.events import EventLog
    api, clock = example_api(), Clock()
    events = EventLog(16, lambda: clock.now)
    act, _ = actuator(api, clock, events=events, dry_run=True)
    act.handle(recorded("firing_migrate.json"))
    (event,) = events.since(0)[0]
    assert event["message"].startswith("**DRY-RUN**: would migrate demo_web off worker-1")


def test_the_api_version_is_negotiated_before_reading_and_its_failure_is_a_read_failure():
    import docker.errors
    from receiver.cluster import connect
    api, clock = example_api(), Clock()
    api.version_data = docker.errors.DockerException("cannot negotiate the API version")
    act, metrics = actuator(connect(Settings(token="t"), api), clock, docker_attempts=2)
    (outcome,) = act.handle(recorded("firing_migrate.json"))
    assert [name for name, _, _ in api.calls] == ["version", "version"]  # nothing else
    assert (outcome.result, outcome.decision.reason) == (R.FAILED, R.DOCKER_ERROR)
    assert api.updates == []


@pytest.mark.parametrize("failure", [
    pytest.param(requests.exceptions.ConnectionError("refused"), id="refused"),
    *UNREADABLE])  # an answer that cannot be read is a failed read too
def test_a_read_that_fails_once_is_tried_again_and_the_action_goes_ahead(failure):
    api, clock = example_api(replicas=2), Clock()
    real_nodes, failures = api.nodes, [failure]

    def nodes(filters=None):
        if failures:
            raise failures.pop()
        return real_nodes(filters)
    api.nodes = nodes
    act, metrics = actuator(api, clock, docker_backoff=1)
    (outcome,) = act.handle(recorded("firing_scale_up.json"))
    assert outcome.result == R.SUCCESS
    assert clock.sleeps == [1]
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "read"}) == 1


def test_an_unreachable_docker_is_reported_for_each_alert_saying_so(caplog):
    api, clock = example_api(), Clock()
    api.nodes = lambda filters=None: (_ for _ in ()).throw(
        requests.exceptions.ConnectionError("connection refused"))
    act, metrics = actuator(api, clock, docker_attempts=2)
    alerts = recorded("firing_migrate.json")
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(alerts)
    assert outcome.decision.alert == alerts[0]
    assert outcome.decision.why == "docker read failed: connection refused"
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "read"}) == 2
    assert "docker read failed: connection refused" in caplog.messages
    assert ("Gave up on demo_web after 2 attempts: docker read failed: connection refused"
            in caplog.messages)


def test_an_update_that_keeps_conflicting_is_reported_as_such(caplog):
    api, clock = example_api(), Clock()
    api.update_failures = [out_of_sequence()] * 2
    act, _ = actuator(api, clock, docker_attempts=2)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(recorded("firing_migrate.json"))
    conflict = "demo_web changed under us (rpc error: code = Unknown desc = update out of sequence)"
    assert (outcome.result, outcome.detail) == (R.FAILED, conflict)
    assert isinstance(outcome.decision, actions.Action)
    assert f"{conflict}; re-reading and deciding again" in caplog.messages


def test_a_refused_spec_is_reported_with_dockers_reason():
    api, clock = example_api(), Clock()
    api.update_failures = [api_error(400, "invalid placement constraint")]
    outcome, _ = migrate(api, clock)
    assert outcome.result == R.FAILED
    assert isinstance(outcome.decision, actions.Action)
    assert "invalid placement constraint" in outcome.detail


def assert_landed_once_and_watched(outcome, api, caplog):
    """An update that landed although its answer was an error: made once, not retried, and
    watched to the migration's own outcome."""
    assert isinstance(outcome.decision, actions.Migration)
    assert (outcome.result, outcome.detail) == (R.SUCCESS, "new task newtask0001 running")
    assert len(api.updates) == 1
    assert "The update of demo_web did land despite the error" in caplog.messages


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("read timed out"),
                                     api_error(500, "rpc error: code = DeadlineExceeded")])
def test_an_update_that_landed_despite_an_error_is_not_made_twice_and_says_so(failure, caplog):
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    real_update = api.update_service

    def applied_then_failed(service, version, **kwargs):
        real_update(service, version, **kwargs)
        raise failure
    api.update_service = applied_then_failed
    with caplog.at_level(logging.INFO, logger="receiver"):
        outcome, _ = migrate(api, clock)
    # Watched as if the call had answered: the migration's own outcome.
    assert_landed_once_and_watched(outcome, api, caplog)


def test_an_update_that_times_out_and_never_lands_is_retried_then_reported():
    api, clock = example_api(), Clock()
    api.update_failures = [requests.exceptions.ReadTimeout("read timed out")] * 2
    outcome, metrics = migrate(api, clock, docker_attempts=2)
    assert (outcome.result, outcome.detail) == (R.FAILED, "docker update failed: read timed out")
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == 2


@pytest.mark.parametrize("unreadable", UNREADABLE)
def test_an_update_whose_answer_cannot_be_read_but_that_landed_is_watched_to_its_outcome(
        unreadable, caplog):
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    api.update_failures = [Landed(unreadable)]
    with caplog.at_level(logging.INFO, logger="receiver"):
        outcome, metrics = migrate(api, clock)
    assert_landed_once_and_watched(outcome, api, caplog)
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == 1


@pytest.mark.parametrize("unreadable", UNREADABLE)
def test_an_update_whose_answer_cannot_be_read_and_that_did_not_land_is_made_again(unreadable):
    api, clock = example_api(replicas=2), Clock()
    api.update_failures = [unreadable]
    act, metrics = actuator(api, clock, docker_backoff=1)
    (outcome,) = act.handle(recorded("firing_scale_up.json"))
    assert outcome.result == R.SUCCESS
    assert [u["version"] for u in api.updates] == [100, 100]
    assert clock.sleeps == [1]
    assert api.services[WEB_ID]["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}


def test_jitter_spreads_each_retry_between_half_and_all_of_its_delay():
    api, clock = example_api(), Clock()
    api.update_failures = [api_error(500, "rpc error: code = Unavailable")] * 3
    act, _ = actuator(api, clock, docker_attempts=3, docker_backoff=1, docker_backoff_max=10)
    act.jitter = lambda: 0.0
    act.handle(recorded("firing_migrate.json"))
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_handle_names_the_services_it_was_given():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock)
    with pytest.raises(ValueError, match="demo_api"):
        act.handle(recorded("grouped_migrate.json"))


def test_the_receivers_clock_is_utc():
    now = utc_now()
    assert now.utcoffset() == timedelta(0)


def test_the_time_recorded_in_the_labels_is_utc_whatever_the_hosts_zone(host_in_tokyo):
    api, clock = example_api(replicas=2), Clock()
    act, _ = actuator(api, clock)
    act.handle(recorded("firing_scale_up.json"))
    (update,) = api.updates
    assert update["labels"]["swarmguard.last-action-at"] == "2026-11-27T10:00:31.123456Z"


def test_the_recorded_reason_is_cut_to_500_characters():
    api, clock = example_api(), Clock()
    api.node_list[1]["Description"]["Hostname"] = "w" * 250  # worker-1
    api.after_update = swarm_moves_task_to(WORKER_2)
    act, _ = actuator(api, clock)
    act.handle(recorded("firing_migrate.json"))
    reason = api.updates[0]["labels"]["swarmguard.last-action-reason"]
    assert len(reason) == 500
    assert reason.startswith("Migrating demo_web off " + "w" * 250)


# -- asking Prometheus first (receiver/confirmation.py) ------------------------------------

MIGRATE_FIRING = {"alertname": "SwarmGuardMigrate", "service": "demo_web", "task_id": TASK,
                  "node_id": WORKER_1}


def asked_for(seconds, clock, answer):
    """firing_alerts: Prometheus takes `seconds` to give `answer` (FiringAlerts, or an
    exception to raise)."""
    def firing_alerts():
        clock.mono += seconds
        if isinstance(answer, Exception):
            raise answer
        return answer
    return firing_alerts


def confirmation_seconds(metrics):
    return (metrics.registry.get_sample_value("swarmguard_confirmation_duration_seconds_count"),
            metrics.registry.get_sample_value("swarmguard_confirmation_duration_seconds_sum"))


def test_while_prometheus_cannot_say_each_alert_is_skipped_saying_why_and_docker_is_not_read(
        caplog):
    api, clock = example_api(), Clock()
    why = "http://prometheus:9090/api/v1/alerts unreachable (ConnectTimeout)"
    act, metrics = actuator(api, clock, firing_alerts=asked_for(0.25, clock, Unanswered(why)))
    alerts = [hot(TASK, WORKER_1, clock)]
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle(alerts)
    assert outcome.result == R.SKIPPED
    assert outcome.decision.alert is alerts[0]
    assert (outcome.decision.reason, outcome.decision.why) == (
        R.PROMETHEUS_UNREACHABLE, f"cannot confirm it with Prometheus: {why}")
    assert f"cannot confirm alerts with Prometheus, acting on none: {why}" in caplog.messages
    assert confirmation_seconds(metrics) == (1, pytest.approx(0.25))  # how long it took to fail
    assert api.calls == []


def test_an_alert_no_prometheus_fires_is_skipped_saying_so_and_docker_is_not_read():
    api, clock = example_api(), Clock()
    act, metrics = actuator(api, clock, firing_alerts=asked_for(
        0.25, clock, FiringAlerts.of([{**MIGRATE_FIRING, "node_id": WORKER_2}])))
    alerts = [hot(TASK, WORKER_1, clock)]
    (outcome,) = act.handle(alerts)
    assert outcome.result == R.SKIPPED
    assert outcome.decision.alert is alerts[0]
    assert (outcome.decision.reason, outcome.decision.why) == (
        R.UNCONFIRMED, "no Prometheus fires this alert with these labels")
    assert confirmation_seconds(metrics) == (1, pytest.approx(0.25))
    assert api.calls == []


def test_a_node_is_believed_hot_only_for_a_task_prometheus_fires_on_that_very_node():
    api, clock = example_api(), Clock()
    api.after_update = swarm_moves_task_to(WORKER_2)
    other = {"alertname": "SwarmGuardMigrate", "service": "demo_api"}
    # Hot, as remembered: demo_api's task X on worker-3, and its task Y on worker-2, which
    # Prometheus fires for on worker-3 only (the memory of worker-2 is out of date).
    x, y = "x" * 25, "y" * 25
    firing = FiringAlerts.of([MIGRATE_FIRING, {**other, "task_id": x, "node_id": WORKER_3},
                              {**other, "task_id": y, "node_id": WORKER_3}])
    act, _ = actuator(api, clock, firing_alerts=lambda: firing)
    act.storm.observe([Alert("SwarmGuardMigrate", "firing",
                             MappingProxyType({**other, "task_id": task, "node_id": node}),
                             MappingProxyType({}), clock.now, None, task)
                       for task, node in [(x, WORKER_3), (y, WORKER_2)]])
    (outcome,) = act.handle([hot(TASK, WORKER_1, clock)])
    assert outcome.result == R.SUCCESS
    (update,) = api.updates
    assert update["task_template"]["Placement"]["Constraints"] == [
        "node.role==worker", "node.hostname!=worker-1", "node.hostname!=worker-3"]


# -- futile moves ------------------------------------------------------------------------------

def hot(task_id, node_id, clock, fp="fp"):
    """A SwarmGuardMigrate for demo_web's task on node, begun 2 s before the clock's now."""
    return Alert("SwarmGuardMigrate", "firing",
                 MappingProxyType({"alertname": "SwarmGuardMigrate", "service": "demo_web",
                                   "task_id": task_id, "node_id": node_id}),
                 MappingProxyType({}), clock.now - timedelta(seconds=2), None, fp)


def swarm_replaces_task_on(node_id, clock):
    """after_update hook: as swarm_moves_task_to, the replacement created by Swarm's manager
    50 ms after the update (only for updates that move: a labels-only one moves nothing)."""
    def hook(api, service_id, kwargs):
        if kwargs["labels"].get("swarmguard.last-action-at") != format_time(clock.now):
            return
        running = next(t for t in api.task_list
                       if t["ServiceID"] == service_id and t["DesiredState"] == "running")
        api.move_task(running["ID"], node_id,
                      created=format_time(clock.now + timedelta(milliseconds=50)))
    return hook


def running_task(api):
    return next(t for t in api.task_list if t["DesiredState"] == "running")


def test_a_task_hot_wherever_it_runs_is_moved_once_then_held_for_the_window(caplog):
    api, clock = example_api(), Clock()
    api.after_update = swarm_replaces_task_on(WORKER_2, clock)
    act, metrics = actuator(api, clock)
    (outcome,) = act.handle([hot(TASK, WORKER_1, clock)])
    assert outcome.result == R.SUCCESS
    moved = running_task(api)["ID"]

    # 25 s later (start-up grace and the rule's `for:`) its replacement is hot on worker-2.
    clock.now += timedelta(seconds=25)
    found_at = clock.now
    version = api.services[WEB_ID]["Version"]["Index"]
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle([hot(moved, WORKER_2, clock)])
    assert outcome.result == R.SKIPPED
    assert outcome.decision.reason == R.FUTILE
    hold = api.updates[-1]
    assert hold["version"] == version  # one compare-and-swap on the version just read
    assert hold["labels"]["swarmguard.futile-until"] == format_time(
        found_at + timedelta(seconds=600))
    before = api.services[WEB_ID]["PreviousSpec"]
    assert hold["task_template"] == before["TaskTemplate"]  # labels only: nothing moves
    assert hold["labels"]["swarmguard.last-action-at"] == before["Labels"][
        "swarmguard.last-action-at"]  # the history stays
    assert running_task(api)["ID"] == moved
    assert any(m.startswith("Holding demo_web's migrations until") for m in caplog.messages)

    # Held for the window, judged by every receiver from the labels alone: a restarted
    # one (a new Actuator) neither moves it nor writes again.
    for restarted in (False, True):
        clock.now += timedelta(seconds=200)
        if restarted:
            act, _ = actuator(api, clock)
        updates = len(api.updates)
        (outcome,) = act.handle([hot(moved, WORKER_2, clock)])
        assert (outcome.result, outcome.decision.reason) == (R.SKIPPED, R.FUTILE)
        assert len(api.updates) == updates

    # Once the window has passed, it is moved once more.
    clock.now = found_at + timedelta(seconds=601)
    (outcome,) = act.handle([hot(moved, WORKER_2, clock)])
    assert outcome.result == R.SUCCESS
    assert running_task(api)["ID"] != moved


def moved_off_worker_1_20_s_ago():
    """demo_web migrated off worker-1 20 s ago: (api, clock, its replacement on worker-2)."""
    api, clock = example_api(labels={"swarmguard.last-action": "migrate"}), Clock()
    moved_at = format_time(clock.now - timedelta(seconds=20))
    api.services[WEB_ID]["Spec"]["Labels"].update({"swarmguard.last-action-at": moved_at,
                                                    "swarmguard.last-migrate-at": moved_at})
    moved = api.move_task(TASK, WORKER_2, created=format_time(clock.now - timedelta(seconds=19)))
    return api, clock, moved


@pytest.mark.parametrize("failure", [out_of_sequence(), api_error(500, "rpc error: internal"),
                                     requests.exceptions.ConnectionError("refused")])
def test_a_hold_that_cannot_be_written_changes_nothing_and_is_reported(failure, caplog):
    api, clock, moved = moved_off_worker_1_20_s_ago()
    stored = api.services[WEB_ID]["Spec"]["Labels"].copy()
    api.update_failures = [failure]
    act, metrics = actuator(api, clock)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle([hot(moved, WORKER_2, clock)])
    assert (outcome.result, outcome.decision.reason) == (R.SKIPPED, R.FUTILE)
    assert len(api.updates) == 1  # tried once; the alert's next resend tries again
    assert api.services[WEB_ID]["Spec"]["Labels"] == stored
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "record"}) == 1
    assert f"docker record failed: {failure}" in caplog.messages


def test_a_futile_hold_passes_the_write_gate_under_its_services_name():
    api, clock, moved = moved_off_worker_1_20_s_ago()
    act, _ = actuator(api, clock)
    (outcome,) = act.handle([hot(moved, WORKER_2, clock)])
    assert outcome.decision.reason == R.FUTILE and len(api.updates) == 1
    # A shutdown now knows this work wrote (the Dispatcher reports it unwatched, not dropped
    # before any write).
    assert act.gate.close() == {"demo_web"}


# -- past the shutdown deadline (receiver/gate.py): nothing is announced nor written ---------

def test_past_the_shutdown_deadline_an_action_is_neither_announced_nor_made():
    from receiver.events import EventLog
    api, clock = example_api(), Clock()
    events = EventLog(16, lambda: clock.now)
    act, _ = actuator(api, clock, events=events)
    act.gate.close()
    with pytest.raises(ShuttingDown):
        act.handle(recorded("firing_migrate.json"))
    assert api.updates == [] and acts(events) == []
    assert act.storm.view().moves == ()  # its budget given back


def test_past_the_shutdown_deadline_a_futile_hold_is_not_written():
    api, clock, moved = moved_off_worker_1_20_s_ago()
    act, _ = actuator(api, clock)
    act.gate.close()
    with pytest.raises(ShuttingDown):
        act.handle([hot(moved, WORKER_2, clock)])
    assert api.updates == []


def test_a_rollback_seen_before_the_shutdown_deadline_is_not_recorded_after_it():
    api, clock = example_api(), Clock()
    api.after_update = swarm_rolls_back_to("rollback_completed")
    act, _ = actuator(api, clock)

    def sleep(seconds):
        clock.sleep(seconds)
        if len(clock.sleeps) == 2:  # the migration ended rolled back; its record waits
            act.gate.close()
    act.sleep = sleep
    with pytest.raises(ShuttingDown, match="^shutting down: the watch is abandoned$"):
        act.handle(recorded("firing_migrate.json"))
    assert len(api.updates) == 1  # the migration; no record of its rollback


@pytest.mark.parametrize("write", [
    pytest.param(lambda act, api: act.update_node(WORKER_1, pause), id="node update"),
    pytest.param(lambda act, api: act.move_tasks(planned_drain(api), DRAIN_REASON), id="move"),
    pytest.param(lambda act, api: act.lift_exclusion("demo_web", "node.hostname!=worker-1"),
                 id="lift")])
def test_past_the_shutdown_deadline_no_maintenance_write_is_made(write):
    api, clock = excluded_api(), Clock()
    act, _ = actuator(api, clock)
    act.gate.close()
    with pytest.raises(ShuttingDown):
        write(act, api)
    assert api.updates == [] and api.node_updates == []


def test_a_dry_run_holds_nothing_and_says_what_it_would_hold(caplog):
    api, clock = example_api(labels={"swarmguard.last-action": "migrate"}), Clock()
    moved_at = format_time(clock.now - timedelta(seconds=20))
    api.services[WEB_ID]["Spec"]["Labels"].update({"swarmguard.last-action-at": moved_at,
                                                    "swarmguard.last-migrate-at": moved_at})
    moved = api.move_task(TASK, WORKER_2, created=format_time(clock.now - timedelta(seconds=19)))
    act, _ = actuator(api, clock, dry_run=True)
    with caplog.at_level(logging.INFO, logger="receiver"):
        (outcome,) = act.handle([hot(moved, WORKER_2, clock)])
    assert outcome.decision.reason == R.FUTILE
    assert api.updates == []
    assert any(m.startswith("**DRY-RUN**: would hold demo_web's migrations until")
               for m in caplog.messages)


# -- maintenance moves (receiver/maintainer.py plans them; the actuator writes) ---------------

DRAIN_REASON = ("Moving demo_web off worker-1 (drain): start-first, excluding "
                "node.hostname!=worker-1")


def planned_drain(api):
    """The drain's move of demo_web's tasks off worker-1, planned on a fresh read."""
    snap = read_snapshot(api, ["demo_web"])
    return M.drain_move(snap, snap.service("demo_web"), snap.node(WORKER_1))


def web_task(api, task_id):
    return next(t for t in api.task_list if t["ID"] == task_id)


def at_look(*steps):
    """before_tasks hook: at the n-th look at the tasks (from 1), steps[n - 1](api), if
    there is one and it is not None."""
    looks = []

    def hook(api):
        looks.append(True)
        if len(looks) <= len(steps) and steps[len(looks) - 1]:
            steps[len(looks) - 1](api)
    return hook


def tasks_looks(api):
    return len([c for c in api.calls if c[0] == "tasks"])


@pytest.mark.parametrize("kind", [M.DRAIN, M.REBALANCE])
def test_a_move_is_one_compare_and_swap_start_first_update_recorded_in_the_labels(kind):
    api, clock = example_api(), Clock()
    move = dataclasses.replace(planned_drain(api), kind=kind)
    api.after_update = swarm_moves_task_to(WORKER_2)
    act, _ = actuator(api, clock, watch_interval=0.5)
    at = clock.now

    result, detail, seconds = act.move_tasks(move, DRAIN_REASON)

    assert (result, detail, seconds) == (R.SUCCESS, "1 task(s) running elsewhere (w2b8c6e4g2i0)",
                                         0.5)
    update = api.updates[0]
    assert update["version"] == 100  # the Version.Index read with the spec it replaces
    assert update["update_config"]["Order"] == "start-first"
    assert update["update_config"]["FailureAction"] == "rollback"
    assert update["update_config"]["Monitor"] == 5000000000  # the rest is kept
    assert update["rollback_config"]["Order"] == "start-first"
    assert update["task_template"]["Placement"]["Constraints"] == [
        "node.role==worker", "node.hostname!=worker-1"]
    labels = update["labels"]
    assert labels["swarmguard.last-action"] == kind
    assert labels["swarmguard.last-action-at"] == format_time(at)
    assert labels["swarmguard.last-action-reason"] == DRAIN_REASON
    assert labels["swarmguard.placement-exclusion"] == "node.hostname!=worker-1"


def test_once_the_move_is_done_its_exclusion_is_lifted_and_its_record_kept():
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    api.after_update = swarm_moves_task_to(WORKER_2)
    act, _ = actuator(api, clock)

    assert act.move_tasks(move, DRAIN_REASON)[0] == R.SUCCESS

    moved, lifted = api.updates
    assert lifted["version"] == 101  # read again after the move's own update
    assert lifted["task_template"]["Placement"]["Constraints"] == ["node.role==worker"]
    assert "swarmguard.placement-exclusion" not in lifted["labels"]
    assert lifted["labels"]["swarmguard.last-action"] == "drain"
    assert lifted["labels"]["swarmguard.last-action-reason"] == DRAIN_REASON
    assert lifted["update_config"] == moved["update_config"]  # the rest as the move left it


@pytest.mark.parametrize("failure", [out_of_sequence(),
                                     api_error(404, "service 7f3kq2m9x1v5b8n4c6z0l2j4h not found")])
def test_a_move_that_loses_the_compare_and_swap_writes_nothing_and_is_a_conflict(failure, caplog):
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    stored = copy.deepcopy(api.services[WEB_ID])
    looks = tasks_looks(api)
    api.update_failures = [failure]
    act, metrics = actuator(api, clock)

    with caplog.at_level(logging.INFO, logger="receiver"):
        outcome = act.move_tasks(move, DRAIN_REASON)

    assert outcome == (A.CONFLICT, failure.explanation, 0.0)
    assert len(api.updates) == 1 and api.services[WEB_ID] == stored
    assert tasks_looks(api) == looks  # nothing to watch: planned again
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update_conflict"}) == 1
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) is None
    assert (f"demo_web changed under us ({failure.explanation}); re-reading and deciding again"
            in caplog.messages)


def test_a_move_docker_refuses_fails_at_once_and_says_why(caplog):
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    refused = api_error(400, "invalid placement constraint")
    looks = tasks_looks(api)

    def slow_refusal(service, version, **kwargs):
        clock.mono += 0.25
        raise refused
    api.update_service = slow_refusal
    act, metrics = actuator(api, clock)

    with caplog.at_level(logging.INFO, logger="receiver"):
        outcome = act.move_tasks(move, DRAIN_REASON)

    assert outcome == (R.FAILED, f"docker update failed: {refused}", 0.25)
    assert tasks_looks(api) == looks
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == 1
    assert f"docker update failed: {refused}" in caplog.messages


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("read timed out"),
                                     requests.exceptions.ConnectionError("connection reset"),
                                     *UNREADABLE])
def test_a_move_whose_update_call_failed_in_transit_is_watched_for_it_may_have_landed(
        failure, caplog):
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    api.after_update = swarm_moves_task_to(WORKER_2)
    real_update = api.update_service
    calls = []

    def the_first_lands_then_fails(service, version, **kwargs):
        calls.append(True)
        real_update(service, version, **kwargs)
        if len(calls) == 1:
            raise failure
    api.update_service = the_first_lands_then_fails
    act, metrics = actuator(api, clock)

    with caplog.at_level(logging.INFO, logger="receiver"):
        result, _, _ = act.move_tasks(move, DRAIN_REASON)

    assert result == R.SUCCESS
    assert len(api.updates) == 2  # the move, made once, then the lift
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == 1
    assert f"docker update failed: {failure}" in caplog.messages


def test_a_move_whose_update_failed_in_transit_and_never_landed_times_out():
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    api.update_failures = [requests.exceptions.ConnectionError("connection refused")]
    act, _ = actuator(api, clock, migration_timeout=3, watch_interval=1)
    assert act.move_tasks(move, DRAIN_REASON) == (R.TIMEOUT, "not settled within 3 s", 3)
    assert len(api.updates) == 1  # no second try, no lift


def test_a_move_is_not_done_while_a_task_is_still_meant_to_run_on_the_node_it_leaves():
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    # Start-first: the new task runs at once; the old one is told to stop at the third look.
    api.after_update = lambda api, sid, kw: swarm_starts(api, NEW_TASK, WORKER_3)
    api.before_tasks = at_look(None, None,
                               lambda api: web_task(api, TASK).update(DesiredState="shutdown"))
    act, _ = actuator(api, clock, watch_interval=0.5)
    assert act.move_tasks(move, DRAIN_REASON) == (
        R.SUCCESS, "1 task(s) running elsewhere (w3c7e5g3i1k9)", 1.5)


def test_a_move_is_not_done_until_the_services_replicas_run_elsewhere():
    api = example_api(replicas=2)
    api.task_list.append(task_dict(TASK_2, WEB_ID, WORKER_2, slot=2))
    clock = Clock()
    move = planned_drain(api)
    # The old task is stopped while its replacement is still starting: one of two runs.
    api.after_update = lambda api, sid, kw: swarm_starts(api, NEW_TASK, WORKER_3,
                                                         state="starting", old_desired="shutdown")
    api.before_tasks = at_look(
        None, None, lambda api: web_task(api, NEW_TASK)["Status"].update(State="running"))
    act, _ = actuator(api, clock, watch_interval=0.5)
    result, _, seconds = act.move_tasks(move, DRAIN_REASON)
    assert (result, seconds) == (R.SUCCESS, 1.5)


def test_a_move_of_a_service_scaled_to_zero_is_done_once_nothing_is_left_on_the_node():
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    move = dataclasses.replace(move, service=dataclasses.replace(move.service, replicas=0))
    api.after_update = lambda api, sid, kw: web_task(api, TASK).update(DesiredState="shutdown")
    act, _ = actuator(api, clock, watch_interval=0.5)
    assert act.move_tasks(move, DRAIN_REASON) == (R.SUCCESS, "0 task(s) running elsewhere ()", 0.5)


@pytest.mark.parametrize("state, result, detail", [
    ("rollback_started", R.ROLLED_BACK, "Swarm rolled the update back (state rollback_started)"),
    ("paused", R.FAILED, "Swarm paused the update")])
def test_a_move_swarm_rolls_back_or_pauses_ends_so_and_keeps_its_exclusion(state, result, detail):
    api, clock = example_api(), Clock()
    move = planned_drain(api)

    def swarm_gives_up(api, sid, kw):
        api.services[sid]["UpdateStatus"] = {"State": state}
    api.after_update = swarm_gives_up
    act, _ = actuator(api, clock, watch_interval=0.5)
    assert act.move_tasks(move, DRAIN_REASON) == (result, detail, 0.5)
    assert len(api.updates) == 1  # no lift: the maintainer finds what is left


def test_a_service_removed_during_its_move_fails_the_move_with_that_sentence():
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    api.after_update = lambda api, sid, kw: api.services.pop(sid)
    act, _ = actuator(api, clock, watch_interval=0.5)
    assert act.move_tasks(move, DRAIN_REASON) == (
        R.FAILED, "demo_web was removed during the move", 0.5)
    assert len(api.updates) == 1


@pytest.mark.parametrize("hiccup", [requests.exceptions.ConnectionError("connection reset"),
                                    *UNREADABLE])
def test_a_docker_hiccup_while_a_move_is_watched_is_counted_and_the_watch_goes_on(hiccup, caplog):
    api, clock = example_api(), Clock()
    move = planned_drain(api)

    def fails(api):
        raise hiccup
    api.before_tasks = at_look(fails, lambda api: api.move_task(TASK, WORKER_2))
    act, metrics = actuator(api, clock, watch_interval=0.5)
    with caplog.at_level(logging.INFO, logger="receiver"):
        result, _, seconds = act.move_tasks(move, DRAIN_REASON)
    assert (result, seconds) == (R.SUCCESS, 1.0)
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "watch"}) == 1
    assert f"docker watch failed: {hiccup}" in caplog.messages


@pytest.mark.parametrize("on_the_node, timeout", [(1, 5), (2, 10)])
def test_a_move_is_watched_for_the_migration_timeout_per_task_it_moves(on_the_node, timeout):
    api = example_api(replicas=on_the_node)
    if on_the_node == 2:
        api.task_list.append(task_dict(TASK_2, WEB_ID, WORKER_1, slot=2))
    clock = Clock()
    move = planned_drain(api)
    assert len(move.tasks) == on_the_node
    looks = tasks_looks(api)
    act, _ = actuator(api, clock, migration_timeout=5, watch_interval=1)

    assert act.move_tasks(move, DRAIN_REASON) == (
        R.TIMEOUT, f"not settled within {timeout} s", timeout)
    assert tasks_looks(api) - looks == timeout  # one look a second, none after the timeout
    assert len(api.updates) == 1  # not done: the exclusion stays


def test_the_storm_hears_which_node_a_moved_task_lands_on_and_of_no_other():
    api, clock = example_api(), Clock()
    move = planned_drain(api)
    act, _ = actuator(api, clock, watch_interval=0.5)
    act.storm.begin("demo_web", move.kind, WORKER_1, move.destinations, maintenance=True)
    heard = []
    real_landed = act.storm.landed
    act.storm.landed = lambda service, node_id: (heard.append((service, node_id)),
                                                 real_landed(service, node_id))

    def swarm_assigns(api, sid, kw):
        # The replacement is assigned to worker-3 and starts; a task not yet given a node
        # and one that turned up on the node being left are no arrivals anywhere.
        swarm_starts(api, NEW_TASK, WORKER_3, state="starting")
        api.task_list += [task_dict("pending" + "0" * 18, WEB_ID, "", slot=3),
                          task_dict("stray" + "0" * 20, WEB_ID, WORKER_1, slot=4)]
    api.after_update = swarm_assigns

    def settled(api):
        web_task(api, NEW_TASK)["Status"]["State"] = "running"
        api.task_list[:] = [t for t in api.task_list if t["ID"] in (TASK, NEW_TASK)]
        web_task(api, TASK)["DesiredState"] = "shutdown"
    api.before_tasks = at_look(None, settled)

    assert act.move_tasks(move, DRAIN_REASON)[0] == R.SUCCESS
    assert heard == [("demo_web", WORKER_3)] * 2
    (in_flight,) = act.storm.view().moves
    assert in_flight.destinations == {WORKER_3}


# -- lifting an exclusion ---------------------------------------------------------------------

EXCLUDING_WORKER_1 = {"swarmguard.placement-exclusion": "node.hostname!=worker-1"}


def excluded_api(labels=EXCLUDING_WORKER_1):
    """demo_web, its placement still excluding worker-1 after a move."""
    return example_api(constraints=["node.role==worker", "node.hostname!=worker-1"],
                       labels=labels)


def test_lifting_the_exclusion_writes_the_users_constraints_as_stored_and_drops_the_label():
    api, clock = excluded_api({**EXCLUDING_WORKER_1, "team": "web"}), Clock()
    act, _ = actuator(api, clock)

    assert act.lift_exclusion("demo_web", "node.hostname!=worker-1") is True

    (lift,) = api.updates
    assert lift["version"] == 100
    assert lift["task_template"]["Placement"]["Constraints"] == ["node.role==worker"]
    assert lift["labels"] == {"swarmguard.enable": "true", "team": "web"}
    # The spec as stored, without the defaults Docker would fill in.
    assert "StopGracePeriod" not in lift["task_template"]["ContainerSpec"]
    assert lift["update_config"]["Order"] == "stop-first"  # nothing else changes


@pytest.mark.parametrize("labels, exclusion", [
    ({"swarmguard.placement-exclusion": "node.hostname!=worker-3"}, "node.hostname!=worker-1"),
    ({}, "node.hostname!=worker-1"),
    (EXCLUDING_WORKER_1, ""),
])
def test_an_exclusion_that_is_not_the_moves_is_left_alone(labels, exclusion):
    # A later migration's own exclusion, none left, or a move that excluded nothing.
    api, clock = excluded_api(labels), Clock()
    act, _ = actuator(api, clock)
    assert act.lift_exclusion("demo_web", exclusion) is True
    assert api.updates == []


def test_a_service_gone_has_no_exclusion_left_to_lift():
    api, clock = excluded_api(), Clock()
    act, _ = actuator(api, clock)
    assert act.lift_exclusion("demo_gone", "node.hostname!=worker-1") is True
    api.update_failures = [api_error(404, "service demo_web not found")]  # removed meanwhile
    assert act.lift_exclusion("demo_web", "node.hostname!=worker-1") is True
    assert len(api.updates) == 1


def test_a_lift_that_races_another_update_is_read_again_and_retried_with_backoff():
    api, clock = excluded_api(), Clock()
    api.update_failures = [out_of_sequence(), out_of_sequence()]
    act, metrics = actuator(api, clock, docker_attempts=3, docker_backoff=1,
                            docker_backoff_max=10)
    assert act.lift_exclusion("demo_web", "node.hostname!=worker-1") is True
    assert len(api.updates) == 3
    assert clock.sleeps == [1, 2]  # none before the first try, then exponential
    assert "swarmguard.placement-exclusion" not in api.services[WEB_ID]["Spec"]["Labels"]


def test_a_lift_that_keeps_racing_is_given_up_after_the_docker_attempts():
    api, clock = excluded_api(), Clock()
    api.update_failures = [out_of_sequence()] * 10
    act, metrics = actuator(api, clock, docker_attempts=3, docker_backoff=1,
                            docker_backoff_max=10)
    assert act.lift_exclusion("demo_web", "node.hostname!=worker-1") is False
    assert len(api.updates) == 3
    assert clock.sleeps == [1, 2]
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "lift"}) is None  # a race, not an error


def test_a_lift_docker_refuses_is_given_up_at_once_counted_and_logged(caplog):
    api, clock = excluded_api(), Clock()
    refused = api_error(500, "rpc error: code = Internal")
    api.update_failures = [refused]
    act, metrics = actuator(api, clock, docker_attempts=3)
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert act.lift_exclusion("demo_web", "node.hostname!=worker-1") is False
    assert len(api.updates) == 1 and clock.sleeps == []
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "lift"}) == 1
    assert f"docker lift failed: {refused}" in caplog.messages


@pytest.mark.parametrize("unreadable", UNREADABLE)
def test_a_lift_whose_answer_cannot_be_read_is_read_again_which_shows_it_landed(unreadable):
    api, clock = excluded_api(), Clock()
    api.update_failures = [Landed(unreadable)]
    act, metrics = actuator(api, clock, docker_attempts=3)
    assert act.lift_exclusion("demo_web", "node.hostname!=worker-1") is True
    assert len(api.updates) == 1
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "lift"}) == 1


@pytest.mark.parametrize("failures, lifted", [(1, True), (3, False)])
def test_an_unreachable_docker_while_lifting_is_counted_and_tried_again(failures, lifted, caplog):
    api, clock = excluded_api(), Clock()
    api.update_failures = [requests.exceptions.ConnectionError("connection refused")] * failures
    act, metrics = actuator(api, clock, docker_attempts=3)
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert act.lift_exclusion("demo_web", "node.hostname!=worker-1") is lifted
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "lift"}) == failures
    assert "docker lift failed: connection refused" in caplog.messages


# -- node updates -----------------------------------------------------------------------------

def pause(spec):
    spec["Availability"] = "pause"
    spec["Labels"]["swarmguard.drain"] = "moving"
    return spec


def test_a_node_update_sends_the_changed_spec_with_the_version_read():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock)
    seen = []

    sent = act.update_node(WORKER_1, lambda spec: seen.append(copy.deepcopy(spec)) or pause(spec),
                           expect=lambda node: None)

    assert seen == [{"Labels": {}, "Role": "worker", "Availability": "active"}]
    assert sent == {"Labels": {"swarmguard.drain": "moving"}, "Role": "worker",
                    "Availability": "pause"}
    assert api.node_updates == [{"version": 9, "node_spec": sent}]
    assert api.node(WORKER_1)["Spec"] == sent


def test_a_node_not_as_expected_is_not_updated():
    api, clock = example_api(), Clock()
    act, _ = actuator(api, clock)
    changed = []
    with pytest.raises(A.NodeChanged, match="^worker-1 is no longer paused$"):
        act.update_node(WORKER_1, lambda spec: changed.append(spec) or spec,
                        expect=lambda node: f"{node['Description']['Hostname']} is no longer "
                                            f"paused")
    assert changed == [] and api.node_updates == []


def test_a_node_changed_between_read_and_write_is_reported_as_such():
    api, clock = example_api(), Clock()
    api.update_failures = [out_of_sequence()]
    act, _ = actuator(api, clock)
    with pytest.raises(A.NodeChanged) as raised:
        act.update_node(WORKER_1, pause)
    assert str(raised.value) == ("the node changed while it was being updated (rpc error: "
                                 "code = Unknown desc = update out of sequence)")
    assert api.node(WORKER_1)["Spec"]["Availability"] == "active"


@pytest.mark.parametrize("failure", [
    pytest.param(api_error(500, "rpc error: code = DeadlineExceeded"), id="server error"),
    pytest.param(requests.exceptions.ReadTimeout("read timed out"), id="timeout"),
    *UNREADABLE])
def test_a_node_update_that_landed_despite_an_error_is_done_and_the_error_counted(failure, caplog):
    api, clock = example_api(), Clock()
    api.update_failures = [Landed(failure)]
    act, metrics = actuator(api, clock)
    with caplog.at_level(logging.INFO, logger="receiver"):
        sent = act.update_node(WORKER_1, pause)
    assert api.node(WORKER_1)["Spec"] == sent
    assert len(api.node_updates) == 1
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "node_update"}) == 1
    assert f"docker node_update failed: {failure}" in caplog.messages
    assert f"The update of node {WORKER_1} did land despite the error" in caplog.messages


def node_update_failing_with(failure):
    """(what update_node raised, the fake) when Docker answers the node's update with
    `failure`."""
    api, clock = example_api(), Clock()
    api.update_failures = [failure]
    act, _ = actuator(api, clock)
    with pytest.raises(type(failure)) as raised:
        act.update_node(WORKER_1, pause)
    return raised.value, api


@pytest.mark.parametrize("failure", [
    pytest.param(requests.exceptions.ReadTimeout("read timed out"), id="timeout"), *UNREADABLE])
def test_a_node_update_that_failed_and_did_not_land_raises_dockers_error(failure):
    raised, api = node_update_failing_with(failure)
    assert raised is failure
    assert api.node(WORKER_1)["Spec"]["Availability"] == "active"


def read_back_fails(api):
    """Our update lands, its answer times out, and the node cannot be read again."""
    api.update_failures = [Landed(requests.exceptions.ReadTimeout("read timed out"))]
    real_inspect = api.inspect_node

    def inspect(node_id):
        if any(c[0] == "update_node" for c in api.calls):
            raise requests.exceptions.ConnectionError("connection refused")
        return real_inspect(node_id)
    api.inspect_node = inspect
    return pause


def another_update_meanwhile(api):
    """Ours times out; someone else's update of the node lands instead."""
    real_update = api.update_node

    def update(node_id, version, node_spec=None):
        real_update(node_id, version, node_spec={**node_spec, "Availability": "drain"})
        raise requests.exceptions.ReadTimeout("read timed out")
    api.update_node = update
    return pause


def nothing_to_change(api):
    """Ours times out unmade, and the node already had the spec it sends."""
    api.update_failures = [requests.exceptions.ReadTimeout("read timed out")]
    return lambda spec: spec


@pytest.mark.parametrize("situation", [read_back_fails, another_update_meanwhile,
                                       nothing_to_change])
def test_a_failed_node_update_is_done_only_if_the_node_holds_its_spec_in_a_newer_version(
        situation):
    api, clock = example_api(), Clock()
    change = situation(api)
    act, metrics = actuator(api, clock)
    with pytest.raises(requests.exceptions.ReadTimeout):
        act.update_node(WORKER_1, change)
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "node_update"}) is None  # the caller's


def test_a_node_update_docker_refuses_is_not_read_back():
    refused = api_error(400, "invalid availability")
    raised, api = node_update_failing_with(refused)
    assert raised is refused
    assert [c[0] for c in api.calls] == ["inspect_node", "update_node"]


def test_other_docker_errors_of_a_node_update_are_the_callers_to_handle():
    failure = api_error(500, "rpc error: code = Internal")
    raised, _ = node_update_failing_with(failure)
    assert raised is failure


def test_a_moves_arrival_is_the_replacements_node_not_where_the_other_replicas_run():
    api = FakeDockerAPI(
        services=[service_dict("demo_web", WEB_ID, replicas=2, constraints=["node.role==worker"])],
        tasks=[task_dict(TASK, WEB_ID, WORKER_1, slot=1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)],
        nodes=example_nodes())
    move = planned_drain(api)

    def swarm_replaces_on_worker_3(api, service_id, kwargs):
        api.move_task(TASK, WORKER_3)
        api.task_list.insert(0, api.task_list.pop())  # Docker's answer lists it first
    api.after_update = swarm_replaces_on_worker_3
    act, _ = actuator(api, Clock())
    act.storm.begin("demo_web", M.DRAIN, WORKER_1, move.destinations, maintenance=True)

    result, detail, _ = act.move_tasks(move, DRAIN_REASON)

    assert result == "success"
    assert detail == f"2 task(s) running elsewhere ({WORKER_3[:12]})"
    view = act.storm.view()
    assert (view.arriving(WORKER_3), view.arriving(WORKER_2)) == (1, 0)


def test_a_move_whose_update_landed_despite_a_server_error_is_watched_to_its_end(caplog):
    api, clock = example_api(), Clock()
    move = planned_drain(api)

    def lands_then_fails(api, service_id, kwargs):
        api.move_task(TASK, WORKER_2)
        raise docker.errors.APIError("500 Server Error", explanation="rpc error: DeadlineExceeded")
    api.after_update = lands_then_fails
    act, metrics = actuator(api, clock)

    result, detail, _ = act.move_tasks(move, DRAIN_REASON)

    assert result == "success", detail
    assert metrics.registry.get_sample_value("swarmguard_docker_errors_total",
                                             {"operation": "update"}) == 1
    assert "docker update failed: 500 Server Error" in caplog.text
