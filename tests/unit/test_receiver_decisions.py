from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest

from receiver import decisions as D
from receiver.cluster import build_snapshot
from receiver.config import Settings
from receiver.labels import format_time
from receiver.payload import Alert
from tests.fake_swarm_api import (MANAGER_1, TASK, TASK_2, WEB_ID, WORKER_1, WORKER_2, WORKER_3,
                              example_nodes, node_dict, service_dict, task_dict)

NOW = datetime(2026, 11, 27, 10, 5, 0, tzinfo=timezone.utc)
SETTINGS = Settings(token="t")
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


def one(a, snap, settings=SETTINGS):
    (decision,) = D.decide([a], snap, settings, NOW)
    return decision


# -- migrate -------------------------------------------------------------------------------

def test_a_fresh_migrate_alert_moves_the_task_off_its_node():
    a = alert(annotations={"cpu_percent": "91.2", "network_percent": "3.1"})
    action = one(a, world())
    assert isinstance(action, D.Action)
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
    assert skip.reason == D.STALE
    assert skip.why == "task t1p4r7s0u3w6 reported on worker-1, running on worker-2"
    assert skip.sentence.startswith("Ignoring SwarmGuardMigrate for demo_web: task")


def test_an_alert_about_a_replaced_task_names_where_its_slot_runs_now():
    tasks = [task_dict(TASK, WEB_ID, WORKER_1, desired="shutdown"),
             task_dict("newtask000001", WEB_ID, WORKER_3, slot=1)]
    skip = one(alert(), world(tasks=tasks))
    assert skip.reason == D.STALE
    assert skip.why == ("task t1p4r7s0u3w6 reported on worker-1, running on worker-3 "
                        "(as task newtask00000)")


def test_an_alert_about_a_task_being_shut_down_is_stale():
    tasks = [task_dict(TASK, WEB_ID, WORKER_1, desired="shutdown")]
    skip = one(alert(), world(tasks=tasks))
    assert skip.reason == D.STALE
    assert "no longer running" in skip.why


def test_an_alert_about_a_task_that_no_longer_exists_is_stale():
    assert one(alert(task="gone"), world()).reason == D.STALE


def test_an_alert_about_a_removed_service_is_stale():
    skip = one(alert(), world(service="none", tasks=[]))
    assert (skip.reason, skip.why) == (D.STALE, "service demo_web no longer exists")


def test_a_service_without_the_opt_in_label_is_never_touched():
    svc = service_dict("demo_web", WEB_ID, enabled=False)
    for kind in NAMES:
        assert one(alert(kind), world(service=svc)).reason == D.NOT_OPTED_IN


def test_opt_in_must_say_true():
    svc = service_dict("demo_web", WEB_ID, enabled=False, labels={"swarmguard.enable": "yes"})
    assert one(alert(), world(service=svc)).reason == D.NOT_OPTED_IN


def test_an_alert_that_began_before_the_last_action_is_stale():
    # A scale up happened 20 s ago; this migrate alert started 30 s ago.
    svc = service_dict("demo_web", WEB_ID, labels=history("scale_up", 20))
    skip = one(alert(ago=30), world(service=svc))
    assert skip.reason == D.STALE
    assert "before the last SwarmGuard action (scale_up at 10:04:40)" in skip.why


def test_an_alert_that_began_after_the_last_action_is_fresh():
    svc = service_dict("demo_web", WEB_ID, labels=history("scale_up", 120))
    assert isinstance(one(alert(ago=30), world(service=svc)), D.Action)


@pytest.mark.parametrize("kind, cooldown", [("migrate", 60), ("scale_up", 60),
                                            ("scale_down", 180)])
def test_each_kind_waits_for_its_own_cooldown(kind, cooldown):
    # The alert is fresh (it began after the last action) but the cooldown is not over.
    svc = service_dict("demo_web", WEB_ID, replicas=3,
                       labels=history(kind, cooldown - 5))
    skip = one(alert(kind, ago=cooldown - 10), world(service=svc))
    assert skip.reason == D.COOLDOWN
    assert f"(cooldown {cooldown} s)" in skip.why
    svc = service_dict("demo_web", WEB_ID, replicas=3, labels=history(kind, cooldown + 5))
    assert isinstance(one(alert(kind, ago=cooldown), world(service=svc)), D.Action)


