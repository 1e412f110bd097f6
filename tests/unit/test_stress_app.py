"""The stress app's HTTP surface: answers, attribution headers, 400s that start nothing."""

import socket

import pytest

from stress.app import create_app
from stress.config import StressConfig
from stress.identity import Identity
from tests.unit.stress_support import RefusingController, config_for

ATTRIBUTION = {
    "X-Swarm-Task": "demo_stress.1.abc",
    "X-Swarm-Node": "worker-1",
    "X-Swarm-Service": "demo_stress",
    "X-Hostname": "c0ffee",
}


@pytest.fixture
def client(tmp_path):
    return create_app(config_for(tmp_path), RefusingController()).test_client()


def test_health_answers_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_root_says_hello_and_who_answered(client):
    body = client.get("/").json
    assert body["task"] == "demo_stress.1.abc"
    assert body["node"] == "worker-1"


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/health", 200),
        ("GET", "/", 200),
        ("GET", "/stress/status", 200),
        ("POST", "/stress/cpu?target=abc", 400),
        ("GET", "/no/such/page", 404),
        ("DELETE", "/stress/cpu", 405),
    ],
)
def test_every_response_names_the_task_node_service_and_host(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    for header, value in ATTRIBUTION.items():
        assert response.headers[header] == value
    assert response.headers["X-Swarm-Task-Id"] == "abc"


def test_errors_are_json_with_a_reason(client):
    response = client.get("/no/such/page")
    assert response.is_json
    assert response.json["error"] == "Not Found"


@pytest.mark.parametrize(
    "path, parameter, words",
    [
        ("/stress/cpu?target=abc", "target", "must be a number"),
        ("/stress/cpu?target=120", "target", "at most 100"),
        ("/stress/cpu?target=50&duration=9999", "duration", "at most 600"),
        ("/stress/cpu?target=50&duration=5&ramp=6", "ramp", "must not exceed duration"),
        ("/stress/memory?mb=-1", "mb", "must be > 0"),
        # The fixture container has 512 MB: 512 - 64 MB headroom = 448 MB at most.
        ("/stress/memory?mb=449", "mb", "at most 448 MB (cgroup limit 512 MB"),
        ("/stress/network?mbps=101", "mbps", "at most 100 Mbit/s"),
        ("/stress/network?mbps=1&target=nohost", "target", "host:port"),
        ("/stress/combined?duration=5", None, "at least one of"),
        ("/stress/combined?cpu=50&memory=abc", "memory", "must be a number"),
        ("/stress/stop?kind=disk", "kind", "must be one of"),
        ("/stress/cpu?target=50&bogus=1", "bogus", "unknown parameter"),
    ],
)
def test_bad_parameters_get_400_with_the_reason_and_start_nothing(client, path, parameter, words):
    for method in ("GET", "POST"):
        response = client.open(path, method=method)
        assert response.status_code == 400, response.json
        assert response.json["parameter"] == parameter
        assert words in response.json["reason"]


def test_a_sink_that_does_not_resolve_is_a_400(client, monkeypatch):
    # No real DNS look-up from a unit test: the resolver says no.
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    response = client.get("/stress/network?mbps=1&target=sink.lab:9")
    assert response.status_code == 400
    assert "does not resolve" in response.json["reason"]


def test_json_body_parameters_are_validated_too(client):
    response = client.post("/stress/cpu", json={"target": 500})
    assert response.status_code == 400
    assert "at most 100" in response.json["reason"]


def test_a_json_body_that_is_not_an_object_is_a_400(client):
    response = client.post("/stress/cpu", json=[50])
    assert response.status_code == 400
    assert "object" in response.json["reason"]


def test_status_reports_the_allowance_from_the_cgroup_and_the_caps(tmp_path):
    config = config_for(tmp_path, cpu_max="50000 100000", memory_mb=256)
    body = create_app(config, RefusingController()).test_client().get("/stress/status").json
    assert body["running"] == {}
    assert body["allowance"]["cpu_cores"] == 0.5
    assert body["allowance"]["cpu_source"] == "cgroup quota"
    assert body["allowance"]["memory_mb"] == 256
    assert body["allowance"]["memory_stress_max_mb"] == 192
    assert body["limits"]["max_duration_s"] == 600


def test_identity_falls_back_to_the_hostname_outside_swarm(monkeypatch):
    monkeypatch.setattr("stress.identity._hostname", lambda: "container-7")
    headers = Identity.from_env({}).headers()
    assert headers["X-Swarm-Task"] == "container-7"
    assert headers["X-Swarm-Node"] == "container-7"
    assert headers["X-Hostname"] == "container-7"
    assert headers["X-Swarm-Service"] == "unknown"
    assert "X-Swarm-Task-Id" not in headers


def test_identity_comes_from_the_swarm_template_variables():
    headers = Identity.from_env(
        {"SWARM_TASK_NAME": "web.2.xyz", "SWARM_NODE_HOSTNAME": "worker-2",
         "SWARM_SERVICE_NAME": "web", "SWARM_TASK_ID": "xyz", "SWARM_NODE_ID": "n2"}
    ).headers()
    assert headers["X-Swarm-Task"] == "web.2.xyz"
    assert headers["X-Swarm-Node"] == "worker-2"
    assert headers["X-Swarm-Service"] == "web"
    assert headers["X-Swarm-Task-Id"] == "xyz"
    assert headers["X-Swarm-Node-Id"] == "n2"


def test_config_reads_caps_and_sink_from_the_environment():
    config = StressConfig.from_env(
        {"STRESS_MAX_DURATION_S": "120", "STRESS_MAX_MEMORY_MB": "300",
         "STRESS_NETWORK_SINK": "10.0.0.9:9", "STRESS_CGROUP_ROOT": "/x"}
    )
    assert config.limits.max_duration_s == 120
    assert config.limits.max_memory_mb == 300
    assert config.network_sink == "10.0.0.9:9"
    assert config.cgroup_root == "/x"


@pytest.mark.parametrize(
    "env",
    [{"STRESS_MAX_DURATION_S": "soon"}, {"STRESS_MAX_NETWORK_MBPS": "-1"},
     {"STRESS_MAX_DURATION_S": "30", "STRESS_DEFAULT_DURATION_S": "60"}],
)
def test_a_bad_environment_refuses_to_start_naming_the_variable(env):
    # ValueError: what the app's callers caught before ConfigError existed.
    with pytest.raises(ValueError, match="|".join(env)):
        StressConfig.from_env(env)


def test_the_start_method_keeps_its_public_name():
    assert StressConfig.from_env({"STRESS_MP_START_METHOD": "spawn"}).start_method == "spawn"


def test_settings_that_are_not_a_deployment_s_are_not_read_from_the_environment():
    assert StressConfig.from_env({"STRESS_MAX_CPU_PERCENT": "500",
                                  "STRESS_ROUTE_PATH": "/x"}) == StressConfig.from_env({})


class RecordingController(RefusingController):
    def __init__(self):
        self.started = []

    def start(self, plan):
        self.started.append(plan)
        return plan.description


def test_an_app_told_to_burn_cpu_at_start_does_so_for_that_long_and_still_answers(tmp_path):
    controller = RecordingController()
    app = create_app(config_for(tmp_path, startup_cpu_s=10.0), controller)
    [plan] = controller.started
    assert (plan.kind, plan.duration_s) == ("cpu", 10.0)
    assert plan.description["target_percent"] == 100
    assert app.test_client().get("/health").status_code == 200


def test_by_default_the_app_starts_without_burning_anything(tmp_path):
    create_app(config_for(tmp_path), RefusingController())  # any start fails the test


def test_the_start_up_burn_is_read_from_the_environment_and_must_not_be_negative():
    assert StressConfig.from_env({"STRESS_STARTUP_CPU_SECONDS": "10"}).startup_cpu_s == 10.0
    with pytest.raises(ValueError, match="STRESS_STARTUP_CPU_SECONDS"):
        StressConfig.from_env({"STRESS_STARTUP_CPU_SECONDS": "-1"})


def test_the_start_up_delay_is_read_from_the_environment_and_must_not_be_negative():
    assert StressConfig.from_env({}).startup_delay_s == 0.0
    assert StressConfig.from_env({"STRESS_STARTUP_DELAY_SECONDS": "8"}).startup_delay_s == 8.0
    with pytest.raises(ValueError, match="STRESS_STARTUP_DELAY_SECONDS"):
        StressConfig.from_env({"STRESS_STARTUP_DELAY_SECONDS": "-1"})
