"""Node maintenance carried out (receiver/maintainer.py) through the receiver's API
(/maintenance/drain, /maintenance/undrain, /maintenance/rebalance, /status), on a scripted
Docker: what is written, in which order, and that a refused or bad request writes nothing.
The lab tests (tests/integration/test_maintenance_lab.py) run it against a real swarm."""
from __future__ import annotations

import copy
import threading
import json
import logging
from datetime import datetime, timezone

import pytest
import requests

from receiver import maintenance as M
from receiver.actuator import Actuator
from receiver.app import create_app, receiver_of
from receiver.config import Settings
from receiver.events import EventLog
from receiver.maintainer import IDLE_INTERVAL_S, Maintainer
from receiver.metrics import Metrics
from receiver.reporting import Reporter
from receiver.storm import StormLedger
from tests.inline_executor import InlineExecutor
from tests.fake_docker_api_client import (MANAGER_1, WORKER_1, WORKER_2, WORKER_3, FakeDockerAPI,
                                          Landed, api_error, node_dict, service_dict, task_dict,
                                          unreadable_answers)

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


def swarm_spreads_replaced_tasks(api, service_id, kwargs):
    """Swarm's scheduler, closer: each running task whose node no longer meets the
    constraints is replaced on the active node meeting them that runs fewest of the
    service's tasks (then by hostname)."""
    constraints = ((kwargs["task_template"].get("Placement") or {}).get("Constraints") or [])

    def meets(node):
        for c in constraints:
            key, op, value = (c.partition("!=") if "!=" in c else c.partition("=="))
            actual = {"node.hostname": node["Description"]["Hostname"],
                      "node.role": node["Spec"]["Role"]}[key]
            if (actual == value) != (op == "=="):
                return False
        return True

    def running_here(node):
        return sum(1 for t in api.task_list if t["ServiceID"] == service_id
                   and t["DesiredState"] == "running" and t["NodeID"] == node["ID"])

    for task in list(api.task_list):
        if task["ServiceID"] != service_id or task["DesiredState"] != "running":
            continue
        if not meets(api.node(task["NodeID"])):
            active = [n for n in api.node_list if n["Spec"]["Availability"] == "active"]
            to = min((n for n in active if meets(n)),
                     key=lambda n: (running_here(n), n["Description"]["Hostname"]))
            api.move_task(task["ID"], to["ID"])


def make(api, **settings):
    settings.setdefault("watch_interval", 0.01)
    app = create_app(Settings(token=TOKEN, **settings), api, executor=InlineExecutor(),
                     clock=lambda: NOW, sleep=lambda s: None, readiness_thread=False,
                     maintenance_thread=False)
    maintainer = receiver_of(app).maintainer
    # A move's seconds by a clock of the test's: 10 ms per reading.
    maintainer.actuator.monotonic = ticking()
    return app, maintainer


def ticking(start=100.0, step=0.01):
    """A monotonic clock that moves `step` seconds each time it is read."""
    now = [start - step]

    def clock():
        now[0] += step
        return now[0]
    return clock


def post(app, path, payload, headers=AUTH, raw=None):
    data = raw if raw is not None else json.dumps(payload)
    return app.test_client().post(path, data=data, headers=headers,
                                  content_type="application/json")


def writes(api):
    return [name for name, _, _ in api.calls if name in ("update_service", "update_node")]


def node_labels(api, node_id):
    return api.node(node_id)["Spec"]["Labels"]


STARTED_AT = "2026-12-04T10:00:00.000000Z"  # NOW, as the drain-at label and status write it
EARLIER = "2026-12-04T09:00:00.000000Z"


def cluster(services, tasks):
    """The four nodes of swarm(), with these services and tasks (service_dict, task_dict)."""
    api = swarm(services=())
    api.services.update({s["ID"]: copy.deepcopy(s) for s in services})
    api.task_list.extend(copy.deepcopy(t) for t in tasks)
    return api


def draining(api, node_id, at=EARLIER, force=False):
    """The node as a drain (this receiver's or another's) leaves it: paused and labelled."""
    spec = api.node(node_id)["Spec"]
    spec["Availability"] = "pause"
    spec["Labels"].update({M.DRAIN_STATE: M.MOVING, **({M.DRAIN_AT: at} if at else {}),
                           **({M.DRAIN_FORCE: "true"} if force else {})})


def stepped(*values):
    """A monotonic clock: `values` in turn, then the last one for ever."""
    it = iter(values)
    return lambda: next(it, values[-1])


def events_of(app_or_maintainer, type=None):
    events = (app_or_maintainer.events if isinstance(app_or_maintainer, Maintainer)
              else receiver_of(app_or_maintainer).events)
    return [e for e in events.since(0)[0]
            if e["type"] != "started" and (type is None or e["type"] == type)]


def said(events):
    """What each event says, without its sequence number and time."""
    return [{k: v for k, v in e.items() if k not in ("seq", "at")} for e in events]


def maintenance_event(kind, result, node, message):
    return {"type": "maintenance", "alert": None, "service": None, "task": None, "node": node,
            "kind": kind, "result": result, "reason": None, "message": message,
            "starts_at": None, "received_at": None, "duration_s": None}


def drain_of(maintainer, hostname="worker-1"):
    return next(n["drain"] for n in maintainer.status()["nodes"] if n["hostname"] == hostname)


def docker_errors(app, operation):
    registry = receiver_of(app).metrics.registry
    return registry.get_sample_value("swarmguard_docker_errors_total", {"operation": operation})


def progress(state="moving", started_at=STARTED_AT, force=False, moved=(), remaining=(),
             current=None, problem=None):
    """A drain's or rebalance's `status` entry."""
    return {"state": state, "started_at": started_at, "force": force, "moved": list(moved),
            "remaining": list(remaining), "current": current, "problem": problem}


def without(entry, *keys):
    return {k: v for k, v in entry.items() if k not in keys}


def moved(service, task, to="worker-3", seconds=0.0, result="success", tasks=1, detail=None):
    return {"service": service, "tasks": tasks, "task": task, "to": to, "seconds": seconds,
            "result": result,
            "detail": detail or f"{tasks} task(s) running elsewhere (w3c7e5g3i1k9)"}


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


def drained_to_the_end():
    """worker-1 drained to the end: the swarm, the app and its maintainer."""
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    maintainer.tick()
    return api, app, maintainer


def test_each_move_is_a_decision_and_an_outcome_event_and_the_drain_has_its_own():
    _, app, _ = drained_to_the_end()
    events = receiver_of(app).events.since(0)[0]
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


LONG_FIELD = "a" + "x" * 70


