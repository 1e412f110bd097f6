"""A fake swarm for make bench-scale: one loopback HTTP port per node, each answering
what Prometheus scrapes there, cheaply enough that one Python process can stand in for a
cluster of 10,000 tasks.

On a node's port:
- `/metrics`: the node's exporter. The per-task series exactly as the real exporter
  publishes them (exporter/collector.py TASK_SERIES: names, types, HELP, the label block
  `service`, `task_id`, `node_id`, the value formats), plus `swarmguard_exporter_docker_up
  1`. Idle tasks are a pre-rendered body; the one task the bench can make hot is the only
  line rendered per scrape (its CPU counter then rises at its full limit).
- `/opted-in` (managers only): the exporter's own page (exporter/opt_in.py):
  `swarmguard_opted_in_service_tasks{service}` (running tasks of each opted-in service)
  and `swarmguard_exporter_opt_in_known 1`.
- `/federate`: what the node's own Prometheus would answer the central one in the per-node
  layout. On the representative node it is the real per-node Prometheus's answer, passed
  through; on every other node, a copy of that answer's latest with the representative's
  node name, node ID, exporter address, task IDs and services rewritten to this node's.
The receiver's port answers `/metrics` with the receiver's view of the swarm that the
health rules read (`swarmguard_service_tasks`, `swarmguard_node_ready`, ...).

Bodies are served uncompressed (the real exporter gzips when asked): compressing 100
scrapes a second would cost the load generator more than what it measures.

The pure parts (the cluster's shape, the pages, the federate rewrite) are functions;
`serve` runs the whole fake in its own process (`FakeCluster`).
"""
from __future__ import annotations

import asyncio
import hashlib
import http.client
import multiprocessing
import re
import signal
import time
from dataclasses import dataclass
from functools import cached_property

from exporter import opt_in
from exporter.collector import TASK_SERIES, label_block

MANAGERS = 3
OPTED_IN_REPLICAS = 5  # an opted-in service's tasks, each on another node
OTHER_REPLICAS = 10
# What an idle task publishes: a CPU counter that does not move, a quarter of its memory,
# almost no network. The exporter writes floats with repr() and bytes as integers.
CPU_COUNTER = "swarmguard_task_cpu_seconds_total"
IDLE_VALUES = {
    CPU_COUNTER: 12.5,
    "swarmguard_task_cpu_limit_cores": 0.5,
    "swarmguard_task_memory_working_set_bytes": 64 * 2**20,
    "swarmguard_task_memory_limit_bytes": 256 * 2**20,
    "swarmguard_container_network_percent": 0.4,
}
START_TIME = "swarmguard_task_start_time_seconds"
DOCKER_UP = ("# HELP swarmguard_exporter_docker_up 1 if this scrape could list the node's swarm tasks from "
             "its Docker daemon, 0 if not (no per-task values are published then).\n"
             "# TYPE swarmguard_exporter_docker_up gauge\nswarmguard_exporter_docker_up 1.0\n")
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# A copy is made from an answer of the representative node at most this old; older, the
# representative's Prometheus is asked again.
FEDERATE_MAX_AGE_S = 10.0


# ---------------------------------------------------------------- the cluster's shape

def swarm_id(kind: str, index: int) -> str:
    """A Swarm-like ID (25 characters of [0-9a-z]), the same for the same kind and index."""
    number = int.from_bytes(hashlib.sha256(f"{kind}-{index}".encode()).digest(), "big")
    digits = []
    for _ in range(25):
        number, digit = divmod(number, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[digit])
    return "".join(digits)


@dataclass(frozen=True)
class Task:
    service: str
    task_id: str
    node_id: str
    opted_in: bool


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    node_id: str
    role: str  # manager | worker
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class Shape:
    """tasks over nodes, `opted_in_fraction` of them in opted-in services."""

    tasks: int
    nodes: int
    opted_in_fraction: float = 0.05

    @property
    def opted_in_tasks(self) -> int:
        return max(1, round(self.tasks * self.opted_in_fraction))

    @property
    def label(self) -> str:
        return f"{self.tasks} tasks on {self.nodes} nodes"


def _services(total: int, replicas: int, prefix: str) -> list[tuple[str, int]]:
    """(name, replicas) of services of `replicas` tasks holding `total` tasks; the last
    takes the remainder."""
    out, left, k = [], total, 0
    while left > 0:
        out.append((f"{prefix}-{k:04d}", min(replicas, left)))
        left -= replicas
        k += 1
    return out


