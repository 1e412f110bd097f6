"""Node maintenance planned (receiver/maintenance.py): what a drain moves, leaves or cannot
move; when a drain is refused; how a rebalance evens out the nodes."""
from __future__ import annotations

import pytest

from receiver import maintenance as M
from receiver.cluster import build_snapshot
from tests.fake_docker_api_client import (MANAGER_1, WORKER_1, WORKER_2, WORKER_3, node_dict,
                                          service_dict, task_dict)

WORKERS = ["node.role==worker"]


def nodes(**overrides):
    """manager-1 and three workers; overrides: hostname -> node_dict keyword arguments."""
    base = [(MANAGER_1, "manager-1", {"role": "manager"}), (WORKER_1, "worker-1", {}),
            (WORKER_2, "worker-2", {}), (WORKER_3, "worker-3", {})]
    out = []
    for node_id, name, kwargs in base:
        data = node_dict(node_id, name, **{**kwargs, **overrides.get(name.replace("-", "_"), {})})
        if data["Spec"]["Role"] == "manager":
            data["ManagerStatus"] = {"Reachability": "reachable", "Leader": True}
        out.append(data)
    return out


def world(services, tasks, node_list=None):
    return build_snapshot(services, tasks, node_list if node_list is not None else nodes())


def svc(name, **kwargs):
    kwargs.setdefault("constraints", WORKERS)
    return service_dict(name, f"id-{name}", **kwargs)


def on(node_id, service, task_id, **kwargs):
    return task_dict(task_id, f"id-{service}", node_id, **kwargs)


def test_a_drain_moves_every_replicated_service_on_the_node_opted_in_or_not():
    snap = world([svc("web"), svc("api", enabled=False), svc("elsewhere")],
                 [on(WORKER_1, "web", "t-web"), on(WORKER_1, "api", "t-api"),
                  on(WORKER_2, "elsewhere", "t-else")])
    plan = M.plan_drain(snap, snap.node(WORKER_1))
    assert [(m.service, m.tasks) for m in plan.moves] == [("api", ("t-api",)), ("web", ("t-web",))]
    assert plan.left == () and plan.blocked == ()


def test_all_of_a_services_tasks_on_the_node_move_in_one_update():
    snap = world([svc("web", replicas=3)],
                 [on(WORKER_1, "web", "a", slot=1), on(WORKER_1, "web", "b", slot=2),
                  on(WORKER_2, "web", "c", slot=3)])
    [move] = M.plan_drain(snap, snap.node(WORKER_1)).moves
    assert move.tasks == ("a", "b") and move.replicas == 3


def test_a_task_already_shutting_down_is_not_moved_again():
    snap = world([svc("web")], [on(WORKER_1, "web", "old", desired="shutdown"),
                                on(WORKER_2, "web", "new")])
    assert M.plan_drain(snap, snap.node(WORKER_1)).moves == ()


def test_a_global_service_is_left_to_swarms_drain():
    snap = world([svc("agent", replicas=None)], [on(WORKER_1, "agent", "g1")])
    plan = M.plan_drain(snap, snap.node(WORKER_1))
    assert plan.moves == ()
    [left] = plan.left
    assert (left.service, left.task) == ("agent", "g1") and "global" in left.why


def test_a_task_pinned_to_the_node_is_blocked_with_the_reason():
    snap = world([svc("pinned", constraints=["node.hostname==worker-1"])],
                 [on(WORKER_1, "pinned", "p1")])
    [blocked] = M.plan_drain(snap, snap.node(WORKER_1)).blocked
    assert blocked.service == "pinned"
    assert blocked.why.startswith("no other node can take it")
    assert "worker-2 does not meet node.hostname==worker-1" in blocked.why


def test_a_host_port_with_no_free_node_is_blocked():
    snap = world([svc("edge", replicas=3, host_port=80)],
                 [on(WORKER_1, "edge", "e1", slot=1), on(WORKER_2, "edge", "e2", slot=2),
                  on(WORKER_3, "edge", "e3", slot=3)])
    [blocked] = M.plan_drain(snap, snap.node(WORKER_1)).blocked
    assert "already runs 1 task(s) of edge" in blocked.why


