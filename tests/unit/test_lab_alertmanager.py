"""The lab's Alertmanager reader against a fake HA pair on loopback: what the lab tests
wait on before they assert that a silence held or that a delivery failed."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from tests.lab.config import LabConfig
from tests.lab.instruments import alertmanager

SILENCE = "6a1c2d9e-0000-4000-8000-000000000001"


class FakeAlertmanager:
    """Answers GET /api/v2/alerts with `held` (filtered by its label matchers, as
    Alertmanager does) and GET /metrics with `failed` failed webhook notifications."""

    def __init__(self):
        self.held: list[dict] = []
        self.failed = 0.0
        am = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlparse(self.path)
                if url.path == "/api/v2/alerts":
                    wanted = [m.split("=", 1) for m in parse_qs(url.query)["filter"]]
                    body = json.dumps([a for a in am.held if all(
                        a["labels"].get(k) == v.strip('"') for k, v in wanted)]).encode()
                else:
                    body = ("# TYPE alertmanager_notifications_failed_total counter\n"
                            f'alertmanager_notifications_failed_total{{integration="webhook"}} {am.failed}\n'
                            f'alertmanager_notifications_failed_total{{integration="email"}} 7\n').encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pair(tmp_path):
    ams = [FakeAlertmanager(), FakeAlertmanager()]
    cfg = LabConfig(run_dir=tmp_path, alertmanager_port=ams[0].port, alertmanager_peer_port=ams[1].port)
    yield cfg, ams
    for am in ams:
        am.close()


def held(service: str, silenced_by: list[str]) -> dict:
    return {"labels": {"alertname": "SwarmGuardMigrate", "service": service},
            "status": {"state": "suppressed" if silenced_by else "active", "silencedBy": silenced_by,
                       "inhibitedBy": []}}


def test_an_alert_is_silenced_only_when_every_alertmanager_holds_it_silenced_by_that_silence(pair):
    cfg, (first, second) = pair
    assert not alertmanager.silenced_by(cfg, "SwarmGuardMigrate", "victim", SILENCE)  # held nowhere
    first.held = [held("victim", [SILENCE]), held("other", [])]
    assert alertmanager.silenced_by(cfg, "SwarmGuardMigrate", "victim", SILENCE)
    second.held = [held("victim", [])]  # the silence has not reached the peer yet
    assert not alertmanager.silenced_by(cfg, "SwarmGuardMigrate", "victim", SILENCE)
    assert len(alertmanager.alerts(cfg, "SwarmGuardMigrate", "victim")) == 2


def test_webhook_failures_are_summed_over_the_pair_and_other_integrations_left_out(pair):
    cfg, (first, second) = pair
    first.failed, second.failed = 2, 3
    assert alertmanager.webhook_failures(cfg) == 5
