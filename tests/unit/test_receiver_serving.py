"""Slow clients cannot hold the receiver's threads (receiver/README.md, hostile or broken senders): requests are read
whole in gunicorn's event loop (receiver/serving.py) before a thread takes them."""
import collections
import contextlib
import json
import logging
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
import types

import pytest
import requests
from gunicorn.config import Config

from receiver.serving import (BARE_LF, HEADERS_TOO_LARGE, LENGTH_REQUIRED, MAX_HEADER_BYTES,
                              PREREAD_WORKER, WHOLE, PrereadWorker, RequestScan,
                              take_expect_continue, worker_class)

from tests.unit.gunicorn_process import gunicorn, settings_module

CONF = "receiver/gunicorn.conf.py"
LIMIT = 1024 * 1024 + 1
HEAD = b"POST /alerts HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"


# -- when is a request whole? (pure) -----------------------------------------------------

@pytest.mark.parametrize("data, whole", [
    (b"GET /healthz HTTP/1.1\r\nHost: r\r\n", False),
    (b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n", True),
    (HEAD + b"Content-Length: 5\r\n\r\n{\"a\"", False),
    (HEAD + b"Content-Length: 5 \r\nX: y\r\n\r\n", False),
    (HEAD + b"Content-Length: 5\r\n\r\n{\"a\"}", True),
    (HEAD + b"content-length:5\r\n\r\n{\"a\"}GET / HTTP/1.1\r\n", True),  # pipelined
])
def test_a_request_is_whole_once_its_headers_and_body_are_in(data, whole):
    assert (RequestScan(LIMIT).feed(data) is not None) is whole


@pytest.mark.parametrize("data", [
    HEAD + b"Content-Length: 99999999\r\n\r\n",  # over the limit: the app answers 413
    HEAD + b"Content-Length: x\r\n\r\n",  # gunicorn answers 400
    HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n",  # refused at once: 411
    b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES,  # endless headers: 431
])
def test_a_request_that_can_be_refused_without_reading_more_is_handed_over_at_once(data):
    assert RequestScan(LIMIT).feed(data) is not None


@pytest.mark.parametrize("data, refusal", [
    (b"GET /healthz HTTP/1.1\nHost: r\n\n", BARE_LF),
    (b"GET /healthz HTTP/1.1\r\nHost: r\n\r\n", BARE_LF),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", LENGTH_REQUIRED),
    (HEAD + b"transfer-encoding: gzip, chunked\r\n\r\n1\r\n", LENGTH_REQUIRED),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES, HEADERS_TOO_LARGE),
])
def test_what_the_worker_refuses_itself_without_reading_more(data, refusal):
    assert RequestScan(LIMIT).feed(data) == refusal


def test_a_request_trickled_a_byte_at_a_time_is_whole_exactly_when_its_last_byte_arrives():
    data = HEAD + b"Content-Length: 5\r\n\r\n{\"a\"}"
    scan, buffer = RequestScan(LIMIT), bytearray()
    for i, byte in enumerate(data):
        buffer.append(byte)
        assert scan.feed(buffer) == (WHOLE if i == len(data) - 1 else None), (i, bytes(buffer))


def test_a_scan_resumes_where_it_stopped_instead_of_judging_the_head_from_byte_0():
    scan, buffer = RequestScan(LIMIT), bytearray(HEAD)
    for _ in range(1000):
        buffer += b"X-Slow: 1\r\n"
        assert scan.feed(buffer) is None
        assert scan.searched == len(buffer)  # the next feed starts at the new bytes


def test_expect_100_continue_is_answered_by_the_worker_and_taken_out_of_the_request():
    data = HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    rest, expects = take_expect_continue(data)
    assert expects
    assert rest == HEAD + b"Content-Length: 2\r\n\r\n"
    assert take_expect_continue(rest) == (rest, False)
    assert take_expect_continue(HEAD + b"Expect: 100-continue\r\n") == (
        HEAD + b"Expect: 100-continue\r\n", False)  # headers not complete yet


def test_a_kept_alive_connection_closed_to_make_room_is_not_read_when_its_readiness_was_already_reported():
    # The poller reports a batch of events; accepting the first can close (to make room)
    # a kept-alive connection whose readiness comes later in the same batch. gthread
    # would then unregister a socket the poller no longer holds, and the worker died.
    worker = object.__new__(PrereadWorker)
    worker.poller, worker.keepalived_conns = selectors.DefaultSelector(), collections.deque()
    worker.prereading, worker.closed_counts, worker.nr_conns, worker.wsgi = {}, {}, 1, None
    ours, theirs = socket.socketpair()
    conn = types.SimpleNamespace(sock=ours, close=ours.close)
    worker.keepalived_conns.append(conn)
    worker.poller.register(ours, selectors.EVENT_READ)
    assert worker._close_longest_waiting()
    worker.on_client_socket_readable(conn, ours)  # the rest of the batch: nothing happens
    assert worker.nr_conns == 0 and worker.closed_counts == {"over_capacity": 1}
    theirs.close()