def test_a_task_that_keeps_data_on_the_node_is_blocked_unless_its_service_allows_it():
    volume = {"Type": "volume", "Source": "db-data", "Target": "/data"}
    snap = world([svc("db", mounts=[volume]),
                  svc("cache", mounts=[volume], labels={"swarmguard.stateful": "allow"})],
                 [on(WORKER_1, "db", "d1"), on(WORKER_1, "cache", "c1")])
    plan = M.plan_drain(snap, snap.node(WORKER_1))
    assert [m.service for m in plan.moves] == ["cache"]
    [blocked] = plan.blocked
    assert blocked.service == "db"
    assert "keeps data on worker-1 (local volume db-data at /data)" in blocked.why


def test_a_service_whose_move_failed_in_this_drain_is_not_tried_again():
    snap = world([svc("web")], [on(WORKER_1, "web", "t1")])
    plan = M.plan_drain(snap, snap.node(WORKER_1), failed={"web": "its move rolled back"})
    assert plan.moves == ()
    assert [b.why for b in plan.blocked] == ["its move rolled back"]


def test_a_service_without_a_health_check_moves_with_a_note():
    snap = world([svc("bare", healthcheck={"Test": ["NONE"]})], [on(WORKER_1, "bare", "b1")])
    [move] = M.plan_drain(snap, snap.node(WORKER_1)).moves
    assert move.note and "no health check" in move.note


def test_the_plan_shows_the_replicas_swarm_has_for_the_service_zero_too():
    # Scaled to zero a moment ago: Swarm has not stopped the task yet.
    snap = world([svc("web", replicas=0)], [on(WORKER_1, "web", "t1")])
    [move] = M.plan_drain(snap, snap.node(WORKER_1)).moves
    assert move.replicas == 0


def test_another_node_being_drained_takes_nothing():
    node_list = nodes(worker_2={"labels": {M.DRAIN_STATE: M.MOVING}, "availability": "pause"},
                      worker_3={"availability": "drain"})
    snap = world([svc("web")], [on(WORKER_1, "web", "t1")], node_list)
    [blocked] = M.plan_drain(snap, snap.node(WORKER_1)).blocked
    assert "no other node can take it" in blocked.why


def test_the_plan_as_json_names_the_node_and_each_task_with_its_fate():
    volume = {"Type": "volume", "Source": "db-data", "Target": "/data"}
    snap = world([svc("agent", replicas=None), svc("db", mounts=[volume]),
                  svc("web", replicas=2), svc("bare", healthcheck={"Test": ["NONE"]})],
                 [on(WORKER_1, "agent", "g1"), on(WORKER_1, "db", "d1"),
                  on(WORKER_1, "web", "w1", slot=1), on(WORKER_2, "web", "w2", slot=2),
                  on(WORKER_1, "bare", "b1")])
    assert M.plan_drain(snap, snap.node(WORKER_1)).as_json() == {
        "node": {"id": WORKER_1, "hostname": "worker-1"},
        "moves": [{"service": "bare", "tasks": ["b1"], "replicas": 1,
                   "note": "no health check: Swarm counts a new task as running when its "
                           "container starts, so requests may reach it before it serves"},
                  {"service": "web", "tasks": ["w1"], "replicas": 2, "note": None}],
        "left": [{"service": "agent", "task": "g1",
                  "why": "a global service runs a task on every node: Swarm's drain stops "
                         "this one"}],
        "blocked": [{"service": "db", "task": "d1",
                     "why": "keeps data on worker-1 (local volume db-data at /data): a task "
                            "started elsewhere would start without it "
                            "(swarmguard.stateful=allow moves it anyway)"}]}


