"""The `swarmguard` command against a stand-in receiver on 127.0.0.1 that answers as the
maintenance API says (tests/unit/fake_receiver.py). The text itself is specified in
test_cli_render.py; here: what is asked, what is followed, what is printed once, and the
exit status.
"""
import io
import json
import socket
from pathlib import Path

import pytest

from swarmguard_cli import follow
from swarmguard_cli.cli import EXIT_MEANINGS, main
from swarmguard_cli.client import Client
from tests.unit.fake_receiver import (
    DROP, HANG, TOKEN, WORKER_1, FakeReceiver, Raw, drain_plan, drain_state, move, moved,
    node, status, task_why, worker_1_draining,
)

# Follow without waiting between polls.
NO_WAIT = ("--poll", "0")

PLAN = drain_plan(moves=[move("web", "t1webtask0000000000000001", "t2webtask0000000000000002",
                              replicas=3),
                         move("api", "t3apitask0000000000000003")],
                  left=[task_why("node-exporter", "t4global00000000000000004",
                                 "global service: one task per node")])


@pytest.fixture(autouse=True)
def no_connection_settings(monkeypatch):
    for name in ("SWARMGUARD_URL", "SWARMGUARD_TOKEN", "SWARMGUARD_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver(monkeypatch):
    with FakeReceiver() as fake:
        monkeypatch.setenv("SWARMGUARD_URL", fake.url)
        monkeypatch.setenv("SWARMGUARD_TOKEN", TOKEN)
        yield fake
    assert fake.unexpected == [], "the CLI asked for something the API does not have"


def started(plan=PLAN):
    return 202, {"dry_run": False, "changed": True, "plan": plan}


# -- drain -------------------------------------------------------------------------------

def test_a_drain_is_followed_until_the_node_is_drained_printing_each_moved_task_once(
        receiver, capsys):
    first, second, third = (moved("web", "t1webtask0000000000000001"),
                            moved("web", "t2webtask0000000000000002", to="worker-3"),
                            moved("api", "t3apitask0000000000000003"))
    receiver.on("POST", "/maintenance/drain", started())
    receiver.on("GET", "/status",
                worker_1_draining(drain_state(remaining=[("web", 2), ("api", 1)],
                                              current="web")),
                worker_1_draining(drain_state(moved_tasks=[first], remaining=[("web", 1),
                                                                              ("api", 1)],
                                              current="web")),
                worker_1_draining(drain_state(moved_tasks=[first, second],
                                              remaining=[("api", 1)], current="api")),
                worker_1_draining(drain_state(moved_tasks=[first, second, third])),
                worker_1_draining(drain_state("drained", moved_tasks=[first, second, third])))

    assert main(["drain", "worker-1", *NO_WAIT]) == 0

    out = capsys.readouterr().out
    assert receiver.requests[0].body == {"node": "worker-1", "force": False, "dry_run": False}
    assert receiver.requests[0].authorization == f"Bearer {TOKEN}"
    assert out.startswith("Draining worker-1")
    for line in ("web task t1webtask000 -> worker-2 in 3.2 s: success",
                 "web task t2webtask000 -> worker-3 in 3.2 s: success",
                 "api task t3apitask000 -> worker-2 in 3.2 s: success"):
        assert out.count(line) == 1, out
    assert "0/3 moved, moving web" in out and "3/3 moved, drained" in out
    assert out.rstrip().endswith("worker-1 is drained.")
    assert receiver.paths().count("GET /status") == 5


def test_without_a_terminal_the_progress_is_printed_only_when_it_changes(receiver, capsys):
    moving = worker_1_draining(drain_state(remaining=[("api", 1)], current="api"))
    receiver.on("POST", "/maintenance/drain", started(drain_plan(moves=[move("api", "t3")])))
    receiver.on("GET", "/status", moving, moving, moving,
                worker_1_draining(drain_state("drained", moved_tasks=[moved("api", "t3")])))

    assert main(["drain", "worker-1", *NO_WAIT]) == 0

    out = capsys.readouterr().out
    assert "\r" not in out
    assert out.count("0/1 moved, moving api") == 1


def test_force_is_asked_for_when_given(receiver):
    receiver.on("POST", "/maintenance/drain", started())
    receiver.on("GET", "/status", worker_1_draining(drain_state("drained")))

    assert main(["drain", "--force", "worker-1", *NO_WAIT]) == 0

    assert receiver.requests[0].body == {"node": "worker-1", "force": True, "dry_run": False}


def test_a_dry_run_prints_the_plan_and_follows_nothing(receiver, capsys):
    receiver.on("POST", "/maintenance/drain",
                (200, {"dry_run": True, "changed": False, "plan": PLAN}))

    assert main(["drain", "worker-1", "--dry-run"]) == 0

    out = capsys.readouterr().out
    assert receiver.paths() == ["POST /maintenance/drain"]
    assert receiver.requests[0].body["dry_run"] is True
    assert out.startswith("**DRY-RUN**: would drain worker-1")
    assert "node-exporter task t4global0000: global service" in out


def test_detach_starts_the_drain_and_follows_nothing(receiver, capsys):
    receiver.on("POST", "/maintenance/drain", started())

    assert main(["drain", "worker-1", "--detach"]) == 0

    assert receiver.paths() == ["POST /maintenance/drain"]
    assert "swarmguard status" in capsys.readouterr().out


def test_a_refused_drain_prints_the_receivers_sentence_and_the_blocked_tasks_and_exits_1(
        receiver, capsys):
    blocked = drain_plan(blocked=[task_why("db", "t5dbtask00000000000000005",
                                           "constraint node.hostname==worker-1")])
    receiver.on("POST", "/maintenance/drain",
                (409, {"error": "1 task no other node can take; --force leaves it to "
                                "Swarm's drain", "plan": blocked}))

    assert main(["drain", "worker-1", *NO_WAIT]) == 1

    captured = capsys.readouterr()
    assert "1 task no other node can take" in captured.err
    assert "db task t5dbtask0000: constraint node.hostname==worker-1" in captured.err
    assert receiver.paths() == ["POST /maintenance/drain"]


def test_a_refusal_without_a_plan_prints_the_sentence_alone(receiver, capsys):
    receiver.on("POST", "/maintenance/drain",
                (409, {"error": "worker-1 is already draining", "plan": None}))

    assert main(["drain", "worker-1"]) == 1

    assert "worker-1 is already draining" in capsys.readouterr().err


def test_an_unknown_node_is_refused_with_exit_1(receiver, capsys):
    receiver.on("POST", "/maintenance/drain", (404, {"error": "no node worker-9"}))

    assert main(["drain", "worker-9"]) == 1

    assert "no node worker-9" in capsys.readouterr().err


def test_a_problem_is_shown_once_per_distinct_problem_while_the_drain_goes_on(receiver, capsys):
    stuck = "web: the new task failed its health check; rolled back"
    other = "web: no node answered in time"
    receiver.on("POST", "/maintenance/drain", started())
    receiver.on("GET", "/status",
                *[worker_1_draining(drain_state(remaining=[("web", 2)], problem=p))
                  for p in (stuck, stuck, other, stuck, None)],
                worker_1_draining(drain_state("drained")))

    assert main(["drain", "worker-1", *NO_WAIT]) == 0

    out = capsys.readouterr().out
    assert out.count(stuck) == 1 and out.count(other) == 1


def test_following_survives_a_receiver_that_goes_away_and_comes_back_with_an_empty_list(
        receiver, capsys):
    # Restarted mid-drain: no answer, then a 503 while it starts, then it resumes the
    # drain from the node's labels with `moved` empty again.
    before, after = moved("web", "t1webtask0000000000000001"), moved("api", "t3apitask000000")
    receiver.on("POST", "/maintenance/drain", started())
    receiver.on("GET", "/status",
                worker_1_draining(drain_state(moved_tasks=[before], remaining=[("web", 1),
                                                                               ("api", 1)])),
                DROP, DROP, (503, {"error": "Docker is unreachable"}), DROP,
                worker_1_draining(drain_state(remaining=[("web", 1), ("api", 1)])),
                worker_1_draining(drain_state(moved_tasks=[after], remaining=[("web", 1)])),
                worker_1_draining(drain_state("drained", moved_tasks=[after])))

    assert main(["drain", "worker-1", *NO_WAIT]) == 0

    out = capsys.readouterr().out
    assert out.count("Cannot reach the receiver") == 1
    assert out.count("The receiver answers again.") == 1
    assert out.count("web task t1webtask000") == 1 and out.count("api task t3apitask000") == 1


def test_a_drain_the_receiver_does_not_show_yet_is_waited_for(receiver, capsys):
    receiver.on("POST", "/maintenance/drain", started())
    receiver.on("GET", "/status",
                status(nodes=[node("worker-1", WORKER_1["id"])]),
                worker_1_draining(drain_state("drained")))

    assert main(["drain", "worker-1", *NO_WAIT]) == 0


def test_a_drain_that_ends_in_another_state_than_drained_is_exit_1(receiver, capsys):
    receiver.on("POST", "/maintenance/drain", started())
    receiver.on("GET", "/status", worker_1_draining(drain_state("stopped")))

    assert main(["drain", "worker-1", *NO_WAIT]) == 1

    assert "The drain ended stopped, not drained." in capsys.readouterr().err


def test_following_gives_up_after_the_wait_timeout_with_exit_1(receiver, capsys):
    receiver.on("POST", "/maintenance/drain", started())
    receiver.on("GET", "/status", worker_1_draining(drain_state(remaining=[("web", 2)])))

    assert main(["drain", "worker-1", "--wait-timeout", "0", *NO_WAIT]) == 1

    assert "receiver carries on" in capsys.readouterr().err


def test_following_polls_until_the_wait_timeout_has_passed_and_no_longer(receiver):
    receiver.on("GET", "/status", worker_1_draining(drain_state(remaining=[("web", 2)])))
    ticks, sleeps = iter(range(0, 1000, 10)), []  # each look at the clock is 10 s later

    outcome = follow.drain(Client(receiver.url, TOKEN, timeout=5), PLAN,
                           follow.Screen(io.StringIO(), tty=False),
                           follow.Pace(poll=1, wait_timeout=25),
                           clock=lambda: next(ticks), sleep=sleeps.append)

    # Deadline 0 + 25: polls after 0, 10 and 20 s; at 30 s it gives up.
    assert outcome == follow.TIMED_OUT
    assert receiver.paths() == ["GET /status"] * 3
    assert sleeps == [1, 1]


def test_a_receiver_in_dry_run_mode_that_starts_nothing_is_exit_1(receiver, capsys):
    receiver.on("POST", "/maintenance/drain",
                (200, {"dry_run": True, "changed": False, "plan": PLAN}))

    assert main(["drain", "worker-1"]) == 1

    assert "did not start the drain" in capsys.readouterr().err


@pytest.mark.parametrize("name, why", [
    ("", "cannot be empty"),
    ("w" * 257, "at most 256 characters"),
    ("worker-1\x1b[2J", "control characters"),
])
def test_a_bad_node_name_is_a_usage_error_and_nothing_is_sent(receiver, capsys, name, why):
    assert main(["drain", name]) == 2

    assert why in capsys.readouterr().err
    assert receiver.requests == []


def test_a_node_name_of_256_characters_is_sent(receiver):
    receiver.on("POST", "/maintenance/drain", (404, {"error": "no such node"}))

    assert main(["drain", "w" * 256]) == 1

    assert receiver.requests[0].body["node"] == "w" * 256


# -- undrain -----------------------------------------------------------------------------

def test_undrain_prints_the_receivers_message(receiver, capsys):
    receiver.on("POST", "/maintenance/undrain",
                (200, {"dry_run": False, "changed": True, "message": "worker-1 takes work again"}))

    assert main(["undrain", "worker-1"]) == 0

    assert receiver.requests[0].body == {"node": "worker-1", "dry_run": False}
    assert capsys.readouterr().out == "worker-1 takes work again\n"


def test_an_undrain_dry_run_says_nothing_changed(receiver, capsys):
    receiver.on("POST", "/maintenance/undrain",
                (200, {"dry_run": True, "changed": False,
                       "message": "would let worker-1 take work again"}))

    assert main(["undrain", "worker-1", "--dry-run"]) == 0

    assert receiver.requests[0].body == {"node": "worker-1", "dry_run": True}
    assert "nothing was changed" in capsys.readouterr().out


def test_an_undrain_the_receiver_cannot_do_is_exit_1(receiver, capsys):
    receiver.on("POST", "/maintenance/undrain", (409, {"error": "worker-1 is down"}))

    assert main(["undrain", "worker-1"]) == 1

    assert "worker-1 is down" in capsys.readouterr().err


# -- rebalance ---------------------------------------------------------------------------

RPLAN = {"tolerance": 1, "counts": {"worker-1": 5, "worker-2": 1},
         "moves": [{"service": "web", "task": "t1webtask0000000000000001", "from": "worker-1",
                    "to": ["worker-2"]},
                   {"service": "api", "task": "t3apitask0000000000000003", "from": "worker-1",
                    "to": ["worker-2"]}],
         "why_not": None}


def rebalancing(state="running", moved_tasks=(), remaining=2, problem=None):
    return status(rebalance={"state": state, "moved": list(moved_tasks),
                             "remaining": remaining, "problem": problem})


def test_a_rebalance_is_followed_until_finished_printing_each_moved_task_once(receiver, capsys):
    web, api = moved("web", "t1webtask0000000000000001"), moved("api", "t3apitask000000")
    receiver.on("POST", "/maintenance/rebalance",
                (202, {"dry_run": False, "changed": True, "plan": RPLAN}))
    receiver.on("GET", "/status", rebalancing(), rebalancing(moved_tasks=[web], remaining=1),
                rebalancing(moved_tasks=[web], remaining=1),
                rebalancing("finished", moved_tasks=[web, api], remaining=0))

    assert main(["rebalance", *NO_WAIT]) == 0

    out = capsys.readouterr().out
    assert receiver.requests[0].body == {"dry_run": False}
    assert out.count("web task t1webtask000 -> worker-2 in 3.2 s: success") == 1
    assert out.count("api task t3apitask000 -> worker-2 in 3.2 s: success") == 1
    assert out.rstrip().endswith("Rebalance finished.")


def test_a_rebalance_s_remaining_may_be_listed_per_service_like_a_drain_s(receiver, capsys):
    receiver.on("POST", "/maintenance/rebalance",
                (202, {"dry_run": False, "changed": True, "plan": RPLAN}))
    receiver.on("GET", "/status",
                rebalancing(remaining=[{"service": "web", "tasks": 1},
                                       {"service": "api", "tasks": 1}]),
                rebalancing("finished", remaining=[]))

    assert main(["rebalance", *NO_WAIT]) == 0

    out = capsys.readouterr().out
    assert "0/2 moved, rebalancing" in out and "2/2 moved, finished" in out


def test_a_rebalance_that_stops_is_exit_1_with_its_problem(receiver, capsys):
    receiver.on("POST", "/maintenance/rebalance",
                (202, {"dry_run": False, "changed": True, "plan": RPLAN}))
    receiver.on("GET", "/status",
                rebalancing("stopped", problem="web: the new task never became healthy"))

    assert main(["rebalance", *NO_WAIT]) == 1

    captured = capsys.readouterr()
    assert "web: the new task never became healthy" in captured.out
    assert "ended stopped" in captured.err


def test_a_rebalance_the_receiver_forgets_is_exit_1(receiver, capsys):
    receiver.on("POST", "/maintenance/rebalance",
                (202, {"dry_run": False, "changed": True, "plan": RPLAN}))
    receiver.on("GET", "/status", status())

    assert main(["rebalance", *NO_WAIT]) == 1

    assert "no longer reports the rebalance" in capsys.readouterr().err


def test_a_rebalance_dry_run_prints_the_plan_and_follows_nothing(receiver, capsys):
    receiver.on("POST", "/maintenance/rebalance",
                (200, {"dry_run": True, "changed": False, "plan": RPLAN}))

    assert main(["rebalance", "--dry-run"]) == 0

    assert receiver.paths() == ["POST /maintenance/rebalance"]
    assert "**DRY-RUN**: would rebalance: 2 tasks" in capsys.readouterr().out


def test_nothing_to_rebalance_is_done_and_says_why(receiver, capsys):
    receiver.on("POST", "/maintenance/rebalance",
                (200, {"dry_run": False, "changed": False,
                       "plan": {**RPLAN, "moves": [], "why_not": "already within tolerance"}}))

    assert main(["rebalance"]) == 0

    assert "Nothing to rebalance: already within tolerance" in capsys.readouterr().out
    assert receiver.paths() == ["POST /maintenance/rebalance"]


def test_a_rebalance_while_another_runs_is_exit_1(receiver, capsys):
    receiver.on("POST", "/maintenance/rebalance",
                (409, {"error": "a drain of worker-1 is running"}))

    assert main(["rebalance"]) == 1

    assert "a drain of worker-1 is running" in capsys.readouterr().err


# -- status ------------------------------------------------------------------------------

STATUS = status(
    nodes=[node("manager", "n0manager00000000000000000", role="manager", tasks=0),
           node("worker-1", WORKER_1["id"], tasks=3, hot=True)],
    services=[{"name": "demo", "replicas": 2, "running": 2, "last_action": "migrate",
               "last_action_at": "2026-12-04T10:00:00Z",
               "last_action_reason": "Migrating demo off worker-1 (cpu 101 %)",
               "futile_until": None}],
    recent=[{"seq": 7, "type": "decision", "at": "2026-12-04T10:00:00Z",
             "alert": "SwarmGuardMigrate", "service": "demo", "task": None, "node": None,
             "kind": "migrate", "result": "skip", "reason": "cooldown",
             "message": "Not migrating demo: cooldown", "starts_at": None,
             "received_at": None, "duration_s": None}])


def test_status_prints_nodes_services_and_recent_decisions(receiver, capsys):
    receiver.on("GET", "/status", (200, STATUS))

    assert main(["status"]) == 0

    out = capsys.readouterr().out
    assert "worker-1" in out and "HOT" in out
    assert "demo" in out and "2/2" in out
    assert "skip (cooldown)" in out and "Not migrating demo: cooldown" in out


def test_status_json_prints_the_receivers_answer_as_it_is(receiver, capsys):
    receiver.on("GET", "/status", (200, STATUS))

    assert main(["status", "--json"]) == 0

    assert json.loads(capsys.readouterr().out) == STATUS


# -- where the receiver is, and its token -------------------------------------------------

def test_no_token_is_exit_2_and_nothing_is_sent(receiver, monkeypatch, capsys):
    monkeypatch.delenv("SWARMGUARD_TOKEN")

    assert main(["status"]) == 2

    assert "no token" in capsys.readouterr().err
    assert receiver.requests == []


@pytest.mark.parametrize("content, why", [(None, "cannot read the token file"),
                                          ("\n", "is empty"),
                                          ("tok\x00en", "cannot carry")])
def test_an_unusable_token_file_is_exit_2_and_nothing_is_sent(receiver, tmp_path, capsys,
                                                              content, why):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)

    assert main(["status", "--token-file", str(path)]) == 2

    assert why in capsys.readouterr().err
    assert receiver.requests == []


