"""What `swarmguard` prints, from the maintenance API's documents (swarmguard_cli/render.py,
pure): plans, the progress bar, moved tasks and the status screen."""
from datetime import datetime, timezone

from swarmguard_cli import render
from tests.unit.fake_receiver import (
    WORKER_1, drain_plan, drain_state, move, moved, node, status, task_why,
)
from tests.unit.test_receiver_layers import modules_loaded_by

NOW = datetime(2026, 12, 4, 10, 0, 0, tzinfo=timezone.utc)


# -- drain plans -------------------------------------------------------------------------

PLAN = drain_plan(
    moves=[move("web", "t1webtask0000000000000001", "t2webtask0000000000000002", replicas=3,
                note="2 of 3 replicas on worker-1"),
           move("api", "t3apitask0000000000000003")],
    left=[task_why("node-exporter", "t4global00000000000000004", "global service")],
    blocked=[task_why("db", "t5dbtask00000000000000005", "constraint node.hostname==worker-1")])


def test_a_dry_run_plan_says_what_would_move_start_first_what_is_left_and_what_is_blocked():
    assert render.drain_plan(PLAN, dry_run=True) == "\n".join([
        "**DRY-RUN**: would drain worker-1 (n1workerone0): 3 tasks to move start-first, "
        "1 left to Swarm's drain, 1 blocked",
        "  moved start-first:",
        "    web: 2 tasks of 3 (t1webtask000, t2webtask000); 2 of 3 replicas on worker-1",
        "    api: 1 task of 2 (t3apitask000)",
        "  left to Swarm's drain (stopped on the node, started elsewhere by Swarm):",
        "    node-exporter task t4global0000: global service",
        "  blocked (no other node can take them):",
        "    db task t5dbtask0000: constraint node.hostname==worker-1",
    ])


def test_a_started_drain_s_plan_says_draining_and_leaves_out_empty_sections():
    text = render.drain_plan(drain_plan(moves=[move("api", "t3")]), dry_run=False)

    assert text.splitlines()[0] == ("Draining worker-1 (n1workerone0): 1 task to move "
                                    "start-first, 0 left to Swarm's drain, 0 blocked")
    assert "left to Swarm" not in text.split("\n", 1)[1] and "blocked (" not in text


def test_a_refused_drain_lists_the_blocked_tasks_when_there_is_a_plan():
    assert render.drain_refused("1 task no other node can take", PLAN) == "\n".join([
        "The receiver refused the drain: 1 task no other node can take",
        "  blocked (no other node can take them; --force leaves them to Swarm's drain):",
        "    db task t5dbtask0000: constraint node.hostname==worker-1",
    ])
    assert render.drain_refused("already draining", None) == (
        "The receiver refused the drain: already draining")


# -- progress ----------------------------------------------------------------------------

def test_the_bar_fills_in_proportion_to_the_tasks_moved():
    assert render.progress_line(0, 4, "moving web") == f"[{'-' * 30}] 0/4 moved, moving web"
    assert render.progress_line(2, 4, "x") == f"[{'#' * 15}{'-' * 15}] 2/4 moved, x"
    assert render.progress_line(4, 4, "drained") == f"[{'#' * 30}] 4/4 moved, drained"


def test_with_nothing_to_move_the_bar_is_full():
    assert render.progress_line(0, 0, "waiting") == f"[{'#' * 30}] 0/0 moved, waiting"


def test_a_drain_s_activity_names_the_service_being_moved_or_what_it_waits_for():
    assert render.drain_activity(drain_state(current="web", remaining=[("web", 1)])) == \
        "moving web"
    assert render.drain_activity(drain_state(remaining=[("web", 1)])) == \
        "waiting for the next move"
    assert render.drain_activity(drain_state()) == "finishing"
    assert render.drain_activity(drain_state("drained")) == "drained"


def test_a_moved_task_is_one_line_with_service_short_id_node_seconds_and_result():
    assert render.moved_line(moved("web", "t1webtask0000000000000001", "worker-2", 4.25,
                                   "rolled_back")) == \
        "web task t1webtask000 -> worker-2 in 4.2 s: rolled_back"
    assert render.moved_line({"service": "web", "task": "t1", "to": None, "seconds": None,
                              "result": "failed"}) == "web task t1 -> ?: failed"


