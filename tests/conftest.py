"""Shared fixtures. The `lab` fixture brings up the real three-node swarm once per test
run (or reuses a healthy one). It never skips: a lab that cannot start fails the run."""
from __future__ import annotations

import pytest

from tests.lab import controller
from tests.lab.config import DEFAULT, LabConfig


@pytest.fixture(scope="session")
def lab() -> LabConfig:
    if not controller.healthy(DEFAULT):
        controller.up(DEFAULT)  # raises LabError: the tests that need the lab then error
    # A clean slate: services left by `make demo` or an interrupted run would hold the
    # workers' published port and the tests' service names.
    controller.remove_services(DEFAULT)
    return DEFAULT


def pytest_collection_modifyitems(config, items):
    # A test marked `lab` always gets the lab fixture, so no lab test can run without it.
    for item in items:
        if item.get_closest_marker("lab") and "lab" not in item.fixturenames:
            item.fixturenames.insert(0, "lab")
