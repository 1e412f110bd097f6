"""A tiny stand-in for cAdvisor's REST API on 127.0.0.1, for the exporter's tests.

It answers whatever the test sets (status, body, delay) and records the requests it got,
and it answers 404 to any path other than the one the exporter is expected to use, so a
test fails loudly if the exporter starts asking for something new.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "cadvisor"
EXPECTED_PATH = "/api/v1.3/docker"


def load_fixture(name: str) -> object:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    delay_seconds: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    body: bytes


@dataclass
class FakeCadvisor:
    answer: Answer = field(default_factory=Answer)
    requests: list[Request] = field(default_factory=list)
    url: str = ""  # set by serve()

    def answer_json(self, payload: object) -> None:
        self.answer = Answer(body=json.dumps(payload).encode())


def serve(fake: FakeCadvisor) -> ThreadingHTTPServer:
    """Serve `fake` on 127.0.0.1 in a thread; stop it with shutdown() and server_close()."""
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            fake.requests.append(Request(self.command, self.path, self.rfile.read(length)))
            answer = fake.answer if self.path == EXPECTED_PATH else Answer(404, b"not found")
            time.sleep(answer.delay_seconds)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the exporter gave up waiting, as a timeout test wants

        do_GET = do_POST = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A short poll interval makes shutdown() quick.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
