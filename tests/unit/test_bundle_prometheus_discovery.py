"""The bundle's Prometheus configs' Swarm discovery and relabelling (prometheus.yml, and
prometheus-detection.yml as Swarm renders it for each task), run by Prometheus itself.

Each lab flavour's Prometheus binary (3.5.3 and 2.42, tests/rules/flavour_tools.py) loads
the bundle's prometheus.yml and rules, with its Swarm discovery pointed at a fake
manager (fake_swarm_manager.FakeSwarmReads) that lists a three-node swarm: a manager whose
node address Swarm reports as 0.0.0.0 (moby#35437) and two workers; the stack's exporter
and cAdvisor on every node, publishing no port, each task on the stack's overlay network
(one exporter task also on another network, which Prometheus may not reach); an old
exporter task shut down; another stack's service. What Prometheus then lists as targets
(/api/v1/targets) is what it would scrape: the relabelling as Prometheus applies it, not
as a test reimplements it.

What only the lab shows: that a real Engine lists tasks this way (the lab's bundle test
checks the targets of the same file against real dockerds, tests/integration).
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.lab.infra.monitoring import render_swarm_template
from tests.rules.flavour_tools import FLAVOURS, tool
from tests.unit.fake_swarm_manager import FakeSwarmReads

ROOT = Path(__file__).resolve().parents[2]
NETWORK = {"Id": "net-sg", "Name": "swarmguard_swarmguard", "Scope": "swarm", "Driver": "overlay",
           "Internal": False, "Ingress": False, "Labels": {"com.docker.stack.namespace": "swarmguard"}}
# Another overlay network a task may also be attached to (a user's monitoring network).
OTHER_NETWORK = {"Id": "net-other", "Name": "monitoring", "Scope": "swarm", "Driver": "overlay",
                 "Internal": False, "Ingress": False, "Labels": {}}
# hostname -> (address Swarm reports, the manager address if a manager, overlay index)
NODES = {"manager": ("0.0.0.0", "10.0.0.10:2377", 2),
         "worker-1": ("10.0.0.11", None, 3),
         "worker-2": ("10.0.0.12", None, 4)}
STACK_SERVICES = ("swarmguard_exporter", "swarmguard_cadvisor")


def node(hostname: str) -> dict:
    address, manager, _ = NODES[hostname]
    spec = {"ID": f"id-{hostname}", "Spec": {"Role": "manager" if manager else "worker",
                                             "Availability": "active", "Labels": {}},
            "Description": {"Hostname": hostname, "Platform": {"Architecture": "x86_64", "OS": "linux"},
                            "Engine": {"EngineVersion": "29.1.0"}},
            "Status": {"State": "ready", "Addr": address}}
    if manager:
        spec["ManagerStatus"] = {"Leader": True, "Reachability": "reachable", "Addr": manager}
    return spec


def port(target: int, published: int, mode: str = "host") -> dict:
    return {"Protocol": "tcp", "TargetPort": target, "PublishedPort": published, "PublishMode": mode}


def service(name: str, ports: list[dict]) -> dict:
    return {"ID": f"id-{name}", "Spec": {"Name": name, "Labels": {}, "Mode": {"Global": {}},
                                         "TaskTemplate": {"ContainerSpec": {"Image": f"{name}:1"}}},
            "Endpoint": {"Spec": {"Ports": ports}, "Ports": ports}}


def attachment(network: dict, address: str) -> dict:
    return {"Network": {"ID": network["Id"], "Spec": {"Name": network["Name"]}}, "Addresses": [address]}


def task(name: str, hostname: str, desired: str = "running") -> dict:
    index = NODES[hostname][2] + (10 if name.endswith("cadvisor") else 0)
    state = "running" if desired == "running" else "shutdown"
    return {"ID": f"task-{name}-{hostname}-{desired}", "ServiceID": f"id-{name}", "NodeID": f"id-{hostname}",
            "Slot": 0, "DesiredState": desired, "Labels": {},
            "Spec": {"ContainerSpec": {"Image": f"{name}:1", "Labels": {}}},
            "Status": {"State": state, "ContainerStatus": {"ContainerID": f"c-{name}-{hostname}"},
                       "PortStatus": {}},
            "NetworksAttachments": [attachment(NETWORK, f"10.0.1.{index}/24")]}


def swarm(socket_path: Path) -> FakeSwarmReads:
    services = [service(name, []) for name in STACK_SERVICES]
    services.append(service("other_web", [port(80, 8000, mode="ingress")]))
    tasks = [task(name, hostname) for name in STACK_SERVICES for hostname in NODES]
    # worker-1's exporter is also on a network Prometheus is not attached to.
    [also] = [t for t in tasks if t["ID"] == "task-swarmguard_exporter-worker-1-running"]
    also["NetworksAttachments"].append(attachment(OTHER_NETWORK, "10.0.9.3/24"))
    tasks.append(task("swarmguard_exporter", "worker-2", desired="shutdown"))
    tasks.append({**task("swarmguard_exporter", "worker-1"), "ServiceID": "id-other_web",
                  "ID": "task-web"})
    return FakeSwarmReads(socket_path, nodes=[node(h) for h in NODES], services=services,
                          tasks=tasks, networks=[NETWORK, OTHER_NETWORK])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return json.load(answer)["data"]


def discovered(flavour: str, config: dict, tmp: Path) -> dict[str, list[dict]]:
    """job -> the active targets the flavour's Prometheus derives from `config` (a
    bundle Prometheus config) and the fake swarm."""
    tmp.mkdir(parents=True)
    with swarm(tmp / "docker.sock") as fake:
        for job in config["scrape_configs"]:
            for sd in job.get("dockerswarm_sd_configs", []):
                sd["host"] = fake.url
        (tmp / "rules").mkdir()
        for rules in (ROOT / "prometheus" / "rules").glob("*.yml"):
            (tmp / "rules" / rules.name).write_text(rules.read_text())
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        listen = free_port()
        proc = subprocess.Popen(
            [tool(flavour, "prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{listen}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        swarm_jobs = [j["job_name"] for j in config["scrape_configs"] if j.get("dockerswarm_sd_configs")]
        found: dict[str, list[dict]] = {}
        settled = 0
        try:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    answer = get(f"http://127.0.0.1:{listen}/api/v1/targets?state=any")
                except OSError:
                    answer = {}
                found = {}
                for t in answer.get("activeTargets", []):
                    found.setdefault(t["labels"]["job"], []).append(t)
                # Discovered: every Swarm job has seen the tasks (kept or dropped), twice
                # in a row (the fake lists them all at once).
                seen = len(answer.get("activeTargets", [])) + len(answer.get("droppedTargets", []))
                settled = settled + 1 if seen and seen >= len(swarm_jobs) * len(NODES) else 0
                if settled >= 2:
                    break
                time.sleep(0.3)
        finally:
            proc.terminate()
            output = proc.communicate(timeout=20)[0].decode(errors="replace")
        assert fake.unexpected == [], fake.unexpected
    assert settled, f"Prometheus discovered nothing:\n{output}"
    return found


def detection_config(slot: int, instances: int) -> dict:
    """prometheus-detection.yml as Swarm renders it for the task in `slot` of
    `instances` (its config template)."""
    text = (ROOT / "prometheus" / "prometheus-detection.yml").read_text()
    return yaml.safe_load(render_swarm_template(
        text, slot=slot, env={"SWARMGUARD_DETECTION_INSTANCES": str(instances)}))


@pytest.fixture(scope="module", params=FLAVOURS)
def layout(request, tmp_path_factory) -> dict[str, dict[str, list[dict]]]:
    """Prometheus -> job -> active targets, for the central Prometheus, one detection
    instance alone, and each of two detection instances."""
    tmp = tmp_path_factory.mktemp(f"discovery-{request.param}")
    return {
        "central": discovered(request.param, yaml.safe_load(
            (ROOT / "prometheus" / "prometheus.yml").read_text()), tmp / "central"),
        "detection": discovered(request.param, detection_config(1, 1), tmp / "detection"),
        **{f"share {slot} of 2": discovered(request.param, detection_config(slot, 2),
                                            tmp / f"share-{slot}")
           for slot in (1, 2)},
    }


@pytest.fixture
def targets(layout) -> dict[str, list[dict]]:
    """The jobs of the one detection instance and of the central Prometheus."""
    return {**layout["central"], **layout["detection"]}


def by_url(targets: list[dict]) -> dict[str, str]:
    return {t["scrapeUrl"]: t["labels"]["instance"] for t in targets}


EVERY_EXPORTER = {
    "http://10.0.1.2:9101/metrics": "manager",
    "http://10.0.1.3:9101/metrics": "worker-1",
    "http://10.0.1.4:9101/metrics": "worker-2",
}


def test_one_exporter_target_per_node_at_its_tasks_address_on_the_stacks_network(targets):
    # Not the node's address (nothing is published there; the manager's reads 0.0.0.0),
    # not the other network's, not the shut-down task, not another service's.
    assert by_url(targets["swarmguard-exporter"]) == EVERY_EXPORTER


def test_detection_instances_share_the_nodes_without_overlap(layout):
    # Each of two instances keeps the nodes whose ID hashes to its slot: together every
    # exporter once, never one twice (two judges of one task would each fire it).
    shares = [by_url(layout[f"share {slot} of 2"].get("swarmguard-exporter", []))
              for slot in (1, 2)]
    assert {**shares[0], **shares[1]} == EVERY_EXPORTER
    assert not set(shares[0]) & set(shares[1])


def test_every_detection_instance_reads_the_opted_in_list_from_every_manager_only(layout):
    for name in ("detection", "share 1 of 2", "share 2 of 2"):
        assert by_url(layout[name]["swarmguard-opt-in"]) == {
            "http://10.0.1.2:9101/opted-in": "manager"}, name


def test_the_central_prometheus_scrapes_no_exporter(layout):
    # Detection is the detection instances' (prometheus-detection.yml): a central scrape
    # of the exporters would judge nothing and cost every task's ingestion again.
    assert not {"swarmguard-exporter", "swarmguard-opt-in"} & set(layout["central"])


def test_one_cadvisor_target_per_node_at_its_own_port_on_the_stacks_network(targets):
    assert by_url(targets["cadvisor"]) == {
        "http://10.0.1.12:8080/metrics": "manager",
        "http://10.0.1.13:8080/metrics": "worker-1",
        "http://10.0.1.14:8080/metrics": "worker-2",
    }


def test_every_node_target_carries_the_node_label_the_health_rules_join_on(targets):
    for job in ("cadvisor", "swarmguard-exporter"):
        for t in targets[job]:
            assert t["labels"]["node"] == t["labels"]["instance"], t["labels"]
