"""The Flask application: Alertmanager's webhook in, a fast acknowledgement out.

`create_app()` is the WSGI factory gunicorn calls (`receiver.app:create_app()`). Tests and
the lab pass their own settings, Docker client (a fake or a node's socket) and executor.

POST /alerts checks, in this order, and changes nothing on any failure: bearer token (401),
content type (415), size (413), the payload itself (400, the reason in the JSON body). Then
it counts the alerts, hands the firing ones to the background Dispatcher and answers 202.
"""
from __future__ import annotations

import hmac
import json
import logging
import time
from concurrent.futures import Executor
from datetime import datetime
from typing import Callable

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import RequestEntityTooLarge

from receiver.actuator import Actuator, utc_now
from receiver.cluster import connect, is_ready
from receiver.config import Settings, load_settings
from receiver import ground_truth
from receiver.metrics import Metrics
from receiver.payload import PayloadError, parse_webhook
from receiver.worker import Dispatcher

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, api=None, *,
               executor: Executor | None = None,
               clock: Callable[[], datetime] = utc_now,
               sleep: Callable[[float], None] = time.sleep,
               publish_ground_truth: bool | None = None) -> Flask:
    """Build the receiver. With no arguments: settings from SWARMGUARD_* (ConfigError if
    there is no token: refuse to start rather than run open) and the configured daemon.

    publish_ground_truth: read the swarm in the background for detection health
    (receiver/ground_truth.py). By default on when the app connects to Docker itself,
    off when a test passes its own `api`."""
    settings = settings or load_settings()
    _configure_logging(settings.log_level)
    if publish_ground_truth is None:
        publish_ground_truth = api is None
    api = api if api is not None else connect(settings)
    metrics = Metrics()
    # Detection health (docs/contract.md): which opted-in tasks run where, and whether Docker answers.
    truth = (ground_truth.install(api, metrics.registry,
                                  on_error=lambda op: metrics.docker_errors.labels(op).inc())
             if publish_ground_truth else None)
    actuator = Actuator(api, settings, metrics, clock=clock, sleep=sleep)
    dispatcher = Dispatcher(actuator.handle, metrics, executor=executor,
                            workers=settings.workers)

    app = Flask("receiver")
    # Werkzeug refuses a declared Content-Length over this, and caps a chunked stream at it
    # (silently, so _read_body counts too). One byte over the limit, so that a body of
    # exactly the limit is still read to its end.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["swarmguard"] = {"settings": settings, "metrics": metrics,
                                    "dispatcher": dispatcher, "api": api,
                                    "ground_truth": truth}
    expected = f"Bearer {settings.token}".encode()

    def reject(code: int, reason: str, **headers: str):
        metrics.rejected_requests.labels(str(code)).inc()
        log.warning("Rejected webhook from %s: %d %s", request.remote_addr, code, reason)
        return jsonify(error=reason), code, headers

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return reject(413, f"body larger than {settings.max_body_bytes} bytes")

    @app.post("/alerts")
    def alerts():
        if not _authorised(request.headers.get("Authorization", ""), expected):
            return reject(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        if request.mimetype != "application/json":
            return reject(415, f"content type must be application/json, "
                               f"got {request.mimetype or 'none'}")
        if (request.content_length or 0) > settings.max_body_bytes:
            return reject(413, f"body larger than {settings.max_body_bytes} bytes")
        body = _read_body(settings.max_body_bytes)
        if body is None:
            return reject(413, f"body larger than {settings.max_body_bytes} bytes")
        try:
            webhook = parse_webhook(body)
        except PayloadError as exc:
            return reject(400, exc.reason)

        now = clock()
        firing = [a for a in webhook.alerts if a.firing]
        for alert in webhook.alerts:
            metrics.count_received(alert.name, alert.status)
            if alert.firing:
                metrics.observe_age(alert.name, max((now - alert.starts_at).total_seconds(), 0.0))
            else:
                # Recorded, never acted on: the action an alert caused is not undone.
                log.info("%s for %s resolved", alert.name, alert.service)
        if webhook.truncated_alerts:
            log.warning("Alertmanager left out %d alerts of group %s (max_alerts)",
                        webhook.truncated_alerts, webhook.group_key)
        receipt = dispatcher.submit(firing)
        # json.dumps straight into a Response: this is the hot path of every webhook, and
        # jsonify's provider machinery cost a tenth of it (make bench-receiver).
        return Response(json.dumps({"status": "accepted", "firing": len(firing),
                                    "resolved": len(webhook.alerts) - len(firing),
                                    "queued": list(receipt.queued),
                                    "in_progress": list(receipt.busy)}),
                        status=202, mimetype="application/json")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        ready, reason = is_ready(api)
        return jsonify(status="ready" if ready else "not ready", reason=reason), (
            200 if ready else 503)

    @app.get("/metrics")
    def metrics_endpoint():
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    log.info("SwarmGuard receiver ready%s: %s", " in DRY-RUN mode" if settings.dry_run else "",
             settings.describe())
    return app


def _read_body(limit: int) -> bytes | None:
    """The request body, or None if it is longer than `limit` (also when chunked)."""
    chunks, size = [], 0
    while True:
        chunk = request.stream.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _authorised(header: str, expected: bytes) -> bool:
    scheme, _, credentials = header.strip().partition(" ")
    given = f"Bearer {credentials.strip()}".encode() if scheme.lower() == "bearer" else b""
    # Constant time, so the token cannot be guessed byte by byte from response times.
    return hmac.compare_digest(given, expected)


def _configure_logging(level: str) -> None:
    # Under gunicorn the root logger has no handler yet; tests may have installed their own.
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("receiver").setLevel(level.upper())
