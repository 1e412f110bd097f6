import dataclasses
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest

from receiver import decisions as D
from receiver import actions
from receiver import reasons as R
from receiver.cluster import build_snapshot
from receiver.config import Settings
from receiver.alerts import Alert
from swarmguard_config.rfc3339 import format_time
from tests.fake_docker_api_client import (MANAGER_1, TASK, TASK_2, WEB_ID, WORKER_1, WORKER_2, WORKER_3,
                              example_nodes, node_dict, service_dict, task_dict)

NOW = datetime(2026, 11, 27, 10, 5, 0, tzinfo=timezone.utc)


def policy(**settings) -> D.Policy:
    """The policy of a receiver with these settings (the rest at their defaults)."""
    return D.Policy.from_settings(Settings(token="t", **settings))


POLICY = policy()
NAMES = {"migrate": "SwarmGuardMigrate", "scale_up": "SwarmGuardScaleUp",
         "scale_down": "SwarmGuardScaleDown"}


def alert(kind="migrate", ago=30, task=TASK, node=WORKER_1, service="demo_web",
          status="firing", annotations=None):
    labels = {"alertname": NAMES[kind], "service": service, "severity": "warning"}
    if kind == "migrate":
        labels.update(task_id=task, node_id=node)
    return Alert(NAMES[kind], status, MappingProxyType(labels),
                 MappingProxyType(annotations or {}), NOW - timedelta(seconds=ago), None,
                 "fp")


def world(service=None, tasks=None, nodes=None):
    service = service or service_dict("demo_web", WEB_ID, constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1)] if tasks is None else tasks
    return build_snapshot([service] if service != "none" else [], tasks,
                          nodes if nodes is not None else example_nodes())


def history(kind, ago, extra=None):
    """Labels SwarmGuard leaves after a `kind` action `ago` seconds before NOW."""
    stamp = format_time(NOW - timedelta(seconds=ago))
    key = {"migrate": "swarmguard.last-migrate-at", "scale_up": "swarmguard.last-scale-up-at",
           "scale_down": "swarmguard.last-scale-down-at"}[kind]
    return {"swarmguard.last-action": kind, "swarmguard.last-action-at": stamp, key: stamp,
            **(extra or {})}


def one(a, snap, policy=POLICY):
    (decision,) = D.decide([a], snap, policy, NOW)
    return decision


def test_the_policy_holds_what_deciding_needs_of_the_settings_and_never_the_token():
    settings = Settings(token="secret", cooldown_migrate=7, cooldown_scale_up=8,
                        cooldown_scale_down=9, replicas_min=2, replicas_max=6,
                        max_scale_up_step=3, futile_window=50, dry_run=True)
    assert D.Policy.from_settings(settings) == D.Policy(
        cooldowns={"migrate": 7, "scale_up": 8, "scale_down": 9}, replicas_min=2,
        replicas_max=6, max_scale_up_step=3, futile_window=50)
    assert "secret" not in repr(D.Policy.from_settings(settings))


# -- migrate -------------------------------------------------------------------------------

def test_a_fresh_migrate_alert_moves_the_task_off_its_node():
    a = alert(annotations={"cpu_percent": "91.2", "network_percent": "3.1"})
    action = one(a, world())
    assert isinstance(action, actions.Action)
    assert action.kind == "migrate"
    assert action.constraints == ("node.role==worker", "node.hostname!=worker-1")
    assert action.exclusion == "node.hostname!=worker-1"
    assert action.from_node.id == WORKER_1
    assert action.task.id == TASK
    assert action.sentence == ("Migrating demo_web off worker-1 (cpu 91 %, net 3 %): "
                               "start-first, excluding worker-1")
    assert action.dry_run_sentence.startswith("**DRY-RUN**: would migrate demo_web off worker-1")


def test_an_alert_about_a_task_that_already_moved_is_stale_and_says_where_it_is():
    skip = one(alert(), world(tasks=[task_dict(TASK, WEB_ID, WORKER_2)]))
    assert skip.reason == R.STALE
    assert skip.why == "task t1p4r7s0u3w6 reported on worker-1, running on worker-2"
    assert skip.sentence.startswith("Ignoring SwarmGuardMigrate for demo_web: task")


def test_an_alert_about_a_replaced_task_names_where_its_slot_runs_now():
    tasks = [task_dict(TASK, WEB_ID, WORKER_1, desired="shutdown"),
             task_dict("newtask000001", WEB_ID, WORKER_3, slot=1)]
    skip = one(alert(), world(tasks=tasks))
    assert skip.reason == R.STALE
    assert skip.why == ("task t1p4r7s0u3w6 reported on worker-1, running on worker-3 "
                        "(as task newtask00000)")


def test_an_alert_about_a_task_being_shut_down_is_stale():
    tasks = [task_dict(TASK, WEB_ID, WORKER_1, desired="shutdown")]
    skip = one(alert(), world(tasks=tasks))
    assert skip.reason == R.STALE
    assert "no longer running" in skip.why


def test_an_alert_about_a_task_that_no_longer_exists_is_stale():
    assert one(alert(task="gone"), world()).reason == R.STALE


def test_an_alert_about_a_removed_service_is_stale():
    skip = one(alert(), world(service="none", tasks=[]))
    assert (skip.reason, skip.why) == (R.STALE, "service demo_web no longer exists")


def test_a_service_without_the_opt_in_label_is_never_touched():
    svc = service_dict("demo_web", WEB_ID, enabled=False)
    for kind in NAMES:
        assert one(alert(kind), world(service=svc)).reason == R.NOT_OPTED_IN


