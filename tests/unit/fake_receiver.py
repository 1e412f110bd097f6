"""A stand-in for the receiver's maintenance API (docs/contract.md, "Maintenance") on
127.0.0.1, for the CLI's specs; and builders of the documents that API answers.

Each test scripts the answers per method and path, in order (the last one repeats). The
token is checked as the receiver checks it (401 with its sentence). Every request is
recorded; one the script does not expect is answered 404 and kept in `unexpected`, so a
test fails loudly when the CLI starts asking for something new.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "s3cret-token"

# Answers besides (status, document) and a bare document (200):
DROP = "drop"  # close the connection without an answer (a receiver going away)
HANG = "hang"  # answer nothing until the test ends (a receiver that is stuck)


@dataclass(frozen=True)
class Raw:
    """An answer whose body is not JSON (a proxy's error page, a wrong --url)."""
    status: int
    text: str


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any


class FakeReceiver:
    def __init__(self, token: str = TOKEN):
        self.token = token
        self.requests: list[Request] = []
        self.unexpected: list[Request] = []
        self._script: dict[tuple[str, str], list] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, self.headers.get("Authorization"),
                                  json.loads(raw) if raw else None)
                answer = fake._next(request)
                if answer == DROP:
                    self.close_connection = True
                    return
                if answer == HANG:
                    fake._release.wait(30)
                    return
                if isinstance(answer, Raw):
                    status, data, kind = answer.status, answer.text.encode(), "text/html"
                else:
                    status, document = answer if isinstance(answer, tuple) else (200, answer)
                    data, kind = json.dumps(document).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = handle_any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def on(self, method: str, path: str, *answers) -> None:
        """Answer `method path` with these, in order; the last one again ever after."""
        self._script[(method, path)] = list(answers)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def _next(self, request: Request):
        with self._lock:
            self.requests.append(request)
            if request.authorization != f"Bearer {self.token}":
                return 401, {"error": "missing or wrong bearer token"}
            answers = self._script.get((request.method, request.path))
            if not answers:
                self.unexpected.append(request)
                return 404, {"error": f"not expected: {request.method} {request.path}"}
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def __enter__(self) -> FakeReceiver:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


# -- documents, as the API describes them ------------------------------------------------

WORKER_1 = {"id": "n1workerone0000000000000a", "hostname": "worker-1"}


def drain_plan(moves=(), left=(), blocked=(), node=WORKER_1) -> dict:
    return {"node": dict(node), "moves": list(moves), "left": list(left),
            "blocked": list(blocked)}


def move(service: str, *tasks: str, replicas: int = 2, note: str | None = None) -> dict:
    return {"service": service, "tasks": list(tasks), "replicas": replicas, "note": note}


def task_why(service: str, task: str, why: str) -> dict:
    return {"service": service, "task": task, "why": why}


def moved(service: str, task: str, to: str = "worker-2", seconds: float = 3.25,
          result: str = "success") -> dict:
    return {"service": service, "task": task, "to": to, "seconds": seconds, "result": result}


def drain_state(state: str = "moving", moved_tasks=(), remaining=(), current: str | None = None,
                problem: str | None = None, force: bool = False) -> dict:
    return {"state": state, "started_at": "2026-12-04T10:00:00Z", "force": force,
            "moved": list(moved_tasks),
            "remaining": [{"service": s, "tasks": n} for s, n in remaining],
            "current": current, "problem": problem}


def node(hostname: str, node_id: str, *, role: str = "worker", availability: str = "active",
         state: str = "ready", tasks: int = 0, hot: bool = False, drain: dict | None = None) -> dict:
    return {"id": node_id, "hostname": hostname, "role": role, "availability": availability,
            "state": state, "tasks": tasks, "hot": hot, "drain": drain}


def status(nodes=(), services=(), in_flight=(), rebalance=None, recent=(),
           dry_run: bool = False) -> dict:
    return {"receiver": {"dry_run": dry_run, "url": None}, "nodes": list(nodes),
            "services": list(services), "in_flight": list(in_flight), "rebalance": rebalance,
            "recent": list(recent)}


def worker_1_draining(drain: dict) -> dict:
    """/status while worker-1 is being drained (its availability is the receiver's business)."""
    return status(nodes=[node("worker-1", WORKER_1["id"], availability="drain", tasks=3,
                              drain=drain),
                         node("worker-2", "n2workertwo0000000000000b", tasks=4)])