def test_an_entry_for_several_tasks_of_one_service_says_how_many_and_why_it_failed():
    entry = {**moved("web", "t1webtask0000000000000001", "worker-2, worker-3", 9.0, "timeout"),
             "tasks": 2, "detail": "the new task did not become healthy"}

    assert render.moved_line(entry) == ("web 2 tasks from t1webtask000 -> worker-2, worker-3 "
                                        "in 9.0 s: timeout (the new task did not become "
                                        "healthy)")
    assert render.moved_line({**entry, "tasks": 1, "result": "success"}) == \
        "web task t1webtask000 -> worker-2, worker-3 in 9.0 s: success"


def test_what_remains_is_a_count_or_the_tasks_of_each_service_summed():
    assert render.remaining_tasks(3) == 3
    assert render.remaining_tasks([{"service": "web", "tasks": 2},
                                   {"service": "api", "tasks": 1}]) == 3
    assert render.remaining_tasks(None) == 0


# -- rebalance plans ---------------------------------------------------------------------

def test_a_rebalance_plan_gives_the_counts_per_node_and_each_move():
    plan = {"tolerance": 1, "counts": {"worker-1": 5, "worker-2": 1, "worker-3": 1},
            "moves": [{"service": "web", "task": "t1webtask0000000000000001",
                       "from": "worker-1", "to": ["worker-2", "worker-3"]}],
            "why_not": None}

    assert render.rebalance_plan(plan, dry_run=True) == "\n".join([
        "Running tasks per node taking work: worker-1 5, worker-2 1, worker-3 1 (tolerance 1)",
        "**DRY-RUN**: would rebalance: 1 task to move start-first:",
        "    web task t1webtask000: worker-1 -> worker-2 or worker-3",
    ])


def test_a_rebalance_with_nothing_to_do_says_why():
    plan = {"tolerance": 1, "counts": {"worker-1": 2, "worker-2": 2}, "moves": [],
            "why_not": "already within tolerance"}

    assert render.rebalance_plan(plan, dry_run=False).splitlines()[-1] == \
        "Nothing to rebalance: already within tolerance"


# -- status ------------------------------------------------------------------------------

def service(name="demo", **fields):
    return {"name": name, "replicas": 2, "running": 2, "last_action": None,
            "last_action_at": None, "last_action_reason": None, "futile_until": None,
            **fields}


def event(seq, at, result, reason=None, message=None, type_="decision", service_="demo"):
    return {"seq": seq, "type": type_, "at": at, "alert": None, "service": service_,
            "task": None, "node": None, "kind": "migrate", "result": result, "reason": reason,
            "message": message, "starts_at": None, "received_at": None, "duration_s": None}


def test_the_status_screen_shows_each_node_with_its_hot_mark_and_drain_progress():
    screen = render.status_screen(status(nodes=[
        node("manager", "n0manager0000000000000000", role="manager"),
        node("worker-1", WORKER_1["id"], availability="drain", tasks=3, hot=True,
             drain=drain_state(moved_tasks=[moved("web", "t1")], remaining=[("web", 1),
                                                                          ("api", 2)],
                               current="web", problem="web: rolled back", force=True)),
        node("worker-2", "n2", tasks=4, drain=drain_state("drained")),
    ]), NOW)

    assert "\n".join([
        "Nodes",
        "  NODE      ROLE     AVAILABILITY  STATE  TASKS  HOT  DRAIN",
        "  manager   manager  active        ready  0",
        "  worker-1  worker   drain         ready  3      HOT  1 moved, 3 to go, moving web "
        "(forced)",
        "  worker-2  worker   active        ready  4           drained",
        "  worker-1: drain stuck: web: rolled back",
    ]) in screen


