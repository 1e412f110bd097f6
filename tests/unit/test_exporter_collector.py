import copy
import json
import logging

import pytest
from prometheus_client import CollectorRegistry

from exporter.collector import NetworkCollector
from exporter.config import ExporterConfig
from tests.unit.fake_cadvisor import Answer, FakeCadvisor, closed_port_url, load_fixture, serve

FIXTURE = "docker_v1.3_two_tasks.json"
# Half a second after the newest sample of the fixture (2024-05-14T10:21:07.012Z).
NOW = 1715682067.5
WEB = {
    "service": "demo_web",
    "task_id": "n5b7v9c1x3z5l7k9j1h3g5f7d",
    "node_id": "q8zyx3w2v1u0t9s8r7p6o5n4m",
    "task_name": "demo_web.1.n5b7v9c1x3z5l7k9j1h3g5f7d",
    "container_id": "3f6c0a2b9d5e41f7a8c2e0b6d4f1a9c37e5b2d8f0a6c4e1b9d7f3a5c2e8b0d61",
}
API = {
    "service": "demo_api",
    "task_id": "r4e6w8q0t2y4u6i8o0p2a4s6d",
    "node_id": "q8zyx3w2v1u0t9s8r7p6o5n4m",
    "task_name": "demo_api.2.r4e6w8q0t2y4u6i8o0p2a4s6d",
    "container_id": "9a1e7c3b5d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a37",
}


@pytest.fixture
def cadvisor():
    fake = FakeCadvisor()
    fake.answer_json(load_fixture(FIXTURE))
    server = serve(fake)
    yield fake
    server.shutdown()
    server.server_close()


def exporter_for(url, tmp_path, clock=lambda: NOW, **settings):
    """A registry holding only the collector, as `python -m exporter` serves it."""
    settings.setdefault("capacity_mbps", 100.0)
    config = ExporterConfig(cadvisor_url=url, sysfs_root=str(tmp_path), **settings)
    registry = CollectorRegistry()
    registry.register(NetworkCollector(config, clock=clock))
    return registry


class _Frozen:
    def __init__(self, metrics):
        self._metrics = metrics

    def collect(self):
        return self._metrics


def scrape(registry):
    """One scrape, frozen, to read with get_sample_value. (On the live registry every
    get_sample_value is a new scrape, and each scrape counts its own errors.)"""
    frozen = CollectorRegistry()
    frozen.register(_Frozen(list(registry.collect())))
    return frozen


def percent(metrics, task):
    return metrics.get_sample_value("swarmguard_container_network_percent", task)


def error_count(metrics, reason):
    return metrics.get_sample_value("swarmguard_exporter_scrape_errors_total", {"reason": reason})


def task_values(metrics):
    return [
        sample
        for metric in metrics.collect()
        if metric.name.startswith("swarmguard_container_")
        for sample in metric.samples
    ]


def test_each_swarm_task_gets_its_receive_plus_transmit_rate_in_percent_of_capacity(
    cadvisor, tmp_path
):
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    # demo_web: 2,000,000 bytes over 1.6 s on two interfaces = 10 Mbit/s of 100.
    assert percent(metrics, WEB) == pytest.approx(10.0)
    # demo_api: 6,250,000 bytes over 1.0 s (timestamps with a +02:00 offset) = 50 Mbit/s.
    assert percent(metrics, API) == pytest.approx(50.0)


def test_the_bit_rate_itself_is_published_too(cadvisor, tmp_path):
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    rate = metrics.get_sample_value("swarmguard_container_network_bits_per_second", WEB)

    assert rate == pytest.approx(10_000_000)


def test_every_interface_of_the_container_counts_not_only_the_first(cadvisor, tmp_path):
    # cAdvisor copies the first interface's counters to the top of `network`; they
    # alone would give 8 Mbit/s for demo_web.
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    assert percent(metrics, WEB) == pytest.approx(10.0)


def test_containers_that_are_not_swarm_tasks_are_left_out(cadvisor, tmp_path):
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    services = {sample.labels["service"] for sample in task_values(metrics)}

    assert services == {"demo_web", "demo_api"}
    assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": "measured"}) == 2


