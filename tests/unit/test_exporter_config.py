import pytest

from exporter.config import ExporterConfig, parse_config


def test_without_flags_or_environment_the_defaults_apply():
    assert parse_config([], {}) == ExporterConfig()


def test_the_listen_port_defaults_to_9101():
    assert parse_config([], {}).listen_port == 9101


def test_environment_variables_set_the_defaults():
    environ = {
        "SWARMGUARD_EXPORTER_DOCKER_URL": "unix:///run/worker-1.sock",
        "SWARMGUARD_EXPORTER_LISTEN_PORT": "9200",
        "SWARMGUARD_EXPORTER_CAPACITY_MBPS": "100",
        "SWARMGUARD_EXPORTER_INTERFACE": "veth-w1",
        "SWARMGUARD_EXPORTER_DOCKER_TIMEOUT_SECONDS": "0.25",
        "SWARMGUARD_EXPORTER_PROC_ROOT": "/host/proc",
        "SWARMGUARD_EXPORTER_LOG_LEVEL": "debug",
    }

    config = parse_config([], environ)

    assert config == ExporterConfig(
        docker_url="unix:///run/worker-1.sock",
        listen_port=9200,
        capacity_mbps=100.0,
        interface="veth-w1",
        docker_timeout_seconds=0.25,
        proc_root="/host/proc",
        log_level="DEBUG",
    )


def test_flags_win_over_environment_variables():
    environ = {"SWARMGUARD_EXPORTER_CAPACITY_MBPS": "100"}

    assert parse_config(["--capacity-mbps", "1000"], environ).capacity_mbps == 1000.0


def test_an_empty_capacity_variable_means_read_the_link_speed():
    assert parse_config([], {"SWARMGUARD_EXPORTER_CAPACITY_MBPS": ""}).capacity_mbps is None


@pytest.mark.parametrize(
    "environ",
    [
        {"SWARMGUARD_EXPORTER_LISTEN_PORT": "http"},
        {"SWARMGUARD_EXPORTER_LISTEN_PORT": "70000"},
        {"SWARMGUARD_EXPORTER_CAPACITY_MBPS": "-5"},
        {"SWARMGUARD_EXPORTER_DOCKER_TIMEOUT_SECONDS": "0"},
        {"SWARMGUARD_EXPORTER_RESYNC_SECONDS": "-1"},
        {"SWARMGUARD_EXPORTER_OPT_IN_INTERVAL_SECONDS": "0"},
    ],
)
def test_a_bad_environment_value_stops_the_exporter_with_status_2(environ, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_config([], environ)

    assert stopped.value.code == 2
    [(name, value)] = environ.items()
    assert f"{name}={value!r}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--listen-port", "http"], ["--resync-seconds", "0"], ["--log-level", "LOUD"]]
)
def test_a_bad_flag_stops_the_exporter_with_status_2_and_names_the_flag(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_config(argv, {})

    assert stopped.value.code == 2
    assert f"{argv[0]}={argv[1]!r}" in capsys.readouterr().err


def test_an_unknown_flag_stops_the_exporter_with_status_2():
    with pytest.raises(SystemExit) as stopped:
        parse_config(["--listen-prot", "1"], {})

    assert stopped.value.code == 2


def test_the_opted_in_services_are_read_every_5_seconds_unless_set_otherwise():
    assert parse_config([], {}).opt_in_interval_seconds == 5.0
    assert parse_config([], {"SWARMGUARD_EXPORTER_OPT_IN_INTERVAL_SECONDS": "2.5"}).opt_in_interval_seconds == 2.5
    assert parse_config(["--opt-in-interval-seconds", "10"], {}).opt_in_interval_seconds == 10.0


def test_a_flag_left_out_lets_the_environment_variable_through():
    environ = {"SWARMGUARD_EXPORTER_RESYNC_SECONDS": "5"}

    config = parse_config(["--listen-port", "9200"], environ)

    assert (config.listen_port, config.resync_seconds) == (9200, 5.0)


def test_the_configuration_cannot_be_changed_after_start():
    config = ExporterConfig()

    with pytest.raises(AttributeError):
        config.listen_port = 1  # type: ignore[misc]
