"""The container's CPU and memory allowance is read from v1 and v2 cgroup trees."""

from pathlib import Path

import pytest

from stress.cgroup import (
    CgroupLimits,
    allowance,
    parse_cpu_max,
    parse_memory_max,
    parse_v1_cpu,
    parse_v1_memory,
    read_limits,
)

V1_UNLIMITED_MEMORY = "9223372036854771712\n"
MIB = 1024 * 1024


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(root: Path, cpu_max: str, memory_max: str) -> Path:
    write(root, "cgroup.controllers", "cpuset cpu io memory pids\n")
    write(root, "cpu.max", cpu_max)
    write(root, "memory.max", memory_max)
    return root


def v1_tree(root: Path, quota: str, period: str, memory: str, cpu_dir: str = "cpu") -> Path:
    write(root, f"{cpu_dir}/cpu.cfs_quota_us", quota)
    write(root, f"{cpu_dir}/cpu.cfs_period_us", period)
    write(root, "memory/memory.limit_in_bytes", memory)
    return root


def test_v2_quota_of_half_a_core_and_256_mb_limit(tmp_path):
    limits = read_limits(v2_tree(tmp_path, "50000 100000\n", f"{256 * MIB}\n"))
    assert limits == CgroupLimits(version=2, cpu_quota_cores=0.5, memory_limit_bytes=256 * MIB)


def test_v2_unlimited_cpu_and_memory_read_as_no_limit(tmp_path):
    limits = read_limits(v2_tree(tmp_path, "max 100000\n", "max\n"))
    assert limits == CgroupLimits(version=2, cpu_quota_cores=None, memory_limit_bytes=None)


def test_v1_quota_of_one_and_a_half_cores_and_memory_limit(tmp_path):
    limits = read_limits(v1_tree(tmp_path, "150000\n", "100000\n", f"{512 * MIB}\n"))
    assert limits == CgroupLimits(version=1, cpu_quota_cores=1.5, memory_limit_bytes=512 * MIB)


def test_v1_unlimited_quota_and_huge_memory_value_read_as_no_limit(tmp_path):
    limits = read_limits(v1_tree(tmp_path, "-1\n", "100000\n", V1_UNLIMITED_MEMORY))
    assert limits == CgroupLimits(version=1, cpu_quota_cores=None, memory_limit_bytes=None)


def test_v1_cpu_controller_comounted_as_cpu_cpuacct_is_found(tmp_path):
    limits = read_limits(v1_tree(tmp_path, "200000\n", "100000\n", "max\n", "cpu,cpuacct"))
    assert limits.cpu_quota_cores == 2.0


def test_no_cgroup_hierarchy_means_no_limits(tmp_path):
    assert read_limits(tmp_path) == CgroupLimits(None, None, None)


def test_garbled_files_mean_no_limit_rather_than_a_crash(tmp_path):
    limits = read_limits(v2_tree(tmp_path, "lots\n", "plenty\n"))
    assert limits == CgroupLimits(version=2, cpu_quota_cores=None, memory_limit_bytes=None)


def test_outside_a_container_the_tightest_limit_between_own_cgroup_and_root_applies(tmp_path):
    v1_tree(tmp_path, "-1\n", "100000\n", V1_UNLIMITED_MEMORY)
    write(tmp_path, "memory/app/memory.limit_in_bytes", f"{1024 * MIB}\n")
    write(tmp_path, "memory/app/job/memory.limit_in_bytes", V1_UNLIMITED_MEMORY)
    write(tmp_path, "cpu/app/job/cpu.cfs_quota_us", "25000\n")
    write(tmp_path, "cpu/app/job/cpu.cfs_period_us", "100000\n")
    self_cgroup = "4:memory:/app/job\n2:cpu,cpuacct:/app/job\n0::/\n"

    limits = read_limits(tmp_path, self_cgroup)

    assert limits.cpu_quota_cores == 0.25
    assert limits.memory_limit_bytes == 1024 * MIB


def test_inside_a_container_the_host_path_in_proc_self_cgroup_falls_back_to_the_root(tmp_path):
    # cgroup v1 without a cgroup namespace: /proc/self/cgroup names the host path
    # (/docker/<id>), but the container's own cgroup is mounted at the root.
    v1_tree(tmp_path, "50000\n", "100000\n", f"{128 * MIB}\n")
    limits = read_limits(tmp_path, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    assert limits == CgroupLimits(version=1, cpu_quota_cores=0.5, memory_limit_bytes=128 * MIB)


def test_v2_own_cgroup_below_the_root_is_used(tmp_path):
    v2_tree(tmp_path, "max 100000\n", "max\n")
    write(tmp_path, "svc/cpu.max", "150000 100000\n")
    write(tmp_path, "svc/memory.max", f"{64 * MIB}\n")
    limits = read_limits(tmp_path, "0::/svc\n")
    assert limits == CgroupLimits(version=2, cpu_quota_cores=1.5, memory_limit_bytes=64 * MIB)


@pytest.mark.parametrize(
    "text, cores",
    [("max 100000", None), ("max", None), ("50000 100000", 0.5), ("300000 100000", 3.0)],
)
def test_cpu_max_parses_quota_over_period(text, cores):
    assert parse_cpu_max(text) == cores


def test_v1_cpu_parses_quota_over_period_and_minus_one_as_none():
    assert parse_v1_cpu("25000", "50000") == 0.5
    assert parse_v1_cpu("-1", "100000") is None


def test_memory_values_parse_with_unlimited_as_none():
    assert parse_memory_max("max\n") is None
    assert parse_memory_max("1048576\n") == 1048576
    assert parse_v1_memory(V1_UNLIMITED_MEMORY) is None
    assert parse_v1_memory("1048576") == 1048576


def test_allowance_uses_the_quota_when_below_the_cores_else_the_cores():
    limited = allowance(CgroupLimits(2, 0.5, None), cores=4, node_memory_bytes=8 * 1024 * MIB)
    unlimited = allowance(CgroupLimits(2, None, None), cores=4, node_memory_bytes=None)
    oversized = allowance(CgroupLimits(2, 8.0, None), cores=4, node_memory_bytes=None)
    assert (limited.cpu_cores, limited.cpu_source) == (0.5, "cgroup quota")
    assert (unlimited.cpu_cores, unlimited.cpu_source) == (4.0, "cores")
    assert oversized.cpu_cores == 4.0


def test_allowance_memory_is_the_cgroup_limit_else_the_node_memory():
    limited = allowance(CgroupLimits(2, None, 256 * MIB), cores=2, node_memory_bytes=1024 * MIB)
    node = allowance(CgroupLimits(2, None, None), cores=2, node_memory_bytes=1024 * MIB)
    unknown = allowance(CgroupLimits(None, None, None), cores=2, node_memory_bytes=None)
    assert (limited.memory_bytes, limited.memory_source) == (256 * MIB, "cgroup limit")
    assert (node.memory_bytes, node.memory_source) == (1024 * MIB, "node memory")
    assert (unknown.memory_bytes, unknown.memory_source) == (None, "unknown")
