"""Storms: when a whole node runs hot, move what must move, within budgets, never onto a hot
node, hottest first (receiver/storm.py, and its use in decisions.py and actuator.py)."""
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

from receiver import decisions as D
from receiver import actions
from receiver import reasons as R
from receiver.actuator import Actuator
from receiver.cluster import build_snapshot
from receiver.config import Settings
from receiver.metrics import Metrics
from receiver.alerts import Alert
from receiver.storm import Budgets, StormLedger, StormView, heat_of
from tests.fake_docker_api_client import (WORKER_1, WORKER_2, WORKER_3, FakeDockerAPI, example_nodes,
                                  service_dict, task_dict)

NOW = datetime(2026, 11, 28, 3, 0, 0, tzinfo=timezone.utc)
POLICY = D.Policy.from_settings(Settings(token="t"))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def migrate_alert(service, task, node=WORKER_1, cpu=90.0, memory=None, status="firing"):
    labels = {"alertname": "SwarmGuardMigrate", "service": service, "task_id": task,
              "node_id": node, "severity": "warning"}
    annotations = {"cpu_percent": f"{cpu:.1f}"}
    if memory is not None:
        annotations["memory_percent"] = f"{memory:.1f}"
    return Alert("SwarmGuardMigrate", status, MappingProxyType(labels),
                 MappingProxyType(annotations), NOW - timedelta(seconds=20), None, f"fp-{task}")


def alert_with(name="SwarmGuardMigrate", status="firing", annotations=None, **labels):
    """An alert with exactly these labels (besides alertname) and annotations."""
    return Alert(name, status, MappingProxyType({"alertname": name, **labels}),
                 MappingProxyType(annotations or {}), NOW - timedelta(seconds=20), None,
                 f"fp-{sorted(labels.items())}")


def scale_up_alert(service):
    labels = {"alertname": "SwarmGuardScaleUp", "service": service, "severity": "warning"}
    return Alert("SwarmGuardScaleUp", "firing", MappingProxyType(labels), MappingProxyType({}),
                 NOW - timedelta(seconds=20), None, f"fp-up-{service}")


def service_id(i: int) -> str:
    return f"svc{i:022d}"


def task_id(i: int) -> str:
    return f"task{i:021d}"


def storm_world(count=6, on=WORKER_1, replicas=1):
    """`count` opted-in services, one task each, all on one node."""
    services = [service_dict(f"app{i}", service_id(i), replicas=replicas,
                             constraints=["node.role==worker"]) for i in range(count)]
    tasks = [task_dict(task_id(i), service_id(i), on) for i in range(count)]
    return services, tasks


def snapshot(services, tasks):
    return build_snapshot(services, tasks, example_nodes())


def ledger(clock=None, **budgets):
    return StormLedger(Budgets(**budgets), hot_memory_s=60.0, monotonic=clock or FakeClock())


# -- what the ledger remembers -----------------------------------------------------------

def test_a_node_is_hot_while_a_firing_migrate_alert_names_it_and_cool_once_it_resolves():
    storm = ledger()
    storm.observe([migrate_alert("app0", task_id(0), node=WORKER_2)])
    assert storm.view().hot_nodes() == {WORKER_2}
    storm.observe([migrate_alert("app0", task_id(0), node=WORKER_2, status="resolved")])
    assert storm.view().hot_nodes() == frozenset()


def test_a_hot_task_whose_alert_is_no_longer_resent_is_forgotten_after_the_memory():
    clock = FakeClock()
    storm = ledger(clock)
    storm.observe([migrate_alert("app0", task_id(0), node=WORKER_2)])
    clock.advance(59.9)
    assert storm.view().hot_nodes() == {WORKER_2}
    storm.observe([migrate_alert("app0", task_id(0), node=WORKER_2)])  # a resend
    clock.advance(59.9)
    assert storm.view().hot_nodes() == {WORKER_2}
    clock.advance(0.1)
    assert storm.view().hot_nodes() == frozenset()


def test_other_alerts_never_make_a_node_hot():
    storm = ledger()
    storm.observe([scale_up_alert("app0"),
                   alert_with("SwarmGuardTaskUnhealthy", service="app0", task_id=task_id(0),
                              node_id=WORKER_2)])
    assert storm.view().hot == ()


