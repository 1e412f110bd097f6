"""The lab probe's waits, against a loopback server whose answer the test changes: the lab
tests wait on these instead of sleeping around a move, so each must hold until its
condition does and give up loudly when it never comes."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.lab.infra.system import LabError
from tests.lab.instruments.probe import Probe


class Service:
    """Answers 200 with `X-Swarm-Node: <node>`, or 503 while `node` is None."""

    def __init__(self):
        self.node: str | None = "worker-1"
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                node = service.node
                self.send_response(200 if node else 503)
                if node:
                    self.send_header("X-Swarm-Node", node)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service():
    s = Service()
    yield s
    s.close()


def test_the_waits_follow_the_service_from_one_node_to_another(service):
    with Probe(service.url, rate=50) as probe:
        probe.wait_answered(by="worker-1", timeout=10)
        service.node = None
        probe.wait_failed(5, timeout=10)
        service.node = "worker-2"
        probe.wait_answered(by="worker-2", last=10, timeout=10)
        assert [s.node for s in probe.so_far().samples[-10:]] == ["worker-2"] * 10
    result = probe.stop()
    assert result.nodes == ["worker-1", "worker-2"]
    assert result.failed >= 5


def test_a_wait_whose_condition_never_comes_gives_up_naming_it(service):
    with Probe(service.url, rate=50) as probe:
        with pytest.raises(LabError, match="answered by worker-2"):
            probe.wait_answered(by="worker-2", timeout=1)
        with pytest.raises(LabError, match="failed request"):
            probe.wait_failed(1, timeout=1)