@pytest.mark.parametrize("raw, error", [
    (b"{not json", "the body is not JSON"),
    (b'["worker-1"]', "the body must be a JSON object"),
    (b"", "node is required: a node's hostname or ID"),  # no body: no fields
    (b'{"node": "  "}', "node is required: a node's hostname or ID"),
    (json.dumps({"node": "worker-1", **{k: 1 for k in (LONG_FIELD, "b", "c", "d", "e", "f")}}
                ).encode(),
     f"unknown field(s) {LONG_FIELD[:64]!r}, 'b', 'c', 'd', 'e'; this request takes node, "
     f"force, dry_run"),
    (json.dumps({"node": "w" * 257}).encode(),
     "node must be a hostname or ID: at most 256 printable characters"),
])
def test_a_bad_drain_request_gets_a_400_that_says_exactly_what_is_wrong(raw, error):
    api = swarm()
    app, _ = make(api)
    answer = post(app, "/maintenance/drain", None, raw=raw)
    assert (answer.status_code, answer.get_json()) == (400, {"error": error})
    assert api.calls == []


def test_a_node_name_of_256_characters_is_looked_for():
    api = swarm()
    app, _ = make(api)
    answer = post(app, "/maintenance/drain", {"node": "w" * 256})
    assert answer.status_code == 404


def test_a_rebalance_request_may_have_no_body_and_names_its_one_field_when_refused():
    api = swarm(services=("a", "b", "c"))
    app, _ = make(api)
    refused = post(app, "/maintenance/rebalance", {"node": "worker-1"})
    assert refused.get_json() == {"error": "unknown field(s) 'node'; this request takes dry_run"}
    assert post(app, "/maintenance/rebalance", None, raw=b"").status_code == 202


def test_a_bad_requests_exception_says_its_reason():
    from receiver.maintenance_request import BadRequest, parse_request
    with pytest.raises(BadRequest) as bad:
        parse_request(b"{", ("dry_run",))
    assert str(bad.value) == bad.value.reason == "the body is not JSON"


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
    from tests.unit.test_receiver_decisions import alert, POLICY
    storm = StormLedger(Budgets(), 60)
    storm.begin("demo_web", "drain", WORKER_1, [WORKER_2], maintenance=True)
    api = swarm()
    snap = build_snapshot([service_dict("demo_web", "id-web")], api.task_list, api.node_list)
    skip = decide_one(alert(task="t-web"), snap, POLICY, NOW, storm.view())
    assert skip.reason == "in_progress" and "drain is moving demo_web" in skip.why
    storm.end("demo_web")  # an alert's handling does not end the drain's move
    assert storm.view().maintenance_move("demo_web") is not None
    storm.end("demo_web", maintenance=True)
    assert storm.view().moves == ()


def test_a_drain_answers_with_its_plan_and_labels_the_node_keeping_its_own_labels():
    api = swarm()
    # A drain-force label left behind (say, by hand) does not force this drain.
    api.node(WORKER_1)["Spec"]["Labels"].update({"zone": "a", M.DRAIN_FORCE: "true"})
    app, maintainer = make(api)
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 202
    assert answer.get_json() == {
        "dry_run": False, "changed": True,
        "plan": {"node": {"id": WORKER_1, "hostname": "worker-1"},
                 "moves": [{"service": "web", "tasks": ["t-web"], "replicas": 1, "note": None}],
                 "left": [], "blocked": []}}
    assert api.node(WORKER_1)["Spec"]["Availability"] == "pause"
    assert node_labels(api, WORKER_1) == {"zone": "a", M.DRAIN_STATE: M.MOVING,
                                          M.DRAIN_AT: STARTED_AT}
    assert said(events_of(app)) == [maintenance_event(
        "drain", "started", WORKER_1,
        "Draining worker-1: paused; moving 1 task(s) of 1 service(s) start-first")]
    assert drain_of(maintainer) == progress()


def test_a_drain_and_its_end_say_how_many_tasks_they_leave_to_swarm():
    api = cluster([service_dict("web", "id-web", constraints=["node.role==worker"]),
                   service_dict("pinned", "id-pinned", constraints=["node.hostname==worker-1"]),
                   service_dict("agent", "id-agent", replicas=None)],
                  [task_dict("t-web", "id-web", WORKER_1),
                   task_dict("t-pin", "id-pinned", WORKER_1),
                   task_dict("t-agent", "id-agent", WORKER_1)])
    api.node(WORKER_1)["Spec"]["Labels"]["zone"] = "a"
    app, maintainer = make(api)
    assert post(app, "/maintenance/drain", {"node": "worker-1", "force": True}).status_code == 202
    assert node_labels(api, WORKER_1) == {"zone": "a", M.DRAIN_STATE: M.MOVING,
                                          M.DRAIN_AT: STARTED_AT, M.DRAIN_FORCE: "true"}
    assert drain_of(maintainer) == progress(force=True)
    maintainer.tick()
    maintainer.tick()
    assert api.node(WORKER_1)["Spec"]["Availability"] == "drain"
    assert node_labels(api, WORKER_1) == {"zone": "a", M.DRAIN_STATE: M.DRAINED,
                                          M.DRAIN_AT: STARTED_AT, M.DRAIN_FORCE: "true"}
    assert [e["message"] for e in events_of(app, "maintenance")] == [
        "Draining worker-1: paused; moving 1 task(s) of 1 service(s) start-first, leaving 2 "
        "to Swarm",
        "Drained worker-1: 1 move(s) made; availability drain (Swarm stops the 2 task(s) left)"]


@pytest.mark.parametrize("force", [False, True])
def test_a_drain_says_so_when_it_leaves_only_global_tasks_or_only_blocked_ones_to_swarm(force):
    other = (service_dict("pinned", "id-other", constraints=["node.hostname==worker-1"]) if force
             else service_dict("agent", "id-other", replicas=None))
    api = cluster([service_dict("web", "id-web", constraints=["node.role==worker"]), other],
                  [task_dict("t-web", "id-web", WORKER_1),
                   task_dict("t-other", "id-other", WORKER_1)])
    app, _ = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1", "force": force})
    assert [e["message"] for e in events_of(app, "maintenance")] == [
        "Draining worker-1: paused; moving 1 task(s) of 1 service(s) start-first, leaving 1 "
        "to Swarm"]


def test_each_step_of_a_drain_is_an_event_and_status_shows_what_it_did():
    api = swarm()
    app, maintainer = make(api)
    maintainer.actuator.monotonic = stepped(100.0, 112.3456)  # the move takes 12.3456 s
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    maintainer.tick()
    sentence = "Moving web off worker-1 (drain): start-first, excluding node.hostname!=worker-1"
    move = {"alert": None, "service": "web", "task": "t-web", "node": WORKER_1, "kind": "drain",
            "message": sentence, "starts_at": None, "received_at": None}
    assert said(events_of(app)) == [
        maintenance_event(
            "drain", "started", WORKER_1,
            "Draining worker-1: paused; moving 1 task(s) of 1 service(s) start-first"),
        {"type": "decision", "result": "act", "reason": None, "duration_s": None, **move},
        {"type": "outcome", "result": "success",
         "reason": "1 task(s) running elsewhere (w3c7e5g3i1k9)", "duration_s": 12.3456, **move},
        maintenance_event("drain", "finished", WORKER_1,
                          "Drained worker-1: 1 move(s) made; availability drain")]
    assert drain_of(maintainer) == progress(state="drained",
                                            moved=[moved("web", "t-web", seconds=12.3)])


