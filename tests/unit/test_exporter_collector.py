"""What one scrape of the exporter publishes, read from a fake host's cgroup and /proc."""
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cgroups import locate
from exporter.collector import Node, TaskCollector, read_node
from exporter.config import ExporterConfig
from exporter.inventory import DockerUnavailable, TaskContainer
from tests.unit.exporter_fakes import Clock
from tests.unit.exporter_host import FakeHost

WEB = {"service": "web", "task_id": "t1", "node_id": "n1"}
API = {"service": "api", "task_id": "t2", "node_id": "n1"}
DB = {"service": "db", "task_id": "t3", "node_id": "n1"}
DB_CONTAINER = "3f6c0a2b9d5e41f7a8c2e0b6d4f1a9c37e5b2d8f0a6c4e1b9d7f3a5c2e8b0d61"  # a real-length ID
CONTAINERS = {"t1": ("c1", "web.1.t1"), "t2": ("c2", "api.1.t2"), "t3": (DB_CONTAINER, "db.1.t3")}
NODE = Node(cores=2.0, memory_bytes=4 * 2**30)


class FakeInventory:
    """The node's task list as the collector asks for it."""

    def __init__(self, tasks):
        self.task_list = list(tasks)
        self.forgotten = []
        self.unavailable = None
        self.unlocated = 0

    def tasks(self):
        if self.unavailable:
            raise DockerUnavailable(self.unavailable)
        return list(self.task_list)

    def forget(self, container_id):
        self.forgotten.append(container_id)

    def close(self):
        pass


def task(host, labels, pid, *, cpu_limit=None, memory_limit=None, started_at=1_699_999_000.0):
    container_id, task_name = CONTAINERS[labels["task_id"]]
    files = locate(container_id, pid, proc_root=str(host.proc), cgroup_root=str(host.cgroup))
    assert files is not None
    return TaskContainer(**labels, container_id=container_id, task_name=task_name, pid=pid, started_at=started_at, cpu_limit_cores=cpu_limit,
                         memory_limit_bytes=memory_limit, cgroup=files)


@pytest.fixture
def host(tmp_path):
    host = FakeHost(tmp_path, version=2)
    host.container(100, "/docker/c1", cpu_seconds=40.0, usage=200 * 2**20, inactive_file=72 * 2**20,
                   net={"lo": (9, 9), "eth0": (1_000, 2_000)})
    host.container(200, "/docker/c2", cpu_seconds=5.0, usage=2**30, inactive_file=0,
                   net={"eth0": (0, 0), "eth1": (0, 0)})
    return host


@pytest.fixture
def clock():
    return Clock(1_700_000_000.0)


def collector_for(host, inventory, clock, **settings):
    settings.setdefault("capacity_mbps", 100.0)
    config = ExporterConfig(proc_root=str(host.proc), cgroup_root=str(host.cgroup),
                            sysfs_root=str(host.root / "sys"), **settings)
    return TaskCollector(config, inventory, NODE, clock=clock)


class Scraped:
    """One scrape's exposition text, parsed as Prometheus reads it."""

    def __init__(self, text):
        self.text = text
        self.values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get_sample_value(self, name, labels=None):
        return self.values.get((name, frozenset((labels or {}).items())))


def scrape(collector):
    """What GET /metrics serves: the per-task series, then the registry's."""
    registry = CollectorRegistry()
    registry.register(collector)
    return Scraped(collector.render_tasks() + generate_latest(registry).decode())


@pytest.fixture
def two_tasks(host):
    return FakeInventory([task(host, WEB, 100, cpu_limit=0.5, memory_limit=256 * 2**20), task(host, API, 200)])


def test_cpu_time_is_published_as_a_counter_with_the_task_labels(host, two_tasks, clock):
    metrics = scrape(collector_for(host, two_tasks, clock))

    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", API) == pytest.approx(5.0)


def test_what_100_percent_means_is_the_tasks_limit_or_else_the_nodes_size(host, two_tasks, clock):
    metrics = scrape(collector_for(host, two_tasks, clock))

    assert metrics.get_sample_value("swarmguard_task_cpu_limit_cores", WEB) == 0.5
    assert metrics.get_sample_value("swarmguard_task_memory_limit_bytes", WEB) == 256 * 2**20
    assert metrics.get_sample_value("swarmguard_task_cpu_limit_cores", API) == 2.0
    assert metrics.get_sample_value("swarmguard_task_memory_limit_bytes", API) == 4 * 2**30


