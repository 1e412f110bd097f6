"""Detection health with real faults (docs/runbook.md: SwarmGuardBlind, SwarmGuardCannotAct): each fault raises SwarmGuardBlind or
SwarmGuardCannotAct with its reason within its documented window, and the alert resolves
after the repair. Each test prints the measured time from the fault to the alert firing
(`pytest -s` shows it; `make test` records it in the output).

Faults are made with the lab's own daemons (tests/lab/infra/monitoring.py) and the real
receiver (tests/lab/infra/receiver_proc.py); every test restores what it broke in `finally`.
The suite-wide check that nothing else raises these alerts is in tests/conftest.py
(`health_watch`), with the windows these tests declare in tests/lab/instruments/health.py.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests import webhooks
from tests.lab.instruments import health, prometheus

from tests.lab.infra import monitoring, services
from tests.lab.infra.docker_proxy import DockerProxy
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.system import wait_for

pytestmark = pytest.mark.lab

SERVICE = "health"
NOWHERE = "unix:///run/swarmguard-lab/no-such-docker.sock"


def _selector(alertname: str, reason: str, **labels: str) -> str:
    return ", ".join([f'alertname="{alertname}"', f'reason="{reason}"']
                     + [f'{k}="{v}"' for k, v in labels.items()])


def firing(lab, alertname: str, reason: str, **labels: str) -> list[dict]:
    return prometheus.query(
        lab, f'ALERTS{{{_selector(alertname, reason, **labels)}, alertstate="firing"}}')


def wait_quiet(lab, alertname: str, reason: str, **labels: str) -> None:
    """Before a fault: the alert is neither pending nor firing, so what fires next was
    caused by the fault (a task that has just started, not yet seen by cAdvisor, can leave
    cadvisor_blind pending for a while)."""
    wait_for(f"{alertname} {reason} {labels} neither pending nor firing before the fault",
             lambda: not prometheus.query(
                 lab, f"ALERTS{{{_selector(alertname, reason, **labels)}}}"),
             timeout=180, interval=0.5)


def wait_firing(lab, alertname: str, reason: str, window: float, since: float, **labels: str) -> float:
    """Seconds from `since` (the fault) to the alert firing; waits its window plus a
    generous margin, polling. The rule held for its `for:` if Prometheus recorded the alert
    pending before it fired (its own record: no wall-clock duration is asserted here)."""
    wait_for(f"{alertname} {reason} {labels} firing",
             lambda: firing(lab, alertname, reason, **labels), timeout=window + 300, interval=0.5)
    elapsed = time.time() - since
    print(f"\n{alertname} reason={reason} {labels}: fired {elapsed:.1f} s after the fault "
          f"(window {window:g} s)")
    lookback = math.ceil(elapsed) + 1
    pending = prometheus.query(
        lab, f'max_over_time(ALERTS{{{_selector(alertname, reason, **labels)}, '
             f'alertstate="pending"}}[{lookback}s])')
    assert pending, "fired without being pending first: the rule did not hold for its `for:`"
    return elapsed


def wait_resolved(lab, alertname: str, reason: str, since: float, **labels: str) -> None:
    wait_for(f"{alertname} {reason} resolved after the repair",
             lambda: not firing(lab, alertname, reason, **labels), timeout=180, interval=0.5)
    print(f"  {alertname} reason={reason} resolved {time.time() - since:.1f} s after the repair")


def fires_then_resolves(lab, alertname: str, reason: str, window: float, break_it, repair,
                        **labels: str) -> float:
    """Break, see the alert fire, repair (always), see it resolve. Declares the fault's
    time span to the suite-wide watch so its alerts are not taken for false alarms."""
    wait_quiet(lab, alertname, reason, **labels)
    started = time.time()
    try:
        try:
            break_it()
            elapsed = wait_firing(lab, alertname, reason, window, started, **labels)
        finally:
            repaired = time.time()
            repair()
        wait_resolved(lab, alertname, reason, repaired, **labels)
    finally:
        health.expect_alerts(started, time.time())
    return elapsed


@pytest.fixture
def receiver(lab):
    """The real receiver in dry-run mode with an opted-in service to publish: the ground
    truth (nodes, opted-in tasks) comes from it."""
    services.deploy_stress(lab, SERVICE)
    try:
        with ReceiverProcess(lab, dry_run=1) as proc:
            wait_for("SwarmGuard to see every node and opted-in task",
                     lambda: health.sees_everything(health.read(lab)), timeout=90, interval=1)
            yield proc
    finally:
        services.remove_service(lab, SERVICE)


def task_node(lab):
    """The node running the opted-in service's task: there, a fault leaves a task unseen."""
    [task] = services.running_tasks(lab, SERVICE)
    return lab.node(services.node_name(lab, task["NodeID"]))


def test_stopping_a_nodes_cadvisor_is_cadvisor_down_not_a_blind_detection(lab, receiver):
    node = lab.workers[0]
    fires_then_resolves(lab, "SwarmGuardBlind", "cadvisor_down", 45,
                        lambda: monitoring.stop(lab, f"cadvisor-{node.name}"),
                        lambda: monitoring.start_cadvisor(lab, node), node=node.name)
    assert not firing(lab, "SwarmGuardBlind", "target_down")


def test_stopping_a_nodes_exporter_is_target_down_and_its_opted_in_tasks_are_unseen(lab, receiver):
    node = task_node(lab)
    fires_then_resolves(lab, "SwarmGuardBlind", "target_down", 10,
                        lambda: monitoring.stop(lab, f"exporter-{node.name}"),
                        lambda: monitoring.start_exporter(lab, node), node=node.name)
    # The fault above also left the service's task unseen, for the alert that holds its
    # scale-down (inhibition); it resolved with the repair (the watch would say otherwise).
    assert not firing(lab, "SwarmGuardBlind", "tasks_unseen", service=SERVICE)


