"""The node's task list: read from Docker only when it may have changed."""
import pytest

from exporter.cgroups import CgroupFiles
from exporter.inventory import DockerUnavailable, Inventory, container_record, cpu_limit_cores, parse_docker_time
from tests.unit.exporter_fakes import Clock, StrictDocker

FILES = CgroupFiles(2, "/c/cpu.stat", "/c/memory.current", "/c/memory.stat")


def inspected(cid="c1", *, service="web", running=True, pid=4242, host_config=None, labels=None):
    return {
        "Id": cid,
        "Config": {"Labels": labels if labels is not None else {
            "com.docker.swarm.service.name": service, "com.docker.swarm.task.id": f"task-{cid}",
            "com.docker.swarm.node.id": "node-1", "com.docker.swarm.task.name": f"{service}.1.task-{cid}"}},
        "State": {"Running": running, "Pid": pid if running else 0,
                  "StartedAt": "2026-11-27T23:50:01.250000000Z"},
        "HostConfig": host_config or {"NanoCpus": 500_000_000, "Memory": 256 * 2**20},
    }


def found(_cid, _pid, _parent):
    return FILES


def test_a_swarm_task_container_becomes_a_record_with_its_limits_and_start():
    record = container_record(inspected(), found)

    assert (record.service, record.task_id, record.node_id, record.task_name) == (
        "web", "task-c1", "node-1", "web.1.task-c1")
    assert record.pid == 4242
    assert record.cpu_limit_cores == 0.5
    assert record.memory_limit_bytes == 256 * 2**20
    assert record.started_at == pytest.approx(parse_docker_time("2026-11-27T23:50:01Z") + 0.25)
    assert record.cgroup == FILES


@pytest.mark.parametrize("text, seconds", [
    ("2026-11-27T23:50:01Z", 1_795_823_401.0),
    ("2026-11-27T23:50:01.250000000Z", 1_795_823_401.25),
    # Docker writes nanoseconds; they are read to the microsecond, as every SwarmGuard time.
    ("2026-11-27T23:50:01.123456789Z", 1_795_823_401.123456),
    # Docker's zero time (a container never started) is a time, far in the past.
    ("0001-01-01T00:00:00Z", -62_135_596_800.0),
])
def test_dockers_start_times_read_as_unix_seconds(text, seconds):
    assert parse_docker_time(text) == pytest.approx(seconds, abs=1e-6)


def test_a_start_time_that_is_not_rfc_3339_is_a_value_error():
    with pytest.raises(ValueError, match="StartedAt"):
        parse_docker_time("yesterday")


def test_a_container_without_swarm_labels_is_not_a_task():
    assert container_record(inspected(labels={"app": "x"}), found) is None


def test_a_stopped_container_is_not_measured():
    assert container_record(inspected(running=False), found) is None


def test_a_container_whose_cgroup_is_not_found_is_left_out():
    assert container_record(inspected(), lambda *a: None) is None


@pytest.mark.parametrize("host_config, cores", [
    ({"NanoCpus": 1_500_000_000}, 1.5),
    ({"CpuQuota": 62_500, "CpuPeriod": 100_000}, 0.625),
    ({"CpuQuota": 50_000}, 0.5),  # the kernel's default period
    ({"CpuQuota": 30_000, "CpuPeriod": 20_000}, 1.5),  # a period set by hand counts
    ({"NanoCpus": 0, "CpuQuota": 0}, None),
    ({}, None),
])
def test_the_cpu_limit_is_swarms_nanocpus_or_a_cfs_quota(host_config, cores):
    assert cpu_limit_cores(host_config) == cores


def test_no_memory_limit_reads_as_none():
    assert container_record(inspected(host_config={"Memory": 0}), found).memory_limit_bytes is None


class FakeDocker(StrictDocker):
    """The two Docker calls the inventory makes; anything else fails the test."""

    def __init__(self, containers):
        self.containers_by_id = {c["Id"]: c for c in containers}
        self.calls = []

    def containers(self, filters):
        self.calls.append("list")
        assert filters == {"label": ["com.docker.swarm.task.id"], "status": "running"}
        return [{"Id": cid} for cid in self.containers_by_id]

    def inspect_container(self, cid):
        self.calls.append(f"inspect {cid}")
        return self.containers_by_id[cid]


def inventory(docker, clock, resync=30.0):
    return Inventory(lambda: docker, found, resync_seconds=resync, clock=clock)


def test_between_changes_a_scrape_costs_docker_nothing():
    docker, clock = FakeDocker([inspected("c1"), inspected("c2")]), Clock()
    inv = inventory(docker, clock)

    first = inv.tasks()
    clock.now += 5
    second = inv.tasks()

    assert sorted(t.container_id for t in first) == ["c1", "c2"] == sorted(t.container_id for t in second)
    assert docker.calls == ["list", "inspect c1", "inspect c2"]


def test_after_the_resync_interval_the_list_is_read_again_but_known_containers_are_not_inspected():
    docker, clock = FakeDocker([inspected("c1")]), Clock()
    inv = inventory(docker, clock, resync=30)
    inv.tasks()
    docker.containers_by_id["c3"] = inspected("c3")
    clock.now += 30

    assert sorted(t.container_id for t in inv.tasks()) == ["c1", "c3"]
    assert docker.calls == ["list", "inspect c1", "list", "inspect c3"]


def test_a_container_found_gone_is_dropped_at_once_and_the_list_reread():
    docker, clock = FakeDocker([inspected("c1"), inspected("c2")]), Clock()
    inv = inventory(docker, clock)
    inv.tasks()
    del docker.containers_by_id["c2"]

    inv.forget("c2")

    assert [t.container_id for t in inv.tasks()] == ["c1"]
    assert docker.calls == ["list", "inspect c1", "inspect c2", "list"]


def test_a_container_without_a_cgroup_is_counted_and_not_inspected_again():
    docker, clock = FakeDocker([inspected("c1")]), Clock()
    inv = Inventory(lambda: docker, lambda *a: None, resync_seconds=1, clock=clock)

    assert inv.tasks() == []
    clock.now += 1
    assert inv.tasks() == []
    assert inv.unlocated == 1
    assert docker.calls == ["list", "inspect c1", "list"]


def test_docker_unreachable_is_reported_and_retried_at_the_next_scrape():
    docker, attempts = FakeDocker([inspected("c1")]), []

    def connect():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("no such socket")
        return docker

    inv = Inventory(connect, found, resync_seconds=30, clock=Clock())

    with pytest.raises(DockerUnavailable, match="no such socket"):
        inv.tasks()
    assert [t.container_id for t in inv.tasks()] == ["c1"]


def test_a_failed_list_drops_the_connection_and_keeps_the_list_out_of_date():
    class Broken(FakeDocker):
        def containers(self, filters):
            raise OSError("daemon restarting")

    connections = []
    inv = Inventory(lambda: connections.append(1) or Broken([]), found, resync_seconds=30, clock=Clock())

    for _ in range(2):
        with pytest.raises(DockerUnavailable, match="daemon restarting"):
            inv.tasks()
    assert len(connections) == 2


def test_a_container_removed_between_list_and_inspect_is_skipped_not_an_outage():
    import docker.errors

    class Racing(FakeDocker):
        def inspect_container(self, cid):
            if cid == "c2":
                raise docker.errors.NotFound("No such container: c2")
            return super().inspect_container(cid)

    inv = inventory(Racing([inspected("c1"), inspected("c2")]), Clock())

    assert [t.container_id for t in inv.tasks()] == ["c1"]