def test_the_capacity_that_100_percent_stands_for_is_published(cadvisor, tmp_path):
    metrics = scrape(exporter_for(cadvisor.url, tmp_path, capacity_mbps=1000.0, interface="eth0"))

    capacity = metrics.get_sample_value(
        "swarmguard_interface_capacity_bits_per_second",
        {"interface": "eth0", "source": "configured"},
    )

    assert capacity == 1e9
    assert percent(metrics, WEB) == pytest.approx(1.0)


def test_without_a_configured_capacity_the_link_speed_from_sysfs_is_used(cadvisor, tmp_path):
    speed = tmp_path / "class" / "net" / "eth0" / "speed"
    speed.parent.mkdir(parents=True)
    speed.write_text("1000\n")
    metrics = scrape(exporter_for(cadvisor.url, tmp_path, capacity_mbps=None, interface="eth0"))

    assert percent(metrics, API) == pytest.approx(5.0)
    assert metrics.get_sample_value(
        "swarmguard_interface_capacity_bits_per_second", {"interface": "eth0", "source": "sysfs"}
    ) == 1e9


def test_an_unknown_capacity_publishes_no_percentages_and_counts_an_error(cadvisor, tmp_path):
    metrics = scrape(exporter_for(cadvisor.url, tmp_path, capacity_mbps=None, interface="eth0"))

    assert percent(metrics, WEB) is None
    assert error_count(metrics, "capacity_unknown") == 1
    # The bit rate does not need the capacity, and cAdvisor was read fine.
    assert metrics.get_sample_value("swarmguard_container_network_bits_per_second", WEB) > 0
    assert metrics.get_sample_value("swarmguard_exporter_cadvisor_up") == 1


def test_cadvisor_is_asked_once_per_scrape_for_its_two_latest_samples(cadvisor, tmp_path):
    scrape(exporter_for(cadvisor.url, tmp_path))

    [request] = cadvisor.requests
    assert (request.method, request.path) == ("POST", "/api/v1.3/docker")
    assert json.loads(request.body) == {"num_stats": 2}


def test_registering_the_collector_does_not_call_cadvisor(cadvisor, tmp_path):
    exporter_for(cadvisor.url, tmp_path)

    assert cadvisor.requests == []


def test_a_healthy_scrape_reports_cadvisor_up_and_no_errors(cadvisor, tmp_path):
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    assert metrics.get_sample_value("swarmguard_exporter_cadvisor_up") == 1
    for reason in ("unreachable", "timeout", "bad_response", "capacity_unknown"):
        assert error_count(metrics, reason) == 0
    assert metrics.get_sample_value("swarmguard_exporter_scrape_duration_seconds") >= 0


def test_an_unreachable_cadvisor_publishes_no_task_values_and_says_so(tmp_path):
    metrics = scrape(exporter_for(closed_port_url(), tmp_path))

    assert task_values(metrics) == []
    assert metrics.get_sample_value("swarmguard_exporter_cadvisor_up") == 0
    assert error_count(metrics, "unreachable") == 1


def test_a_slow_cadvisor_times_out_and_publishes_no_task_values(cadvisor, tmp_path):
    cadvisor.answer = Answer(body=json.dumps(load_fixture(FIXTURE)).encode(), delay_seconds=1.0)
    metrics = scrape(exporter_for(cadvisor.url, tmp_path, timeout_seconds=0.2))

    assert task_values(metrics) == []
    assert metrics.get_sample_value("swarmguard_exporter_cadvisor_up") == 0
    assert error_count(metrics, "timeout") == 1


@pytest.mark.parametrize(
    "answer",
    [
        Answer(status=200, body=b"<html>not json</html>"),
        Answer(status=200, body=b'"a string"'),
        Answer(status=200, body=b"42"),
        Answer(status=500, body=b"failed to get all Docker containers"),
    ],
    ids=["not-json", "json-string", "json-number", "http-500"],
)
def test_garbage_from_cadvisor_publishes_no_task_values_and_counts_a_bad_response(
    cadvisor, tmp_path, answer
):
    cadvisor.answer = answer
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    assert task_values(metrics) == []
    assert metrics.get_sample_value("swarmguard_exporter_cadvisor_up") == 0
    assert error_count(metrics, "bad_response") == 1


