import re

import pytest

from receiver.config import ConfigError, Settings, load_server_settings, load_settings


def test_without_a_token_the_receiver_refuses_to_start():
    with pytest.raises(ConfigError, match="SWARMGUARD_TOKEN or SWARMGUARD_TOKEN_FILE"):
        load_settings({})


def test_a_blank_token_counts_as_none():
    with pytest.raises(ConfigError):
        load_settings({"SWARMGUARD_TOKEN": "  "})


def test_defaults_follow_the_design():
    s = load_settings({"SWARMGUARD_TOKEN": "s3cret"})
    assert s.token == "s3cret"
    assert s.dry_run is False
    assert s.docker_host is None
    assert (s.cooldown_migrate, s.cooldown_scale_up, s.cooldown_scale_down) == (60, 60, 180)
    assert (s.replicas_min, s.replicas_max) == (1, 5)
    assert s.cooldowns == {"migrate": 60, "scale_up": 60, "scale_down": 180}


def test_the_token_file_is_read_without_its_trailing_newline(tmp_path):
    secret = tmp_path / "swarmguard_token"
    secret.write_text("from-a-swarm-secret\n")
    assert load_settings({"SWARMGUARD_TOKEN_FILE": str(secret)}).token == "from-a-swarm-secret"


def test_an_unreadable_token_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read SWARMGUARD_TOKEN_FILE"):
        load_settings({"SWARMGUARD_TOKEN_FILE": str(tmp_path / "missing")})


def test_token_and_token_file_together_are_ambiguous(tmp_path):
    secret = tmp_path / "t"
    secret.write_text("a")
    with pytest.raises(ConfigError, match="only one"):
        load_settings({"SWARMGUARD_TOKEN": "b", "SWARMGUARD_TOKEN_FILE": str(secret)})


def test_the_token_never_appears_in_repr_or_the_startup_line():
    s = load_settings({"SWARMGUARD_TOKEN": "s3cret"})
    assert "s3cret" not in repr(s)
    assert "s3cret" not in s.describe()


def test_environment_variables_set_every_knob():
    s = load_settings({
        "SWARMGUARD_TOKEN": "t", "SWARMGUARD_DRY_RUN": "1",
        "SWARMGUARD_DOCKER_HOST": "unix:///run/manager-1.sock",
        "SWARMGUARD_COOLDOWN_SCALE_DOWN": "240", "SWARMGUARD_REPLICAS_MAX": "9",
        "SWARMGUARD_MAX_BODY_BYTES": "4096", "SWARMGUARD_MIGRATION_TIMEOUT": "30.5",
    })
    assert s.dry_run is True
    assert s.docker_host == "unix:///run/manager-1.sock"
    assert s.cooldown_scale_down == 240.0
    assert s.replicas_max == 9
    assert s.max_body_bytes == 4096
    assert s.migration_timeout == 30.5


def test_a_yaml_file_sets_defaults_and_the_environment_wins(tmp_path):
    path = tmp_path / "receiver.yml"
    path.write_text("cooldown_migrate: 90\nreplicas_max: 3\ndry_run: true\n")
    s = load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_CONFIG_FILE": str(path),
                       "SWARMGUARD_REPLICAS_MAX": "4"})
    assert s.cooldown_migrate == 90
    assert s.dry_run is True
    assert s.replicas_max == 4


def test_a_typo_in_the_yaml_file_is_an_error_not_a_silent_default(tmp_path):
    path = tmp_path / "receiver.yml"
    path.write_text("cooldown_migarte: 90\n")
    with pytest.raises(ConfigError, match="unknown settings cooldown_migarte"):
        load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_CONFIG_FILE": str(path)})


