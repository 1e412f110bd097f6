import pytest

from exporter.capacity import Capacity, read_speed_mbps, resolve_capacity


def write_speed(root, interface, text):
    directory = root / "class" / "net" / interface
    directory.mkdir(parents=True)
    (directory / "speed").write_text(text)


def test_link_speed_is_read_from_sysfs_in_megabits(tmp_path):
    write_speed(tmp_path, "eth0", "1000\n")

    assert read_speed_mbps(str(tmp_path), "eth0") == 1000


@pytest.mark.parametrize("text", ["-1\n", "0\n", "fast\n", ""])
def test_a_link_without_a_usable_speed_has_no_capacity(tmp_path, text):
    write_speed(tmp_path, "br0", text)

    assert resolve_capacity("br0", None, str(tmp_path)) is None


def test_a_missing_interface_has_no_capacity(tmp_path):
    assert resolve_capacity("eth9", None, str(tmp_path)) is None


def test_capacity_from_sysfs_is_in_bits_per_second(tmp_path):
    write_speed(tmp_path, "eth0", "10000\n")

    assert resolve_capacity("eth0", None, str(tmp_path)) == Capacity(1e10, "eth0", "sysfs")


def test_a_configured_capacity_wins_over_the_link_speed(tmp_path):
    write_speed(tmp_path, "eth0", "10000\n")

    assert resolve_capacity("eth0", 100.0, str(tmp_path)) == Capacity(1e8, "eth0", "configured")
