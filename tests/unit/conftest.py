"""Fixtures shared by the unit tests."""
import time

import pytest


@pytest.fixture
def host_in_tokyo(monkeypatch):
    """The process's local time zone is UTC+9 for the test: code that must speak UTC
    shows whether it relies on the host's zone."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