def test_a_migrate_alert_that_names_no_task_or_no_node_makes_nothing_hot():
    storm = ledger()
    storm.observe([alert_with(service="app0", task_id=task_id(0)),
                   alert_with(service="app1", node_id=WORKER_2)])
    assert storm.view().hot == ()


def test_every_alert_of_a_webhook_counts_whatever_comes_before_it():
    storm = ledger()
    storm.observe([migrate_alert("app0", task_id(0), node=WORKER_2)])
    storm.observe([scale_up_alert("app9"),  # not a migration: passed over
                   migrate_alert("app0", task_id(0), node=WORKER_2, status="resolved"),
                   migrate_alert("app1", task_id(1), node=WORKER_3)])
    assert [h.task_id for h in storm.view().hot] == [task_id(1)]


def test_a_flood_of_hot_tasks_is_remembered_within_a_bound_oldest_forgotten_first():
    storm = StormLedger(Budgets(), 60.0, FakeClock(), capacity=3)
    storm.observe([migrate_alert(f"app{i}", task_id(i)) for i in range(5)])
    assert [h.task_id for h in storm.view().hot] == [task_id(2), task_id(3), task_id(4)]


def test_heat_is_the_higher_of_cpu_and_memory_evidence_and_zero_without_any():
    assert heat_of(migrate_alert("a", task_id(0), cpu=70.0, memory=96.5)) == 96.5
    assert heat_of(migrate_alert("a", task_id(0), cpu=91.0)) == 91.0
    assert heat_of(scale_up_alert("a")) == 0.0


def test_heat_comes_from_the_memory_evidence_alone_when_the_cpu_evidence_is_missing_or_unreadable():
    assert heat_of(alert_with(annotations={"memory_percent": "93.0"})) == 93.0
    assert heat_of(alert_with(annotations={"cpu_percent": "n/a", "memory_percent": "93.0"})) == 93.0


def test_heat_ignores_evidence_that_is_not_a_finite_number():
    for bad in ("NaN", "inf", "-inf"):
        assert heat_of(alert_with(annotations={"cpu_percent": bad, "memory_percent": "88.0"})) == 88.0
        assert heat_of(alert_with(annotations={"cpu_percent": bad})) == 0.0


def test_a_ledger_from_the_settings_has_their_budgets_memory_and_the_given_clock():
    clock = FakeClock()
    settings = Settings(token="t", max_concurrent_actions=5, max_leaving_per_node=2,
                        max_arriving_per_node=3, max_actions_per_minute=7, hot_task_memory=30.0)
    storm = StormLedger.from_settings(settings, clock)
    assert storm.view().budgets == Budgets(concurrent=5, leaving_per_node=2,
                                           arriving_per_node=3, per_minute=7)
    storm.observe([migrate_alert("app0", task_id(0), node=WORKER_2)])
    clock.advance(29.9)
    assert storm.view().hot_nodes() == {WORKER_2}
    clock.advance(0.1)
    assert storm.view().hot_nodes() == frozenset()


# -- budgets ------------------------------------------------------------------------------

def test_the_cluster_budget_counts_actions_in_flight_and_frees_as_they_end():
    storm = ledger(concurrent=2)
    storm.begin("a", "scale_up")
    assert storm.view().over_cluster_budget() is None
    storm.begin("b", "migrate", WORKER_1, [WORKER_2])
    assert "2 action(s) already in flight" in storm.view().over_cluster_budget()
    storm.end("a")
    assert storm.view().over_cluster_budget() is None


def test_the_per_minute_budget_counts_starts_in_the_last_sixty_seconds():
    clock = FakeClock()
    storm = ledger(clock, per_minute=3)
    for name in "abc":
        storm.begin(name, "scale_up")
        storm.end(name)
        clock.advance(10)
    assert "3 action(s) started in the last 60 s" in storm.view().over_cluster_budget()
    clock.advance(30)  # the first start is now exactly 60 s old
    assert storm.view().over_cluster_budget() is None


