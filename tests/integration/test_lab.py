"""The lab itself: a real swarm of three nodes, monitoring that sees its tasks, an entry
point that routes only to healthy tasks, and a probe whose zero failures mean something."""
from __future__ import annotations

import time

import pytest
import requests

from tests.lab.instruments import prometheus
from tests.lab.infra import services
from tests.lab.infra.monitoring import cadvisor_url
from tests.lab.infra.nodes import client
from tests.lab.instruments.probe import Probe
from tests.lab.infra.system import wait_for

pytestmark = pytest.mark.lab


@pytest.fixture
def web(lab):
    """The health-checked web service, one task on a worker, fresh for each test."""
    services.deploy_web(lab, "web", replicas=1)
    yield "web"
    services.remove_service(lab, "web")


def current_node(lab, service: str) -> str:
    [task] = services.running_tasks(lab, service)
    return services.node_name(lab, task["NodeID"])


def test_three_nodes_are_ready_with_distinct_hostnames(lab):
    nodes = client(lab, lab.manager).nodes.list()
    hostnames = sorted(n.attrs["Description"]["Hostname"] for n in nodes)
    assert hostnames == ["manager", "worker-1", "worker-2"]
    assert all(n.attrs["Status"]["State"] == "ready" for n in nodes)
    roles = {n.attrs["Description"]["Hostname"]: n.attrs["Spec"]["Role"] for n in nodes}
    assert roles == {"manager": "manager", "worker-1": "worker", "worker-2": "worker"}


def test_a_health_checked_service_runs_on_a_worker_and_answers_through_the_entry_point(lab, web):
    node = current_node(lab, web)
    assert node.startswith("worker-")
    answers = {requests.get(lab.entrypoint_url, timeout=2).text.split()[0] for _ in range(5)}
    assert answers == {f"node={node}"}


def test_cadvisor_on_the_tasks_node_reports_its_cpu_with_swarm_labels(lab, web):
    [task] = services.running_tasks(lab, web)
    node = lab.node(services.node_name(lab, task["NodeID"]))

    def cpu_lines(n):
        text = requests.get(f"{cadvisor_url(lab, n)}/metrics", timeout=5).text
        return [line for line in text.splitlines()
                if line.startswith("container_cpu_usage_seconds_total{")
                and f'container_label_com_docker_swarm_task_id="{task["ID"]}"' in line]

    lines = cpu_lines(node)
    assert lines, f"cAdvisor on {node.name} does not report task {task['ID']}"
    assert 'container_label_com_docker_swarm_service_name="web"' in lines[0]
    assert f'container_label_com_docker_swarm_node_id="{task["NodeID"]}"' in lines[0]
    # Each cAdvisor sees only its own node's containers, though they share one cgroup tree.
    for other in lab.nodes:
        if other != node:
            assert cpu_lines(other) == []


def test_prometheus_scrapes_every_cadvisor_and_alertmanager_is_ready(lab):
    cadvisors = [t for t in prometheus.targets(lab) if t["labels"]["job"] == "cadvisor"]
    assert sorted(t["labels"]["node"] for t in cadvisors) == ["manager", "worker-1", "worker-2"]
    deadline = time.monotonic() + 10
    while any(t["health"] != "up" for t in cadvisors) and time.monotonic() < deadline:
        time.sleep(1)
        cadvisors = [t for t in prometheus.targets(lab) if t["labels"]["job"] == "cadvisor"]
    assert [t["health"] for t in cadvisors] == ["up"] * 3, cadvisors
    assert {r["metric"]["node"] for r in prometheus.query(lab, 'up{job="cadvisor"} == 1')} == {
        "manager", "worker-1", "worker-2"}
    assert requests.get(f"{lab.alertmanager_url}/-/ready", timeout=5).status_code == 200


def test_a_start_first_move_off_the_current_node_fails_no_request(lab, web):
    old = current_node(lab, web)

    def exclude_current_node(spec):
        placement = spec["TaskTemplate"].setdefault("Placement", {})
        placement["Constraints"] = [*placement.get("Constraints", []), f"node.hostname!={old}"]
        spec["UpdateConfig"] = {**spec.get("UpdateConfig", {}), "Order": "start-first"}

    with Probe(lab.entrypoint_url, rate=20) as probe:
        probe.wait_answered(by=old)
        sent_before = probe.so_far().total
        services.update_service(lab, web, exclude_current_node)
        new = services.wait_moved_off(lab, web, old)
        sent_during = probe.so_far().total - sent_before
        probe.wait_answered(by=new, last=20)  # the entry point has settled on the new node
    result = probe.stop()
    print(f"start-first move {old} -> {new}: {result.summary()}")
    assert new != old and new.startswith("worker-")
    assert sent_during > 0, "the probe sent nothing while the task moved"
    assert result.nodes == [old, new]  # it served from the old node, then from the new one
    assert result.failed == 0, result.summary()


def test_the_probe_sees_failures_when_the_only_task_is_removed(lab, web):
    def scale_to_zero(spec):
        spec["Mode"]["Replicated"]["Replicas"] = 0

    with Probe(lab.entrypoint_url, rate=20) as probe:
        probe.wait_answered()
        services.update_service(lab, web, scale_to_zero)
        wait_for("web's container to be gone", lambda: not services.containers(lab, web))
        probe.wait_failed(20)
    result = probe.stop()
    print(f"negative control (only task removed): {result.summary()}")
    assert result.total > result.failed  # answered, then failing once the task was gone
    assert result.failed >= 20, result.summary()
