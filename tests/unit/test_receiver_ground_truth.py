"""The receiver's ground truth for detection health (receiver/ground_truth.py): which
opted-in tasks run on which node, as Docker says, and whether Docker answers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry

from receiver import ground_truth
from receiver.app import create_app, receiver_of
from receiver.config import Settings
from receiver.ground_truth import (GroundTruth, GroundTruthCollector, GroundTruthLoop, NodeTruth,
                                   Reading, build_ground_truth, families)
from receiver.metrics import FAILED_ACTION_RESULTS, Metrics
from receiver.reasons import FAILED, ROLLED_BACK, TIMEOUT
from swarmguard_config.rfc3339 import format_time
from tests.fake_docker_api_client import example_api, node_dict, service_dict, task_dict
from tests.unit.swarm_reads import FakeSwarmReads, large_swarm

NODES = [node_dict("n1", "worker-1"), node_dict("n2", "worker-2"),
         node_dict("n3", "worker-3", state="down"), node_dict("m1", "manager-1", role="manager")]


def swarm() -> FakeSwarmReads:
    return FakeSwarmReads(
        services=[service_dict("web", "sweb"), service_dict("api", "sapi", labels={"swarmguard.enable": " True "}),
                  service_dict("db", "sdb", enabled=False),
                  service_dict("off", "soff", labels={"swarmguard.enable": "false"})],
        tasks=[task_dict("w1", "sweb", "n1"), task_dict("w2", "sweb", "n1", slot=2),
               task_dict("w3", "sweb", "n2", slot=3),
               task_dict("w0", "sweb", "n2", state="shutdown", desired="shutdown"),
               task_dict("w4", "sweb", "n2", slot=4, state="starting"),
               task_dict("w5", "sweb", "n2", slot=5, desired="shutdown"),  # being stopped
               task_dict("a1", "sapi", "n2"), task_dict("d1", "sdb", "n1"),
               task_dict("o1", "soff", "n1")],
        nodes=NODES)


def test_running_tasks_of_opted_in_services_are_counted_per_service_and_node():
    api = swarm()
    truth = ground_truth.read(api)
    assert truth.tasks == {("api", "n2"): 1, ("web", "n1"): 2, ("web", "n2"): 1}
    assert [(n.id, n.hostname, n.role, n.ready) for n in truth.nodes] == [
        ("m1", "manager-1", "manager", True), ("n1", "worker-1", "worker", True),
        ("n2", "worker-2", "worker", True), ("n3", "worker-3", "worker", False)]


def test_a_read_is_three_list_calls_filtered_by_docker_whatever_the_swarm_size():
    api = large_swarm(services=50, tasks=500)
    ground_truth.read(api)
    assert api.calls == [("services", {"label": "swarmguard.enable"}),
                         ("tasks", {"desired-state": "running"}), ("nodes", None)]


def test_a_task_on_an_unknown_node_or_of_an_unknown_service_is_not_counted():
    truth = build_ground_truth([service_dict("web", "sweb")],
                               [task_dict("w1", "sweb", ""), task_dict("x1", "gone", "n1")], NODES)
    assert truth.tasks == {}


def samples(reading: Reading, now: float) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families(reading, now, stale_after=15) for s in family.samples}


TRUTH = GroundTruth(nodes=(NodeTruth("n1", "worker-1", "worker", True),
                           NodeTruth("n3", "worker-3", "worker", False)),
                    tasks={("web", "n1"): 2})


def test_a_fresh_reading_publishes_tasks_per_node_with_the_hostname_and_the_nodes():
    assert samples(Reading(TRUTH, succeeded_at=100.0, last_ok=True), now=104.0) == {
        ("swarmguard_receiver_docker_up", ()): 1.0,
        ("swarmguard_ground_truth_age_seconds", ()): 4.0,
        ("swarmguard_service_tasks", (("node", "worker-1"), ("node_id", "n1"), ("service", "web"))): 2.0,
        ("swarmguard_node_ready", (("node", "worker-1"), ("node_id", "n1"), ("role", "worker"))): 1.0,
        ("swarmguard_node_ready", (("node", "worker-3"), ("node_id", "n3"), ("role", "worker"))): 0.0,
    }


def test_an_old_reading_is_not_truth_any_more_docker_is_down_and_nothing_else_is_published():
    # A read that hangs on a socket that does not answer never fails: it gets old.
    assert samples(Reading(TRUTH, succeeded_at=100.0, last_ok=True), now=116.0) == {
        ("swarmguard_receiver_docker_up", ()): 0.0,
        ("swarmguard_ground_truth_age_seconds", ()): 16.0,
    }


def test_a_failed_read_is_docker_down_at_once_and_a_reading_never_made_has_no_age():
    assert samples(Reading(TRUTH, succeeded_at=100.0, last_ok=False), now=101.0) == {
        ("swarmguard_receiver_docker_up", ()): 0.0,
        ("swarmguard_ground_truth_age_seconds", ()): 1.0,
    }
    assert samples(Reading(None, None, False), now=5.0) == {("swarmguard_receiver_docker_up", ()): 0.0}


def test_the_loop_keeps_the_last_truth_reports_failures_and_recovers():
    api, errors, now = swarm(), [], [10.0]
    loop = GroundTruthLoop(lambda: ground_truth.read(api), clock=lambda: now[0], on_error=errors.append)
    assert loop.refresh() is True
    api.failure = ConnectionError("docker.sock: connection refused")
    now[0] = 15.0
    assert loop.refresh() is False
    assert errors == ["ground_truth"]
    reading = loop.latest()
    assert (reading.last_ok, reading.succeeded_at) == (False, 10.0)
    assert reading.truth.tasks[("web", "n1")] == 2
    api.failure = None
    assert loop.refresh() is True and loop.latest().succeeded_at == 15.0


def test_the_collector_renders_the_loops_reading_without_calling_docker():
    api = swarm()
    loop = GroundTruthLoop(lambda: ground_truth.read(api), clock=lambda: 50.0)
    loop.refresh()
    registry = CollectorRegistry()
    registry.register(GroundTruthCollector(loop))
    calls = len(api.calls)
    assert registry.get_sample_value("swarmguard_service_tasks",
                                     {"service": "web", "node_id": "n1", "node": "worker-1"}) == 2
    assert registry.get_sample_value("swarmguard_receiver_docker_up") == 1
    assert len(api.calls) == calls


class SwarmAndReceiverAPI(FakeSwarmReads):
    """The receiver's usual fake, plus the three list calls."""

    def __init__(self):
        base = swarm()
        super().__init__(base.service_list, base.task_list, base.node_list)
        self.receiver_api = example_api()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.receiver_api, name)


