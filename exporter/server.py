"""The exporter's HTTP endpoint: GET /metrics, the per-task series followed by everything
the prometheus_client registry holds (the exporter's health, process metrics).

A scrape is compressed when Prometheus asks for it (it always does) at gzip level 1:
at 200 tasks on a node level 1 costs a fraction of level 9's CPU for a body a few
percent larger (README, "Density").
"""
from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, gzip_accepted

GZIP_LEVEL = 1


def render(tasks: Callable[[], str], registry: CollectorRegistry) -> bytes:
    # The per-task part first: it is the scrape, and the health collectors report on it.
    return tasks().encode() + generate_latest(registry)


class _Handler(BaseHTTPRequestHandler):
    server: "MetricsServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "only /metrics is served")
            return
        body = render(self.server.tasks, self.server.registry)
        headers = [("Content-Type", CONTENT_TYPE_LATEST)]
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        self.send_response(200)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass  # two scrapes a second would flood the log


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], tasks: Callable[[], str], registry: CollectorRegistry) -> None:
        super().__init__(address, _Handler)
        self.tasks = tasks
        self.registry = registry


def start(address: str, port: int, tasks: Callable[[], str], registry: CollectorRegistry
          ) -> tuple[MetricsServer, threading.Thread]:
    server = MetricsServer((address, port), tasks, registry)
    thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    return server, thread
