"""The fault tests' Docker socket that can stop answering (tests/lab/infra/docker_proxy.py),
against a tiny HTTP server on a unix socket standing in for dockerd."""
from __future__ import annotations

import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

from tests.lab.infra.docker_proxy import DockerProxy


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


class _UnixHTTP(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)


def _get(path, timeout=2.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data


def test_relays_then_hangs_then_relays_again(tmp_path):
    daemon = _UnixHTTP(str(tmp_path / "docker.sock"), _Handler)
    threading.Thread(target=daemon.serve_forever, daemon=True).start()
    try:
        with DockerProxy(tmp_path / "docker.sock", tmp_path / "proxy.sock") as proxy:
            assert _get(proxy.path).endswith(b"OK")
            proxy.hang()
            try:
                _get(proxy.path, timeout=0.5)
                raise AssertionError("a hanging proxy answered")
            except socket.timeout:
                pass
            proxy.relay()
            assert _get(proxy.path).endswith(b"OK")
    finally:
        daemon.shutdown()
        daemon.server_close()