def test_opt_in_must_say_true():
    svc = service_dict("demo_web", WEB_ID, enabled=False, labels={"swarmguard.enable": "yes"})
    assert one(alert(), world(service=svc)).reason == R.NOT_OPTED_IN


def test_an_alert_that_began_before_the_last_action_is_stale():
    # A scale up happened 20 s ago; this migrate alert started 30 s ago.
    svc = service_dict("demo_web", WEB_ID, labels=history("scale_up", 20))
    skip = one(alert(ago=30), world(service=svc))
    assert skip.reason == R.STALE
    assert "before the last SwarmGuard action (scale_up at 10:04:40)" in skip.why


def test_an_alert_that_began_after_the_last_action_is_fresh():
    svc = service_dict("demo_web", WEB_ID, labels=history("scale_up", 120))
    assert isinstance(one(alert(ago=30), world(service=svc)), actions.Action)


@pytest.mark.parametrize("kind, cooldown", [("migrate", 60), ("scale_up", 60),
                                            ("scale_down", 180)])
def test_each_kind_waits_for_its_own_cooldown(kind, cooldown):
    # The alert is fresh (it began after the last action) but the cooldown is not over.
    svc = service_dict("demo_web", WEB_ID, replicas=3,
                       labels=history(kind, cooldown - 5))
    skip = one(alert(kind, ago=cooldown - 10), world(service=svc))
    assert skip.reason == R.COOLDOWN
    assert f"(cooldown {cooldown} s)" in skip.why
    svc = service_dict("demo_web", WEB_ID, replicas=3, labels=history(kind, cooldown + 5))
    assert isinstance(one(alert(kind, ago=cooldown), world(service=svc)), actions.Action)


def test_cooldowns_are_kept_per_kind():
    # A scale up 10 s ago does not hold back a migration whose alert began after it.
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=history("scale_up", 10))
    assert isinstance(one(alert("migrate", ago=5), world(service=svc)), actions.Action)


@pytest.mark.parametrize("since_scale_up", [60, 65])  # the cooldown to the second, and past it
def test_a_scale_up_alert_still_firing_after_its_own_cooldown_takes_one_more_step(since_scale_up):
    # "One step per cooldown": the same alert (it began before our scale up), still firing.
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=history("scale_up", since_scale_up))
    action = one(alert("scale_up", ago=300), world(service=svc))
    assert isinstance(action, actions.Action)
    assert action.replicas == 3


def test_a_still_firing_alert_of_another_kind_is_not_a_continuation():
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=history("scale_up", 600))
    assert one(alert("scale_down", ago=900), world(service=svc)).reason == R.STALE


def test_a_service_swarm_is_still_updating_is_left_alone():
    for state in ["updating", "rollback_started", "paused"]:
        svc = service_dict("demo_web", WEB_ID, update_state=state)
        skip = one(alert(), world(service=svc))
        assert skip.reason == R.IN_PROGRESS
        assert state in skip.why


def test_an_alert_about_a_service_a_drain_is_moving_waits_for_the_move_and_stays_in_line():
    from receiver.storm import Move, StormView
    drain = Move("demo_web", "drain", WORKER_1, frozenset({WORKER_2}), maintenance=True)
    a = alert()
    skip = D.decide_one(a, world(), POLICY, NOW, StormView(moves=(drain,)))
    assert skip.alert is a
    assert (skip.reason, skip.why) == (R.IN_PROGRESS,
                                       "a drain is moving demo_web (swarmguard drain)")
    assert not skip.lasting  # the hot task stays in line: a drain passes, the heat may not


def test_a_finished_update_does_not_block():
    svc = service_dict("demo_web", WEB_ID, update_state="completed")
    assert isinstance(one(alert(), world(service=svc)), actions.Action)


def test_global_services_are_not_migrated_or_scaled():
    svc = service_dict("demo_web", WEB_ID, replicas=None)
    assert one(alert(), world(service=svc)).reason == R.UNSUPPORTED
    assert one(alert("scale_up"), world(service=svc)).reason == R.UNSUPPORTED


def test_no_migration_when_no_other_node_is_eligible():
    nodes = [
        node_dict(MANAGER_1, "manager-1", role="manager"),  # excluded by node.role==worker
        node_dict(WORKER_1, "worker-1"),
        node_dict(WORKER_2, "worker-2", availability="drain"),
        node_dict(WORKER_3, "worker-3", state="down"),
    ]
    skip = one(alert(), world(nodes=nodes))
    assert skip.reason == R.NO_ELIGIBLE_NODE
    assert "worker-2 is ready/drain" in skip.why
    assert "worker-3 is down/active" in skip.why
    assert "manager-1 does not meet node.role==worker" in skip.why


def test_the_users_label_constraints_decide_eligibility():
    nodes = example_nodes()
    nodes[2]["Spec"]["Labels"] = {"zone": "a"}  # worker-2
    svc = service_dict("demo_web", WEB_ID, constraints=["node.labels.zone==a"])
    assert isinstance(one(alert(), world(service=svc, nodes=nodes)), actions.Action)
    nodes[2]["Spec"]["Labels"] = {"zone": "b"}
    assert one(alert(), world(service=svc, nodes=nodes)).reason == R.NO_ELIGIBLE_NODE


def test_a_node_excluded_earlier_by_swarmguard_becomes_eligible_again():
    nodes = [node_dict(WORKER_1, "worker-1"), node_dict(WORKER_2, "worker-2")]
    svc = service_dict("demo_web", WEB_ID, constraints=["node.hostname!=worker-2"],
                       labels={"swarmguard.placement-exclusion": "node.hostname!=worker-2"})
    action = one(alert(), world(service=svc, nodes=nodes))
    assert action.constraints == ("node.hostname!=worker-1",)