class Cluster:
    """The nodes and their tasks. Tasks are dealt to nodes in turn, opted-in services
    first, so every node holds its share of opted-in tasks and a service's replicas sit
    on different nodes. The first MANAGERS nodes are managers; the representative node
    (whose Prometheus is real in the per-node layout, and whose task the bench makes
    hot) is the last one, a worker."""

    def __init__(self, shape: Shape) -> None:
        if shape.nodes < 1 or shape.tasks < shape.nodes:
            raise ValueError(f"{shape.label}: need at least one node and a task per node")
        self.shape = shape
        names = [f"node-{j:02d}" for j in range(shape.nodes)]
        ids = [swarm_id("node", j) for j in range(shape.nodes)]
        per_node: list[list[Task]] = [[] for _ in range(shape.nodes)]
        self.services: dict[str, int] = {}
        self.opted_in: dict[str, int] = {}
        k = 0
        for opted_in, services in ((True, _services(shape.opted_in_tasks, OPTED_IN_REPLICAS, "optin")),
                                   (False, _services(shape.tasks - shape.opted_in_tasks, OTHER_REPLICAS, "svc"))):
            for service, replicas in services:
                self.services[service] = replicas
                if opted_in:
                    self.opted_in[service] = replicas
                for _ in range(replicas):
                    j = k % shape.nodes
                    per_node[j].append(Task(service, swarm_id("task", k), ids[j], opted_in))
                    k += 1
        managers = min(MANAGERS, shape.nodes - 1) if shape.nodes > 1 else 1
        self.nodes = tuple(Node(j, names[j], ids[j], "manager" if j < managers else "worker", tuple(per_node[j]))
                           for j in range(shape.nodes))

    @property
    def managers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "manager")

    @property
    def representative(self) -> Node:
        return self.nodes[-1]

    @cached_property
    def hot_task(self) -> Task:
        """The representative node's first opted-in task: the one the bench makes hot."""
        for task in self.representative.tasks:
            if task.opted_in:
                return task
        raise ValueError(f"{self.shape.label}: the representative node has no opted-in task")


# ---------------------------------------------------------------- pages

def _value(name: str, started_at: float) -> float | int:
    return started_at if name == START_TIME else IDLE_VALUES[name]


def exporter_lines(tasks: tuple[Task, ...] | list[Task], started_at: float,
                   cpu_seconds: dict[str, float] | None = None) -> list[str]:
    """A node exporter's /metrics as lines: each TASK_SERIES family (HELP, TYPE, one
    sample per task, all tasks idle but those whose CPU counter `cpu_seconds` gives, by
    task ID), then swarmguard_exporter_docker_up. Every task started at `started_at`."""
    cpu_seconds = cpu_seconds or {}
    lines = []
    for name, kind, help_text in TASK_SERIES:
        lines += [f"# HELP {name} {help_text}\n", f"# TYPE {name} {kind}\n"]
        idle = _value(name, started_at)
        for task in tasks:
            value = cpu_seconds.get(task.task_id, idle) if name == CPU_COUNTER else idle
            lines.append(f"{name}{label_block(task)} {value!r}\n")
    lines.append(DOCKER_UP)
    return lines


class ExporterPage:
    """A node's /metrics, pre-rendered: `body(cpu)` is the page with the dynamic task's
    CPU counter at `cpu` (the same bytes as exporter_lines would give), `body()` the idle
    page."""

    def __init__(self, tasks: tuple[Task, ...], started_at: float, dynamic: Task | None = None) -> None:
        lines = exporter_lines(tasks, started_at)
        self.idle = "".join(lines).encode()
        self.prefix = f"{CPU_COUNTER}{label_block(dynamic)} " if dynamic else None
        if dynamic:
            at = next(i for i, line in enumerate(lines) if line.startswith(self.prefix))
            self.head, self.tail = "".join(lines[:at]).encode(), "".join(lines[at + 1:]).encode()

    def body(self, cpu: float | None = None) -> bytes:
        if cpu is None or self.prefix is None:
            return self.idle
        return self.head + f"{self.prefix}{cpu!r}\n".encode() + self.tail


def opted_in_page(services: dict[str, int]) -> str:
    """A manager's /opted-in, rendered by the exporter's own code: each opted-in
    service's running tasks, read just now."""
    return opt_in.page(opt_in.Reading(manager=True, services=services, read_at=0.0), now=0.0,
                       stale_after=15.0).decode()


