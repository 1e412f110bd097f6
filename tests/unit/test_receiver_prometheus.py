"""The receiver's one question to Prometheus (receiver/prometheus.py), against a stand-in
Prometheus on loopback: basic auth when configured, and any answer but Prometheus's own is
Unanswered (so nothing acts), never an exception of another kind."""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from receiver.config import ConfigError, Settings
from receiver.confirmation import Unanswered
from receiver.prometheus import Prometheus, prometheus_of

FIRING = {"status": "success", "data": {"alerts": [
    {"labels": {"alertname": "SwarmGuardScaleUp", "service": "web"}, "state": "firing"}]}}


class StandIn:
    def __init__(self, status=200, body=json.dumps(FIRING).encode(), password=""):
        self.status, self.body, self.password = status, body, password
        self.seen_auth = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                stand_in.seen_auth.append(self.headers.get("Authorization"))
                expected = "Basic " + base64.b64encode(f"swarmguard:{stand_in.password}".encode()).decode()
                status = stand_in.status
                if stand_in.password and self.headers.get("Authorization") != expected:
                    status = 401
                self.send_response(status)
                self.send_header("Content-Length", str(len(stand_in.body)))
                self.end_headers()
                self.wfile.write(stand_in.body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
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


@pytest.mark.parametrize("kwargs", [
    {"status": 503},
    {"password": "other"},  # our request gets a 401
    {"body": b"<html>proxy error</html>"},
    {"body": b'{"status": "success", "data": {"alerts": [{"labels": '},  # cut off
    {"body": b'{"status": "error", "errorType": "timeout"}'},
])
def test_any_answer_but_prometheus_s_own_is_unanswered(stand_in, kwargs):
    server = stand_in(**kwargs)
    with pytest.raises(Unanswered):
        Prometheus(server.url, timeout=5, user="swarmguard", password="pw").firing_alerts()


def test_no_prometheus_at_all_is_unanswered():
    with pytest.raises(Unanswered, match="unreachable"):
        Prometheus("http://127.0.0.1:9", timeout=2).firing_alerts()


def test_an_unreadable_password_file_stops_the_receiver_at_start(tmp_path):
    settings = Settings(token="t", prometheus_password_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="SWARMGUARD_PROMETHEUS_PASSWORD_FILE"):
        prometheus_of(settings)