def test_the_working_set_leaves_out_inactive_file_pages(host, two_tasks, clock):
    metrics = scrape(collector_for(host, two_tasks, clock))

    assert metrics.get_sample_value("swarmguard_task_memory_working_set_bytes", WEB) == 128 * 2**20


def test_the_start_time_is_published_for_start_up_grace(host, two_tasks, clock):
    metrics = scrape(collector_for(host, two_tasks, clock))

    assert metrics.get_sample_value("swarmguard_task_start_time_seconds", WEB) == 1_699_999_000.0


def test_the_network_percentage_is_the_rate_since_the_previous_scrape(host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock)
    first = scrape(collector)
    # 0.5 s later web has received 2,500,000 and sent 625,000 more bytes: 50 Mbit/s of 100.
    clock.now += 0.5
    host.set_net(100, {"lo": (10**9, 10**9), "eth0": (1_000 + 2_500_000, 2_000 + 625_000)})
    second = scrape(collector)

    assert first.get_sample_value("swarmguard_container_network_percent", WEB) is None  # no rate yet
    assert second.get_sample_value("swarmguard_container_network_percent", WEB) == pytest.approx(50.0)
    assert second.get_sample_value("swarmguard_container_network_percent", API) == 0.0


def test_a_second_scrape_too_soon_after_the_first_repeats_the_last_rate(host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock)
    scrape(collector)
    clock.now += 1.0
    host.set_net(100, {"eth0": (1_000 + 1_250_000, 2_000)})  # 10 Mbit/s over 1 s
    scrape(collector)
    clock.now += 0.01
    host.set_net(100, {"eth0": (1_000 + 2_500_000, 2_000)})  # a burst over 10 ms

    assert scrape(collector).get_sample_value("swarmguard_container_network_percent", WEB) == pytest.approx(10.0)


def test_a_counter_that_went_backwards_publishes_no_rate(host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock)
    scrape(collector)
    clock.now += 0.5
    host.set_net(100, {"eth0": (10, 10)})

    assert scrape(collector).get_sample_value("swarmguard_container_network_percent", WEB) is None


def test_a_task_that_stopped_since_discovery_is_skipped_counted_and_forgotten(host, two_tasks, clock):
    for name in ("cpu.stat", "memory.current", "memory.stat"):
        (host.cgroup / "docker" / "c2" / name).unlink()

    metrics = scrape(collector_for(host, two_tasks, clock))

    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", API) is None
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": "gone"}) == 1
    assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": "measured"}) == 1
    assert two_tasks.forgotten == ["c2"]


def test_without_docker_no_task_is_published_and_the_exporter_says_why(host, two_tasks, clock):
    two_tasks.unavailable = "cannot connect to Docker: no such socket"

    metrics = scrape(collector_for(host, two_tasks, clock))

    assert metrics.get_sample_value("swarmguard_exporter_docker_up") == 0
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total", {"reason": "docker_unreachable"}) == 1
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) is None


def test_with_docker_the_exporter_is_up_and_every_error_reason_starts_at_zero(host, two_tasks, clock):
    metrics = scrape(collector_for(host, two_tasks, clock))

    assert metrics.get_sample_value("swarmguard_exporter_docker_up") == 1
    for reason in ("docker_unreachable", "container_unreadable", "value_refused", "capacity_unknown",
                   "internal_error"):
        assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total", {"reason": reason}) == 0


def test_docker_failing_outside_a_scrape_is_counted_with_the_scrapes_errors_and_leaves_up_alone(
        host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock)
    collector.count_error("docker_unreachable")
    collector.count_error("docker_unreachable")

    metrics = scrape(collector)

    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total", {"reason": "docker_unreachable"}) == 2
    assert metrics.get_sample_value("swarmguard_exporter_docker_up") == 1


def test_only_a_reason_the_contract_names_can_be_counted(host, two_tasks, clock):
    with pytest.raises(KeyError):
        collector_for(host, two_tasks, clock).count_error("opt_in_unreadable")


