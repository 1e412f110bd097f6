"""The Flask application: Alertmanager's webhook in, a fast acknowledgement out.

`create_app()` is the WSGI factory gunicorn calls (`receiver.app:create_app()`). Tests and
the lab pass their own settings, Docker client (a fake or a node's socket) and executor.

POST /maintenance/drain, /maintenance/undrain, /maintenance/rebalance and GET /status
(token required) are the `swarmguard` command line's (receiver/maintainer.py; the API in
docs/contract.md, "Maintenance").

POST /alerts checks, in this order, and changes nothing on any failure: bearer token (401),
content type (415), size (413), the payload itself (400, the reason in the JSON body: labels
that cannot name what they name, control characters, a startsAt in the future), room for
the work (503 with Retry-After while full or shutting down: Alertmanager retries). Then it
counts the alerts, hands them to the background Dispatcher (which takes the firing ones
as work) and answers 202.

GET /events?since=<seq> (token required) returns the structured events after `seq`
(events.py; schema in docs/contract.md). GET /readyz answers from a state refreshed in the
background (readiness.py): no request ever waits for Docker.
"""
from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver import events as E
from receiver.actuator import Actuator
from receiver.cluster import NegotiatingClient, connect
from receiver.gate import WriteGate
from receiver.config import Settings, load_settings
from receiver.confirmation import FiringAlerts
from receiver.prometheus import prometheus_of
from receiver import ground_truth
from receiver.metrics import Metrics
from receiver.payload import ParseCache, PayloadError, TooManyServices, quoted
from receiver.readiness import Readiness
from receiver.reporting import Reporter
from receiver.maintainer import Maintainer, Unavailable
from receiver.maintenance import Refused
from receiver.maintenance_request import BadRequest, node_name, parse_request
from receiver.storm import StormLedger
from receiver.worker import RETRY_FULL_S, Dispatcher, WorkRefused
from swarmguard_config.rfc3339 import utc_now

# The key of app.extensions under which an app holds its Receiver (gunicorn.conf.py and
# serving.py look for it to tell the receiver from another app).
EXTENSION = "swarmguard"


@dataclass(frozen=True)
class Receiver:
    """What one receiver app is made of, beyond its routes: reached by the SIGTERM steps
    (stop_taking_work, finish_work), the serving worker and tests."""
    settings: Settings
    api: NegotiatingClient
    metrics: Metrics
    events: E.EventLog
    # Every log line, metric and event: of what arrives, and (the same Reporter, handed
    # to them) of the Actuator's, the Dispatcher's and the Maintainer's work.
    report: Reporter
    storm: StormLedger
    readiness: Readiness
    ground_truth: ground_truth.GroundTruthLoop | None
    dispatcher: Dispatcher
    maintainer: Maintainer


def receiver_of(app: Flask) -> Receiver:
    return app.extensions[EXTENSION]


def create_app(settings: Settings | None = None, api=None, *,
               executor: Executor | None = None,
               clock: Callable[[], datetime] = utc_now,
               sleep: Callable[[float], None] = time.sleep,
               publish_ground_truth: bool | None = None,
               readiness_thread: bool | None = None,
               maintenance_thread: bool | None = None,
               firing_alerts: Callable[[], FiringAlerts] | None = None) -> Flask:
    """Build the receiver. With no arguments: settings from SWARMGUARD_* (ConfigError if
    there is no token: refuse to start rather than run open) and the configured daemon.

    Two background readers of Docker, each on by default when the app connects to Docker
    itself and off when a test passes its own `api`: publish_ground_truth, detection
    health (receiver/ground_truth.py); readiness_thread, /readyz's answer
    (receiver/readiness.py; without it the caller calls check()); maintenance_thread, the
    drains and rebalances (receiver/maintainer.py; without it the caller calls tick()).

    `firing_alerts` (which alerts Prometheus fires: receiver/confirmation.py) is asked
    of SWARMGUARD_PROMETHEUS_URL when the app connects to Docker itself and
    SWARMGUARD_CONFIRM_WITH_PROMETHEUS is on; a test that passes its own `api` passes its
    own, or none (every alert counts as confirmed)."""
    settings = settings or load_settings()
    # Where log lines go is the process's business (configure_logging); how much the
    # receiver says is one of its settings.
    logging.getLogger("receiver").setLevel(settings.log_level.upper())
    api_given = api is not None
    if firing_alerts is None and not api_given and settings.confirm_with_prometheus:
        firing_alerts = prometheus_of(settings).firing_alerts
    elif firing_alerts is None and not api_given:
        logging.getLogger("receiver.app").warning("SWARMGUARD_CONFIRM_WITH_PROMETHEUS is off: any alert that reaches "
                    "this receiver with the token is acted on, whether Prometheus fires "
                    "it or not")
    receiver = _assemble(settings, connect(settings, api), executor, clock, sleep,
                         firing_alerts,
                         not api_given if publish_ground_truth is None else publish_ground_truth)

    app = Flask("receiver")
    app.extensions[EXTENSION] = receiver
    _route_alerts(app, receiver, clock)
    _route_probes(app, receiver)
    _route_maintenance(app, receiver)

    if not api_given if readiness_thread is None else readiness_thread:
        receiver.readiness.start()
    # `started` is the first event of every run (docs/contract.md): before the maintainer
    # can resume a drain and say so.
    receiver.report.started(settings.dry_run, settings.describe())
    if not api_given if maintenance_thread is None else maintenance_thread:
        receiver.maintainer.start()
    return app