def test_errors_add_up_across_scrapes_and_recovery_shows_in_cadvisor_up(cadvisor, tmp_path):
    fixture = load_fixture(FIXTURE)
    cadvisor.answer = Answer(status=500, body=b"docker is down")
    exporter = exporter_for(cadvisor.url, tmp_path)

    scrape(exporter)
    assert error_count(scrape(exporter), "bad_response") == 2
    cadvisor.answer_json(fixture)
    recovered = scrape(exporter)

    assert recovered.get_sample_value("swarmguard_exporter_cadvisor_up") == 1
    assert error_count(recovered, "bad_response") == 2


def test_a_malformed_container_is_skipped_and_the_others_are_published(cadvisor, tmp_path):
    payload = copy.deepcopy(load_fixture(FIXTURE))
    web = next(c for c in payload.values() if c["id"] == WEB["container_id"])
    web["stats"] = [{"timestamp": "yesterday", "network": "down"}, None, 7]
    cadvisor.answer_json(payload)
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    assert percent(metrics, WEB) is None
    assert percent(metrics, API) == pytest.approx(50.0)
    assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": "skipped"}) == 1


def test_a_task_with_a_single_sample_is_skipped(cadvisor, tmp_path):
    payload = copy.deepcopy(load_fixture(FIXTURE))
    api = next(c for c in payload.values() if c["id"] == API["container_id"])
    api["stats"] = api["stats"][-1:]
    cadvisor.answer_json(payload)
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    assert percent(metrics, API) is None
    assert percent(metrics, WEB) == pytest.approx(10.0)


def test_samples_older_than_the_maximum_age_publish_nothing(cadvisor, tmp_path):
    metrics = scrape(
        exporter_for(cadvisor.url, tmp_path, clock=lambda: NOW + 30, max_sample_age_seconds=10.0)
    )

    assert task_values(metrics) == []
    assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": "skipped"}) == 2
    # cAdvisor answered: it is up, it just has nothing fresh to say.
    assert metrics.get_sample_value("swarmguard_exporter_cadvisor_up") == 1


def test_a_counter_that_went_backwards_publishes_no_value(cadvisor, tmp_path):
    payload = copy.deepcopy(load_fixture(FIXTURE))
    api = next(c for c in payload.values() if c["id"] == API["container_id"])
    api["stats"][-1]["network"]["interfaces"][0]["rx_bytes"] = 0
    cadvisor.answer_json(payload)
    metrics = scrape(exporter_for(cadvisor.url, tmp_path))

    assert percent(metrics, API) is None


def test_each_scrape_reads_fresh_values(cadvisor, tmp_path):
    exporter = exporter_for(cadvisor.url, tmp_path)
    assert percent(scrape(exporter), API) == pytest.approx(50.0)

    payload = copy.deepcopy(load_fixture(FIXTURE))
    api = next(c for c in payload.values() if c["id"] == API["container_id"])
    api["stats"][-1]["network"]["interfaces"][0]["tx_bytes"] -= 1_250_000  # 40 Mbit/s now
    cadvisor.answer_json(payload)

    assert percent(scrape(exporter), API) == pytest.approx(40.0)


def test_losing_and_regaining_cadvisor_is_logged_once_each(cadvisor, tmp_path, caplog):
    fixture = load_fixture(FIXTURE)
    exporter = exporter_for(cadvisor.url, tmp_path)
    scrape(exporter)
    caplog.set_level(logging.INFO, logger="exporter")

    cadvisor.answer = Answer(status=500, body=b"docker is down")
    for _ in range(3):
        scrape(exporter)
    cadvisor.answer_json(fixture)
    for _ in range(2):
        scrape(exporter)

    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "HTTP 500" in m]) == 1
    assert len([m for m in messages if "answers again" in m]) == 1