def test_ticks_after_a_drain_ended_change_nothing_here_or_in_a_restarted_receiver():
    api, app, maintainer = drained_to_the_end()
    done = drain_of(maintainer)
    calls = len(writes(api))
    maintainer.tick()
    assert drain_of(maintainer) == done
    _, successor = make(api)
    # What the labels say, until the successor has worked on it.
    assert drain_of(successor) == progress(state="drained")
    successor.tick()
    assert len(writes(api)) == calls
    assert drain_of(successor) == progress(state="drained")
    assert events_of(successor) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_drain_found_in_the_labels_is_resumed_with_the_labels_time_and_force(force):
    api = swarm(services=("api", "web"))
    draining(api, WORKER_1, force=force)
    _, maintainer = make(api)
    assert drain_of(maintainer) == progress(started_at=EARLIER, force=force)
    maintainer.tick()
    assert said(events_of(maintainer, "maintenance")) == [maintenance_event(
        "drain", "resumed", WORKER_1, f"Resuming the drain of worker-1 (asked for at {EARLIER})")]
    drain = drain_of(maintainer)
    del drain["remaining"]  # as planned before the move (see the waiting specs)
    assert drain == without(progress(started_at=EARLIER, force=force,
                                     moved=[moved("api", "t-api")]), "remaining")


def test_a_drain_label_without_its_time_shows_an_empty_start():
    api = swarm()
    draining(api, WORKER_1, at=None)
    _, maintainer = make(api)
    assert drain_of(maintainer)["started_at"] == ""
    api.services["id-web"]["UpdateStatus"] = {"State": "updating"}  # nothing moves yet
    maintainer.tick()
    assert drain_of(maintainer) == progress(started_at="",
                                            remaining=[{"service": "web", "tasks": 1}])


def test_a_refused_drain_names_each_task_nothing_can_take_by_its_short_id():
    pinned = ["node.hostname==worker-1"]
    api = cluster([service_dict(n, f"id-{n}", constraints=pinned) for n in ("a", "b")],
                  [task_dict("t1p4r7s0u3w6y9a2c5e8g1i4k", "id-a", WORKER_1),
                   task_dict("t2q5s8v1x4z7b0d3f6h9j2l5m", "id-b", WORKER_1)])
    app, _ = make(api)
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    why = "no other node can take it (" + "; ".join(
        f"{h} does not meet node.hostname==worker-1, node.hostname!=worker-1"
        for h in ("manager-1", "worker-2", "worker-3")) + ")"
    assert answer.status_code == 409
    assert answer.get_json()["error"] == (
        f"no other node can take 2 task(s) on worker-1: a (t1p4r7s0u3w6): {why}, "
        f"b (t2q5s8v1x4z7): {why}; --force leaves them to Swarm's drain")
    assert writes(api) == []


@pytest.mark.parametrize("meanwhile", [
    {"Labels": {M.DRAIN_STATE: M.MOVING}},  # another receiver began a drain
    {"Availability": "drain"},  # someone ran docker node update --availability drain
])
def test_a_drain_begun_elsewhere_between_read_and_write_is_refused(meanwhile):
    api = swarm()
    app, _ = make(api)
    inspect = api.inspect_node

    def changed_meanwhile(node_id):
        api.node(node_id)["Spec"].update(meanwhile)
        return inspect(node_id)
    api.inspect_node = changed_meanwhile
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 409
    assert answer.get_json() == {"error": "worker-1: worker-1 is already being drained; "
                                          "nothing was changed", "plan": None}
    assert writes(api) == []


def test_a_node_changed_during_the_write_is_a_409_that_says_so():
    api = swarm()
    app, _ = make(api)
    api.update_failures = [api_error(500, "rpc error: update out of sequence")]
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.get_json()["error"] == ("worker-1: the node changed while it was being "
                                          "updated (rpc error: update out of sequence); "
                                          "nothing was changed")


def test_a_node_update_docker_refuses_is_a_409_with_dockers_words():
    api = swarm()
    app, _ = make(api)
    api.update_failures = [api_error(400, "invalid availability")]
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 409
    assert answer.get_json() == {"error": "Docker refused the update of worker-1: invalid "
                                          "availability", "plan": None}
    assert node_labels(api, WORKER_1) == {}


@pytest.mark.parametrize("failure", [api_error(500, "boom"),
                                     requests.exceptions.ConnectionError("down")])
def test_a_node_update_docker_fails_is_a_503_counted_as_a_docker_error(failure):
    api = swarm()
    app, _ = make(api)
    api.update_failures = [failure]
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.get_json() == {"error": f"Docker cannot be reached: docker node_update "
                                          f"failed: {failure}"}
    assert docker_errors(app, "node_update") == 1
    assert node_labels(api, WORKER_1) == {}


def test_a_read_docker_fails_is_a_503_counted_as_a_docker_error():
    api = swarm()
    app, _ = make(api)
    api.nodes = lambda filters=None: (_ for _ in ()).throw(
        requests.exceptions.ConnectionError("down"))
    for path, payload in (("/maintenance/drain", {"node": "worker-1"}),
                          ("/maintenance/undrain", {"node": "worker-1"}),
                          ("/maintenance/rebalance", {})):
        answer = post(app, path, payload)
        assert answer.status_code == 503
        assert answer.get_json() == {"error": "Docker cannot be reached: docker read failed: down"}
    assert app.test_client().get("/status", headers=AUTH).status_code == 503
    assert docker_errors(app, "read") == 4


@pytest.mark.parametrize("unreadable", [pytest.param(e, id=what)
                                        for what, e in unreadable_answers().items()])
def test_a_read_whose_answer_cannot_be_read_is_a_503_counted_as_a_docker_error(unreadable):
    api = swarm()
    app, _ = make(api)
    api.nodes = lambda filters=None: (_ for _ in ()).throw(unreadable)
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 503
    assert answer.get_json() == {"error": f"Docker cannot be reached: docker read failed: "
                                          f"{unreadable}"}
    assert docker_errors(app, "read") == 1


@pytest.mark.parametrize("failure", [pytest.param(api_error(500, "boom"), id="server error"),
                                     *[pytest.param(e, id=what)
                                       for what, e in unreadable_answers().items()]])
def test_a_drain_whose_node_update_landed_despite_an_error_has_begun(failure):
    api = swarm()
    app, maintainer = make(api)
    api.update_failures = [Landed(failure)]
    answer = post(app, "/maintenance/drain", {"node": "worker-1"})
    assert answer.status_code == 202 and answer.get_json()["changed"] is True
    assert api.node(WORKER_1)["Spec"]["Availability"] == "pause"
    assert node_labels(api, WORKER_1)[M.DRAIN_STATE] == M.MOVING
    assert docker_errors(app, "node_update") == 1
    assert [e["result"] for e in events_of(app, "maintenance")] == ["started"]