# -- the receiver under gunicorn, with slow clients ---------------------------------------

def test_the_gunicorn_this_project_installs_gets_the_preread_worker(monkeypatch):
    assert worker_class() == PREREAD_WORKER
    assert settings_module(monkeypatch, CONF, "SWARMGUARD_", {})["worker_class"] == PREREAD_WORKER


# -- its settings: the receiver's (receiver/config.py), read before anything starts -----------

def test_gunicorn_reads_the_yaml_file_beneath_the_environment(monkeypatch, tmp_path):
    path = tmp_path / "receiver.yml"
    path.write_text("shutdown_deadline: 30\nthreads: 2\nbind: 0.0.0.0:9000\n")
    conf = settings_module(monkeypatch, CONF, "SWARMGUARD_", {
        "SWARMGUARD_CONFIG_FILE": str(path), "SWARMGUARD_BIND": "127.0.0.1:8001",
        "SWARMGUARD_LOG_LEVEL": "WARNING"})
    assert (conf["bind"], conf["threads"], conf["loglevel"]) == ("127.0.0.1:8001", 2, "warning")
    # The arbiter kills the worker only after the work in progress has had its deadline.
    assert conf["graceful_timeout"] == 35


def preread_worker() -> PrereadWorker:
    """The worker as gunicorn's arbiter builds it (before forking), its settings as they
    are in the environment."""
    worker = PrereadWorker(0, os.getpid(), [], None, 15, Config(), logging.getLogger("test"))
    worker.tmp.close()
    return worker


def test_the_worker_reads_the_body_limit_and_read_timeout_from_the_yaml_file(monkeypatch,
                                                                             tmp_path):
    path = tmp_path / "receiver.yml"
    path.write_text("max_body_bytes: 4096\nrequest_read_timeout: 7\n")
    monkeypatch.setenv("SWARMGUARD_CONFIG_FILE", str(path))
    monkeypatch.delenv("SWARMGUARD_MAX_BODY_BYTES", raising=False)
    monkeypatch.delenv("SWARMGUARD_REQUEST_READ_TIMEOUT", raising=False)
    worker = preread_worker()
    # One byte over the app's limit is what the worker hands over at once for the 413.
    assert (worker.max_body, worker.read_timeout) == (4097, 7.0)
    monkeypatch.setenv("SWARMGUARD_MAX_BODY_BYTES", "2048")
    assert preread_worker().max_body == 2049


@contextlib.contextmanager
def serving(tmp_path, read_timeout: str = "2", *gunicorn_args: str):
    """The receiver under gunicorn with its own settings, on a free port: (url, port)."""
    # Port 0: gunicorn takes a free port itself and says which (no race for a port).
    env = {**os.environ, "SWARMGUARD_TOKEN": "tok", "SWARMGUARD_BIND": "127.0.0.1:0",
           "SWARMGUARD_DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
           "SWARMGUARD_REQUEST_READ_TIMEOUT": read_timeout,
           "SWARMGUARD_LOG_LEVEL": "info"}  # gunicorn says at INFO where it listens
    log_path = tmp_path / "gunicorn.log"
    with gunicorn(CONF, "receiver.app:create_app()", env, log_path, *gunicorn_args) as proc:
        port = None
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited: {log_path.read_text()}")
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log_path.read_text())
            if found:
                port = int(found.group(1))
                try:
                    requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        else:
            pytest.fail(f"gunicorn did not answer within 30 s: {log_path.read_text()}")
        yield f"http://127.0.0.1:{port}", port


@pytest.fixture
def receiver(tmp_path):
    with serving(tmp_path) as started:
        yield started


class Trickler(threading.Thread):
    """A client that sends a request one header line (or body byte) at a time, every
    `pause` seconds, for `seconds` or until stopped, and never finishes it."""

    def __init__(self, port: int, body: bool, seconds: float = 6.0, pause: float = 0.3):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.body, self.seconds, self.pause = body, seconds, pause
        self.closed_by_server = threading.Event()
        self.trickling = threading.Event()  # its request has begun and it is sending more
        self.stopping = threading.Event()

    def run(self):
        end = time.monotonic() + self.seconds
        try:
            self.sock.sendall(HEAD + (b"Content-Length: 100000\r\n\r\n" if self.body else b""))
            while time.monotonic() < end and not self.stopping.is_set():
                self.sock.sendall(b"{" if self.body else b"X-Slow: 1\r\n")
                self.trickling.set()
                self.stopping.wait(self.pause)
        except OSError:
            self.closed_by_server.set()
        finally:
            self.sock.close()


