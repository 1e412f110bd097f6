"""How many nodes the lab runs (SWARMGUARD_LAB_WORKERS, tests/lab/config.py): the soak and
the split layout's lab run use more workers than the default two."""
from __future__ import annotations

import dataclasses

import pytest

from tests.lab.config import MAX_WORKERS, LabConfig, lab_nodes
from tests.lab.infra import controller
from tests.lab.infra.system import LabError


def test_by_default_the_lab_is_a_manager_and_two_workers(monkeypatch):
    monkeypatch.delenv("SWARMGUARD_LAB_WORKERS", raising=False)
    assert [(n.name, n.ip, n.role) for n in LabConfig().nodes] == [
        ("manager", "10.200.0.10", "manager"),
        ("worker-1", "10.200.0.11", "worker"),
        ("worker-2", "10.200.0.12", "worker")]


def test_more_workers_get_the_next_names_and_addresses(monkeypatch):
    monkeypatch.setenv("SWARMGUARD_LAB_WORKERS", "4")
    cfg = LabConfig()
    assert [n.name for n in cfg.workers] == ["worker-1", "worker-2", "worker-3", "worker-4"]
    assert cfg.node("worker-4").ip == "10.200.0.14"
    # Every node has a detection Prometheus of its own port.
    assert len({cfg.node_prometheus_port(n) for n in cfg.nodes}) == 5


@pytest.mark.parametrize("value", ["0", "-1", "two", "", "1.5", str(MAX_WORKERS + 1)])
def test_a_worker_count_the_lab_cannot_run_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match="SWARMGUARD_LAB_WORKERS"):
        lab_nodes(value)


def _lab_in(tmp_path, workers: str) -> LabConfig:
    return dataclasses.replace(LabConfig(), nodes=lab_nodes(workers), state_dir=tmp_path)


def test_a_lab_of_another_size_is_refused_until_it_is_taken_down(tmp_path):
    controller._check_workers(_lab_in(tmp_path, "4"))  # up with 4 records the size
    with pytest.raises(LabError, match="up with 4 workers, asked for 2"):
        controller._check_workers(_lab_in(tmp_path, "2"))
    assert controller.fits(dataclasses.replace(_lab_in(tmp_path, "4"), flavour="current")) is False  # no flavour yet


def test_down_removes_every_node_the_running_lab_has_whatever_the_setting_says_now(tmp_path):
    controller._check_workers(_lab_in(tmp_path, "4"))
    running = controller.as_running(_lab_in(tmp_path, "2"))
    assert [n.name for n in running.workers] == ["worker-1", "worker-2", "worker-3", "worker-4"]


def test_a_lab_from_before_the_size_was_recorded_has_two_workers(tmp_path):
    (tmp_path / "nodes").mkdir()
    assert controller.running_workers(_lab_in(tmp_path, "2")) == 2
    assert controller.running_workers(_lab_in(tmp_path / "none", "2")) is None