def test_a_retry_of_the_same_action_is_not_counted_twice():
    storm = ledger(per_minute=1)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2])
    storm.begin("a", "migrate", WORKER_1, [WORKER_2])
    storm.end("a")
    assert len(storm.view().recent_starts) == 1


def test_an_action_decided_again_after_a_failed_attempt_keeps_its_one_start():
    storm = ledger(per_minute=1)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2])
    started = storm.end("a")  # the attempt failed: decided again
    assert started is not None
    assert storm.view(retry_of=started).over_cluster_budget() is None  # not its own obstacle
    assert storm.view().over_cluster_budget() is not None  # everyone else's budget is spent
    storm.begin("a", "migrate", WORKER_1, [WORKER_3], retry_of=started)
    assert len(storm.view().recent_starts) == 1
    assert storm.end("a") == started


def test_a_retry_of_an_action_whose_start_left_the_window_counts_no_new_start():
    clock = FakeClock()
    storm = ledger(clock, per_minute=1)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2])
    clock.advance(61)  # its start is no longer in the last minute
    started = storm.end("a")
    assert storm.view(retry_of=started).recent_starts == ()
    storm.begin("a", "migrate", WORKER_1, [WORKER_2], retry_of=started)
    assert storm.view().recent_starts == ()


def test_where_a_migration_landed_changes_only_its_destinations():
    clock = FakeClock()
    storm = ledger(clock)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2, WORKER_3])
    clock.advance(5)
    storm.landed("a", WORKER_3)
    (move,) = storm.view().moves
    assert (move.kind, move.from_node, move.destinations, move.started) == (
        "migrate", WORKER_1, frozenset({WORKER_3}), 1000.0)


def test_a_drain_s_move_is_found_by_its_own_service_only():
    storm = ledger()
    storm.begin("a", "drain", WORKER_1, [WORKER_2], maintenance=True)
    storm.begin("b", "migrate", WORKER_2, [WORKER_3])
    view = storm.view()
    assert view.maintenance_move("a").service == "a"
    assert view.maintenance_move("b") is None
    assert view.maintenance_move("c") is None


def test_a_node_lets_one_task_leave_at_a_time_by_default():
    storm = ledger()
    storm.begin("a", "migrate", WORKER_1, [WORKER_2])
    view = storm.view()
    assert "1 task(s) already leaving worker-1" in view.over_leave_budget(
        WORKER_1, "worker-1", task_id(9), 99.0)
    assert view.over_leave_budget(WORKER_3, "worker-3", task_id(9), 99.0) is None


def test_a_migration_counts_against_every_node_it_may_land_on_until_swarm_assigns_one():
    storm = ledger(arriving_per_node=1)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2, WORKER_3])
    view = storm.view()
    assert view.over_arrival_budget([(WORKER_3, "worker-3")]) is not None
    storm.landed("a", WORKER_2)
    view = storm.view()
    assert view.over_arrival_budget([(WORKER_3, "worker-3")]) is None
    assert "worker-2 already receive(s) 1 task(s)" in view.over_arrival_budget(
        [(WORKER_2, "worker-2"), (WORKER_3, "worker-3")])


def test_a_node_may_receive_as_many_tasks_at_once_as_its_arrival_budget():
    storm = ledger(arriving_per_node=2)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2])
    assert storm.view().over_arrival_budget([(WORKER_2, "worker-2")]) is None
    storm.begin("b", "migrate", WORKER_3, [WORKER_2])
    assert storm.view().over_arrival_budget([(WORKER_2, "worker-2")]) is not None


def test_the_arrival_refusal_names_every_full_node():
    storm = ledger(arriving_per_node=1)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2, WORKER_3])
    assert storm.view().over_arrival_budget([(WORKER_2, "worker-2"), (WORKER_3, "worker-3")]) == (
        "worker-2, worker-3 already receive(s) 1 task(s) (SWARMGUARD_MAX_ARRIVING_PER_NODE=1)")


