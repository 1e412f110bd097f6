"""The services opted in to SwarmGuard, as a manager's exporter publishes them at /opted-in
(exporter/opt_in.py): what the page says, and how a manager reads the list from Docker."""
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import label_block
from exporter.inventory import TaskContainer
from exporter.opt_in import (STALE_INTERVALS, OptInWatch, Reading, UnreadableAnswer, is_manager, opted_in_services,
                             page, pause)
from tests.fake_docker_api_client import service_dict
from tests.unit.exporter_fakes import Clock, StrictDocker

INTERVAL = 5.0
STALE = STALE_INTERVALS * INTERVAL
MANAGER_INFO = {"Swarm": {"NodeID": "m1", "LocalNodeState": "active", "ControlAvailable": True}}
WORKER_INFO = {"Swarm": {"NodeID": "w1", "LocalNodeState": "active", "ControlAvailable": False}}


def listed(name, running, desired=None, **kwargs):
    """A service as GET /services?status=true lists it (API 1.41 and later)."""
    service = service_dict(name, **kwargs)
    service["ServiceStatus"] = {"RunningTasks": running, "DesiredTasks": running if desired is None else desired}
    return service


def samples(text):
    """{(name, service label or None): value} of a page."""
    return {(s.name, s.labels.get("service")): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def known(text):
    return samples(text).get(("swarmguard_exporter_opt_in_known", None))


# -- what Docker's answers say ------------------------------------------------------------------

def test_a_manager_is_a_node_whose_docker_has_control_of_the_swarm():
    assert is_manager(MANAGER_INFO) is True


@pytest.mark.parametrize("info", [
    WORKER_INFO,
    {"Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False}},  # not in a swarm
    {"Swarm": {"ControlAvailable": "true"}},  # not what Docker sends: not taken for a yes
    {"Swarm": None},
    {},
], ids=["worker", "no_swarm", "a_string", "null_swarm", "nothing"])
def test_any_other_node_is_not_a_manager(info):
    assert is_manager(info) is False


def test_each_opted_in_service_comes_with_its_running_tasks_by_name_zero_included():
    answer = [listed("web", 3), listed("idle", 0, desired=2), listed("api", 1, desired=2)]

    assert opted_in_services(answer) == {"api": 1, "idle": 0, "web": 3}
    assert list(opted_in_services(answer)) == ["api", "idle", "web"]


def test_the_label_is_read_as_the_receiver_reads_it_whatever_value_docker_matched():
    answer = [listed("shouting", 1, labels={"swarmguard.enable": "TRUE"}),
              listed("off", 1, labels={"swarmguard.enable": "false"}),
              listed("empty", 1, labels={"swarmguard.enable": ""}),
              listed("unlabelled", 1, enabled=False)]

    assert opted_in_services(answer) == {"shouting": 1}


def test_a_service_that_is_not_opted_in_is_not_checked_at_all():
    bare = service_dict("off", labels={"swarmguard.enable": "no"})  # and no ServiceStatus

    assert opted_in_services([bare, listed("web", 2)]) == {"web": 2}


@pytest.mark.parametrize("status", [None, {}, {"RunningTasks": None}, {"RunningTasks": "2"},
                                    {"RunningTasks": True}, {"RunningTasks": -1}, {"RunningTasks": 1.0}],
                         ids=["no_status", "empty_status", "null", "text", "boolean", "negative", "float"])
def test_an_opted_in_service_without_a_count_of_running_tasks_makes_the_answer_unreadable(status):
    service = service_dict("web")
    if status is not None:
        service["ServiceStatus"] = status

    with pytest.raises(UnreadableAnswer, match="'web'") as refused:
        opted_in_services([listed("api", 1), service])
    assert f"(ServiceStatus: {status!r})" in str(refused.value)  # what Docker sent, for the log


@pytest.mark.parametrize("name", [None, "", 7])
def test_an_opted_in_service_without_a_name_makes_the_answer_unreadable(name):
    service = listed("web", 1)
    service["Spec"]["Name"] = name

    with pytest.raises(UnreadableAnswer):
        opted_in_services([service])


# -- the page -----------------------------------------------------------------------------------

def test_a_manager_lists_each_opted_in_service_and_says_the_list_is_known():
    reading = Reading(manager=True, services={"api": 0, "web": 3}, read_at=100.0)

    assert samples(page(reading, 101.0, STALE)) == {
        ("swarmguard_opted_in_service_tasks", "api"): 0.0,
        ("swarmguard_opted_in_service_tasks", "web"): 3.0,
        ("swarmguard_exporter_opt_in_known", None): 1.0,
    }


def test_the_page_is_prometheus_text_with_a_help_and_type_for_each_series():
    text = page(Reading(manager=True, services={"web": 2}, read_at=0.0), 0.0, STALE).decode()

    assert text.splitlines() == [
        "# HELP swarmguard_opted_in_service_tasks Running tasks of each service opted in to SwarmGuard "
        "(label swarmguard.enable=true), as this manager's Docker counts them; 0: opted in, none running.",
        "# TYPE swarmguard_opted_in_service_tasks gauge",
        'swarmguard_opted_in_service_tasks{service="web"} 2.0',
        "# HELP swarmguard_exporter_opt_in_known 1 if this manager's last good read of the services opted "
        "in to SwarmGuard is younger than 15 s, 0 if not (the services listed are then the last ones read, "
        "if any). Not published by a node that is not a manager.",
        "# TYPE swarmguard_exporter_opt_in_known gauge",
        "swarmguard_exporter_opt_in_known 1.0",
    ]


def test_a_manager_without_opted_in_services_says_so_and_that_it_knows():
    assert samples(page(Reading(manager=True, services={}, read_at=0.0), 1.0, STALE)) == {
        ("swarmguard_exporter_opt_in_known", None): 1.0}


def test_a_node_that_is_not_a_manager_publishes_nothing_not_even_that_it_does_not_know():
    assert page(Reading(manager=False), 0.0, STALE) == b""


def test_a_manager_that_has_not_read_the_list_yet_says_it_does_not_know():
    assert samples(page(Reading(manager=True), 0.0, STALE)) == {("swarmguard_exporter_opt_in_known", None): 0.0}


def test_the_list_is_known_while_its_read_is_younger_than_three_intervals_and_then_kept_as_unknown():
    reading = Reading(manager=True, services={"web": 2}, read_at=100.0)

    assert known(page(reading, 100.0 + STALE - 0.001, STALE)) == 1.0
    stale = page(reading, 100.0 + STALE, STALE)
    assert known(stale) == 0.0
    assert samples(stale)[("swarmguard_opted_in_service_tasks", "web")] == 2.0


def test_a_service_name_is_escaped_as_on_the_per_task_series():
    name = 'we"b\\1\nx'
    task = TaskContainer(service=name, task_id="t", node_id="n", task_name="", container_id="c", pid=1,
                         started_at=0.0, cpu_limit_cores=None, memory_limit_bytes=None, cgroup=None)
    text = page(Reading(manager=True, services={name: 1}, read_at=0.0), 0.0, STALE).decode()

    escaped = label_block(task).split(",", 1)[0] + "}"  # {service="..."}
    assert f"swarmguard_opted_in_service_tasks{escaped} 1.0\n" in text
    assert samples(text.encode())[("swarmguard_opted_in_service_tasks", name)] == 1.0


# -- reading from Docker ------------------------------------------------------------------------

class FakeDocker(StrictDocker):
    """The two Docker calls the opt-in reading makes; anything else fails the test.
    `info` and `services` are answers, or exceptions to raise."""

    def __init__(self, info=MANAGER_INFO, services=()):
        self.info_answer = info
        self.services_answer = services
        self.calls = []

    def info(self):
        self.calls.append("info")
        return self._answer(self.info_answer)

    def services(self, filters, status):
        self.calls.append("services")
        assert (filters, status) == ({"label": "swarmguard.enable"}, True)
        return self._answer(self.services_answer)

    @staticmethod
    def _answer(answer):
        if isinstance(answer, Exception):
            raise answer
        return answer


class Watched:
    """An OptInWatch on a FakeDocker and a hand-moved clock, counting failed reads."""

    def __init__(self, docker_api, connect=None):
        self.docker, self.clock, self.errors, self.connections = docker_api, Clock(), [], 0

        def connected():
            self.connections += 1
            return connect() if connect else self.docker

        self.watch = OptInWatch(connected, interval=INTERVAL, clock=self.clock,
                                on_error=lambda: self.errors.append(1))

    def read(self, seconds_later=INTERVAL):
        self.clock.now += seconds_later
        return self.watch.refresh()

    def page(self):
        return samples(self.watch.page())


def test_a_manager_reads_the_opted_in_services_with_their_tasks_in_one_list_call():
    watched = Watched(FakeDocker(services=[listed("web", 2), listed("api", 0)]))

    assert watched.read() is True

    assert watched.page() == {("swarmguard_opted_in_service_tasks", "api"): 0.0,
                              ("swarmguard_opted_in_service_tasks", "web"): 2.0,
                              ("swarmguard_exporter_opt_in_known", None): 1.0}
    assert watched.docker.calls == ["info", "services"]


def test_a_worker_asks_docker_whether_it_is_a_manager_and_nothing_else():
    watched = Watched(FakeDocker(info=WORKER_INFO))

    assert watched.read() is True

    assert watched.watch.page() == b""
    assert watched.docker.calls == ["info"]


def test_before_its_first_read_an_exporter_publishes_nothing():
    assert Watched(FakeDocker()).watch.page() == b""


def test_the_page_is_rendered_from_the_last_read_without_calling_docker():
    watched = Watched(FakeDocker(services=[listed("web", 2)]))
    watched.read()

    for _ in range(3):
        watched.watch.page()

    assert watched.docker.calls == ["info", "services"]


def test_a_failed_read_keeps_the_last_list_known_until_three_intervals_have_passed_without_a_good_one():
    watched = Watched(FakeDocker(services=[listed("web", 2)]))
    watched.read()
    watched.docker.services_answer = docker.errors.APIError("500 Server Error: the swarm does not have a leader")

    assert watched.read(STALE - 1) is False
    assert watched.page() == {("swarmguard_opted_in_service_tasks", "web"): 2.0,
                              ("swarmguard_exporter_opt_in_known", None): 1.0}
    assert watched.read(1) is False
    assert watched.page() == {("swarmguard_opted_in_service_tasks", "web"): 2.0,
                              ("swarmguard_exporter_opt_in_known", None): 0.0}


def test_an_unreadable_answer_is_a_failed_read_that_keeps_the_last_list():
    watched = Watched(FakeDocker(services=[listed("web", 2)]))
    watched.read()
    watched.docker.services_answer = [service_dict("web")]  # no ServiceStatus

    assert watched.read() is False
    assert watched.page()[("swarmguard_opted_in_service_tasks", "web")] == 2.0
    assert watched.errors == [1]


def test_a_good_read_after_failures_replaces_the_list_and_is_known_again():
    watched = Watched(FakeDocker(services=[listed("web", 2)]))
    watched.read()
    watched.docker.services_answer = OSError("connection reset")
    watched.read(STALE)
    watched.docker.services_answer = [listed("api", 1)]

    assert watched.read() is True
    assert watched.page() == {("swarmguard_opted_in_service_tasks", "api"): 1.0,
                              ("swarmguard_exporter_opt_in_known", None): 1.0}


def test_a_manager_that_cannot_list_services_says_it_does_not_know():
    watched = Watched(FakeDocker(services=docker.errors.APIError("503: the swarm does not have a leader")))

    assert watched.read() is False

    assert watched.page() == {("swarmguard_exporter_opt_in_known", None): 0.0}


def test_a_docker_that_cannot_be_reached_leaves_a_node_of_unknown_role_silent_and_is_tried_again(caplog):
    def refuse():
        raise docker.errors.DockerException("Error while fetching server API version: connection refused")

    watched = Watched(FakeDocker(), connect=refuse)

    assert watched.read() is False
    assert watched.read() is False

    assert watched.watch.page() == b""
    assert watched.connections == 2
    assert watched.errors == [1, 1]
    assert "(Error while fetching server API version: connection refused)" in caplog.text


def test_a_docker_unreachable_on_a_manager_keeps_its_role_and_its_list():
    watched = Watched(FakeDocker(services=[listed("web", 2)]))
    watched.read()
    watched.docker.info_answer = ConnectionError("no such socket")

    watched.read(STALE)

    assert watched.page() == {("swarmguard_opted_in_service_tasks", "web"): 2.0,
                              ("swarmguard_exporter_opt_in_known", None): 0.0}


def test_after_a_failure_the_next_read_connects_again_and_a_good_one_keeps_its_connection():
    watched = Watched(FakeDocker(services=[listed("web", 2)]))
    watched.read()
    watched.read()
    assert watched.connections == 1
    watched.docker.services_answer = OSError("daemon restarting")
    watched.read()
    watched.docker.services_answer = [listed("web", 2)]
    watched.read()

    assert watched.connections == 2


def test_a_manager_that_stops_being_one_publishes_nothing_and_forgets_its_list():
    watched = Watched(FakeDocker(services=[listed("web", 2)]))
    watched.read()
    watched.docker.info_answer = WORKER_INFO
    watched.read()
    assert watched.watch.page() == b""

    watched.docker.info_answer = MANAGER_INFO
    watched.docker.services_answer = OSError("no leader")
    watched.read()

    assert watched.page() == {("swarmguard_exporter_opt_in_known", None): 0.0}


def test_every_failed_read_is_counted():
    watched = Watched(FakeDocker(services=OSError("no leader")))

    for _ in range(3):
        watched.read()

    assert watched.errors == [1, 1, 1]


def test_a_failure_is_logged_once_until_a_read_succeeds_again(caplog):
    caplog.set_level(logging.INFO, logger="exporter.opt_in")
    watched = Watched(FakeDocker(services=OSError("no leader")))

    for _ in range(4):
        watched.read()
    watched.docker.services_answer = [listed("web", 1)]
    watched.read()
    watched.docker.services_answer = OSError("no leader")
    watched.read()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Cannot read the services opted in to SwarmGuard from this node's Docker (no leader): "
                        "/opted-in keeps the last list read, marked unknown once it is 15 s old"] * 2
    assert "This node's Docker answers again, after 4 failed reads" in caplog.messages


def test_the_nodes_role_is_logged_when_first_known_and_when_it_changes(caplog):
    caplog.set_level(logging.INFO, logger="exporter.opt_in")
    watched = Watched(FakeDocker(info=WORKER_INFO, services=[listed("web", 1)]))

    for info in (WORKER_INFO, WORKER_INFO, MANAGER_INFO, MANAGER_INFO, WORKER_INFO):
        watched.docker.info_answer = info
        watched.read()

    assert caplog.messages == [
        "This node is not a manager: /opted-in stays empty (only a manager's Docker lists services)",
        "This node is a manager: /opted-in lists the services opted in to SwarmGuard",
        "This node is no longer a manager: /opted-in is empty",
    ]


def test_a_manager_is_logged_as_one_even_when_its_first_list_fails(caplog):
    caplog.set_level(logging.INFO, logger="exporter.opt_in")
    watched = Watched(FakeDocker(services=OSError("no leader")))

    watched.read()
    watched.read()

    assert caplog.messages.count("This node is a manager: /opted-in lists the services opted in to SwarmGuard") == 1


@pytest.mark.parametrize("spent, wait", [(0.0, 5.0), (1.5, 3.5), (4.5, 0.5), (4.9, 0.5), (60.0, 0.5)])
def test_reads_start_an_interval_apart_unless_one_takes_longer_and_the_loop_never_spins(spent, wait):
    assert pause(INTERVAL, spent) == pytest.approx(wait)


def test_reads_run_in_a_daemon_thread_named_opt_in_so_that_no_docker_call_holds_up_the_exit():
    release = threading.Event()
    api = FakeDocker(info=WORKER_INFO)
    api.info = lambda: release.wait(15) and WORKER_INFO  # a Docker call under way
    before = set(threading.enumerate())
    watch = OptInWatch(lambda: api, interval=INTERVAL, on_error=lambda: None).start()
    try:
        [thread] = set(threading.enumerate()) - before
        assert (thread.name, thread.daemon) == ("opt-in", True)
    finally:
        watch.close()
        release.set()


def test_reads_start_an_interval_apart():
    started = []
    api = FakeDocker(info=WORKER_INFO)
    api.info = lambda: started.append(time.monotonic()) or WORKER_INFO
    # A clock that stands still: every read takes no time, so each waits the whole interval.
    watch = OptInWatch(lambda: api, interval=0.05, on_error=lambda: None, clock=lambda: 1000.0).start()
    try:
        deadline = time.monotonic() + 15
        while len(started) < 4:
            assert time.monotonic() < deadline, "no four reads within 15 s"
            time.sleep(0.01)
    finally:
        watch.close()

    assert min(later - earlier for earlier, later in zip(started, started[1:4])) >= 0.04


def test_the_thread_reads_every_interval_until_closed():
    api = FakeDocker(services=[listed("web", 2)])
    watch = OptInWatch(lambda: api, interval=0.02, on_error=lambda: None).start()
    try:
        deadline = time.monotonic() + 15
        while api.calls.count("services") < 3:
            assert time.monotonic() < deadline, "no three reads within 15 s"
            time.sleep(0.01)
        assert known(watch.page()) == 1.0
    finally:
        watch.close()
    time.sleep(0.1)  # a read under way when it closed ends
    reads = len(api.calls)
    time.sleep(0.2)  # ten intervals

    assert len(api.calls) == reads


# -- through the docker SDK, against what each Engine answers ------------------------------------

# GET /services?status=true as Engine 20.10 (API 1.41) and 28.5 (API 1.51) answer it, cut to
# the fields read; 1.51 adds CompletedTasks for jobs.
ENGINES = {
    "20.10": ("1.41", {"RunningTasks": 2, "DesiredTasks": 2}),
    "28.5": ("1.51", {"RunningTasks": 2, "DesiredTasks": 2, "CompletedTasks": 0}),
}


@pytest.fixture
def engine():
    """An Engine API stand-in on 127.0.0.1: `engine.api_version` is the version it speaks,
    `engine.status` the ServiceStatus it gives `web`; `engine.seen` lists (path, query)."""

    class Engine:
        api_version, status, seen = "1.41", {}, []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlparse(self.path)
            Engine.seen.append((url.path, parse_qs(url.query)))
            path = url.path.split("/", 2)[-1] if url.path.startswith("/v1.") else url.path.lstrip("/")
            if path == "version":
                self.answer({"Version": "x", "ApiVersion": Engine.api_version, "MinAPIVersion": "1.24"})
            elif path == "info":
                self.answer(MANAGER_INFO)
            elif path == "services":
                service = service_dict("web")
                service["ServiceStatus"] = Engine.status
                self.answer([service])
            else:
                self.send_error(404)

        def answer(self, payload):
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Engine.url = f"tcp://127.0.0.1:{server.server_port}"
    yield Engine
    server.shutdown()
    server.server_close()


def connect_to(engine):
    # As exporter/main.py connects: the version the daemon speaks, with a timeout.
    return lambda: docker.APIClient(base_url=engine.url, version="auto", timeout=5)


@pytest.mark.parametrize("release", ENGINES)
def test_through_the_sdk_a_manager_asks_for_the_labelled_services_with_their_status(engine, release):
    engine.api_version, engine.status = ENGINES[release]
    watch = OptInWatch(connect_to(engine), interval=INTERVAL, on_error=lambda: None)

    assert watch.refresh() is True

    assert samples(watch.page())[("swarmguard_opted_in_service_tasks", "web")] == 2.0
    services = [(path, query) for path, query in engine.seen if path.endswith("/services")]
    assert services == [(f"/v{engine.api_version}/services",
                         {"filters": ['{"label": ["swarmguard.enable"]}'], "status": ["True"]})]


def test_through_the_sdk_an_engine_older_than_api_1_41_cannot_tell_and_the_list_is_not_known(engine):
    engine.api_version = "1.40"  # Engine 19.03: no ServiceStatus
    watch = OptInWatch(connect_to(engine), interval=INTERVAL, on_error=lambda: None)

    assert watch.refresh() is False

    assert samples(watch.page()) == {("swarmguard_exporter_opt_in_known", None): 0.0}
