"""A stand-in Docker daemon on a unix socket, for benchmarks that need no swarm.

    python -m tests.bench.fake_docker_daemon /tmp/x/docker.sock [--delay 0.0]

It answers the reads a dry-run receiver makes (GET /version, /info, /services/<name>,
/tasks, /nodes) as a one-manager swarm with the one opted-in service `bench-web`, from the
dict builders the unit tests use; any other service is 404, any other call 404 too (and
counted in the answer of GET /_calls). `--delay` makes every answer that slow.
"""
from __future__ import annotations

import argparse
import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlparse

from tests.fake_docker_api_client import MANAGER_1, TASK, WEB_ID, node_dict, service_dict, task_dict

SERVICE = "bench-web"
VERSION = {"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}
INFO = {"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}


def answers() -> dict:
    service = service_dict(SERVICE, WEB_ID, replicas=1)
    return {
        "service": service,
        "tasks": [task_dict(TASK, WEB_ID, MANAGER_1)],
        "nodes": [node_dict(MANAGER_1, "manager-1", role="manager")],
    }


class FakeDocker(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a receiver stopped mid-call (the benchmark ends them so): nothing to report

    def __init__(self, path: str, delay: float = 0.0):
        self.delay = delay
        self.data = answers()
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__(path, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeDocker

    def do_GET(self):
        path = urlparse(self.path).path
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        with self.server.lock:
            key = path if not path.startswith("/services/") else "/services/<name>"
            self.server.calls[key] = self.server.calls.get(key, 0) + 1
        if self.server.delay:
            time.sleep(self.server.delay)
        data = self.server.data
        if path == "/version":
            self.answer(200, VERSION)
        elif path == "/info":
            self.answer(200, INFO)
        elif path == f"/services/{SERVICE}":
            self.answer(200, data["service"])
        elif path.startswith("/services/"):
            self.answer(404, {"message": f"service {path.rsplit('/', 1)[1]} not found"})
        elif path == "/tasks":
            self.answer(200, data["tasks"])
        elif path == "/nodes":
            self.answer(200, data["nodes"])
        elif path == "/_calls":
            self.answer(200, self.server.calls)
        else:
            self.answer(404, {"message": f"unexpected call {path}"})

    def answer(self, status: int, body) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", VERSION["ApiVersion"])
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("socket")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    FakeDocker(args.socket, args.delay).serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