def test_a_job_is_left_to_swarms_drain_which_stops_it():
    job = svc("backup")
    job["Spec"]["Mode"] = {"ReplicatedJob": {}}
    snap = world([job, svc("web")], [on(WORKER_1, "backup", "j1"), on(WORKER_1, "web", "t1")])
    plan = M.plan_drain(snap, snap.node(WORKER_1))
    assert plan.left == (M.Left("backup", "j1", "a replicated-job service runs to completion: "
                                                "Swarm's drain stops it"),)
    assert [m.service for m in plan.moves] == ["web"]


def test_a_service_left_or_blocked_does_not_keep_the_next_ones_from_moving():
    volume = {"Type": "volume", "Source": "v", "Target": "/data"}
    snap = world([svc("agent", replicas=None), svc("db", mounts=[volume]), svc("web")],
                 [on(WORKER_1, "agent", "g1"), on(WORKER_1, "db", "d1"), on(WORKER_1, "web", "t1")])
    plan = M.plan_drain(snap, snap.node(WORKER_1))
    assert [m.service for m in plan.moves] == ["web"]
    assert [x.service for x in plan.left] == ["agent"]
    assert [x.service for x in plan.blocked] == ["db"]


def test_a_blocked_task_says_why_each_other_node_cannot_take_it():
    snap = world([svc("web")], [on(WORKER_1, "web", "t1")],
                 nodes(worker_2={"state": "down"}, worker_3={"availability": "drain"}))
    [blocked] = M.plan_drain(snap, snap.node(WORKER_1)).blocked
    assert blocked.why == ("no other node can take it (manager-1 does not meet node.role==worker, "
                           "node.hostname!=worker-1; worker-2 is down/active; "
                           "worker-3 is ready/drain)")


def test_a_node_alone_in_the_swarm_has_nowhere_to_send_its_tasks():
    snap = world([svc("web")], [on(WORKER_1, "web", "t1")], [node_dict(WORKER_1, "worker-1")])
    [blocked] = M.plan_drain(snap, snap.node(WORKER_1)).blocked
    assert blocked.why == "no other node can take it (no other node takes work)"


def test_an_unreadable_stateful_label_blocks_the_task_with_the_labels_problem():
    snap = world([svc("web", labels={"swarmguard.stateful": "yes"})], [on(WORKER_1, "web", "t1")])
    [blocked] = M.plan_drain(snap, snap.node(WORKER_1)).blocked
    assert blocked.why == "label swarmguard.stateful='yes' is not 'allow'"


# -- refusals -------------------------------------------------------------------------------

def test_a_node_is_found_by_hostname_or_id_and_an_unknown_one_is_a_404():
    snap = world([], [])
    assert M.find_node(snap, "worker-2").id == WORKER_2
    assert M.find_node(snap, WORKER_3).hostname == "worker-3"
    with pytest.raises(M.Refused) as refused:
        M.find_node(snap, "worker-9")
    assert refused.value.status == 404
    assert "no node is called worker-9" in refused.value.reason
    assert "worker-1" in refused.value.reason


def test_a_hostname_two_nodes_share_must_be_given_as_an_id():
    node_list = nodes(worker_2={}) + [node_dict("w9", "worker-2")]
    with pytest.raises(M.Refused) as refused:
        M.find_node(world([], [], node_list), "worker-2")
    assert refused.value.status == 409 and "give the node's ID" in refused.value.reason


@pytest.mark.parametrize("overrides, expected", [
    ({"worker_1": {"labels": {M.DRAIN_STATE: M.MOVING, M.DRAIN_AT: "x"}}}, "already being drained"),
    ({"worker_1": {"availability": "drain"}}, "already drained"),
    ({"worker_2": {"availability": "drain"}, "worker_3": {"state": "down"},
      "manager_1": {"availability": "pause"}}, "the last node that takes work"),
])
def test_a_drain_is_refused_when_it_cannot_be_done(overrides, expected):
    snap = world([], [], nodes(**overrides))
    assert expected in M.drain_refusal(snap, snap.node(WORKER_1))


def test_a_worker_can_be_drained():
    snap = world([], [])
    assert M.drain_refusal(snap, snap.node(WORKER_1)) is None


