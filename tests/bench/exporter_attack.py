"""The exporter under thousands of idle connections, no lab needed: are scrapes still
answered, and does its memory stay under stack.yml's 128M limit?

    make bench-exporter-attack
    python -m tests.bench.exporter_attack [--tree DIR] [--connections 5000] [--seconds 20]

`attack_idle_connections(tree, connections, seconds)` starts the exporter of the source
tree `tree` (`python -m exporter` with PYTHONPATH=tree, e.g. an export of main:
`git archive main | tar -x -C DIR`) on loopback, reading a fake node: a /proc and cgroup
tree of TASKS tasks (tests/unit/exporter_host.py) and a stand-in for the node's Docker
daemon on a unix socket that lists them. Only the exporter's command-line flags are used,
so any version of it can be measured.

Then, for `seconds`: another process opens `connections` TCP connections to the exporter,
OPEN_PER_SECOND a second, and sends nothing on them; meanwhile a scrape of /metrics starts
every 100 ms, each on a fresh connection and in its own thread (a slow one does not delay
the next), and the exporter's RSS is sampled. A scrape fails when it is refused, cut off, not a 200, or not
whole within 2 s. Latencies are those of the scrapes that succeeded; the peak RSS is the
larger of the samples and the kernel's high-water mark (VmHWM), in MiB (as the 128M of
stack.yml). Prints the result; `main` also writes artifacts/bench-exporter-attack.json.
"""
from __future__ import annotations

import errno
import http.client
import json
import multiprocessing
import os
import selectors
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlparse

from tests.bench.common import command_line, percentile, progress, raise_open_files, rss_mb, write_json
from tests.lab.infra.system import free_port
from tests.unit.exporter_host import FakeHost

ROOT = Path(__file__).resolve().parents[2]
TASKS = 20
SCRAPE_EVERY_S = 0.1
SCRAPE_TIMEOUT_S = 2.0
RSS_EVERY_S = 0.1
# Connections are opened OPEN_BURST at a time, OPEN_PER_SECOND in all. Faster, they would
# overflow an accept queue as short as the old exporter's (listen backlog 5): the kernel
# then drops the handshake's last ACK and, with SYN cookies, keeps no state, so the client
# holds a connection the server never sees, which loads nothing. At this pace every
# connection is accepted, and the attack takes a few seconds to build up.
OPEN_BURST = 4
OPEN_PER_SECOND = 1000
NODE_ID = "bench-node"


# ---------------------------------------------------------------- the fake node

def container_id(index: int) -> str:
    return f"{index:064x}"


def inspected(index: int) -> dict:
    """A running swarm task's container as `docker inspect` answers it."""
    return {"Id": container_id(index),
            "Config": {"Labels": {"com.docker.swarm.service.name": f"bench-{index % 4}",
                                  "com.docker.swarm.task.id": f"task{index:021d}",
                                  "com.docker.swarm.node.id": NODE_ID,
                                  "com.docker.swarm.task.name": f"bench-{index % 4}.{index}.task{index:021d}"}},
            "State": {"Running": True, "Pid": 1000 + index, "StartedAt": "2026-01-01T00:00:00.000000000Z"},
            "HostConfig": {"NanoCpus": 500_000_000, "Memory": 256 * 2**20, "CgroupParent": ""}}


