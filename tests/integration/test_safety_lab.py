"""Moves that cost data or requests, in the lab (receiver/safety.py, docs/contract.md): a
stressed task that keeps data in a local volume stays where it is, the one task of a
service without a health check is not moved, and such a service is reported to people."""
from __future__ import annotations

import docker.errors
import pytest
import requests
from docker.types import Mount

from tests.lab.infra import services
from tests.lab.infra.nodes import client
from tests.lab.infra.receiver_proc import ReceiverProcess, webhook
from tests.lab.infra.services import stop_stress_everywhere
from tests.lab.infra.system import wait_for
from tests.lab.instruments import prometheus

pytestmark = pytest.mark.lab

VOLUME = "swarmguard-lab-keeper-data"


@pytest.fixture
def keeper(lab):
    """The stress app with a named volume of the local driver at /data."""
    services.deploy_stress(lab, "keeper", mounts=(Mount(target="/data", source=VOLUME, type="volume"),))
    yield "keeper"
    try:
        stop_stress_everywhere(lab)
    finally:
        services.remove_service(lab, "keeper")
        for worker in lab.workers:  # the volume stays on the node that ran the task
            wait_for(f"{VOLUME} on {worker.name} released and removed",
                     lambda w=worker: _volume_removed(lab, w), timeout=60)


def _volume_removed(lab, worker) -> bool:
    try:
        client(lab, worker).volumes.get(VOLUME).remove()
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:  # still in use by a container that is going away
        return False
    return True


@pytest.fixture
def unchecked(lab):
    """The stress app, one replica, with no health check at all (the image's disabled)."""
    services.deploy_stress(lab, "unchecked", health_check=False)
    yield "unchecked"
    try:
        stop_stress_everywhere(lab)
    finally:
        services.remove_service(lab, "unchecked")


def skips(receiver, service: str, reason: str) -> list[dict]:
    return [e for e in receiver.events() if e["type"] == "decision" and e["result"] == "skip"
            and e["service"] == service and e["reason"] == reason]


def test_a_stressed_task_that_keeps_data_in_a_local_volume_is_never_moved(lab, keeper):
    [task] = services.running_tasks(lab, keeper)
    with ReceiverProcess(lab) as receiver:
        services.wait_settled(lab, keeper)
        requests.get(f"{lab.entrypoint_url}/stress/cpu", params={"target": 100, "duration": 90},
                     timeout=5).raise_for_status()
        wait_for("SwarmGuardMigrate to fire", lambda: prometheus.firing(lab, "SwarmGuardMigrate", keeper),
                 timeout=60)
        [skip] = wait_for("a stateful skip", lambda: skips(receiver, keeper, "stateful")[:1], timeout=60)
        receiver.wait_idle()
        assert receiver.metric("swarmguard_actions_total", kind="migrate") == 0
        assert receiver.metric("swarmguard_alerts_skipped_total", reason="stateful") >= 1
    assert skip["kind"] == "migrate"
    [still] = services.running_tasks(lab, keeper)
    assert (still["ID"], still["NodeID"]) == (task["ID"], task["NodeID"])


def test_the_only_task_of_a_service_without_a_health_check_is_not_moved(lab, unchecked):
    [task] = services.running_tasks(lab, unchecked)
    with ReceiverProcess(lab, confirm_with_prometheus=0) as receiver:
        alert = webhook("SwarmGuardMigrate", {"service": unchecked, "task_id": task["ID"],
                                              "node_id": task["NodeID"]},
                        annotations={"cpu_percent": "95", "network_percent": "2"})
        assert receiver.send(alert).status_code == 202
        [skip] = wait_for("an unsafe skip", lambda: skips(receiver, unchecked, "unsafe")[:1], timeout=30)
        receiver.wait_idle()
        assert receiver.metric("swarmguard_actions_total", kind="migrate") == 0
    assert skip["kind"] == "migrate"
    [still] = services.running_tasks(lab, unchecked)
    assert still["ID"] == task["ID"]


def test_a_service_without_a_health_check_is_reported_by_the_metric_and_the_alert(lab, unchecked):
    with ReceiverProcess(lab) as receiver:
        # The receiver reads the swarm every 5 s; Prometheus scrapes it at its interval.
        wait_for("the receiver to report no_healthcheck", lambda: receiver.metric(
            "swarmguard_service_move_unsafe", service=unchecked, problem="no_healthcheck") == 1,
            timeout=60)
        # The alert holds 5 m before it fires: pending is what a test can wait for.
        [alert] = wait_for("SwarmGuardUnsafeToMove pending", lambda: prometheus.alerts(
            lab, unchecked, "SwarmGuardUnsafeToMove")[:1], timeout=90)
        assert alert["metric"]["problem"] == "no_healthcheck"
        assert alert["metric"]["severity"] == "warning"
