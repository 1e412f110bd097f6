"""A stand-in webhook endpoint on the receiver's port: records what Alertmanager delivers
and when, so detection can be tested and timed without the receiver acting."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Delivery:
    received: float  # time.time() at receipt
    authorization: str
    body: dict

    def alerts(self, alertname: str | None = None, service: str | None = None, status: str | None = None):
        return [a for a in self.body.get("alerts", [])
                if (alertname is None or a["labels"].get("alertname") == alertname)
                and (service is None or a["labels"].get("service") == service)
                and (status is None or a["status"] == status)]


class WebhookSink:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                delivery = Delivery(time.time(), self.headers.get("Authorization", ""), json.loads(body))
                with sink._cond:
                    sink.deliveries.append(delivery)
                    sink._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookSink":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def matching(self, alertname: str, service: str, status: str = "firing", since: float = 0.0):
        with self._cond:
            return self._matching(alertname, service, status, since)

    def wait(self, alertname: str, service: str, status: str = "firing", since: float = 0.0,
             timeout: float = 60.0):
        """The first (delivery, alert) matching, waiting up to timeout; None if none came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._matching(alertname, service, status, since)
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def _matching(self, alertname, service, status, since):
        return [(d, a) for d in self.deliveries if d.received >= since
                for a in d.alerts(alertname, service, status)]