def test_a_landed_migration_still_leaves_its_node_and_still_moves_its_service_until_it_ends():
    storm = ledger(leaving_per_node=2)
    storm.observe([migrate_alert("app1", task_id(1), cpu=97.0)])
    storm.begin("app1", "migrate", WORKER_1, [WORKER_2, WORKER_3])
    storm.landed("app1", WORKER_2)
    view = storm.view()
    assert view.leaving(WORKER_1) == 1
    # app1, hotter but moving already, holds nobody back from the second slot.
    assert view.over_leave_budget(WORKER_1, "worker-1", task_id(0), 80.0) is None
    storm.end("app1")
    assert storm.view().leaving(WORKER_1) == 0


def test_a_landing_report_without_a_node_or_for_no_move_in_flight_changes_nothing():
    storm = ledger(arriving_per_node=1)
    storm.begin("a", "migrate", WORKER_1, [WORKER_2, WORKER_3])
    storm.landed("a", "")  # Swarm has not assigned the new task yet
    assert storm.view().over_arrival_budget([(WORKER_3, "worker-3")]) is not None
    storm.landed("nothing-moving", WORKER_2)
    assert [m.service for m in storm.view().moves] == ["a"]
    assert storm.view().arriving(WORKER_2) == 1


def test_the_leave_budget_goes_to_the_hottest_task_in_line_to_leave():
    storm = ledger()
    storm.observe([migrate_alert("app0", task_id(0), cpu=80.0),
                   migrate_alert("app1", task_id(1), cpu=97.0)])
    why = storm.view().over_leave_budget(WORKER_1, "worker-1", task_id(0), 80.0)
    assert why == ("worker-1 lets 1 task(s) leave at a time, hottest first: app1 (97 %) "
                   "goes before this one (80 %)")
    assert storm.view().over_leave_budget(WORKER_1, "worker-1", task_id(1), 97.0) is None


def test_the_refusal_names_the_hottest_of_the_hotter_tasks_in_line():
    storm = ledger()
    storm.observe([migrate_alert("app0", task_id(0), cpu=80.0),
                   migrate_alert("app1", task_id(1), cpu=90.0),
                   migrate_alert("app2", task_id(2), cpu=97.0)])
    why = storm.view().over_leave_budget(WORKER_1, "worker-1", task_id(0), 80.0)
    assert "app2 (97 %) goes before this one (80 %)" in why


def test_equally_hot_tasks_do_not_wait_for_each_other():
    storm = ledger()
    storm.observe([migrate_alert("app0", task_id(0), cpu=90.0),
                   migrate_alert("app1", task_id(1), cpu=90.0)])
    view = storm.view()
    assert view.over_leave_budget(WORKER_1, "worker-1", task_id(0), 90.0) is None
    assert view.over_leave_budget(WORKER_1, "worker-1", task_id(1), 90.0) is None


def test_the_leave_slot_still_free_goes_to_the_hotter_task_in_line():
    storm = ledger(leaving_per_node=2)
    storm.observe([migrate_alert("app1", task_id(1), cpu=97.0)])
    storm.begin("app5", "migrate", WORKER_1, [WORKER_2])  # one of two slots in use
    why = storm.view().over_leave_budget(WORKER_1, "worker-1", task_id(0), 80.0)
    assert why == ("worker-1 lets 1 task(s) leave at a time, hottest first: app1 (97 %) "
                   "goes before this one (80 %)")


def test_a_hotter_task_elsewhere_or_already_moving_holds_nobody_back():
    storm = ledger(leaving_per_node=2)
    storm.observe([migrate_alert("app1", task_id(1), cpu=97.0),
                   migrate_alert("app2", task_id(2), node=WORKER_3, cpu=99.0)])
    storm.begin("app1", "migrate", WORKER_1, [WORKER_2])
    assert storm.view().over_leave_budget(WORKER_1, "worker-1", task_id(0), 80.0) is None


def test_a_hot_task_that_cannot_move_for_good_does_not_hold_back_cooler_ones():
    storm = ledger()
    storm.observe([migrate_alert("app1", task_id(1), cpu=97.0)])
    storm.in_line(task_id(1), False)  # judged: in cooldown, say
    assert storm.view().over_leave_budget(WORKER_1, "worker-1", task_id(0), 80.0) is None


