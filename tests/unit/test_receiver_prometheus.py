"""The receiver's one question to Prometheus (receiver/prometheus.py), against a stand-in
Prometheus on loopback: basic auth when configured, and any answer but Prometheus's own is
Unanswered (so nothing acts), never an exception of another kind."""
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from receiver.config import ConfigError, Settings
from receiver.confirmation import Unanswered
from receiver import prometheus
from receiver.prometheus import Prometheus, prometheus_of

FIRING = {"status": "success", "data": {"alerts": [
    {"labels": {"alertname": "SwarmGuardScaleUp", "service": "web"}, "state": "firing"}]}}


class StandIn:
    """Prometheus's /api/v1/alerts (404 elsewhere); `pause`: seconds before the answer,
    and between its bytes when `trickle`."""

    def __init__(self, status=200, body=json.dumps(FIRING).encode(), password="", pause=0.0,
                 trickle=False):
        self.status, self.body, self.password = status, body, password
        self.pause, self.trickle = pause, trickle
        self.seen_auth = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                stand_in.seen_auth.append(self.headers.get("Authorization"))
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
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(stand_in.pause)
                    else:
                        self.wfile.write(stand_in.body)
                except OSError:
                    pass  # the client gave up: that is the point

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
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
    assert server.seen_auth == [None, None]


def test_no_prometheus_at_all_is_unanswered():
    with pytest.raises(Unanswered, match=r"unreachable \(ConnectionError\)"):
        Prometheus("http://127.0.0.1:9", timeout=2).firing_alerts()


def test_an_unreadable_password_file_stops_the_receiver_at_start(tmp_path):
    settings = Settings(token="t", prometheus_password_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="^cannot read SWARMGUARD_PROMETHEUS_PASSWORD_FILE="):
        prometheus_of(settings)