class FakeDockerd(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The reads the exporter makes of its node's daemon: the API version, the running
    task containers, each container, and the event stream (held open, silent)."""

    daemon_threads = True

    def __init__(self, path: str, tasks: int) -> None:
        self.containers = {container_id(i): inspected(i) for i in range(tasks)}
        self.stopping = threading.Event()
        super().__init__(path, _DockerHandler)

    def handle_error(self, request, client_address) -> None:
        pass  # the exporter was stopped mid-call


class _DockerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeDockerd

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urlparse(self.path).path
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        if path == "/version":
            self._json({"Version": "27.0.0", "ApiVersion": "1.46", "MinAPIVersion": "1.24"})
        elif path == "/containers/json":
            self._json([{"Id": cid} for cid in self.server.containers])
        elif path.startswith("/containers/") and path.endswith("/json"):
            found = self.server.containers.get(path.split("/")[2])
            self._json(found if found else {"message": "no such container"}, 200 if found else 404)
        elif path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            self.server.stopping.wait()
            self.close_connection = True
        else:
            self._json({"message": f"unexpected call {path}"}, 404)

    def _json(self, body, status: int = 200) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.46")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


def fake_node(root: Path, tasks: int) -> FakeHost:
    host = FakeHost(root, version=2)
    for i in range(tasks):
        host.container(1000 + i, f"/docker/{container_id(i)}", cpu_seconds=10.0 + i, usage=64 * 2**20,
                       inactive_file=2**20, net={"lo": (5, 5), "eth0": (1000 * i, 2000 * i)})
    return host


# ---------------------------------------------------------------- the idle connections

def hold_idle_connections(port: int, connections: int, opened, done, stop) -> None:
    """Open `connections` connections to 127.0.0.1:port, send nothing, hold them until
    `stop`; `opened` counts those whose connect succeeded, `done` is set when every
    connect has succeeded or failed (or `stop` came first). Runs in its own process."""
    raise_open_files(connections + 256)
    selector = selectors.DefaultSelector()
    held = []
    started = time.monotonic()
    for i in range(connections):
        if stop.is_set():
            break
        if i % OPEN_BURST == 0:
            time.sleep(max(0.0, started + i / OPEN_PER_SECOND - time.monotonic()))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS):
            selector.register(sock, selectors.EVENT_WRITE)
            held.append(sock)
        else:
            sock.close()
    pending = len(held)
    while pending and not stop.is_set():
        for key, _ in selector.select(timeout=0.2):
            selector.unregister(key.fileobj)
            pending -= 1
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                with opened.get_lock():
                    opened.value += 1
    done.set()
    stop.wait()
    for sock in held:
        sock.close()


# ---------------------------------------------------------------- scrapes and memory

def scrape_once(port: int) -> float | None:
    """Milliseconds one GET /metrics took on a fresh connection, or None when it failed."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT_S)
    try:
        connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        return elapsed * 1000 if response.status == 200 and elapsed <= SCRAPE_TIMEOUT_S else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class Scraper(threading.Thread):
    """A scrape every SCRAPE_EVERY_S, each in its own thread, until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(name="scraper", daemon=True)
        self.port = port
        self.results: list[float | None] = []
        self.stop = threading.Event()
        self._scrapes: list[threading.Thread] = []

    def run(self) -> None:
        started = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            scrape = threading.Thread(target=lambda: self.results.append(scrape_once(self.port)), daemon=True)
            scrape.start()
            self._scrapes.append(scrape)
            tick += 1
            self.stop.wait(max(0.0, started + tick * SCRAPE_EVERY_S - time.monotonic()))

    def finish(self) -> list[float | None]:
        self.stop.set()
        self.join()
        for scrape in self._scrapes:
            scrape.join(SCRAPE_TIMEOUT_S + 5)
        return list(self.results)


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid = pid
        self.peak_mb = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            except OSError:
                return  # the exporter is gone
            self.stop.wait(RSS_EVERY_S)

    def finish(self) -> float:
        self.stop.set()
        self.join()
        try:
            return max(self.peak_mb, rss_mb(self.pid, "VmHWM"))
        except OSError:
            return self.peak_mb


# ---------------------------------------------------------------- the exporter

def start_exporter(tree: Path, work: Path, host: FakeHost, docker_socket: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "exporter", "--listen-address", "127.0.0.1", "--listen-port", str(port),
               "--docker-url", f"unix://{docker_socket}", "--proc-root", str(host.proc),
               "--cgroup-root", str(host.cgroup), "--sysfs-root", str(work / "sys"), "--capacity-mbps", "1000",
               "--log-level", "WARNING"]
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SWARMGUARD_EXPORTER_")}
    environ["PYTHONPATH"] = str(tree)
    with open(work / "exporter.log", "wb") as log:
        return subprocess.Popen(command, cwd=tree, env=environ, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_until_serving(process: subprocess.Popen, port: int, log: Path, seconds: float = 30.0) -> None:
    """Until a scrape shows the fake node's tasks."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the exporter exited with {process.returncode}:\n{log.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/metrics")
            if b'swarmguard_task_cpu_seconds_total{service="bench-0"' in connection.getresponse().read():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the exporter did not publish the fake node's tasks within {seconds} s:\n{log.read_text()}")


def stop_exporter(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the attack

def attack_idle_connections(tree: Path, connections: int = 5000, seconds: float = 20.0) -> dict:
    """Scrape latency, failed scrapes and the exporter's peak RSS while `connections`
    idle connections are opened to it and held for `seconds` (module docstring)."""
    tree = Path(tree).resolve()
    # The exporter inherits the limit: a thread-per-connection server needs a descriptor
    # per connection, as it would have under Docker (whose default limit is far higher).
    raise_open_files(connections + 1024)
    with tempfile.TemporaryDirectory(prefix="exporter-attack-") as tmp:
        work = Path(tmp)
        host = fake_node(work / "node", TASKS)
        docker_socket = work / "docker.sock"
        dockerd = FakeDockerd(str(docker_socket), TASKS)
        threading.Thread(target=dockerd.serve_forever, name="fake-dockerd", daemon=True).start()
        port = free_port()
        exporter = start_exporter(tree, work, host, docker_socket, port)
        context = multiprocessing.get_context("spawn")
        opened, done, stop = context.Value("i", 0), context.Event(), context.Event()
        attacker = context.Process(target=hold_idle_connections, args=(port, connections, opened, done, stop),
                                   name="idle-connections", daemon=True)
        try:
            wait_until_serving(exporter, port, work / "exporter.log")
            sampler, scraper = RssSampler(exporter.pid), Scraper(port)
            sampler.start()
            scraper.start()
            attacker.start()
            stop.wait(seconds)
            results = scraper.finish()
            rss_peak = sampler.finish()
            alive = exporter.poll() is None
        finally:
            stop.set()
            if attacker.pid is not None:
                attacker.join(10)
                if attacker.is_alive():
                    attacker.kill()
                    attacker.join()
            stop_exporter(exporter)
            dockerd.stopping.set()
            dockerd.shutdown()
            dockerd.server_close()
    answered = [ms for ms in results if ms is not None]
    if not alive:
        progress(f"the exporter of {tree} died during the attack (exit status {exporter.returncode})")
    return {"scrape_p50_ms": _ms(percentile(answered, 50)), "scrape_p99_ms": _ms(percentile(answered, 99)),
            "scrape_failed": len(results) - len(answered), "scrapes": len(results),
            "rss_peak_mb": round(rss_peak, 1), "connections_opened": opened.value}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree of the exporter (default: this one)")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    progress(f"{args.connections} idle connections for {args.seconds:.0f} s against the exporter of {args.tree}")
    result = attack_idle_connections(args.tree, args.connections, args.seconds)
    print(json.dumps(result, indent=2))
    path = write_json("bench-exporter-attack", {"tree": str(args.tree.resolve()), "connections": args.connections,
                                                "seconds": args.seconds, "tasks": TASKS, **result})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
