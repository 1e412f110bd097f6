"""gunicorn's gthread worker, except that a request is read whole before a thread takes it,
and what a connection may cost is bounded.

Why: gthread hands a connection to one of its (8) threads as soon as it is accepted, and
the thread then blocks reading headers and body. Eight clients that trickle a request,
no token needed, held every thread and stalled /alerts and /healthz for as long as they
lasted. Here the worker's event loop reads each request without blocking, up to a
deadline (request_read_timeout, receiver/config.py) from its first byte; only a
complete request reaches a thread, and a connection that has not sent one by the
deadline is closed. Slow clients then cost a socket and a buffer each, never a thread.

What a connection costs is bounded (docs/contract.md, "Receiver HTTP API"):
- CPU: `RequestScan` judges a request's head incrementally: one that arrives a byte at a
  time is scanned once in all, not once per read. A body needs no scanning: it must come
  with a Content-Length (a chunked request is refused, 411: scanning chunks one by one in
  this loop let 64 connections of 1-byte chunks take all of its CPU).
- Connections: at most `worker_connections` (gunicorn.conf.py) are open. gthread stops
  accepting at its cap, so ~130 idle or trickling connections starved everyone; here
  the worker keeps accepting and, past the cap, closes the connection that has waited
  longest without sending a whole request (an idle keep-alive one first). A new client
  always gets in; an attacker holds at most the cap, each for at most the read timeout.
- Memory: the bytes held for requests not yet whole are capped in total
  (PREREAD_BUDGET_BYTES); a read past it is refused (503) rather than buffered.
- What the app could only fail on (bare LF line ends) is refused here with a 400, before
  any thread or the app sees it.

`RequestScan` is the pure part (bytes in, a verdict out), tested
on its own. The worker leans on gthread's internals (enqueue_req, accept, handle, the
poller, the method queue), as in gunicorn 27; `worker_class()` falls back to plain
gthread where they differ. TLS is not pre-read (the receiver serves plain HTTP on the
stack's network). A request with `Expect: 100-continue` gets its "100 Continue" from the
worker as soon as its headers are in, and the header is taken out of what gunicorn
parses (so gunicorn does not send a second one); its body is then pre-read like any other.
"""
from __future__ import annotations

import re
import resource
import selectors
import time
from dataclasses import dataclass
from functools import partial

from gunicorn.http.unreader import Unreader
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from receiver.config import load_server_settings

# Past this without the end of the headers, the request is refused (431) without the
# worker buffering more.
MAX_HEADER_BYTES = 64 * 1024
# Bytes held, in all, for requests not yet whole: 64 concurrent 1 MiB webhooks. Well
# under the receiver's memory limit (stack.yml), far over what Alertmanager ever sends.
PREREAD_BUDGET_BYTES = 64 * 1024 * 1024
# How often the worker logs what it closed (one line, counts), rather than a line per
# connection: an attacker's thousands of connections must not flood the log.
CLOSE_SUMMARY_INTERVAL_S = 60.0

_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.I | re.M)
_EXPECT_CONTINUE = re.compile(rb"^expect[ \t]*:[ \t]*100-continue[ \t]*\r\n", re.I | re.M)
_BARE_LF = re.compile(rb"(?<!\r)\n")

PREREAD_WORKER = "receiver.serving.PrereadWorker"


def worker_class() -> str:
    """PrereadWorker where this gunicorn's gthread has the shape it was written against
    (gunicorn 27: one event loop owning the poller, a method queue back to it); plain
    gthread, and a warning that slow clients can then hold its threads, elsewhere."""
    if hasattr(gthread, "PollableMethodQueue") and hasattr(Unreader, "take_buffered"):
        return PREREAD_WORKER
    import sys
    print("WARNING: this gunicorn's gthread worker is older than receiver/serving.py "
          "expects; serving with plain gthread, where slow clients can hold its threads",
          file=sys.stderr)
    return "gthread"


@dataclass(frozen=True)
class Refusal:
    """An answer the worker gives itself, then closes the connection."""
    status: int
    reason: str
    close_reason: str  # the `reason` label of swarmguard_connections_closed_total

    def response(self) -> bytes:
        phrase = {400: "Bad Request", 411: "Length Required", 413: "Content Too Large",
                  431: "Request Header Fields Too Large",
                  503: "Service Unavailable"}[self.status]
        body = ('{"error": "%s"}' % self.reason).encode()
        extra = b"Retry-After: 5\r\n" if self.status == 503 else b""
        return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"%sConnection: close\r\n\r\n" % (self.status, phrase.encode(), len(body), extra)
                ) + body


WHOLE = "whole"  # the verdict for a request to hand to a thread
HEADERS_TOO_LARGE = Refusal(431, "request headers larger than 65536 bytes", "malformed")
BARE_LF = Refusal(400, "lines must end with CRLF, not a bare LF", "malformed")
# Alertmanager and the swarmguard command always send a Content-Length. A chunked body
# would have to be scanned chunk by chunk in this one event loop: 1-byte chunks, 64
# connections of them, took every bit of its CPU (make bench-receiver-hardening). RFC 9110
# lets a server require a length instead.
LENGTH_REQUIRED = Refusal(411, "a Content-Length is required; chunked bodies are not taken",
                          "length_required")
