"""The bundle in the real lab: `docker stack deploy -c stack.yml -c tests/lab/infra/stack.lab.yml`
deploys it; every service that can run here runs; it publishes only the ports the lab's
override allows, and the stack's Prometheus and Alertmanager answer only with the web
password; the stack's Prometheus finds and scrapes the exporters over the overlay network
and knows the stack's Alertmanager; the stack's Alertmanager delivers to the stack's
receiver; and every query of the Grafana dashboard returns series once SwarmGuard has
done its job.

Not here, and why: cAdvisor and Grafana have no image in the lab (stack.lab.yml gives
them no node); the lab's own cAdvisor processes stand in for the first: the exporters
read them, and the stack's Prometheus scrapes them (its one lab-specific change).

Each test runs alone and in any order: the module deploys the bundle once (`deployed`),
and before every test the `bundle` fixture brings it back to rest (every service at
stack.yml's replica count, the demo service with one settled task, no stress, no alert
about it), whatever an earlier test did or left behind when it failed. Tests that change
the stack (scaling its receiver to zero) restore it in `finally`.
"""
from __future__ import annotations

import contextlib
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import webhooks
from tests.lab.instruments import dashboard, prometheus

from tests.lab.infra import services, stack
from tests.lab.config import LabConfig, Node
from tests.lab.infra.nodes import client
from tests.lab.infra.services import node_name, running_tasks
from tests.lab.instruments.probe import Probe
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.system import LabError, wait_for

pytestmark = pytest.mark.lab

STRESS = stack.full_name("stress")
# The label values of the test alert: no such service, so the receiver checks it and
# leaves the swarm alone.
NO_SUCH_SERVICE = "bundle-lab-no-such-service"


def app_port_holders(lab: LabConfig) -> list[str]:
    """Services outside the stack that publish the app port the stack's stress needs."""
    holders = []
    for service in client(lab, lab.manager).services.list():
        if service.name.startswith(f"{stack.NAME}_"):
            continue
        ports = service.attrs.get("Endpoint", {}).get("Spec", {}).get("Ports", [])
        if any(p.get("PublishedPort") == lab.app_published_port for p in ports):
            holders.append(service.name)
    return holders


@pytest.fixture(scope="module")
def deployed(lab):
    """The bundle, freshly deployed for this module (whatever an interrupted run left is
    removed first), and removed after its last test."""
    stack.remove(lab)
    # `make demo` leaves `web` on one worker's app port; the other lab tests replace it
    # freely too. Without that port the stack's stress could not start (or move) there.
    services.remove_service(lab, "web")
    assert app_port_holders(lab) == [], "remove these services first: they hold the app port"
    stack.deploy(lab)
    yield lab
    stack.remove(lab)


@pytest.fixture
def bundle(deployed):
    """The deployed bundle at rest, before each test: see at_rest()."""
    at_rest(deployed)
    return deployed


def stack_replicas(service: str) -> int:
    """The replica count stack.yml asks for (the tests' starting point)."""
    return stack.load(stack.STACK_FILE)["services"][service]["deploy"].get("replicas", 1)


def at_rest(lab: LabConfig) -> None:
    """Undo what any test of this module may have left: the stack's receiver scaled to
    zero (the dashboard test), a second demo replica (Scenario 2), stress still running
    (a test that failed before stopping it); then wait until every service runs, the demo
    service has one healthy task, settled past the start-up grace, and neither the stack's
    Prometheus nor the lab's has an alert about it (firing or pending)."""
    for name in ("receiver", "stress"):
        if services.replicas(lab, stack.full_name(name)) != stack_replicas(name):
            set_replicas(lab, stack.full_name(name), stack_replicas(name))
    services.stop_stress_everywhere(lab)
    wait_for("every service of the stack running", lambda: not stack.not_running(lab),
             timeout=120)
    wait_for("one demo container", lambda: len(services.containers(lab, STRESS)) == 1,
             timeout=60)
    for url, auth in ((stack_prometheus(lab), stack.web_auth(lab)), (lab.prometheus_url, None)):
        wait_for("no alert about the demo service", lambda url=url, auth=auth: not prometheus.api(
            url, "/api/v1/query", auth=auth, query=f'ALERTS{{service="{STRESS}"}}')["result"],
            timeout=120)
    services.wait_settled(lab, STRESS)  # the rules ignore a task's start-up heat


