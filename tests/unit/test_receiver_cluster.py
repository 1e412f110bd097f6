from receiver.cluster import build_snapshot, connect, read_snapshot
from receiver.config import Settings
from receiver.testing import (TASK, WEB_ID, WORKER_1, FakeDockerAPI, example_api,
                              example_nodes, service_dict, task_dict)


def test_a_snapshot_describes_services_tasks_and_nodes_from_api_dicts():
    snap = build_snapshot(
        [service_dict("demo_web", WEB_ID, version=42, replicas=3, host_port=8080,
                      constraints=["node.role==worker"], update_state="completed")],
        [task_dict(TASK, WEB_ID, WORKER_1, slot=2)],
        example_nodes())
    web = snap.service("demo_web")
    assert (web.id, web.version, web.mode, web.replicas) == (WEB_ID, 42, "replicated", 3)
    assert web.constraints == ("node.role==worker",)
    assert web.host_ports and not web.updating
    assert web.labels["swarmguard.enable"] == "true"
    task = snap.task(TASK)
    assert (task.node_id, task.slot, task.running) == (WORKER_1, 2, True)
    worker = snap.node(WORKER_1)
    assert (worker.hostname, worker.role, worker.schedulable) == ("worker-1", "worker", True)
    assert snap.hostname(WORKER_1) == "worker-1"
    assert snap.hostname("unknown-node") == "unknown-node"


def test_global_services_have_no_replica_count():
    snap = build_snapshot([service_dict("agent", replicas=None)], [], [])
    assert (snap.service("agent").mode, snap.service("agent").replicas) == ("global", None)


def test_reading_a_snapshot_asks_only_for_the_named_services_with_defaults():
    api = example_api()
    snap = read_snapshot(api, ["demo_web"])
    assert [c[0] for c in api.calls] == ["inspect_service", "tasks", "nodes"]
    assert api.calls[0][2] == {"insert_defaults": False}
    assert api.calls[1][2] == {"filters": {"service": WEB_ID}}
    assert snap.service("demo_web").version == 100
    assert len(snap.tasks) == 1


def test_a_missing_service_is_simply_absent():
    snap = read_snapshot(example_api(), ["demo_gone"])
    assert snap.services == {}


def test_a_service_found_only_by_id_prefix_is_not_the_named_one():
    # Docker resolves "7f3k" to the service whose ID starts with it; that is not "7f3k".
    class PrefixResolving(FakeDockerAPI):
        def _find(self, ref):
            return super()._find(ref) or next(
                (s for s in self.services.values() if s["ID"].startswith(ref)), None)
    api = PrefixResolving(services=[service_dict("demo_web", WEB_ID)])
    assert read_snapshot(api, ["7f3k"]).services == {}


def test_connect_uses_the_configured_socket_without_calling_docker(tmp_path):
    api = connect(Settings(token="t", docker_host=f"unix://{tmp_path}/worker-1.sock"))
    assert api.base_url == "http+docker://localhost"
    assert api._version == "1.41"