def test_a_task_back_in_line_holds_back_cooler_ones_again():
    storm = ledger()
    storm.observe([migrate_alert("app1", task_id(1), cpu=97.0)])
    storm.in_line(task_id(1), False)
    storm.in_line(task_id(1), True)  # judged again: only a budget kept it, say
    why = storm.view().over_leave_budget(WORKER_1, "worker-1", task_id(0), 80.0)
    assert why == ("worker-1 lets 1 task(s) leave at a time, hottest first: app1 (97 %) "
                   "goes before this one (80 %)")


def test_a_resend_keeps_a_tasks_place_and_refreshes_its_heat():
    storm = ledger()
    storm.observe([migrate_alert("app1", task_id(1), cpu=97.0)])
    storm.in_line(task_id(1), False)
    storm.observe([migrate_alert("app1", task_id(1), cpu=95.0)])
    (hot,) = storm.view().hot
    assert not hot.in_line and hot.heat == 95.0


# -- decisions ----------------------------------------------------------------------------

def decide_one(alert, snap, view):
    (decision,) = D.decide([alert], snap, POLICY, NOW, view)
    return decision


def test_a_migration_also_excludes_every_other_hot_node_and_says_so():
    services, tasks = storm_world(1)
    storm = ledger()
    storm.observe([migrate_alert("other", task_id(9), node=WORKER_3)])
    action = decide_one(migrate_alert("app0", task_id(0)), snapshot(services, tasks),
                        storm.view())
    assert isinstance(action, actions.Action)
    assert action.constraints == ("node.role==worker", "node.hostname!=worker-1",
                                  "node.hostname!=worker-3")
    assert action.exclusion == "node.hostname!=worker-1,node.hostname!=worker-3"
    assert action.destinations == (WORKER_2,)
    assert action.sentence.endswith("excluding worker-1, worker-3 (hot)")


def test_when_every_node_that_could_take_it_is_hot_nothing_moves():
    services, tasks = storm_world(1)
    storm = ledger()
    storm.observe([migrate_alert("x", task_id(8), node=WORKER_2),
                   migrate_alert("y", task_id(9), node=WORKER_3)])
    skip = decide_one(migrate_alert("app0", task_id(0)), snapshot(services, tasks),
                      storm.view())
    assert skip.reason == R.NO_ELIGIBLE_NODE
    assert skip.why == "every node that could take it is hot itself (worker-2, worker-3)"
    assert not skip.lasting  # the task stays in line: the heat elsewhere will pass


def test_a_migration_over_a_budget_is_skipped_with_reason_budget():
    services, tasks = storm_world(2)
    storm = ledger()
    storm.begin("app1", "migrate", WORKER_1, [WORKER_2, WORKER_3])
    skip = decide_one(migrate_alert("app0", task_id(0)), snapshot(services, tasks),
                      storm.view())
    assert skip.reason == R.BUDGET and not skip.lasting
    assert "already leaving worker-1" in skip.why


def test_a_scale_step_over_the_cluster_budget_is_skipped_with_reason_budget():
    services, tasks = storm_world(1)
    storm = ledger(concurrent=1)
    storm.begin("elsewhere", "scale_down")
    skip = decide_one(scale_up_alert("app0"), snapshot(services, tasks), storm.view())
    assert skip.reason == R.BUDGET and not skip.lasting
    storm.end("elsewhere")
    assert isinstance(decide_one(scale_up_alert("app0"), snapshot(services, tasks),
                                 storm.view()), actions.Action)


def test_of_one_services_hot_tasks_the_hottest_is_moved():
    service = service_dict("app0", service_id(0), replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(task_id(0), service_id(0), WORKER_1, slot=1),
             task_dict(task_id(1), service_id(0), WORKER_1, slot=2)]
    cool, hot = migrate_alert("app0", task_id(0), cpu=81.0), migrate_alert("app0", task_id(1), cpu=99.0)
    decisions = D.decide([cool, hot], snapshot([service], tasks), POLICY, NOW, StormView())
    assert [type(d) for d in decisions] == [actions.Skip, actions.Migration]  # in the alerts' order
    assert decisions[1].task.id == task_id(1)


def test_without_a_storm_view_nothing_else_is_in_flight():
    services, tasks = storm_world(1)
    (action,) = D.decide([migrate_alert("app0", task_id(0))], snapshot(services, tasks),
                         POLICY, NOW)
    assert isinstance(action, actions.Action)


