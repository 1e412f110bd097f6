"""Reading a task's CPU time and working set from its cgroup, in every layout Docker makes."""
import pytest

from exporter.cgroups import ContainerGone, TaskFiles, locate
from tests.unit.exporter_host import FakeHost

CID = "3f6c0a2b9d5e41f7a8c2e0b6d4f1a9c37e5b2d8f0a6c4e1b9d7f3a5c2e8b0d61"


def located(host, pid=4242, parent=""):
    return locate(CID, pid, proc_root=str(host.proc), cgroup_root=str(host.cgroup), cgroup_parent=parent)


def opened(host, pid=4242, parent=""):
    return TaskFiles(located(host, pid, parent), str(host.proc / str(pid) / "net" / "dev"))


def cpu_seconds(host, **kw):
    return opened(host, **kw).read()[0]


def working_set(host, **kw):
    return opened(host, **kw).read()[1]


def test_cgroup_v2_cpu_is_usage_usec_in_seconds(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/system.slice/docker-{CID}.scope", cpu_seconds=12.5)

    assert cpu_seconds(host) == pytest.approx(12.5)


def test_cgroup_v2_working_set_is_usage_minus_inactive_file(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}", usage=300 * 2**20, inactive_file=100 * 2**20)

    assert working_set(host) == 200 * 2**20


def test_the_working_set_is_never_negative(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}", usage=10, inactive_file=20)

    assert working_set(host) == 0


@pytest.mark.parametrize("cpu_mount", ["cpuacct", "cpu,cpuacct"])
def test_cgroup_v1_reads_cpuacct_nanoseconds_and_total_inactive_file(tmp_path, cpu_mount):
    host = FakeHost(tmp_path, version=1, v1_cpu_mount=cpu_mount)
    host.container(4242, f"/docker/{CID}", cpu_seconds=3.25, usage=500, inactive_file=120)

    assert located(host).version == 1
    assert cpu_seconds(host) == pytest.approx(3.25)
    # total_inactive_file (the hierarchy's), not the cgroup's own inactive_file.
    assert working_set(host) == 380


def test_a_reader_in_a_private_cgroup_namespace_finds_the_cgroup_by_container_id(tmp_path):
    host = FakeHost(tmp_path, version=2)
    # What an exporter in a container sees for another container on cgroup v2.
    host.container(4242, f"/system.slice/docker-{CID}.scope",
                   proc_cgroup_path=f"/../../system.slice/docker-{CID}.scope", cpu_seconds=1.0)

    assert cpu_seconds(host) == pytest.approx(1.0)


def test_a_custom_cgroup_parent_is_searched(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/tenants/{CID}", proc_cgroup_path=f"/../tenants/{CID}", cpu_seconds=2.0)

    assert located(host) is None
    assert cpu_seconds(host, parent="/tenants") == pytest.approx(2.0)


def test_a_container_whose_cgroup_is_nowhere_is_not_located(tmp_path):
    host = FakeHost(tmp_path, version=2)
    (host.proc / "4242").mkdir()
    (host.proc / "4242" / "cgroup").write_text("0::/elsewhere\n")

    assert located(host) is None


def test_the_files_stay_open_and_each_scrape_reads_them_afresh(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}", cpu_seconds=1.0, usage=100, inactive_file=0)
    files = opened(host)
    first = files.read()
    host.set_usage(f"/docker/{CID}", cpu_seconds=2.5, usage=300, inactive_file=50)

    assert first[:2] == (1.0, 100)
    assert files.read()[:2] == (2.5, 250)


def test_a_container_that_stopped_before_its_files_were_opened_reads_as_gone(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}")
    files = located(host)
    (host.cgroup / "docker" / CID / "memory.stat").unlink()

    with pytest.raises(ContainerGone):
        TaskFiles(files, str(host.proc / "4242" / "net" / "dev"))


def test_a_file_that_reads_empty_means_the_task_has_exited(tmp_path):
    # /proc/<pid>/net/dev of an exited process, held open, reads as nothing.
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}")
    files = opened(host)
    (host.proc / "4242" / "net" / "dev").write_text("")

    with pytest.raises(ContainerGone):
        files.read()
