"""Where a process's cgroups are, as the exporter reads a task's and the stress app its own:
`/proc/<pid>/cgroup` read by swarmguard_config/cgroup_paths.py."""
from swarmguard_config.cgroup_paths import parse_proc_cgroup


def test_each_controller_maps_to_its_path_and_cgroup_v2_to_the_empty_name():
    paths = parse_proc_cgroup("12:cpu,cpuacct:/a\n4:memory:/b\n0::/c\n")
    assert paths == {"cpu": "/a", "cpuacct": "/a", "memory": "/b", "": "/c"}


def test_cgroup_v2_alone_is_one_path():
    assert parse_proc_cgroup("0::/system.slice/docker-abc.scope\n") == {
        "": "/system.slice/docker-abc.scope"}


def test_a_named_v1_hierarchy_keeps_its_name():
    assert parse_proc_cgroup("1:name=systemd:/docker/abc\n") == {"name=systemd": "/docker/abc"}


def test_the_path_is_everything_after_the_second_colon():
    assert parse_proc_cgroup("0::/odd:name\n") == {"": "/odd:name"}


def test_lines_that_are_not_three_fields_are_passed_over():
    assert parse_proc_cgroup("garbage\n\n3:memory\n0::/c\n") == {"": "/c"}


def test_spaces_around_a_line_are_not_part_of_its_path():
    assert parse_proc_cgroup("  4:memory:/b  \r\n") == {"memory": "/b"}


def test_an_empty_name_between_commas_is_no_controller():
    # Nor cgroup v2's "": the v2 path stays the v2 line's.
    assert parse_proc_cgroup("0::/v2\n5:cpu,,memory:/v1\n") == {"": "/v2", "cpu": "/v1", "memory": "/v1"}


def test_nothing_read_is_no_cgroups():
    assert parse_proc_cgroup("") == {}