def test_a_move_that_loses_a_race_is_answered_as_withdrawn_and_announced_afresh_next_tick():
    from tests.fake_docker_api_client import out_of_sequence
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    api.update_failures = [out_of_sequence()]
    maintainer.tick()  # the move's update loses the compare-and-swap: nothing written
    maintainer.tick()  # planned again, and made
    seen = [(e["type"], e["result"]) for e in events_of(app)]
    assert seen == [("maintenance", "started"),
                    ("decision", "act"), ("outcome", "withdrawn"),
                    ("decision", "act"), ("outcome", "success")]
    withdrawn = events_of(app, "outcome")[0]
    assert withdrawn["reason"] == ("not made: rpc error: code = Unknown desc = update out of "
                                   "sequence; planned again")
    assert withdrawn["duration_s"] is None
    assert [m["result"] for m in drain_of(maintainer)["moved"]] == ["success"]


# -- shutdown (receiver/app.py finish_work) -----------------------------------------------

def test_a_move_under_way_at_the_shutdown_deadline_is_reported_unwatched_and_writes_no_more():
    from receiver.app import finish_work
    from receiver.gate import ShuttingDown
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    api.after_update = None  # Swarm is still replacing the task when the receiver stops
    api.before_tasks = at_the_moves_first_look(lambda api: finish_work(app))
    with pytest.raises(ShuttingDown):
        maintainer.tick()  # the move's thread stops there
    assert said(events_of(app))[1:] == [
        {"type": "decision", "result": "act", "alert": None, "service": "web",
         "task": "t-web", "node": WORKER_1, "kind": "drain", "reason": None,
         "message": "Moving web off worker-1 (drain): start-first, excluding "
                    "node.hostname!=worker-1",
         "starts_at": None, "received_at": None, "duration_s": None},
        {"type": "dropped", "result": "shutdown_unwatched", "alert": None, "service": "web",
         "task": "t-web", "node": WORKER_1, "kind": "drain", "reason": "shutdown_unwatched",
         "message": "move of web unwatched at shutdown: its outcome goes unrecorded",
         "starts_at": None, "received_at": None, "duration_s": None}]
    assert writes(api) == ["update_node", "update_service"]  # the pause, the move; no lift
    assert maintainer.give_up() == 0  # reported once


def test_a_move_whose_watch_ends_as_the_deadline_passes_is_answered_once():
    from receiver.app import finish_work
    from receiver.gate import ShuttingDown
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    api.before_tasks = at_the_moves_first_look(lambda api: finish_work(app))
    with pytest.raises(ShuttingDown):
        maintainer.tick()  # its lift is not made any more
    assert [(e["type"], e["result"]) for e in events_of(app)][1:] == [
        ("decision", "act"), ("dropped", "shutdown_unwatched")]


def test_a_move_whose_watch_fails_as_the_deadline_passes_is_answered_once_as_unwatched():
    from receiver.app import finish_work
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    given_up = []

    def shutdown_then_removed(api):
        given_up.append(finish_work(app))
        api.services.pop("id-web")  # the watch's read then fails: the move's end is known
    api.before_tasks = at_the_moves_first_look(shutdown_then_removed)
    maintainer.tick()
    assert given_up == [1]  # the move, counted in what the shutdown gave up
    assert [(e["type"], e["result"]) for e in events_of(app)][1:] == [
        ("decision", "act"), ("dropped", "shutdown_unwatched")]


def test_a_shutdown_gives_up_no_move_when_none_is_under_way():
    from receiver.app import finish_work
    api = swarm()
    app, maintainer = make(api)
    assert finish_work(app) == 0  # before any drain
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()  # the move is made and answered
    assert finish_work(app) == 0
    assert events_of(app, "dropped") == []


def test_no_move_is_announced_once_the_receiver_stops():
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    looks = []

    def stop_while_planning(api):  # SIGTERM while the tick reads the service to move
        looks.append(True)
        if len(looks) == 2:
            maintainer.stop()
    api.before_tasks = stop_while_planning
    maintainer.tick()
    assert [e["type"] for e in events_of(app)] == ["maintenance"]
    assert writes(api) == ["update_node"]
    assert maintainer.storm.view().moves == ()


def at_the_moves_first_look(step):
    """before_tasks hook: step(api) at the third read of the tasks in a tick: the move's
    watch's first look (the tick's read of the cluster and of the service come first)."""
    looks = []

    def hook(api):
        looks.append(True)
        if len(looks) == 3:
            step(api)
    return hook


# -- a drain, step by step ---------------------------------------------------------------

def pinned_why(node="worker-1"):
    """Why no other node can take a task pinned to worker-1 while worker-1 drains."""
    return "no other node can take it (" + "; ".join(
        f"{h} does not meet node.hostname=={node}, node.hostname!={node}"
        for h in ("manager-1", "worker-2", "worker-3") if h != node) + ")"


def test_a_service_swarm_is_updating_waits_and_the_next_one_moves():
    api = swarm(services=("api", "web"))
    api.services["id-api"]["UpdateStatus"] = {"State": "updating"}
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    assert [kw["name"] for kw in api.updates] == ["web", "web"]  # the move, then the lift
    maintainer.tick()
    assert [kw["name"] for kw in api.updates] == ["web", "web"]
    assert drain_of(maintainer) == progress(moved=[moved("web", "t-web")],
                                            remaining=[{"service": "api", "tasks": 1}])
    del api.services["id-api"]["UpdateStatus"]
    maintainer.tick()
    assert [kw["name"] for kw in api.updates] == ["web", "web", "api", "api"]


def test_a_service_an_alert_is_moving_waits_for_that_move():
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.storm.begin("web", "migrate", WORKER_1, [WORKER_3])
    maintainer.tick()
    assert api.updates == []
    assert drain_of(maintainer) == progress(remaining=[{"service": "web", "tasks": 1}])
    maintainer.storm.end("web")
    maintainer.tick()
    assert [kw["name"] for kw in api.updates] == ["web", "web"]


@pytest.mark.parametrize("meanwhile", ["moved", "removed"])
def test_a_service_that_left_the_node_since_the_read_is_passed_over_for_the_next(meanwhile):
    api = swarm(services=("api", "web"))
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    inspect = api.inspect_service

    def api_changed(service, insert_defaults=None):
        if service == "api" and meanwhile == "moved":
            api.move_task("t-api", WORKER_2)  # Swarm moved it itself
        elif service == "api":
            api.services.pop("id-api", None)
        return inspect(service, insert_defaults=insert_defaults)
    api.inspect_service = api_changed
    maintainer.tick()
    assert [kw["name"] for kw in api.updates] == ["web", "web"]


def test_a_node_removed_from_the_swarm_mid_drain_is_drained_no_more():
    api = swarm(services=("api", "web"))
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    inspect = api.inspect_service

    def node_removed(service, insert_defaults=None):
        api.node_list[:] = [n for n in api.node_list if n["ID"] != WORKER_1]  # docker node rm
        return inspect(service, insert_defaults=insert_defaults)
    api.inspect_service = node_removed
    maintainer.tick()
    maintainer.tick()
    assert api.updates == [] and writes(api) == ["update_node"]
    assert [n["hostname"] for n in maintainer.status()["nodes"]] == ["manager-1", "worker-2",
                                                                     "worker-3"]