def test_cooldowns_are_kept_per_kind():
    # A scale up 10 s ago does not hold back a migration whose alert began after it.
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=history("scale_up", 10))
    assert isinstance(one(alert("migrate", ago=5), world(service=svc)), D.Action)


def test_a_scale_up_alert_still_firing_after_its_own_cooldown_takes_one_more_step():
    # "One step per cooldown": the same alert, still firing 65 s after our scale up.
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=history("scale_up", 65))
    action = one(alert("scale_up", ago=300), world(service=svc))
    assert isinstance(action, D.Action)
    assert action.replicas == 3


def test_a_still_firing_alert_of_another_kind_is_not_a_continuation():
    svc = service_dict("demo_web", WEB_ID, replicas=2, labels=history("scale_up", 600))
    assert one(alert("scale_down", ago=900), world(service=svc)).reason == D.STALE


def test_a_service_swarm_is_still_updating_is_left_alone():
    for state in ["updating", "rollback_started", "paused"]:
        svc = service_dict("demo_web", WEB_ID, update_state=state)
        skip = one(alert(), world(service=svc))
        assert skip.reason == D.IN_PROGRESS
        assert state in skip.why


def test_a_finished_update_does_not_block():
    svc = service_dict("demo_web", WEB_ID, update_state="completed")
    assert isinstance(one(alert(), world(service=svc)), D.Action)


def test_global_services_are_not_migrated_or_scaled():
    svc = service_dict("demo_web", WEB_ID, replicas=None)
    assert one(alert(), world(service=svc)).reason == D.UNSUPPORTED
    assert one(alert("scale_up"), world(service=svc)).reason == D.UNSUPPORTED


def test_no_migration_when_no_other_node_is_eligible():
    nodes = [
        node_dict(MANAGER_1, "manager-1", role="manager"),  # excluded by node.role==worker
        node_dict(WORKER_1, "worker-1"),
        node_dict(WORKER_2, "worker-2", availability="drain"),
        node_dict(WORKER_3, "worker-3", state="down"),
    ]
    skip = one(alert(), world(nodes=nodes))
    assert skip.reason == D.NO_ELIGIBLE_NODE
    assert "worker-2 is ready/drain" in skip.why
    assert "worker-3 is down/active" in skip.why
    assert "manager-1 does not meet node.role==worker" in skip.why


def test_the_users_label_constraints_decide_eligibility():
    nodes = example_nodes()
    nodes[2]["Spec"]["Labels"] = {"zone": "a"}  # worker-2
    svc = service_dict("demo_web", WEB_ID, constraints=["node.labels.zone==a"])
    assert isinstance(one(alert(), world(service=svc, nodes=nodes)), D.Action)
    nodes[2]["Spec"]["Labels"] = {"zone": "b"}
    assert one(alert(), world(service=svc, nodes=nodes)).reason == D.NO_ELIGIBLE_NODE


def test_a_node_excluded_earlier_by_swarmguard_becomes_eligible_again():
    nodes = [node_dict(WORKER_1, "worker-1"), node_dict(WORKER_2, "worker-2")]
    svc = service_dict("demo_web", WEB_ID, constraints=["node.hostname!=worker-2"],
                       labels={"swarmguard.placement-exclusion": "node.hostname!=worker-2"})
    action = one(alert(), world(service=svc, nodes=nodes))
    assert action.constraints == ("node.hostname!=worker-1",)


def test_an_unknown_constraint_is_treated_as_not_met():
    svc = service_dict("demo_web", WEB_ID, constraints=["node.cpus==4"])
    skip = one(alert(), world(service=svc))
    assert skip.reason == D.NO_ELIGIBLE_NODE
    assert "worker-2: unknown constraint key 'node.cpus'" in skip.why