def test_the_only_manager_is_not_taken_down_for_maintenance():
    snap = world([], [])
    why = M.drain_refusal(snap, snap.node(MANAGER_1))
    assert "0 of 1 manager(s) stay reachable and the Raft quorum needs 1" in why


def test_one_of_three_managers_may_go_but_not_when_another_is_unreachable():
    def managers(second_reachability):
        out = nodes()
        for node_id, name, reach in (("m2", "manager-2", second_reachability),
                                     ("m3", "manager-3", "reachable")):
            data = node_dict(node_id, name, role="manager")
            data["ManagerStatus"] = {"Reachability": reach}
            out.append(data)
        return out

    healthy = world([], [], managers("reachable"))
    assert M.drain_refusal(healthy, healthy.node(MANAGER_1)) is None
    degraded = world([], [], managers("unreachable"))
    assert "1 of 3 manager(s) stay reachable and the Raft quorum needs 2" in \
        M.drain_refusal(degraded, degraded.node(MANAGER_1))


def test_the_refusals_say_which_nodes_there_are_and_which_ids_to_choose_from():
    with pytest.raises(M.Refused) as unknown:
        M.find_node(world([], []), "worker-9")
    assert unknown.value.reason == ("no node is called worker-9 (the swarm has manager-1, "
                                    "worker-1, worker-2, worker-3)")
    assert str(unknown.value) == unknown.value.reason
    with pytest.raises(M.Refused) as shared:
        M.find_node(world([], [], nodes() + [node_dict("w9", "worker-2")]), "worker-2")
    assert shared.value.reason == (f"2 nodes are called worker-2; give the node's ID "
                                   f"({WORKER_2}, w9)")


@pytest.mark.parametrize("overrides, expected", [
    ({"worker_1": {"labels": {M.DRAIN_STATE: M.MOVING, M.DRAIN_AT: "2026-12-04T09:00:00Z"}}},
     "worker-1 is already being drained (since 2026-12-04T09:00:00Z)"),
    ({"worker_1": {"labels": {M.DRAIN_STATE: M.DRAINED}, "availability": "drain"}},
     "worker-1 is already drained (availability drain)"),
    ({"worker_2": {"availability": "drain"}, "worker_3": {"state": "down"},
      "manager_1": {"availability": "pause"}},
     "worker-1 is the last node that takes work: its tasks would have nowhere to go"),
])
def test_a_refused_drain_says_why_in_a_sentence(overrides, expected):
    snap = world([], [], nodes(**overrides))
    assert M.drain_refusal(snap, snap.node(WORKER_1)) == expected


def test_with_four_managers_the_quorum_is_three():
    node_list = nodes()
    for node_id, name, reach in (("m2", "manager-2", "reachable"), ("m3", "manager-3", "reachable"),
                                 ("m4", "manager-4", "unreachable")):
        data = node_dict(node_id, name, role="manager")
        data["ManagerStatus"] = {"Reachability": reach}
        node_list.append(data)
    snap = world([], [], node_list)
    assert M.drain_refusal(snap, snap.node(MANAGER_1)) == (
        "manager-1 is a manager: without it 2 of 4 manager(s) stay reachable and the Raft "
        "quorum needs 3; add managers first (docker node promote)")


# -- moves ----------------------------------------------------------------------------------

def test_a_drain_move_excludes_the_node_and_keeps_the_users_constraints():
    snap = world([svc("web")], [on(WORKER_1, "web", "t1")])
    move = M.drain_move(snap, snap.service("web"), snap.node(WORKER_1))
    assert move.kind == M.DRAIN
    assert move.constraints == ("node.role==worker", "node.hostname!=worker-1")
    assert move.exclusion == "node.hostname!=worker-1"
    assert set(move.destinations) == {WORKER_2, WORKER_3}
    assert move.sentence == ("Moving web off worker-1 (drain): start-first, excluding "
                             "node.hostname!=worker-1")