def test_an_exporter_that_cannot_reach_its_docker_is_docker_unreachable(lab, receiver):
    node = task_node(lab)
    fires_then_resolves(lab, "SwarmGuardBlind", "docker_unreachable", 10,
                        lambda: monitoring.start_exporter(lab, node, docker_url=NOWHERE),
                        lambda: monitoring.start_exporter(lab, node), node=node.name)


def test_a_cadvisor_without_its_docker_factory_is_cadvisor_blind(lab, receiver):
    # A cAdvisor pointed at a socket that does not exist loses its Docker factory as one
    # under Engine 29's API floor does (tests/integration/test_api_floor_lab.py): it logs
    # DockerVersion:Unknown (the factory's own failure is logged at -v=5 only; 0.38 runs
    # at 2) and serves the root cgroup.
    node = task_node(lab)  # the exporter sees a swarm task there
    # Until cAdvisor has seen the new task's container, the condition already holds.
    wait_for(f"cAdvisor on {node.name} to see the swarm task",
             lambda: prometheus.query(
                 lab, f'container_cpu_usage_seconds_total{{node="{node.name}", '
                      f'container_label_com_docker_swarm_task_id!=""}}'),
             timeout=120, interval=1)
    monitoring_up = lambda: requests.get(f"{monitoring.cadvisor_url(lab, node)}/healthz", timeout=2).ok  # noqa: E731

    def break_it():
        monitoring.start_cadvisor(lab, node, docker_url=NOWHERE)
        wait_for("cAdvisor up without Docker", monitoring_up, timeout=60)

    def repair():
        monitoring.start_cadvisor(lab, node)
        wait_for("cAdvisor up with Docker", monitoring_up, timeout=60)
    fires_then_resolves(lab, "SwarmGuardBlind", "cadvisor_blind", 60, break_it, repair, node=node.name)


def test_a_stopped_detection_prometheus_is_detection_prometheus_down(lab, receiver):
    # The lab's split layout: a detection Prometheus per node, federated by the central
    # one (docs/contract.md, "Rule files and layouts"). Its node's exporter `up` goes
    # stale too (target_down), inside the same declared fault.
    node = task_node(lab)
    fires_then_resolves(lab, "SwarmGuardBlind", "detection_prometheus_down", 10,
                        lambda: monitoring.stop(lab, f"prometheus-{node.name}"),
                        lambda: monitoring.start_prometheus(lab), node=node.name)


def test_no_list_of_opted_in_services_is_opt_in_unknown_on_every_detection_prometheus(lab, receiver):
    # The manager's exporter, without its Docker, cannot tell that it is a manager: its
    # /opted-in page is empty. Every detection Prometheus holds the last list for a
    # minute, then judges nothing, and says so.
    manager = lab.manager
    fires_then_resolves(lab, "SwarmGuardBlind", "opt_in_unknown", 90,
                        lambda: monitoring.start_exporter(lab, manager, docker_url=NOWHERE),
                        lambda: monitoring.start_exporter(lab, manager), node=lab.workers[0].name)


def _synthetic_alert(ends_in: timedelta) -> list[dict]:
    """A SwarmGuardMigrate for a task that does not exist, sent to Alertmanager directly:
    something to deliver to the receiver (stale if it ever gets there, so nothing moves)."""
    now = datetime.now(timezone.utc)
    return [webhooks.posted_alert(
        {"alertname": "SwarmGuardMigrate", "service": "health-fault-probe",
         "task_id": "nosuchtask000000000000000", "node_id": "nosuchnode000000000000000",
         "scenario": "migrate", "severity": "warning"},
        annotations={"summary": "detection-health fault test"},
        starts_at=now - timedelta(seconds=1), lasting=ends_in + timedelta(seconds=1))]


def test_a_stopped_receiver_is_receiver_down_and_alertmanagers_deliveries_fail(lab, receiver):
    def post(ends_in):
        requests.post(f"{lab.alertmanager_url}/api/v2/alerts", json=_synthetic_alert(ends_in),
                      timeout=10).raise_for_status()

    replacement = ReceiverProcess(lab, dry_run=1)
    wait_quiet(lab, "SwarmGuardCannotAct", "receiver_down")
    wait_quiet(lab, "SwarmGuardCannotAct", "webhook_failing")
    started = time.time()
    try:
        try:
            receiver.kill()
            wait_firing(lab, "SwarmGuardCannotAct", "receiver_down", 30, started)
            failing_from = time.time()
            post(timedelta(minutes=10))  # something to deliver, to nobody
            wait_firing(lab, "SwarmGuardCannotAct", "webhook_failing", 40, failing_from)
        finally:
            repaired = time.time()
            replacement.start()
        wait_resolved(lab, "SwarmGuardCannotAct", "receiver_down", repaired)
        wait_resolved(lab, "SwarmGuardCannotAct", "webhook_failing", repaired)
    finally:
        post(timedelta(seconds=-1))  # resolved
        replacement.stop()
        health.expect_alerts(started, time.time())


def test_a_receiver_whose_docker_stops_answering_is_docker_unreachable(lab):
    services.deploy_stress(lab, SERVICE)
    try:
        with DockerProxy(lab.docker_socket(lab.manager), lab.run_dir / "docker-proxy.sock") as proxy, \
                ReceiverProcess(lab, dry_run=1, docker_host=proxy.url):
            wait_for("the receiver to read the swarm through the proxy",
                     lambda: health.read(lab).tasks_running >= 1, timeout=60, interval=1)
            fires_then_resolves(lab, "SwarmGuardCannotAct", "docker_unreachable", 15,
                                proxy.hang, proxy.relay)
    finally:
        services.remove_service(lab, SERVICE)
