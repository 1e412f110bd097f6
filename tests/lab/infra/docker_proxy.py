"""A Docker socket that can stop answering: a unix-socket relay to a real daemon's socket
that, once `hang()` is called, cuts every relayed connection and accepts new ones without
ever answering (a daemon that is wedged, not gone). `relay()` repairs it. For fault tests:
point a client at `url` and break Docker under it without touching the daemon."""
from __future__ import annotations

import socket
import threading
from pathlib import Path


class DockerProxy:
    def __init__(self, upstream: Path, path: Path):
        self.upstream, self.path = Path(upstream), Path(path)
        self.hanging = threading.Event()
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> "DockerProxy":
        self.path.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True, name="docker-proxy").start()
        return self

    def __exit__(self, *exc) -> None:
        self.hanging.set()
        if self._server:
            self._server.close()
        self._cut()
        self.path.unlink(missing_ok=True)

    def hang(self) -> None:
        self.hanging.set()
        self._cut()

    def relay(self) -> None:
        self._cut()  # held connections: the client gave up on them already
        self.hanging.clear()

    def _cut(self) -> None:
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._open.clear()

    def _track(self, *conns: socket.socket) -> None:
        with self._lock:
            self._open.update(conns)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            self._track(client)
            if self.hanging.is_set():
                continue  # accepted, never answered
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.upstream))
            except OSError:
                client.close()
                continue
            self._track(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