def test_a_finished_move_whose_exclusion_stayed_is_found_and_one_in_flight_is_not():
    moved = svc("web", constraints=WORKERS + ["node.hostname!=worker-1"],
                labels={"swarmguard.placement-exclusion": "node.hostname!=worker-1",
                        "swarmguard.last-action": "drain"})
    migrated = svc("api", constraints=WORKERS + ["node.hostname!=worker-1"],
                   labels={"swarmguard.placement-exclusion": "node.hostname!=worker-1",
                           "swarmguard.last-action": "migrate"})
    halfway = svc("db", constraints=WORKERS + ["node.hostname!=worker-1"],
                  labels={"swarmguard.placement-exclusion": "node.hostname!=worker-1",
                          "swarmguard.last-action": "drain"})
    snap = world([moved, migrated, halfway],
                 [on(WORKER_2, "web", "w"), on(WORKER_2, "api", "a"), on(WORKER_1, "db", "d")])
    assert M.leftover_exclusions(snap, frozenset()) == [("web", "node.hostname!=worker-1")]
    assert M.leftover_exclusions(snap, frozenset({"web"})) == []


def test_a_leftover_exclusion_stays_while_swarmguard_cannot_read_the_services_constraints():
    # Lifting is safe only when every task meets the constraints; unreadable, it may not.
    odd = svc("web", constraints=WORKERS + ["node.unknown==x", "node.hostname!=worker-1"],
              labels={"swarmguard.placement-exclusion": "node.hostname!=worker-1",
                      "swarmguard.last-action": "drain"})
    snap = world([odd], [on(WORKER_2, "web", "w")])
    assert M.leftover_exclusions(snap, frozenset()) == []


def test_a_drain_is_over_only_once_its_own_exclusions_are_lifted():
    exclusion = {"swarmguard.placement-exclusion": "node.hostname!=worker-1"}
    snap = world([svc("drained", labels={**exclusion, "swarmguard.last-action": "drain"}),
                  svc("migrated", labels={**exclusion, "swarmguard.last-action": "migrate"}),
                  svc("rebalanced", labels={**exclusion, "swarmguard.last-action": "rebalance"}),
                  svc("other", labels={"swarmguard.placement-exclusion": "node.hostname!=worker-2",
                                       "swarmguard.last-action": "drain"}),
                  svc("plain")], [])
    assert M.exclusions_of_drain(snap, snap.node(WORKER_1)) == ["drained"]


# -- rebalance ------------------------------------------------------------------------------

def test_rebalance_moves_from_the_busiest_node_to_an_empty_one_until_within_tolerance():
    snap = world([svc(n) for n in "abcd"], [on(WORKER_1, n, f"t{n}") for n in "abcd"])
    plan = M.plan_rebalance(snap, frozenset(), tolerance=1)
    # worker-1 4, worker-2 0, worker-3 0: two moves off worker-1 make it 2, 1, 1.
    assert [(m.service, m.from_node.hostname) for m in plan.moves] == [("a", "worker-1"),
                                                                       ("b", "worker-1")]
    assert [n.hostname for n in plan.moves[0].to] == ["worker-2", "worker-3"]
    assert [n.hostname for n in plan.moves[1].to] == ["worker-3"]
    assert plan.as_json()["counts"] == {"worker-1": 4, "worker-2": 0, "worker-3": 0}


def test_one_move_is_enough_when_it_brings_the_spread_within_tolerance():
    snap = world([svc(n) for n in "abcd"],
                 [on(WORKER_1, n, f"t{n}") for n in "abc"] + [on(WORKER_2, "d", "td")])
    assert [m.service for m in M.plan_rebalance(snap, frozenset(), tolerance=1).moves] == ["a"]


def test_rebalance_never_lands_on_a_hot_node():
    snap = world([svc(n) for n in "abc"], [on(WORKER_1, n, f"t{n}") for n in "abc"],
                 nodes(worker_3={"availability": "drain"}))
    plan = M.plan_rebalance(snap, frozenset({WORKER_2}), tolerance=1)
    assert plan.moves == ()
    assert "can move to a lighter node" in plan.why_not