def test_an_unknown_constraint_is_treated_as_not_met():
    svc = service_dict("demo_web", WEB_ID, constraints=["node.cpus==4"])
    skip = one(alert(), world(service=svc))
    assert skip.reason == R.NO_ELIGIBLE_NODE
    assert "worker-2: unknown constraint key 'node.cpus'" in skip.why


def test_host_mode_ports_rule_out_nodes_already_running_a_replica():
    svc = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                       constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    nodes = example_nodes()[:3]  # manager-1, worker-1, worker-2
    skip = one(alert(), world(service=svc, tasks=tasks, nodes=nodes))
    assert skip.reason == R.NO_ELIGIBLE_NODE
    assert "worker-2 already runs 1 task(s) of demo_web" in skip.why


# -- scale ---------------------------------------------------------------------------------

def test_scale_up_adds_one_replica():
    svc = service_dict("demo_web", WEB_ID, replicas=2)
    action = one(alert("scale_up", annotations={"cpu_percent": "88", "network_percent": "71"}),
                 world(service=svc))
    assert (action.kind, action.replicas) == ("scale_up", 3)
    assert action.sentence == "Scaling up demo_web from 2 to 3 replicas (cpu 88 %, net 71 %)"


def test_scale_down_removes_one_replica():
    svc = service_dict("demo_web", WEB_ID, replicas=3)
    action = one(alert("scale_down"), world(service=svc))
    assert (action.kind, action.replicas) == ("scale_down", 2)
    assert action.dry_run_sentence == "**DRY-RUN**: would scale down demo_web from 3 to 2 replicas"


@pytest.mark.parametrize("annotations", [None, {"replicas_needed": "9"}])  # any demand
def test_scale_up_stops_at_the_default_maximum(annotations):
    svc = service_dict("demo_web", WEB_ID, replicas=5)
    skip = one(alert("scale_up", annotations=annotations), world(service=svc))
    assert (skip.reason, skip.why) == (R.AT_LIMIT, "already at the maximum of 5 replicas")


def test_scale_down_stops_at_the_default_minimum():
    svc = service_dict("demo_web", WEB_ID, replicas=1)
    assert one(alert("scale_down"), world(service=svc)).reason == R.AT_LIMIT


def test_service_labels_override_the_replica_limits():
    labels = {"swarmguard.replicas.min": "2", "swarmguard.replicas.max": "3"}
    at_max = service_dict("demo_web", WEB_ID, replicas=3, labels=labels)
    at_min = service_dict("demo_web", WEB_ID, replicas=2, labels=labels)
    assert one(alert("scale_up"), world(service=at_max)).why == (
        "already at the maximum of 3 replicas")
    assert one(alert("scale_down"), world(service=at_min)).why == (
        "already at the minimum of 2 replicas")
    roomy = service_dict("demo_web", WEB_ID, replicas=5, labels={"swarmguard.replicas.max": "8"})
    assert one(alert("scale_up"), world(service=roomy)).replicas == 6


@pytest.mark.parametrize("labels", [
    {"swarmguard.replicas.max": "lots"},
    {"swarmguard.replicas.min": "0"},
    {"swarmguard.replicas.min": "4", "swarmguard.replicas.max": "2"},
    {"swarmguard.last-action-at": "last tuesday"},
])
def test_a_label_swarmguard_cannot_read_stops_it_rather_than_guessing(labels):
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=labels)
    assert one(alert("scale_up"), world(service=svc)).reason == R.BAD_LABEL


def host_port_on_every_worker():
    """demo_web publishes a host-mode port and runs on each of the three workers."""
    svc = service_dict("demo_web", WEB_ID, replicas=3, host_port=8080,
                       constraints=["node.role==worker"])
    tasks = [task_dict(f"t{i}", WEB_ID, n, slot=i)
             for i, n in enumerate([WORKER_1, WORKER_2, WORKER_3], 1)]
    return world(service=svc, tasks=tasks)


def test_scale_up_with_host_ports_needs_a_free_node():
    assert one(alert("scale_up"), host_port_on_every_worker()).reason == R.NO_ELIGIBLE_NODE


def test_scale_up_lifts_swarmguards_own_exclusion_when_it_keeps_out_the_only_free_node():
    exclusion = "node.hostname!=worker-2"
    svc = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                       constraints=["node.role==worker", exclusion],
                       labels={"swarmguard.enable": "true", "swarmguard.placement-exclusion": exclusion})
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)]
    action = one(alert("scale_up"), world(service=svc, tasks=tasks))
    assert isinstance(action, actions.Action)
    assert (action.replicas, action.lift_exclusion) == (3, True)
    assert action.constraints == ("node.role==worker",)  # the user's own constraint stays


def test_scale_up_keeps_swarmguards_exclusion_while_another_node_is_free():
    exclusion = "node.hostname!=worker-2"
    svc = service_dict("demo_web", WEB_ID, replicas=1, host_port=8080,
                       constraints=["node.role==worker", exclusion],
                       labels={"swarmguard.enable": "true", "swarmguard.placement-exclusion": exclusion})
    action = one(alert("scale_up"), world(service=svc))
    assert isinstance(action, actions.Action) and not action.lift_exclusion


def test_scale_up_never_lifts_a_users_own_constraint():
    svc = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                       constraints=["node.role==worker", "node.hostname!=worker-2"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)]
    assert one(alert("scale_up"), world(service=svc, tasks=tasks)).reason == R.NO_ELIGIBLE_NODE


# -- scale-up sized to the demand (the alert's replicas_needed) --------------------------

def needing(count, **annotations):
    """A scale-up alert whose rules say the demand needs `count` replicas."""
    return alert("scale_up", annotations={"replicas_needed": count, **annotations})