def test_a_drain_waits_for_swarm_to_finish_a_move_before_lifting_its_exclusion_and_ending():
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    # A move this receiver did not see end: web runs elsewhere, excluded still, and Swarm
    # is still updating it.
    web = api.services["id-web"]
    web["Spec"]["Labels"].update({"swarmguard.last-action": "drain",
                                  "swarmguard.placement-exclusion": "node.hostname!=worker-1"})
    web["Spec"]["TaskTemplate"]["Placement"]["Constraints"].append("node.hostname!=worker-1")
    web["UpdateStatus"] = {"State": "updating"}
    api.move_task("t-web", WORKER_2)
    maintainer.tick()
    assert drain_of(maintainer) == progress(remaining=[{"service": "web", "tasks": 0}])
    assert writes(api) == ["update_node"]
    del web["UpdateStatus"]
    maintainer.tick()  # lifted
    assert api.inspect_service("web")["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [
        "node.role==worker"]
    assert api.node(WORKER_1)["Spec"]["Availability"] == "pause"
    maintainer.tick()  # nothing left: drained
    assert api.node(WORKER_1)["Spec"]["Availability"] == "drain"


def test_a_drain_with_tasks_that_cannot_move_waits_and_names_the_first_three():
    api = cluster([service_dict(n, f"id-{n}", constraints=["node.hostname==worker-1"])
                   for n in "abcd"], [task_dict(f"t-{n}", f"id-{n}", WORKER_1) for n in "abcd"])
    draining(api, WORKER_1)
    _, maintainer = make(api)
    maintainer.tick()
    why = pinned_why()
    assert drain_of(maintainer) == progress(
        started_at=EARLIER,
        problem=f"4 task(s) cannot move: a: {why}; b: {why}; c: {why} (undrain, or drain again "
                f"with --force)")
    assert writes(api) == []


@pytest.mark.parametrize("worker_1", ["updating", "over_budget", "lifting", "blocked", "finishing"])
def test_a_draining_node_that_makes_no_move_does_not_hold_up_the_next_one(worker_1):
    services = [service_dict("two", "id-two", constraints=["node.role==worker"])]
    tasks = [task_dict("t-two", "id-two", WORKER_2)]
    if worker_1 in ("updating", "over_budget", "blocked"):
        services.append(service_dict(
            "one", "id-one", update_state="updating" if worker_1 == "updating" else None,
            constraints=["node.hostname==worker-1" if worker_1 == "blocked"
                         else "node.role==worker"]))
        tasks.append(task_dict("t-one", "id-one", WORKER_1))
    if worker_1 == "lifting":
        services.append(service_dict(
            "one", "id-one", update_state="updating",
            constraints=["node.role==worker", "node.hostname!=worker-1"],
            labels={"swarmguard.last-action": "drain",
                    "swarmguard.placement-exclusion": "node.hostname!=worker-1"}))
        tasks.append(task_dict("t-one", "id-one", WORKER_3))
    api = cluster(services, tasks)
    draining(api, WORKER_1)
    draining(api, WORKER_2)
    _, maintainer = make(api)
    if worker_1 == "over_budget":
        maintainer.storm.begin("other", "migrate", WORKER_1)  # an alert's move off worker-1
    maintainer.tick()
    assert [kw["name"] for kw in api.updates][:1] == ["two"]
    assert (api.node(WORKER_1)["Spec"]["Availability"] == "drain") == (worker_1 == "finishing")


def test_one_tick_makes_one_move_whichever_nodes_are_draining():
    api = cluster([service_dict(n, f"id-{n}", constraints=["node.role==worker"])
                   for n in ("one", "two")],
                  [task_dict("t-one", "id-one", WORKER_1), task_dict("t-two", "id-two", WORKER_2)])
    draining(api, WORKER_1)
    draining(api, WORKER_2)
    _, maintainer = make(api)
    maintainer.tick()
    assert [kw["name"] for kw in api.updates] == ["one", "one"]


@pytest.mark.parametrize("budgets, in_flight, waiting", [
    ({"max_concurrent_actions": 1}, [("other", WORKER_1, [WORKER_2])],
     "1 action(s) already in flight (SWARMGUARD_MAX_CONCURRENT_ACTIONS=1)"),
    ({"max_actions_per_minute": 1}, [("other", WORKER_2, [])],
     "1 action(s) started in the last 60 s (SWARMGUARD_MAX_ACTIONS_PER_MINUTE=1)"),
    ({}, [("other", WORKER_1, [])],
     "1 task(s) already leaving worker-1 (SWARMGUARD_MAX_LEAVING_PER_NODE=1)"),
    ({}, [("x", WORKER_2, [WORKER_3]), ("y", MANAGER_1, [WORKER_3])],
     "worker-3 already receive(s) 2 task(s) (SWARMGUARD_MAX_ARRIVING_PER_NODE=2)"),
])
def test_a_drains_move_waits_for_the_storm_budgets_and_says_which(budgets, in_flight, waiting):
    api = swarm()
    app, maintainer = make(api, **budgets)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    for service, from_node, destinations in in_flight:
        maintainer.storm.begin(service, "migrate", from_node, destinations)
    maintainer.tick()
    assert api.updates == []
    assert drain_of(maintainer) == progress(remaining=[{"service": "web", "tasks": 1}],
                                            problem=f"waiting: {waiting}")
    if budgets.get("max_actions_per_minute"):
        return  # the minute has to pass
    for service, _, _ in in_flight:
        maintainer.storm.end(service)
    maintainer.tick()
    # Moved: no longer shown as to go.
    assert drain_of(maintainer) == progress(moved=[moved("web", "t-web")], remaining=[])


def test_while_a_drain_moves_a_service_it_holds_the_budgets_and_status_shows_it():
    api = swarm()
    seen = {}

    def during_the_move(api, service_id, kwargs):
        if seen:
            return  # the exclusion lifted after the move
        view = maintainer.storm.view()
        seen["move"] = view.maintenance_move("web")
        seen["leaving"] = view.leaving(WORKER_1)
        seen["arriving"] = (view.arriving(WORKER_2), view.arriving(WORKER_3))
        status = maintainer.status()
        seen["current"] = drain_of(maintainer)["current"]
        seen["in_flight"] = [without(m, "seconds") for m in status["in_flight"]]
        swarm_moves_excluded_tasks(api, service_id, kwargs)
    api.after_update = during_the_move
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    move = seen["move"]
    assert (move.kind, move.from_node, move.destinations) == ("drain", WORKER_1,
                                                              frozenset({WORKER_2, WORKER_3}))
    assert seen["leaving"] == 1 and seen["arriving"] == (1, 1)
    assert seen["current"] == "web"
    assert seen["in_flight"] == [{"service": "web", "kind": "drain", "from_node": "worker-1"}]
    assert maintainer.storm.view().moves == ()
    assert drain_of(maintainer)["current"] is None