OVER_BUDGET = Refusal(503, "too many requests being read; try again", "over_buffer_budget")


class RequestScan:
    """Whether a connection's bytes hold one whole HTTP/1.x request, judged incrementally:
    `feed(buffer)` is called with the same, growing buffer after each read and resumes
    where it stopped, so trickled bytes cost O(n) in all.

    Returns None (read more), WHOLE (hand to a thread: a request, or one gunicorn or the
    app refuses at once without reading more, e.g. a bad Content-Length or one over the
    limit), or a Refusal for the worker to send itself."""

    def __init__(self, max_body: int):
        self.max_body = max_body
        self.body_start = -1
        self.searched = 0  # where the search for the end of the head resumes
        self.declared = 0

    def feed(self, data: bytes | bytearray) -> str | Refusal | None:
        if self.body_start < 0:
            verdict = self._head(data)
            if verdict is not None or self.body_start < 0:
                return verdict
        return WHOLE if len(data) - self.body_start >= self.declared else None

    def head_complete(self) -> bool:
        return self.body_start >= 0

    def _head(self, data) -> str | Refusal | None:
        start = max(0, self.searched - 3)
        end = data.find(_HEADER_END, start)
        if _BARE_LF.search(data, start, end + 2 if end >= 0 else len(data)):
            return BARE_LF  # gunicorn refuses it too, but only once it sees a CRLF CRLF
        if end < 0:
            self.searched = len(data)
            return HEADERS_TOO_LARGE if len(data) > MAX_HEADER_BYTES else None
        head = data[:end]
        self.body_start = end + len(_HEADER_END)
        if _CHUNKED.search(head):
            return LENGTH_REQUIRED
        lengths = _CONTENT_LENGTH.findall(head)
        if not lengths:
            return WHOLE  # no body
        if len(lengths) > 1 or not lengths[0].isdigit():
            return WHOLE  # gunicorn answers 400
        self.declared = int(lengths[0])
        if self.declared > self.max_body:
            return WHOLE  # the app answers 413 without reading the body
        return None


def take_expect_continue(data: bytes | bytearray) -> tuple[bytes | bytearray, bool]:
    """(the request without its `Expect: 100-continue` header, whether it had one), once
    the headers are complete; the worker answers the expectation itself."""
    end = data.find(_HEADER_END)
    if end < 0:
        return data, False
    if not _EXPECT_CONTINUE.search(data, 0, end + 2):
        return data, False
    head = _EXPECT_CONTINUE.sub(b"", bytes(data[:end + 2]))
    return head + data[end + 2:], True


@dataclass
class _Prereading:
    buffer: bytearray
    scan: RequestScan
    deadline: float
    registered: bool = False


