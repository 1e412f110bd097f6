"""gunicorn's gthread worker, except that a request is read whole before a thread takes it.

Why: gthread hands a connection to one of its (8) threads as soon as it is accepted, and
the thread then blocks reading headers and body. Eight clients that trickle a request,
no token needed, held every thread and stalled /alerts and /healthz for as long as they
lasted. Here the worker's event loop reads each request without
blocking, up to a deadline (SWARMGUARD_REQUEST_READ_TIMEOUT, 5 s by default) from its
first byte; only a complete request reaches a thread, and a connection that has not sent
one by the deadline is closed. Slow clients then cost a socket and a buffer each, never a
thread (make bench-receiver-hardening measures it with 50 of them).

`request_complete` is the pure part (bytes in, yes or no), tested on its own. The worker
leans on gthread's internals (enqueue_req, handle, the poller, the method queue), as in
gunicorn 27; `worker_class()` falls back to plain gthread where they differ. TLS is not
pre-read (the receiver serves plain HTTP on the stack's network).
A request with `Expect: 100-continue` gets its "100 Continue" from the worker as soon as
its headers are in, and the header is taken out of what gunicorn parses (so gunicorn does
not send a second one); its body is then pre-read like any other.
"""
from __future__ import annotations

import os
import re
import selectors
import time
from functools import partial

from gunicorn.http.unreader import Unreader
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

READ_TIMEOUT_ENV = "SWARMGUARD_REQUEST_READ_TIMEOUT"
DEFAULT_READ_TIMEOUT = 5.0
# Past this without the end of the headers, the request is handed over as it is: gunicorn
# refuses it (431/400) without the worker buffering more.
MAX_HEADER_BYTES = 64 * 1024

_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.I | re.M)
_EXPECT_CONTINUE = re.compile(rb"^expect[ \t]*:[ \t]*100-continue[ \t]*\r\n", re.I | re.M)


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


def read_timeout() -> float:
    text = os.environ.get(READ_TIMEOUT_ENV, "")
    try:
        value = float(text) if text.strip() else DEFAULT_READ_TIMEOUT
    except ValueError:
        raise SystemExit(f"{READ_TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    return value if value > 0 else DEFAULT_READ_TIMEOUT


def request_complete(data: bytes | bytearray, max_body: int) -> bool:
    """Whether `data` holds one whole HTTP/1.x request, or enough to answer it without
    reading more: a malformed or oversized one is complete too, for gunicorn or the app
    to refuse (400, 413, 431) at once."""
    end = data.find(_HEADER_END)
    if end < 0:
        return len(data) > MAX_HEADER_BYTES
    head, body_start = data[:end], end + len(_HEADER_END)
    if _CHUNKED.search(head):
        return _chunked_complete(bytes(data[body_start:]), max_body)  # rare: a copy is fine
    lengths = _CONTENT_LENGTH.findall(head)
    if not lengths:
        return True  # no body
    if len(lengths) > 1 or not lengths[0].isdigit():
        return True  # gunicorn answers 400
    declared = int(lengths[0])
    return declared > max_body or len(data) - body_start >= declared


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


def _chunked_complete(body: bytes, max_body: int) -> bool:
    pos, total = 0, 0
    while True:
        line_end = body.find(b"\r\n", pos, pos + 1024)
        if line_end < 0:
            return len(body) - pos > 1024  # a chunk-size line that long is malformed
        line_end -= pos
        size_text = body[pos:pos + line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return True  # malformed: gunicorn answers 400
        pos += line_end + 2
        if size == 0:
            # Trailers, if any, end with an empty line.
            return body.startswith(b"\r\n", pos) or _HEADER_END in body[pos - 2:]
        total += size
        if total > max_body:
            return True  # the app answers 413
        if len(body) < pos + size + 2:
            return False
        pos += size + 2


class PrereadWorker(ThreadWorker):
    """gthread with requests read in the event loop (see the module's docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout()
        # The largest body the app accepts (+ one byte, as the app itself allows): a
        # longer one is handed over at once for the 413.
        self.max_body = int(os.environ.get("SWARMGUARD_MAX_BODY_BYTES") or 1024 * 1024) + 1
        self.prereading: dict = {}  # conn -> (buffer, deadline)

    def enqueue_req(self, conn):
        if self.cfg.is_ssl or getattr(conn, "preread", None) is not None:
            super().enqueue_req(conn)
            return
        buffered = b""
        if conn.parser is not None:
            # Bytes a keep-alive connection read ahead (a pipelined request) come first.
            buffered = conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        self.prereading[conn] = (bytearray(buffered), time.monotonic() + self.read_timeout)
        # The socket was reported readable (or just accepted): read at once, which spares
        # a whole request from a round through the poller.
        if not self._read(conn, registered=False):
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_preread_readable, conn))

    def _on_preread_readable(self, conn, _sock):
        self._read(conn, registered=True)

    def _read(self, conn, registered: bool) -> bool:
        """Read what has arrived; True once the connection is handed over or closed (and
        no longer registered with the poller)."""
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":  # the client went away
            self._close_prereading(conn, registered)
            return True
        if data:
            self.prereading[conn][0].extend(data)
        return self._try_hand_over(conn, registered)

    def _try_hand_over(self, conn, registered: bool) -> bool:
        # The buffer itself, not a copy: a 1 MiB body arrives in many reads.
        buffer, deadline = self.prereading[conn]
        data, expects = take_expect_continue(buffer)
        if expects:
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass  # the client is gone: the next read says so
            buffer = bytearray(data)
            self.prereading[conn] = (buffer, deadline)
        if not request_complete(buffer, self.max_body):
            return False
        del self.prereading[conn]
        if registered:
            self.poller.unregister(conn.sock)
        conn.preread = bytes(buffer)
        super().enqueue_req(conn)
        return True

    def _close_prereading(self, conn, registered: bool = False):
        self.prereading.pop(conn, None)
        if registered:
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self, *args, **kwargs):
        # Called by gthread's loop at least once a second: also close the connections
        # that have not sent a whole request by their deadline.
        super().murder_keepalived(*args, **kwargs)
        now = time.monotonic()
        expired = [c for c, (_, deadline) in self.prereading.items() if deadline <= now]
        for conn in expired:
            self.log.info("Closed a connection from %s that sent no whole request within "
                          "%.0f s", conn.client, self.read_timeout)
            self._close_prereading(conn, registered=True)

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