def test_without_a_known_capacity_cpu_and_memory_are_still_published(host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock, capacity_mbps=None, interface="eth0")
    scrape(collector)
    clock.now += 0.5

    metrics = scrape(collector)

    assert metrics.get_sample_value("swarmguard_container_network_percent", WEB) is None
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total", {"reason": "capacity_unknown"}) == 2


def test_the_capacity_that_100_percent_stands_for_is_published(host, two_tasks, clock):
    metrics = scrape(collector_for(host, two_tasks, clock, capacity_mbps=1000.0, interface="eth0"))

    assert metrics.get_sample_value("swarmguard_interface_capacity_bits_per_second",
                                    {"interface": "eth0", "source": "configured"}) == 1e9


def test_the_nodes_size_comes_from_meminfo(tmp_path):
    host = FakeHost(tmp_path)

    assert read_node(str(host.proc)).memory_bytes == 4 * 2**30


def test_registering_the_collector_reads_nothing(host, clock):
    inventory = FakeInventory([])
    inventory.tasks = lambda: pytest.fail("the collector read the task list at registration")
    registry = CollectorRegistry()

    registry.register(collector_for(host, inventory, clock))
    generate_latest(registry)  # the health part of a scrape reads nothing either


def test_the_exposition_is_valid_text_with_one_help_and_type_per_series(host, two_tasks, clock):
    metrics = scrape(collector_for(host, two_tasks, clock))

    for name in ("swarmguard_task_cpu_seconds_total", "swarmguard_container_network_percent"):
        assert metrics.text.count(f"# TYPE {name} ") == 1


@pytest.mark.parametrize(("name", "help_text"), [
    ("swarmguard_interface_capacity_bits_per_second",
     "Capacity that 100 percent stands for: configured, or the interface's link speed."),
    ("swarmguard_exporter_docker_up", "1 if this scrape could list the node's swarm tasks from its Docker daemon, "
                                      "0 if not (no per-task values are published then)."),
    ("swarmguard_exporter_scrape_errors_total", "Scrape problems, by reason."),
    ("swarmguard_exporter_tasks", "Swarm task containers on this node in this scrape: measured, gone (stopped while "
                                  "being read), or unlocated (cgroup not found)."),
    ("swarmguard_exporter_scrape_duration_seconds", "Time the per-task part of this scrape took."),
])
def test_the_exporters_own_series_say_what_they_count(host, two_tasks, clock, name, help_text):
    metrics = scrape(collector_for(host, two_tasks, clock))

    assert f"# HELP {name} {help_text}\n" in metrics.text


def test_label_values_are_escaped(host, clock):
    odd = {"service": 'we"b\\x', "task_id": "t1", "node_id": "n1"}
    collector = collector_for(host, FakeInventory([task(host, odd, 100)]), clock)

    assert scrape(collector).get_sample_value("swarmguard_task_cpu_seconds_total", odd) == pytest.approx(40.0)


# -- health: counted every scrape, logged once per change -------------------------------------

import logging  # noqa: E402
import os  # noqa: E402


def test_a_docker_outage_is_counted_every_scrape_and_logged_once_as_is_its_end(
        host, two_tasks, clock, caplog):
    collector = collector_for(host, two_tasks, clock)
    two_tasks.unavailable = "cannot connect to Docker: no such socket"
    with caplog.at_level(logging.INFO, logger="exporter"):
        scrape(collector)
        metrics = scrape(collector)
        assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                        {"reason": "docker_unreachable"}) == 2
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.WARNING, "Docker read failed: cannot connect to Docker: no such socket")]
        caplog.clear()
        two_tasks.unavailable = None
        scrape(collector)
        scrape(collector)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "Docker answers again")]


def test_a_healthy_start_logs_nothing(host, two_tasks, clock, caplog):
    with caplog.at_level(logging.INFO, logger="exporter"):
        scrape(collector_for(host, two_tasks, clock))
    assert caplog.records == []


