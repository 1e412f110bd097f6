"""What a move would cost a service (receiver/safety.py): data kept on its node is never
moved, split or removed unless the service allows it (`stateful`), a move that is certain
to be an outage is not made (`unsafe`), and the problems that make a move fail requests."""
from __future__ import annotations

import pytest

from receiver import actions
from receiver import reasons as R
from receiver import safety
from receiver.cluster import build_snapshot, read_snapshot, service_from_dict
from receiver.model import (HEALTHCHECK_IMAGE, HEALTHCHECK_NONE, HEALTHCHECK_SERVICE,
                            HEALTHCHECK_UNKNOWN, Mount)
from tests.fake_docker_api_client import (TASK, TASK_2, WEB_ID, WORKER_1, WORKER_2, WORKER_3,
                                          FakeDockerAPI, example_nodes, node_dict, service_dict,
                                          task_dict)
from tests.unit.test_receiver_decisions import alert, one, world

KINDS = ["migrate", "scale_up", "scale_down"]

NAMED_VOLUME = {"Type": "volume", "Source": "demo_pgdata", "Target": "/var/lib/postgresql/data",
                "VolumeOptions": {"Labels": {"com.docker.stack.namespace": "demo"}}}
LOCAL_VOLUME = {"Type": "volume", "Source": "cache", "Target": "/cache",
                "VolumeOptions": {"DriverConfig": {"Name": "local"}}}
ANONYMOUS_VOLUME = {"Type": "volume", "Target": "/data"}
BIND = {"Type": "bind", "Source": "/srv/uploads", "Target": "/uploads", "ReadOnly": True}
TMPFS = {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 67108864}}
NPIPE = {"Type": "npipe", "Source": r"\\.\pipe\docker_engine", "Target": r"\\.\pipe\docker_engine"}
NETWORK_DRIVER = {"Type": "volume", "Source": "shared", "Target": "/shared",
                  "VolumeOptions": {"DriverConfig": {"Name": "rexray/efs"}}}
LOCAL_NFS = {"Type": "volume", "Source": "exports", "Target": "/exports",
             "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {
                 "type": "nfs", "o": "addr=10.0.0.5,rw", "device": ":/exports"}}}}
LOCAL_CIFS = {"Type": "volume", "Source": "share", "Target": "/share",
              "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {
                  "type": "CIFS", "device": "//fileserver/share"}}}}
CLUSTER_VOLUME = {"Type": "cluster", "Source": "csi-data", "Target": "/data"}
NO_HEALTHCHECK = {"Test": ["NONE"]}


def web(labels=None, mounts=(), healthcheck="default", replicas=2, host_port=None):
    """demo_web with the given mounts and health check, scalable both ways (1 to 5)."""
    return service_dict("demo_web", WEB_ID, replicas=replicas, labels=labels, mounts=mounts,
                        healthcheck=healthcheck, host_port=host_port,
                        constraints=["node.role==worker"])


def two_tasks():
    return [task_dict(TASK, WEB_ID, WORKER_1), task_dict(TASK_2, WEB_ID, WORKER_2, slot=2)]


def decide(kind, service, tasks=None, nodes=None):
    return one(alert(kind), world(service=service, tasks=two_tasks() if tasks is None else tasks,
                                  nodes=nodes))


# -- stateful ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mount, named", [
    (NAMED_VOLUME, "local volume demo_pgdata at /var/lib/postgresql/data"),
    (LOCAL_VOLUME, "local volume cache at /cache"),
    (ANONYMOUS_VOLUME, "an anonymous local volume at /data"),
    (BIND, "bind mount /srv/uploads at /uploads"),
])
def test_a_service_keeping_data_on_its_node_is_never_moved_or_scaled(kind, mount, named):
    skip = decide(kind, web(mounts=[TMPFS, mount]))
    assert skip.reason == R.STATEFUL
    assert skip.alert.kind == kind  # the skip is about that alert: its event names it
    assert f"demo_web keeps data on its node ({named}): " in skip.why
    assert skip.why.endswith("(swarmguard.stateful=allow allows it)")
    assert skip.lasting


