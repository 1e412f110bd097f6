"""The exporter's HTTP endpoint: GET /metrics, the per-task series followed by everything
the prometheus_client registry holds (the exporter's health, process metrics); and GET
/opted-in, the services opted in to SwarmGuard as a manager reads them (exporter/opt_in.py),
a page of its own so that Prometheus scrapes it apart from /metrics, and slowly.

A scrape of either is compressed when Prometheus asks for it (it always does) at gzip
level 1: at 200 tasks on a node level 1 costs a fraction of level 9's CPU for a body a
few percent larger (chosen in 9f2c971, whose figures were not kept; `make bench-density`
measures the bytes a scrape puts on the wire).

No client can take the exporter's memory or its threads. A thread per connection and no
timeout (http.server's ThreadingHTTPServer) let 4,500 idle connections take the exporter
to 148 MB, past stack.yml's 128M: it is OOM-killed and its node goes unwatched
(tests/bench/exporter_attack.py measures both servers). So:

- One thread, the loop, accepts connections and reads request heads as they arrive
  (a selector); an open connection costs a socket and a small record, not a thread. Only
  a whole request for a page goes to one of WORKERS threads, which renders the scrape
  and writes what the socket takes at once; the loop writes any rest.
- Deadlines (exporter/config.py): a connection has `request_timeout_seconds` from its
  opening, or from the first byte of a later request, to send a whole request head, and
  as long to take its answer; a kept-alive connection that sends nothing for
  `idle_timeout_seconds` after an answer is closed.
- At `max_connections` open, each new connection closes the connection that has waited
  longest for its client: to send a request (since it opened or was last answered) or to
  take an answer. A scrape is not that one: Prometheus sends its request as soon as it
  connects, and the loop reads it within a round, long before the connection could be the
  oldest; Prometheus's kept-alive connection is answered every scrape interval, which
  keeps it among the youngest. What is closed is an idle or trickling connection, the
  oldest first. (Refusing new connections instead would lock scrapes out for as long as
  someone holds the open ones.) A connection whose request is being answered is never
  closed so; if every open one is, the new connection is closed at once.
- Out of file descriptors, accept fails: the loop closes the longest-waiting connection
  the same way, or, if none is waiting, stops accepting for PAUSE_SECONDS.
- A listen backlog of LISTEN_BACKLOG (http.server's is 5): the kernel queues a burst of
  new connections for the loop instead of dropping them.
- Closed connections are counted by reason (CLOSE_REASONS); docs/contract.md.

HTTP/1.1, kept alive unless the client says `Connection: close` (HTTP/1.0 is answered and
closed); pipelined requests are answered in order. GET /metrics, GET / and GET
/opted-in are served; any other path is 404, any other method 405, a head that is not
HTTP/1.x or is longer than MAX_HEAD_BYTES is 400 and closes the connection.
"""
from __future__ import annotations

import collections
import errno
import gzip
import logging
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, gzip_accepted

from exporter.config import ExporterConfig

logger = logging.getLogger(__name__)

GZIP_LEVEL = 1
PATHS = ("/metrics", "/")
OPT_IN_PATH = "/opted-in"
LISTEN_BACKLOG = 128
# Scrapes take the collector's lock one at a time, so more threads would only wait; the
# second lets one scrape be compressed and sent while the next reads its tasks.
WORKERS = 2
# Prometheus's request head is about 300 bytes.
MAX_HEAD_BYTES = 8192
# Connections accepted per round of the loop, at most; a smaller cap halves it, so that a
# connection accepted in one round is read in the next before newer ones can push it out.
ACCEPT_BATCH = 64
# How long accepting stops when no descriptor can be freed, and the loop after a round
# that failed (a bug), rather than spin.
PAUSE_SECONDS = 0.1
# How often, at most, the log says that connections are being closed for capacity.
FULL_LOG_SECONDS = 60.0
CLOSE_REASONS = ("slow", "idle", "over_capacity")

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_VERSION = re.compile(r"HTTP/1\.[01]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")

# What a connection is waiting for, and what it is closed as when its deadline passes.
PENDING = "pending"  # a whole request head (since it opened, or since the first byte of one)
IDLE = "idle"  # the first byte of the next request (since its last answer)
WRITING = "writing"  # the client to take the rest of its answer
BUSY = "busy"  # nothing: a worker is answering it
_EXPIRED_AS = {PENDING: "slow", IDLE: "idle", WRITING: "slow"}


def render(tasks: Callable[[], str], registry: CollectorRegistry) -> bytes:
    # The per-task part first: it is the scrape, and the health collectors report on it.
    return tasks().encode() + generate_latest(registry)


# ---------------------------------------------------------------- HTTP, pure