class PrereadWorker(ThreadWorker):
    """gthread with requests read in the event loop (see the module's docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read as gunicorn.conf.py read them (the environment over the YAML file), which
        # already stopped gunicorn on a bad value.
        settings = load_server_settings()
        self.read_timeout = settings.request_read_timeout
        # The largest body the app accepts (+ one byte, as the app itself allows): a
        # longer one is handed over at once for the 413.
        self.max_body = settings.max_body_bytes + 1
        # Oldest first (dict order = the order reading began): the first is the one to
        # close when a new connection needs room.
        self.prereading: dict = {}
        self.prereading_bytes = 0
        self.max_open = self.cfg.worker_connections
        # gthread stops accepting at worker_connections; this worker makes room instead.
        self.worker_connections = 2 ** 31
        self.closed_counts: dict[str, int] = {}
        self.next_close_summary = time.monotonic() + CLOSE_SUMMARY_INTERVAL_S

    def init_process(self):
        self._ensure_descriptors()
        super().init_process()

    def _ensure_descriptors(self):
        """Raise the open-files limit to what max_open needs, or lower max_open to it."""
        needed = self.max_open + self.cfg.threads + 64
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
            if soft < needed:
                self.max_open = max(16, soft - self.cfg.threads - 64)
                self.log.warning("open-files limit %d: serving at most %d connections",
                                 soft, self.max_open)

    # -- accepting -------------------------------------------------------------------------

    def accept(self, listener):
        super().accept(listener)
        while self.nr_conns > self.max_open and self._close_longest_waiting():
            pass

    def _close_longest_waiting(self) -> bool:
        """Make room: close an idle keep-alive connection, else the one that has been
        reading a request longest. False when every connection is being served."""
        if self.keepalived_conns:
            conn = self.keepalived_conns.popleft()
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            # Its readiness may be in the poller's batch being dispatched right now.
            conn.closed_to_make_room = True
            self.nr_conns -= 1
            conn.close()
            self._count_closed("over_capacity")
            return True
        if self.prereading:
            self._close_prereading(next(iter(self.prereading)), "over_capacity")
            return True
        return False

    def on_client_socket_readable(self, conn, client):
        # A connection closed to make room earlier in the same batch of poller events
        # would make gthread unregister a socket the poller no longer holds: the worker
        # died of it (KeyError) when accepts and kept-alive reads came in one batch.
        if getattr(conn, "closed_to_make_room", False):
            return
        super().on_client_socket_readable(conn, client)

    # -- reading ---------------------------------------------------------------------------

    def enqueue_req(self, conn):
        if self.cfg.is_ssl or getattr(conn, "preread", None) is not None:
            super().enqueue_req(conn)
            return
        buffered = b""
        if conn.parser is not None:
            # Bytes a keep-alive connection read ahead (a pipelined request) come first.
            buffered = conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        state = _Prereading(bytearray(buffered), RequestScan(self.max_body),
                            time.monotonic() + self.read_timeout)
        self.prereading[conn] = state
        self.prereading_bytes += len(buffered)
        # A pipelined request may be whole already; else the socket was reported readable
        # (or just accepted): read at once, which spares a round through the poller.
        if buffered and self._judge(conn, state):
            return
        if not self._read(conn, state):
            state.registered = True
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_preread_readable, conn))

    def _on_preread_readable(self, conn, _sock):
        state = self.prereading.get(conn)
        if state is not None:
            self._read(conn, state)

    def _read(self, conn, state: _Prereading) -> bool:
        """Read what has arrived; True once the connection is handed over or closed."""
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":
            # The client went away, or only stopped sending (a half-close after pipelined
            # requests): what is whole in the buffer is still answered.
            if state.scan.feed(state.buffer) == WHOLE:
                return self._hand_over(conn, state)
            self._close_prereading(conn, None)
            return True
        if data:
            if self.prereading_bytes + len(data) > PREREAD_BUDGET_BYTES:
                self._refuse(conn, OVER_BUDGET)
                return True
            state.buffer.extend(data)
            self.prereading_bytes += len(data)
        return self._judge(conn, state)

    def _judge(self, conn, state: _Prereading) -> bool:
        had_head = state.scan.head_complete()
        verdict = state.scan.feed(state.buffer)
        if not had_head and state.scan.head_complete():
            self._answer_expect_continue(conn, state)
        if verdict is None:
            return False
        if verdict == WHOLE:
            return self._hand_over(conn, state)
        self._refuse(conn, verdict)
        return True

    def _answer_expect_continue(self, conn, state: _Prereading) -> None:
        data, expects = take_expect_continue(state.buffer)
        if not expects:
            return
        try:
            conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        except OSError:
            pass  # the client is gone: the next read says so
        self.prereading_bytes -= len(state.buffer) - len(data)
        state.buffer = bytearray(data)
        # The head changed length: judge it again from the start (once per request).
        state.scan = RequestScan(self.max_body)
        state.scan.feed(state.buffer)

    def _hand_over(self, conn, state: _Prereading) -> bool:
        self._forget(conn, state)
        conn.preread = bytes(state.buffer)
        super().enqueue_req(conn)
        return True

    def _forget(self, conn, state: _Prereading) -> None:
        del self.prereading[conn]
        self.prereading_bytes -= len(state.buffer)
        if state.registered:
            self.poller.unregister(conn.sock)

    def _refuse(self, conn, refusal: Refusal) -> None:
        try:
            conn.sock.send(refusal.response())  # non-blocking, best effort: it is short
        except OSError:
            pass
        self._close_prereading(conn, refusal.close_reason)

    def _close_prereading(self, conn, reason: str | None) -> None:
        state = self.prereading.get(conn)
        if state is not None:
            self._forget(conn, state)
        self.nr_conns -= 1
        conn.close()
        if reason:
            self._count_closed(reason)

    # -- accounting ------------------------------------------------------------------------

    def _count_closed(self, reason: str) -> None:
        self.closed_counts[reason] = self.closed_counts.get(reason, 0) + 1
        extension = getattr(self.wsgi, "extensions", {}).get("swarmguard")
        if extension is not None:
            extension.metrics.connections_closed.labels(reason).inc()

    def murder_keepalived(self, *args, **kwargs):
        # Called by gthread's loop at least once a second: also close the connections
        # that have not sent a whole request by their deadline (oldest first, so the
        # scan stops at the first that still has time).
        super().murder_keepalived(*args, **kwargs)
        now = time.monotonic()
        while self.prereading:
            conn, state = next(iter(self.prereading.items()))
            if state.deadline > now:
                break
            self._close_prereading(conn, "read_timeout")
        if now >= self.next_close_summary:
            self.next_close_summary = now + CLOSE_SUMMARY_INTERVAL_S
            if self.closed_counts:
                self.log.warning(
                    "Closed connections in the last %.0f s: %s (read timeout %.0f s, at "
                    "most %d open)", CLOSE_SUMMARY_INTERVAL_S,
                    ", ".join(f"{n} {r}" for r, n in sorted(self.closed_counts.items())),
                    self.read_timeout, self.max_open)
                self.closed_counts = {}

    def handle(self, conn):
        data = getattr(conn, "preread", None)
        if data is not None:
            conn.preread = None
            conn.data_ready = True  # gthread's own wait for a first byte is not needed
            conn.sock.setblocking(True)
            conn.init()
            if data:
                conn.parser.unreader.unread(data)
        return super().handle(conn)
