"""The Recorder's wiring, against fakes of what it polls: a Prometheus (and receiver
/metrics) on loopback and a swarm manager on a unix socket. What it makes of the answers
is tested in test_recorder_parsing.py; here, that it asks, keeps asking when an answer
fails, and puts everything on one clock."""
from __future__ import annotations

import json
import socket
import socketserver
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from tests.lab.config import LabConfig, Node
from tests.lab.instruments.events import read_events
from tests.lab.instruments.probe import ProbeResult, Sample
from tests.lab.instruments.recorder import Recorder

WORKER_1, WORKER_2 = "node-worker-1-00000000000", "node-worker-2-00000000000"
OLD, NEW = "oldtask000000000000000000", "newtask000000000000000000"


def task(tid, node, state, desired="running", at="2026-11-27T10:10:20Z"):
    return {"ID": tid, "NodeID": node, "DesiredState": desired, "UpdatedAt": at,
            "Status": {"State": state, "Timestamp": at, "Message": state}}


class FakeLab:
    """What the lab would answer, changed by the test between polls. Anything else the
    recorder asks is answered 404 and listed in `unexpected`."""

    def __init__(self, tmp_path):
        self.tasks = [task(OLD, WORKER_1, "running")]
        self.alerts: list[dict] = []
        self.cpu = 5.0
        self.received = 0
        self.unexpected: list[str] = []
        self.asked: Counter[str] = Counter()  # path -> requests answered
        self._asked_lock = threading.Lock()
        self.http = self._serve_http()
        self.docker = self._serve_docker(tmp_path / "manager.sock")
        # One node (the manager, whose Docker is the fake socket), whose detection
        # Prometheus is this fake too: the recorder reads each task's % there and the
        # alerts of every Prometheus.
        port = self.http.server_address[1]
        self.cfg = LabConfig(run_dir=tmp_path, prometheus_port=port, receiver_port=port,
                             nodes=(Node("manager", "127.0.0.1", "manager"),),
                             node_prometheus_base_port=port)

    def answer(self, path: str, query: dict) -> tuple[int, object]:
        with self._asked_lock:
            self.asked[path] += 1
        now = time.time()
        if path == "/api/v1/query":
            q = query["query"][0]
            if "threshold" in q:
                result = [{"metric": {"__name__": "swarmguard:threshold:cpu_percent"}, "value": [now, "70"]}]
            elif "task_cpu" not in q:  # the service's replicas: not watched here
                result = []
            else:
                result = [{"metric": {"__name__": "swarmguard:task_cpu:percent", "service": "victim",
                                      "task_id": OLD, "node_id": WORKER_1}, "value": [now, str(self.cpu)]}]
            return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
        if path == "/api/v1/alerts":
            return 200, {"status": "success", "data": {"alerts": self.alerts}}
        if path == "/api/v1/rules":
            return 200, {"status": "success", "data": {"groups": [{"name": "g", "rules": [
                {"name": "SwarmGuardMigrate", "type": "alerting", "duration": 2}]}]}}
        if path == "/metrics":
            return 200, ('swarmguard_alerts_received_total{alertname="SwarmGuardMigrate",status="firing"} '
                         f"{self.received}\n")
        if path == "/nodes":
            return 200, [{"ID": WORKER_1, "Description": {"Hostname": "worker-1"}},
                         {"ID": WORKER_2, "Description": {"Hostname": "worker-2"}}]
        if path == "/services/victim":
            return 200, {"ID": "svc-victim", "Spec": {"Name": "victim", "Mode": {"Replicated": {"Replicas": 1}}}}
        if path.startswith("/services/"):
            return 404, {"message": f"service {path.rsplit('/', 1)[1]} not found"}
        if path == "/tasks" and json.loads(query["filters"][0]) == {"service": ["svc-victim"]}:
            return 200, self.tasks
        self.unexpected.append(path)
        return 404, {"message": "unexpected"}

    def _handler(self):
        lab = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def address_string(self):
                return "fake"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlparse(self.path)
                # Whatever API version the lab's clients pin: the fake answers them all.
                path = re.sub(r"^/v1\.\d+", "", url.path)
                status, body = lab.answer(path, parse_qs(url.query))
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
        return Handler

    def _serve_http(self):
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return server

    def _serve_docker(self, path):
        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True
        server = Server(str(path), self._handler())
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return server

    def close(self):
        for server in (self.http, self.docker):
            server.shutdown()
            server.server_close()