def test_an_unknown_capacity_is_logged_once_and_so_is_its_return(host, two_tasks, clock, caplog):
    collector = collector_for(host, two_tasks, clock, capacity_mbps=None, interface="eth0")
    with caplog.at_level(logging.INFO, logger="exporter"):
        scrape(collector)
        scrape(collector)
        speed = host.root / "sys" / "class" / "net" / "eth0"
        speed.mkdir(parents=True)
        (speed / "speed").write_text("1000\n")
        metrics = scrape(collector)
    sys_root = host.root / "sys"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"Capacity of interface eth0 is unknown (no speed under {sys_root}/class/"
                          "net/eth0): set --capacity-mbps; no network percentages are published "
                          "until then"),
        (logging.INFO, "Capacity of interface eth0 is known again")]
    assert metrics.get_sample_value("swarmguard_interface_capacity_bits_per_second",
                                    {"interface": "eth0", "source": "sysfs"}) == 1e9


def test_an_unreadable_container_is_counted_and_logged_and_the_others_still_measured(
        host, clock, caplog):
    (host.cgroup / "docker" / "c2" / "memory.stat").write_text("garbage\n")
    inventory = FakeInventory([task(host, API, 200), task(host, WEB, 100)])
    collector = collector_for(host, inventory, clock)
    with caplog.at_level(logging.INFO, logger="exporter"):
        scrape(collector)
        metrics = scrape(collector)
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                    {"reason": "container_unreadable"}) == 2
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert caplog.messages[0] == "Cannot read container c2 of api: no inactive_file in cgroup file"


def test_every_task_is_counted_by_what_became_of_it(host, two_tasks, clock):
    two_tasks.unlocated = 3
    metrics = scrape(collector_for(host, two_tasks, clock))
    assert [metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": o})
            for o in ("measured", "gone", "unlocated")] == [2, 0, 3]

    for cgroup in ("c1", "c2"):
        (host.cgroup / "docker" / cgroup / "cpu.stat").unlink()
    metrics = scrape(collector_for(host, two_tasks, clock))
    assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": "gone"}) == 2


def test_before_its_first_scrape_the_exporter_claims_nothing(host, two_tasks, clock):
    registry = CollectorRegistry()
    registry.register(collector_for(host, two_tasks, clock))
    metrics = Scraped(generate_latest(registry).decode())
    assert metrics.get_sample_value("swarmguard_exporter_docker_up") == 0
    for outcome in ("measured", "gone", "unlocated"):
        assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": outcome}) == 0
    assert metrics.get_sample_value("swarmguard_exporter_scrape_duration_seconds") == 0


def test_the_scrape_duration_is_the_time_the_per_task_part_took_at_most(host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock)
    registry = CollectorRegistry()
    registry.register(collector)

    before = time.perf_counter()
    collector.render_tasks()
    took = time.perf_counter() - before

    duration = Scraped(generate_latest(registry).decode()).get_sample_value("swarmguard_exporter_scrape_duration_seconds")
    assert 0 < duration <= took


def test_a_task_that_left_the_list_is_let_go_and_the_others_still_scraped(host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock)
    scrape(collector)
    two_tasks.task_list = two_tasks.task_list[:1]
    metrics = scrape(collector)
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", API) is None


def test_a_scrape_exactly_the_minimum_interval_after_the_last_gives_a_new_rate(host, two_tasks, clock):
    collector = collector_for(host, two_tasks, clock, min_rate_interval_seconds=0.5)
    scrape(collector)
    clock.now += 0.5
    host.set_net(100, {"eth0": (1_000 + 625_000, 2_000)})  # 10 Mbit/s over 0.5 s
    assert scrape(collector).get_sample_value("swarmguard_container_network_percent",
                                              WEB) == pytest.approx(10.0)


@pytest.mark.parametrize("service", ["a\\nb", "two\nlines"])
def test_backslashes_and_line_breaks_in_label_values_survive_the_exposition(host, clock, service):
    odd = {"service": service, "task_id": "t1", "node_id": "n1"}
    collector = collector_for(host, FakeInventory([task(host, odd, 100)]), clock)

    assert scrape(collector).get_sample_value("swarmguard_task_cpu_seconds_total", odd) == pytest.approx(40.0)


def test_the_nodes_cores_are_the_cpus_the_host_has(tmp_path):
    host = FakeHost(tmp_path)
    assert read_node(str(host.proc)).cores == float(os.cpu_count())


