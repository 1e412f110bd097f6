"""The routing-mesh stand-in: which HAProxy servers may take new requests."""
from tests.lab.infra.meshsync import backend_states, publishing_services, server_states

NODES = {"n1": "worker-1", "n2": "worker-2"}


def service(sid, port, mode="host"):
    return {"ID": sid, "Spec": {"EndpointSpec": {"Ports": [{"PublishedPort": port, "PublishMode": mode}]}}}


def task(service_id, node, desired="running"):
    return {"ServiceID": service_id, "NodeID": node, "DesiredState": desired}


def test_only_services_publishing_the_entry_points_port_in_host_mode_are_balanced():
    assert publishing_services([service("a", 8081), service("b", 9000), service("c", 8081, "ingress"),
                                {"ID": "d", "Spec": {}}], 8081) == {"a"}


def test_a_node_whose_task_is_told_to_shut_down_leaves_rotation_at_once():
    states = server_states([task("a", "n1", desired="shutdown"), task("a", "n2")], {"a"}, NODES,
                           ["worker-1", "worker-2"])
    assert states == {"worker-1": "maint", "worker-2": "ready"}


def test_a_node_with_a_task_meant_to_run_is_ready_and_health_checks_decide_the_rest():
    assert server_states([task("a", "n1")], {"a"}, NODES, ["worker-1", "worker-2"]) == {
        "worker-1": "ready", "worker-2": "maint"}


def test_tasks_of_other_services_do_not_count():
    assert server_states([task("b", "n1")], {"a"}, NODES, ["worker-1"]) == {"worker-1": "maint"}


BACKENDS = {8081: "app", 8082: "app8082", 8083: "app8083"}


def test_each_entry_point_follows_the_services_publishing_its_own_port():
    services = [service("a", 8081), service("b", 8082)]
    tasks = [task("a", "n1"), task("b", "n2")]
    assert backend_states(services, tasks, NODES, BACKENDS, ["worker-1", "worker-2"]) == {
        ("app", "worker-1"): "ready", ("app", "worker-2"): "maint",
        ("app8082", "worker-1"): "maint", ("app8082", "worker-2"): "ready",
        ("app8083", "worker-1"): "maint", ("app8083", "worker-2"): "maint"}


def test_a_move_of_one_service_changes_only_its_own_entry_point():
    services = [service("a", 8081), service("b", 8082)]
    before = backend_states(services, [task("a", "n1"), task("b", "n1")], NODES, BACKENDS, ["worker-1", "worker-2"])
    after = backend_states(services, [task("a", "n1"), task("b", "n1", desired="shutdown"), task("b", "n2")],
                           NODES, BACKENDS, ["worker-1", "worker-2"])
    assert {k: v for k, v in after.items() if before[k] != v} == {
        ("app8082", "worker-1"): "maint", ("app8082", "worker-2"): "ready"}
