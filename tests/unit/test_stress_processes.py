"""Real stress, briefly: processes start, do their work, and are gone when they should be.

Every stress here lasts at most a few seconds or is stopped; nothing asserts a speed.
Network traffic goes only to a UDP socket this test opens on 127.0.0.1.
"""

import math
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from stress import workers
from stress.app import create_app
from stress.runner import stop_all
from tests.unit.stress_support import config_for

MIB = 1024 * 1024


@pytest.fixture
def client(tmp_path):
    return create_app(config_for(tmp_path)).test_client()


@pytest.fixture(autouse=True)
def nothing_left_running():
    yield
    stop_all()  # even when a test fails half-way, no stress outlives it


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def wait_until(condition, timeout_s: float = 5.0, step_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def running(client) -> dict:
    return client.get("/stress/status").json["running"]


def test_cpu_stress_burns_and_ends_by_itself_after_its_duration(client):
    # Long enough to be seen burning on a loaded machine, where a 1 s burner at 50 % may
    # be scheduled for less than 0.1 s of CPU before it ends.
    response = client.post("/stress/cpu?target=50&duration=3")
    assert response.status_code == 200
    started = response.json["started"][0]
    assert started["params"]["processes"] == 1  # 50 % of the fixture's one core
    pids = started["pids"]
    assert all(alive(pid) for pid in pids)
    assert wait_until(lambda: cpu_seconds(pids[0]) > 0.05)  # really burning, not sleeping

    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=30)
    assert wait_until(lambda: running(client) == {}, timeout_s=30)


def test_stop_ends_a_running_stress_at_once(client):
    pids = client.get("/stress/cpu?target=100&duration=60").json["started"][0]["pids"]
    assert all(alive(pid) for pid in pids)

    response = client.post("/stress/stop")

    assert response.json == {"stopped": ["cpu"]}
    assert not any(alive(pid) for pid in pids)
    assert running(client) == {}


def test_stop_with_a_kind_leaves_the_other_kinds_running(client):
    client.get("/stress/cpu?target=10&duration=30")
    client.get("/stress/memory?mb=4&duration=30")
    assert client.get("/stress/stop?kind=cpu").json == {"stopped": ["cpu"]}
    assert list(running(client)) == ["memory"]


def test_a_new_stress_of_the_same_kind_replaces_the_old_one(client):
    first = client.get("/stress/cpu?target=10&duration=30").json["started"][0]
    second = client.get("/stress/cpu?target=20&duration=30").json["started"][0]

    assert second["replaced"] is True
    assert not any(alive(pid) for pid in first["pids"])
    assert all(alive(pid) for pid in second["pids"])
    assert running(client)["cpu"]["params"]["target_percent"] == 20


def test_memory_stress_allocates_resident_memory_and_frees_it(client):
    started = client.post("/stress/memory", json={"mb": 32, "duration": 30}).json["started"][0]
    pid = started["pids"][0]
    assert wait_until(lambda: running(client)["memory"]["progress"]["mb_allocated"] == 32)
    assert resident_mb(pid) >= 32  # touched, not just reserved

    client.post("/stress/stop")

    assert not alive(pid)  # the process, and all it held, is gone


def test_memory_stress_is_released_after_its_duration(client):
    pid = client.get("/stress/memory?mb=8&duration=1").json["started"][0]["pids"][0]
    assert wait_until(lambda: not alive(pid))
    assert wait_until(lambda: running(client) == {})


def test_network_stress_sends_about_the_requested_bytes_to_the_sink(client):
    with UdpSink() as sink:
        response = client.get(f"/stress/network?mbps=8&duration=1.5&target=127.0.0.1:{sink.port}")
        assert response.status_code == 200
        pid = response.json["started"][0]["pids"][0]
        assert wait_until(lambda: not alive(pid))
        received = sink.received_after_quiet()

    requested = 8_000_000 / 8 * 1.5
    # Lenient: process start-up eats into the duration; pacing never runs ahead.
    assert 0.3 * requested <= received <= requested + 1200


def test_network_stress_without_a_target_uses_the_gateway_on_the_discard_port(client):
    started = client.get("/stress/network?mbps=1&duration=0.2").json["started"][0]
    # The fixture's route table names 127.0.0.1 as gateway: nothing leaves the machine.
    assert started["params"]["sink"] == "127.0.0.1:9"
    assert started["params"]["sink_source"] == "default gateway"


def test_combined_stress_starts_each_kind_it_names(client):
    with UdpSink() as sink:
        response = client.post(
            "/stress/combined",
            data={"cpu": "20", "memory": "4", "network": "1", "duration": "30", "ramp": "1",
                  "target": f"127.0.0.1:{sink.port}"},
        )
        assert response.status_code == 200
        assert [run["kind"] for run in response.json["started"]] == ["cpu", "memory", "network"]
        assert sorted(running(client)) == ["cpu", "memory", "network"]
        assert sorted(client.post("/stress/stop").json["stopped"]) == ["cpu", "memory", "network"]


def test_stop_all_at_shutdown_ends_every_stress(client):
    # What gunicorn's worker_exit hook calls when the container gets SIGTERM.
    pids = client.get("/stress/cpu?target=10&duration=60").json["started"][0]["pids"]
    stop_all()
    assert not any(alive(pid) for pid in pids)


def test_a_worker_whose_owner_is_gone_stops_without_waiting_for_its_deadline():
    dead = subprocess.Popen(["true"])
    dead.wait()
    value = type("Value", (), {"value": 0.0})
    # No deadline at all: only noticing that its owner is gone can end it.
    worker = threading.Thread(target=workers.burn_cpu, daemon=True, kwargs=dict(
        duty=0.1, ramp_s=0, slice_s=0.01, nice=0, deadline=math.inf,
        owner_pid=dead.pid, progress=value(), errors=value(),
    ))
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the worker burns on for an owner that is gone"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class UdpSink:
    """A UDP socket on 127.0.0.1 counting what it receives, in a thread."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MIB)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.last_seen = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._count, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.sock.close()

    def _count(self):
        while not self._done.is_set():
            try:
                self.received += len(self.sock.recv(65536))
                self.last_seen = time.monotonic()
            except socket.timeout:
                pass

    def received_after_quiet(self, quiet_s: float = 0.3) -> int:
        wait_until(lambda: time.monotonic() - self.last_seen > quiet_s, timeout_s=3)
        return self.received