def _assemble(settings: Settings, api: NegotiatingClient, executor: Executor | None,
              clock: Callable[[], datetime], sleep: Callable[[float], None],
              firing_alerts: Callable[[], FiringAlerts] | None,
              publish_ground_truth: bool) -> Receiver:
    """The receiver's parts, wired to one another; no thread started but ground truth's."""
    metrics = Metrics()
    events = E.EventLog(settings.event_buffer, clock)
    report = Reporter(metrics, events)
    # Detection health (docs/contract.md): which opted-in tasks run where, and whether Docker answers.
    truth = (ground_truth.install(api, metrics.registry, on_error=report.count_docker_error)
             if publish_ground_truth else None)
    storm = StormLedger.from_settings(settings)
    # Closed at the shutdown deadline: from then on nothing writes to Docker (gate.py).
    gate = WriteGate()
    actuator = Actuator(api, settings, metrics, clock=clock, sleep=sleep, events=events,
                        storm=storm, firing_alerts=firing_alerts, gate=gate, report=report)
    return Receiver(
        settings=settings, api=api, metrics=metrics, events=events, report=report,
        storm=storm, readiness=Readiness(api, settings.readiness_interval),
        ground_truth=truth,
        dispatcher=Dispatcher(actuator.handle, metrics, events, executor=executor,
                              workers=settings.workers,
                              max_pending_services=settings.max_pending_services,
                              clock=clock, gate=gate, report=report),
        maintainer=Maintainer(api, actuator, storm, report, settings,
                              events=events, clock=clock))


def _reject(receiver: Receiver, code: int, reason: str, **headers: str):
    receiver.report.rejected(request.remote_addr, code, reason)
    return jsonify(error=reason), code, headers


def _unauthorised(receiver: Receiver):
    """The 401 for a request without the bearer token, or None when it has it."""
    expected = f"Bearer {receiver.settings.token}".encode()
    if _authorised(request.headers.get("Authorization", ""), expected):
        return None
    return _reject(receiver, 401, "missing or wrong bearer token",
                   **{"WWW-Authenticate": "Bearer"})


def _json_body(receiver: Receiver) -> bytes | tuple:
    """The body of a request that must be JSON, or the refusal: token (401), content type
    (415), size (413), or a body that cannot be read (400)."""
    refused = _unauthorised(receiver)
    if refused:
        return refused
    if request.mimetype != "application/json":
        return _reject(receiver, 415, f"content type must be application/json, "
                                      f"got {request.mimetype or 'none'}")
    body = _read_body(receiver.settings.max_body_bytes)
    return _reject(receiver, *body) if isinstance(body, tuple) else body


def _route_alerts(app: Flask, receiver: Receiver, clock: Callable[[], datetime]) -> None:
    settings, report, dispatcher = receiver.settings, receiver.report, receiver.dispatcher
    parsed = ParseCache()

    @app.post("/alerts")
    def alerts():
        body = _json_body(receiver)
        if isinstance(body, tuple):
            return body
        now = clock()
        try:
            webhook = parsed.parse(body, now, settings.max_future_skew,
                                   settings.max_pending_services)
        except PayloadError as exc:
            return _reject(receiver, 400, exc.reason)
        except TooManyServices as exc:
            return _reject(receiver, 503, exc.reason, **{"Retry-After": str(RETRY_FULL_S)})
        firing = webhook.firing
        try:
            # The Dispatcher takes only the firing alerts as work (worker.py).
            receipt = dispatcher.submit(webhook.alerts)
        except WorkRefused as exc:
            return _reject(receiver, 503, exc.reason, **{"Retry-After": str(exc.retry_after_s)})

        # Which tasks and nodes are hot now, for every later decision (receiver/storm.py).
        receiver.storm.observe(webhook.alerts)
        report.received(webhook, now)
        # json.dumps straight into a Response: this is the hot path of every webhook, and
        # jsonify's provider machinery cost a tenth of it (make bench-receiver).
        return Response(json.dumps({"status": "accepted", "firing": len(firing),
                                    "resolved": len(webhook.alerts) - len(firing),
                                    "queued": list(receipt.queued),
                                    "in_progress": list(receipt.busy)}),
                        status=202, mimetype="application/json")


