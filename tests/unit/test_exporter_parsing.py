import copy

import pytest

from exporter.parsing import (
    BadPayload,
    network_sample,
    parse_timestamp,
    task_container,
    task_containers,
)
from exporter.rates import NetworkSample
from tests.unit.fake_cadvisor import load_fixture

FIXTURE = load_fixture("docker_v1.3_two_tasks.json")
WEB_KEY = "/docker/3f6c0a2b9d5e41f7a8c2e0b6d4f1a9c37e5b2d8f0a6c4e1b9d7f3a5c2e8b0d61"


def web_info():
    return copy.deepcopy(FIXTURE[WEB_KEY])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-05-14T10:21:07Z", 1715682067.0),
        ("2024-05-14T10:21:07.5Z", 1715682067.5),
        ("2024-05-14T10:21:07.012345678Z", 1715682067.012345),
        ("2024-05-14T12:21:07.012345678+02:00", 1715682067.012345),
    ],
)
def test_go_timestamps_with_nanoseconds_and_offsets_are_read(text, expected):
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


def test_the_swarm_tasks_of_a_cadvisor_answer_are_found_and_other_containers_ignored():
    tasks = task_containers(FIXTURE)

    assert sorted(task.service for task in tasks) == ["demo_api", "demo_web"]


def test_a_task_carries_its_swarm_identity_from_the_container_labels():
    task = task_container(web_info())

    assert (task.service, task.task_id, task.node_id) == (
        "demo_web",
        "n5b7v9c1x3z5l7k9j1h3g5f7d",
        "q8zyx3w2v1u0t9s8r7p6o5n4m",
    )
    assert task.task_name == "demo_web.1.n5b7v9c1x3z5l7k9j1h3g5f7d"
    assert task.container_id == WEB_KEY.rsplit("/", 1)[1]


def test_samples_sum_every_interface_and_come_oldest_first():
    info = web_info()
    info["stats"].reverse()

    samples = task_container(info).samples

    assert [s.timestamp for s in samples] == sorted(s.timestamp for s in samples)
    # eth0 + eth1 of the newest sample.
    assert samples[-1].rx_bytes == 82_200_000 + 5_300_000
    assert samples[-1].tx_bytes == 27_400_000 + 1_100_000


def test_without_an_interface_list_the_top_level_counters_are_used():
    stat = {"timestamp": "2024-05-14T10:21:07Z", "network": {"rx_bytes": 10, "tx_bytes": 20}}

    assert network_sample(stat) == NetworkSample(1715682067.0, 10, 20)


@pytest.mark.parametrize(
    "stat",
    [
        {"network": {"rx_bytes": 1, "tx_bytes": 1}},
        {"timestamp": "not a time", "network": {"rx_bytes": 1, "tx_bytes": 1}},
        {"timestamp": "2024-05-14T10:21:07Z"},
        {"timestamp": "2024-05-14T10:21:07Z", "network": {"interfaces": [{"rx_bytes": 1}]}},
        {"timestamp": "2024-05-14T10:21:07Z", "network": {"rx_bytes": -1, "tx_bytes": 1}},
        {"timestamp": "2024-05-14T10:21:07Z", "network": {"rx_bytes": "1", "tx_bytes": 1}},
        {"timestamp": "2024-05-14T10:21:07Z", "network": {"rx_bytes": True, "tx_bytes": 1}},
        {"timestamp": "2024-05-14T10:21:07Z", "network": {"interfaces": ["eth0"]}},
    ],
    ids=["no-time", "bad-time", "no-network", "no-tx", "negative", "string", "bool", "bad-iface"],
)
def test_a_stat_that_cannot_be_read_gives_no_sample(stat):
    assert network_sample(stat) is None


@pytest.mark.parametrize(
    "label",
    ["com.docker.swarm.service.name", "com.docker.swarm.task.id", "com.docker.swarm.node.id"],
)
def test_a_container_missing_a_swarm_label_is_not_a_task(label):
    info = web_info()
    del info["spec"]["labels"][label]

    assert task_container(info) is None


@pytest.mark.parametrize("info", [None, "x", {}, {"spec": None}, {"spec": {"labels": []}}])
def test_containers_of_the_wrong_shape_are_not_tasks(info):
    assert task_container(info) is None


def test_a_task_without_stats_has_no_samples():
    info = web_info()
    del info["stats"]

    assert task_container(info).samples == ()


def test_a_list_of_containers_is_read_like_the_keyed_object():
    assert task_containers(list(FIXTURE.values())) == task_containers(FIXTURE)


@pytest.mark.parametrize("payload", [None, "containers", 42, True])
def test_an_answer_that_is_no_collection_of_containers_is_refused(payload):
    with pytest.raises(BadPayload):
        task_containers(payload)