def test_rebalance_moves_only_opted_in_tasks_that_are_safe_to_move():
    volume = {"Type": "volume", "Source": "v", "Target": "/data"}
    snap = world([svc("off", enabled=False), svc("bare", healthcheck={"Test": ["NONE"]}),
                  svc("db", mounts=[volume]), svc("ok")],
                 [on(WORKER_1, n, f"t{n}") for n in ("off", "bare", "db", "ok")],
                 nodes(worker_3={"availability": "drain"}))
    plan = M.plan_rebalance(snap, frozenset(), tolerance=1)
    assert [m.service for m in plan.moves] == ["ok"]


def test_rebalance_within_tolerance_does_nothing_and_says_so():
    snap = world([svc("a"), svc("b")], [on(WORKER_1, "a", "ta"), on(WORKER_2, "b", "tb")])
    plan = M.plan_rebalance(snap, frozenset(), tolerance=1)
    assert plan.moves == ()
    assert plan.why_not == "the nodes are within 1 task(s) of each other (spread 1)"


def test_rebalance_compares_only_nodes_that_could_run_opted_in_services():
    # The manager runs nothing (the services are workers only): it is not "empty".
    snap = world([svc("a"), svc("b")], [on(WORKER_1, "a", "ta"), on(WORKER_2, "b", "tb"),
                                        ], nodes(worker_3={"availability": "drain"}))
    assert set(M.plan_rebalance(snap, frozenset(), 0).counts) == {WORKER_1, WORKER_2}


def test_a_service_moved_once_in_a_rebalance_is_not_moved_again():
    snap = world([svc("a", replicas=2)], [on(WORKER_1, "a", "t1", slot=1),
                                          on(WORKER_1, "a", "t2", slot=2)])
    assert len(M.plan_rebalance(snap, frozenset(), 0).moves) == 1
    assert M.plan_rebalance(snap, frozenset(), 0, already_moved={"a"}).moves == ()


def test_a_rebalance_move_steers_the_task_without_touching_the_services_other_tasks():
    snap = world([svc("a", replicas=2), svc("b"), svc("c")],
                 [on(WORKER_1, "a", "t1", slot=1), on(WORKER_2, "a", "t2", slot=2),
                  on(WORKER_1, "b", "tb"), on(WORKER_1, "c", "tc")])
    [planned, *_] = M.plan_rebalance(snap, frozenset(), 1).moves
    assert planned.service == "a" and [n.hostname for n in planned.to] == ["worker-3"]
    move = M.rebalance_move(snap, snap.service("a"), planned)
    # worker-2 runs a's other task: excluding it would replace that task too.
    assert move.exclusion == "node.hostname!=worker-1,node.hostname!=manager-1"
    assert move.tasks == ("t1",)


def test_a_rebalance_plan_as_json_counts_by_hostname_in_hostname_order():
    # Node IDs sort the other way round from their hostnames.
    node_list = [node_dict("zz-id", "alpha"), node_dict("aa-id", "omega")]
    snap = world([svc("a"), svc("b"), svc("c")],
                 [on("zz-id", n, f"t{n}") for n in "abc"], node_list)
    answer = M.plan_rebalance(snap, frozenset(), 1).as_json()
    assert list(answer["counts"].items()) == [("alpha", 3), ("omega", 0)]
    assert answer == {"tolerance": 1, "counts": {"alpha": 3, "omega": 0},
                      "moves": [{"service": "a", "task": "ta", "from": "alpha", "to": ["omega"]}],
                      "why_not": None}


def test_each_planned_move_lands_where_the_plan_counted_the_earlier_ones():
    # worker-1 6, worker-2 1, worker-3 0: each move goes to the lightest node as counted
    # after the moves before it, until the spread is within 1.
    snap = world([svc(n) for n in "abcdefg"],
                 [on(WORKER_1, n, f"t{n}") for n in "abcdef"] + [on(WORKER_2, "g", "tg")])
    assert M.plan_rebalance(snap, frozenset(), 1).as_json() == {
        "tolerance": 1, "counts": {"worker-1": 6, "worker-2": 1, "worker-3": 0},
        "moves": [{"service": "a", "task": "ta", "from": "worker-1", "to": ["worker-3"]},
                  {"service": "b", "task": "tb", "from": "worker-1",
                   "to": ["worker-2", "worker-3"]},
                  {"service": "c", "task": "tc", "from": "worker-1", "to": ["worker-3"]}],
        "why_not": None}


