"""Node maintenance carried out (receiver/maintainer.py) through the receiver's API
(/maintenance/drain, /maintenance/undrain, /maintenance/rebalance, /status), on a scripted
Docker: what is written, in which order, and that a refused or bad request writes nothing.
The lab tests (tests/integration/test_maintenance_lab.py) run it against a real swarm."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest

from receiver import maintenance as M
from receiver.app import create_app
from receiver.config import Settings
from receiver.worker import InlineExecutor
from tests.fake_docker_api_client import (MANAGER_1, WORKER_1, WORKER_2, WORKER_3, FakeDockerAPI,
                                          api_error, node_dict, service_dict, task_dict)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 12, 4, 10, 0, 0, tzinfo=timezone.utc)


def swarm(services=("web",), on=WORKER_1, **service_kwargs):
    nodes = [node_dict(MANAGER_1, "manager-1", role="manager"), node_dict(WORKER_1, "worker-1"),
             node_dict(WORKER_2, "worker-2"), node_dict(WORKER_3, "worker-3")]
    nodes[0]["ManagerStatus"] = {"Reachability": "reachable", "Leader": True}
    service_kwargs.setdefault("constraints", ["node.role==worker"])
    svcs = [service_dict(name, f"id-{name}", **service_kwargs) for name in services]
    tasks = [task_dict(f"t-{name}", f"id-{name}", on) for name in services]
    api = FakeDockerAPI(services=svcs, tasks=tasks, nodes=nodes)
    api.after_update = swarm_moves_excluded_tasks
    return api


def swarm_moves_excluded_tasks(api, service_id, kwargs):
    """What swarmkit does with a placement change: every running task whose node no longer
    meets the constraints is replaced on another node (worker-3 here, as its scheduler
    might); the others stay."""
    constraints = ((kwargs["task_template"].get("Placement") or {}).get("Constraints") or [])
    excluded = {c.split("!=", 1)[1] for c in constraints if c.startswith("node.hostname!=")}
    for task in list(api.task_list):
        host = api.node(task["NodeID"])["Description"]["Hostname"]
        if task["ServiceID"] == service_id and task["DesiredState"] == "running" and host in excluded:
            api.move_task(task["ID"], WORKER_3)


def make(api, **settings):
    settings.setdefault("watch_interval", 0.01)
    app = create_app(Settings(token=TOKEN, **settings), api, executor=InlineExecutor(),
                     clock=lambda: NOW, sleep=lambda s: None, readiness_thread=False,
                     maintenance_thread=False)
    return app, app.extensions["swarmguard"]["maintainer"]


def post(app, path, payload, headers=AUTH, raw=None):
    data = raw if raw is not None else json.dumps(payload)
    return app.test_client().post(path, data=data, headers=headers,
                                  content_type="application/json")


def writes(api):
    return [name for name, _, _ in api.calls if name in ("update_service", "update_node")]


def node_labels(api, node_id):
    return api.node(node_id)["Spec"]["Labels"]


# -- drain -----------------------------------------------------------------------------------

def test_a_drain_pauses_the_node_moves_each_service_start_first_then_sets_drain():
    api = swarm(services=("api", "web"))
    app, maintainer = make(api)
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 202
    assert [m["service"] for m in answer.get_json()["plan"]["moves"]] == ["api", "web"]
    spec = api.node(WORKER_1)["Spec"]
    assert spec["Availability"] == "pause"
    assert spec["Labels"][M.DRAIN_STATE] == M.MOVING
    assert writes(api) == ["update_node"]

    maintainer.tick()  # one move per tick: api
    maintainer.tick()  # web
    maintainer.tick()  # nothing left: drain
    assert api.node(WORKER_1)["Spec"]["Availability"] == "drain"
    assert node_labels(api, WORKER_1)[M.DRAIN_STATE] == M.DRAINED
    # Per service: the move (start-first, worker-1 excluded), then the exclusion lifted.
    moves = [kw for kw in api.updates if "node.hostname!=worker-1" in
             kw["task_template"]["Placement"]["Constraints"]]
    assert [kw["name"] for kw in moves] == ["api", "web"]
    assert all(kw["update_config"]["Order"] == "start-first" for kw in moves)
    assert moves[0]["labels"]["swarmguard.last-action"] == "drain"
    for name in ("api", "web"):
        spec = api.inspect_service(name)["Spec"]
        assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==worker"]
        assert "swarmguard.placement-exclusion" not in spec["Labels"]
    assert writes(api) == ["update_node"] + ["update_service"] * 4 + ["update_node"]
    status = maintainer.status()
    drain = next(n["drain"] for n in status["nodes"] if n["hostname"] == "worker-1")
    assert drain["state"] == M.DRAINED
    assert [(m["service"], m["result"], m["to"]) for m in drain["moved"]] == [
        ("api", "success", "worker-3"), ("web", "success", "worker-3")]


def test_each_move_is_a_decision_and_an_outcome_event_and_the_drain_has_its_own():
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    maintainer.tick()
    events = app.extensions["swarmguard"]["events"].since(0)[0]
    seen = [(e["type"], e["result"], e["kind"], e["service"]) for e in events
            if e["type"] != "started"]
    assert seen == [("maintenance", "started", "drain", None),
                    ("decision", "act", "drain", "web"),
                    ("outcome", "success", "drain", "web"),
                    ("maintenance", "finished", "drain", None)]
    assert all(e["node"] == WORKER_1 for e in events if e["type"] != "started")


def test_a_dry_run_plans_and_writes_nothing():
    api = swarm()
    app, maintainer = make(api)
    answer = post(app, "/maintenance/drain", {"node": "worker-1", "dry_run": True})
    assert answer.status_code == 200
    assert answer.get_json()["changed"] is False
    assert answer.get_json()["plan"]["moves"][0]["service"] == "web"
    maintainer.tick()
    assert writes(api) == []


def test_a_receiver_in_dry_run_mode_only_plans_a_drain():
    api = swarm()
    app, _ = make(api, dry_run=True)
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 200 and answer.get_json()["dry_run"] is True
    assert writes(api) == []


def test_tasks_no_other_node_can_take_refuse_the_drain_and_force_leaves_them_to_swarm():
    api = swarm(constraints=["node.hostname==worker-1"])
    app, maintainer = make(api)
    refused = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert refused.status_code == 409
    assert "no other node can take 1 task(s) on worker-1" in refused.get_json()["error"]
    assert refused.get_json()["plan"]["blocked"][0]["service"] == "web"
    assert writes(api) == []

    forced = post(app, "/maintenance/drain", {"node": "worker-1", "force": True})
    assert forced.status_code == 202
    assert node_labels(api, WORKER_1)[M.DRAIN_FORCE] == "true"
    maintainer.tick()
    assert api.node(WORKER_1)["Spec"]["Availability"] == "drain"
    assert api.updates == []  # the pinned service was left to Swarm


@pytest.mark.parametrize("payload, status, words", [
    ({"node": "worker-9"}, 404, "no node is called worker-9"),
    ({"node": "manager-1"}, 409, "Raft quorum"),
    ({}, 400, "node is required"),
    ({"node": ""}, 400, "node is required"),
    ({"node": 7}, 400, "node must be a JSON string"),
    ({"node": "worker-1", "force": "yes"}, 400, "force must be a JSON boolean"),
    ({"node": "worker-1", "dryrun": True}, 400, "unknown field(s) 'dryrun'"),
    ({"node": "x" * 300}, 400, "at most 256"),
    ({"node": "worker-1\n"}, 400, "printable"),
    (["worker-1"], 400, "a JSON object"),
])
def test_bad_drain_requests_get_a_clear_error_and_change_nothing(payload, status, words):
    api = swarm()
    app, maintainer = make(api)
    answer = post(app, "/maintenance/drain", payload)
    assert answer.status_code == status
    assert words in answer.get_json()["error"]
    maintainer.tick()
    assert writes(api) == []


def test_requests_that_are_not_json_or_lack_the_token_are_refused_before_anything_is_read():
    api = swarm()
    app, _ = make(api)
    assert post(app, "/maintenance/drain", None, raw=b"{not json").status_code == 400
    assert post(app, "/maintenance/drain", {"node": "worker-1"}, headers={}).status_code == 401
    assert post(app, "/maintenance/rebalance", {}, headers={"Authorization": "Bearer no"}
                ).status_code == 401
    assert app.test_client().get("/status").status_code == 401
    assert app.test_client().post("/maintenance/drain", data="node=worker-1",
                                  headers=AUTH).status_code == 415
    assert post(app, "/maintenance/drain", None, raw=b" " * (2 << 20)).status_code == 413
    assert api.calls == []


def test_a_second_drain_of_the_same_node_is_refused():
    api = swarm()
    app, _ = make(api)
    assert post(app, "/maintenance/drain", {"node": "worker-1"}).status_code == 202
    again = post(app, "/maintenance/drain", {"node": WORKER_1})
    assert again.status_code == 409 and "already being drained" in again.get_json()["error"]
    assert writes(api) == ["update_node"]


def test_a_node_changed_between_read_and_write_is_a_conflict_and_nothing_is_written():
    api = swarm()
    app, _ = make(api)
    api.update_failures = [api_error(500, "rpc error: update out of sequence")]
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 409 and "nothing was changed" in answer.get_json()["error"]
    assert node_labels(api, WORKER_1) == {}


def test_docker_unreachable_is_a_503():
    import requests
    api = swarm()
    app, _ = make(api)
    api.nodes = lambda filters=None: (_ for _ in ()).throw(requests.exceptions.ConnectionError("down"))
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 503 and "Docker cannot be reached" in answer.get_json()["error"]


def test_a_restarted_receiver_finishes_a_drain_it_finds_in_the_nodes_labels():
    api = swarm(services=("api", "web"))
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()  # api moved; then the receiver dies
    _, successor = make(api)
    successor.tick()
    successor.tick()
    assert api.node(WORKER_1)["Spec"]["Availability"] == "drain"
    events = successor.events.since(0)[0]
    assert [e["result"] for e in events if e["type"] == "maintenance"] == ["resumed", "finished"]


def test_a_move_the_receiver_died_in_has_its_exclusion_lifted_by_the_next_one():
    api = swarm()
    svc = api.services["id-web"]
    svc["Spec"]["Labels"].update({"swarmguard.last-action": "drain",
                                  "swarmguard.placement-exclusion": "node.hostname!=worker-1"})
    svc["Spec"]["TaskTemplate"]["Placement"]["Constraints"].append("node.hostname!=worker-1")
    api.move_task("t-web", WORKER_2)
    _, maintainer = make(api)
    maintainer.tick()
    assert api.inspect_service("web")["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [
        "node.role==worker"]


def test_a_move_that_rolls_back_is_not_repeated_and_the_drain_waits_saying_why():
    api = swarm()

    def rolls_back(api, service_id, kwargs):
        # Swarm's rollback: the previous spec again, labels and constraints included.
        svc = api.services[service_id]
        svc["Spec"] = svc["PreviousSpec"]
        svc["UpdateStatus"] = {"State": "rollback_completed"}
    api.after_update = rolls_back
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    maintainer.tick()
    maintainer.tick()
    assert len(api.updates) == 1
    drain = next(n["drain"] for n in maintainer.status()["nodes"] if n["hostname"] == "worker-1")
    assert drain["state"] == M.MOVING
    assert "its move rolled back" in drain["problem"]
    assert api.node(WORKER_1)["Spec"]["Availability"] == "pause"


def test_an_alert_about_a_service_being_drained_waits_for_the_move():
    from receiver.decisions import decide_one
    from receiver.storm import StormLedger, Budgets
    from receiver.cluster import build_snapshot
    from tests.unit.test_receiver_decisions import alert, SETTINGS
    storm = StormLedger(Budgets(), 60)
    storm.begin("demo_web", "drain", WORKER_1, [WORKER_2], maintenance=True)
    api = swarm()
    snap = build_snapshot([service_dict("demo_web", "id-web")], api.task_list, api.node_list)
    skip = decide_one(alert(task="t-web"), snap, SETTINGS, NOW, storm.view())
    assert skip.reason == "in_progress" and "drain is moving demo_web" in skip.why
    storm.end("demo_web")  # an alert's handling does not end the drain's move
    assert storm.view().maintenance_move("demo_web") is not None
    storm.end("demo_web", maintenance=True)
    assert storm.view().moves == ()


# -- undrain and rebalance -------------------------------------------------------------------

def test_undrain_makes_the_node_take_work_again_and_ends_the_drain():
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    maintainer.tick()
    answer = post(app, "/maintenance/undrain", {"node": "worker-1"})
    assert answer.status_code == 200 and answer.get_json()["changed"] is True
    spec = api.node(WORKER_1)["Spec"]
    assert spec["Availability"] == "active" and spec["Labels"] == {}
    again = post(app, "/maintenance/undrain", {"node": "worker-1"})
    assert again.get_json() == {"dry_run": False, "changed": False,
                                "message": "worker-1 already takes work"}


def test_undrain_dry_run_writes_nothing():
    api = swarm()
    api.node(WORKER_1)["Spec"]["Availability"] = "drain"
    app, _ = make(api)
    answer = post(app, "/maintenance/undrain", {"node": "worker-1", "dry_run": True})
    assert answer.get_json()["message"].startswith("would set worker-1")
    assert writes(api) == []


def test_rebalance_moves_tasks_to_the_empty_node_and_lifts_its_steering():
    api = swarm(services=("a", "b", "c", "d"))
    for name in ("c", "d"):
        api.move_task(f"t-{name}", WORKER_2)
    app, maintainer = make(api)
    dry = post(app, "/maintenance/rebalance", {"dry_run": True})
    assert dry.status_code == 200
    assert dry.get_json()["plan"]["counts"] == {"worker-1": 2, "worker-2": 2, "worker-3": 0}
    assert writes(api) == []
    started = post(app, "/maintenance/rebalance", {})
    assert started.status_code == 202
    assert post(app, "/maintenance/rebalance", {}).status_code == 409  # one at a time
    for _ in range(4):
        maintainer.tick()
    status = maintainer.status()
    assert status["rebalance"]["state"] == "finished"
    counts = {n["hostname"]: n["tasks"] for n in status["nodes"]}
    assert counts["worker-3"] == 1
    assert sorted([counts["worker-1"], counts["worker-2"]]) == [1, 2]
    for name in "abcd":
        assert api.inspect_service(name)["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [
            "node.role==worker"]


def test_status_shows_nodes_opted_in_services_and_recent_decisions():
    api = swarm(services=("web",))
    api.services["id-web"]["Spec"]["Labels"]["swarmguard.last-action"] = "migrate"
    off = service_dict("other", "id-other", enabled=False)
    api.services["id-other"] = copy.deepcopy(off)
    app, _ = make(api)
    answer = app.test_client().get("/status", headers=AUTH)
    assert answer.status_code == 200
    status = answer.get_json()
    assert [n["hostname"] for n in status["nodes"]] == ["manager-1", "worker-1", "worker-2",
                                                         "worker-3"]
    assert [(s["name"], s["running"], s["last_action"]) for s in status["services"]] == [
        ("web", 1, "migrate")]
    assert status["in_flight"] == [] and status["rebalance"] is None