def receiver_page(cluster: Cluster) -> str:
    """The receiver's view of the swarm (docs/contract.md, receiver metrics for
    detection health): opted-in tasks per service and node, every node ready, Docker
    read, no service held as futile."""
    lines = ["# TYPE swarmguard_service_tasks gauge\n"]
    for node in cluster.nodes:
        counts: dict[str, int] = {}
        for task in node.tasks:
            if task.opted_in:
                counts[task.service] = counts.get(task.service, 0) + 1
        lines += [f'swarmguard_service_tasks{{service="{s}",node_id="{node.node_id}",node="{node.name}"}} {n}\n'
                  for s, n in sorted(counts.items())]
    lines.append("# TYPE swarmguard_node_ready gauge\n")
    lines += [f'swarmguard_node_ready{{node_id="{n.node_id}",node="{n.name}",role="{n.role}"}} 1\n'
              for n in cluster.nodes]
    lines += ["# TYPE swarmguard_receiver_docker_up gauge\n", "swarmguard_receiver_docker_up 1\n",
              "# TYPE swarmguard_service_futile gauge\n"]
    lines += [f'swarmguard_service_futile{{service="{s}"}} 0\n' for s in sorted(cluster.opted_in)]
    return "".join(lines)


# ---------------------------------------------------------------- federation copies

_LABEL_VALUE = re.compile(r'="((?:[^"\\]|\\.)*)"')


def rewrite_federate(text: str, values: dict[str, str]) -> str:
    """A /federate answer (text format) with every label value found in `values`
    replaced by its mapping, whatever the label's name; comments, metric names, sample
    values and timestamps unchanged."""
    def swap(match: re.Match) -> str:
        return f'="{values.get(match.group(1), match.group(1))}"'
    return "".join(line if line.startswith("#") else _LABEL_VALUE.sub(swap, line)
                   for line in text.splitlines(keepends=True))


def copy_values(source: Node, target: Node, address: dict[int, str]) -> dict[str, str]:
    """What turns the source node's federated series into the target node's: its name,
    node ID and exporter address, and its tasks' IDs and services, task by task in
    order (opted-in first on both; a service takes the name of the first counterpart
    met). Source tasks beyond the target's count keep their IDs."""
    values = {source.name: target.name, source.node_id: target.node_id,
              address[source.index]: address[target.index]}
    ordered = [sorted(n.tasks, key=lambda t: not t.opted_in) for n in (source, target)]
    for mine, theirs in zip(*ordered):
        values[mine.task_id] = theirs.task_id
        values.setdefault(mine.service, theirs.service)
    return values


# ---------------------------------------------------------------- the hot task

class HotSwitch:
    """The hot task's CPU counter, shared with the serving process: idle, it stays
    where it is; hot, it rises at the task's full limit (one limit's worth of CPU
    seconds a second)."""

    def __init__(self, context, limit_cores: float = IDLE_VALUES["swarmguard_task_cpu_limit_cores"]) -> None:
        self._state = context.Array("d", [0.0, IDLE_VALUES[CPU_COUNTER]])  # hot since (0: idle), counter then
        self.limit = limit_cores

    def heat(self, now: float) -> None:
        with self._state.get_lock():
            if not self._state[0]:
                self._state[0] = now

    def cool(self, now: float) -> None:
        with self._state.get_lock():
            if self._state[0]:
                self._state[1] += (now - self._state[0]) * self.limit
                self._state[0] = 0.0

    def cpu_seconds(self, now: float) -> float:
        with self._state.get_lock():
            since, counter = self._state[0], self._state[1]
        return counter + (now - since) * self.limit if since else counter


# ---------------------------------------------------------------- serving

@dataclass(frozen=True)
class Ports:
    """The receiver at `base`, node j at `base + 1 + j`, all on 127.0.0.1."""

    base: int

    @property
    def receiver(self) -> int:
        return self.base

    def node(self, index: int) -> int:
        return self.base + 1 + index

    def address(self, index: int) -> str:
        return f"127.0.0.1:{self.node(index)}"


class _Federation:
    """The representative node's /federate, passed through from the real per-node
    Prometheus (its port in `upstream`, 0 while there is none), and copies of its latest
    answer for the other nodes."""

    def __init__(self, cluster: Cluster, ports: Ports, upstream) -> None:
        self.cluster, self.upstream = cluster, upstream
        address = {n.index: ports.address(n.index) for n in cluster.nodes}
        self.values = {n.index: copy_values(cluster.representative, n, address) for n in cluster.nodes}
        self.latest: tuple[int, float, str, str] | None = None  # (upstream port, when, content type, text)

    def fetch(self, target: str) -> tuple[int, str, bytes]:
        port = self.upstream.value
        if not port:
            return 503, "text/plain", b"no per-node Prometheus in this layout\n"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", target, headers={"Accept": TEXT_FORMAT, "Accept-Encoding": "identity"})
            response = connection.getresponse()
            body = response.read()
            content_type = response.getheader("Content-Type", TEXT_FORMAT)
        except OSError as error:
            return 502, "text/plain", f"per-node Prometheus: {error}\n".encode()
        finally:
            connection.close()
        if response.status == 200:
            self.latest = (port, time.monotonic(), content_type, body.decode())
        return response.status, content_type, body

    async def answer(self, node: Node, target: str) -> tuple[int, str, bytes]:
        loop = asyncio.get_running_loop()
        if node is self.cluster.representative:
            return await loop.run_in_executor(None, self.fetch, target)
        latest = self.latest  # never another layout's: a new upstream is asked first
        if latest is None or latest[0] != self.upstream.value or time.monotonic() - latest[1] > FEDERATE_MAX_AGE_S:
            status, content_type, body = await loop.run_in_executor(None, self.fetch, target)
            if status != 200:
                return status, content_type, body
        _, _, content_type, text = self.latest
        return 200, content_type, rewrite_federate(text, self.values[node.index]).encode()