def test_a_spread_equal_to_the_tolerance_is_left_alone():
    snap = world([svc(n) for n in "abcde"],
                 [on(WORKER_1, n, f"t{n}") for n in "abc"] + [on(WORKER_2, "d", "td"),
                                                              on(WORKER_3, "e", "te")])
    plan = M.plan_rebalance(snap, frozenset(), tolerance=2)
    assert plan.moves == ()
    assert plan.why_not == "the nodes are within 2 task(s) of each other (spread 2)"


def test_with_no_tolerance_a_task_is_not_moved_to_a_node_only_one_task_lighter():
    # worker-1 2, worker-2 1, worker-3 1: a move would only swap which node is busiest.
    snap = world([svc(n) for n in "abcd"],
                 [on(WORKER_1, "a", "ta"), on(WORKER_1, "b", "tb"), on(WORKER_2, "c", "tc"),
                  on(WORKER_3, "d", "td")])
    plan = M.plan_rebalance(snap, frozenset(), tolerance=0)
    assert plan.moves == ()
    assert plan.why_not == ("no task on worker-1 can move to a lighter node (opted in, safe to "
                            "move, no task of its service there, node not hot)")


def test_fewer_than_two_nodes_taking_work_is_nothing_to_rebalance():
    snap = world([svc("a"), svc("b")], [on(WORKER_1, "a", "ta"), on(WORKER_1, "b", "tb")],
                 nodes(worker_2={"availability": "drain"}, worker_3={"state": "down"}))
    assert M.plan_rebalance(snap, frozenset(), 1).as_json() == {
        "tolerance": 1, "counts": {"worker-1": 2}, "moves": [],
        "why_not": "fewer than two nodes take work"}


def test_a_service_not_opted_in_does_not_make_a_node_count_for_the_rebalance():
    # "free" may run anywhere, the manager too; only the opted-in "a" says where work goes.
    snap = world([svc("a"), svc("free", constraints=[], enabled=False)],
                 [on(WORKER_1, "a", "ta")])
    assert set(M.plan_rebalance(snap, frozenset(), 0).counts) == {WORKER_1, WORKER_2, WORKER_3}


def test_rebalance_passes_over_services_it_may_not_move_and_moves_the_next():
    # Sorted by name, each of these comes before "z", the one that may move.
    snap = world([svc("agent", replicas=None), svc("bare", healthcheck={"Test": ["NONE"]}),
                  svc("busy", update_state="updating"),
                  svc("odd", labels={"swarmguard.stateful": "yes"}), svc("z")],
                 [on(WORKER_1, n, f"t{n}") for n in ("agent", "bare", "busy", "odd", "z")],
                 nodes(worker_3={"availability": "drain"}))
    assert [m.service for m in M.plan_rebalance(snap, frozenset(), 1).moves] == ["z"]


def test_a_rebalance_held_back_by_swarms_own_updates_says_which_to_wait_for():
    # Right after an undrain: Swarm is still updating the services it put back.
    snap = world([svc("a", update_state="updating"), svc("b", update_state="updating"), svc("c")],
                 [on(WORKER_1, n, f"t{n}") for n in "ab"] + [on(WORKER_2, "c", "tc")])
    plan = M.plan_rebalance(snap, frozenset(), 0)
    assert plan.moves == ()
    assert plan.why_not == ("no task on worker-1 can move to a lighter node (opted in, safe to "
                            "move, no task of its service there, node not hot); Swarm is still "
                            "updating a, b there: rebalance again once their updates have "
                            "finished")


