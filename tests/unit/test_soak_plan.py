"""The soak's plan (tests/soak/plan.py): which services it deploys, what loads them, and
which faults it applies when."""
from pathlib import Path

import pytest
import yaml

from tests.soak import model as M
from tests.soak import plan

WORKERS = ("worker-1", "worker-2", "worker-3")
NODES = ("manager", *WORKERS)
PORTS = tuple(range(18080, 18092))
ROOT = Path(__file__).resolve().parents[2]
HEALTH_RULES = ROOT / "prometheus" / "rules" / "swarmguard-health.yml"


def schedule(minutes=30, seed=7, workers=WORKERS, nodes=NODES):
    return plan.fault_schedule(minutes, seed, workers, nodes)


def windows(faults):
    return [(f.start_s, f.window_end_s) for f in faults]


# -- services ------------------------------------------------------------------------------

def test_the_soak_deploys_ten_opted_in_services_and_two_it_must_leave_alone():
    got = plan.services(PORTS, WORKERS)
    assert len(got) == 12
    assert sum(s.opt_in for s in got) == 10
    assert {s.behaviour for s in got if not s.opt_in} == {M.NEIGHBOUR_HOG, M.PLAIN_HOT}
    assert {s.behaviour for s in got if s.opt_in} == {
        M.STARVED, M.SELF_HOT, M.BURSTY, M.LEAK, M.IDLE, M.STATEFUL, M.NO_HEALTHCHECK,
        M.SLOW_START}
    assert len({s.name for s in got}) == 12
    assert all(s.name.startswith("soak-") for s in got)


def test_each_service_publishes_its_own_port_in_the_order_given():
    got = plan.services(PORTS + (19999,), WORKERS)
    assert [s.published_port for s in got] == list(PORTS)


def test_too_few_ports_are_refused_saying_how_many_are_needed():
    with pytest.raises(ValueError, match="need 12 published ports, 11 given"):
        plan.services(PORTS[:11], WORKERS)


def test_the_starved_service_and_its_hog_share_the_first_worker_and_nothing_else_is_pinned():
    got = {s.behaviour: s for s in plan.services(PORTS, WORKERS)}
    assert got[M.STARVED].node == got[M.NEIGHBOUR_HOG].node == "worker-1"
    assert [s.name for s in plan.services(PORTS, WORKERS) if s.node] == [
        "soak-starved", "soak-neighbour-hog"]
    with pytest.raises(ValueError, match="needs a worker"):
        plan.services(PORTS, ())


def test_replica_bounds_hold_the_deployed_count():
    for s in plan.services(PORTS, WORKERS):
        assert s.min_replicas <= s.replicas <= s.max_replicas, s.name
    idle = {s.name: s for s in plan.services(PORTS, WORKERS) if s.behaviour == M.IDLE}
    # One idle service SwarmGuard may scale down, one at its floor it must not.
    assert idle["soak-idle"].min_replicas < idle["soak-idle"].replicas
    assert idle["soak-steady"].min_replicas == idle["soak-steady"].replicas == 2


def test_every_behaviour_has_a_load_and_only_the_hot_ones_burn_cpu():
    assert set(plan.LOAD) == {s.behaviour for s in plan.SERVICES_SPEC}
    hot = {b for b, load in plan.LOAD.items() if load.cpu_percent}
    assert hot == {M.STARVED, M.SELF_HOT, M.BURSTY, M.STATEFUL, M.NO_HEALTHCHECK,
                   M.NEIGHBOUR_HOG, M.PLAIN_HOT}
    # The starved task burns in step with its hog (the driver: only on the hog's node).
    assert plan.LOAD[M.STARVED].periods(1800) == plan.LOAD[M.NEIGHBOUR_HOG].periods(1800)
    assert plan.LOAD[M.PLAIN_HOT].periods(1800) == [(0.0, 1800)]


def test_a_periodic_load_is_on_then_off_in_turn_and_stops_with_the_soak():
    load = plan.Load(cpu_percent=100, on_s=240, off_s=120, delay_s=60)
    assert load.periods(900) == [(60, 300), (420, 660), (780, 900)]
    assert load.periods(60) == []


