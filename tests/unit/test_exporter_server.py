"""Serving /metrics and /opted-in: what a client gets, and what no client can take from the
exporter (exporter/server.py)."""
import contextlib
import errno
import gzip
import http.client
import logging
import os
import select
import selectors
import socket
import struct
import threading
import time

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter.config import ExporterConfig
import exporter.server
from exporter.server import MAX_HEAD_BYTES, PAUSE_SECONDS, WORKERS, start

TASKS = "# HELP swarmguard_task_cpu_seconds_total x\n# TYPE swarmguard_task_cpu_seconds_total counter\n"
# What an in-process opt-in source gives the server (exporter/opt_in.py writes the real one).
OPTED_IN = (b"# HELP swarmguard_opted_in_service_tasks x\n# TYPE swarmguard_opted_in_service_tasks gauge\n"
            b'swarmguard_opted_in_service_tasks{service="web"} 2.0\n')
DEADLINE = 15.0  # seconds allowed for anything awaited; none of it takes near that long


def wait_for(condition, what, seconds=DEADLINE):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what}: not within {seconds} s")


class Served:
    """An exporter's HTTP endpoint on a free loopback port, serving `tasks()` and `opted_in()`."""

    def __init__(self, tasks, opted_in, **settings):
        self.registry = CollectorRegistry()
        config = ExporterConfig(listen_address="127.0.0.1", listen_port=0, **settings)
        self.server, self.thread = start(config, tasks, self.registry, opted_in)
        self.port = self.server.server_port
        self.clients = []

    def connect(self):
        client = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        self.clients.append(client)
        return client

    def open_connections(self):
        return self.registry.get_sample_value("swarmguard_exporter_connections")

    def closed(self, reason):
        return self.registry.get_sample_value("swarmguard_exporter_connections_closed_total", {"reason": reason})

    def get(self, path="/metrics", headers=None, method="GET"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            connection.request(method, path, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            connection.close()

    def stop(self):
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(DEADLINE)


@pytest.fixture
def serve(caplog):
    running = []

    def serve(tasks=lambda: TASKS, opted_in=lambda: OPTED_IN, **settings):
        running.append(Served(tasks, opted_in, **settings))
        return running[-1]

    yield serve
    for served in running:
        served.stop()
        for client in served.clients:
            client.close()
    # A bug in the loop is logged and survived, never a way a spec passes: the only error a
    # spec may provoke is a page that fails to render.
    errors = [r.getMessage() for r in caplog.records
              if r.name == "exporter.server" and r.levelno >= logging.ERROR and not r.getMessage().startswith("Rendering")]
    assert errors == []


def read_answer(stream):
    """(status, headers, body) of one answer read from a socket's file."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline().rstrip(b"\r\n")):
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, stream.read(int(headers["content-length"]))


def closed_by_the_server(client):
    """Whether the server closed `client`, waiting for it up to DEADLINE."""
    client.settimeout(DEADLINE)
    try:
        while client.recv(65536):
            pass  # an answer (a 400) before the close
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def still_open(client):
    readable, _, _ = select.select([client], [], [], 0)
    return not readable


# -- what a client gets ------------------------------------------------------------------------

def test_a_scrape_is_the_per_task_series_then_the_registrys(serve):
    served = serve()

    status, headers, body = served.get()

    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert body.startswith(TASKS.encode())
    assert b"\nswarmguard_exporter_connections " in body


def test_a_scrape_is_compressed_for_a_client_that_takes_gzip(serve):
    status, headers, body = serve().get(headers={"Accept-Encoding": "gzip"})

    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).startswith(TASKS.encode())


def test_the_root_path_serves_the_scrape_too_and_a_query_is_ignored(serve):
    served = serve()

    assert served.get("/")[2].startswith(TASKS.encode())
    assert served.get("/metrics?name[]=x")[2].startswith(TASKS.encode())


@pytest.mark.parametrize("path", ["/metrics/x", "/opted-in/", "/opted_in", "/optedin"])
def test_any_other_path_is_not_found_and_the_answer_names_the_pages(serve, path):
    status, _, body = serve().get(path)

    assert status == 404
    assert body == b"only /metrics and /opted-in are served\n"


def test_the_opted_in_page_is_its_own_and_the_scrape_does_not_carry_it(serve):
    served = serve()

    status, headers, body = served.get("/opted-in")

    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert body == OPTED_IN
    assert b"swarmguard_opted_in_service_tasks" not in served.get("/metrics")[2]


def test_the_opted_in_page_is_rendered_at_each_request_and_a_query_is_ignored(serve):
    pages = iter([b"a 1\n", b"a 2\n"])
    served = serve(opted_in=lambda: next(pages))

    assert served.get("/opted-in")[2] == b"a 1\n"
    assert served.get("/opted-in?x=1")[2] == b"a 2\n"


def test_an_empty_opted_in_page_is_an_answer_with_an_empty_body(serve):
    status, headers, body = serve(opted_in=lambda: b"").get("/opted-in")

    assert (status, headers["Content-Length"], body) == (200, "0", b"")


def test_the_opted_in_page_is_compressed_for_a_client_that_takes_gzip(serve):
    status, headers, body = serve().get("/opted-in", headers={"Accept-Encoding": "gzip"})

    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == OPTED_IN


def test_a_failed_opted_in_page_is_a_server_error_logged_by_its_path_and_the_scrape_is_still_served(serve, caplog):
    def broken():
        raise RuntimeError("a bug")

    served = serve(opted_in=broken)

    assert served.get("/opted-in")[0] == 500
    assert served.get("/metrics")[0] == 200
    [failed] = [r for r in caplog.records if r.name == "exporter.server"]
    assert failed.getMessage() == "Rendering /opted-in failed"
    assert "RuntimeError: a bug" in caplog.text  # with its traceback


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_any_other_method_is_not_allowed_and_the_answer_names_get(serve, method):
    status, headers, _ = serve().get(method=method)

    assert status == 405
    assert headers["Allow"] == "GET"


@pytest.mark.parametrize("head", [
    b"hello\r\n\r\n",
    b"GET /metrics\r\n\r\n",  # HTTP/0.9
    b"GET /metrics HTTP/2.0\r\n\r\n",
    b"GET  /metrics HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "GET /metrics HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),  # a digit to str.isdigit
    b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
    b"GET  HTTP/1.1\r\n\r\n",
    b"G(ET /metrics HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1 \r\n\r\n",
    b"GET /metrics HTTP/1.1X\r\n\r\n",
    b"\n\n",
], ids=["not_http", "http_0_9", "http_2", "two_spaces", "no_colon", "space_before_colon", "negative_length",
        "superscript_length", "head_too_long", "no_target", "method_not_a_token", "space_after_version",
        "letter_after_version", "a_blank_line_alone"])
def test_a_head_that_is_no_http_1_request_is_a_bad_request_and_closes_the_connection(serve, head):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    client.sendall(head)

    status, headers, body = read_answer(client.makefile("rb"))
    assert (status, headers["connection"], headers["content-type"]) == (400, "close", "text/plain; charset=utf-8")
    assert body.endswith(b"\n")
    assert closed_by_the_server(client)
    assert served.closed("slow") == 0  # closed at once, not at its deadline


@pytest.mark.parametrize(("head", "message"), [
    (b"GET /" + b"a" * 100 + b" HTTP/2.0\r\n\r\n",
     "not an HTTP/1.x request line: " + repr("GET /" + "a" * 75)),
    (b"GET /metrics HTTP/1.1\r\nno colon " + b"a" * 100 + b"\r\n\r\n",
     "not a header line: " + repr("no colon " + "a" * 71)),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: -" + b"1" * 100 + b"\r\n\r\n",
     "not a Content-Length: " + repr("-" + "1" * 39)),
], ids=["request_line", "header_line", "content_length"])
def test_a_bad_request_says_what_was_wrong_quoting_the_start_of_the_line(serve, head, message):
    client = serve().connect()
    client.sendall(head)

    assert read_answer(client.makefile("rb"))[2] == (message + "\n").encode()


def raw_head(client):
    """The status line and header lines of one answer, as the server wrote them, and its body."""
    stream = client.makefile("rb")
    lines = []
    while (line := stream.readline()) != b"\r\n":
        lines.append(line)
    head = b"".join(lines)
    length = int(next(l for l in lines if l.lower().startswith(b"content-length:")).split(b":")[1])
    return head, stream.read(length)


def test_an_answer_that_closes_the_connection_says_so_in_the_header_http_spells(serve):
    client = serve().connect()
    client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")

    head, _ = raw_head(client)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in head


def test_one_kept_alive_connection_carries_scrape_after_scrape(serve):
    served = serve()
    client = served.connect()
    stream = client.makefile("rb")

    for _ in range(3):
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(stream)[0] == 200
    assert served.open_connections() == 1


def test_pipelined_requests_are_answered_in_order(serve):
    client = serve().connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\n\r\n"
                   b"GET /opted-in HTTP/1.1\r\n\r\n")
    stream = client.makefile("rb")

    answers = [read_answer(stream) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 404, 405, 200]
    assert answers[3][2] == OPTED_IN


def test_one_kept_alive_connection_carries_scrapes_of_both_pages(serve):
    served = serve()
    client = served.connect()
    stream = client.makefile("rb")

    for path in ("/opted-in", "/metrics", "/opted-in"):
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert read_answer(stream)[0] == 200
    assert served.open_connections() == 1


def test_a_long_pipeline_of_requests_is_answered_in_full(serve):
    client = serve().connect()
    client.sendall(b"GET /x HTTP/1.1\r\n\r\n" * 400)
    stream = client.makefile("rb")

    assert [read_answer(stream)[0] for _ in range(400)] == [404] * 400


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /metrics HTTP/1.0\r\n\r\n", 200),
    (b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", 200),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 200),
    (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200),
    (b"GET /metrics HTTP/1.1\r\nConnection: Keep-Alive,Close\r\n\r\n", 200),
    (b"GET /metrics HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", 200),
    (b"POST /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", 405),
    (b"GET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n", 404),
], ids=["http_1_0", "connection_close", "with_a_body", "with_a_chunked_body", "close_among_tokens",
        "close_in_the_first_of_two", "not_allowed", "not_found"])
def test_a_request_that_asks_for_it_or_carries_a_body_is_answered_then_closed_at_once(serve, head, status):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    client.sendall(head)

    answer_status, headers, _ = read_answer(client.makefile("rb"))
    assert (answer_status, headers["connection"]) == (status, "close")
    assert closed_by_the_server(client)
    assert (served.closed("slow"), served.closed("idle")) == (0, 0)  # not at a deadline


def test_a_failed_scrape_is_a_server_error_and_the_next_is_served(serve):
    calls = []

    def tasks():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return TASKS

    served = serve(tasks)

    assert served.get()[0] == 500
    assert served.get()[0] == 200


# -- what no client can take -------------------------------------------------------------------

def test_idle_connections_take_no_thread(serve):
    served = serve()
    served.get()  # the workers exist
    threads = threading.active_count()

    for _ in range(50):
        served.connect()
    assert served.get()[0] == 200  # accepted after the 50

    assert threading.active_count() <= threads + WORKERS


def test_a_connection_that_sends_nothing_is_closed_as_slow(serve):
    served = serve(request_timeout_seconds=0.2)
    client = served.connect()

    assert closed_by_the_server(client)
    assert served.closed("slow") == 1


def test_a_client_trickling_a_request_is_closed_as_slow_however_often_it_sends(serve):
    served = serve(request_timeout_seconds=0.2)
    client = served.connect()
    stop = threading.Event()

    def trickle():
        with contextlib.suppress(OSError):
            client.sendall(b"GET /metrics HTTP/1.1\r\n")
            while not stop.wait(0.02):
                client.sendall(b"X")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        wait_for(lambda: served.closed("slow") == 1, "the trickling connection closed")
    finally:
        stop.set()
        trickler.join()
    assert served.open_connections() == 0


def test_a_kept_alive_connection_that_stays_quiet_is_closed_as_idle(serve):
    served = serve(idle_timeout_seconds=0.2)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert read_answer(client.makefile("rb"))[0] == 200

    assert closed_by_the_server(client)
    assert (served.closed("idle"), served.closed("slow")) == (1, 0)


def test_a_client_that_does_not_take_its_answer_is_closed_as_slow(serve):
    big = TASKS + "x 1\n" * 8_000_000  # 32 MB: more than the socket buffers hold
    served = serve(lambda: big, request_timeout_seconds=0.2)
    client = served.connect()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")  # and never read

    wait_for(lambda: served.closed("slow") == 1, "the connection closed")
    assert served.open_connections() == 0


def test_a_client_that_closes_its_connection_is_let_go(serve):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert read_answer(client.makefile("rb"))[0] == 200
    client.close()

    wait_for(lambda: served.open_connections() == 0, "the connection let go")
    assert [served.closed(reason) for reason in ("slow", "idle", "over_capacity")] == [0, 0, 0]


def test_a_client_gone_while_its_scrape_renders_leaves_nothing_open(serve):
    rendering, release = threading.Event(), threading.Event()

    def tasks():
        rendering.set()
        release.wait(DEADLINE)
        return TASKS

    served = serve(tasks)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert rendering.wait(DEADLINE)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset: the answer cannot be sent
    release.set()

    wait_for(lambda: served.open_connections() == 0, "the connection let go")
    assert served.get()[0] == 200


def test_at_the_cap_a_new_connection_closes_the_one_that_waited_longest(serve):
    served = serve(max_connections=4)
    waiting = []
    for count in range(1, 5):
        waiting.append(served.connect())
        wait_for(lambda: served.open_connections() == count, f"connection {count} accepted")

    assert served.get()[0] == 200
    assert closed_by_the_server(waiting[0])
    assert all(still_open(client) for client in waiting[1:])
    assert served.closed("over_capacity") == 1


def test_a_scrape_gets_in_while_idle_connections_keep_coming_past_the_cap(serve):
    served = serve(max_connections=16)
    for _ in range(100):  # fewer than the listen backlog: the kernel drops none of them
        served.connect()

    assert served.get()[0] == 200
    assert served.open_connections() <= 16
    assert served.closed("over_capacity") >= 100 - 16


def test_scrapes_are_answered_while_idle_connections_and_tricklers_are_open(serve):
    served = serve(request_timeout_seconds=60)
    for _ in range(100):
        served.connect()
    tricklers = [served.connect() for _ in range(20)]
    for client in tricklers:
        client.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")

    for _ in range(20):
        assert served.get()[0] == 200
    for client in tricklers:
        client.sendall(b"y")
    assert served.get()[0] == 200


def test_stopping_closes_every_connection_and_the_port(serve):
    served = serve()
    client = served.connect()
    wait_for(lambda: served.open_connections() == 1, "the connection accepted")

    served.stop()

    assert not served.thread.is_alive()
    assert closed_by_the_server(client)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE)


def test_every_close_reason_is_published_from_the_start(serve):
    served = serve()
    assert [served.closed(reason) for reason in ("slow", "idle", "over_capacity")] == [0, 0, 0]


# -- the details a client and an operator rely on ----------------------------------------------

def test_an_error_answer_is_plain_text_and_keeps_a_kept_alive_connection(serve):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    stream = client.makefile("rb")

    client.sendall(b"POST /metrics HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n")

    not_allowed, not_found, scrape = (read_answer(stream) for _ in range(3))
    assert not_allowed[0] == 405 and not_allowed[2] == b"only GET is served\n"
    assert not_found[0] == 404
    for _, headers, _ in (not_allowed, not_found):
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert "connection" not in headers
    assert scrape[0] == 200
    assert still_open(client)


def test_a_failed_scrape_is_a_plain_text_server_error_that_closes_the_connection(serve):
    def tasks():
        raise RuntimeError("a bug")

    served = serve(tasks, request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")

    status, headers, body = read_answer(client.makefile("rb"))
    assert (status, headers["connection"], headers["content-type"]) == (500, "close", "text/plain; charset=utf-8")
    assert body == b"the scrape failed; see the exporter's log\n"
    assert closed_by_the_server(client)
    assert served.closed("idle") == 0


def test_only_the_query_is_cut_from_the_path_at_its_first_question_mark(serve):
    assert serve().get("/metrics?a=1?b=2")[0] == 200


def test_a_scrape_is_compressed_at_gzip_level_1(serve):
    served = serve()
    body = served.get(headers={"Accept-Encoding": "gzip"})[2]
    page = gzip.decompress(body)

    # A gzip stream past its 10-byte header (which holds the time) depends only on the data and the level.
    assert body[10:] == gzip.compress(page, compresslevel=1)[10:]


@pytest.mark.parametrize(("head_bytes", "status"), [(MAX_HEAD_BYTES, 200), (MAX_HEAD_BYTES + 1, 400)])
def test_a_request_head_of_max_head_bytes_is_served_and_one_byte_more_is_not(serve, head_bytes, status):
    start_line = b"GET /metrics HTTP/1.1\r\nX-Pad: "
    head = start_line + b"a" * (head_bytes - len(start_line))
    client = serve().connect()
    client.sendall(head + b"\r\n\r\n")

    assert read_answer(client.makefile("rb"))[0] == status


def test_a_head_of_max_head_bytes_may_arrive_before_its_blank_line(serve):
    start_line = b"GET /metrics HTTP/1.1\r\nX-Pad: "
    client = serve().connect()
    client.sendall(start_line + b"a" * (MAX_HEAD_BYTES - len(start_line)))
    client.sendall(b"\r\n\r\n")

    assert read_answer(client.makefile("rb"))[0] == 200


def test_an_answer_larger_than_the_socket_takes_is_written_in_full_then_the_next_request_is_served(serve):
    big = TASKS + "x 1\n" * 1_500_000  # 6 MB: more than the socket buffers hold at once
    served = serve(lambda: big, request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\n")
    stream = client.makefile("rb")

    status, _, body = read_answer(stream)
    assert status == 200 and body.startswith(big.encode())
    assert read_answer(stream)[0] == 404
    client.sendall(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert read_answer(stream)[0] == 200
    assert closed_by_the_server(client)


def test_at_the_cap_with_every_connection_being_answered_a_new_one_is_closed_at_once_and_counted(serve, caplog):
    rendering, release = threading.Semaphore(0), threading.Event()

    def tasks():
        rendering.release()
        release.wait(DEADLINE)
        return TASKS

    served = serve(tasks, max_connections=2)
    busy = [served.connect() for _ in range(2)]
    for client in busy:
        client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    for _ in busy:
        assert rendering.acquire(timeout=DEADLINE)
    try:
        for count in (1, 2):
            assert closed_by_the_server(served.connect())
            assert served.closed("over_capacity") == count
    finally:
        release.set()
    assert all(read_answer(client.makefile("rb"))[0] == 200 for client in busy)
    assert not [r for r in caplog.records if r.name == "exporter.server" and r.levelno == logging.WARNING]


def test_a_quiet_pending_connection_does_not_keep_an_idle_one_from_its_deadline(serve):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=0.2)
    served.connect()  # sends nothing, for a minute
    idle = served.connect()
    idle.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert read_answer(idle.makefile("rb"))[0] == 200

    assert closed_by_the_server(idle)
    assert served.closed("idle") == 1


def test_scrapes_render_in_at_most_workers_threads_named_metrics_worker(serve):
    rendering, release = threading.Semaphore(0), threading.Event()

    def tasks():
        rendering.release()
        release.wait(DEADLINE)
        return TASKS

    served = serve(tasks)
    scrapers = [served.connect() for _ in range(WORKERS + 2)]
    for client in scrapers:
        client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    try:
        for _ in range(WORKERS):
            assert rendering.acquire(timeout=DEADLINE)
        assert served.get("/nothing")[0] == 404  # the loop has read every request sent before
        workers = [t for t in threading.enumerate() if t.name.startswith("metrics-worker")]
        assert len(workers) == WORKERS
    finally:
        release.set()
    assert all(read_answer(client.makefile("rb"))[0] == 200 for client in scrapers)


def test_the_server_runs_in_a_daemon_thread_named_metrics_server(serve):
    thread = serve().thread

    assert (thread.name, thread.daemon) == ("metrics-server", True)


def test_stopping_does_not_wait_for_scrapes_being_rendered_nor_render_those_queued(serve):
    rendered, release = [], threading.Event()

    def tasks():
        rendered.append(1)
        release.wait(3 * DEADLINE)  # longer than the stopping may take
        return TASKS

    served = serve(tasks)
    for client in [served.connect() for _ in range(WORKERS + 1)]:
        client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    wait_for(lambda: len(rendered) == WORKERS, "the workers rendering")
    assert served.get("/nothing")[0] == 404  # the last scrape is queued

    stopper = threading.Thread(target=served.stop, daemon=True)
    stopper.start()
    wait_for(lambda: not stopper.is_alive(), "stopped while the scrapes render")
    release.set()

    wait_for(lambda: not any(t.name.startswith("metrics-worker") for t in threading.enumerate()), "the workers gone")
    assert len(rendered) == WORKERS


def test_the_server_listens_on_an_ipv6_address():
    registry = CollectorRegistry()
    server, thread = start(ExporterConfig(listen_address="::1", listen_port=0), lambda: TASKS, registry,
                           lambda: OPTED_IN)
    try:
        connection = http.client.HTTPConnection("::1", server.server_port, timeout=DEADLINE)
        connection.request("GET", "/metrics")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE)


def test_the_connection_metrics_are_described_for_an_operator(serve):
    body = serve().get()[2].decode()

    assert "# HELP swarmguard_exporter_connections Connections to the exporter's /metrics endpoint open now.\n" in body
    assert ("# HELP swarmguard_exporter_connections_closed_total Connections the exporter closed on its own: slow (no "
            "whole request, or its answer not taken, within the request timeout), idle (kept alive with no new "
            "request within the idle timeout), over_capacity (to make room for a new one).\n") in body


@pytest.mark.parametrize("path", ["/metrics", "/nothing"])
def test_a_blank_line_pipelined_after_a_request_is_the_next_head_and_a_bad_request(serve, path):
    client = serve(request_timeout_seconds=60, idle_timeout_seconds=60).connect()
    client.sendall(f"GET {path} HTTP/1.1\r\n\r\n\n\n".encode())
    stream = client.makefile("rb")

    assert read_answer(stream)[0] in (200, 404)
    assert read_answer(stream)[0] == 400


def test_an_error_answer_leaves_the_connection_its_idle_timeout_for_the_next_request(serve):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    stream = client.makefile("rb")

    client.sendall(b"GET /nothing HTTP/1.1\r\n\r\n")
    assert read_answer(stream)[0] == 404
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert read_answer(stream)[0] == 200
    assert served.closed("idle") == 0


def test_a_kept_alive_connection_that_starts_a_request_and_never_ends_it_is_closed_as_slow(serve):
    served = serve(request_timeout_seconds=0.2, idle_timeout_seconds=60)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert read_answer(client.makefile("rb"))[0] == 200

    client.sendall(b"GET /metrics HTTP/1.1\r\n")
    assert closed_by_the_server(client)
    assert (served.closed("slow"), served.closed("idle")) == (1, 0)


def held_scrape():
    """(tasks, rendering, release): each scrape `tasks` renders releases `rendering`, then
    renders once `release` is set."""
    rendering, release = threading.Semaphore(0), threading.Event()

    def tasks():
        rendering.release()
        release.wait(DEADLINE)
        return TASKS
    return tasks, rendering, release


def test_a_client_that_stops_sending_after_its_request_still_gets_its_answer(serve):
    tasks, rendering, release = held_scrape()
    served = serve(tasks, request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    client.shutdown(socket.SHUT_WR)  # as `nc -N` does
    assert rendering.acquire(timeout=DEADLINE)
    try:
        assert served.get("/nothing")[0] == 404  # the loop goes round while the scrape renders
    finally:
        release.set()

    assert read_answer(client.makefile("rb"))[0] == 200
    assert closed_by_the_server(client)


# -- system calls that fall short or fail ------------------------------------------------------

class Clock:
    """exporter.server's time: monotonic() reads `now`, which only a spec moves; sleep() is
    real, and remembered. `failures` calls of monotonic() raise, as a bug in a round would."""

    def __init__(self):
        self.now = 1000.0
        self.failures = 0
        self.slept = []

    def monotonic(self):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug")
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(exporter.server, "time", clock)
    return clock


def server_sends(monkeypatch, served, send):
    """Every send on the server's side of `served`'s connections goes through
    `send(real_send, data)` (its wake-up socket and the clients' sends do not)."""
    real_send = socket.socket.send

    def sending(sock, data, *flags):
        name = sock.getsockname()
        if isinstance(name, tuple) and name[1] == served.port:
            return send(lambda part: real_send(sock, part, *flags), data)
        return real_send(sock, data, *flags)

    monkeypatch.setattr(socket.socket, "send", sending)


def failing_sends(*failures):
    """A `send` for server_sends whose first calls fail or fall short in turn: an exception
    is raised, a number is how many bytes the socket takes; then sends are whole."""
    left = list(failures)

    def send(real_send, data):
        failure = left.pop(0) if left else None
        if isinstance(failure, BaseException):
            raise failure
        return real_send(data if failure is None else data[:failure])
    return send


def errors_logged(caplog):
    return [r for r in caplog.records if r.name == "exporter.server" and r.levelno >= logging.ERROR]


def warnings_logged(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "exporter.server" and r.levelno == logging.WARNING]


def test_answers_the_socket_takes_a_few_bytes_at_a_time_are_written_whole_and_in_order(serve, monkeypatch):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    server_sends(monkeypatch, served, lambda real_send, data: real_send(data[:100]))
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\n"
                   b"GET /opted-in HTTP/1.1\r\nConnection: close\r\n\r\n")
    stream = client.makefile("rb")

    scrape, not_found, (status, headers, body) = (read_answer(stream) for _ in range(3))
    assert scrape[0] == 200 and scrape[2].startswith(TASKS.encode())
    assert not_found[:1] + not_found[2:] == (404, b"only /metrics and /opted-in are served\n")
    assert (status, headers["connection"], body) == (200, "close", OPTED_IN)
    assert closed_by_the_server(client)
    assert (served.closed("slow"), served.closed("idle")) == (0, 0)


def test_a_kept_alive_connection_answered_in_pieces_waits_its_idle_timeout_from_the_last_piece(serve, monkeypatch):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=0.2)
    server_sends(monkeypatch, served, lambda real_send, data: real_send(data[:100]))
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")

    assert read_answer(client.makefile("rb"))[0] == 200
    assert closed_by_the_server(client)
    assert (served.closed("idle"), served.closed("slow")) == (1, 0)


@pytest.mark.parametrize("head", [b"hello\r\n\r\n", b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * MAX_HEAD_BYTES],
                         ids=["not_http", "head_too_long"])
def test_a_bad_requests_answer_the_socket_takes_a_few_bytes_at_a_time_is_written_whole_then_closed(
        serve, monkeypatch, head):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    server_sends(monkeypatch, served, lambda real_send, data: real_send(data[:10]))
    client = served.connect()
    client.sendall(head)

    status, headers, _ = read_answer(client.makefile("rb"))
    assert (status, headers["connection"]) == (400, "close")
    assert closed_by_the_server(client)
    assert served.closed("slow") == 0


@pytest.mark.parametrize(("path", "status"), [("/metrics", 200), ("/nothing", 404)], ids=["scrape", "error"])
def test_an_answer_the_socket_would_not_take_at_first_is_written_whole_later(serve, monkeypatch, path, status):
    served = serve()
    server_sends(monkeypatch, served, failing_sends(BlockingIOError(errno.EAGAIN, "would block")))
    client = served.connect()
    client.sendall(f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())

    head, body = raw_head(client)
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert body.startswith(TASKS.encode()) if status == 200 else body == b"only /metrics and /opted-in are served\n"


@pytest.mark.parametrize("failures", [(BrokenPipeError(errno.EPIPE, "Broken pipe"),),
                                      (10, BrokenPipeError(errno.EPIPE, "Broken pipe"))],
                         ids=["its_first_send", "a_later_send"])
def test_a_send_that_fails_closes_that_connection_at_once_and_the_server_goes_on(serve, monkeypatch, failures):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    server_sends(monkeypatch, served, failing_sends(*failures))
    client = served.connect()
    client.sendall(b"GET /nothing HTTP/1.1\r\n\r\n")

    assert closed_by_the_server(client)
    wait_for(lambda: served.open_connections() == 0, "the connection let go")
    assert [served.closed(reason) for reason in ("slow", "idle", "over_capacity")] == [0, 0, 0]
    assert served.get()[0] == 200


def test_a_bug_met_answering_a_scrape_is_logged_and_closes_only_that_connection(serve, monkeypatch, caplog):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    server_sends(monkeypatch, served, failing_sends(RuntimeError("a bug")))
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")

    assert closed_by_the_server(client)
    assert served.get()[0] == 200
    [failed] = errors_logged(caplog)
    assert failed.getMessage() == "Answering a scrape failed; its connection is closed"
    assert "RuntimeError: a bug" in caplog.text  # with its traceback
    caplog.clear()  # provoked here


def test_a_bug_met_serving_a_connection_is_logged_and_closes_only_that_connection(serve, monkeypatch, caplog):
    real_parse_head = exporter.server.parse_head

    def parse_head(head):
        if b"X-Bug" in head:
            raise RuntimeError("a bug")
        return real_parse_head(head)

    monkeypatch.setattr(exporter.server, "parse_head", parse_head)
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\nX-Bug: 1\r\n\r\n")

    assert closed_by_the_server(client)
    assert served.get()[0] == 200
    wait_for(lambda: served.open_connections() == 0, "the connection let go")
    [failed] = errors_logged(caplog)
    assert failed.getMessage() == "Serving a connection failed; it is closed"
    assert "RuntimeError: a bug" in caplog.text
    caplog.clear()  # provoked here


def test_a_round_of_the_loop_that_fails_is_logged_and_the_loop_goes_on_after_a_pause(clock, serve, caplog):
    served = serve()
    clock.failures = 1

    wait_for(lambda: clock.slept, "the failed round")
    assert served.get()[0] == 200
    assert clock.slept == [PAUSE_SECONDS]
    [failed] = errors_logged(caplog)
    assert failed.getMessage() == "The metrics server's loop failed a round; it goes on"
    assert "RuntimeError: a bug" in caplog.text
    caplog.clear()  # provoked here


def test_a_connection_is_closed_as_slow_when_its_deadline_is_reached_not_after(clock, serve):
    served = serve(request_timeout_seconds=5, idle_timeout_seconds=60)
    client = served.connect()
    wait_for(lambda: served.open_connections() == 1, "the connection accepted")

    clock.now = 1000.0 + 5
    served.connect()  # wakes the loop
    assert closed_by_the_server(client)
    assert served.closed("slow") == 1


def test_a_read_that_fails_closes_that_connection_at_once_and_the_server_goes_on(serve, monkeypatch):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    real_recv = socket.socket.recv
    failing = served.connect()
    wait_for(lambda: served.open_connections() == 1, "the connection accepted")

    def recv(sock, *args):
        name = sock.getsockname()
        if isinstance(name, tuple) and name[1] == served.port and sock.getpeername() == failing.getsockname():
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        return real_recv(sock, *args)

    monkeypatch.setattr(socket.socket, "recv", recv)
    failing.sendall(b"GET /metrics HTTP/1.1\r\n")

    assert closed_by_the_server(failing)
    wait_for(lambda: served.open_connections() == 0, "the connection let go")
    assert [served.closed(reason) for reason in ("slow", "idle", "over_capacity")] == [0, 0, 0]
    assert served.get()[0] == 200


def failing_accepts(monkeypatch, error_number, times=1):
    """The listener's next `times` accepts fail with `error_number`, as the kernel fails them."""
    real_accept = socket.socket.accept
    left = [times]

    def accept(sock):
        if left[0]:
            left[0] -= 1
            raise OSError(error_number, os.strerror(error_number))
        return real_accept(sock)

    monkeypatch.setattr(socket.socket, "accept", accept)


def test_out_of_descriptors_the_longest_waiting_connection_is_closed_to_accept_the_new_one(serve, monkeypatch,
                                                                                            caplog):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    waiting = served.connect()
    wait_for(lambda: served.open_connections() == 1, "the connection accepted")
    failing_accepts(monkeypatch, errno.EMFILE)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")

    assert read_answer(client.makefile("rb"))[0] == 200
    assert closed_by_the_server(waiting)
    assert served.closed("over_capacity") == 1
    assert warnings_logged(caplog) == [
        "Cannot accept a connection (Too many open files), with 1 open: each new connection closes the one "
        "that has waited longest (1 so far)"]


def test_out_of_descriptors_with_none_waiting_accepting_stops_for_pause_seconds_then_goes_on(clock, serve,
                                                                                              monkeypatch, caplog):
    served = serve()
    failing_accepts(monkeypatch, errno.EMFILE)
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")

    wait_for(lambda: warnings_logged(caplog), "the pause")
    assert warnings_logged(caplog) == ["Cannot accept a connection (Too many open files) and none is waiting to be "
                                       "closed: not accepting for 0.1 s"]
    assert served.open_connections() == 0
    clock.now = 1000.0 + PAUSE_SECONDS
    assert read_answer(client.makefile("rb"))[0] == 200


def test_at_the_cap_the_log_says_so_at_most_once_a_minute_with_the_count_so_far(clock, serve, caplog):
    served = serve(max_connections=2, request_timeout_seconds=600, idle_timeout_seconds=600)
    for count in (1, 2):
        served.connect()
        wait_for(lambda: served.open_connections() == count, f"connection {count} accepted")

    for count, at in enumerate((1000.0, 1059.0, 1060.0), 1):
        clock.now = at
        served.connect()
        wait_for(lambda: served.closed("over_capacity") == count, f"connection {count} closed for capacity")
    assert warnings_logged(caplog) == [
        f"The most connections allowed (--max-connections), with 2 open: each new connection closes the one "
        f"that has waited longest ({count} so far)" for count in (1, 3)]


def test_at_the_cap_an_idle_connection_that_waited_longer_is_closed_before_a_pending_one(clock, serve):
    served = serve(max_connections=2, request_timeout_seconds=600, idle_timeout_seconds=600)
    idle = served.connect()
    idle.sendall(b"GET /nothing HTTP/1.1\r\n\r\n")
    assert read_answer(idle.makefile("rb"))[0] == 404
    assert served.get("/nothing")[0] == 404  # read after the loop made `idle` wait, since 1000
    wait_for(lambda: served.open_connections() == 1, "the second connection let go")
    clock.now = 1001.0
    pending = served.connect()
    wait_for(lambda: served.open_connections() == 2, "the pending connection accepted")

    clock.now = 1002.0
    served.connect()
    assert closed_by_the_server(idle)
    assert still_open(pending)


# -- the loop's rounds -------------------------------------------------------------------------

class Rounds:
    """The loop's selector, watched: each select's timeout and what it returned, and the
    connections accepted after it, round by round; `go` cleared holds the loop before its
    next select."""

    def __init__(self, monkeypatch):
        self.rounds = []  # [timeout, events, connections accepted]
        self.selecting = 0  # selects begun
        self.held = threading.Event()
        self.go = threading.Event()
        self.go.set()
        rounds, real_accept = self, socket.socket.accept

        class Selector(selectors.DefaultSelector):
            def select(self, timeout=None):
                if not rounds.go.is_set():
                    rounds.held.set()
                rounds.go.wait(3 * DEADLINE)  # longer than a spec waits for what the held loop keeps
                rounds.selecting += 1
                events = super().select(timeout)
                rounds.rounds.append([timeout, events, 0])
                return events

        def accept(sock):
            accepted = real_accept(sock)
            rounds.rounds[-1][2] += 1
            return accepted

        monkeypatch.setattr(selectors, "DefaultSelector", Selector)
        monkeypatch.setattr(socket.socket, "accept", accept)

    def hold(self, served):
        """Hold the loop before its next select (a client of its own wakes it from the one
        it may be in): whatever connects then queues until `go` is set."""
        self.held.clear()
        self.go.clear()
        served.connect()
        wait_for(self.held.is_set, "the loop held")

    def accepted(self):
        return sum(accepted for _, _, accepted in list(self.rounds))

    def timeouts(self):
        return [timeout for timeout, _, _ in list(self.rounds)]


@pytest.fixture
def rounds(monkeypatch):
    return Rounds(monkeypatch)


def test_the_loop_waits_in_select_until_the_next_deadline_and_no_longer(clock, rounds, serve):
    served = serve(request_timeout_seconds=0.5, idle_timeout_seconds=60)
    served.connect()  # to send a request within 0.5 s, by the clock standing at 1000

    wait_for(lambda: 0.5 in rounds.timeouts(), "a select until the connection's deadline")


def test_a_worker_done_wakes_the_loop_at_once_however_far_the_next_deadline(clock, rounds, serve):
    tasks, rendering, release = held_scrape()
    served = serve(tasks, request_timeout_seconds=600, idle_timeout_seconds=600)
    served.connect()  # sends nothing: the loop's next deadline is 600 s away
    client = served.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\n\r\nGET /opted-in HTTP/1.1\r\n\r\n")  # the loop serves the second
    assert rendering.acquire(timeout=DEADLINE)  # after the first is answered
    wait_for(lambda: rounds.selecting > len(rounds.rounds), "the loop waiting in select")
    release.set()
    stream = client.makefile("rb")

    assert [read_answer(stream)[0] for _ in range(2)] == [200, 200]


def test_a_quiet_loop_rests_in_select_once_a_workers_wake_up_is_read(clock, rounds, serve):
    served = serve()
    assert served.get()[0] == 200
    wait_for(lambda: served.open_connections() == 0, "the connection let go")
    served_rounds = len(rounds.rounds)

    wait_for(lambda: any(not events for _, events, _ in rounds.rounds[served_rounds:]), "a select that timed out")


@pytest.mark.parametrize(("max_connections", "batch"), [(2, 1), (4, 2), (7, 3), (1000, 64)])
def test_a_round_of_the_loop_accepts_at_most_half_the_cap_of_connections_and_at_most_64(
        rounds, serve, max_connections, batch):
    served = serve(max_connections=max_connections, request_timeout_seconds=60, idle_timeout_seconds=60)
    rounds.hold(served)
    for _ in range(batch + 1):
        served.connect()
    rounds.go.set()
    wait_for(lambda: served.open_connections() == min(max_connections, batch + 2), "every client accepted")

    assert max(accepted for _, _, accepted in rounds.rounds) == batch


def test_a_client_that_gave_up_before_it_was_accepted_does_not_hold_up_those_behind_it(rounds, serve, monkeypatch):
    served = serve(request_timeout_seconds=60, idle_timeout_seconds=60)
    accept, failed_in = socket.socket.accept, []

    def aborted_once(sock):
        if not failed_in:
            failed_in.append(len(rounds.rounds) - 1)
            raise ConnectionAbortedError(errno.ECONNABORTED, os.strerror(errno.ECONNABORTED))
        return accept(sock)

    rounds.hold(served)
    monkeypatch.setattr(socket.socket, "accept", aborted_once)
    for _ in range(3):
        served.connect()
    queued = len(served.clients) - rounds.accepted()
    rounds.go.set()

    wait_for(lambda: served.open_connections() == 4, "the clients accepted")
    assert rounds.rounds[failed_in[0]][2] == queued


def test_at_the_cap_with_every_connection_being_answered_new_ones_are_closed_as_many_a_round_as_accepted(
        rounds, serve):
    tasks, rendering, release = held_scrape()
    served = serve(tasks, max_connections=4)  # two accepted a round
    busy = [served.connect() for _ in range(4)]
    for client in busy:
        client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    for _ in range(WORKERS):
        assert rendering.acquire(timeout=DEADLINE)
    sent_by = len(rounds.rounds)
    wait_for(lambda: len(rounds.rounds) >= sent_by + 3, "a round begun after the requests were sent")  # read them
    try:
        rounds.hold(served)  # its client is closed at once
        held_from = len(rounds.rounds)
        for _ in range(2):
            served.connect()
        rounds.go.set()
        wait_for(lambda: served.closed("over_capacity") == 3, "the new connections closed")
    finally:
        release.set()
    assert rounds.rounds[held_from][2] == 2
    assert all(read_answer(client.makefile("rb"))[0] == 200 for client in busy)


def test_workers_answer_on_while_the_loop_is_held_however_many_wake_ups_it_has_not_read(
        rounds, serve, monkeypatch):
    real_socketpair = socket.socketpair

    def small_socketpair(*args):  # the loop's wake-up channel, full after a few wake-ups
        pair = real_socketpair(*args)
        for end in pair:
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        return pair

    monkeypatch.setattr(socket, "socketpair", small_socketpair)
    tasks, rendering, release = held_scrape()
    served = serve(tasks, request_timeout_seconds=60, idle_timeout_seconds=60)
    scrapers = [served.connect() for _ in range(40)]
    for client in scrapers:
        client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    for _ in range(WORKERS):
        assert rendering.acquire(timeout=DEADLINE)
    # A request sent after theirs answered, the loop has read theirs.
    wait_for(lambda: served.get("/nothing")[0] == 404 and served.open_connections() == len(scrapers),
             "every scrape read")
    rounds.hold(served)
    try:
        release.set()
        assert all(read_answer(client.makefile("rb"))[0] == 200 for client in scrapers)
    finally:
        rounds.go.set()