def test_a_rebalance_held_back_by_one_services_update_says_to_wait_for_it():
    # b may not move either, being stateful, but b has no update to wait for.
    snap = world([svc("a", update_state="updating"),
                  svc("b", labels={"swarmguard.stateful": "yes"}), svc("c")],
                 [on(WORKER_1, n, f"t{n}") for n in "ab"] + [on(WORKER_2, "c", "tc")])
    plan = M.plan_rebalance(snap, frozenset(), 0)
    assert plan.moves == ()
    assert plan.why_not.endswith("; Swarm is still updating a there: rebalance again once its "
                                 "update has finished")


def test_a_rebalance_never_steers_a_task_to_a_node_its_constraints_refuse():
    snap = world([svc("a", constraints=WORKERS + ["node.hostname!=worker-3"]), svc("b"), svc("c"),
                  svc("d")],
                 [on(WORKER_1, n, f"t{n}") for n in "abc"] + [on(WORKER_2, "d", "td")])
    planned = M.plan_rebalance(snap, frozenset(), 1).moves[0]
    assert planned.service == "a" and [n.hostname for n in planned.to] == ["worker-2"]


def test_a_node_running_the_services_task_is_no_destination_but_one_where_it_stops_is():
    # worker-1 4 tasks, worker-2 1 (a's other replica), worker-3 1 (e), and a's old task
    # on worker-3 is shutting down.
    snap = world([svc("a", replicas=2), svc("b"), svc("c"), svc("d"), svc("e")],
                 [on(WORKER_1, "a", "a1", slot=1), on(WORKER_2, "a", "a2", slot=2),
                  on(WORKER_3, "a", "a0", slot=1, desired="shutdown"),
                  on(WORKER_1, "b", "tb"), on(WORKER_1, "c", "tc"), on(WORKER_1, "d", "td"),
                  on(WORKER_3, "e", "te")])
    planned = M.plan_rebalance(snap, frozenset(), 1).moves[0]
    assert planned.service == "a" and [n.hostname for n in planned.to] == ["worker-3"]


def test_a_rebalance_move_is_of_kind_rebalance():
    snap = world([svc("a"), svc("b")], [on(WORKER_1, "a", "ta"), on(WORKER_1, "b", "tb")])
    [planned] = M.plan_rebalance(snap, frozenset(), 0).moves
    move = M.rebalance_move(snap, snap.service("a"), planned)
    assert move.kind == M.REBALANCE
    assert move.sentence.startswith("Moving a off worker-1 (rebalance): start-first, excluding ")


def test_a_rebalance_move_may_land_on_each_of_the_planned_nodes_named_by_hostname():
    node_list = nodes()
    node_list[3]["Description"]["Hostname"] = ""  # worker-3's
    snap = world([svc("a"), svc("b"), svc("c")],
                 [on(WORKER_1, "a", "ta"), on(WORKER_1, "b", "tb"), on(WORKER_1, "c", "tc")],
                 node_list)
    [planned, *_] = M.plan_rebalance(snap, frozenset(), 1).moves
    move = M.rebalance_move(snap, snap.service("a"), planned)
    assert move.destinations == (WORKER_2, WORKER_3)
    # In the same order, for the budget's messages; a node without a hostname by its ID.
    assert move.destination_names == ("worker-2", WORKER_3)


def test_a_move_knows_every_task_its_service_meant_to_run_before_it():
    snap = world([svc("a", replicas=2), svc("b"), svc("c")],
                 [on(WORKER_1, "a", "t1", slot=1), on(WORKER_2, "a", "t2", slot=2),
                  on(WORKER_1, "a", "gone", slot=3, desired="shutdown"),
                  on(WORKER_1, "b", "tb"), on(WORKER_1, "c", "tc")])
    [planned, *_] = M.plan_rebalance(snap, frozenset(), 1).moves
    assert set(M.rebalance_move(snap, snap.service("a"), planned).known_tasks) == {"t1", "t2"}
    assert set(M.drain_move(snap, snap.service("a"), snap.node(WORKER_1)).known_tasks) == {"t1", "t2"}