def test_scale_up_goes_to_the_replicas_the_demand_needs_in_one_step():
    svc = service_dict("demo_web", WEB_ID, replicas=1)
    action = one(needing("3", cpu_percent="104"), world(service=svc))
    assert (action.kind, action.replicas) == ("scale_up", 3)
    assert action.sentence == ("Scaling up demo_web from 1 to 3 replicas (the demand needs 3) "
                               "(cpu 104 %)")


@pytest.mark.parametrize("needed", ["1", "3", "4"])
def test_a_demand_of_no_more_than_one_replica_more_still_adds_one(needed):
    svc = service_dict("demo_web", WEB_ID, replicas=3)
    assert one(needing(needed), world(service=svc)).replicas == 4


@pytest.mark.parametrize("needed", ["1", "2", "3"])
def test_the_sentence_says_when_the_step_is_more_than_the_demand_asks(needed):
    svc = service_dict("demo_web", WEB_ID, replicas=3)
    assert one(needing(needed), world(service=svc)).what == (
        f"demo_web from 3 to 4 replicas (the demand needs {needed}, one more at least)")


def test_a_demand_beyond_the_maximum_goes_to_the_maximum_and_says_so():
    svc = service_dict("demo_web", WEB_ID, replicas=3)  # default maximum 5
    action = one(needing("7"), world(service=svc))
    assert action.replicas == 5
    assert action.what == "demo_web from 3 to 5 replicas (the demand needs 7, at the maximum of 5)"


def test_a_demand_beyond_the_labelled_maximum_goes_to_that_maximum():
    svc = service_dict("demo_web", WEB_ID, replicas=1, labels={"swarmguard.replicas.max": "2"})
    assert one(needing("4"), world(service=svc)).replicas == 2


def test_one_step_adds_at_most_max_scale_up_step_replicas_and_says_so():
    svc = service_dict("demo_web", WEB_ID, replicas=1, labels={"swarmguard.replicas.max": "20"})
    action = one(needing("7"), world(service=svc))
    assert action.replicas == 1 + 4  # SWARMGUARD_MAX_SCALE_UP_STEP's default
    assert action.what == "demo_web from 1 to 5 replicas (the demand needs 7, at most 4 a step)"


@pytest.mark.parametrize("step, replicas", [(1, 2), (2, 3), (6, 7), (10, 9)])
def test_max_scale_up_step_sets_the_largest_step(step, replicas):
    svc = service_dict("demo_web", WEB_ID, replicas=1, labels={"swarmguard.replicas.max": "20"})
    assert one(needing("9"), world(service=svc), policy(max_scale_up_step=step)).replicas == replicas


def test_a_sentence_names_every_bound_that_held_the_step():
    svc = service_dict("demo_web", WEB_ID, replicas=1)  # 1 + 4 is the maximum of 5 too
    assert one(needing("9"), world(service=svc)).what == (
        "demo_web from 1 to 5 replicas (the demand needs 9, at the maximum of 5, "
        "at most 4 a step)")


@pytest.mark.parametrize("value", [None, "", "three", "2.5", "0", "-3", "inf", "-inf", "nan",
                                   "1e400", " "])
def test_without_a_readable_demand_scale_up_adds_one_replica(value):
    svc = service_dict("demo_web", WEB_ID, replicas=2)
    a = alert("scale_up") if value is None else needing(value)
    action = one(a, world(service=svc))
    assert (action.kind, action.replicas) == ("scale_up", 3)
    assert action.what == "demo_web from 2 to 3 replicas"


def test_a_whole_number_written_as_a_float_is_read():
    svc = service_dict("demo_web", WEB_ID, replicas=1)
    assert one(needing("3.0"), world(service=svc)).replicas == 3


def test_a_service_scaled_to_zero_goes_to_what_the_demand_needs():
    svc = service_dict("demo_web", WEB_ID, replicas=0)
    assert one(needing("3"), world(service=svc, tasks=[])).replicas == 3


def test_with_host_ports_and_one_free_node_scale_up_adds_one_whatever_the_demand():
    svc = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                       constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)]
    action = one(needing("4"), world(service=svc, tasks=tasks))
    assert action.replicas == 3
    assert action.what == "demo_web from 2 to 3 replicas (the demand needs 4, 1 node free)"


@pytest.mark.parametrize("needed, why", [
    ("5", "the demand needs 5, 2 nodes free"),  # more than the free nodes take: all of them
    ("3", "the demand needs 3"),  # what the free nodes can take: met
])
def test_with_host_ports_scale_up_adds_as_many_replicas_as_nodes_are_free(needed, why):
    svc = service_dict("demo_web", WEB_ID, replicas=1, host_port=8080,
                       constraints=["node.role==worker"])
    action = one(needing(needed), world(service=svc))  # its task on worker-1; 2 and 3 free
    assert action.replicas == 3
    assert action.what == f"demo_web from 1 to 3 replicas ({why})"


def excluded_from_worker_2(replicas, tasks=None):
    """demo_web on a host port, kept off worker-2 by SwarmGuard's own exclusion."""
    exclusion = "node.hostname!=worker-2"
    svc = service_dict("demo_web", WEB_ID, replicas=replicas, host_port=8080,
                       constraints=["node.role==worker", exclusion],
                       labels={"swarmguard.placement-exclusion": exclusion})
    return world(service=svc, tasks=tasks)


def excluded_from_worker_2_on_workers_1_and_3():
    return excluded_from_worker_2(2, [task_dict(TASK, WEB_ID, WORKER_1),
                                      task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)])


def test_free_nodes_are_counted_under_swarmguards_exclusion_while_it_stands():
    action = one(needing("3"), excluded_from_worker_2(replicas=1))  # worker-3 free
    assert (action.replicas, action.lift_exclusion) == (2, False)
    assert action.what == "demo_web from 1 to 2 replicas (the demand needs 3, 1 node free)"


