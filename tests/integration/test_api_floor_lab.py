"""Engine 29's API floor in the lab: the nodes' dockerd refuse API versions below 1.44, as
Engine 29.0-29.2 do out of the box (google/cadvisor#3749, #3790, #3793).

The `current` flavour's Engine 28.5 raises its floor with DOCKER_MIN_API_VERSION, read
once at start (moby v28.5.2, cmd/dockerd/daemon.go, loadDaemonCliConfig; the refusal is
api/server/middleware/version.go). The module restarts every node's dockerd with that
floor (their swarm state stays; Swarm restarts the tasks) and every cAdvisor after it, as
a Docker upgrade would, and puts both back as they were at the end.

What must work there: the receiver (its docker client negotiates the API version;
receiver/README.md, `SWARMGUARD_DOCKER_API_VERSION`) and Prometheus 3.5's Swarm discovery. What is recorded as observed:
cAdvisor 0.38 goes blind (no Docker factory, no container_label_com_docker_swarm_* series)
and Prometheus 2.42's Swarm discovery is refused. SwarmGuardBlind (cadvisor_blind,
docs/runbook.md) makes that blindness loud; these tests pin down what it looks like.
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time

import docker
import pytest
import requests
import yaml

from tests.lab.infra import monitoring, nodes, rootfs, services
from tests.lab.config import LabConfig
from tests.lab.infra.monitoring import cadvisor_url
from tests.lab.infra.receiver_proc import ReceiverProcess, webhook
from tests.lab.infra.system import stop_pid, wait_for

pytestmark = pytest.mark.lab

FLOOR = "1.44"
REFUSAL = "client version 1.41 is too old. Minimum supported API version is 1.44"
SWARM_LABEL = "container_label_com_docker_swarm_service_name="
# Loopback ports of the short-lived Prometheus servers below (the lab's own is on 9090).
DISCOVERY_PORTS = {"current": 9190, "bookworm": 9191}


def _restart_nodes(cfg: LabConfig) -> None:
    """Every node's dockerd with cfg's floor, the swarm Ready again, a fresh cAdvisor each."""
    for node in cfg.nodes:
        nodes.start_dockerd(cfg, node)  # restarts only when the floor changes
    for node in cfg.nodes:
        nodes.wait_dockerd(cfg, node)
    wait_for("every node Ready", lambda: nodes.all_ready(cfg), timeout=90)
    for node in cfg.nodes:
        monitoring.restart_cadvisor(cfg, node)


@pytest.fixture(scope="module")
def floored(lab: LabConfig):
    if lab.flavour != "current":
        pytest.fail(f"the API floor needs the current flavour (Engine 28.5); the lab runs {lab.flavour}")
    cfg = dataclasses.replace(lab, min_api=FLOOR)
    _restart_nodes(cfg)
    yield cfg
    _restart_nodes(lab)


@pytest.fixture(scope="module")
def web(floored: LabConfig):
    """One health-checked task on a worker, deployed under the floor."""
    services.deploy_web(floored, "floor-web", replicas=1)
    wait_for("floor-web running", lambda: services.running_tasks(floored, "floor-web"), timeout=60)
    yield "floor-web"
    services.remove_service(floored, "floor-web")


def the_task(cfg: LabConfig, service: str) -> dict:
    [task] = services.running_tasks(cfg, service)
    return task


# ---------------------------------------------------------------- the floor itself

def test_every_node_refuses_a_client_pinned_to_api_1_41_with_engine_29s_message(floored):
    for node in floored.nodes:
        url = floored.docker_url(node)
        # Unversioned /version, as a negotiating client asks first: answered, with the floor.
        version = docker.APIClient(base_url=url, version="auto", timeout=10).version(api_version=False)
        assert version["MinAPIVersion"] == FLOOR, (node.name, version)
        assert version["Version"].startswith("28.5"), (node.name, version)
        with pytest.raises(docker.errors.APIError) as refused:
            docker.APIClient(base_url=url, version="1.41", timeout=10).version()
        assert refused.value.status_code == 400
        assert REFUSAL in str(refused.value.explanation), (node.name, refused.value.explanation)


# ---------------------------------------------------------------- what must keep working

def test_the_receiver_moves_a_task_under_the_floor(floored, web):
    """The receiver as shipped (no API version set): ready, reads the swarm, updates it."""
    task = the_task(floored, web)
    old = services.node_name(floored, task["NodeID"])
    with ReceiverProcess(floored, confirm_with_prometheus=0) as receiver:  # start() waits for /readyz 200
        ready = requests.get(f"{receiver.url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        alert = webhook("SwarmGuardMigrate", {"service": web, "task_id": task["ID"], "node_id": task["NodeID"]},
                        annotations={"cpu_percent": "95", "network_percent": "2"})
        assert receiver.send(alert).status_code == 202
        new = services.wait_moved_off(floored, web, old)
        receiver.wait_idle()
        assert receiver.metric("swarmguard_actions_total", kind="migrate", result="success") == 1
    assert new != old


def _discovery_config(cfg: LabConfig) -> dict:
    socket = cfg.docker_url(cfg.manager)
    return {"global": {"scrape_interval": "5s"}, "scrape_configs": [
        {"job_name": f"swarm-{role}", "dockerswarm_sd_configs": [
            {"host": socket, "role": role, "refresh_interval": "1s"}]}
        for role in ("tasks", "nodes")]}


def _discovered(port: int) -> list[dict]:
    r = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5)
    r.raise_for_status()
    return [t["discoveredLabels"] for t in r.json()["data"]["activeTargets"]]


@pytest.fixture
def discovery(floored):
    """start(flavour): a Prometheus of that flavour with Swarm discovery against the
    manager's socket, its port and log; stopped (by PID) after the test."""
    started: list[tuple[subprocess.Popen, str]] = []

    def start(flavour: str) -> tuple[int, object]:
        work = floored.state_dir / "api-floor" / flavour
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "prometheus.yml").write_text(yaml.safe_dump(_discovery_config(floored)))
        port = DISCOVERY_PORTS[flavour]
        args = ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
        cmd = rootfs.for_flavour(dataclasses.replace(floored, flavour=flavour, min_api=None), args)
        log = work / "prometheus.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started.append((proc, "prometheus"))
        wait_for(f"{flavour} Prometheus ready", lambda: requests.get(
            f"http://127.0.0.1:{port}/-/ready", timeout=1).ok, timeout=30)
        return port, log

    yield start
    for proc, marker in started:
        stop_pid(proc.pid, marker)
        proc.wait(timeout=10)