# -- a storm, step by step, with a fake clock -------------------------------------------

def test_a_storm_empties_a_hot_node_hottest_first_one_at_a_time_never_onto_a_hot_node():
    """Six hot tasks on worker-1, worker-3 hot too: each round, Alertmanager resends every
    alert still firing, coolest first; a move takes one round. The budgets are never
    exceeded, the moves go hottest first, and nothing lands on worker-3."""
    clock = FakeClock()
    storm = ledger(clock, concurrent=4, leaving_per_node=1, arriving_per_node=2, per_minute=12)
    services, tasks = storm_world(6)
    heats = {i: 80.0 + 3 * i for i in range(6)}  # app5 the hottest
    alerts = {i: migrate_alert(f"app{i}", task_id(i), cpu=heats[i]) for i in range(6)}
    noisy = migrate_alert("noisy", task_id(99), node=WORKER_3)  # worker-3 stays hot
    moved: list[int] = []
    for _round in range(20):
        firing = [alerts[i] for i in range(6) if i not in moved]
        if not firing:
            break
        storm.observe(firing + [noisy])
        snap = snapshot(services, tasks)
        started = []
        # Resends arrive coolest first: arrival order must not decide.
        for alert in sorted(firing, key=heat_of):
            with storm.lock:
                (decision,) = D.decide([alert], snap, POLICY, NOW, storm.view())
                storm.in_line(alert.task_id, isinstance(decision, actions.Skip)
                              and not decision.lasting)
                if isinstance(decision, actions.Action):
                    assert WORKER_3 not in decision.destinations
                    storm.begin(decision.service.name, "migrate", WORKER_1,
                                decision.destinations)
                    started.append(int(decision.service.name[3:]))
                else:
                    assert decision.reason == R.BUDGET and not decision.lasting
            view = storm.view()
            assert view.leaving(WORKER_1) <= 1
            assert all(view.arriving(n) <= 2 for n in (WORKER_2, WORKER_3))
            assert len(view.moves) <= 4
        clock.advance(15)  # Alertmanager's repeat_interval; the moves finish meanwhile
        for i in started:
            storm.end(f"app{i}")
            tasks[i] = task_dict(task_id(i), service_id(i), WORKER_2)
            storm.observe([migrate_alert(f"app{i}", task_id(i), status="resolved")])
        moved.extend(started)
    assert moved == [5, 4, 3, 2, 1, 0]


# -- the actuator spends and frees the budgets ----------------------------------------------

def test_the_actuator_skips_a_migration_over_budget_without_writing_and_frees_its_own():
    services, tasks = storm_world(2)
    api = FakeDockerAPI(services=services, tasks=tasks, nodes=example_nodes())
    storm = ledger()
    actuator = Actuator(api, Settings(token="t", dry_run=False, migration_timeout=0.0),
                        Metrics(), clock=lambda: NOW, sleep=lambda s: None, storm=storm)
    storm.begin("app1", "migrate", WORKER_1, [WORKER_2, WORKER_3])
    (outcome,) = actuator.handle([migrate_alert("app0", task_id(0))])
    assert outcome.decision.reason == R.BUDGET
    assert api.updates == []
    storm.end("app1")
    (outcome,) = actuator.handle([migrate_alert("app0", task_id(0))])
    assert isinstance(outcome.decision, actions.Action)
    assert len(api.updates) == 1
    assert storm.view().moves == ()  # ended with the action, whatever its result
    assert len(storm.view().recent_starts) == 2  # app1 (by hand) and app0