def test_under_gunicorn_log_lines_say_when_and_who_and_events_are_json_lines_alone(tmp_path):
    with serving(tmp_path):
        pass
    lines = (tmp_path / "gunicorn.log").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [e["type"] for e in events][:1] == ["started"]
    assert any(re.fullmatch(r"\S+ \S+ INFO receiver\.\w+: SwarmGuard receiver ready: .*", line)
               for line in lines)


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:.0f} s: {what}")
        time.sleep(0.05)


def test_slow_clients_do_not_hold_the_threads_that_answer_health_checks_and_webhooks(tmp_path):
    # A long read timeout: the slow clients keep their connections for the whole test.
    with serving(tmp_path, "120") as (url, port):
        # 8 threads serve requests: more slow clients of each kind than that.
        slow = [Trickler(port, body=i % 2 == 0, seconds=120) for i in range(24)]
        for client in slow:
            client.start()
        try:
            wait_until(lambda: all(c.trickling.is_set() for c in slow), 30,
                       "every slow client connected and trickling")
            # The timeouts only keep a failing test from hanging: with threads held by the
            # slow clients, these would wait for them to give up.
            for _ in range(5):
                assert requests.get(f"{url}/healthz", timeout=4).status_code == 200
                response = requests.post(f"{url}/alerts", data=b"{}", timeout=4, headers={
                    "Authorization": "Bearer tok", "Content-Type": "application/json"})
                assert response.status_code == 400  # answered: the body is not a webhook
            # Answered while every slow client still held its connection.
            assert all(c.is_alive() and not c.closed_by_server.is_set() for c in slow)
        finally:
            for client in slow:
                client.stopping.set()
            for client in slow:
                client.join(timeout=10)


def test_a_connection_that_sends_no_whole_request_in_time_is_closed(receiver):
    _, port = receiver
    client = Trickler(port, body=True, seconds=8.0)
    client.start()
    client.join(timeout=10)
    assert client.closed_by_server.is_set()  # after SWARMGUARD_REQUEST_READ_TIMEOUT=2


def answer_of(port: int, data: bytes, half_close: bool = False) -> bytes:
    """Everything the server sends back to `data` until it closes (at most 10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return received


def test_a_chunked_request_is_411_length_required_never_a_500(receiver):
    _, port = receiver
    # 0x2: a chunk size gunicorn would choke on while the app reads the body (a 500).
    answer = answer_of(port, HEAD + b"Authorization: Bearer tok\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 "), answer


def test_a_bare_lf_request_is_answered_400_at_once_not_left_to_time_out(receiver):
    _, port = receiver
    answer = answer_of(port, b"GET /healthz HTTP/1.1\nHost: r\n\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_pipelined_requests_followed_by_a_half_close_are_all_answered(receiver):
    _, port = receiver
    health = b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n"
    answer = answer_of(port, health * 3, half_close=True)
    assert answer.count(b"HTTP/1.1 200 ") == 3, answer


def test_more_connections_than_the_cap_never_lock_out_a_new_client(tmp_path):
    # A long read timeout: the idle connections would hold their places for the whole
    # test if nothing made room (gthread stops accepting at worker_connections).
    with serving(tmp_path, "60", "--worker-connections", "20") as (url, port):
        # Kept-alive connections that send their next request just as the flood of new
        # ones arrives: the worker closes some of them to make room while their
        # readiness is in the same batch of poller events (this crashed the worker).
        kept = [socket.create_connection(("127.0.0.1", port)) for _ in range(15)]
        health = b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n"
        for sock in kept:
            sock.sendall(health)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        for sock in kept:
            sock.sendall(health)
        idle = kept + [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        try:
            for _ in range(5):
                assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
            # The kernel completes a connection before the worker accepts it: wait until
            # it has accepted (and made room for) every one.
            def closed_over_capacity() -> float:
                metrics = requests.get(f"{url}/metrics", timeout=10,
                                       headers={"Authorization": "Bearer tok"}).text
                last_seen[:] = [metrics]
                found = re.search(r'swarmguard_connections_closed_total\{reason="over_capacity"\} '
                                  r"([0-9.e+]+)", metrics)
                return float(found.group(1)) if found else 0.0
            last_seen = [""]
            deadline = time.monotonic() + 30
            while closed_over_capacity() < 40 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert closed_over_capacity() >= 40, last_seen[0][-3000:]
        finally:
            for sock in idle:
                sock.close()