async def _serve(shape: Shape, ports: Ports, hot: HotSwitch, upstream, started_at: float, ready, stop) -> None:
    cluster = Cluster(shape)
    pages = {n.index: ExporterPage(n.tasks, started_at, cluster.hot_task if n is cluster.representative else None)
             for n in cluster.nodes}
    opted_in = opted_in_page(cluster.opted_in).encode()
    receiver = receiver_page(cluster).encode()
    federation = _Federation(cluster, ports, upstream)

    async def answer(node: Node | None, path: str, target: str) -> tuple[int, str, bytes]:
        if node is None:
            return (200, TEXT_FORMAT, receiver) if path == "/metrics" else (404, "text/plain", b"not found\n")
        if path == "/metrics":
            dynamic = node is cluster.representative
            return 200, TEXT_FORMAT, pages[node.index].body(hot.cpu_seconds(time.time()) if dynamic else None)
        if path == "/opted-in" and node.role == "manager":
            return 200, TEXT_FORMAT, opted_in
        if path == "/federate":
            return await federation.answer(node, target)
        return 404, "text/plain", b"not found\n"

    def handler(node: Node | None):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    target = head.split(b" ", 2)[1].decode("latin-1")
                    status, content_type, body = await answer(node, target.split("?", 1)[0], target)
                    close = b"connection: close" in head.lower()
                    writer.write(f"HTTP/1.1 {status} {http.client.responses.get(status, '')}\r\n"
                                 f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                                 f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n".encode()
                                 + body)
                    await writer.drain()
                    if close:
                        break
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
                pass
            except asyncio.CancelledError:  # stopping: the connection is closed below
                pass
            finally:
                writer.close()
        return handle

    servers = [await asyncio.start_server(handler(None), "127.0.0.1", ports.receiver, backlog=256)]
    for node in cluster.nodes:
        servers.append(await asyncio.start_server(handler(node), "127.0.0.1", ports.node(node.index), backlog=256))
    ready.set()
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for server in servers:
        server.close()
    await loop.shutdown_default_executor()


def serve(shape: Shape, ports: Ports, hot: HotSwitch, upstream, started_at: float, ready, stop) -> None:
    """The fake cluster until `stop` is set (the body of FakeCluster's process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops it, Ctrl-C reaches the bench
    asyncio.run(_serve(shape, ports, hot, upstream, started_at, ready, stop))


class FakeCluster:
    """The fake cluster in a process of its own (the bench's polling never delays a
    scrape). `heat()`/`cool()` switch the representative node's hot task;
    `set_upstream(port)` names the per-node Prometheus whose /federate the copies come
    from. A context manager; `pid` is the serving process's."""

    def __init__(self, shape: Shape, ports: Ports) -> None:
        self.shape, self.ports = shape, ports
        self.cluster = Cluster(shape)
        context = multiprocessing.get_context("spawn")
        self.hot = HotSwitch(context)
        self._upstream = context.Value("i", 0)
        self._ready, self._stop = context.Event(), context.Event()
        # Started an hour ago: every task is far past the rules' start-up grace.
        self.started_at = time.time() - 3600.0
        self._process = context.Process(target=serve, name="fake-cluster", daemon=True, args=(
            shape, ports, self.hot, self._upstream, self.started_at, self._ready, self._stop))

    @property
    def pid(self) -> int:
        return self._process.pid

    def __enter__(self) -> FakeCluster:
        self._process.start()
        deadline = time.monotonic() + 60
        while not self._ready.wait(0.2):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the fake cluster ({self.shape.label}) did not start on ports "
                                   f"{self.ports.base}-{self.ports.node(self.shape.nodes - 1)}")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._process.pid is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    def heat(self) -> float:
        now = time.time()
        self.hot.heat(now)
        return now

    def cool(self) -> None:
        self.hot.cool(time.time())

    def set_upstream(self, port: int) -> None:
        self._upstream.value = port
