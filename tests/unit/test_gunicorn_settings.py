"""Both gunicorn configurations (receiver/gunicorn.conf.py, stress/gunicorn.conf.py) read
their settings through their component's frozen dataclass (swarmguard_config): a bad value
stops gunicorn before it listens, with one sentence naming the variable."""

import os

import pytest

from tests.unit.gunicorn_process import gunicorn, settings_module

RECEIVER = ("receiver/gunicorn.conf.py", "SWARMGUARD_", "receiver", "receiver.app:create_app()")
STRESS = ("stress/gunicorn.conf.py", "STRESS_", "stress", "stress.app:create_app()")


@pytest.mark.parametrize("component, name, value", [
    (RECEIVER, "SWARMGUARD_BIND", "8000"),
    (RECEIVER, "SWARMGUARD_THREADS", "many"),
    (RECEIVER, "SWARMGUARD_SHUTDOWN_DEADLINE", "-5"),
    (RECEIVER, "SWARMGUARD_MAX_BODY_BYTES", "0"),
    (RECEIVER, "SWARMGUARD_REQUEST_READ_TIMEOUT", "0"),
    (RECEIVER, "SWARMGUARD_LOG_LEVEL", "loud"),
    (STRESS, "STRESS_BIND", "127.0.0.1"),
    (STRESS, "STRESS_PORT", "http"),
    (STRESS, "STRESS_PORT", "65536"),
    (STRESS, "STRESS_THREADS", "0"),
    (STRESS, "STRESS_LOG_LEVEL", "verbose"),
], ids=lambda v: v[2] if isinstance(v, tuple) else v)
def test_a_bad_value_stops_gunicorn_with_a_sentence_naming_the_variable(monkeypatch, component,
                                                                        name, value):
    config, prefix, label, _ = component
    with pytest.raises(SystemExit, match=f"^{label}: {name}='{value}'"):
        settings_module(monkeypatch, config, prefix, {name: value})


@pytest.mark.parametrize("component, bind, name", [
    (RECEIVER, "SWARMGUARD_BIND", "SWARMGUARD_THREADS"),
    (STRESS, "STRESS_BIND", "STRESS_THREADS"),
], ids=["receiver", "stress"])
def test_with_a_bad_value_gunicorn_exits_before_it_listens(tmp_path, component, bind, name):
    config, _, label, app = component
    env = {**os.environ, "SWARMGUARD_TOKEN": "tok", bind: "127.0.0.1:0", name: "0"}
    log_path = tmp_path / "gunicorn.log"
    with gunicorn(config, app, env, log_path) as proc:
        assert proc.wait(timeout=60) != 0
    log = log_path.read_text()
    assert f"{label}: {name}='0' must be greater than 0" in log
    assert "Listening at" not in log and "Traceback" not in log