class BadRequest(ValueError):
    """A head that is not an HTTP/1.x request: answered 400, and the connection closed."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    keep_alive: bool
    has_body: bool
    accept_encoding: str

    @property
    def closes(self) -> bool:
        """Whether the connection is closed after the answer: asked for, or the request has
        a body, which this server does not read and which would be taken for the next head."""
        return not self.keep_alive or self.has_body


def parse_head(head: bytes) -> Request:
    """A request from its head (the request line and header lines, without the blank line)."""
    lines = [line.rstrip("\r") for line in head.decode("latin-1").split("\n")]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1] or not _VERSION.fullmatch(parts[2]):
        raise BadRequest(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest(f"not a header line: {line[:80]!r}")
        name = name.lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    length = headers.get("content-length", "0")
    if not _DIGITS.fullmatch(length):
        raise BadRequest(f"not a Content-Length: {length[:40]!r}")
    return Request(method=method, path=target.split("?", 1)[0],
                   keep_alive=version == "HTTP/1.1" and "close" not in connection,
                   has_body=bool(length.lstrip("0")) or "transfer-encoding" in headers,
                   accept_encoding=headers.get("accept-encoding", ""))


def response(status: int, body: bytes, *, close: bool, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{name}: {value}" for name, value in headers),
             f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(status: int, message: str, *, close: bool) -> bytes:
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    if status == HTTPStatus.METHOD_NOT_ALLOWED:
        headers.append(("Allow", "GET"))
    return response(status, (message + "\n").encode(), close=close, headers=tuple(headers))


def page_response(body: bytes, request: Request) -> bytes:
    """The answer to a GET of a page: the page, compressed if the client takes gzip."""
    headers = [("Content-Type", CONTENT_TYPE_LATEST)]
    if gzip_accepted(request.accept_encoding):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers.append(("Content-Encoding", "gzip"))
    return response(200, body, close=request.closes, headers=tuple(headers))


# ---------------------------------------------------------------- the server

class _Connection:
    __slots__ = ("sock", "buffer", "state", "since", "rest", "close_after", "events")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.buffer = bytearray()  # received, not yet a whole head
        self.state = PENDING
        self.since = now  # when what it waits for began
        self.rest = memoryview(b"")  # of an answer, for the loop to write
        self.close_after = False
        self.events = 0  # what the selector watches it for


class MetricsServer:
    """Serves GET /metrics and /opted-in from `serve_forever()` (one thread) until
    `shutdown()`; also a prometheus_client collector of its own connections."""

    def __init__(self, config: ExporterConfig, tasks: Callable[[], str], registry: CollectorRegistry,
                 opted_in: Callable[[], bytes]) -> None:
        # What each path serves, rendered at each request.
        self._pages: dict[str, Callable[[], bytes]] = {**dict.fromkeys(PATHS, partial(render, tasks, registry)),
                                                       OPT_IN_PATH: opted_in}
        self._timeouts = {PENDING: config.request_timeout_seconds, IDLE: config.idle_timeout_seconds,
                          WRITING: config.request_timeout_seconds}
        self._max_connections = config.max_connections
        self._accept_batch = max(1, min(ACCEPT_BATCH, config.max_connections // 2))
        family = socket.AF_INET6 if ":" in config.listen_address else socket.AF_INET
        self._listener = socket.create_server((config.listen_address, config.listen_port), family=family,
                                              backlog=LISTEN_BACKLOG)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._accept_paused_until: float | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, self._wake_reader)
        self._workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="metrics-worker")
        # Answers the workers are done with, for the loop: (connection, rest, close, failed).
        self._answered: collections.deque = collections.deque()
        self._connections: set[_Connection] = set()
        # Waiting connections per state, oldest first: each state has one timeout, so the
        # first is also the first to expire.
        self._waiting: dict[str, dict[_Connection, None]] = {PENDING: {}, IDLE: {}, WRITING: {}}
        self._closed = dict.fromkeys(CLOSE_REASONS, 0)
        self._full_logged_at = float("-inf")
        self._stopping = False
        self._stopped = threading.Event()

    @property
    def server_port(self) -> int:
        return self._listener.getsockname()[1]

    # ---------------------------------------------------------------- the loop

    def serve_forever(self) -> None:
        try:
            while not self._stopping:
                try:
                    self._round()
                except Exception:  # a bug must not leave the node unwatched
                    logger.exception("The metrics server's loop failed a round; it goes on")
                    time.sleep(PAUSE_SECONDS)
        finally:
            self._stopped.set()

    def _round(self) -> None:
        events = self._selector.select(self._seconds_to_next_deadline(time.monotonic()))
        now = time.monotonic()
        for key, _mask in events:
            if key.data is None:
                self._accept(now)
            elif key.data is self._wake_reader:
                self._drain_wakeups()
            else:
                self._guarded(self._on_ready, key.data, now)
        self._take_answered(now)
        self._expire(now)

    def _guarded(self, handle: Callable, conn: _Connection, *args) -> None:
        """A bug met on one connection closes that connection, not the loop."""
        try:
            handle(conn, *args)
        except Exception:
            logger.exception("Serving a connection failed; it is closed")
            self._close(conn)

    def _seconds_to_next_deadline(self, now: float) -> float:
        deadlines = [next(iter(waiting)).since + self._timeouts[state]
                     for state, waiting in self._waiting.items() if waiting]
        if self._accept_paused_until is not None:
            deadlines.append(self._accept_paused_until)
        return max(0.0, min(deadlines, default=now + 1.0) - now)

    def _expire(self, now: float) -> None:
        for state, waiting in self._waiting.items():
            while waiting:
                oldest = next(iter(waiting))
                if oldest.since + self._timeouts[state] > now:
                    break
                self._close(oldest, _EXPIRED_AS[state])
        if self._accept_paused_until is not None and self._accept_paused_until <= now:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, None)

    # ---------------------------------------------------------------- accepting

    def _accept(self, now: float) -> None:
        for _ in range(self._accept_batch):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors or memory: free some, or wait a moment, then accept again.
                    if not self._close_longest_waiting(now, f"Cannot accept a connection ({error.strerror})"):
                        self._pause_accepting(now, error)
                    return
                continue  # e.g. ECONNABORTED: that client gave up before it was accepted
            sock.setblocking(False)
            full = len(self._connections) >= self._max_connections
            if full and not self._close_longest_waiting(now, "The most connections allowed (--max-connections)"):
                self._closed["over_capacity"] += 1
                sock.close()
                continue
            conn = _Connection(sock, now)
            self._connections.add(conn)
            self._wait(conn, PENDING, now)
            self._watch(conn, selectors.EVENT_READ)

    def _close_longest_waiting(self, now: float, why: str) -> bool:
        fronts = [next(iter(waiting)) for waiting in self._waiting.values() if waiting]
        if not fronts:
            return False
        # Counted before the close: the operator reads how many were open when it was full.
        open_when_full = len(self._connections)
        self._close(min(fronts, key=lambda conn: conn.since), "over_capacity")
        if now - self._full_logged_at >= FULL_LOG_SECONDS:
            self._full_logged_at = now
            logger.warning("%s, with %d open: each new connection closes the one that has waited longest "
                           "(%d so far)", why, open_when_full, self._closed["over_capacity"])
        return True

    def _pause_accepting(self, now: float, error: OSError) -> None:
        logger.warning("Cannot accept a connection (%s) and none is waiting to be closed: not accepting for %.1f s",
                       error.strerror, PAUSE_SECONDS)
        self._selector.unregister(self._listener)
        self._accept_paused_until = now + PAUSE_SECONDS

    # ---------------------------------------------------------------- reading and writing

    def _on_ready(self, conn: _Connection, now: float) -> None:
        if conn not in self._connections:
            return  # closed earlier in this round, to make room
        if conn.state == WRITING:
            self._write(conn, now)
        else:
            self._read(conn, now)

    def _read(self, conn: _Connection, now: float) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client closed it
            self._close(conn)
            return
        if conn.state == IDLE:
            self._wait(conn, PENDING, now)
        searched = max(0, len(conn.buffer) - 3)  # a head's end may straddle the two reads
        conn.buffer += data
        self._serve_buffer(conn, now, searched)

    def _serve_buffer(self, conn: _Connection, now: float, searched: int = 0) -> None:
        """Act on the whole heads at the start of the buffer, one after the other, until
        one goes to a worker, an answer waits to be written, or none is whole (no end of a
        head starts before `searched`)."""
        while conn.state == PENDING and conn in self._connections:
            end = _HEAD_END.search(conn.buffer, searched, MAX_HEAD_BYTES + 4)
            searched = 0
            if end is None or end.start() > MAX_HEAD_BYTES:
                if len(conn.buffer) > MAX_HEAD_BYTES:
                    self._answer(conn, error_response(400, f"request head longer than {MAX_HEAD_BYTES} bytes",
                                                      close=True), True, now)
                return
            head = bytes(conn.buffer[:end.start()])
            del conn.buffer[:end.end()]
            try:
                request = parse_head(head)
            except BadRequest as error:
                self._answer(conn, error_response(400, str(error), close=True), True, now)
                return
            if request.method != "GET":
                self._answer(conn, error_response(405, "only GET is served", close=request.closes), request.closes,
                             now)
            elif request.path not in self._pages:
                self._answer(conn, error_response(404, f"only /metrics and {OPT_IN_PATH} are served",
                                                  close=request.closes), request.closes, now)
            else:
                self._wait(conn, BUSY, now)
                self._watch(conn, 0)
                self._workers.submit(self._scrape, conn, request)

    def _scrape(self, conn: _Connection, request: Request) -> None:
        """In a worker: render the page, write what the socket takes, hand the rest back.
        The connection always goes back to the loop, if only to be closed."""
        answered = (conn, None, True, True)
        try:
            close = request.closes
            try:
                data = page_response(self._pages[request.path](), request)
            except Exception:
                logger.exception("Rendering %s failed", request.path)
                data, close = error_response(500, "the scrape failed; see the exporter's log", close=True), True
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            answered = (conn, memoryview(data)[sent:], close, False)
        except OSError:
            pass  # the client is gone
        except Exception:
            logger.exception("Answering a scrape failed; its connection is closed")
        finally:
            self._answered.append(answered)
            try:
                self._wake_writer.send(b"\0")
            except OSError:
                pass  # the loop has many wake-ups queued already, or is shutting down

    def _take_answered(self, now: float) -> None:
        while self._answered:
            conn, rest, close, failed = self._answered.popleft()
            if conn not in self._connections:
                continue
            if failed:
                self._close(conn)
            else:
                self._guarded(self._sent, conn, rest, close, now)
                self._guarded(self._serve_buffer, conn, now)

    def _answer(self, conn: _Connection, data: bytes, close: bool, now: float) -> None:
        """Write an answer the loop made (an error), as a worker writes a scrape."""
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        self._sent(conn, memoryview(data)[sent:], close, now)

    def _sent(self, conn: _Connection, rest: memoryview, close: bool, now: float) -> None:
        """After a write of an answer: the loop writes the rest, or the connection is
        closed, or it waits for its next request (PENDING when some of it is here: the
        caller then serves the buffer)."""
        if rest:
            conn.rest, conn.close_after = rest, close
            self._wait(conn, WRITING, now)
            self._watch(conn, selectors.EVENT_WRITE)
        elif close:
            self._close(conn)
        else:
            self._wait(conn, PENDING if conn.buffer else IDLE, now)
            self._watch(conn, selectors.EVENT_READ)

    def _write(self, conn: _Connection, now: float) -> None:
        try:
            sent = conn.sock.send(conn.rest)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.rest = conn.rest[sent:]
        if not conn.rest:
            self._sent(conn, conn.rest, conn.close_after, now)
            self._serve_buffer(conn, now)

    # ---------------------------------------------------------------- bookkeeping

    def _wait(self, conn: _Connection, state: str, now: float) -> None:
        """`conn` now waits for what `state` says, from `now` (BUSY: for nothing)."""
        self._waiting.get(conn.state, {}).pop(conn, None)
        conn.state, conn.since = state, now
        if state in self._waiting:
            self._waiting[state][conn] = None

    def _watch(self, conn: _Connection, events: int) -> None:
        if events == conn.events:
            return
        if not events:
            self._selector.unregister(conn.sock)
        elif not conn.events:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: _Connection, reason: str | None = None) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        self._waiting.get(conn.state, {}).pop(conn, None)
        if reason is not None:  # counted before the client can see the close
            self._closed[reason] += 1
        if conn.events:
            self._selector.unregister(conn.sock)
            conn.events = 0
        conn.sock.close()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # ---------------------------------------------------------------- stopping

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and wait until it has returned."""
        self._stopping = True
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass
        self._stopped.wait()

    def server_close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
        for conn in list(self._connections):
            self._close(conn)
        self._selector.close()
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    # ---------------------------------------------------------------- its own metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("swarmguard_exporter_connections", "Connections to the exporter's /metrics "
                                "endpoint open now.", value=len(self._connections))
        closed = CounterMetricFamily("swarmguard_exporter_connections_closed",
                                     "Connections the exporter closed on its own: slow (no whole request, or its "
                                     "answer not taken, within the request timeout), idle (kept alive with no new "
                                     "request within the idle timeout), over_capacity (to make room for a new one).",
                                     labels=["reason"])
        for reason, count in dict(self._closed).items():
            closed.add_metric([reason], count)
        yield closed


def start(config: ExporterConfig, tasks: Callable[[], str], registry: CollectorRegistry,
          opted_in: Callable[[], bytes]) -> tuple[MetricsServer, threading.Thread]:
    """Listen on the configured address, publish the server's own metrics in `registry`,
    and serve /metrics (`tasks` and `registry`) and /opted-in (`opted_in`) from a thread
    of its own; OSError when the address cannot be had."""
    server = MetricsServer(config, tasks, registry, opted_in)
    registry.register(server)
    thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    return server, thread