def test_the_bursts_leave_room_for_a_scale_down_between_them():
    bursty = plan.LOAD[M.BURSTY]
    # ScaleDown's window (swarmguard-scale-down.yml) is 180 s on 30 s averages.
    assert bursty.network_percent > 65 and bursty.off_s >= 180 + 30
    assert len(bursty.periods(30 * 60)) >= 3


def test_the_leak_stops_growing_below_its_memory_limit():
    leak = plan.LOAD[M.LEAK]
    assert 0 < leak.memory_cap_mib < leak.memory_limit_mib
    assert leak.memory_mib_per_min > 0


# -- the fault schedule --------------------------------------------------------------------

def test_the_same_seed_gives_the_same_schedule():
    assert schedule(seed=7) == schedule(seed=7)
    assert schedule(minutes=8, seed=3) == schedule(minutes=8, seed=3)


def test_another_seed_gives_another_order_and_other_times():
    orders = {tuple(f.kind for f in schedule(seed=s)[0]) for s in range(6)}
    assert len(orders) > 1
    assert [f.start_s for f in schedule(seed=1)[0]] != [f.start_s for f in schedule(seed=2)[0]]


@pytest.mark.parametrize("minutes", [8, 15, 27, 30, 60])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_faults_never_overlap_and_leave_a_quiet_tail(minutes, seed):
    faults, _ = schedule(minutes, seed)
    assert [f.start_s for f in faults] == sorted(f.start_s for f in faults)
    for (_, end), (start, _) in zip(windows(faults), windows(faults)[1:]):
        assert end + plan.QUIET_S <= start
    assert faults, "some fault fits in 8 minutes"
    assert faults[0].start_s >= plan.WARMUP_S == 150
    assert faults[-1].window_end_s <= minutes * 60 - plan.TAIL_S
    assert plan.TAIL_S == 60


def test_the_free_time_is_spread_between_the_faults_not_left_at_one_end():
    faults, _ = schedule(60, seed=4)
    gaps = [b.start_s - a.window_end_s for a, b in zip(faults, faults[1:])]
    lead = faults[0].start_s - plan.WARMUP_S
    tail = 60 * 60 - plan.TAIL_S - faults[-1].window_end_s
    shares = [lead, *(g - plan.QUIET_S for g in gaps), tail]
    mean = sum(shares) / len(shares)
    # Jittered (0.5 to 1.5 of an even share), not all the same, none hoarding the time.
    assert all(0.3 * mean <= s <= 1.7 * mean for s in shares), shares
    assert len(set(shares)) > 1


def test_every_fault_kind_is_scheduled_in_thirty_minutes():
    for seed in range(10):
        faults, not_scheduled = schedule(30, seed)
        assert sorted(f.kind for f in faults) == sorted(f.kind for f in plan.FAULTS)
        assert not_scheduled == []


def test_an_eight_minute_soak_schedules_what_fits_and_names_the_rest():
    faults, not_scheduled = schedule(8, seed=1)
    assert 1 <= len(faults) < len(plan.FAULTS)
    named = [line.split(":")[0] for line in not_scheduled]
    assert sorted(named + [f.kind for f in faults]) == sorted(f.kind for f in plan.FAULTS)
    assert all("no room in 8 minutes" in line for line in not_scheduled)


def test_a_soak_too_short_for_any_fault_schedules_none():
    faults, not_scheduled = schedule(3, seed=1)
    assert faults == []
    assert len(not_scheduled) == len(plan.FAULTS)


def test_faults_hit_a_worker_a_node_or_no_node_as_their_kind_says():
    for seed in range(10):
        for f in schedule(30, seed)[0]:
            if f.kind in (M.DOCKERD_STOP, M.NETWORK_CUT, M.DRAIN):
                assert f.node in WORKERS
            elif f.kind in (M.PROMETHEUS_RESTART, M.EXPORTER_KILL):
                assert f.node in NODES
            else:
                assert f.node is None
    hit = {f.node for seed in range(20) for f in schedule(30, seed)[0]
           if f.kind == M.EXPORTER_KILL}
    assert "manager" in hit and hit & set(WORKERS)


