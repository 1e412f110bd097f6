import io
import json
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import docker.constants
import pytest
import requests
from werkzeug.test import EnvironBuilder, run_wsgi_app

from receiver.app import create_app, receiver_of
from receiver.config import ConfigError, Settings
from tests.fake_docker_api_client import WORKER_2, FakeDockerAPI, example_api
from tests.unit.fake_swarm_manager import FakeSwarmManager
from tests.inline_executor import InlineExecutor

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 11, 27, 10, 0, 31, tzinfo=timezone.utc)


def body(name):
    return (FIXTURES / name).read_bytes()


def make(api=None, executor=None, **settings):
    api = api if api is not None else example_api()
    app = create_app(Settings(token=TOKEN, **settings), api,
                     executor=executor or InlineExecutor(), clock=lambda: NOW,
                     sleep=lambda s: None, readiness_thread=False)
    return app, api


def post(app, data, headers=AUTH, content_type="application/json"):
    return app.test_client().post("/alerts", data=data, headers=headers,
                                  content_type=content_type)


def sample(app, name, **labels):
    registry = receiver_of(app).metrics.registry
    return registry.get_sample_value(name, labels) or 0


def moves_task_to(node_id):
    def hook(api, service_id, kwargs):
        running = [t for t in api.task_list if t["DesiredState"] == "running"]
        api.move_task(running[0]["ID"], node_id)
    return hook


# -- accepted ------------------------------------------------------------------------------

def test_a_firing_alert_is_acknowledged_and_acted_on_in_the_background():
    api = example_api()
    api.after_update = moves_task_to(WORKER_2)
    app, _ = make(api)
    response = post(app, body("firing_migrate.json"))
    assert response.status_code == 202
    assert response.get_json() == {"status": "accepted", "firing": 1, "resolved": 0,
                                   "queued": ["demo_web"], "in_progress": []}
    assert len(api.updates) == 1
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardMigrate", status="firing") == 1
    assert sample(app, "swarmguard_actions_total", kind="migrate", result="success") == 1
    assert sample(app, "swarmguard_alert_age_seconds_sum", alertname="SwarmGuardMigrate") \
        == pytest.approx(29.876544)


def test_a_resolved_alert_is_recorded_and_never_acted_on():
    app, api = make()
    response = post(app, body("resolved_migrate.json"))
    assert response.status_code == 202
    assert response.get_json()["resolved"] == 1
    assert api.calls == []  # not even a read
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardMigrate", status="resolved") == 1


def test_a_grouped_payload_acts_once_per_service_and_counts_what_it_skips():
    app, api = make()
    api.after_update = moves_task_to(WORKER_2)
    response = post(app, body("grouped_migrate.json"))
    assert response.status_code == 202
    assert response.get_json()["queued"] == ["demo_web", "demo_api"]
    assert len(api.updates) == 1  # demo_web's task; demo_api does not exist
    assert sample(app, "swarmguard_stale_alerts_total", alertname="SwarmGuardMigrate") == 2
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardMigrate", status="resolved") == 1


def test_a_charset_on_the_content_type_is_fine():
    app, _ = make(dry_run=True)
    response = post(app, body("firing_scale_up.json"),
                    content_type="application/json; charset=utf-8")
    assert response.status_code == 202


def test_in_dry_run_the_webhook_is_answered_and_docker_only_read():
    app, api = make(dry_run=True)
    assert post(app, body("firing_migrate.json")).status_code == 202
    assert api.updates == []
    assert sample(app, "swarmguard_actions_total", kind="migrate", result="dry_run") == 1


def test_the_same_webhook_twice_while_the_first_waits_makes_one_action():
    class Held:
        jobs = []

        def submit(self, fn, *args):
            self.jobs.append((fn, args))

    executor = Held()
    api = example_api()
    api.after_update = moves_task_to(WORKER_2)
    app, _ = make(api, executor=executor)
    post(app, body("firing_migrate.json"))
    second = post(app, body("firing_migrate.json"))
    assert second.get_json()["queued"] == ["demo_web"]
    assert len(executor.jobs) == 1  # the second replaced the waiting first
    for fn, args in executor.jobs:
        fn(*args)
    assert len(api.updates) == 1


