import json
import os
import resource
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlparse

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.main import main
from tests.fake_docker_api_client import service_dict

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_metrics(url, process, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            return requests.get(url, timeout=1).text
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def test_the_exporter_serves_metrics_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    environ = dict(
        os.environ,
        SWARMGUARD_EXPORTER_LISTEN_ADDRESS="127.0.0.1",
        SWARMGUARD_EXPORTER_LISTEN_PORT=str(port),
        SWARMGUARD_EXPORTER_DOCKER_URL=f"unix://{tmp_path}/no-docker.sock",
        SWARMGUARD_EXPORTER_CAPACITY_MBPS="100",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = wait_for_metrics(f"http://127.0.0.1:{port}/metrics", process)
        opted_in = requests.get(f"http://127.0.0.1:{port}/opted-in", timeout=5)
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, log
    assert (opted_in.status_code, opted_in.text) == (200, "")  # a node of unknown role claims nothing
    assert "swarmguard_exporter_docker_up 0.0" in body  # no daemon on that socket
    assert "swarmguard_interface_capacity_bits_per_second" in body
    assert "process_cpu_seconds_total" in body  # the exporter's own cost per scrape
    assert log.count("Starting the SwarmGuard exporter with") == 1
    assert f"listen_port={port}" in log
    assert "Stopped" in log


def test_the_exporter_refuses_to_start_without_a_known_capacity(tmp_path, caplog):
    status = main(
        ["--interface", "eth0", "--sysfs-root", str(tmp_path), "--capacity-mbps", ""]
    )

    assert status == 2
    assert "--capacity-mbps" in caplog.text


def open_files_limits(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return tuple(int(n) for n in line.split()[3:5])
    raise AssertionError("no open files limit")


def run_exporter(tmp_path, open_files, **variables):
    """`python -m exporter` on a free loopback port with no Docker, under the open files
    limits `open_files` (soft, hard): (the process, its port)."""
    port = free_port()
    environ = dict(os.environ, SWARMGUARD_EXPORTER_LISTEN_ADDRESS="127.0.0.1",
                   SWARMGUARD_EXPORTER_LISTEN_PORT=str(port), SWARMGUARD_EXPORTER_CAPACITY_MBPS="100",
                   SWARMGUARD_EXPORTER_DOCKER_URL=f"unix://{tmp_path}/no-docker.sock")
    environ.update({f"SWARMGUARD_EXPORTER_{name.upper()}": value for name, value in variables.items()})
    process = subprocess.Popen([sys.executable, "-m", "exporter"], cwd=ROOT, env=environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, open_files))
    return process, port


def stop(process):
    """SIGTERM, and the log."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=15)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[1]


def test_the_exporter_lifts_its_open_files_limit_to_the_hard_one(tmp_path):
    # As a container's limits can be (1024 soft, 524288 hard since moby#45534): four files
    # per task and one per connection would not fit under 1024 on a busy node.
    process, port = run_exporter(tmp_path, (256, 4096))
    try:
        wait_for_metrics(f"http://127.0.0.1:{port}/metrics", process)
        assert open_files_limits(process.pid) == (4096, 4096)
    finally:
        log = stop(process)
    assert "Open files limit raised from 256 to 4096" in log


def test_an_exporter_out_of_file_descriptors_still_answers_scrapes(tmp_path):
    process, port = run_exporter(tmp_path, (64, 64), max_connections="1000")
    clients = []
    try:
        wait_for_metrics(f"http://127.0.0.1:{port}/metrics", process)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(100)]

        body = wait_for_metrics(f"http://127.0.0.1:{port}/metrics", process)

        closed = [sample.value for family in text_string_to_metric_families(body) for sample in family.samples
                  if sample.name == "swarmguard_exporter_connections_closed_total"
                  and sample.labels == {"reason": "over_capacity"}]
        assert closed[0] > 0  # the oldest idle connections made room for the scrape
        assert process.poll() is None
    finally:
        for client in clients:
            client.close()
        stop(process)


class ManagerDocker(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A manager node's Docker on a unix socket, with one opted-in service `web` running two
    tasks, none of them on this node; /events and anything else: 404."""

    daemon_threads = True

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = urlparse(self.path).path
            path = "/" + path.split("/", 2)[2] if path.startswith("/v1.") else path
            web = service_dict("web")
            web["ServiceStatus"] = {"RunningTasks": 2, "DesiredTasks": 2}
            answers = {"/version": {"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"},
                       "/info": {"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}},
                       "/services": [web], "/containers/json": []}
            self.answer(*((200, answers[path]) if path in answers else (404, {"message": "not here"})))

        def answer(self, status, body):
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    def __init__(self, path):
        super().__init__(str(path), self.Handler)


def test_on_a_manager_the_exporter_publishes_the_opted_in_services_on_their_own_page(tmp_path):
    docker_socket = tmp_path / "docker.sock"
    daemon = ManagerDocker(docker_socket)
    threading.Thread(target=daemon.serve_forever, daemon=True).start()
    process, port = run_exporter(tmp_path, resource.getrlimit(resource.RLIMIT_NOFILE),
                                 docker_url=f"unix://{docker_socket}", opt_in_interval_seconds="0.2")
    try:
        wait_for_metrics(f"http://127.0.0.1:{port}/metrics", process)
        deadline = time.monotonic() + 15
        while "swarmguard_exporter_opt_in_known 1.0" not in (
                page := requests.get(f"http://127.0.0.1:{port}/opted-in", timeout=5).text):
            assert time.monotonic() < deadline, page
            time.sleep(0.05)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop(process)
        daemon.shutdown()
        daemon.server_close()

    assert 'swarmguard_opted_in_service_tasks{service="web"} 2.0' in page
    assert "swarmguard_exporter_docker_up 1.0" in metrics
    assert "opt_in" not in metrics and "opted_in" not in metrics  # /metrics is as it was
