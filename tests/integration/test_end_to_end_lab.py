"""End to end in the lab, every part real: the stress app's task gets hot, cAdvisor and
the exporter see it, Prometheus fires, Alertmanager calls the receiver under gunicorn,
and the receiver moves the task, while a probe through the entry point counts failures."""
from __future__ import annotations

import time

import pytest
import requests

from tests.lab import services
from tests.lab.probe import Probe
from tests.lab.receiver_proc import ReceiverProcess
from tests.lab.system import wait_for

pytestmark = pytest.mark.lab


@pytest.fixture
def victim(lab):
    services.deploy_stress(lab, "victim")
    yield "victim"
    try:
        requests.get(f"{lab.entrypoint_url}/stress/stop", timeout=5)
    finally:
        services.remove_service(lab, "victim")


def test_scenario_1_a_cpu_starved_task_is_migrated_with_zero_failed_requests(lab, victim):
    [task] = services.running_tasks(lab, victim)
    old = services.node_name(lab, task["NodeID"])
    with ReceiverProcess(lab) as receiver, Probe(lab.entrypoint_url + "/health", rate=20) as probe:
        time.sleep(1)
        started = time.monotonic()
        r = requests.get(f"{lab.entrypoint_url}/stress/cpu", params={"target": 100, "duration": 60}, timeout=5)
        assert r.headers["X-Swarm-Node"] == old
        new = services.wait_moved_off(lab, victim, old, timeout=60)
        moved_after = time.monotonic() - started
        receiver.wait_idle()
        time.sleep(2)
        result = probe.stop()
        assert receiver.metric("swarmguard_actions_total", kind="migrate", result="success") == 1
    print(f"Scenario 1: stress on {old}, moved to {new} {moved_after:.1f} s after the stress started; "
          f"{result.summary()}")
    assert new != old
    assert result.failed == 0, result.summary()
    assert result.nodes == [old, new]
    # The new task is not hot: the stress ran in the old task's processes, gone with it.
    answer = requests.get(f"{lab.entrypoint_url}/stress/status", timeout=5)
    assert answer.headers["X-Swarm-Node"] == new