# -- refused -------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer "},
])
def test_a_missing_or_wrong_token_is_401_and_changes_nothing(headers):
    app, api = make()
    response = post(app, body("firing_migrate.json"), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.calls == []
    assert sample(app, "swarmguard_rejected_requests_total", code="401") == 1


def test_the_token_is_checked_before_anything_else_is_looked_at():
    app, _ = make()
    response = post(app, b"not json", headers={}, content_type="text/plain")
    assert response.status_code == 401


def test_a_wrong_content_type_is_415():
    app, api = make()
    response = post(app, body("firing_migrate.json"), content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in response.get_json()["error"]
    assert api.calls == []


def test_a_body_over_the_limit_is_413():
    app, api = make(max_body_bytes=1024)
    response = post(app, body("grouped_migrate.json"))
    assert response.status_code == 413
    assert response.get_json() == {"error": "body larger than 1024 bytes"}
    assert api.calls == []


def test_a_body_of_exactly_the_limit_is_read():
    data = body("firing_scale_up.json")
    app, _ = make(max_body_bytes=len(data), dry_run=True)
    assert post(app, data).status_code == 202


def chunked(app, data, stream=None):
    """POST as gunicorn hands a chunked request over: no Content-Length, input terminated."""
    builder = EnvironBuilder(path="/alerts", method="POST", headers=AUTH, data=data,
                             content_type="application/json")
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True,
                    "wsgi.input": stream or io.BytesIO(data)})
    _, status, _ = run_wsgi_app(app, environ, buffered=True)
    return int(status.split()[0])


class BrokenChunks(io.RawIOBase):
    """What gunicorn's reader does with a malformed chunk: raise its own parse error."""

    def readable(self):
        return True

    def readinto(self, buffer):
        raise type("InvalidChunkSize", (Exception,), {})("0x2")


def test_a_body_the_server_cannot_read_is_a_400_not_a_500_and_changes_nothing():
    app, api = make()
    assert chunked(app, b"", stream=BrokenChunks()) == 400
    assert api.calls == []


def test_a_chunked_body_over_the_limit_is_413_too():
    data = body("grouped_migrate.json")
    app, api = make(max_body_bytes=len(data) - 1, dry_run=True)
    assert chunked(app, data) == 413
    assert api.calls == []
    app, _ = make(max_body_bytes=len(data), dry_run=True)
    assert chunked(app, data) == 202  # exactly at the limit is fine


@pytest.mark.parametrize("name, reason", [
    ("malformed.json", "body is not valid JSON"),
    ("wrong_version.json", "unsupported webhook version '3', expected \"4\""),
    ("missing_labels.json", "alerts[0]: SwarmGuardMigrate is missing label(s) task_id"),
    ("unknown_alert.json", "alerts[0]: unknown alertname 'HighLatency'"),
])
def test_bad_payloads_get_400_with_the_reason_and_change_nothing(name, reason):
    app, api = make()
    response = post(app, body(name))
    assert response.status_code == 400
    assert reason in response.get_json()["error"]
    assert api.calls == []
    assert sample(app, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardMigrate", status="firing") == 0


def test_get_on_the_webhook_is_not_allowed():
    app, _ = make()
    assert app.test_client().get("/alerts").status_code == 405


# -- health, readiness, metrics ----------------------------------------------------------

def test_healthz_answers_without_docker():
    app, api = make()
    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}
    assert api.calls == []


def readyz(api):
    """/readyz after one background check against `api`."""
    app, _ = make(api)
    receiver_of(app).readiness.check()
    return app.test_client().get("/readyz")


