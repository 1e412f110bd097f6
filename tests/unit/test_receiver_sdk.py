"""The receiver through the real docker SDK, against an HTTP stand-in for the Engine API on
127.0.0.1: proves what actually goes over the wire (query parameters, the whole spec)."""
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import docker
import docker.errors
import pytest

from receiver import reasons as R
from receiver.actuator import Actuator
from receiver.config import Settings
from receiver.metrics import Metrics
from receiver.payload import parse_webhook
from tests.fake_docker_api_client import WEB_ID, WORKER_2, example_api

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
NOW = datetime(2026, 11, 27, 10, 0, 31, tzinfo=timezone.utc)
BODY_TO_KWARGS = {"Name": "name", "Labels": "labels", "Mode": "mode",
                  "TaskTemplate": "task_template", "UpdateConfig": "update_config",
                  "RollbackConfig": "rollback_config", "EndpointSpec": "endpoint_spec"}


# How the stand-in spoils an answer (after doing what was asked): a proxy's HTML page
# with status 200, or the JSON answer cut off after its first bytes.
HTML, CUT_OFF = "html", "cut off"


@pytest.fixture
def engine():
    """An Engine API stand-in backed by a FakeDockerAPI; records raw update requests.
    `fake.spoiled` lists (method, HTML or CUT_OFF): the next answers of that method are
    spoiled so, in order."""
    fake = example_api()
    fake.spoiled = []
    requests_seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, code, payload):
            data = json.dumps(payload).encode()
            length, content_type = len(data), "application/json"
            spoil = next((s for s in fake.spoiled if s[0] == self.command), None)
            if spoil:
                fake.spoiled.remove(spoil)
                if spoil[1] == HTML:
                    data = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                    length, content_type = len(data), "text/html"
                else:
                    data = data[:8]  # the length announced, then the connection closes
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(data)

        def call(self, fn):
            try:
                self.answer(200, fn())
            except docker.errors.APIError as exc:
                self.answer(exc.status_code, {"message": exc.explanation})

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            parts = url.path.split("/")[2:]  # drop "", "v1.41"
            if parts[0] == "services":
                requests_seen.append(("GET", url.path, query))
                self.call(lambda: fake.inspect_service(
                    parts[1], insert_defaults=query.get("insertDefaults") == ["True"]))
            elif parts[0] == "tasks":
                filters = json.loads(query["filters"][0])
                self.call(lambda: fake.tasks(filters={"service": filters["service"][0]}))
            elif parts[0] == "nodes":
                self.call(fake.nodes)
            else:
                self.answer(404, {"message": "not here"})

        def do_POST(self):
            url = urlparse(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            version = int(parse_qs(url.query)["version"][0])
            requests_seen.append(("POST", url.path, version, body))
            service_id = url.path.split("/")[3]
            kwargs = {BODY_TO_KWARGS[k]: v for k, v in body.items()}
            self.call(lambda: fake.update_service(service_id, version, **kwargs))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api = docker.APIClient(base_url=f"tcp://127.0.0.1:{server.server_port}", version="1.41",
                           timeout=5)
    yield api, fake, requests_seen
    server.shutdown()
    server.server_close()


def alerts(name):
    return list(parse_webhook((FIXTURES / name).read_bytes()).alerts)


def handled(api, webhook):
    """What an Actuator talking through `api` makes of the recorded webhook's one alert,
    and its metrics."""
    metrics = Metrics()
    act = Actuator(api, Settings(token="t"), metrics, clock=lambda: NOW, sleep=lambda s: None)
    (outcome,) = act.handle(alerts(webhook))
    return outcome, metrics


def test_a_migration_sends_one_update_with_the_version_and_the_whole_spec(engine):
    api, fake, seen = engine
    fake.after_update = lambda f, sid, kw: f.move_task(f.task_list[0]["ID"], WORKER_2)
    before = fake.inspect_service(WEB_ID)["Spec"]
    outcome, _ = handled(api, "firing_migrate.json")

    assert outcome.result == R.SUCCESS
    # The spec is read as stored (no defaults inserted), because it is posted back whole.
    assert ("GET", "/v1.41/services/demo_web", {"insertDefaults": ["False"]}) in seen
    (post,) = [r for r in seen if r[0] == "POST"]
    _, path, version, body = post
    assert (path, version) == (f"/v1.41/services/{WEB_ID}/update", 100)
    assert set(body) == set(BODY_TO_KWARGS)  # nothing left for Docker to reset
    assert body["TaskTemplate"]["ContainerSpec"] == before["TaskTemplate"]["ContainerSpec"]
    assert body["TaskTemplate"]["Networks"] == before["TaskTemplate"]["Networks"]
    assert body["TaskTemplate"]["Placement"]["Constraints"] == [
        "node.role==worker", "node.hostname!=worker-1"]
    assert body["UpdateConfig"]["Order"] == "start-first"
    assert body["UpdateConfig"]["FailureAction"] == "rollback"
    assert body["Labels"]["swarmguard.last-action-at"] == "2026-11-27T10:00:31.000000Z"


def test_a_conflict_from_the_engine_is_recognised_and_retried(engine):
    api, fake, seen = engine
    fake.after_update = lambda f, sid, kw: f.move_task(f.task_list[0]["ID"], WORKER_2)
    # Swarm bumped the version between our read and our write, once.
    reads = []

    def bump_once(f):
        if not reads:
            reads.append(1)
            f.bump(WEB_ID)
    fake.before_tasks = bump_once
    outcome, metrics = handled(api, "firing_migrate.json")

    assert outcome.result == R.SUCCESS
    assert [r[2] for r in seen if r[0] == "POST"] == [100, 101]
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update_conflict"}) == 1


def test_a_service_that_is_gone_reads_as_absent_through_the_sdk(engine):
    api, fake, _ = engine
    del fake.services[WEB_ID]
    outcome, _ = handled(api, "firing_migrate.json")
    assert outcome.result == R.SKIPPED
    assert outcome.decision.why == "service demo_web no longer exists"


# -- answers that cannot be read (docs/contract.md: a Docker error, retried) ---------------------

def test_a_scale_up_whose_update_landed_but_answered_a_proxys_html_page_is_one_action_done(engine):
    api, fake, seen = engine
    fake.spoiled = [("POST", HTML)]
    outcome, metrics = handled(api, "firing_scale_up.json")

    # The stamp read back says it landed: not made again, and its outcome is its own.
    assert outcome.result == R.SUCCESS
    assert len([r for r in seen if r[0] == "POST"]) == 1
    assert fake.services[WEB_ID]["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "update"}) == 1


def test_a_read_cut_off_mid_answer_is_counted_and_tried_again(engine):
    api, fake, seen = engine
    fake.after_update = lambda f, sid, kw: f.move_task(f.task_list[0]["ID"], WORKER_2)
    fake.spoiled = [("GET", CUT_OFF)]
    outcome, metrics = handled(api, "firing_migrate.json")

    assert outcome.result == R.SUCCESS
    assert len([r for r in seen if r[0] == "POST"]) == 1
    assert metrics.registry.get_sample_value(
        "swarmguard_docker_errors_total", {"operation": "read"}) == 1