def test_the_skip_says_what_each_kind_would_do_to_the_data():
    whys = {kind: decide(kind, web(mounts=[NAMED_VOLUME])).why.split(": ", 1)[1]
            for kind in KINDS}
    assert whys == {
        "migrate": "a task started on another node would start without it "
                   "(swarmguard.stateful=allow allows it)",
        "scale_up": "a new replica would start with an empty copy of its own "
                    "(swarmguard.stateful=allow allows it)",
        "scale_down": "removing a replica would take its data out of the service "
                      "(swarmguard.stateful=allow allows it)",
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mount", [TMPFS, NPIPE, NETWORK_DRIVER, LOCAL_NFS, LOCAL_CIFS,
                                   CLUSTER_VOLUME],
                         ids=["tmpfs", "npipe", "network driver", "local driver over nfs",
                              "local driver over cifs", "cluster (csi) volume"])
def test_mounts_that_keep_nothing_on_the_node_do_not_hold_a_service(kind, mount):
    assert isinstance(decide(kind, web(mounts=[mount])), actions.Action)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", ["allow", " Allow ", "ALLOW"])
def test_the_stateful_label_allows_every_kind(kind, value):
    service = web(mounts=[NAMED_VOLUME, BIND], labels={"swarmguard.stateful": value})
    assert isinstance(decide(kind, service), actions.Action)


@pytest.mark.parametrize("label", ["swarmguard.stateful", "swarmguard.unsafe"])
@pytest.mark.parametrize("value", ["yes", "true", "allowed"])
def test_a_safety_label_that_is_not_allow_is_a_bad_label(label, value):
    skip = decide("migrate", web(mounts=[NAMED_VOLUME], labels={label: value}))
    assert skip.reason == R.BAD_LABEL
    assert skip.alert.kind == "migrate"
    assert skip.why == f"label {label}={value!r} is not 'allow'"


def test_an_empty_safety_label_is_no_permission():
    skip = decide("migrate", web(mounts=[NAMED_VOLUME], labels={"swarmguard.stateful": " "}))
    assert skip.reason == R.STATEFUL


def test_a_service_that_is_not_opted_in_is_not_opted_in_whatever_its_mounts():
    skip = decide("migrate", service_dict("demo_web", WEB_ID, enabled=False, mounts=[BIND]))
    assert skip.reason == R.NOT_OPTED_IN


# -- unsafe: the one move that is certain to be an outage ----------------------------------

def test_the_only_task_of_a_service_without_a_health_check_is_not_moved():
    skip = decide("migrate", web(healthcheck=NO_HEALTHCHECK, replicas=1),
                  tasks=[task_dict(TASK, WEB_ID, WORKER_1)])
    assert skip.reason == R.UNSAFE
    assert skip.why == ("demo_web has no health check and one running task: Swarm would stop "
                        "it as soon as the new task's container starts, before that task "
                        "serves (swarmguard.unsafe=allow moves it anyway)")
    assert skip.lasting


def test_the_unsafe_label_allows_that_move():
    service = web(healthcheck=NO_HEALTHCHECK, replicas=1, labels={"swarmguard.unsafe": "allow"})
    assert isinstance(decide("migrate", service, tasks=[task_dict(TASK, WEB_ID, WORKER_1)]),
                      actions.Migration)


def test_a_task_without_a_health_check_is_moved_while_another_replica_serves():
    # The other replica keeps serving; the starved task already fails requests.
    assert isinstance(decide("migrate", web(healthcheck=NO_HEALTHCHECK)), actions.Migration)


def test_replicas_still_starting_do_not_serve_the_move():
    tasks = [task_dict(TASK, WEB_ID, WORKER_1),
             task_dict(TASK_2, WEB_ID, WORKER_2, slot=2, state="starting")]
    assert decide("migrate", web(healthcheck=NO_HEALTHCHECK), tasks=tasks).reason == R.UNSAFE


