"""The stress app under gunicorn (stress/gunicorn.conf.py): a slow starter keeps its port
closed for its start-up delay, then serves; without a delay nothing waits."""

import os
import socket
import time

import pytest
import requests

from tests.unit.gunicorn_process import gunicorn, settings_module

CONF = "stress/gunicorn.conf.py"


class Server:
    """What on_starting receives from gunicorn: only its logger is used."""

    class log:
        @staticmethod
        def info(message, *args):
            message % args  # a format that does not fit its arguments fails the test


def hook(monkeypatch, environ: dict) -> list[float]:
    """Run the configuration's on_starting with `environ`; return the sleeps it asked for."""
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    settings_module(monkeypatch, CONF, "STRESS_", environ)["on_starting"](Server)
    return sleeps


def test_a_slow_starter_waits_its_delay_before_gunicorn_binds(monkeypatch):
    assert hook(monkeypatch, {"STRESS_STARTUP_DELAY_SECONDS": "8"}) == [8.0]


def test_without_a_delay_nothing_waits(monkeypatch):
    assert hook(monkeypatch, {}) == []


def test_a_bad_delay_stops_the_app_before_it_listens(monkeypatch):
    with pytest.raises(ValueError, match="STRESS_STARTUP_DELAY_SECONDS"):
        hook(monkeypatch, {"STRESS_STARTUP_DELAY_SECONDS": "-2"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_under_gunicorn_the_port_is_closed_for_the_delay_then_the_app_serves(tmp_path):
    delay = 2.0
    port = free_port()
    env = {**os.environ, "STRESS_BIND": f"127.0.0.1:{port}", "STRESS_STARTUP_DELAY_SECONDS": str(delay),
           "STRESS_LOG_LEVEL": "info"}
    log_path = tmp_path / "gunicorn.log"
    started = time.monotonic()
    with gunicorn(CONF, "stress.app:create_app()", env, log_path, stop_within=20) as proc:
        while refused(port):
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited: {log_path.read_text()}")
            if time.monotonic() - started > 30:
                pytest.fail(f"the port did not open within 30 s: {log_path.read_text()}")
            time.sleep(0.05)
        opened = time.monotonic() - started
        assert opened >= delay  # a lower bound only: a slow machine just takes longer
        answer = None
        for _ in range(300):  # the worker may still be loading the app: the backlog waits
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, log_path.read_text()
        assert "the port opens in 2.0 s" in log_path.read_text()


# -- gunicorn's settings: STRESS_* variables read through stress/config.py ----------------

def test_by_default_gunicorn_listens_on_every_interface_at_8080_without_an_access_log(
        monkeypatch):
    conf = settings_module(monkeypatch, CONF, "STRESS_", {})
    assert (conf["bind"], conf["threads"], conf["loglevel"], conf["accesslog"]) == \
        ("0.0.0.0:8080", 8, "info", None)


def test_the_port_moves_the_listener_and_a_bind_replaces_the_whole_address(monkeypatch):
    assert settings_module(monkeypatch, CONF, "STRESS_", {"STRESS_PORT": "9000"})["bind"] == \
        "0.0.0.0:9000"
    conf = settings_module(monkeypatch, CONF, "STRESS_", {
        "STRESS_PORT": "9000", "STRESS_BIND": "127.0.0.1:9100", "STRESS_THREADS": "2",
        "STRESS_LOG_LEVEL": "DEBUG", "STRESS_ACCESS_LOG": "-"})
    assert (conf["bind"], conf["threads"], conf["loglevel"], conf["accesslog"]) == \
        ("127.0.0.1:9100", 2, "debug", "-")