def test_a_structurally_unmovable_task_leaves_the_line_but_a_hot_destination_does_not():
    services, tasks = storm_world(2)
    api = FakeDockerAPI(services=services + [service_dict("off", "offsvc0000000000000000000",
                                                          enabled=False)],
                        tasks=tasks + [task_dict(task_id(7), "offsvc0000000000000000000", WORKER_1)],
                        nodes=example_nodes())
    storm = ledger()
    actuator = Actuator(api, Settings(token="t"), Metrics(), clock=lambda: NOW,
                        sleep=lambda s: None, storm=storm)
    hot_off = migrate_alert("off", task_id(7), cpu=99.0)
    storm.observe([hot_off, migrate_alert("app0", task_id(0), cpu=90.0),
                   migrate_alert("x", task_id(8), node=WORKER_2),
                   migrate_alert("y", task_id(9), node=WORKER_3)])
    (outcome,) = actuator.handle([hot_off])
    assert outcome.decision.reason == R.NOT_OPTED_IN
    (outcome,) = actuator.handle([migrate_alert("app0", task_id(0), cpu=90.0)])
    assert outcome.decision.reason == R.NO_ELIGIBLE_NODE
    in_line = {h.task_id: h.in_line for h in storm.view().hot}
    assert in_line == {task_id(7): False, task_id(0): True, task_id(8): True, task_id(9): True}


class RecordingLedger(StormLedger):
    """A real ledger that also notes each change an action makes to it, in order."""

    def __init__(self):
        super().__init__(Budgets(), 60.0, FakeClock())
        self.calls = []

    def begin(self, service, kind, from_node=None, destinations=(), retry_of=None):
        self.calls.append(("begin", service, kind, from_node, frozenset(destinations)))
        super().begin(service, kind, from_node, destinations, retry_of=retry_of)

    def landed(self, service, node_id):
        self.calls.append(("landed", service, node_id))
        super().landed(service, node_id)

    def end(self, service):
        self.calls.append(("end", service))
        super().end(service)


def one_service_api(move_to=None):
    services, tasks = storm_world(1)
    api = FakeDockerAPI(services=services, tasks=tasks, nodes=example_nodes())
    if move_to:
        def hook(api, service_id, kwargs):
            api.move_task(task_id(0), move_to)
        api.after_update = hook
    return api


def test_a_migration_holds_its_budgets_from_decision_to_outcome_and_narrows_to_where_it_landed():
    storm = RecordingLedger()
    actuator = Actuator(one_service_api(move_to=WORKER_3), Settings(token="t"), Metrics(),
                        clock=lambda: NOW, sleep=lambda s: None, storm=storm)
    (outcome,) = actuator.handle([migrate_alert("app0", task_id(0))])
    assert outcome.result == "success"
    begins = [c for c in storm.calls if c[0] == "begin"]
    assert begins == [("begin", "app0", "migrate", WORKER_1, frozenset({WORKER_2, WORKER_3}))]
    assert ("landed", "app0", WORKER_3) in storm.calls
    assert storm.calls[-1] == ("end", "app0")
    assert storm.calls.index(begins[0]) < storm.calls.index(("landed", "app0", WORKER_3))


def test_a_dry_run_spends_no_budget():
    storm = RecordingLedger()
    actuator = Actuator(one_service_api(), Settings(token="t", dry_run=True), Metrics(),
                        clock=lambda: NOW, sleep=lambda s: None, storm=storm)
    (outcome,) = actuator.handle([migrate_alert("app0", task_id(0))])
    assert outcome.result == "dry_run"
    assert [c[0] for c in storm.calls if c[0] == "begin"] == []
    assert storm.view().recent_starts == ()


def test_a_scale_step_counts_against_the_cluster_budget_but_no_node():
    storm = RecordingLedger()
    services, tasks = storm_world(1)
    api = FakeDockerAPI(services=services, tasks=tasks, nodes=example_nodes())
    actuator = Actuator(api, Settings(token="t"), Metrics(), clock=lambda: NOW,
                        sleep=lambda s: None, storm=storm)
    (outcome,) = actuator.handle([scale_up_alert("app0")])
    assert outcome.result == "success"
    assert ("begin", "app0", "scale_up", None, frozenset()) in storm.calls
    assert len(storm.view().recent_starts) == 1 and storm.view().moves == ()


# -- what decide() says when a storm holds an alert back ----------------------------------------

def test_a_skip_for_budget_names_its_alert_and_says_which_budget():
    services, tasks = storm_world(1)
    storm = ledger(concurrent=1)
    storm.begin("elsewhere", "scale_down")
    for alert in (scale_up_alert("app0"), migrate_alert("app0", task_id(0))):
        skip = decide_one(alert, snapshot(services, tasks), storm.view())
        assert skip.reason == R.BUDGET
        assert skip.alert is alert  # counted and reported per alert name, task and node
        assert skip.why == ("1 action(s) already in flight "
                            "(SWARMGUARD_MAX_CONCURRENT_ACTIONS=1)")