@pytest.mark.parametrize("healthcheck", ["default", None, {"Test": []}],
                         ids=["declared", "absent (the image's)", "empty test (the image's)"])
def test_a_single_task_with_a_health_check_or_an_unknown_one_is_moved(healthcheck):
    # Unknown is not refused: an image's HEALTHCHECK is invisible when the manager does
    # not hold the image (receiver/safety.py).
    service = web(healthcheck=healthcheck, replicas=1)
    assert isinstance(decide("migrate", service, tasks=[task_dict(TASK, WEB_ID, WORKER_1)]),
                      actions.Migration)


@pytest.mark.parametrize("kind", ["scale_up", "scale_down"])
def test_scaling_a_service_without_a_health_check_is_not_unsafe(kind):
    service = web(healthcheck=NO_HEALTHCHECK, replicas=2)
    assert isinstance(decide(kind, service), actions.ScaleStep)


def test_state_is_judged_before_safety():
    service = web(mounts=[NAMED_VOLUME], healthcheck=NO_HEALTHCHECK, replicas=1)
    assert decide("migrate", service, tasks=[task_dict(TASK, WEB_ID, WORKER_1)]).reason == R.STATEFUL


# -- the problems ------------------------------------------------------------------------

def problems(service, tasks=None, nodes=None):
    snap = build_snapshot([service], two_tasks() if tasks is None else tasks,
                          example_nodes() if nodes is None else nodes)
    return safety.move_problems(snap.service("demo_web"), snap)


def test_a_service_with_a_health_check_and_no_host_port_has_no_problem():
    assert problems(web()) == ()


def test_a_health_check_disabled_in_the_spec_is_no_healthcheck():
    assert problems(web(healthcheck=NO_HEALTHCHECK)) == ("no_healthcheck",)


def test_an_unknown_health_check_is_not_reported():
    assert problems(web(healthcheck=None)) == ()


def test_host_ports_with_a_free_node_are_no_problem():
    # worker-3 runs no task of demo_web.
    assert problems(web(host_port=8080)) == ()


def test_host_ports_on_every_schedulable_node_leave_no_room_for_a_second_task():
    tasks = two_tasks() + [task_dict("t3", WEB_ID, WORKER_3, slot=3)]
    assert problems(web(host_port=8080, replicas=3), tasks=tasks) == ("host_port_no_free_node",)


def test_a_free_node_that_is_drained_or_outside_the_constraints_does_not_count():
    nodes = example_nodes()[:3] + [node_dict(WORKER_3, "worker-3", availability="drain")]
    assert problems(web(host_port=8080), nodes=nodes) == ("host_port_no_free_node",)
    nodes = example_nodes()[:3] + [node_dict(WORKER_3, "worker-3", role="manager")]
    assert problems(web(host_port=8080), nodes=nodes) == ("host_port_no_free_node",)


def test_a_task_being_shut_down_leaves_its_node_free():
    tasks = two_tasks() + [task_dict("t3", WEB_ID, WORKER_3, slot=3, desired="shutdown")]
    assert problems(web(host_port=8080), tasks=tasks) == ()


def test_a_constraint_the_receiver_cannot_evaluate_leaves_no_node_free():
    # As for a migration (decisions.eligible_nodes): no node is assumed to meet it.
    service = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                           constraints=["node.unknown==x"])
    assert problems(service) == ("host_port_no_free_node",)


def test_swarmguards_own_exclusion_does_not_take_a_node_away():
    service = service_dict("demo_web", WEB_ID, replicas=2, host_port=8080,
                           constraints=["node.role==worker", "node.hostname!=worker-3"],
                           labels={"swarmguard.placement-exclusion": "node.hostname!=worker-3"})
    assert problems(service) == ()


def test_both_problems_are_reported_together():
    tasks = two_tasks() + [task_dict("t3", WEB_ID, WORKER_3, slot=3)]
    assert problems(web(host_port=8080, healthcheck=NO_HEALTHCHECK, replicas=3), tasks=tasks) == (
        "no_healthcheck", "host_port_no_free_node")