def test_a_meminfo_without_memtotal_is_an_error_saying_so(tmp_path):
    host = FakeHost(tmp_path)
    (host.proc / "meminfo").write_text("MemFree: 1 kB\n")
    with pytest.raises(ValueError, match="^no MemTotal in meminfo$"):
        read_node(str(host.proc))


# -- one bad task costs only that task ---------------------------------------------------------

from tests.unit.exporter_host import NET_DEV_HEADER  # noqa: E402



def web_and_api(host):
    return FakeInventory([task(host, API, 200), task(host, WEB, 100)])


def test_a_net_dev_line_cut_short_costs_only_its_task_and_is_counted_as_unreadable(host, clock):
    (host.proc / "200" / "net" / "dev").write_text(NET_DEV_HEADER + "  eth0: 1000 3 0 0\n")

    metrics = scrape(collector_for(host, web_and_api(host), clock))

    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", API) is None
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                    {"reason": "container_unreadable"}) == 1
    assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": "measured"}) == 1


def test_an_unexpected_error_reading_one_task_costs_only_that_task_and_is_counted(
        host, clock, monkeypatch, caplog):
    import exporter.collector as collector_module
    real = collector_module.parse_net_dev

    def parse_net_dev(text):
        if b"eth1" in text:  # api's namespace has eth0 and eth1, web's only eth0
            raise RuntimeError("a bug in the exporter")
        return real(text)

    monkeypatch.setattr(collector_module, "parse_net_dev", parse_net_dev)
    with caplog.at_level(logging.ERROR, logger="exporter"):
        metrics = scrape(collector_for(host, web_and_api(host), clock))

    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", API) is None
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                    {"reason": "internal_error"}) == 1
    assert "a bug in the exporter" in caplog.text


def test_an_unexpected_error_of_the_whole_scrape_still_serves_the_exporters_health(host, clock, caplog):
    inventory = web_and_api(host)

    def tasks():
        raise RuntimeError("a bug in the exporter")

    collector = collector_for(host, inventory, clock)
    (host.cgroup / "docker" / "c2" / "cpu.stat").unlink()
    # A good one first, with a task measured and one gone: neither is claimed after the failure.
    assert [scrape(collector).get_sample_value("swarmguard_exporter_tasks", {"outcome": outcome})
            for outcome in ("measured", "gone")] == [1, 1]
    inventory.tasks = tasks
    with caplog.at_level(logging.ERROR, logger="exporter"):
        scrape(collector)
        metrics = scrape(collector)

    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                    {"reason": "internal_error"}) == 2
    assert metrics.get_sample_value("swarmguard_exporter_docker_up") == 0
    for outcome in ("measured", "gone"):
        assert metrics.get_sample_value("swarmguard_exporter_tasks", {"outcome": outcome}) == 0
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) is None
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["The scrape failed; only the exporter's own series are served"] * 2
    assert "a bug in the exporter" in caplog.text



TOO_BIG_FOR_A_FLOAT = "9" * 400


@pytest.mark.parametrize("file, text", [
    ("cpu.stat", "usage_usec -5000000\nuser_usec 1\n"),  # would be a negative counter
    ("cpu.stat", f"usage_usec {TOO_BIG_FOR_A_FLOAT}\n"),  # past a float: OverflowError
    ("memory.current", "-1\n"),
    ("memory.current", f"{2**64}\n"),  # one past what the kernel's counter can hold
], ids=["negative_cpu", "cpu_past_a_float", "negative_memory", "memory_past_64_bits"])
def test_a_cgroup_value_no_kernel_counter_can_hold_is_refused_never_published(host, clock, file, text):
    (host.cgroup / "docker" / "c2" / file).write_text(text)

    metrics = scrape(collector_for(host, web_and_api(host), clock))

    for name in ("swarmguard_task_cpu_seconds_total", "swarmguard_task_memory_working_set_bytes"):
        assert metrics.get_sample_value(name, API) is None
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                    {"reason": "value_refused"}) == 1
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                    {"reason": "container_unreadable"}) == 0


@pytest.mark.parametrize("counters", [(-1, 0), (0, int(TOO_BIG_FOR_A_FLOAT))],
                         ids=["negative", "past_a_float"])