def test_a_task_is_never_held_back_by_its_own_hotter_report():
    """The ledger saw this task at 97 % (a later webhook); the alert being judged says 90 %."""
    services, tasks = storm_world(1)
    storm = ledger()
    storm.observe([migrate_alert("app0", task_id(0), cpu=97.0)])
    action = decide_one(migrate_alert("app0", task_id(0), cpu=90.0), snapshot(services, tasks),
                        storm.view())
    assert isinstance(action, actions.Action)


def test_a_migration_refused_for_arrivals_names_the_full_node():
    services, tasks = storm_world(2)
    storm = ledger(arriving_per_node=1, leaving_per_node=2)
    storm.observe([migrate_alert("x", task_id(9), node=WORKER_3)])  # worker-3 is hot
    storm.begin("app1", "migrate", WORKER_1, [WORKER_2])
    skip = decide_one(migrate_alert("app0", task_id(0)), snapshot(services, tasks), storm.view())
    assert skip.reason == R.BUDGET
    assert skip.why == ("worker-2 already receive(s) 1 task(s) "
                        "(SWARMGUARD_MAX_ARRIVING_PER_NODE=1)")


def test_a_second_hot_task_of_a_service_being_moved_stays_in_line():
    service = service_dict("app0", service_id(0), replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(task_id(0), service_id(0), WORKER_1, slot=1),
             task_dict(task_id(1), service_id(0), WORKER_2, slot=2)]
    api = FakeDockerAPI(services=[service], tasks=tasks, nodes=example_nodes())
    storm = ledger()
    actuator = Actuator(api, Settings(token="t", dry_run=True), Metrics(), clock=lambda: NOW,
                        sleep=lambda s: None, storm=storm)
    cool = migrate_alert("app0", task_id(0), node=WORKER_1, cpu=81.0)
    hot = migrate_alert("app0", task_id(1), node=WORKER_2, cpu=99.0)
    storm.observe([cool, hot])
    outcomes = actuator.handle([cool, hot])
    assert [o.decision.reason for o in outcomes if isinstance(o.decision, actions.Skip)] == [R.IN_PROGRESS]
    in_line = {h.task_id: h.in_line for h in storm.view().hot}
    # The hot one is acted on; the cool one must be judged again once that is over.
    assert in_line == {task_id(0): True, task_id(1): False}


def test_an_actuator_without_a_ledger_makes_one_from_its_settings_on_its_own_clock():
    clock = FakeClock()
    actuator = Actuator(one_service_api(), Settings(token="t", hot_task_memory=30.0), Metrics(),
                        clock=lambda: NOW, monotonic=clock, sleep=lambda s: None)
    actuator.storm.observe([migrate_alert("app0", task_id(0), node=WORKER_2)])
    clock.advance(29.9)
    assert actuator.storm.view().hot_nodes() == {WORKER_2}
    clock.advance(0.1)
    assert actuator.storm.view().hot_nodes() == frozenset()


def test_a_migration_narrows_to_the_node_of_its_own_new_task_not_another_replicas():
    service = service_dict("app0", service_id(0), replicas=2, constraints=["node.role==worker"])
    tasks = [task_dict(task_id(1), service_id(0), WORKER_2, slot=2),  # the other replica
             task_dict(task_id(0), service_id(0), WORKER_1, slot=1)]
    api = FakeDockerAPI(services=[service], tasks=tasks, nodes=example_nodes())
    api.after_update = lambda api, service_id, kwargs: api.move_task(task_id(0), WORKER_3)
    storm = RecordingLedger()
    actuator = Actuator(api, Settings(token="t"), Metrics(), clock=lambda: NOW,
                        sleep=lambda s: None, storm=storm)
    (outcome,) = actuator.handle([migrate_alert("app0", task_id(0))])
    assert outcome.result == "success"
    assert {c[2] for c in storm.calls if c[0] == "landed"} == {WORKER_3}
