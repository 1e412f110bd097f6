"""The soak's report (tests/soak/report.py): the JSON a program reads after `make soak`, and
the one picture a person looks at."""
import dataclasses
import json
import math
from datetime import datetime, timezone

import pytest

from tests.soak import model as M
from tests.soak import plan, report

T0 = 1796000000.0  # 2026-11-30 00:53:20 UTC
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLANS = plan.services(range(18080, 18092), ("worker-1", "worker-2"))
ALL_HELD = {"invariants": {"no_failed_requests": {"violations": 0, "first": []},
                           "stateful_never_moved": {"violations": 0, "first": []}},
            "violations": []}
ONE_BROKEN = {"invariants": {"no_failed_requests": {"violations": 1, "first": [
                  {"at": T0 + 400.5, "text": "soak-slow-start: 1 request failed"}]},
                             "stateful_never_moved": {"violations": 0, "first": []}},
              "violations": [{"invariant": "no_failed_requests", "at": T0 + 400.5,
                              "text": "soak-slow-start: 1 request failed"}]}


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, timezone.utc).isoformat()


def event(seq, type_, seconds, service=None, result=None, kind=None):
    return {"seq": seq, "type": type_, "at": at(seconds), "alert": None, "service": service,
            "task": None, "node": None, "kind": kind, "result": result, "reason": None,
            "message": f"event {seq}", "starts_at": None, "received_at": None,
            "duration_s": None}


def empty_soak() -> M.Observations:
    return M.Observations(started=T0, ended=T0 + 480, plans=())


def busy_soak() -> M.Observations:
    cut = M.Fault(M.NETWORK_CUT, "worker-2", 185.0, 20, (("SwarmGuardBlind", "target_down"),))
    sigterm = M.Fault(M.RECEIVER_SIGTERM, None, 330.0, 0)
    return M.Observations(
        started=T0, ended=T0 + 600, plans=PLANS,
        faults=[M.FaultSpan(cut, T0 + 185.4, T0 + 206.1),
                M.FaultSpan(sigterm, T0 + 330.2, T0 + 331.0)],
        requests=[M.Request("soak-idle", T0 + s, True, "worker-1") for s in range(0, 600, 5)]
        + [M.Request("soak-slow-start", T0 + 400.5, False, None),
           M.Request("soak-slow-start", T0 + 401.0, True, "worker-2"),
           M.Request("not-planned", T0 + 12.0, False, None)],
        events=[event(1, "started", 1.0, result="live"),
                event(2, "decision", 120.0, "soak-self-hot", "act", "migrate"),
                event(3, "outcome", 131.0, "soak-self-hot", "success", "migrate"),
                event(4, "decision", 250.0, "soak-bursty", "act", "scale_up"),
                event(5, "outcome", 250.2, "soak-bursty", "failed", "scale_up"),
                event(6, "decision", 260.0, "soak-stateful", "skip", "migrate"),
                event(1, "started", 331.5, result="live")],
        alerts=[M.AlertSpan("SwarmGuardBlind", {"reason": "target_down", "node": "worker-2"},
                            T0 + 196.0, T0 + 215.0),
                M.AlertSpan("SwarmGuardMigrate", {"service": "soak-self-hot"}, T0 + 118.0,
                            T0 + 125.0),
                M.AlertSpan("SwarmGuardScaleUp", {"service": "soak-bursty"}, T0 + 248.0, None),
                M.AlertSpan("Watchdog", {}, T0, None)],
        resources=[M.ResourceSample("receiver", 100, T0 + s, 60_000_000 + 1000 * s, s / 100)
                   for s in range(0, 330, 30)]
        + [M.ResourceSample("receiver", 200, T0 + s, 55_000_000, s / 100)
           for s in range(335, 600, 30)]
        + [M.ResourceSample("exporter-worker-1", 50, T0 + s, 30_000_000, s / 50)
           for s in range(0, 600, 30)],
        containers=[(T0, 40), (T0 + 300, 42)])


def doc(obs=None, results=ALL_HELD, figures=None):
    obs = obs or busy_soak()
    schedule = [f.fault for f in obs.faults]
    return report.to_json(obs, schedule, ["drain: no room in 10 minutes (its window is 150 s)"],
                          results, figures or {"moves": {"soak-self-hot": 1}}, 42, 10)


# -- the JSON ------------------------------------------------------------------------------

def test_the_json_lists_violations_empty_when_all_held():
    held = doc(results=ALL_HELD)
    assert held["violations"] == [] and held["held"] is True
    assert held["invariants"] == ALL_HELD["invariants"]
    broken = doc(results=ONE_BROKEN)
    assert broken["held"] is False
    assert broken["violations"] == [{"invariant": "no_failed_requests", "at": T0 + 400.5,
                                     "text": "soak-slow-start: 1 request failed"}]
    assert broken["invariants"]["no_failed_requests"]["first"][0]["at"] == T0 + 400.5


def test_the_json_says_which_soak_it_was_and_when_it_ran():
    got = doc()
    assert (got["seed"], got["minutes"]) == (42, 10)
    assert (got["started"], got["ended"]) == (T0, T0 + 600)
    assert got["started_utc"] == "2026-11-30T00:53:20+00:00"
    assert got["ended_utc"] == "2026-11-30T01:03:20+00:00"
    assert [s["name"] for s in got["services"]] == [p.name for p in PLANS]
    assert got["services"][0]["node"] == "worker-1"