def test_a_net_dev_counter_no_kernel_counter_can_hold_is_refused_never_published(host, clock, counters):
    collector = collector_for(host, web_and_api(host), clock)
    scrape(collector)
    clock.now += 1.0
    host.set_net(200, {"eth0": counters})

    metrics = scrape(collector)

    assert metrics.get_sample_value("swarmguard_container_network_percent", API) is None
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", API) is None
    assert metrics.get_sample_value("swarmguard_container_network_percent", WEB) == 0.0
    assert metrics.get_sample_value("swarmguard_exporter_scrape_errors_total",
                                    {"reason": "value_refused"}) == 1




def test_a_task_left_out_of_one_scrape_is_measured_again_once_its_files_read_well(host, clock):
    collector = collector_for(host, web_and_api(host), clock)
    (host.cgroup / "docker" / "c2" / "cpu.stat").write_text("usage_usec -1\n")
    scrape(collector)
    host.set_usage("/docker/c2", cpu_seconds=6.0, usage=2**30, inactive_file=0)

    metrics = scrape(collector)

    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", API) == pytest.approx(6.0)


# -- what an operator reads when one task is left out ---------------------------------------------



@pytest.fixture
def db(host):
    host.container(300, f"/docker/{DB_CONTAINER}", cpu_seconds=1.0, usage=2**20, inactive_file=0,
                   net={"eth9": (0, 0)})
    return FakeInventory([task(host, DB, 300), task(host, WEB, 100)])


def left_out_twice(host, inventory, clock, caplog):
    """Two scrapes of a node whose db task cannot be measured: the warnings logged, and the
    errors counted, by reason."""
    collector = collector_for(host, inventory, clock)
    with caplog.at_level(logging.INFO, logger="exporter"):
        scrape(collector)
        metrics = scrape(collector)
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", DB) is None
    assert metrics.get_sample_value("swarmguard_task_cpu_seconds_total", WEB) == pytest.approx(40.0)
    errors = {reason: metrics.get_sample_value("swarmguard_exporter_scrape_errors_total", {"reason": reason})
              for reason in ("container_unreadable", "value_refused", "internal_error")}
    return [(r.levelno, r.getMessage()) for r in caplog.records], errors


def test_a_refused_reading_is_counted_every_scrape_and_logged_by_the_containers_short_id_and_why(
        host, db, clock, caplog):
    (host.cgroup / "docker" / DB_CONTAINER / "cpu.stat").write_text("usage_usec -1\n")

    logged, errors = left_out_twice(host, db, clock, caplog)

    assert errors == {"container_unreadable": 0, "value_refused": 2, "internal_error": 0}
    assert logged == [(logging.WARNING, "Refused a reading of container 3f6c0a2b9d5e of db: "
                                        "usage_usec -1 is not an unsigned 64-bit counter")] * 2


def test_an_unreadable_container_is_logged_by_its_short_id_and_why(host, db, clock, caplog):
    (host.cgroup / "docker" / DB_CONTAINER / "memory.stat").write_text("garbage\n")

    logged, errors = left_out_twice(host, db, clock, caplog)

    assert errors == {"container_unreadable": 2, "value_refused": 0, "internal_error": 0}
    assert logged == [(logging.WARNING,
                       "Cannot read container 3f6c0a2b9d5e of db: no inactive_file in cgroup file")] * 2


def test_a_bug_met_reading_one_container_is_counted_every_scrape_and_logged_with_its_traceback(
        host, db, clock, caplog, monkeypatch):
    import exporter.collector as collector_module
    real = collector_module.parse_net_dev

    def parse_net_dev(text):
        if b"eth9" in text:  # only db's namespace has eth9
            raise RuntimeError("a bug in the exporter")
        return real(text)

    monkeypatch.setattr(collector_module, "parse_net_dev", parse_net_dev)
    logged, errors = left_out_twice(host, db, clock, caplog)

    assert errors == {"container_unreadable": 0, "value_refused": 0, "internal_error": 2}
    assert logged == [(logging.ERROR,
                       "Reading container 3f6c0a2b9d5e of db failed; it is left out of this scrape")] * 2
    assert all(str(record.exc_info[1]) == "a bug in the exporter" for record in caplog.records)