def test_global_services_have_no_move_problems():
    assert problems(service_dict("demo_web", WEB_ID, replicas=None, host_port=8080,
                                 healthcheck=NO_HEALTHCHECK)) == ()


# -- reading mounts and health checks (cluster.py) -----------------------------------------

def test_mounts_are_read_from_the_container_spec():
    service = service_from_dict(web(mounts=[NAMED_VOLUME, ANONYMOUS_VOLUME, BIND, TMPFS,
                                            NETWORK_DRIVER]))
    assert service.mounts == (
        Mount("volume", "demo_pgdata", "/var/lib/postgresql/data", "local"),
        Mount("volume", "", "/data", "local"),
        Mount("bind", "/srv/uploads", "/uploads"),
        Mount("tmpfs", "", "/tmp"),
        Mount("volume", "shared", "/shared", "rexray/efs"),
    )


@pytest.mark.parametrize("healthcheck, read", [
    ("default", HEALTHCHECK_SERVICE),
    ({"Test": ["CMD-SHELL", "curl -f localhost"]}, HEALTHCHECK_SERVICE),
    (NO_HEALTHCHECK, HEALTHCHECK_NONE),
    (None, HEALTHCHECK_UNKNOWN),
    ({"Test": [], "Interval": 1000000000}, HEALTHCHECK_UNKNOWN),
])
def test_the_health_check_is_read_from_the_spec(healthcheck, read):
    assert service_from_dict(web(healthcheck=healthcheck)).healthcheck == read


IMAGE = "registry.example:5000/demo/web:1.4@sha256:" + "a" * 64
BY_DIGEST = "registry.example:5000/demo/web@sha256:" + "a" * 64


@pytest.mark.parametrize("image, read", [
    ({"Config": {"Healthcheck": {"Test": ["CMD", "/healthz"]}}}, HEALTHCHECK_IMAGE),
    ({"Config": {"Healthcheck": {"Test": ["NONE"]}}}, HEALTHCHECK_NONE),
    ({"Config": {}}, HEALTHCHECK_NONE),
    (None, HEALTHCHECK_UNKNOWN),
], ids=["image declares one", "image disables it", "image has none", "image not on the manager"])
def test_a_spec_that_inherits_the_images_health_check_is_resolved_by_the_managers_image_store(
        image, read):
    service = service_dict("demo_web", WEB_ID, healthcheck=None, image=IMAGE)
    api = FakeDockerAPI([service], [task_dict(TASK, WEB_ID, WORKER_1)], example_nodes(),
                        images={BY_DIGEST: image} if image else {})
    assert read_snapshot(api, ["demo_web"]).service("demo_web").healthcheck == read
    assert [c for c in api.calls if c[0] == "inspect_image"] == [("inspect_image", (BY_DIGEST,), {})]


@pytest.mark.parametrize("image, asked", [
    ("demo/web:1.4", "demo/web:1.4"),
    ("demo/web@sha256:" + "c" * 64, "demo/web@sha256:" + "c" * 64),
    ("localhost:5000/web:1@sha256:" + "c" * 64, "localhost:5000/web@sha256:" + "c" * 64),
    ("localhost:5000/web@sha256:" + "c" * 64, "localhost:5000/web@sha256:" + "c" * 64),
])
def test_the_image_is_asked_for_by_its_digest_when_the_spec_pins_one(image, asked):
    api = FakeDockerAPI([service_dict("demo_web", WEB_ID, healthcheck=None, image=image)], [],
                        example_nodes())
    read_snapshot(api, ["demo_web"])
    assert [c[1] for c in api.calls if c[0] == "inspect_image"] == [(asked,)]


def test_a_spec_that_declares_its_health_check_needs_no_image_inspection():
    api = FakeDockerAPI([service_dict("demo_web", WEB_ID)], [], example_nodes())
    read_snapshot(api, ["demo_web"])
    assert "inspect_image" not in [c[0] for c in api.calls]