def test_the_json_has_the_faults_as_planned_and_as_applied():
    got = doc()
    assert got["not_scheduled"] == ["drain: no room in 10 minutes (its window is 150 s)"]
    planned = got["schedule"][0]
    assert planned["kind"] == "network_cut" and planned["node"] == "worker-2"
    assert (planned["start_s"], planned["end_s"], planned["window_end_s"]) == (185.0, 205.0, 295.0)
    assert planned["expected"] == [["SwarmGuardBlind", "target_down"]]
    applied = got["faults"][0]
    assert (applied["applied_start"], applied["applied_end"]) == (T0 + 185.4, T0 + 206.1)
    assert math.isclose(applied["applied_start_s"], 185.4)
    assert applied["start_s"] == 185.0
    assert [f["kind"] for f in got["faults"]] == ["network_cut", "receiver_sigterm"]


def test_the_json_counts_every_services_requests_and_failures():
    got = doc()["requests"]
    assert list(got)[:12] == [p.name for p in PLANS]
    assert got["soak-idle"] == {"requests": 120, "failed": 0}
    assert got["soak-slow-start"] == {"requests": 2, "failed": 1}
    assert got["soak-leak"] == {"requests": 0, "failed": 0}
    assert got["not-planned"] == {"requests": 1, "failed": 1}


def test_the_json_is_plain_json_and_keeps_the_figures():
    figures = {"moves": {"soak-self-hot": 1},
               "rss_slope_bytes_per_hour": {"receiver": float("nan")},
               "cost": {"per_node": {"worker-1": 0.31}}}
    got = doc(figures=figures)
    assert json.loads(json.dumps(got, allow_nan=False)) == got
    assert got["figures"] == {"moves": {"soak-self-hot": 1},
                              "rss_slope_bytes_per_hour": {"receiver": None},
                              "cost": {"per_node": {"worker-1": 0.31}}}
    assert json.loads(json.dumps(doc(empty_soak()))) == doc(empty_soak())


# -- the picture ---------------------------------------------------------------------------

def test_a_png_is_written_for_an_empty_soak_and_for_a_busy_one(tmp_path):
    empty = report.render_png(empty_soak(), {"invariants": {}, "violations": []},
                              tmp_path / "empty" / "soak.png")
    busy = report.render_png(busy_soak(), ONE_BROKEN, tmp_path / "busy.png")
    assert empty.read_bytes().startswith(PNG_SIGNATURE)
    assert busy.read_bytes().startswith(PNG_SIGNATURE)
    assert empty.read_bytes() != busy.read_bytes()


def test_the_violations_are_drawn_where_they_happened(tmp_path):
    def moved(seconds):
        [v] = ONE_BROKEN["violations"]
        return {**ONE_BROKEN, "violations": [{**v, "at": T0 + seconds}]}
    early = report.render_png(busy_soak(), moved(100), tmp_path / "early.png").read_bytes()
    late = report.render_png(busy_soak(), moved(500), tmp_path / "late.png").read_bytes()
    assert early != late


def _later(obs: M.Observations, what: str) -> M.Observations:
    """`obs` with the first thing of one kind a minute later."""
    first, *rest = getattr(obs, what)
    if what == "faults":
        first = dataclasses.replace(first, start=first.start + 60, end=first.end + 60)
    elif what == "events":
        first = {**first, "at": at(datetime.fromisoformat(first["at"]).timestamp() - T0 + 60)}
    elif what == "alerts":
        first = dataclasses.replace(first, start=first.start + 60)
    else:
        first = dataclasses.replace(first, at=first.at + 60)
    return dataclasses.replace(obs, **{what: [first, *rest]})


@pytest.mark.parametrize("what", ["faults", "requests", "events", "alerts", "resources"])
def test_each_panel_draws_what_happened_when_it_happened(tmp_path, what):
    obs = busy_soak()
    if what == "requests":
        obs = dataclasses.replace(obs, requests=[r for r in obs.requests if not r.ok])
    if what == "events":
        obs = dataclasses.replace(obs, events=obs.events[1:])  # an act decision first
    before = report.render_png(obs, ALL_HELD, tmp_path / "before.png").read_bytes()
    after = report.render_png(_later(obs, what), ALL_HELD, tmp_path / "after.png").read_bytes()
    assert before != after


def test_the_alerts_get_one_row_per_alertname_and_reason_in_a_fixed_order():
    alerts = busy_soak().alerts + [
        M.AlertSpan("SwarmGuardMigrate", {"service": "soak-starved"}, T0 + 300, T0 + 305),
        M.AlertSpan("SwarmGuardBlind", {"reason": "docker_unreachable"}, T0 + 400, T0 + 430),
        M.AlertSpan("SwarmGuardCannotAct", {"reason": "receiver_down"}, T0 + 500, None),
        M.AlertSpan("SwarmGuardMoveFutile", {"reason": "futile"}, T0 + 510, None),
        M.AlertSpan("SwarmGuardScaleDown", {"service": "soak-idle"}, T0 + 520, T0 + 521)]
    assert [label for _, label in report._alert_rows(alerts)] == [
        "Blind (docker_unreachable)", "Blind (target_down)", "CannotAct (receiver_down)",
        "Migrate", "ScaleUp", "ScaleDown", "MoveFutile (futile)"]


def test_write_puts_the_json_and_the_png_where_asked(tmp_path):
    obs = busy_soak()
    path_json, path_png = report.write(tmp_path / "a" / "soak.json", tmp_path / "b" / "soak.png",
                                       obs, [f.fault for f in obs.faults], [], ONE_BROKEN,
                                       {"moves": {}}, 7, 10)
    written = json.loads(path_json.read_text())
    assert written["seed"] == 7 and written["violations"][0]["invariant"] == "no_failed_requests"
    assert path_png.read_bytes().startswith(PNG_SIGNATURE)
