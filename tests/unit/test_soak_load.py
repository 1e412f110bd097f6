"""What the soak asks of each service's tasks, and when (tests/soak/load.py, plan.LOAD)."""
from __future__ import annotations

from tests.lab.config import LabConfig
from tests.soak import model as M
from tests.soak import plan
from tests.soak.load import Load, on

PORTS = list(range(8081, 8093))
WORKERS = ["worker-1", "worker-2", "worker-3", "worker-4"]


def load() -> Load:
    return Load(LabConfig(), plan.services(PORTS, WORKERS), started=0.0)


def service(behaviour: str) -> M.ServicePlan:
    return next(p for p in plan.services(PORTS, WORKERS) if p.behaviour == behaviour)


def test_a_periodic_load_is_on_for_its_on_time_from_its_delay():
    hot = plan.Load(cpu_percent=100, on_s=240, off_s=120, delay_s=60)
    assert [on(hot, t) for t in (0, 59, 60, 299, 300, 419, 420)] == [
        False, False, True, True, False, False, True]
    assert on(plan.Load(cpu_percent=100), 0) and not on(plan.Load(), 1000)


def test_the_starved_task_burns_only_on_its_hogs_node():
    driver, starved = load(), service(M.STARVED)
    hot_at = plan.LOAD[M.STARVED].delay_s + 1
    assert driver.hog_node == "worker-1"
    assert driver.demand(starved, hot_at, "t1", "worker-1") == ("cpu", {"target": 100, "duration": 12.0})
    assert driver.demand(starved, hot_at, "t2", "worker-2") is None


def test_bursty_demand_carries_network_above_the_high_threshold():
    driver, bursty = load(), service(M.BURSTY)
    kind, params = driver.demand(bursty, plan.LOAD[M.BURSTY].delay_s + 1, "t1", "worker-2")
    assert kind == "combined" and params["cpu"] == 100
    assert params["network"] / LabConfig().node_capacity_mbps > 0.65


def test_a_leak_grows_once_a_minute_per_task_and_starts_again_on_a_new_task():
    driver, leak = load(), service(M.LEAK)
    assert driver.demand(leak, 100, "t1", "worker-2") == ("memory", {"mb": 8, "duration": 70})
    assert driver.demand(leak, 105, "t1", "worker-2") is None  # the same step: nothing resent
    assert driver.demand(leak, 161, "t1", "worker-2") == ("memory", {"mb": 8, "duration": 70})
    assert driver.demand(leak, 220, "t1", "worker-2") == ("memory", {"mb": 16, "duration": 70})
    assert driver.demand(leak, 220, "t2", "worker-3") == ("memory", {"mb": 8, "duration": 70})


def test_an_idle_service_is_asked_for_nothing():
    assert load().demand(service(M.IDLE), 600, "t1", "worker-2") is None
