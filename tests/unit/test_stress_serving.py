"""The stress app under gunicorn (stress/gunicorn.conf.py): a slow starter keeps its port
closed for its start-up delay, then serves; without a delay nothing waits."""

import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "stress" / "gunicorn.conf.py"


class Server:
    """What on_starting receives from gunicorn: only its logger is used."""

    class log:
        @staticmethod
        def info(message, *args):
            message % args  # a format that does not fit its arguments fails the test


def hook(monkeypatch, environ: dict) -> list[float]:
    """Run the configuration's on_starting with `environ`; return the sleeps it asked for."""
    for name in [n for n in os.environ if n.startswith("STRESS_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    runpy.run_path(str(CONF))["on_starting"](Server)
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
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(CONF), "stress.app:create_app()"],
                            cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
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
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