@pytest.fixture
def lab(tmp_path):
    fake = FakeLab(tmp_path)
    yield fake
    fake.close()
    assert fake.unexpected == []


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_migration_seen_by_polling_becomes_alert_webhook_and_task_events(lab):
    with Recorder(lab.cfg, ["victim"], interval=0.05) as rec:
        assert rec.running_tasks("victim") == [("oldtask00000", "worker-1")]
        rec.event("stress", "CPU stress started on victim", "victim", task=OLD)
        lab.cpu = 95.0
        lab.alerts = [{"labels": {"alertname": "SwarmGuardMigrate", "service": "victim", "task_id": OLD,
                                  "node_id": WORKER_1}, "state": "firing",
                       "activeAt": "2026-11-27T10:10:21Z"}]
        wait_until(lambda: any(e.kind == "alert_firing" for e in rec.timeline().events))
        lab.received = 1
        lab.tasks = [task(OLD, WORKER_1, "running", desired="shutdown", at="2026-11-27T10:10:25Z"),
                     task(NEW, WORKER_2, "running", at="2026-11-27T10:10:24Z")]
        lab.alerts = []
        wait_until(lambda: {"webhook", "task_running", "task_shutdown", "alert_resolved"}
                   <= {e.kind for e in rec.timeline().events})
    timeline = rec.timeline("fake migration")
    texts = [e.text for e in timeline.ordered_events()]
    assert "SwarmGuardMigrate firing for victim (task oldtask00000 on worker-1)" in texts
    assert [t for t in texts if t.startswith("receiver got SwarmGuardMigrate")]
    assert "task newtask00000 running on worker-2" in texts
    assert "task oldtask00000 on worker-1 shut down (desired state shutdown)" in texts
    [cpu] = [s for s in timeline.series if s.metric == "cpu"]
    assert (cpu.task, cpu.node) == ("oldtask00000", "worker-1")
    assert max(v for _, v in cpu.points) == 95.0
    assert timeline.thresholds["cpu_percent"] == 70.0
    assert timeline.t0 == next(e.at for e in timeline.events if e.kind == "stress")
    assert not timeline.poll_errors


def test_the_baseline_is_not_reported_as_changes(lab):
    watched = ("/tasks", "/api/v1/alerts", "/metrics")  # the service's tasks, the alerts, the receiver
    with Recorder(lab.cfg, ["victim"], interval=0.05) as rec:
        # The baseline at start, then at least two polls of the same, unchanged world.
        wait_until(lambda: all(lab.asked[path] >= 3 for path in watched))
    assert rec.timeline().events == ()
    assert not rec.timeline().poll_errors


def test_failing_polls_are_counted_and_the_recorder_keeps_going(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg = LabConfig(run_dir=tmp_path, prometheus_port=closed, receiver_port=closed)
    with Recorder(cfg, ["victim"], interval=0.02) as rec:
        wait_until(lambda: all(rec.errors[source] >= 3 for source in ("prometheus", "docker", "receiver")))
        rec.event("note", "still recording")
    timeline = rec.timeline()
    assert timeline.poll_errors["prometheus"] >= 3
    assert timeline.poll_errors["docker"] >= 3
    assert timeline.poll_errors["receiver"] >= 3
    assert [e.text for e in timeline.events] == ["still recording"]
    assert "ConnectionError" in rec.last_error["prometheus"]


def test_probe_samples_are_put_on_the_wall_clock_from_the_probes_start(tmp_path):
    rec = Recorder(LabConfig(run_dir=tmp_path), ["victim"])  # never started: nothing polled
    result = ProbeResult([Sample(0.0, True, 200, "worker-1", None, 0.01),
                          Sample(0.05, False, None, None, "ConnectTimeout", 2.0)])
    rec.add_probe(result, probe_t0_wall=1000.0)
    probes = rec.timeline(t0=1000.0).probes
    assert [(p.at, p.ok, p.node) for p in probes] == [(1000.0, True, "worker-1"), (1000.05, False, None)]


def test_the_receivers_events_are_added_once_even_if_read_twice(tmp_path):
    log = tmp_path / "receiver.log"
    log.write_text('{"seq":1,"type":"decision","at":"2026-11-27T10:10:24.300000Z",'
                   '"alert":"SwarmGuardMigrate","service":"victim","task":null,"node":null,'
                   '"kind":"migrate","result":"act","reason":null,"message":"Migrating victim '
                   'off worker-1: start-first, excluding worker-1","starts_at":null,'
                   '"received_at":null,"duration_s":null}\n')
    rec = Recorder(LabConfig(run_dir=tmp_path), ["victim"])
    assert rec.add_receiver_events(read_events(log), since_wall=0) == 1
    assert rec.add_receiver_events(read_events(log), since_wall=0) == 0
    assert [e.kind for e in rec.timeline().events] == ["action_started"]


def test_an_alert_already_active_at_the_start_is_reported_at_its_own_times(lab):
    lab.alerts = [{"labels": {"alertname": "SwarmGuardMigrate", "service": "victim", "task_id": OLD,
                              "node_id": WORKER_1}, "state": "firing", "activeAt": "2026-11-27T10:10:21Z"}]
    with Recorder(lab.cfg, ["victim"], interval=0.05) as rec:
        pass
    assert [(e.kind, e.at) for e in rec.timeline().events] == [
        ("alert_pending", 1795774221.0), ("alert_firing", 1795774223.0)]  # activeAt, + for: 2s
