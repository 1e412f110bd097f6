"""Reading a task's CPU time and working set from its cgroup, in every layout Docker makes."""
import errno
import os

import pytest

from exporter.cgroups import ContainerGone, TaskFiles, locate
from exporter.counters import RefusedValue
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


def test_a_container_that_stopped_before_its_files_were_opened_reads_as_gone_saying_which_file(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}")
    files = located(host)
    (host.cgroup / "docker" / CID / "memory.stat").unlink()

    with pytest.raises(ContainerGone) as gone:
        TaskFiles(files, str(host.proc / "4242" / "net" / "dev"))

    assert str(gone.value) == f"[Errno {errno.ENOENT}] No such file or directory: '{files.memory_stat}'"


def test_a_file_that_reads_empty_means_the_task_has_exited(tmp_path):
    # /proc/<pid>/net/dev of an exited process, held open, reads as nothing.
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}")
    files = opened(host)
    (host.proc / "4242" / "net" / "dev").write_text("")

    with pytest.raises(ContainerGone) as gone:
        files.read()

    assert str(gone.value) == f"[Errno {errno.ESRCH}] file reads empty: the process has exited"


@pytest.mark.parametrize("version, cpu_mount", [(2, "cpuacct"), (1, "cpuacct"), (1, "cpu,cpuacct")])
def test_a_cgroup_where_only_the_process_says_is_found_there(tmp_path, version, cpu_mount):
    # Neither Docker driver's layout: e.g. an orchestrator's own hierarchy. Only
    # /proc/<pid>/cgroup tells where it is.
    host = FakeHost(tmp_path, version=version, v1_cpu_mount=cpu_mount)
    host.container(4242, f"/kubepods/burstable/pod7/{CID}", cpu_seconds=1.5, usage=700,
                   inactive_file=200)

    assert located(host).version == version
    assert opened(host).read()[:2] == (1.5, 500)


def test_cgroup_v1_cpu_time_is_exact_nanoseconds(tmp_path):
    host = FakeHost(tmp_path, version=1)
    host.container(4242, f"/docker/{CID}", cpu_seconds=3.25)

    assert cpu_seconds(host) == 3.25


@pytest.mark.parametrize("version", [1, 2])
def test_a_container_whose_process_is_gone_from_proc_is_still_found_by_its_id(tmp_path, version):
    host = FakeHost(tmp_path, version=version)
    host.container(4242, f"/docker/{CID}", cpu_seconds=2.0)

    assert located(host, pid=9999).version == version


@pytest.mark.parametrize("layout", [f"/docker/{CID}", f"/system.slice/docker-{CID}.scope"])
def test_a_cgroup_v1_reader_in_a_private_namespace_finds_each_docker_layout_by_id(tmp_path, layout):
    host = FakeHost(tmp_path, version=1)
    host.container(4242, layout, proc_cgroup_path="/", cpu_seconds=4.0)

    assert cpu_seconds(host) == 4.0


def test_lines_of_proc_cgroup_that_are_not_cgroups_are_passed_over(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/kubepods/{CID}", cpu_seconds=1.0)
    (host.proc / "4242" / "cgroup").write_text(f"garbage\n0::/kubepods/{CID}\n")

    assert cpu_seconds(host) == 1.0


def test_a_cgroup_path_with_colons_is_read_whole(tmp_path):
    # containerd under systemd names a container's scope "<slice>:cri-containerd:<id>".
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/kubepods.slice/kubepods-pod7.slice:cri-containerd:{CID}",
                   cpu_seconds=6.0)

    assert cpu_seconds(host) == 6.0


def test_a_cgroup_v1_layout_with_only_one_of_the_two_controllers_is_passed_over(tmp_path):
    host = FakeHost(tmp_path, version=1)
    host.container(4242, f"/system.slice/docker-{CID}.scope", proc_cgroup_path="/",
                   cpu_seconds=7.0)
    (host.cgroup / "cpuacct" / "docker" / CID).mkdir(parents=True)  # a leftover, no memory

    assert cpu_seconds(host) == 7.0


@pytest.mark.parametrize("version, file", [(1, "cpuacct.usage"), (2, "memory.current"), (1, "memory.usage_in_bytes"),
                                           (2, "memory.stat")])
def test_a_negative_value_in_a_cgroup_file_is_refused_naming_the_file(tmp_path, version, file):
    host = FakeHost(tmp_path, version=version)
    host.container(4242, f"/docker/{CID}", cpu_seconds=1.0, usage=100, inactive_file=0)
    directory = "cpuacct" if file == "cpuacct.usage" else "memory" if version == 1 else ""
    path = host.cgroup / directory / "docker" / CID / file
    name = "inactive_file" if file == "memory.stat" else file
    path.write_text(f"{name} -7\n" if file == "memory.stat" else "-7\n")

    with pytest.raises(RefusedValue, match=f"^{name} -7 is not an unsigned 64-bit counter$"):
        opened(host).read()


def test_a_field_on_a_last_line_without_a_line_break_is_read_whole(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/system.slice/docker-{CID}.scope", usage=100 * 2**20)
    files = located(host)
    with open(files.memory_stat, "w") as memory_stat:
        memory_stat.write("anon 1\ninactive_file 12345")

    assert working_set(host) == 100 * 2**20 - 12345


def test_a_cgroup_file_the_kernel_removed_under_an_open_descriptor_reads_as_gone(tmp_path, monkeypatch):
    # A removed cgroup's files, held open, fail every read with ENODEV.
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}")
    files = opened(host)

    def removed(fd, size, offset):
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr(os, "pread", removed)
    with pytest.raises(ContainerGone) as gone:
        files.read()

    assert str(gone.value) == f"[Errno {errno.ENODEV}] {os.strerror(errno.ENODEV)}"


def test_a_file_that_cannot_be_read_for_another_reason_is_not_taken_for_a_gone_container(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}")
    net_dev = host.proc / "4242" / "net" / "dev"
    net_dev.unlink()
    net_dev.mkdir()  # opens, but reading it fails with EISDIR
    files = opened(host)

    with pytest.raises(OSError) as failed:
        files.read()

    assert failed.value.errno == errno.EISDIR
    assert not isinstance(failed.value, ContainerGone)


def test_closing_the_files_twice_is_harmless(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(4242, f"/docker/{CID}")
    files = opened(host)

    files.close()
    files.close()