# What gunicorn and its worker read (receiver/gunicorn.conf.py, receiver/serving.py).
BAD_SERVER_VALUES = [
    ("SWARMGUARD_BIND", "0.0.0.0"),
    ("SWARMGUARD_BIND", "0.0.0.0:http"),
    ("SWARMGUARD_BIND", "0.0.0.0:65536"),
    ("SWARMGUARD_THREADS", "0"),
    ("SWARMGUARD_THREADS", "eight"),
    ("SWARMGUARD_SHUTDOWN_DEADLINE", "0"),
    ("SWARMGUARD_MAX_BODY_BYTES", "0"),
    ("SWARMGUARD_MAX_BODY_BYTES", "-1"),
    ("SWARMGUARD_REQUEST_READ_TIMEOUT", "0"),
    ("SWARMGUARD_REQUEST_READ_TIMEOUT", "soon"),
    ("SWARMGUARD_LOG_LEVEL", "LOUD"),
]
BAD_APP_VALUES = [
    ("SWARMGUARD_DRY_RUN", "maybe"),
    ("SWARMGUARD_REPLICAS_MAX", "many"),
    ("SWARMGUARD_REPLICAS_MIN", "0"),
    ("SWARMGUARD_COOLDOWN_MIGRATE", "-1"),
    ("SWARMGUARD_WORKERS", "0"),
    ("SWARMGUARD_FUTILE_WINDOW", "-1"),
    *[("SWARMGUARD_MAX_SCALE_UP_STEP", v) for v in ["0", "-2", "two", "1.5"]],
]


@pytest.mark.parametrize("load, name, value", [
    *[(load_settings, n, v) for n, v in BAD_SERVER_VALUES + BAD_APP_VALUES],
    *[(load_server_settings, n, v) for n, v in BAD_SERVER_VALUES],
])
def test_bad_values_name_the_variable(load, name, value):
    with pytest.raises(ConfigError, match=f"^{name}='{value}'"):
        load({"SWARMGUARD_TOKEN": "t", name: value})


@pytest.mark.parametrize("line, named", [
    ("workers: 0", "workers=0"),
    ("prometheus_url: http://prometheus:9090,prometheus-node:9090", "prometheus_url="),
    ("max_body_bytes: 0", "max_body_bytes=0"),
])
def test_a_bad_value_in_the_yaml_file_names_the_file_and_the_key(tmp_path, line, named):
    path = tmp_path / "receiver.yml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(f'{path}: {named}')}"):
        load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_CONFIG_FILE": str(path)})


def test_gunicorn_s_settings_need_no_token_and_default_to_the_bundle_s():
    server = load_server_settings({})
    assert (server.bind, server.threads, server.max_body_bytes, server.request_read_timeout,
            server.shutdown_deadline, server.log_level) == \
        ("0.0.0.0:8000", 8, 1024 * 1024, 5.0, 20.0, "INFO")


def test_gunicorn_s_settings_come_from_the_yaml_file_beneath_the_environment(tmp_path):
    path = tmp_path / "receiver.yml"
    path.write_text("max_body_bytes: 4096\nrequest_read_timeout: 7\nthreads: 2\n")
    environ = {"SWARMGUARD_CONFIG_FILE": str(path), "SWARMGUARD_THREADS": "3",
               "SWARMGUARD_BIND": "unix:/run/receiver.sock"}
    server = load_server_settings(environ)
    assert (server.max_body_bytes, server.request_read_timeout, server.threads,
            server.bind) == (4096, 7.0, 3, "unix:/run/receiver.sock")
    # The app reads the very same values.
    app = load_settings({**environ, "SWARMGUARD_TOKEN": "t"})
    assert (app.max_body_bytes, app.request_read_timeout, app.threads) == (4096, 7.0, 3)


def test_replicas_min_above_replicas_max_names_both_variables():
    with pytest.raises(ConfigError, match="SWARMGUARD_REPLICAS_MIN, SWARMGUARD_REPLICAS_MAX"):
        load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_REPLICAS_MIN": "6"})


def test_the_log_level_is_read_regardless_of_case():
    settings = load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_LOG_LEVEL": "debug"})
    assert settings.log_level == "DEBUG"