def stress_demo_task(lab: LabConfig, node: Node, kind: str, **params) -> float:
    """Stress (`kind`: cpu, combined, ...) on the stack's demo task on `node`, through its
    host-mode port, once the task is past the rules' start-up grace (they ignore a young
    task's heat); when the stress started, in unix seconds."""
    services.wait_settled(lab)
    started = time.time()
    r = requests.get(f"http://{node.ip}:{lab.app_published_port}/stress/{kind}", params=params, timeout=5)
    assert r.status_code == 200, r.text
    return started


def node_of(lab: LabConfig, service: str) -> Node:
    [task] = services.running_tasks(lab, stack.full_name(service))
    return lab.node(services.node_name(lab, task["NodeID"]))


def stack_prometheus(lab: LabConfig) -> str:
    # Host-mode 9090 on the node that runs it (a manager): see stack.lab.yml.
    return f"http://{node_of(lab, 'prometheus').ip}:9090"


def alertmanager_nodes(lab: LabConfig) -> list[Node]:
    """The nodes of the Alertmanager pair's running replicas (one a node)."""
    return sorted((lab.node(services.node_name(lab, t["NodeID"]))
                   for t in services.running_tasks(lab, stack.full_name("alertmanager"))),
                  key=lambda n: n.name)


def stack_alertmanager(lab: LabConfig) -> str:
    # Host-mode 9093 on each node that runs a replica: either answers for the pair.
    return f"http://{alertmanager_nodes(lab)[0].ip}:9093"


def ask_stack(lab: LabConfig, path: str, **params) -> dict:
    """The stack's Prometheus's answer to `path`, asked as its clients do: with the user
    `swarmguard` and the web password (its web config refuses anything else)."""
    return prometheus.api(stack_prometheus(lab), path, auth=stack.web_auth(lab), **params)