def test_a_move_of_tasks_that_land_on_two_nodes_names_both():
    api = swarm(replicas=2)
    api.task_list[:] = [task_dict("t-web-1", "id-web", WORKER_1, slot=1),
                        task_dict("t-web-2", "id-web", WORKER_1, slot=2)]
    api.after_update = swarm_spreads_replaced_tasks
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    assert drain_of(maintainer)["moved"] == [moved(
        "web", "t-web-1", to="worker-2, worker-3", tasks=2,
        detail="2 task(s) running elsewhere (w2b8c6e4g2i0, w3c7e5g3i1k9)")]


def test_a_drain_finished_by_another_receiver_first_is_not_written_again():
    api = swarm()
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()  # web moved
    inspect = api.inspect_node

    def finished_elsewhere(node_id):
        api.node(node_id)["Spec"]["Availability"] = "drain"
        api.node(node_id)["Spec"]["Labels"][M.DRAIN_STATE] = M.DRAINED
        return inspect(node_id)
    api.inspect_node = finished_elsewhere
    maintainer.tick()
    api.inspect_node = inspect
    assert writes(api).count("update_node") == 1  # the pause only
    expected = progress(state="drained", moved=[moved("web", "t-web")],
                        problem="no longer being drained")
    assert drain_of(maintainer) == expected
    maintainer.tick()
    assert drain_of(maintainer) == expected
    assert [e["result"] for e in events_of(app, "maintenance")] == ["started"]


def test_a_drain_undrained_by_hand_and_begun_again_elsewhere_is_followed_afresh():
    api = swarm(services=("api", "web"))
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()  # api moved
    spec = api.node(WORKER_1)["Spec"]  # docker node update --availability active, labels gone
    spec["Availability"] = "active"
    spec["Labels"].clear()
    maintainer.tick()
    assert drain_of(maintainer) is None
    later = "2026-12-04T11:00:00.000000Z"
    draining(api, WORKER_1, at=later)  # another receiver drains it again
    maintainer.tick()
    assert said(events_of(app, "maintenance"))[1:] == [maintenance_event(
        "drain", "resumed", WORKER_1, f"Resuming the drain of worker-1 (asked for at {later})")]
    assert [m["service"] for m in drain_of(maintainer)["moved"]] == ["web"]


# -- undrain and rebalance -------------------------------------------------------------------

def undrained_after_its_drain():
    """worker-1 drained to the end, then undrained: the swarm, the app and the undrain's
    answer."""
    api, app, _ = drained_to_the_end()
    return api, app, post(app, "/maintenance/undrain", {"node": "worker-1"})


def test_undrain_makes_the_node_take_work_again_and_ends_the_drain():
    api, app, answer = undrained_after_its_drain()
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


def test_undrain_mid_drain_says_what_it_ended_and_keeps_the_nodes_own_labels():
    api = swarm(services=("api", "web"))
    api.node(WORKER_1)["Spec"]["Labels"]["zone"] = "a"
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    answer = post(app, "/maintenance/undrain", {"node": "worker-1"})
    assert answer.status_code == 200
    assert answer.get_json() == {"dry_run": False, "changed": True,
                                 "message": "worker-1: availability pause -> active; drain "
                                            "(moving) ended"}
    assert node_labels(api, WORKER_1) == {"zone": "a"}
    assert said(events_of(app, "maintenance"))[1:] == [
        maintenance_event("drain", "stopped", WORKER_1,
                          "The drain of worker-1 ended by an undrain"),
        maintenance_event("undrain", "finished", WORKER_1,
                          "Undrained worker-1: availability pause -> active; drain (moving) ended")]
    assert drain_of(maintainer) is None


def test_undrain_after_a_finished_drain_stops_nothing():
    _, app, answer = undrained_after_its_drain()
    assert answer.get_json()["message"] == ("worker-1: availability drain -> active; drain "
                                            "(drained) ended")
    assert [(e["kind"], e["result"]) for e in events_of(app, "maintenance")] == [
        ("drain", "started"), ("drain", "finished"), ("undrain", "finished")]


def test_undrain_of_a_node_drained_by_hand():
    api = swarm()
    api.node(WORKER_1)["Spec"]["Availability"] = "drain"
    app, _ = make(api)
    dry = post(app, "/maintenance/undrain", {"node": "worker-1", "dry_run": True})
    assert dry.status_code == 200
    assert dry.get_json() == {"dry_run": True, "changed": False,
                              "message": "would set worker-1: availability drain -> active"}
    assert writes(api) == []
    answer = post(app, "/maintenance/undrain", {"node": "worker-1"})
    assert answer.status_code == 200
    assert answer.get_json() == {"dry_run": False, "changed": True,
                                 "message": "worker-1: availability drain -> active"}
    assert said(events_of(app, "maintenance")) == [maintenance_event(
        "undrain", "finished", WORKER_1, "Undrained worker-1: availability drain -> active")]


@pytest.mark.parametrize("dry_run", [False, True])
def test_undrain_of_a_node_that_takes_work_is_a_200_that_changes_nothing(dry_run):
    api = swarm()
    app, _ = make(api)
    answer = post(app, "/maintenance/undrain", {"node": "worker-1", "dry_run": dry_run})
    assert answer.status_code == 200
    assert answer.get_json() == {"dry_run": dry_run, "changed": False,
                                 "message": "worker-1 already takes work"}
    assert writes(api) == [] and events_of(app) == []


def test_a_receiver_in_dry_run_mode_only_says_what_undrain_would_do():
    api = swarm()
    api.node(WORKER_1)["Spec"]["Availability"] = "drain"
    app, _ = make(api, dry_run=True)
    answer = post(app, "/maintenance/undrain", {"node": "worker-1"})
    assert answer.get_json() == {"dry_run": True, "changed": False,
                                 "message": "would set worker-1: availability drain -> active"}
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


def rebalance_of(maintainer):
    return maintainer.status()["rebalance"]


def test_a_rebalance_answers_with_its_plan_and_says_when_it_begins_and_ends():
    api = swarm(services=("a", "b", "c", "d"))
    for name in ("c", "d"):
        api.move_task(f"t-{name}", WORKER_2)
    app, maintainer = make(api)
    plan = {"tolerance": 1, "counts": {"worker-1": 2, "worker-2": 2, "worker-3": 0},
            "moves": [{"service": "c", "task": "newtask0001", "from": "worker-2",
                       "to": ["worker-3"]}],
            "why_not": None}
    dry = post(app, "/maintenance/rebalance", {"dry_run": True})
    assert (dry.status_code, dry.get_json()) == (200, {"dry_run": True, "changed": False,
                                                       "plan": plan})
    started = post(app, "/maintenance/rebalance", {})
    assert (started.status_code, started.get_json()) == (202, {"dry_run": False, "changed": True,
                                                               "plan": plan})
    assert rebalance_of(maintainer) == progress(state="running")
    again = post(app, "/maintenance/rebalance", {})
    assert (again.status_code, again.get_json()) == (
        409, {"error": "a rebalance is already running", "plan": None})
    maintainer.storm.begin("c", "migrate", WORKER_2, [WORKER_3])  # an alert's move of c
    maintainer.tick()
    assert rebalance_of(maintainer) == progress(state="running",
                                                remaining=[{"service": "c", "tasks": 1}])
    assert api.updates == []
    maintainer.storm.end("c")
    maintainer.tick()
    maintainer.tick()
    assert rebalance_of(maintainer) == progress(state="finished",
                                                moved=[moved("c", "newtask0001")])
    assert said(events_of(app, "maintenance")) == [
        maintenance_event("rebalance", "started", None, "Rebalancing: about 1 move(s) planned"),
        maintenance_event("rebalance", "finished", None, "Rebalanced: 1 move(s); tasks per node "
                                                         "worker-1 2, worker-2 1, worker-3 1")]