def test_the_app_publishes_the_ground_truth_when_asked_and_counts_docker_errors():
    api = SwarmAndReceiverAPI()
    app = create_app(Settings(token="t" * 32), api, publish_ground_truth=True)
    loop = receiver_of(app).ground_truth
    try:
        loop.refresh()
        text = app.test_client().get("/metrics").get_data(as_text=True)
        assert 'swarmguard_service_tasks{node="worker-1",node_id="n1",service="web"} 2.0' in text
        assert "swarmguard_receiver_docker_up 1.0" in text
        api.failure = ConnectionError("refused")
        loop.refresh()
        registry = receiver_of(app).metrics.registry
        assert registry.get_sample_value("swarmguard_docker_errors_total", {"operation": "ground_truth"}) >= 1
    finally:
        loop.stop()


def test_an_app_given_its_own_docker_client_does_not_read_the_swarm_unless_asked():
    app = create_app(Settings(token="t" * 32), example_api())
    assert receiver_of(app).ground_truth is None
    assert "swarmguard_service_tasks" not in app.test_client().get("/metrics").get_data(as_text=True)


def test_failed_actions_are_exported_at_zero_from_the_start_for_every_kind():
    assert set(FAILED_ACTION_RESULTS) == {FAILED, TIMEOUT, ROLLED_BACK}
    registry = Metrics().registry
    for kind in ("migrate", "scale_up", "scale_down"):
        for result in FAILED_ACTION_RESULTS:
            assert registry.get_sample_value("swarmguard_actions_total", {"kind": kind, "result": result}) == 0


