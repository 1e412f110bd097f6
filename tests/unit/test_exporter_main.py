import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.main import main

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
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, log
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
                   SWARMGUARD_EXPORTER_DOCKER_URL=f"unix://{tmp_path}/no-docker.sock",
                   **{f"SWARMGUARD_EXPORTER_{name.upper()}": value for name, value in variables.items()})
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
