"""Just enough of the Docker Engine API (a swarm manager) for `docker stack deploy`.

The real docker CLI is pointed at it (`-H unix://<tmp>/docker.sock`): the CLI parses and
merges the compose files exactly as it would against the lab, and what it sends is
recorded, above all the service specs. Nothing runs. Any request it does not expect is
answered 404 and recorded in `unexpected`, so a test fails loudly if the CLI starts
asking for something new.
"""
from __future__ import annotations

import json
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path


class FakeSwarmManager:
    def __init__(self, socket_path: Path, secrets: tuple[str, ...] = ()):
        self.socket_path = socket_path
        self.secrets = {name: {"ID": f"secret-{name}", "Spec": {"Name": name}} for name in secrets}
        self.configs: dict[str, dict] = {}
        self.networks: dict[str, dict] = {}
        self.services: dict[str, dict] = {}
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def address_string(self):  # a unix socket has no peer address
                return "unix"

            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with fake._lock:
                    status, answer = fake.answer_request(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Api-Version", "1.41")
                self.send_header("Ostype", "linux")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = handle_any

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(str(socket_path), Handler)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def answer_request(self, method: str, target: str, body) -> tuple[int, object]:
        """The answer to a request as sent (`target`: the path with its API version and
        query); `answer` has the path alone."""
        return self.answer(method, re.sub(r"^/v1\.\d+", "", target.split("?")[0]), body)

    def answer(self, method: str, path: str, body) -> tuple[int, object]:
        if path == "/_ping":
            return 200, "OK"
        if path == "/info":
            return 200, {"OSType": "linux", "Swarm": {"NodeID": "node-1", "LocalNodeState": "active",
                                                      "ControlAvailable": True}}
        if path == "/networks" and method == "GET":
            return 200, list(self.networks.values())
        if path == "/networks/create":
            self.networks[body["Name"]] = {"Id": f"net-{body['Name']}", **body}
            return 201, {"Id": f"net-{body['Name']}"}
        if path == "/secrets" and method == "GET":
            return 200, list(self.secrets.values())
        if path == "/configs" and method == "GET":
            return 200, list(self.configs.values())
        if path.startswith("/configs/") and method == "GET":  # inspect before create
            name = path.split("/", 2)[2]
            if name in self.configs:
                return 200, self.configs[name]
            return 404, {"message": f"config {name} not found"}
        if path == "/configs/create":
            self.configs[body["Name"]] = {"ID": f"config-{body['Name']}", "Spec": body}
            return 201, {"ID": f"config-{body['Name']}"}
        if path == "/services" and method == "GET":
            return 200, []
        if path == "/services/create":
            self.services[body["Name"]] = body
            return 201, {"ID": f"service-{body['Name']}"}
        self.unexpected.append(f"{method} {path}")
        return 404, {"message": f"the fake manager does not answer {method} {path}"}

    def __enter__(self) -> "FakeSwarmManager":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeSwarmReads(FakeSwarmManager):
    """A swarm manager that answers what Prometheus's Swarm service discovery reads
    (dockerswarm_sd_configs, role tasks): nodes, services, tasks and networks, given as
    Engine API objects. Anything else is answered 404 and recorded in `unexpected`."""

    def __init__(self, socket_path: Path, nodes: list[dict], services: list[dict],
                 tasks: list[dict], networks: list[dict]):
        super().__init__(socket_path)
        self.reads = {"/nodes": nodes, "/services": services, "/tasks": tasks,
                      "/networks": networks}

    def answer(self, method: str, path: str, body) -> tuple[int, object]:
        if method == "GET" and path in self.reads:
            return 200, self.reads[path]
        if path == "/_ping":
            return 200, "OK"
        self.unexpected.append(f"{method} {path}")
        return 404, {"message": f"the fake manager does not answer {method} {path}"}
