"""The stress app: a Flask application factory, served by gunicorn (gunicorn.conf.py).

    GET  /health                 200 {"status": "ok"}
    GET  /                       a small hello naming the task
    GET|POST /stress/cpu?target=<percent>&duration=<s>&ramp=<s>
    GET|POST /stress/memory?mb=<n>&duration=<s>&ramp=<s>
    GET|POST /stress/network?mbps=<n>&duration=<s>&ramp=<s>&target=<host:port>
    GET|POST /stress/combined?cpu=&memory=&network=&duration=&ramp=&target=
    GET|POST /stress/stop[?kind=cpu|memory|network]
    GET|POST /stress/status

Parameters come from the query string, a form body or a JSON object body. Every
response carries X-Swarm-Task, X-Swarm-Node, X-Swarm-Service and X-Hostname.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from stress import jobs, netsink
from stress.cgroup import read_allowance
from stress.config import StressConfig
from stress.params import (Bounds, CombinedRequest, NetworkRequest, ParamError, parse_combined,
                           parse_cpu, parse_memory, parse_network, parse_stop)
from stress.runner import StressController, stop_all

log = logging.getLogger(__name__)
METHODS = ["GET", "POST"]
_atexit_registered = False


def create_app(config: StressConfig | None = None, controller: StressController | None = None):
    config = config or StressConfig.from_env()
    controller = controller or StressController(config.start_method, config.stop_timeout_s)
    _stop_at_exit()

    app = Flask(__name__)
    app.json.sort_keys = False
    app.extensions["stress"] = controller
    if config.startup_cpu_s > 0:
        _burn_at_start(config, controller)
    identity_headers = config.identity.headers()

    @app.after_request
    def attribute(response):
        # Every response, errors included: a probe must know who answered a 500 too.
        response.headers.update(identity_headers)
        return response

    @app.errorhandler(ParamError)
    def bad_parameter(error: ParamError):
        return jsonify(error="bad parameter", parameter=error.parameter, reason=error.reason), 400

    @app.errorhandler(netsink.SinkError)
    def bad_sink(error: netsink.SinkError):
        return jsonify(error="bad parameter", parameter="target", reason=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(error=error.name, reason=error.description), error.code

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.get("/")
    def hello():
        return jsonify(
            message="hello from the SwarmGuard stress app",
            task=config.identity.task,
            node=config.identity.node,
            service=config.identity.service,
            hostname=config.identity.hostname,
        )

    @app.route("/stress/cpu", methods=METHODS)
    def stress_cpu():
        allowance = _allowance(config)
        req = parse_cpu(_values(), Bounds.from_limits(config.limits, allowance))
        plan = jobs.cpu(req, allowance.cpu_cores, config)
        return jsonify(started=[controller.start(plan)])

    @app.route("/stress/memory", methods=METHODS)
    def stress_memory():
        allowance = _allowance(config)
        req = parse_memory(_values(), Bounds.from_limits(config.limits, allowance))
        return jsonify(started=[controller.start(jobs.memory(req, config))])

    @app.route("/stress/network", methods=METHODS)
    def stress_network():
        allowance = _allowance(config)
        req = parse_network(_values(), Bounds.from_limits(config.limits, allowance))
        return jsonify(started=[controller.start(_network_plan(req, config))])

    @app.route("/stress/combined", methods=METHODS)
    def stress_combined():
        allowance = _allowance(config)
        req = parse_combined(_values(), Bounds.from_limits(config.limits, allowance))
        # Build every plan before starting any, so a bad sink starts nothing.
        plans = _combined_plans(req, allowance.cpu_cores, config)
        return jsonify(started=[controller.start(plan) for plan in plans])

    @app.route("/stress/stop", methods=METHODS)
    def stress_stop():
        return jsonify(stopped=controller.stop(parse_stop(_values())))

    @app.route("/stress/status", methods=METHODS)
    def stress_status():
        allowance = _allowance(config)
        bounds = Bounds.from_limits(config.limits, allowance)
        return jsonify(
            running=controller.status(),
            allowance={
                "cpu_cores": allowance.cpu_cores,
                "cpu_source": allowance.cpu_source,
                "memory_mb": None
                if allowance.memory_bytes is None
                else allowance.memory_bytes // (1024 * 1024),
                "memory_source": allowance.memory_source,
                "memory_stress_max_mb": bounds.max_memory_mb,
            },
            limits=config.public_limits(),
            identity=config.identity.headers(),
        )

    return app


def _values() -> dict[str, Any]:
    """Query string, form fields and a JSON object body, later ones winning."""
    values: dict[str, Any] = dict(request.args.items())
    values.update(request.form.items())
    if request.is_json:
        body = request.get_json(silent=True)
        if body is None and request.get_data():
            raise ParamError(None, "the body is not valid JSON")
        if body is not None and not isinstance(body, dict):
            raise ParamError(None, "a JSON body must be an object of parameters")
        values.update(body or {})
    return values


def _burn_at_start(config: StressConfig, controller: StressController) -> None:
    """Start-up work: the whole CPU allowance for startup_cpu_s seconds, beside serving
    (health checks pass meanwhile, as a real app's do once it listens)."""
    allowance = _allowance(config)
    request = parse_cpu({"target": "100", "duration": str(config.startup_cpu_s)},
                        Bounds.from_limits(config.limits, allowance))
    controller.start(jobs.cpu(request, allowance.cpu_cores, config))
    log.info("burning %.0f %% CPU for %.0f s of start-up work", 100, config.startup_cpu_s)


def _allowance(config: StressConfig):
    # Read per request: cheap, and a `docker update` of the limits is honoured at once.
    return read_allowance(config.cgroup_root, config.self_cgroup_path)


def _network_plan(req: NetworkRequest, config: StressConfig) -> jobs.Plan:
    route_table = None
    if not req.sink and not config.network_sink:
        try:
            route_table = Path(config.route_path).read_text()
        except OSError:
            route_table = None
    sink = netsink.choose_sink(req.sink, config.network_sink, route_table, config.default_sink_port)
    family, address = netsink.resolve(sink)
    return jobs.network(req, family, address, sink.label(), sink.source, config)


def _combined_plans(req: CombinedRequest, cpu_cores: float, config: StressConfig):
    plans = []
    if req.cpu is not None:
        plans.append(jobs.cpu(req.cpu, cpu_cores, config))
    if req.memory is not None:
        plans.append(jobs.memory(req.memory, config))
    if req.network is not None:
        plans.append(_network_plan(req.network, config))
    return plans


def _stop_at_exit() -> None:
    # Under gunicorn, gunicorn.conf.py's worker_exit hook stops everything on SIGTERM;
    # this covers any other way the process ends normally.
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(stop_all)
        _atexit_registered = True