def _route_probes(app: Flask, receiver: Receiver) -> None:
    """/healthz, /readyz, /metrics and /events: what watches the receiver."""

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        ready, answer = receiver.readiness.current()
        return jsonify(answer), 200 if ready else 503

    @app.get("/events")
    def events_endpoint():
        refused = _unauthorised(receiver)
        if refused:
            return refused
        since = request.args.get("since", "0")
        if not since.isascii() or not since.isdigit():
            return _reject(receiver, 400, f"since must be a whole number (an event's seq), "
                                          f"got {quoted(since)}")
        # Any whole number is a place in the stream, and past the last event there is
        # nothing yet (EventLog.since): a number too long to be a seq (int() refuses more
        # than 4,300 digits) is read as the largest one, with the same answer.
        digits = since.lstrip("0") or "0"
        found, last, missed = receiver.events.since(
            int(digits) if len(digits) <= 19 else sys.maxsize)
        # json.dumps keeps each event's keys in the documented order (jsonify sorts them).
        return Response(json.dumps({"events": found, "last": last, "missed": missed}),
                        mimetype="application/json")

    @app.get("/metrics")
    def metrics_endpoint():
        return Response(generate_latest(receiver.metrics.registry),
                        mimetype=CONTENT_TYPE_LATEST)


def _route_maintenance(app: Flask, receiver: Receiver) -> None:
    """The `swarmguard` command line's API (swarmguard_cli/)."""
    maintainer = receiver.maintainer

    def maintenance_request(allowed: tuple[str, ...]):
        """The JSON object a /maintenance request carries, or the refusal to answer: the
        same checks as /alerts (token, content type, size), then the fields' types."""
        body = _json_body(receiver)
        if isinstance(body, tuple):
            return None, body
        try:
            fields = parse_request(body, allowed)
        except BadRequest as exc:
            return None, _reject(receiver, 400, exc.reason)
        return fields, None

    def maintenance_answer(work):
        try:
            status, answer = work()
        except Refused as exc:
            receiver.report.rejected(request.remote_addr, exc.status, exc.reason)
            plan = exc.plan.as_json() if exc.plan is not None else None
            return jsonify(error=exc.reason, plan=plan), exc.status
        except Unavailable as exc:
            return _reject(receiver, 503, f"Docker cannot be reached: {exc}",
                           **{"Retry-After": "5"})
        return jsonify(answer), status

    @app.post("/maintenance/drain")
    def drain():
        fields, refused = maintenance_request(("node", "force", "dry_run"))
        if refused:
            return refused
        return maintenance_answer(lambda: maintainer.drain(
            node_name(fields), bool(fields.get("force")), bool(fields.get("dry_run"))))

    @app.post("/maintenance/undrain")
    def undrain():
        fields, refused = maintenance_request(("node", "dry_run"))
        if refused:
            return refused
        return maintenance_answer(lambda: maintainer.undrain(
            node_name(fields), bool(fields.get("dry_run"))))

    @app.post("/maintenance/rebalance")
    def rebalance():
        fields, refused = maintenance_request(("dry_run",))
        if refused:
            return refused
        return maintenance_answer(lambda: maintainer.rebalance(bool(fields.get("dry_run"))))

    @app.get("/status")
    def status():
        refused = _unauthorised(receiver)
        if refused:
            return refused
        return maintenance_answer(lambda: (200, maintainer.status()))


def stop_taking_work(app: Flask) -> None:
    """SIGTERM, first moment: every webhook from now on gets 503 (Alertmanager resends
    it, to this receiver's successor). Safe in a signal handler: it takes one lock."""
    receiver_of(app).dispatcher.stop_accepting()


def finish_work(app: Flask) -> int:
    """SIGTERM, after the last request: drop waiting work and give running work until
    SWARMGUARD_SHUTDOWN_DEADLINE, then let nothing write to Docker any more (what still
    runs is reported dropped or unwatched: worker.Dispatcher.drain); returns how many
    services' work was given up."""
    receiver = receiver_of(app)
    receiver.readiness.stop()
    receiver.maintainer.stop()
    dropped = receiver.dispatcher.drain(receiver.settings.shutdown_deadline)
    dropped += receiver.maintainer.give_up()  # the gate is closed now
    receiver.report.shut_down(dropped)
    return dropped


def _read_body(limit: int) -> bytes | tuple[int, str]:
    """The request body, or (status, reason) to refuse it with: 413 if it is longer than
    `limit` (the one size check, for a declared Content-Length, refused unread, and a
    chunked body, counted as it is read), 400 if it cannot be read.

    receiver/serving.py refuses bad framing before the app sees it; what is left (another
    worker class, a client gone mid-body) raises the server's own errors, which share no
    base class: a 400, never a 500."""
    try:
        body = _body_within(limit)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return 400, f"the body could not be read ({type(exc).__name__})"
    return body if body is not None else (413, f"body larger than {limit} bytes")


def _body_within(limit: int) -> bytes | None:
    stream = request.stream
    if request.content_length is not None:
        if request.content_length > limit:
            return None
        # One read: the stream ends there.
        return stream.read(request.content_length)
    chunks, size = [], 0
    while True:
        chunk = stream.read(64 * 1024)
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


def configure_logging() -> None:
    """The process's log output, set by its entry point (gunicorn.conf.py, in the worker
    before it builds the app): a line per record with its time, level and logger, and
    event lines that are the JSON object alone, so that a reader needs no regex. A
    process that has handlers already (a test run) keeps its own."""
    if logging.getLogger().handlers:
        return
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    events = logging.getLogger(E.EVENTS_LOGGER)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    events.addHandler(handler)
    events.propagate = False
