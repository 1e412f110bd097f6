"""Shared fixtures. The `lab` fixture brings up the real three-node swarm once per test
run (or reuses a healthy one). It never skips: a lab that cannot start fails the run."""
from __future__ import annotations

import pytest

import time

from tests.lab.infra import controller

from tests.lab.instruments import health
from tests.lab.config import DEFAULT, LabConfig


@pytest.fixture(scope="session")
def lab() -> LabConfig:
    if not controller.healthy(DEFAULT):
        controller.up(DEFAULT)  # raises LabError: the tests that need the lab then error
    # A clean slate: services left by `make demo` or an interrupted run would hold the
    # workers' published port and the tests' service names.
    controller.remove_services(DEFAULT)
    return DEFAULT


@pytest.fixture(scope="session")
def health_watch(lab: LabConfig):
    """No false alarms: after the last lab test, no SwarmGuardBlind or
    SwarmGuardCannotAct may have fired during the run outside the faults that
    tests/integration/test_health_lab.py makes on purpose (which declare their time
    spans) and the reasons the lab raises by design (health.LAB_BY_DESIGN). Read from
    Prometheus's own ALERTS history over the run, so an alarm that came and went between
    two tests is caught too; a failure here is an error at the last test's teardown."""
    started = time.time()
    yield
    alarms = health.false_alarms(lab, started, time.time())
    assert not alarms, "detection-health alerts fired outside any fault:\n" + "\n".join(alarms)


def pytest_collection_modifyitems(config, items):
    # A test marked `lab` always gets the lab fixture, so no lab test can run without it,
    # and the suite-wide watch for false detection-health alarms.
    for item in items:
        if item.get_closest_marker("lab"):
            for name in ("health_watch", "lab"):
                if name not in item.fixturenames:
                    item.fixturenames.insert(0, name)