# -- futile holds (swarmguard_service_futile) ----------------------------------------------------

WALL = datetime(2026, 11, 27, 10, 5, 0, tzinfo=timezone.utc)


def held_until(seconds_from_wall):
    return {"swarmguard.futile-until": format_time(WALL + timedelta(seconds=seconds_from_wall))}


def futile_swarm() -> FakeSwarmReads:
    return FakeSwarmReads(
        services=[service_dict("web", "sweb", labels=held_until(300)),
                  service_dict("api", "sapi", labels=held_until(-1)),  # the hold has passed
                  service_dict("db", "sdb", labels={"swarmguard.futile-until": "soon"}),
                  service_dict("calm", "scalm"),
                  service_dict("off", "soff", enabled=False, labels=held_until(300))],
        nodes=NODES)


def test_each_opted_in_service_is_held_while_its_futile_until_label_is_ahead():
    truth = ground_truth.read(futile_swarm(), wall_clock=lambda: WALL)
    # An unreadable hold is not one (the receiver skips the service as bad_label); a service
    # not opted in is not published at all.
    assert truth.futile == {"api": False, "calm": False, "db": False, "web": True}


def test_the_hold_is_published_at_each_scrape_of_a_fresh_reading_and_withheld_with_the_rest():
    truth = ground_truth.read(futile_swarm(), wall_clock=lambda: WALL)
    fresh = samples(Reading(truth, succeeded_at=100.0, last_ok=True), now=101.0)
    assert {labels: value for (name, labels), value in fresh.items()
            if name == "swarmguard_service_futile"} == {
        (("service", "api"),): 0.0, (("service", "calm"),): 0.0, (("service", "db"),): 0.0,
        (("service", "web"),): 1.0}
    old = samples(Reading(truth, succeeded_at=100.0, last_ok=True), now=116.0)
    assert not any(name == "swarmguard_service_futile" for name, _ in old)


def test_a_restarted_receiver_publishes_the_hold_from_the_labels_alone():
    # Nothing but the service's labels: a new loop and collector, as after a restart.
    loop = GroundTruthLoop(lambda: ground_truth.read(futile_swarm(), wall_clock=lambda: WALL),
                           clock=lambda: 50.0)
    loop.refresh()
    registry = CollectorRegistry()
    registry.register(GroundTruthCollector(loop))
    assert registry.get_sample_value("swarmguard_service_futile", {"service": "web"}) == 1
    assert registry.get_sample_value("swarmguard_service_futile", {"service": "api"}) == 0


# -- swarmguard_service_move_unsafe: what would make a move fail requests -------------------

NO_CHECK = {"Test": ["NONE"]}
IMAGE = "demo/slow:2@sha256:" + "b" * 64
BY_DIGEST = "demo/slow@sha256:" + "b" * 64


def unsafe_swarm(images=None) -> FakeSwarmReads:
    """`web` with a health check on worker-1 and -2 (fine); `nocheck`, health check
    disabled; `edge`, a host-mode port on every ready node; `inherits`, whose spec leaves
    the health check to its image; `off`, not opted in and without a health check."""
    return FakeSwarmReads(
        services=[service_dict("web", "sweb", replicas=2),
                  service_dict("nocheck", "snocheck", healthcheck=NO_CHECK),
                  service_dict("edge", "sedge", replicas=2, host_port=443),
                  service_dict("inherits", "sinh", healthcheck=None, image=IMAGE),
                  service_dict("off", "soff", enabled=False, healthcheck=NO_CHECK)],
        tasks=[task_dict("w1", "sweb", "n1"), task_dict("w2", "sweb", "n2", slot=2),
               task_dict("c1", "snocheck", "n1"),
               task_dict("e1", "sedge", "n1"), task_dict("e2", "sedge", "n2", slot=2),
               task_dict("i1", "sinh", "n2"), task_dict("o1", "soff", "n1")],
        nodes=NODES, images=images)