def test_readyz_needs_docker_and_a_swarm_manager():
    assert readyz(example_api()).status_code == 200

    worker = FakeDockerAPI(info={"Swarm": {"LocalNodeState": "active",
                                           "ControlAvailable": False}})
    response = readyz(worker)
    assert response.status_code == 503
    assert response.get_json()["reason"] == "node is a swarm worker, not a manager"

    alone = FakeDockerAPI(info={"Swarm": {"LocalNodeState": "inactive"}})
    assert readyz(alone).status_code == 503

    down = FakeDockerAPI(version=requests.exceptions.ConnectionError("connection refused"))
    response = readyz(down)
    assert response.status_code == 503
    assert "docker unreachable" in response.get_json()["reason"]


def test_readyz_says_which_daemon_and_api_version_it_talks_to():
    api = example_api()
    api.version_data = {"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}
    response = readyz(api)
    assert response.status_code == 200
    answer = response.get_json()
    # Negotiated: the newest version both sides speak (the SDK's newest, below 1.52).
    newest_known = docker.constants.DEFAULT_DOCKER_API_VERSION
    assert (answer["docker_engine"], answer["docker_api_version"],
            answer["docker_api_versions_accepted"]) == ("29.0.1", newest_known, "1.44-1.52")


def test_readyz_is_503_with_the_reason_when_the_daemon_is_too_old():
    api = example_api()
    api.version_data = {"Version": "19.03.15", "ApiVersion": "1.40", "MinAPIVersion": "1.12"}
    response = readyz(api)
    assert response.status_code == 503
    assert response.get_json()["reason"] == (
        "Docker Engine 19.03.15 speaks API 1.40 at most; the receiver needs 1.41 or newer")


def test_readyz_is_503_when_a_pinned_api_version_is_below_the_daemons_minimum():
    api = example_api()
    api.version_data = {"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}
    app, _ = make(api, docker_api_version="1.41")
    receiver_of(app).readiness.check()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "refuses API 1.41 (its minimum is 1.44)" in response.get_json()["reason"]


def test_readyz_never_calls_docker_in_the_request():
    app, api = make()
    assert app.test_client().get("/readyz").get_json() == {"status": "not ready",
                                                          "reason": "not checked yet"}
    assert api.calls == []


def test_metrics_are_served_in_prometheus_text_format():
    app, _ = make()
    post(app, body("resolved_migrate.json"))
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert ('swarmguard_alerts_received_total{alertname="SwarmGuardMigrate",status="resolved"}'
            ' 1.0') in text
    for name in ["swarmguard_actions_total", "swarmguard_stale_alerts_total",
                 "swarmguard_action_duration_seconds", "swarmguard_alert_age_seconds",
                 "swarmguard_last_action_timestamp_seconds"]:
        assert f"# TYPE {name}" in text


def test_apps_are_independent_so_the_factory_can_be_called_many_times():
    first, _ = make()
    second, _ = make()
    post(first, body("resolved_migrate.json"))
    assert sample(second, "swarmguard_alerts_received_total",
                  alertname="SwarmGuardMigrate", status="resolved") == 0


def test_without_a_token_the_factory_refuses_to_build_the_app(monkeypatch):
    for name in ["SWARMGUARD_TOKEN", "SWARMGUARD_TOKEN_FILE", "SWARMGUARD_CONFIG_FILE"]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError):
        create_app()


def test_the_factory_reads_the_environment_and_does_not_touch_docker_yet(monkeypatch, tmp_path):
    # A socket path that does not exist: building the app must not need Docker.
    monkeypatch.setenv("SWARMGUARD_TOKEN", TOKEN)
    monkeypatch.setenv("SWARMGUARD_DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    app = create_app()
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    assert json.loads(client.get("/readyz").data)["status"] == "not ready"


def test_readiness_is_refreshed_in_the_background_when_the_app_connects_itself():
    from receiver.cluster import connect
    from receiver.readiness import Readiness
    readiness = Readiness(connect(Settings(token=TOKEN), example_api()), interval=0.05).start()
    try:
        for _ in range(200):  # a bound on a failing test, not a speed requirement
            if readiness.current()[0]:
                break
            time.sleep(0.01)
        ready, answer = readiness.current()
        assert ready and answer["docker_engine"] == "20.10.24"
    finally:
        readiness.stop()


class EngineWithAFloor(FakeSwarmManager):
    """A Docker Engine on a unix socket, answering from `fake` (a FakeDockerAPI): GET
    /version unversioned, and reads of services, tasks, nodes and info. A version below
    the fake's MinAPIVersion is refused with 400, as Engine 29.0-29.2 refuses all below
    1.44. `seen` lists each request as sent; `refused` the refused ones."""

    READS = {"services", "tasks", "nodes", "info"}

    def __init__(self, socket_path, fake: FakeDockerAPI):
        super().__init__(socket_path)
        self.fake = fake
        self.seen: list[str] = []
        self.refused: list[str] = []

    def answer_request(self, method, target, body):
        self.seen.append(target)
        url = urlparse(target)
        if url.path == "/version":
            return 200, self.fake.version(api_version=False)
        versioned = re.fullmatch(r"/v(\d+)\.(\d+)/(\w+)", url.path)
        if method != "GET" or not versioned or versioned[3] not in self.READS:
            return super().answer_request(method, target, body)
        floor = self.fake.version_data["MinAPIVersion"]
        if (int(versioned[1]), int(versioned[2])) < tuple(map(int, floor.split("."))):
            self.refused.append(target)
            return 400, {"message": f"client version {versioned[1]}.{versioned[2]} is too "
                                    f"old. Minimum supported API version is {floor}, please "
                                    f"upgrade your client to a newer version"}
        filters = {k: json.loads(v[0]) for k, v in parse_qs(url.query).items()
                   if k == "filters"}
        return 200, getattr(self.fake, versioned[3])(**filters)


def test_the_factory_leaves_where_log_lines_go_to_the_process(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    make(log_level="DEBUG")
    assert root.handlers == []
    assert logging.getLogger("receiver").level == logging.DEBUG


def test_no_versioned_request_goes_out_before_the_api_version_is_negotiated(monkeypatch,
                                                                             tmp_path):
    # Engine 29.0-29.2 refuses every API version below 1.44: a receiver that read the
    # swarm in an assumed version while negotiating was refused from its first read.
    fake = example_api()
    fake.version_data = {"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}
    for variable in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(variable, raising=False)
    with EngineWithAFloor(tmp_path / "docker.sock", fake) as engine:
        # Every background reader starts at once: ground truth, readiness, maintenance.
        app = create_app(Settings(token=TOKEN, docker_host=engine.url,
                                  confirm_with_prometheus=False))
        state = receiver_of(app)
        try:
            for _ in range(500):  # a bound on a failing test, not a speed requirement
                read_services = any("/services?" in target for target in engine.seen)
                if read_services and state.readiness.current()[0]:
                    break
                time.sleep(0.01)
        finally:
            state.readiness.stop()
            state.maintainer.stop()
            state.ground_truth.stop()
        assert read_services and app.test_client().get("/readyz").status_code == 200
    assert engine.refused == []
    assert engine.unexpected == []
    newest_known = docker.constants.DEFAULT_DOCKER_API_VERSION
    assert engine.seen[0] == "/version"
    assert {target.split("/")[1] for target in engine.seen[1:]} <= {"version",
                                                                    f"v{newest_known}"}


def test_an_action_negotiates_the_api_version_first_and_a_daemon_it_cannot_reach_is_reported():
    app, api = make(dry_run=True, docker_attempts=2)
    assert post(app, body("firing_scale_up.json")).status_code == 202
    assert api.calls[0] == ("version", (), {"api_version": False})

    down = example_api()
    down.version_data = requests.exceptions.ConnectionError("connection refused")
    app, _ = make(down, dry_run=True, docker_attempts=2)
    assert post(app, body("firing_scale_up.json")).status_code == 202
    assert sample(app, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardScaleUp", reason="docker_error") == 1
    assert [name for name, _, _ in down.calls] == ["version", "version"]  # nothing else