def test_the_token_file_is_read_without_its_trailing_newline_and_wins_over_the_token(
        receiver, tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    monkeypatch.setenv("SWARMGUARD_TOKEN", "another")
    monkeypatch.setenv("SWARMGUARD_TOKEN_FILE", str(path))
    receiver.on("GET", "/status", (200, STATUS))

    assert main(["status"]) == 0

    assert receiver.requests[0].authorization == f"Bearer {TOKEN}"


def test_the_token_file_flag_wins_over_the_variable(receiver, tmp_path, monkeypatch):
    (tmp_path / "right").write_text(TOKEN)
    monkeypatch.setenv("SWARMGUARD_TOKEN_FILE", str(tmp_path / "missing"))
    receiver.on("GET", "/status", (200, STATUS))

    assert main(["--token-file", str(tmp_path / "right"), "status"]) == 0


def test_a_wrong_token_is_exit_2_saying_the_receiver_refused_it(receiver, monkeypatch, capsys):
    monkeypatch.setenv("SWARMGUARD_TOKEN", "not-the-token")

    assert main(["drain", "worker-1"]) == 2

    assert "the receiver refused the token" in capsys.readouterr().err


def test_the_url_flag_goes_before_or_after_the_command_and_wins_over_the_variable(
        receiver, monkeypatch):
    monkeypatch.setenv("SWARMGUARD_URL", f"http://127.0.0.1:{closed_port()}")
    receiver.on("GET", "/status", (200, STATUS))

    assert main(["--url", receiver.url, "status"]) == 0
    assert main(["status", "--url", receiver.url]) == 0


def test_a_url_that_is_not_http_is_exit_2(receiver, capsys):
    assert main(["--url", "127.0.0.1:8000", "status"]) == 2

    assert "is not an http:// or https:// URL" in capsys.readouterr().err


# -- a receiver that is not there, or not well ------------------------------------------

def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_receiver_that_is_down_is_exit_3(monkeypatch, capsys):
    monkeypatch.setenv("SWARMGUARD_TOKEN", TOKEN)

    assert main(["--url", f"http://127.0.0.1:{closed_port()}", "status"]) == 3

    assert "Connection refused" in capsys.readouterr().err


def test_a_receiver_that_does_not_answer_within_the_timeout_is_exit_3(receiver, capsys):
    receiver.on("GET", "/status", HANG)

    assert main(["--timeout", "0.2", "status"]) == 3

    assert "no answer within 0.2 s" in capsys.readouterr().err


def test_a_5xx_is_exit_3_with_the_receivers_sentence(receiver, capsys):
    receiver.on("POST", "/maintenance/drain", (503, {"error": "Docker is unreachable"}))

    assert main(["drain", "worker-1"]) == 3

    assert "Docker is unreachable" in capsys.readouterr().err


def test_an_answer_that_is_not_json_is_exit_3(receiver, capsys):
    receiver.on("GET", "/status", Raw(200, "<html>a proxy's page</html>"))

    assert main(["status"]) == 3

    assert "not a JSON object" in capsys.readouterr().err


def test_a_receiver_without_the_maintenance_api_is_refused_with_a_hint(receiver, capsys):
    receiver.on("POST", "/maintenance/drain", Raw(404, "<h1>Not Found</h1>"))

    assert main(["drain", "worker-1"]) == 1

    assert "maintenance API" in capsys.readouterr().err


def test_an_answer_shaped_otherwise_than_the_api_is_exit_3_without_a_traceback(
        receiver, capsys):
    receiver.on("POST", "/maintenance/drain", (202, {"dry_run": False, "changed": True}))

    assert main(["drain", "worker-1"]) == 3

    err = capsys.readouterr().err
    assert "does not follow the maintenance API" in err and "Traceback" not in err


# -- the progress display ----------------------------------------------------------------

def test_on_a_terminal_the_bar_is_redrawn_in_place_and_messages_go_above_it():
    out = io.StringIO()
    screen = follow.Screen(out, tty=True)

    screen.bar("[--] 0/2 moved, moving web")
    screen.say("web task t1 -> worker-2: success")
    screen.bar("[#-] 1/2 moved, x")
    screen.close()

    assert out.getvalue() == ("\r[--] 0/2 moved, moving web"
                              "\r" + " " * 26 + "\r" + "web task t1 -> worker-2: success\n"
                              "[--] 0/2 moved, moving web"
                              "\r[#-] 1/2 moved, x         "
                              "\n")


def test_without_a_terminal_each_change_of_the_bar_is_a_line():
    out = io.StringIO()
    screen = follow.Screen(out, tty=False)

    for line in ("a", "a", "b"):
        screen.bar(line)
    screen.say("message")
    screen.close()

    assert out.getvalue() == "a\nb\nmessage\n"


# -- the documentation -------------------------------------------------------------------

def test_the_contract_s_exit_statuses_are_the_ones_the_command_uses():
    contract = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
    section = contract.split("## Maintenance", 1)[1].split("\n## ", 1)[0]
    table = section.split("Exit status:", 1)[1]
    rows = [line.strip("|").split("|") for line in table.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert {int(code): meaning.strip() for code, meaning in rows} == EXIT_MEANINGS