def receiver_metric(lab: LabConfig, name: str, **labels: str) -> float:
    """Sum of the stack receiver's samples `name` with these labels, read inside its
    container (the receiver publishes no port; its /metrics is on the overlay)."""
    [task] = services.running_tasks(lab, stack.full_name("receiver"))
    node = lab.node(services.node_name(lab, task["NodeID"]))
    container = client(lab, node).containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
    code, output = container.exec_run(["python3", "-c", (
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
        "'http://127.0.0.1:8000/metrics', timeout=5).read().decode())")])
    assert code == 0, output.decode(errors="replace")
    total = 0.0
    for family in text_string_to_metric_families(output.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# ---------------------------------------------------------------------------- tests

def test_every_service_runs_except_grafana_and_cadvisor_which_have_no_image_here(bundle):
    lab = bundle
    assert stack.not_running(lab) == {}
    for name in stack.NOT_IN_LAB:
        assert services.running_tasks(lab, stack.full_name(name), healthy_only=False) == []
    exporters = services.running_tasks(lab, stack.full_name("exporter"))
    assert sorted(services.node_name(lab, t["NodeID"]) for t in exporters) == sorted(
        n.name for n in lab.nodes)
    for name in ("prometheus", "prometheus-detection", "receiver"):
        assert node_of(lab, name) == lab.manager, name
    # The Alertmanager pair: two replicas, on two nodes.
    assert len(alertmanager_nodes(lab)) == 2 == len(set(alertmanager_nodes(lab)))
    # The demo service answers through the lab's entry point (its host-mode port 8081).
    answer = requests.get(f"{lab.entrypoint_url}/health", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["X-Swarm-Service"] == STRESS


def test_the_stack_publishes_only_the_lab_files_ports_and_each_asks_for_a_password(bundle):
    """What Swarm really published (the services' endpoints, as the manager reports them)
    is the contract's list plus the lab's demo port; Prometheus and Alertmanager refuse
    a request without the web password, a wrong one, and accept the machines' user."""
    lab = bundle
    published = sorted(
        (port["PublishedPort"], service.name.removeprefix(f"{stack.NAME}_"))
        for service in client(lab, lab.manager).services.list(
            filters={"label": f"{stack.NAMESPACE_LABEL}={stack.NAME}"})
        for port in service.attrs["Spec"].get("EndpointSpec", {}).get("Ports", []))
    assert published == sorted(stack.published_in_the_lab(lab).items()), (
        "the lab's stack publishes a port the contract's table (and stack.lab.yml's demo "
        "port) does not name")
    user, password = stack.web_auth(lab)
    for url, api_path in ((stack_prometheus(lab), "/api/v1/status/buildinfo"),
                          (stack_alertmanager(lab), "/api/v2/status")):
        for path in ("/-/healthy", "/metrics", api_path):
            assert requests.get(url + path, timeout=5).status_code == 401, url + path
            assert requests.get(url + path, timeout=5, auth=(user, password + "0")).status_code == 401, url + path
            assert requests.get(url + path, timeout=5, auth=(user, password)).status_code == 200, url + path


def test_the_stacks_prometheus_scrapes_itself_and_alertmanager_with_the_password(bundle):
    """Prometheus's clients of the web config: its own scrape of itself and of Alertmanager
    (basic_auth with the secret's password file) are up; the health checks, which send
    the password too, pass. (Its alerting, the same user and file, delivers in Scenario 1
    through the whole bundle below.)"""
    lab = bundle

    def targets_up():
        active = ask_stack(lab, "/api/v1/targets", state="active")["activeTargets"]
        jobs = sorted((t["labels"]["job"], t["health"]) for t in active
                      if t["labels"]["job"] in ("prometheus", "alertmanager",
                                                "swarmguard-detection-prometheus"))
        return jobs == [("alertmanager", "up"), ("alertmanager", "up"), ("prometheus", "up"),
                        ("swarmguard-detection-prometheus", "up")]
    wait_for("the stack's Prometheus scraping itself, both Alertmanagers and federating the "
             "detection Prometheus", targets_up, timeout=60)
    # A task whose health check fails is never `healthy`; running_tasks counts only those.
    for name, replicas in (("prometheus", 1), ("prometheus-detection", 1), ("alertmanager", 2)):
        assert len(services.running_tasks(lab, stack.full_name(name))) == replicas, name


def test_the_stacks_detection_prometheus_scrapes_one_exporter_per_node_over_the_overlay_network(bundle):
    """Swarm's tasks role finds every exporter task; the relabelling keeps, for the one
    detection instance (the whole share), one target per task named by its node; every
    one up (as the central Prometheus federates their `up`: the detection Prometheus
    publishes no port), reading its own node's Docker and measuring the demo task on the
    node that runs it."""
    lab = bundle
    exporters = services.running_tasks(lab, stack.full_name("exporter"))
    wanted = sorted(node_name(lab, t["NodeID"]) for t in exporters)
    assert wanted == sorted(n.name for n in lab.nodes)

    def exporter_targets():
        return ask_stack(lab, "/api/v1/query", query='up{job="swarmguard-exporter"}')["result"]

    def every_target_up():
        targets = exporter_targets()
        return len(targets) == len(wanted) and all(r["value"][1] == "1" for r in targets)
    wait_for("the stack's detection Prometheus scraping every node's exporter", every_target_up,
             timeout=90)
    targets = exporter_targets()
    assert sorted(r["metric"]["instance"] for r in targets) == wanted, (
        "one target per exporter task, named by the node: prometheus-detection.yml's "
        "relabelling keeps more or other than that")
    assert all(r["metric"]["node"] == r["metric"]["instance"] for r in targets)
    wanted = set(wanted)
    # Each exporter reads its own node's Docker daemon...
    wait_for("every exporter reading its node's Docker", lambda: {
        r["metric"]["instance"] for r in ask_stack(lab, "/api/v1/query",
                                                   query="swarmguard_exporter_docker_up == 1")["result"]
    } == wanted, timeout=30)
    # ...and measures the stack's own demo task (opted in), on the node that runs it (as
    # the central Prometheus federates the detection's per-task %).
    [task] = running_tasks(lab, STRESS)
    rows = wait_for("the demo task's CPU % from its node's exporter", lambda: ask_stack(
        lab, "/api/v1/query", query=f'swarmguard:task_cpu:percent{{service="{STRESS}"}}')["result"],
        timeout=60)
    assert {r["metric"]["node_id"] for r in rows} == {task["NodeID"]}
    assert ask_stack(lab, "/api/v1/query",
                     query=f'swarmguard:task_network:percent{{service="{STRESS}"}}')["result"]
    # cAdvisor: the stack's service has no task in the lab; its job scrapes the lab's
    # cAdvisor processes instead (tests/lab/infra/stack.py: lab_prometheus_config).
    assert sorted(t["labels"]["instance"] for t in ask_stack(lab, "/api/v1/targets", state="active")["activeTargets"]
                  if t["labels"]["job"] == "cadvisor") == sorted(n.name for n in lab.nodes)


def test_the_stacks_prometheus_loads_the_rules_and_finds_the_stacks_alertmanager(bundle):
    # The central part of the rules (the detection part runs in prometheus-detection).
    groups = {g["name"] for g in ask_stack(bundle, "/api/v1/rules")["groups"]}
    assert groups == {"swarmguard-thresholds", "swarmguard-scale-down", "swarmguard-health"}
    # dns_sd on tasks.alertmanager: both replicas' addresses on the stack's network.
    found = wait_for("the stack's Prometheus discovering tasks.alertmanager", lambda: [
        a for a in ask_stack(bundle, "/api/v1/alertmanagers")["activeAlertmanagers"]
        if a["url"].endswith(":9093/api/v2/alerts")], timeout=30)
    assert len(found) == 2, found


def test_the_stacks_alertmanager_delivers_a_swarmguard_alert_to_the_stacks_receiver(bundle):
    lab = bundle
    url = stack_alertmanager(lab)
    before = receiver_metric(lab, "swarmguard_alerts_received_total", alertname="SwarmGuardMigrate")
    rejected = receiver_metric(lab, "swarmguard_rejected_requests_total")
    unconfirmed = receiver_metric(lab, "swarmguard_alerts_skipped_total",
                                  alertname="SwarmGuardMigrate", reason="unconfirmed")
    unreachable = receiver_metric(lab, "swarmguard_alerts_skipped_total",
                                  alertname="SwarmGuardMigrate", reason="prometheus_unreachable")
    actions = receiver_metric(lab, "swarmguard_actions_total")
    alert = webhooks.posted_alert(
        {"alertname": "SwarmGuardMigrate", "service": NO_SUCH_SERVICE,
         # Well-formed Swarm IDs (25 lower-case letters and digits) that name
         # nothing: the receiver checks the format before it looks them up.
         "task_id": "bundlelabtask000000000000", "node_id": "bundlelabnode000000000000",
         "scenario": "migrate", "severity": "warning"},
        annotations={"summary": "sent by test_bundle_lab", "description": "no such service",
                     "runbook_url": "docs/runbook.md#swarmguardmigrate"},
        generatorURL="http://test-bundle-lab.invalid/")
    auth = stack.web_auth(lab)  # Alertmanager's web config asks for it, as amtool's users
    r = requests.post(f"{url}/api/v2/alerts", json=[alert], timeout=10, auth=auth)
    assert r.status_code == 200, r.text
    try:
        # Alertmanager -> http://receiver:8000/alerts over the overlay, with the secret's
        # Bearer token: a wrong token would count as a rejected request, not a received alert.
        wait_for("the stack's receiver to receive the alert", lambda: receiver_metric(
            lab, "swarmguard_alerts_received_total", alertname="SwarmGuardMigrate") > before,
            timeout=30)
        assert receiver_metric(lab, "swarmguard_rejected_requests_total") == rejected
        # Checked with the stack's Prometheus (through its basic auth, with the password
        # secret), which does not fire it: left alone. (Counts since this test began: an
        # earlier test may have acted, or restarted the receiver.)
        wait_for("the receiver to skip it as unconfirmed", lambda: receiver_metric(
            lab, "swarmguard_alerts_skipped_total", alertname="SwarmGuardMigrate",
            reason="unconfirmed") > unconfirmed, timeout=30)
        assert receiver_metric(lab, "swarmguard_alerts_skipped_total", alertname="SwarmGuardMigrate",
                               reason="prometheus_unreachable") == unreachable
        assert receiver_metric(lab, "swarmguard_actions_total") == actions
    finally:
        requests.post(f"{url}/api/v2/alerts", json=[webhooks.resolved(alert)], timeout=10, auth=auth)


def test_every_dashboard_query_returns_series_once_swarmguard_has_migrated_the_demo_task(bundle):
    """Against the lab's own Prometheus (same rules, and the lab's cAdvisor), with a
    receiver on the host where the lab's Alertmanager delivers: the stack's demo service
    is made CPU-hot, SwarmGuard migrates it, and then every panel and annotation query of
    the dashboard must return series over the last minutes, as Grafana would ask."""
    lab = bundle
    [task] = services.running_tasks(lab, STRESS)
    old = services.node_name(lab, task["NodeID"])
    # The host receiver stands in for the stack's (the lab's Prometheus scrapes it on
    # loopback); the stack's is scaled to zero meanwhile so that the two do not race.
    set_replicas(lab, stack.full_name("receiver"), 0)
    try:
        with ReceiverProcess(lab) as receiver:
            started = stress_demo_task(lab, lab.node(old), "cpu", target=100, duration=60)
            new = services.wait_moved_off(lab, STRESS, old, timeout=90)
            receiver.wait_idle()
            assert receiver.metric("swarmguard_actions_total", kind="migrate", result="success") == 1
            print(f"the bundle's demo task moved {old} -> {new} {time.time() - started:.1f} s after the stress")

            def empty_queries() -> list[str]:
                return [f"{query.where}: {query.expr}" for query in dashboard.promql()
                        if not prometheus.api(lab.prometheus_url, "/api/v1/query_range", query=query.expr,
                                              start=started - 120, end=time.time(), step="1s")["result"]]

            # The action's series come with Prometheus's next scrapes of the receiver (a rate
            # needs two samples): wait for them, then name any query that stayed empty.
            with contextlib.suppress(LabError):
                wait_for("every dashboard query to return series", lambda: not empty_queries(),
                         timeout=60, interval=2)
            empty = empty_queries()
            assert empty == [], "queries with no series:\n" + "\n".join(empty)
    finally:
        set_replicas(lab, stack.full_name("receiver"), stack_replicas("receiver"))


def set_replicas(lab: LabConfig, name: str, count: int) -> None:
    def scale(spec):
        spec["Mode"]["Replicated"]["Replicas"] = count
    services.update_service(lab, name, scale)
    wait_for(f"{name} at {count} replica(s)", lambda: len(services.containers(lab, name)) == count
             and len(services.running_tasks(lab, name)) == count, timeout=90)


def test_scenario_1_through_the_whole_bundle_moves_the_task_with_zero_failed_requests(bundle):
    """Everything as deployed by stack.yml: the stack's exporters and Prometheus detect,
    the stack's Alertmanager delivers, the stack's receiver (in its container, with the
    manager's Docker socket) migrates; a probe through the entry point counts failures."""
    lab = bundle  # at rest: one settled demo task, no alert about it
    before = receiver_metric(lab, "swarmguard_actions_total", kind="migrate", result="success")
    [task] = services.running_tasks(lab, STRESS)
    old = services.node_name(lab, task["NodeID"])
    with Probe(lab.entrypoint_url + "/health", rate=20) as probe:
        probe.wait_answered(by=old)
        started = stress_demo_task(lab, lab.node(old), "cpu", target=100, duration=60)
        new = services.wait_moved_off(lab, STRESS, old, timeout=90)
        moved_after = time.time() - started
        probe.wait_answered(by=new, last=20)  # the entry point has settled on the new node
    result = probe.stop()
    print(f"bundle Scenario 1: {old} -> {new} {moved_after:.1f} s after the stress; {result.summary()}")
    assert receiver_metric(lab, "swarmguard_actions_total", kind="migrate", result="success") == before + 1
    assert new != old
    assert result.failed == 0, result.summary()


def test_scenario_2_through_the_whole_bundle_scales_up_and_back_down_with_zero_failed_requests(bundle):
    """Real demand on the stack's demo service: the stack's pipeline adds a replica (the
    lab has two workers, so the second goes to the other worker; if a migration earlier in
    the run excluded that worker, the scale up lifts the exclusion) and removes it after
    the (shortened) scale-down window."""
    lab = bundle  # at rest: one settled demo task, no alert about it
    ups = receiver_metric(lab, "swarmguard_actions_total", kind="scale_up", result="success")
    downs = receiver_metric(lab, "swarmguard_actions_total", kind="scale_down", result="success")
    [task] = services.running_tasks(lab, STRESS)
    node = lab.node(services.node_name(lab, task["NodeID"]))
    with Probe(lab.entrypoint_url + "/health", rate=20, max_seconds=240) as probe:
        probe.wait_answered(by=node.name)
        started = stress_demo_task(lab, node, "combined", cpu=100,
                                   network=round(lab.node_capacity_mbps * 0.85, 1), duration=60)
        wait_for("a second healthy replica", lambda: len(services.running_tasks(lab, STRESS)) == 2, timeout=90)
        up_after = time.time() - started
        services.stop_stress_everywhere(lab)
        wait_for("back to one replica", lambda: len(services.running_tasks(lab, STRESS, healthy_only=False)) == 1,
                 timeout=120)
        probe.wait_answered(last=20)  # the entry point has settled on the task that is left
    result = probe.stop()
    print(f"bundle Scenario 2: second replica healthy {up_after:.1f} s after the stress; {result.summary()}")
    assert receiver_metric(lab, "swarmguard_actions_total", kind="scale_up", result="success") == ups + 1
    assert receiver_metric(lab, "swarmguard_actions_total", kind="scale_down", result="success") == downs + 1
    assert result.failed == 0, result.summary()