def test_services_whose_moves_would_fail_requests_are_found_with_each_problem():
    # worker-3 is down and manager-1 is the only other node: edge can start nowhere else.
    nodes = NODES[:3] + [node_dict("m1", "manager-1", role="manager", availability="drain")]
    api = unsafe_swarm()
    api.node_list = nodes
    assert ground_truth.read(api).unsafe == {"edge": ("host_port_no_free_node",),
                                             "nocheck": ("no_healthcheck",)}


def test_a_host_port_service_with_a_free_node_has_no_problem():
    # manager-1 is ready, active and runs no task of edge.
    assert "edge" not in ground_truth.read(unsafe_swarm()).unsafe


def test_an_inherited_health_check_is_what_the_managers_copy_of_the_image_declares():
    declares = unsafe_swarm(images={BY_DIGEST: {"Config": {"Healthcheck": {"Test": ["CMD", "true"]}}}})
    assert "inherits" not in ground_truth.read(declares).unsafe
    has_none = unsafe_swarm(images={BY_DIGEST: {"Config": {"Cmd": ["slow"]}}})
    assert ground_truth.read(has_none).unsafe["inherits"] == ("no_healthcheck",)


def test_an_image_the_manager_does_not_hold_is_unknown_and_not_reported():
    api = unsafe_swarm()
    assert "inherits" not in ground_truth.read(api).unsafe
    assert ("inspect_image", {"image": BY_DIGEST}) in api.calls


def test_each_image_is_inspected_once_per_recheck_period_not_at_every_read():
    api, now = unsafe_swarm(), [0.0]
    images = ground_truth.ImageHealthchecks(api, recheck=300, clock=lambda: now[0])
    inspections = lambda: [c for c in api.calls if c[0] == "inspect_image"]  # noqa: E731
    ground_truth.read(api, images)
    now[0] = 299.0
    ground_truth.read(api, images)
    assert len(inspections()) == 1
    api.images[BY_DIGEST] = {"Config": {}}  # pulled onto the manager since
    now[0] = 300.0
    assert ground_truth.read(api, images).unsafe["inherits"] == ("no_healthcheck",)
    assert len(inspections()) == 2


def test_the_problems_are_published_one_series_each_and_none_for_a_safe_service():
    truth = GroundTruth(nodes=TRUTH.nodes, tasks=TRUTH.tasks,
                        unsafe={"edge": ("no_healthcheck", "host_port_no_free_node"),
                                "nocheck": ("no_healthcheck",)})
    published = {labels: value for (name, labels), value
                 in samples(Reading(truth, succeeded_at=100.0, last_ok=True), now=101.0).items()
                 if name == "swarmguard_service_move_unsafe"}
    assert published == {
        (("problem", "no_healthcheck"), ("service", "edge")): 1.0,
        (("problem", "host_port_no_free_node"), ("service", "edge")): 1.0,
        (("problem", "no_healthcheck"), ("service", "nocheck")): 1.0,
    }


def test_problems_are_withheld_with_the_rest_of_an_old_reading():
    truth = GroundTruth(nodes=TRUTH.nodes, unsafe={"nocheck": ("no_healthcheck",)})
    assert not [key for key in samples(Reading(truth, 100.0, True), now=116.0)
                if key[0] == "swarmguard_service_move_unsafe"]


def test_the_app_publishes_the_problems_at_scrape():
    api = SwarmAndReceiverAPI()
    api.service_list.append(service_dict("nocheck", "snocheck", healthcheck=NO_CHECK))
    app = create_app(Settings(token="t" * 32), api, publish_ground_truth=True)
    loop = receiver_of(app).ground_truth
    try:
        loop.refresh()
        registry = receiver_of(app).metrics.registry
        assert registry.get_sample_value("swarmguard_service_move_unsafe",
                                         {"service": "nocheck", "problem": "no_healthcheck"}) == 1
        assert registry.get_sample_value("swarmguard_service_move_unsafe",
                                         {"service": "web", "problem": "no_healthcheck"}) is None
    finally:
        loop.stop()