def test_free_nodes_are_counted_without_swarmguards_exclusion_once_it_is_lifted():
    action = one(needing("5"), excluded_from_worker_2_on_workers_1_and_3())
    assert (action.replicas, action.constraints) == (3, ("node.role==worker",))
    assert action.what == ("demo_web from 2 to 3 replicas (the demand needs 5, 1 node free), "
                           "lifting SwarmGuard's earlier exclusion node.hostname!=worker-2")


def test_with_host_ports_and_no_free_node_a_demand_changes_nothing():
    assert one(needing("5"), host_port_on_every_worker()).reason == R.NO_ELIGIBLE_NODE


def test_scale_down_ignores_replicas_needed():
    svc = service_dict("demo_web", WEB_ID, replicas=4)
    a = alert("scale_down", annotations={"replicas_needed": "1"})
    assert one(a, world(service=svc)).replicas == 3


# -- batches -------------------------------------------------------------------------------

def test_one_action_per_service_per_batch():
    svc = service_dict("demo_web", WEB_ID, replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    first, second = D.decide([alert(), alert(task=TASK_2, node=WORKER_2)],
                             world(service=svc, tasks=tasks), POLICY, NOW)
    assert isinstance(first, actions.Action)
    assert second.reason == R.IN_PROGRESS


def test_a_stale_first_alert_does_not_block_a_valid_second_one():
    svc = service_dict("demo_web", WEB_ID, replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_3), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    first, second = D.decide([alert(), alert(task=TASK_2, node=WORKER_2)],
                             world(service=svc, tasks=tasks), POLICY, NOW)
    assert first.reason == R.STALE
    assert isinstance(second, actions.Action)


def test_decisions_are_pure_functions_of_their_inputs():
    snap = world()
    assert D.decide([alert()], snap, POLICY, NOW) == D.decide([alert()], snap, POLICY, NOW)


# -- boundaries ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, cooldown", [("migrate", 60), ("scale_up", 60),
                                            ("scale_down", 180)])
def test_a_cooldown_that_has_exactly_elapsed_allows_the_action(kind, cooldown):
    svc = service_dict("demo_web", WEB_ID, replicas=3, labels=history(kind, cooldown))
    decision = one(alert(kind, ago=cooldown - 1), world(service=svc))
    assert isinstance(decision, actions.Action), decision


def test_an_alert_that_began_at_the_very_moment_of_the_last_action_is_stale():
    svc = service_dict("demo_web", WEB_ID, labels=history("scale_up", 30))
    assert one(alert(ago=30), world(service=svc)).reason == R.STALE


def test_a_cooldown_is_reported_with_the_seconds_since_the_last_action_of_that_kind():
    svc = service_dict("demo_web", WEB_ID, replicas=3, labels=history("scale_down", 100))
    skip = one(alert("scale_down", ago=50), world(service=svc))
    assert skip.why == "cooldown, last scale down 100 s ago (cooldown 180 s)"


def test_a_last_action_stamped_ahead_of_this_receivers_clock_reads_as_just_now():
    # Another receiver's clock (and Prometheus's) a few seconds ahead: never "-5 s ago".
    svc = service_dict("demo_web", WEB_ID, replicas=3, labels=history("scale_down", -5))
    skip = one(alert("scale_down", ago=-10), world(service=svc))
    assert skip.why == "cooldown, last scale down 0 s ago (cooldown 180 s)"


def test_a_cooldown_set_by_hand_in_unix_seconds_holds():
    stamp = str((NOW - timedelta(seconds=10)).timestamp())
    svc = service_dict("demo_web", WEB_ID, replicas=3,
                       labels={"swarmguard.last-scale-up-at": stamp})
    skip = one(alert("scale_up", ago=5), world(service=svc))
    assert skip.reason == R.COOLDOWN
    assert "last scale up 10 s ago" in skip.why


# -- every decision says which alert it is about -----------------------------------------------

def _every_way_to_skip():
    """(reason, alert, snapshot) by name, one per way an alert can be skipped."""
    svc = lambda **kw: service_dict("demo_web", WEB_ID, **kw)  # noqa: E731
    lone_worker = [node_dict(WORKER_1, "worker-1")]
    taken = [task_dict(f"t{i}", WEB_ID, n, slot=i)
             for i, n in enumerate([WORKER_1, WORKER_2, WORKER_3], 1)]
    return {
        "service gone": (R.STALE, alert(), world(service="none", tasks=[])),
        "task moved": (R.STALE, alert(), world(tasks=[task_dict(TASK, WEB_ID, WORKER_2)])),
        "began before the last action": (R.STALE, alert(ago=30),
                                         world(service=svc(labels=history("scale_up", 20)))),
        "not opted in": (R.NOT_OPTED_IN, alert(), world(service=svc(enabled=False))),
        "unreadable history": (R.BAD_LABEL, alert(), world(service=svc(
            labels={"swarmguard.last-action-at": "last tuesday"}))),
        "unreadable limits": (R.BAD_LABEL, alert("scale_up"), world(service=svc(
            labels={"swarmguard.replicas.max": "lots"}))),
        "cooldown": (R.COOLDOWN, alert("scale_up", ago=5),
                     world(service=svc(labels=history("scale_up", 10)))),
        "swarm updating": (R.IN_PROGRESS, alert(), world(service=svc(update_state="updating"))),
        "global service": (R.UNSUPPORTED, alert(), world(service=svc(replicas=None))),
        "at the maximum": (R.AT_LIMIT, alert("scale_up"), world(service=svc(replicas=5))),
        "at the minimum": (R.AT_LIMIT, alert("scale_down"), world(service=svc(replicas=1))),
        "nowhere to migrate": (R.NO_ELIGIBLE_NODE, alert(), world(nodes=lone_worker)),
        "no free node to scale to": (R.NO_ELIGIBLE_NODE, alert("scale_up"), world(
            service=svc(replicas=3, host_port=8080, constraints=["node.role==worker"]),
            tasks=taken)),
    }


