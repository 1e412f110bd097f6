from datetime import datetime, timezone

import docker.constants
import pytest

from receiver.cluster import (DOCKER_FAILURES, NegotiatingClient, build_snapshot, connect,
                              negotiate, read_snapshot)
from receiver.config import Settings
from tests.fake_docker_api_client import (TASK, WEB_ID, WORKER_1, FakeDockerAPI, example_api,
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
    socket = tmp_path / "worker-1.sock"
    api = connect(Settings(token="t", docker_host=f"unix://{socket}"))
    # Built without a word to Docker; the first call asks the daemon, which is not there.
    with pytest.raises(DOCKER_FAILURES):
        api.services()


@pytest.mark.parametrize("daemon, pinned, using", [
    ({"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "auto", "1.41"),
    ({"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}, "auto",
     docker.constants.DEFAULT_DOCKER_API_VERSION),
    ({"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}, "1.47", "1.47"),
])
def test_the_api_version_is_the_newest_both_sides_speak_unless_pinned(daemon, pinned, using):
    api = FakeDockerAPI(version=daemon)
    found = negotiate(api, pinned)
    assert found.using == using
    assert found.unusable() is None
    assert api.calls == [("version", (), {"api_version": False})]  # unversioned: any engine


def test_calls_go_out_in_the_negotiated_version_and_a_daemon_upgraded_since_is_followed():
    fake = FakeDockerAPI(version={"Version": "24.0.9", "ApiVersion": "1.43",
                                  "MinAPIVersion": "1.12"})
    built = []

    def client_at(version):
        built.append(version)
        return fake
    api = NegotiatingClient(client_at)
    assert built == ["1.41"]  # the one that asks GET /version, unversioned, and nothing else
    api.nodes()
    api.info()
    assert built == ["1.41", "1.43"]
    api.negotiate()  # the same daemon: the same client
    assert built == ["1.41", "1.43"]
    fake.version_data = {"Version": "25.0.5", "ApiVersion": "1.44", "MinAPIVersion": "1.24"}
    api.negotiate()
    assert built == ["1.41", "1.43", "1.44"]
    assert [name for name, _, _ in fake.calls] == ["version", "nodes", "info", "version",
                                                   "version"]


def test_a_daemon_older_than_api_1_41_is_unusable_and_says_why():
    found = negotiate(FakeDockerAPI(version={"Version": "19.03.15", "ApiVersion": "1.40",
                                             "MinAPIVersion": "1.12"}))
    assert found.unusable() == ("Docker Engine 19.03.15 speaks API 1.40 at most; the "
                                "receiver needs 1.41 or newer")


def test_a_task_knows_when_swarm_created_it_and_an_unknown_time_is_none():
    tasks = [task_dict(TASK, WEB_ID, WORKER_1, created="2026-11-27T10:00:01.123456789Z"),
             task_dict("t2", WEB_ID, WORKER_1, created="yesterday"),
             {k: v for k, v in task_dict("t3", WEB_ID, WORKER_1).items() if k != "CreatedAt"}]
    snap = build_snapshot([service_dict("demo_web", WEB_ID)], tasks, example_nodes())
    assert snap.task(TASK).created_at == datetime(2026, 11, 27, 10, 0, 1, 123456,
                                                  tzinfo=timezone.utc)
    assert snap.task("t2").created_at is None
    assert snap.task("t3").created_at is None