def test_prometheus_3_5_swarm_discovery_finds_the_tasks_and_the_nodes_under_the_floor(floored, web, discovery):
    port, _ = discovery("current")
    version = requests.get(f"http://127.0.0.1:{port}/api/v1/status/buildinfo", timeout=5).json()["data"]["version"]
    assert version.startswith("3.5"), version
    task = the_task(floored, web)

    def found():
        labels = _discovered(port)
        tasks = {t.get("__meta_dockerswarm_task_id") for t in labels
                 if t.get("__meta_dockerswarm_service_name") == web}
        hosts = {t.get("__meta_dockerswarm_node_hostname") for t in labels if t["job"] == "swarm-nodes"}
        return task["ID"] in tasks and hosts >= {n.name for n in floored.nodes}

    wait_for("Prometheus 3.5 to discover the task and every node", found, timeout=30)


# ---------------------------------------------------------------- what breaks, as observed

def test_prometheus_2_42_swarm_discovery_is_refused_under_the_floor(floored, web, discovery):
    """Observed: Prometheus 2.42's Docker client speaks 1.41 and discovers nothing."""
    port, log = discovery("bookworm")
    wait_for("Prometheus 2.42 to log the refusal", lambda: REFUSAL in log.read_text(), timeout=30)
    assert _discovered(port) == []


def _cadvisor_root_cpu(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.startswith("container_cpu_usage_seconds_total{") and 'id="/"' in line]


def _sampled_at(line: str) -> float:
    """The unix time cAdvisor read a sample (0.38 stamps each container sample, in ms)."""
    _series, _value, stamp = line.rsplit(" ", 2)
    return int(stamp) / 1000


def test_cadvisor_0_38_goes_blind_under_the_floor(floored, web):
    """Observed: cAdvisor 0.38.7 asks the node's daemon with API 1.41, is refused, and
    never registers its Docker factory (its log: DockerVersion:Unknown). It stays up and
    healthy and keeps the machine's own series, but no series carries a swarm label: the
    rules see no task, so no alert can fire, and nothing says so."""
    node = floored.node(services.node_name(floored, the_task(floored, web)["NodeID"]))
    task_running = time.time()  # the `web` fixture waited for the task to run

    def answer_read_after_the_task_ran() -> str | None:
        text = requests.get(f"{cadvisor_url(floored, node)}/metrics", timeout=10).text
        root = _cadvisor_root_cpu(text)
        return text if root and all(_sampled_at(line) > task_running for line in root) else None

    # A housekeeping round (10 s, longer when idle) after the task started: a cAdvisor
    # with its Docker factory would label the task's series by now.
    text = wait_for(f"cAdvisor on {node.name} to read its cgroups after the task started",
                    answer_read_after_the_task_ran, timeout=150, interval=1)
    lines = text.splitlines()
    # The same answer says why: cAdvisor 0.38 asks the daemon its version at every scrape,
    # is refused, and serves the version as Unknown.
    version = [line for line in lines if line.startswith("cadvisor_version_info{")]
    assert version and all('dockerVersion="Unknown"' in line for line in version), version
    labelled = [line for line in lines if SWARM_LABEL in line and f'{SWARM_LABEL}""' not in line]
    assert labelled == [], labelled[:3]
    assert requests.get(f"{cadvisor_url(floored, node)}/healthz", timeout=5).ok