def test_a_rebalance_with_nothing_to_do_says_why_and_starts_nothing():
    api = swarm(services=("a", "b"))
    api.move_task("t-b", WORKER_2)
    app, maintainer = make(api)
    answer = post(app, "/maintenance/rebalance", {})
    assert answer.status_code == 200
    assert answer.get_json() == {
        "dry_run": False, "changed": False,
        "plan": {"tolerance": 1, "counts": {"worker-1": 1, "worker-2": 1, "worker-3": 0},
                 "moves": [], "why_not": "the nodes are within 1 task(s) of each other "
                                         "(spread 1)"}}
    assert rebalance_of(maintainer) is None and events_of(app) == []


def test_a_receiver_in_dry_run_mode_only_plans_a_rebalance():
    api = swarm(services=("a", "b", "c"))
    app, maintainer = make(api, dry_run=True)
    answer = post(app, "/maintenance/rebalance", {})
    assert answer.status_code == 200
    assert answer.get_json()["dry_run"] is True and answer.get_json()["changed"] is False
    assert [m["service"] for m in answer.get_json()["plan"]["moves"]] == ["a", "b"]
    assert rebalance_of(maintainer) is None


def test_a_rebalance_is_refused_while_nodes_are_being_drained():
    api = swarm(services=("a", "b", "c"))
    draining(api, WORKER_1)
    draining(api, WORKER_2)
    app, _ = make(api)
    answer = post(app, "/maintenance/rebalance", {})
    assert answer.status_code == 409
    assert answer.get_json() == {"error": "worker-1, worker-2 is being drained; rebalance after "
                                          "the drain", "plan": None}


def test_a_drain_that_begins_stops_the_rebalance():
    api = swarm(services=("a", "b", "c"))
    app, maintainer = make(api)
    post(app, "/maintenance/rebalance", {})
    draining(api, WORKER_2)
    api.task_list.clear()  # nothing for the drain to move: only the rebalance could write
    maintainer.tick()
    problem = "a drain began: the rebalance stopped (run it again after)"
    assert rebalance_of(maintainer) == progress(state="stopped", problem=problem)
    assert said(events_of(app, "maintenance"))[-1] == maintenance_event(
        "rebalance", "stopped", None, problem)
    maintainer.tick()
    assert api.updates == []


def test_a_rebalance_moves_each_service_at_most_once_even_from_another_busy_node():
    # No constraints: the manager takes work too. worker-1 a b c d, worker-2 a e f.
    api = cluster([service_dict("a", "id-a", replicas=2)]
                  + [service_dict(n, f"id-{n}") for n in "bcdef"],
                  [task_dict("a1", "id-a", WORKER_1, slot=1),
                   task_dict("a2", "id-a", WORKER_2, slot=2)]
                  + [task_dict(f"t-{n}", f"id-{n}", WORKER_1) for n in "bcd"]
                  + [task_dict(f"t-{n}", f"id-{n}", WORKER_2) for n in "ef"])
    api.after_update = swarm_spreads_replaced_tasks
    app, maintainer = make(api)
    post(app, "/maintenance/rebalance", {})
    for _ in range(5):
        maintainer.tick()
    # a's first move lands on manager-1; worker-2, busiest next, runs a's other task: e
    # moves from there, not a again.
    assert [m["service"] for m in rebalance_of(maintainer)["moved"]] == ["a", "e", "b"]
    assert rebalance_of(maintainer)["state"] == "finished"


def test_a_rebalance_move_that_rolled_back_is_not_tried_again():
    api = swarm(services=("a", "b", "c", "d"))

    def rolls_back_a(api, service_id, kwargs):
        if service_id == "id-a":
            svc = api.services[service_id]
            svc["Spec"] = svc["PreviousSpec"]
            svc["UpdateStatus"] = {"State": "rollback_completed"}
        else:
            swarm_spreads_replaced_tasks(api, service_id, kwargs)
    api.after_update = rolls_back_a
    app, maintainer = make(api)
    post(app, "/maintenance/rebalance", {})
    for _ in range(4):
        maintainer.tick()
    assert [(m["service"], m["result"]) for m in rebalance_of(maintainer)["moved"]] == [
        ("a", "rolled_back"), ("b", "success"), ("c", "success")]


def a_starts_updating(api):
    api.services["id-a"]["UpdateStatus"] = {"State": "updating"}


def a_finishes_updating(api):
    del api.services["id-a"]["UpdateStatus"]


def a_is_removed(api):
    del api.services["id-a"]
    api.task_list[:] = [t for t in api.task_list if t["ServiceID"] != "id-a"]


@pytest.mark.parametrize("change, afterwards", [
    (a_starts_updating, a_finishes_updating),
    (a_is_removed, lambda api: None),
], ids=["began updating", "removed"])
def test_a_service_changed_since_the_plan_is_left_out_of_the_rebalance(change, afterwards):
    api = swarm(services=("a", "b", "c", "d"))
    app, maintainer = make(api)
    post(app, "/maintenance/rebalance", {})
    inspect = api.inspect_service

    def a_changes_as_it_is_read(service, insert_defaults=None):
        if service == "a":
            change(api)
        return inspect(service, insert_defaults=insert_defaults)
    api.inspect_service = a_changes_as_it_is_read
    maintainer.tick()
    assert api.updates == []
    api.inspect_service = inspect
    afterwards(api)
    maintainer.tick()
    assert [kw["name"] for kw in api.updates][:1] == ["b"]


def maintainer_on(api, monotonic, **settings):
    """A Maintainer built by hand around `api`, every clock the test's."""
    settings = Settings(token=TOKEN, watch_interval=0.01, **settings)
    metrics = Metrics()
    events = EventLog(settings.event_buffer, lambda: NOW)
    storm = StormLedger.from_settings(settings, monotonic)
    actuator = Actuator(api, settings, metrics, clock=lambda: NOW, monotonic=monotonic,
                        sleep=lambda s: None, events=events, storm=storm)
    return Maintainer(api, actuator, storm, Reporter(metrics, events), settings, events=events,
                      clock=lambda: NOW, monotonic=monotonic)