def test_the_status_screen_shows_services_with_last_action_age_reason_and_a_live_hold():
    screen = render.status_screen(status(services=[
        service("demo", last_action="migrate", last_action_at="2026-12-04T09:57:00Z",
                last_action_reason="Migrating demo off worker-1 (cpu 101 %)",
                futile_until="2026-12-04T10:07:00Z"),
        service("agent", replicas=None, running=3, futile_until="2026-12-04T09:00:00Z"),
    ]), NOW)

    lines = screen.splitlines()
    start = lines.index("Services (opted in)")
    assert lines[start + 1:start + 6] == [
        "  SERVICE  RUNNING   LAST ACTION        FUTILE HOLD",
        "  demo     2/2       migrate 3 min ago  until 2026-12-04 10:07:00 UTC",
        "  agent    3/global",
        "Last actions' reasons:",
        "  demo: Migrating demo off worker-1 (cpu 101 %)",
    ]


def test_the_status_screen_shows_work_in_flight_and_the_rebalance():
    screen = render.status_screen(status(
        in_flight=[{"service": "web", "kind": "migrate", "from_node": "worker-1",
                    "seconds": 3.21},
                   {"service": "api", "kind": "scale_up", "from_node": None, "seconds": 0.5}],
        rebalance={"state": "running", "moved": [moved("web", "t1")], "remaining": 2,
                   "problem": "api: no node answered"}), NOW)

    assert ("Actions in flight\n"
            "  web: migrate off worker-1 for 3.2 s\n"
            "  api: scale_up for 0.5 s") in screen
    assert ("Rebalance: running, 1 moved, 2 to go\n"
            "  problem: api: no node answered") in screen


def test_the_status_screen_lists_recent_decisions_oldest_first_with_their_reasons():
    screen = render.status_screen(status(recent=[
        event(8, "2026-12-04T09:59:30Z", "success", reason="new task abc running",
              type_="outcome"),
        event(7, "2026-12-04T09:59:00Z", "skip", reason="cooldown",
              message="Not migrating demo: cooldown"),
    ]), NOW)

    assert screen.endswith("\n".join([
        "Recent decisions (newest last)",
        "  WHEN       TYPE      RESULT           SERVICE  WHY",
        "  1 min ago  decision  skip (cooldown)  demo     Not migrating demo: cooldown",
        "  30 s ago   outcome   success          demo     new task abc running",
    ]))


def test_the_status_screen_says_when_the_receiver_changes_nothing_and_what_is_empty():
    screen = render.status_screen(status(dry_run=True), NOW)

    assert screen == "\n\n".join([
        "Receiver: DRY-RUN: decides and logs, changes nothing",
        "Nodes\n  NODE  ROLE  AVAILABILITY  STATE  TASKS  HOT  DRAIN",
        "Services: none opted in (label swarmguard.enable=true)",
        "Actions in flight: none",
        "Rebalance: none",
        "Recent decisions: none",
    ])
    assert "None" not in render.status_screen(status(
        services=[service()], recent=[event(1, None, "act")],
        in_flight=[{"service": "web", "kind": "migrate", "from_node": None,
                    "seconds": None}]), NOW)


def test_ages_are_counted_in_the_largest_whole_unit():
    assert render.age("2026-12-04T09:59:59Z", NOW) == "1 s ago"
    assert render.age("2026-12-04T09:59:01+00:00", NOW) == "59 s ago"
    assert render.age("2026-12-04T09:59:00Z", NOW) == "1 min ago"
    assert render.age("2026-12-04T08:59:59Z", NOW) == "1 h ago"
    assert render.age("2026-12-02T10:00:00Z", NOW) == "2 d ago"
    assert render.age("2026-12-04T18:00:00+09:00", NOW) == "1 h ago"
    assert render.age("2026-12-04T10:00:05Z", NOW) == "just now"
    assert render.age("yesterday", NOW) == "?"
    assert render.age(None, NOW) == "?"


# -- layers ------------------------------------------------------------------------------

def test_the_text_is_made_without_http_the_receiver_or_docker():
    loaded = modules_loaded_by("swarmguard_cli.render")
    assert "swarmguard_cli.render" in loaded  # the check itself ran
    assert not {m for m in loaded
                if m.split(".")[0] in ("requests", "urllib3", "http", "receiver", "docker")}


def test_the_command_talks_http_and_imports_neither_the_receiver_nor_docker():
    loaded = modules_loaded_by("swarmguard_cli.cli")
    assert "requests" in loaded  # the check above can fail
    assert not {m for m in loaded if m.split(".")[0] in ("receiver", "docker")}