def test_host_mode_ports_rule_out_nodes_already_running_a_replica():
    svc = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                       constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    nodes = example_nodes()[:3]  # manager-1, worker-1, worker-2
    skip = one(alert(), world(service=svc, tasks=tasks, nodes=nodes))
    assert skip.reason == D.NO_ELIGIBLE_NODE
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


def test_scale_up_stops_at_the_default_maximum():
    svc = service_dict("demo_web", WEB_ID, replicas=5)
    skip = one(alert("scale_up"), world(service=svc))
    assert (skip.reason, skip.why) == (D.AT_LIMIT, "already at the maximum of 5 replicas")


def test_scale_down_stops_at_the_default_minimum():
    svc = service_dict("demo_web", WEB_ID, replicas=1)
    assert one(alert("scale_down"), world(service=svc)).reason == D.AT_LIMIT


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
    assert one(alert("scale_up"), world(service=svc)).reason == D.BAD_LABEL


def test_scale_up_with_host_ports_needs_a_free_node():
    svc = service_dict("demo_web", WEB_ID, replicas=3, host_port=8080,
                       constraints=["node.role==worker"])
    tasks = [task_dict(f"t{i}", WEB_ID, n, slot=i)
             for i, n in enumerate([WORKER_1, WORKER_2, WORKER_3], 1)]
    assert one(alert("scale_up"), world(service=svc, tasks=tasks)).reason == D.NO_ELIGIBLE_NODE


def test_scale_up_lifts_swarmguards_own_exclusion_when_it_keeps_out_the_only_free_node():
    exclusion = "node.hostname!=worker-2"
    svc = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                       constraints=["node.role==worker", exclusion],
                       labels={"swarmguard.enable": "true", "swarmguard.placement-exclusion": exclusion})
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)]
    action = one(alert("scale_up"), world(service=svc, tasks=tasks))
    assert isinstance(action, D.Action)
    assert (action.replicas, action.lift_exclusion) == (3, True)
    assert action.constraints == ("node.role==worker",)  # the user's own constraint stays


def test_scale_up_keeps_swarmguards_exclusion_while_another_node_is_free():
    exclusion = "node.hostname!=worker-2"
    svc = service_dict("demo_web", WEB_ID, replicas=1, host_port=8080,
                       constraints=["node.role==worker", exclusion],
                       labels={"swarmguard.enable": "true", "swarmguard.placement-exclusion": exclusion})
    action = one(alert("scale_up"), world(service=svc))
    assert isinstance(action, D.Action) and not action.lift_exclusion


def test_scale_up_never_lifts_a_users_own_constraint():
    svc = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                       constraints=["node.role==worker", "node.hostname!=worker-2"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_3, slot=2)]
    assert one(alert("scale_up"), world(service=svc, tasks=tasks)).reason == D.NO_ELIGIBLE_NODE


# -- batches -------------------------------------------------------------------------------

def test_one_action_per_service_per_batch():
    svc = service_dict("demo_web", WEB_ID, replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    first, second = D.decide([alert(), alert(task=TASK_2, node=WORKER_2)],
                             world(service=svc, tasks=tasks), SETTINGS, NOW)
    assert isinstance(first, D.Action)
    assert second.reason == D.IN_PROGRESS


def test_a_stale_first_alert_does_not_block_a_valid_second_one():
    svc = service_dict("demo_web", WEB_ID, replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(TASK, WEB_ID, WORKER_3), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]
    first, second = D.decide([alert(), alert(task=TASK_2, node=WORKER_2)],
                             world(service=svc, tasks=tasks), SETTINGS, NOW)
    assert first.reason == D.STALE
    assert isinstance(second, D.Action)


def test_resolved_alerts_are_never_acted_on():
    assert one(alert(status="resolved"), world()).reason == D.RESOLVED


def test_decisions_are_pure_functions_of_their_inputs():
    snap = world()
    assert D.decide([alert()], snap, SETTINGS, NOW) == D.decide([alert()], snap, SETTINGS, NOW)