def test_status_answers_every_field_of_nodes_services_actions_in_flight_and_recent_events():
    from tests.unit.test_receiver_decisions import alert
    api = swarm(services=("web",))
    api.services["id-web"]["Spec"]["Labels"].update({
        "swarmguard.last-action": "migrate", "swarmguard.last-action-at": EARLIER,
        "swarmguard.last-action-reason": "hot", "swarmguard.futile-until": STARTED_AT})
    api.services["id-other"] = service_dict("other", "id-other", enabled=False)
    draining(api, WORKER_3, force=True)
    now = [100.0]
    maintainer = maintainer_on(api, lambda: now[0])
    maintainer.storm.begin("web", "migrate", WORKER_1, [WORKER_2])
    maintainer.storm.begin("api", "scale_up")
    maintainer.storm.observe([alert(node=WORKER_2, task="t-hot", service="web")])
    first = maintainer.events.emit("maintenance", "started", kind="drain", node=WORKER_3,
                                   message="Draining worker-3")
    maintainer.events.emit("notification", "resolved", service="web")
    now[0] = 112.3456

    def node(node_id, hostname, role="worker", availability="active", tasks=0, hot=False,
             drain=None):
        return {"id": node_id, "hostname": hostname, "role": role,
                "availability": availability, "state": "ready", "tasks": tasks, "hot": hot,
                "drain": drain}
    assert maintainer.status() == {
        "receiver": {"dry_run": False},
        "nodes": [node(MANAGER_1, "manager-1", role="manager"),
                  node(WORKER_1, "worker-1", tasks=1),
                  node(WORKER_2, "worker-2", hot=True),
                  node(WORKER_3, "worker-3", availability="pause",
                       drain=progress(started_at=EARLIER, force=True))],
        "services": [{"name": "web", "replicas": 1, "running": 1, "last_action": "migrate",
                      "last_action_at": EARLIER, "last_action_reason": "hot",
                      "futile_until": STARTED_AT}],
        "in_flight": [{"service": "web", "kind": "migrate", "from_node": "worker-1",
                       "seconds": 12.3},
                      {"service": "api", "kind": "scale_up", "from_node": None, "seconds": 12.3}],
        "rebalance": None,
        "recent": [first]}
    later = [maintainer.events.emit("decision", "act", service="web") for _ in range(11)]
    assert maintainer.status()["recent"] == later[-10:]


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


# -- the maintenance loop --------------------------------------------------------------------

class Waits:
    """Stands in for the loop's wake-up event: records how long each wait between ticks
    would last, lets the world change (`between(n)` after the n-th tick), and stops the
    loop after `ticks` ticks."""

    def __init__(self, maintainer, ticks, between):
        self.maintainer, self.ticks, self.between = maintainer, ticks, between
        self.timeouts = []

    def wait(self, timeout):
        self.timeouts.append(timeout)
        self.between(len(self.timeouts))
        if len(self.timeouts) >= self.ticks:
            self.maintainer.stop()
        return False

    def set(self):
        pass

    def clear(self):
        pass


def run_loop(maintainer, ticks, between=lambda n: None):
    """Run the background loop in this thread for `ticks` ticks; the waits it made."""
    waits = Waits(maintainer, ticks, between)
    maintainer._wake = waits
    maintainer._stopping.clear()
    maintainer._run()
    return waits.timeouts


def test_the_loop_ticks_every_second_while_a_drain_or_rebalance_runs_and_else_rests():
    api = swarm(services=("api", "web"))
    api.after_update = swarm_spreads_replaced_tasks
    app, maintainer = make(api)
    assert run_loop(maintainer, 1) == [IDLE_INTERVAL_S]
    post(app, "/maintenance/drain", {"node": "worker-1"})
    assert run_loop(maintainer, 1) == [1.0]  # api moved
    assert run_loop(maintainer, 2) == [1.0, IDLE_INTERVAL_S]  # web moved; drained
    post(app, "/maintenance/undrain", {"node": "worker-1"})
    assert post(app, "/maintenance/rebalance", {}).status_code == 202  # one move to make
    assert run_loop(maintainer, 2) == [1.0, IDLE_INTERVAL_S]  # moved; finished
    assert maintainer.status()["rebalance"]["state"] == "finished"


def test_the_loop_rests_once_a_drain_was_undrained_by_hand():
    api = swarm(services=("api", "web"))
    app, maintainer = make(api)
    post(app, "/maintenance/drain", {"node": "worker-1"})
    maintainer.tick()
    api.node(WORKER_1)["Spec"].update({"Availability": "active", "Labels": {}})
    assert run_loop(maintainer, 1) == [IDLE_INTERVAL_S]


def test_the_loop_counts_each_failed_read_of_docker_and_logs_once_per_outage(caplog):
    api = swarm()
    app, maintainer = make(api)
    nodes, down = api.nodes, [True]

    def read_nodes(filters=None):
        if down[0]:
            raise requests.exceptions.ConnectionError("down")
        return nodes(filters)
    api.nodes = read_nodes
    outage = {1: True, 2: False, 3: True}  # ticks: down, down, up, down
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="receiver"):
        run_loop(maintainer, 4, between=lambda n: down.__setitem__(0, outage.get(n, False)))
    assert docker_errors(app, "maintenance") == 3
    assert [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING] == ["docker maintenance failed: down"] * 2


def test_an_unexpected_error_in_the_loop_is_logged_with_its_trace_and_the_loop_goes_on(caplog):
    api = swarm()
    app, maintainer = make(api)
    nodes, reads = api.nodes, []

    def read_nodes(filters=None):
        reads.append(1)
        if len(reads) == 1:
            raise ValueError("an answer Docker never gives")
        return nodes(filters)
    api.nodes = read_nodes
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="receiver"):
        run_loop(maintainer, 2)
    assert len(reads) == 2
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (record.levelno, record.getMessage()) == (logging.ERROR,
                                                     "Unexpected error in the maintenance loop")
    assert record.exc_info[0] is ValueError
    assert docker_errors(app, "maintenance") is None


def test_start_runs_the_loop_in_a_daemon_thread_that_stop_ends():
    import threading
    api = swarm()
    app, maintainer = make(api)
    ticked = threading.Event()
    nodes = api.nodes

    def read_nodes(filters=None):
        ticked.set()
        return nodes(filters)
    api.nodes = read_nodes
    maintainer.start()
    assert ticked.wait(5)
    maintainer.stop()
    maintainer._thread.join(5)
    assert not maintainer._thread.is_alive()
    assert maintainer._thread.daemon is True
    assert maintainer._thread.name == "swarmguard-maintainer"


def test_a_receiver_that_resumes_a_drain_at_start_says_started_first():
    api = swarm()
    draining(api, WORKER_1)
    app = create_app(Settings(token=TOKEN, watch_interval=0.01), api,
                     executor=InlineExecutor(), clock=lambda: NOW, sleep=lambda s: None,
                     readiness_thread=False, maintenance_thread=True)
    maintainer = receiver_of(app).maintainer
    try:
        events = receiver_of(app).events
        for _ in range(500):  # the background thread's first tick: 5 s at most
            if any(e["type"] == "maintenance" for e in events.since(0)[0]):
                break
            threading.Event().wait(0.01)
        found = events.since(0)[0]
        assert [e["type"] for e in found[:2]] == ["started", "maintenance"]
        assert found[1]["result"] == "resumed"
    finally:
        maintainer.stop()