@pytest.mark.parametrize("way", sorted(_every_way_to_skip()))
def test_each_skip_names_the_alert_it_is_about_and_says_why(way):
    reason, a, snap = _every_way_to_skip()[way]
    skip = one(a, snap)
    assert skip.reason == reason
    assert skip.alert is a  # counted and reported per alert name, task and node
    assert skip.why
    assert skip.sentence.startswith(f"Ignoring {a.name} for demo_web: {skip.why}")


@pytest.mark.parametrize("kind", ["migrate", "scale_up", "scale_down"])
def test_each_action_carries_the_alert_it_acts_on(kind):
    a = alert(kind)
    assert one(a, world(service=service_dict("demo_web", WEB_ID, replicas=2,
                                             constraints=["node.role==worker"]))).alert is a


def test_the_second_alert_for_a_service_being_acted_on_names_itself():
    svc = service_dict("demo_web", WEB_ID, replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    second_alert = alert(task=TASK_2, node=WORKER_2)
    _, second = D.decide([alert(), second_alert], world(service=svc, tasks=tasks), POLICY, NOW)
    assert second.alert is second_alert
    assert second.why == "another alert for demo_web is being acted on"


def test_a_bad_label_is_named_in_the_reason():
    svc = service_dict("demo_web", WEB_ID, replicas=2,
                       labels={"swarmguard.replicas.min": "4", "swarmguard.replicas.max": "2"})
    skip = one(alert("scale_up"), world(service=svc))
    assert "swarmguard.replicas.min=4" in skip.why and "swarmguard.replicas.max=2" in skip.why
    svc = service_dict("demo_web", WEB_ID, labels={"swarmguard.last-action-at": "last tuesday"})
    assert "swarmguard.last-action-at" in one(alert(), world(service=svc)).why


def test_a_global_service_is_named_as_such_and_says_what_cannot_be_done():
    svc = service_dict("demo_web", WEB_ID, replicas=None)
    assert one(alert(), world(service=svc)).why == (
        "demo_web is a global service; only replicated services can be migrated")
    assert one(alert("scale_down"), world(service=svc)).why == (
        "demo_web is a global service; only replicated services can be scaled")


# -- replica limits ----------------------------------------------------------------------------

def test_a_minimum_and_maximum_of_the_same_count_pin_the_replicas():
    labels = {"swarmguard.replicas.min": "3", "swarmguard.replicas.max": "3"}
    svc = service_dict("demo_web", WEB_ID, replicas=3, labels=labels)
    assert one(alert("scale_up"), world(service=svc)).reason == R.AT_LIMIT
    assert one(alert("scale_down"), world(service=svc)).reason == R.AT_LIMIT


def test_a_minimum_of_one_replica_is_a_valid_label():
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels={"swarmguard.replicas.min": "1"})
    assert one(alert("scale_down"), world(service=svc)).replicas == 1


def test_a_blank_replica_limit_label_means_the_default():
    svc = service_dict("demo_web", WEB_ID, replicas=5, labels={"swarmguard.replicas.max": " "})
    assert one(alert("scale_up"), world(service=svc)).why == "already at the maximum of 5 replicas"


def test_a_replica_limit_below_one_is_refused_naming_the_label():
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels={"swarmguard.replicas.min": "0"})
    skip = one(alert("scale_down"), world(service=svc))
    assert skip.reason == R.BAD_LABEL
    assert "swarmguard.replicas.min='0'" in skip.why


def test_a_service_scaled_to_zero_scales_up_to_one_replica():
    svc = service_dict("demo_web", WEB_ID, replicas=0)
    action = one(alert("scale_up"), world(service=svc, tasks=[]))
    assert action.replicas == 1
    assert action.sentence == "Scaling up demo_web from 0 to 1 replicas"


# -- where a task may go -----------------------------------------------------------------------

def test_a_migration_may_go_to_a_node_already_running_a_replica_when_nothing_limits_it():
    svc = service_dict("demo_web", WEB_ID, replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    nodes = [node_dict(WORKER_1, "worker-1"), node_dict(WORKER_2, "worker-2")]
    assert isinstance(one(alert(), world(service=svc, tasks=tasks, nodes=nodes)), actions.Action)


def _max_replicas(svc, count):
    svc["Spec"]["TaskTemplate"]["Placement"]["MaxReplicas"] = count
    return svc


def test_a_per_node_replica_limit_rules_out_nodes_that_are_full():
    svc = _max_replicas(service_dict("demo_web", WEB_ID, replicas=3,
                                     constraints=["node.role==worker"]), 2)
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2),
             task_dict("t3", WEB_ID, WORKER_2, slot=3)]
    nodes = [node_dict(WORKER_1, "worker-1"), node_dict(WORKER_2, "worker-2")]
    skip = one(alert(), world(service=svc, tasks=tasks, nodes=nodes))
    assert skip.reason == R.NO_ELIGIBLE_NODE
    assert skip.why == ("no other node can take it (worker-2 already runs 2 task(s) of "
                        "demo_web)")
    # With room for one more there, it goes.
    assert isinstance(one(alert(), world(service=svc, tasks=tasks[:2], nodes=nodes)), actions.Action)