def test_without_workers_the_worker_faults_are_named_not_scheduled():
    faults, not_scheduled = schedule(60, seed=1, workers=())
    assert {f.kind for f in faults} == {f.kind for f in plan.FAULTS} - {
        M.DOCKERD_STOP, M.NETWORK_CUT, M.DRAIN}
    assert sorted(not_scheduled) == [f"{k}: no worker to hit"
                                     for k in sorted((M.DOCKERD_STOP, M.DRAIN, M.NETWORK_CUT))]


def test_every_fault_kind_of_the_model_is_in_the_table_once():
    kinds = [f.kind for f in plan.FAULTS]
    assert sorted(kinds) == sorted({getattr(M, n) for n in (
        "RECEIVER_KILL", "RECEIVER_SIGTERM", "PROMETHEUS_RESTART", "CENTRAL_PROMETHEUS_RESTART",
        "ALERTMANAGER_RESTART", "DOCKERD_STOP", "NETWORK_CUT", "DRAIN", "EXPORTER_KILL")})


def _health_rules() -> dict[tuple[str, str], float]:
    """(alertname, reason) -> its `for:` in seconds, from the rules file."""
    [group] = yaml.safe_load(HEALTH_RULES.read_text())["groups"]
    seconds = {"s": 1, "m": 60}
    out = {}
    for rule in group["rules"]:
        if "alert" in rule and "reason" in rule.get("labels", {}):
            held = rule.get("for", "0s")
            out[(rule["alert"], rule["labels"]["reason"])] = float(held[:-1]) * seconds[held[-1]]
    return out


def test_the_expected_and_allowed_alerts_are_ones_the_rules_raise():
    rules = _health_rules()
    for f in plan.FAULTS:
        for pair in f.expected + f.allowed:
            assert pair in rules, (f.kind, pair)
        assert not set(f.expected) & set(f.allowed), f.kind


def test_a_fault_lasts_longer_than_the_for_of_the_alert_it_expects():
    rules = _health_rules()
    for f in plan.FAULTS:
        for pair in f.expected:
            assert f.duration_s > rules[pair], (f.kind, pair)


def test_the_schedule_table_says_when_what_where_how_long_and_what_must_fire():
    faults = [M.Fault(M.NETWORK_CUT, "worker-2", 185.0, 20, (("SwarmGuardBlind", "target_down"),)),
              M.Fault(M.RECEIVER_SIGTERM, None, 754.0, 0)]
    text = plan.format_schedule(faults, ["drain: no room in 8 minutes (its window is 150 s)"],
                                started_at=1796000000.0)  # 2026-11-30 00:53:20 UTC
    assert text.splitlines() == [
        "after  at (UTC)  fault             node      down  expected alert",
        "03:05  00:56:25  network_cut       worker-2  20 s  SwarmGuardBlind (target_down)",
        "12:34  01:05:54  receiver_sigterm  -         0 s   none",
        "Not scheduled:",
        "  drain: no room in 8 minutes (its window is 150 s)",
    ]
    assert plan.format_schedule([], []).splitlines() == [
        "after  fault  node  down  expected alert", "(no fault scheduled)"]


@pytest.mark.parametrize("minutes", [8, 12, 20])
def test_a_fault_left_out_would_not_have_fit_even_in_the_quiet_time(minutes):
    # A long fault early in the seeded order does not crowd out a shorter one after it.
    for seed in range(10):
        faults, not_scheduled = schedule(minutes, seed)
        room = minutes * 60 - plan.WARMUP_S - plan.TAIL_S
        left = room - sum(f.window_end_s - f.start_s + plan.QUIET_S for f in faults)
        for line in not_scheduled:
            assert plan.FAULT_SPECS[line.split(":")[0]].window_s > left, (seed, line)
