"""The receiver's one question to Prometheus (receiver/prometheus.py), against stand-in
Prometheus servers on loopback: basic auth when configured, and any answer but Prometheus's
own is Unanswered (so nothing acts), never an exception of another kind. Asked of several
at once, the answers of those that answer count, and a slow one does not hold the round
past its deadline."""
import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from receiver.config import ConfigError, Settings
from receiver.confirmation import Unanswered
from receiver import prometheus
from receiver.prometheus import Prometheus, PrometheusGroup, ipv4_addresses, prometheus_of

SCALE_UP = {"alertname": "SwarmGuardScaleUp", "service": "web"}
FIRING = {"status": "success", "data": {"alerts": [{"labels": SCALE_UP, "state": "firing"}]}}


def firing(*alerts):
    return json.dumps({"status": "success", "data": {"alerts": [
        {"labels": labels, "state": "firing"} for labels in alerts]}}).encode()


class StandIn:
    """Prometheus's /api/v1/alerts (404 elsewhere); `pause`: seconds before the answer,
    and between its bytes when `trickle` (until the test is over)."""

    def __init__(self, status=200, body=json.dumps(FIRING).encode(), password="", pause=0.0,
                 trickle=False, silent=False, address=("127.0.0.1", 0)):
        self.status, self.body, self.password = status, body, password
        self.pause, self.trickle = pause, trickle
        self.seen_auth = []
        # `silent`: never answers, until the test is over.
        self.over = threading.Event()
        self.silent = silent
        # Set when a request arrives, and when its answer has been written (or given up).
        self.asked, self.finished = threading.Event(), threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                stand_in.seen_auth.append(self.headers.get("Authorization"))
                stand_in.asked.set()
                try:
                    self.answer()
                finally:
                    stand_in.finished.set()

            def answer(self):
                if stand_in.silent:
                    stand_in.over.wait()
                    return
                expected = "Basic " + base64.b64encode(f"swarmguard:{stand_in.password}".encode()).decode()
                status = stand_in.status if self.path == "/api/v1/alerts" else 404
                if stand_in.password and self.headers.get("Authorization") != expected:
                    status = 401
                if not stand_in.trickle:
                    time.sleep(stand_in.pause)
                self.send_response(status)
                self.send_header("Content-Length", str(len(stand_in.body)))
                self.end_headers()
                try:
                    if stand_in.trickle:
                        for byte in stand_in.body:
                            if stand_in.over.is_set():
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(stand_in.pause)
                    else:
                        self.wfile.write(stand_in.body)
                except OSError:
                    pass  # the client gave up: that is the point

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(address, Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://{address[0]}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.over.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in():
    made = []

    def make(**kwargs):
        made.append(StandIn(**kwargs))
        return made[-1]
    yield make
    for server in made:
        server.close()


def test_the_firing_alerts_are_read_with_basic_auth_when_a_password_is_set(stand_in, tmp_path):
    server = stand_in(password="pw")
    (tmp_path / "pw").write_text("pw\n")  # a secret's trailing newline is not the password
    settings = Settings(token="t", prometheus_url=server.url,
                        prometheus_password_file=str(tmp_path / "pw"))
    firing = prometheus_of(settings).firing_alerts()
    assert firing.label_sets == {frozenset({("alertname", "SwarmGuardScaleUp"), ("service", "web")})}


@pytest.mark.parametrize("kwargs, why", [
    ({"status": 503}, "answered HTTP 503"),
    ({"password": "other"}, "answered HTTP 401"),
    ({"body": b"<html>proxy error</html>"}, "something other than JSON"),
    ({"body": b'{"status": "success", "data": {"alerts": [{"labels": '}, "other than JSON"),
    ({"body": b'{"status": "error", "errorType": "timeout"}'}, "answered status 'error'"),
    ({"body": b'{"status": "success", "data": {"alerts": [{"labels": {"a": 1}}]}}'},
     "^an alert's labels are not strings$"),
    ({"body": b'{"status": "success", "data": {}}'}, r"not an answer of /api/v1/alerts \(KeyError"),
    ({"pause": 3.0}, r"unreachable \(ReadTimeout\)"),  # answers nothing within the timeout
    ({"pause": 0.05, "trickle": True}, "answered too slowly"),  # each byte in time, not all
])
def test_any_answer_but_prometheus_s_own_is_unanswered_saying_why(stand_in, kwargs, why):
    server = stand_in(**kwargs)
    with pytest.raises(Unanswered, match=why):
        Prometheus(server.url, timeout=1, user="swarmguard", password="pw").firing_alerts()


def test_an_answer_larger_than_the_cap_is_unanswered(stand_in, monkeypatch):
    server = stand_in()
    monkeypatch.setattr(prometheus, "MAX_ANSWER_BYTES", len(server.body) - 1)
    with pytest.raises(Unanswered, match=f"more than {len(server.body) - 1} bytes"):
        Prometheus(server.url, timeout=5).firing_alerts()
    monkeypatch.setattr(prometheus, "MAX_ANSWER_BYTES", len(server.body))
    assert Prometheus(server.url, timeout=5).firing_alerts().label_sets  # exactly at the cap


def test_an_answer_in_several_reads_is_read_whole(stand_in):
    labels = [{"alertname": "SwarmGuardScaleUp", "service": f"s{i}"} for i in range(3000)]
    body = json.dumps({"status": "success", "data": {"alerts": [
        {"labels": l, "state": "firing"} for l in labels]}}).encode()
    assert len(body) > 128 * 1024
    assert len(Prometheus(stand_in(body=body).url, timeout=5).firing_alerts().label_sets) == 3000


def test_the_url_may_end_with_a_slash(stand_in):
    server = stand_in()
    assert Prometheus(server.url + "/", timeout=5).firing_alerts().label_sets


def test_without_a_password_no_credentials_are_sent(stand_in):
    server = stand_in()
    prometheus_of(Settings(token="t", prometheus_url=server.url)).firing_alerts()
    Prometheus(server.url, timeout=5).firing_alerts()
    PrometheusGroup([server.url], timeout=5).firing_alerts()
    assert server.seen_auth == [None, None, None]


def test_no_prometheus_at_all_is_unanswered():
    with pytest.raises(Unanswered, match=r"unreachable \(ConnectionError\)"):
        Prometheus("http://127.0.0.1:9", timeout=2).firing_alerts()


def test_an_unreadable_password_file_stops_the_receiver_at_start(tmp_path):
    settings = Settings(token="t", prometheus_password_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="^cannot read SWARMGUARD_PROMETHEUS_PASSWORD_FILE="):
        prometheus_of(settings)


# -- several Prometheus servers, asked at once ----------------------------------------------

MIGRATE = {"alertname": "SwarmGuardMigrate", "service": "web", "task_id": "t1", "node_id": "n1"}


def test_an_alert_fired_by_one_of_three_prometheus_servers_is_confirmed(stand_in):
    quiet, firing_one, broken = stand_in(body=firing()), stand_in(body=firing(MIGRATE)), \
        stand_in(status=503)
    merged = PrometheusGroup([quiet.url, firing_one.url, broken.url], timeout=2).firing_alerts()
    assert merged.label_sets == {frozenset(MIGRATE.items())}
    assert merged.hot_tasks == {("t1", "n1")}
    assert merged.unanswered == (f"{broken.url}/api/v1/alerts answered HTTP 503",)


def test_the_alerts_of_every_answering_server_are_merged(stand_in):
    one, other = stand_in(body=firing(MIGRATE)), stand_in(body=firing(SCALE_UP))
    merged = PrometheusGroup([one.url, other.url], timeout=2).firing_alerts()
    assert merged.label_sets == {frozenset(MIGRATE.items()), frozenset(SCALE_UP.items())}
    assert merged.unanswered == ()


def test_with_no_server_answering_the_round_is_unanswered_naming_each(stand_in):
    broken = stand_in(status=503)
    with pytest.raises(Unanswered, match=f"^{broken.url}/api/v1/alerts answered HTTP 503; "
                                         r"http://127.0.0.1:9/api/v1/alerts unreachable "
                                         r"\(ConnectionError\)$"):
        PrometheusGroup([broken.url, "http://127.0.0.1:9"], timeout=2).firing_alerts()


def test_each_server_is_asked_with_the_credentials(stand_in):
    one, other = stand_in(password="pw"), stand_in(password="pw")
    PrometheusGroup([one.url, other.url], timeout=2, user="swarmguard",
                    password="pw").firing_alerts()
    expected = "Basic " + base64.b64encode(b"swarmguard:pw").decode()
    assert one.seen_auth == other.seen_auth == [expected]


def test_a_tasks_url_is_asked_at_the_address_of_every_task(stand_in):
    # Two stand-in "tasks" on one port at two loopback addresses.
    first = stand_in(body=firing(MIGRATE))
    second = stand_in(body=firing(SCALE_UP), address=("127.0.0.2", first.port))
    looked_up, threads = [], []

    def resolve(host):
        looked_up.append(host)
        threads.append(threading.current_thread().name)
        return ["127.0.0.2", "127.0.0.1"]
    group = PrometheusGroup([f"http://tasks.prometheus-node:{first.port}"], timeout=2,
                            resolve=resolve)
    merged = group.firing_alerts()
    assert merged.label_sets == {frozenset(MIGRATE.items()), frozenset(SCALE_UP.items())}
    assert looked_up == ["tasks.prometheus-node"]
    assert threads[0].startswith("confirm_")  # the round's own threads, named for thread dumps
    assert len(first.seen_auth) == len(second.seen_auth) == 1
    group.firing_alerts()
    assert looked_up == ["tasks.prometheus-node"] * 2  # at each confirmation: tasks come and go


def test_a_tasks_url_without_any_task_is_said_while_the_others_answer(stand_in):
    central = stand_in(body=firing(SCALE_UP))
    merged = PrometheusGroup(["http://tasks.prometheus-node:9090", central.url], timeout=2,
                             resolve=lambda host: []).firing_alerts()
    assert merged.label_sets == {frozenset(SCALE_UP.items())}
    assert merged.unanswered == (
        "tasks.prometheus-node has no address (no task of the service runs)",)


def test_a_tasks_url_alone_without_any_task_is_unanswered():
    with pytest.raises(Unanswered, match="^tasks.prometheus-node has no address"):
        PrometheusGroup(["http://tasks.prometheus-node:9090"], timeout=2,
                        resolve=lambda host: []).firing_alerts()


def test_a_silent_server_leaves_its_alerts_unconfirmed_and_the_others_count(stand_in):
    silent, central = stand_in(silent=True), stand_in(body=firing(SCALE_UP))
    merged = PrometheusGroup([silent.url, central.url], timeout=0.5).firing_alerts()
    assert merged.label_sets == {frozenset(SCALE_UP.items())}
    (why,) = merged.unanswered
    assert why.startswith(f"{silent.url}/api/v1/alerts ")


def test_a_server_trickling_its_answer_is_left_behind_at_the_round_s_deadline(stand_in):
    # Each byte arrives within the timeout, so no read times out: only the round's own
    # deadline stops waiting for it. It trickles on until the test is over (5 s at most).
    slow = stand_in(body=b"[" * 1_000_000, pause=0.02, trickle=True)
    central = stand_in(body=firing(SCALE_UP))
    over = threading.Timer(5, slow.over.set)
    over.daemon = True
    over.start()
    try:
        merged = PrometheusGroup([slow.url, central.url], timeout=0.5).firing_alerts()
        left_behind = not slow.over.is_set()  # the round did not wait for it to end
    finally:
        over.cancel()
    assert left_behind
    assert merged.label_sets == {frozenset(SCALE_UP.items())}
    assert merged.unanswered == (
        f"{slow.url} did not answer within the round's deadline",)


def test_questions_beyond_those_in_flight_wait_for_a_thread_and_are_dropped_at_the_deadline(
        stand_in, monkeypatch):
    monkeypatch.setattr(prometheus, "MAX_ASKED_AT_ONCE", 1)
    slow = stand_in(body=firing(MIGRATE), pause=0.01, trickle=True)  # holds the one thread
    waiting = stand_in()
    with pytest.raises(Unanswered, match=f"^{slow.url} did not answer within the round's "
                                         f"deadline; {waiting.url} did not answer within"):
        PrometheusGroup([slow.url, waiting.url], timeout=0.3).firing_alerts()
    assert slow.finished.wait(10)  # the thread is free again...
    assert not waiting.asked.wait(0.5)  # ...and the question the round gave up is not asked


def test_a_dns_lookup_that_hangs_does_not_hold_the_round(stand_in):
    central, released = stand_in(body=firing(SCALE_UP)), threading.Event()

    def hanging(host):
        released.wait(10)
        return ["127.0.0.1"]
    try:
        merged = PrometheusGroup(["http://tasks.prometheus-node:9090", central.url], timeout=0.3,
                                 resolve=hanging).firing_alerts()
        answered_before_the_lookup = not released.is_set()
    finally:
        released.set()
    assert answered_before_the_lookup
    assert merged.label_sets == {frozenset(SCALE_UP.items())}
    assert merged.unanswered == (
        "no address for tasks.prometheus-node within the round's deadline",)


def test_only_ipv4_addresses_are_asked_for(monkeypatch):
    def getaddrinfo(host, port, family=0, type=0):
        assert (host, port, family, type) == (
            "tasks.prometheus-node", None, socket.AF_INET, socket.SOCK_STREAM)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.1.9", 0))]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert ipv4_addresses("tasks.prometheus-node") == ["10.0.1.9"]


def test_a_host_s_ipv4_addresses_are_looked_up_and_a_failed_lookup_is_unanswered():
    assert ipv4_addresses("localhost") == ["127.0.0.1"]
    with pytest.raises(Unanswered, match="^cannot resolve tasks.prometheus.invalid "):
        ipv4_addresses("tasks.prometheus.invalid")
    with pytest.raises(Unanswered, match="^cannot resolve tasks.a{64} "):
        ipv4_addresses("tasks." + "a" * 64)  # a label too long for DNS


def test_the_settings_name_every_server_asked(stand_in):
    one, other = stand_in(body=firing(MIGRATE)), stand_in(body=firing(SCALE_UP))
    group = prometheus_of(Settings(token="t", prometheus_url=f"{one.url}, {other.url}",
                                   prometheus_timeout=1.5))
    assert (group.urls, group.timeout) == ((one.url, other.url), 1.5)
    assert len(group.firing_alerts().label_sets) == 2