def test_host_ports_allow_one_task_per_node_even_with_a_larger_per_node_limit():
    svc = _max_replicas(service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                                     constraints=["node.role==worker"]), 3)
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    nodes = [node_dict(WORKER_1, "worker-1"), node_dict(WORKER_2, "worker-2")]
    assert one(alert(), world(service=svc, tasks=tasks, nodes=nodes)).reason == R.NO_ELIGIBLE_NODE


def test_a_task_being_shut_down_does_not_hold_a_host_port_node():
    svc = service_dict("demo_web", WEB_ID, replicas=1, host_port=8080,
                       constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1),
             task_dict(TASK_2, WEB_ID, WORKER_2, slot=2, desired="shutdown")]
    nodes = [node_dict(WORKER_1, "worker-1"), node_dict(WORKER_2, "worker-2")]
    assert isinstance(one(alert(), world(service=svc, tasks=tasks, nodes=nodes)), actions.Action)


def test_a_single_node_swarm_has_nowhere_to_migrate_to():
    skip = one(alert(), world(nodes=[node_dict(WORKER_1, "worker-1")]))
    assert (skip.reason, skip.why) == (R.NO_ELIGIBLE_NODE,
                                       "no other node can take it (no other nodes)")


def test_why_no_node_can_take_a_task_lists_the_other_nodes_by_hostname():
    # Node IDs sort the other way round from the hostnames.
    nodes = [node_dict("a" * 25, "worker-1"), node_dict("c" * 25, "node-a", state="down"),
             node_dict("b" * 25, "node-b", availability="pause")]
    tasks = [task_dict(TASK, WEB_ID, "a" * 25)]
    svc = service_dict("demo_web", WEB_ID, constraints=["node.role==worker"])
    skip = one(alert(node="a" * 25), world(service=svc, tasks=tasks, nodes=nodes))
    assert skip.why == "no other node can take it (node-a is down/active; node-b is ready/pause)"


def test_a_node_refused_for_its_constraints_lists_all_of_them():
    nodes = [node_dict(WORKER_1, "worker-1"), node_dict(MANAGER_1, "manager-1", role="manager")]
    skip = one(alert(), world(nodes=nodes))
    assert skip.why == ("no other node can take it (manager-1 does not meet "
                        "node.role==worker, node.hostname!=worker-1)")


def test_a_migrate_alert_about_a_node_that_left_the_swarm_excludes_it_by_id():
    # The task still runs there as far as Swarm's task list says, but the node is gone from
    # its node list: no hostname to exclude by.
    gone = "g" * 25
    tasks = [task_dict(TASK, WEB_ID, gone)]
    action = one(alert(node=gone), world(tasks=tasks))
    assert isinstance(action, actions.Action)
    assert action.exclusion == f"node.id!={gone}"
    assert action.constraints == ("node.role==worker", f"node.id!={gone}")
    assert action.from_node.id == gone


def test_scale_up_with_host_ports_says_why_no_node_is_free():
    svc = service_dict("demo_web", WEB_ID, replicas=3, host_port=8080,
                       constraints=["node.role==worker"])
    tasks = [task_dict(f"t{i}", WEB_ID, n, slot=i)
             for i, n in enumerate([WORKER_1, WORKER_2, WORKER_3], 1)]
    skip = one(alert("scale_up"), world(service=svc, tasks=tasks))
    assert skip.why.startswith("no node is free for another replica (manager-1 does not meet "
                               "node.role==worker; worker-1 already runs 1 task(s)")


def test_lifting_swarmguards_exclusion_is_an_action_on_the_alert_that_says_so():
    a = alert("scale_up")
    action = one(a, excluded_from_worker_2_on_workers_1_and_3())
    assert (action.kind, action.alert) == ("scale_up", a)
    assert action.sentence == ("Scaling up demo_web from 2 to 3 replicas, lifting SwarmGuard's "
                               "earlier exclusion node.hostname!=worker-2")


# -- futile moves (receiver/futile.py) ------------------------------------------------------

MOVED = "m0v3d0r3p1ac3m3nt0000000a"  # the replacement of TASK, which was moved off worker-1


def after_a_move(moved_ago=30, labels=None, replacement_on=WORKER_2, created_after=1.0,
                 others=(), update_state=None):
    """demo_web, whose last action moved TASK off worker-1 `moved_ago` s before NOW; Swarm
    created its replacement MOVED on `replacement_on` `created_after` s after the move."""
    created = NOW - timedelta(seconds=moved_ago - created_after)
    svc = service_dict("demo_web", WEB_ID, replicas=1 + len(others), update_state=update_state,
                       constraints=["node.role==worker", "node.hostname!=worker-1"],
                       labels=history("migrate", moved_ago, labels))
    tasks = [task_dict(TASK, WEB_ID, WORKER_1, state="shutdown", desired="shutdown"),
             task_dict(MOVED, WEB_ID, replacement_on, created=format_time(created)), *others]
    return world(service=svc, tasks=tasks)


def test_the_moved_task_hot_again_on_its_new_node_within_the_window_is_futile_and_held():
    # 30 s after the move, within the migrate cooldown: the finding comes at once.
    skip = one(alert(task=MOVED, node=WORKER_2, ago=5), after_a_move(moved_ago=30))
    assert isinstance(skip, actions.FutileMove)
    assert skip.reason == R.FUTILE
    assert skip.until == NOW + timedelta(seconds=600)  # a whole window from the finding
    assert skip.service.name == "demo_web"
    assert skip.why == ("task m0v3d0r3p1ac is hot again on worker-2, 30 s after it was moved "
                        "there: the heat is the task's own work, not its node's (raise its "
                        "CPU or memory limit, or let it scale); demo_web is not migrated "
                        "until 10:15:00")