def test_settings_are_frozen():
    s = Settings(token="t")
    with pytest.raises(Exception):
        s.dry_run = True  # type: ignore[misc]


@pytest.mark.parametrize("name, default, settable", [
    # Ten migrate cooldowns; 0 never calls a move futile.
    ("futile_window", 600, ["300", "0"]),
    # Kubernetes HPA's +4 pods per period; 1 restores single steps.
    ("max_scale_up_step", 4, ["1", "10"]),
])
def test_a_setting_has_its_default_and_takes_every_value_it_allows(name, default, settable):
    assert getattr(load_settings({"SWARMGUARD_TOKEN": "t"}), name) == default
    for value in settable:
        settings = load_settings({"SWARMGUARD_TOKEN": "t", f"SWARMGUARD_{name.upper()}": value})
        assert getattr(settings, name) == float(value)


def test_the_scale_up_step_can_be_set_in_the_yaml_file(tmp_path):
    config = tmp_path / "swarmguard.yml"
    config.write_text("max_scale_up_step: 2\n")
    settings = load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_CONFIG_FILE": str(config)})
    assert settings.max_scale_up_step == 2


def test_the_prometheus_asked_is_the_bundle_s_by_default_and_several_are_comma_separated():
    assert load_settings({"SWARMGUARD_TOKEN": "t"}).prometheus_urls == ("http://prometheus:9090",)
    settings = load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_PROMETHEUS_URL":
                              "http://tasks.prometheus-node:9090, https://central:9443/prom"})
    assert settings.prometheus_urls == ("http://tasks.prometheus-node:9090",
                                        "https://central:9443/prom")


@pytest.mark.parametrize("value, why", [
    ("prometheus:9090", "'prometheus:9090' is not an http(s) URL"),
    ("ftp://prometheus:9090", "'ftp://prometheus:9090' is not an http(s) URL"),
    ("http://:9090", "is not an http(s) URL"),
    ("http://prometheus:9090/?q=1", "is not an http(s) URL"),
    ("http://prometheus:9090/#top", "is not an http(s) URL"),
    ("http://prometheus:90900", "'http://prometheus:90900' has a bad port"),
    ("http://a:9090,,http://b:9090", "an entry is empty"),
    ("http://a:9090,", "an entry is empty"),
    ("http://swarmguard:pw@prometheus:9090",
     "holds credentials: the password goes in SWARMGUARD_PROMETHEUS_PASSWORD_FILE"),
])
def test_each_prometheus_url_must_be_an_http_url_or_the_receiver_names_the_variable(value, why):
    with pytest.raises(ConfigError, match=re.escape(f"SWARMGUARD_PROMETHEUS_URL='{value}': ")
                       + f".*{re.escape(why)}"):
        load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_PROMETHEUS_URL": value})


def test_prometheus_external_labels_are_none_by_default_and_named_comma_separated():
    assert load_settings({"SWARMGUARD_TOKEN": "t"}).prometheus_external_label_names == frozenset()
    settings = load_settings({"SWARMGUARD_TOKEN": "t",
                              "SWARMGUARD_PROMETHEUS_EXTERNAL_LABELS": "node_prometheus, cluster"})
    assert settings.prometheus_external_label_names == {"node_prometheus", "cluster"}


@pytest.mark.parametrize("value, why", [
    ("cluster,,replica", "'' is not a label name"),
    ("node-prometheus", "'node-prometheus' is not a label name"),
    ("1cluster", "'1cluster' is not a label name"),
])
def test_an_external_label_that_is_not_a_label_name_stops_the_receiver(value, why):
    with pytest.raises(ConfigError,
                       match=f"^SWARMGUARD_PROMETHEUS_EXTERNAL_LABELS='{value}': {why}$"):
        load_settings({"SWARMGUARD_TOKEN": "t", "SWARMGUARD_PROMETHEUS_EXTERNAL_LABELS": value})