def test_the_window_is_a_setting():
    skip = one(alert(task=MOVED, node=WORKER_2, ago=5), after_a_move(moved_ago=30),
               policy(futile_window=20))
    assert skip.reason == R.COOLDOWN  # 30 s after the move is past a 20 s window
    skip = one(alert(task=MOVED, node=WORKER_2, ago=5), after_a_move(moved_ago=30),
               policy(futile_window=40))
    assert skip.until == NOW + timedelta(seconds=40)


def test_a_window_of_zero_never_calls_a_move_futile():
    skip = one(alert(task=MOVED, node=WORKER_2, ago=5), after_a_move(moved_ago=30),
               policy(futile_window=0))
    assert skip.reason == R.COOLDOWN


def test_the_moved_task_hot_again_after_the_window_is_migrated_again():
    decision = one(alert(task=MOVED, node=WORKER_2, ago=5), after_a_move(moved_ago=601))
    assert isinstance(decision, actions.Migration)
    assert decision.from_node.id == WORKER_2


def test_a_hot_task_that_ran_before_the_move_is_not_the_moved_one():
    # Another replica, on worker-3 since before the move: its heat says nothing about it.
    older = task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)
    snap = after_a_move(moved_ago=70, others=[older])
    decision = one(alert(task=TASK_2, node=WORKER_3, ago=5), snap)
    assert isinstance(decision, actions.Migration)
    assert one(alert(task=TASK_2, node=WORKER_3, ago=5),
               after_a_move(moved_ago=30, others=[older])).reason == R.COOLDOWN


def test_a_task_created_before_the_move_is_not_its_replacement_even_on_another_node():
    snap = after_a_move(moved_ago=70, created_after=-1.0)
    assert isinstance(one(alert(task=MOVED, node=WORKER_2, ago=5), snap), actions.Migration)


def test_a_task_whose_creation_docker_did_not_say_is_not_called_a_replacement():
    snap = after_a_move(moved_ago=70)
    task = snap.task(MOVED)
    snap = dataclasses.replace(snap, tasks=(dataclasses.replace(task, created_at=None),))
    assert isinstance(one(alert(task=MOVED, node=WORKER_2, ago=5), snap), actions.Migration)


def test_a_move_followed_by_a_scale_up_is_judged_as_usual():
    # The scale up changed the service since the move: the move is not what is judged.
    labels = {"swarmguard.last-action": "scale_up",
              "swarmguard.last-action-at": format_time(NOW - timedelta(seconds=20)),
              "swarmguard.last-scale-up-at": format_time(NOW - timedelta(seconds=20))}
    snap = after_a_move(moved_ago=90, labels=labels)
    assert isinstance(one(alert(task=MOVED, node=WORKER_2, ago=5), snap), actions.Migration)


def test_the_finding_waits_while_swarms_own_update_runs():
    snap = after_a_move(moved_ago=70, update_state="updating")
    assert one(alert(task=MOVED, node=WORKER_2, ago=5), snap).reason == R.IN_PROGRESS


def held(until_in=300, stamp=None):
    """Labels of demo_web held as futile until `until_in` s after NOW (moved 400 s ago)."""
    until = stamp or format_time(NOW + timedelta(seconds=until_in))
    return history("migrate", 400, {"swarmguard.futile-until": until})


def test_while_held_no_hot_task_of_the_service_is_migrated_whatever_its_node():
    older = task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=held(300))
    snap = world(service=svc, tasks=[task_dict(TASK, WEB_ID, WORKER_1), older])
    for task, node in ((TASK, WORKER_1), (TASK_2, WORKER_3)):
        skip = one(alert(task=task, node=node, ago=5), snap)
        assert type(skip) is actions.Skip  # held already: nothing more to write
        assert skip.reason == R.FUTILE
        assert skip.why == ("moving demo_web did not help: the heat is the task's own work, "
                            "not its node's (raise its CPU or memory limit, or let it "
                            "scale); not migrated until 10:10:00 (swarmguard.futile-until)")


def test_a_held_service_is_still_scaled():
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=held(300))
    assert isinstance(one(alert("scale_up", ago=5), world(service=svc)), actions.ScaleStep)


def test_a_hold_that_has_passed_holds_nothing():
    svc = service_dict("demo_web", WEB_ID, labels=held(-1))
    assert isinstance(one(alert(ago=5), world(service=svc)), actions.Migration)


def test_a_hold_ends_at_the_moment_its_label_names():
    svc = service_dict("demo_web", WEB_ID, labels=held(0))
    assert isinstance(one(alert(ago=5), world(service=svc)), actions.Migration)


def test_exactly_a_window_after_the_move_the_replacement_is_judged_like_any_task():
    decision = one(alert(task=MOVED, node=WORKER_2, ago=5), after_a_move(moved_ago=600))
    assert isinstance(decision, actions.Migration)


def test_a_task_created_at_the_very_moment_of_the_move_is_not_its_replacement():
    # The stamp is written before the update call: Swarm creates the replacement after it.
    skip = one(alert(task=MOVED, node=WORKER_2, ago=5), after_a_move(moved_ago=30, created_after=0))
    assert skip.reason == R.COOLDOWN


def test_the_hold_may_be_unix_seconds_as_an_operator_writes_it():
    svc = service_dict("demo_web", WEB_ID, labels=held(stamp=str((NOW + timedelta(
        seconds=60)).timestamp())))
    assert one(alert(ago=5), world(service=svc)).reason == R.FUTILE


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_a_hold_that_is_not_a_time_is_a_bad_label(kind):
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=held(stamp="soon"))
    skip = one(alert(kind, ago=5), world(service=svc))
    assert skip.reason == R.BAD_LABEL
    assert "swarmguard.futile-until='soon' is not a time" in skip.why
