"""The attacks of make bench-receiver-hardening (issue 20), each against a running receiver
under gunicorn (tests/bench/receiver_hardening.py's Gunicorn) for a fixed time, while a
probe sends /healthz and a real webhook, one after the other, on fresh connections,
every PROBE_INTERVAL_S: their latency (a request not answered within PROBE_TIMEOUT_S
counts as failed) and the gunicorn worker's RSS, sampled throughout.

- chunk_trickle: connections each sending a chunked webhook of 1-byte chunks, 256 of
  them every 10 ms (a body that is all framing);
- idle: connections that send nothing;
- keepalive_senders: clients that each post webhooks back to back on one kept-alive
  connection (counted: how many of them got no answer at all).
Every attacker reopens a connection the receiver closes.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable

import requests

from tests.bench.common import percentile, raise_open_files, summarise

PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 2.0
CHUNKED_HEAD = (b"POST /alerts HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


class Sampler(threading.Thread):
    """RSS of a process, every 100 ms, until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                for line in open(f"/proc/{self.pid}/status"):
                    if line.startswith("VmRSS:"):
                        self.samples.append(int(line.split()[1]) / 1024)
            except OSError:
                return


class Threads:
    """Daemon threads started together and stopped together (`stop`, then joined)."""

    join_timeout: float | None = None

    def __init__(self):
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=self.join_timeout)


class Probe(Threads):
    """/healthz and a webhook, each on fresh connections every PROBE_INTERVAL_S (from its
    own thread: a slow answer to one does not delay the other), until stopped."""

    def __init__(self, url: str, post: Callable[[float], requests.Response]):
        super().__init__()
        self.url, self.post = url, post
        self.healthz: list[float | None] = []
        self.webhook: list[float | None] = []
        self.threads = [
            threading.Thread(target=self._every, daemon=True, args=(self.healthz, lambda: (
                requests.get(f"{self.url}/healthz", timeout=PROBE_TIMEOUT_S)))),
            threading.Thread(target=self._every, daemon=True, args=(self.webhook, lambda: (
                self.post(PROBE_TIMEOUT_S))))]

    def _every(self, into: list, call) -> None:
        while not self.stop.wait(PROBE_INTERVAL_S):
            started = time.perf_counter()
            try:
                call().raise_for_status()
                into.append((time.perf_counter() - started) * 1000)
            except requests.RequestException:
                into.append(None)


def latency(values: list[float | None]) -> dict:
    answered = [v for v in values if v is not None]
    # A failed request is slower than any answered one: it sorts last, so p99 is honest.
    ranked = answered + [float("inf")] * (len(values) - len(answered))
    p99 = percentile(ranked, 99) if ranked else None
    return {**summarise(answered), "p99": p99 if p99 != float("inf") else None,
            "p99_failed": p99 == float("inf"), "failed": len(values) - len(answered),
            "sent": len(values)}


class SocketAttack(threading.Thread):
    """`count` connections, each fed by `feed(sock, index)` every `pause` s (None: never);
    a connection the server closes (or refuses) is opened again."""

    def __init__(self, port: int, count: int, first: bytes, feed: bytes | None,
                 pause: float = 0.05):
        super().__init__(daemon=True)
        self.port, self.count, self.first, self.feed, self.pause = port, count, first, feed, pause
        self.stop = threading.Event()
        self.opened = self.closed_by_server = self.open_failed = 0

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            if self.first:
                sock.sendall(self.first)
            sock.setblocking(False)
        except OSError:
            self.open_failed += 1
            return None
        self.opened += 1
        return sock

    def run(self) -> None:
        socks = [self._open() for _ in range(self.count)]
        while not self.stop.wait(self.pause):
            for i, sock in enumerate(socks):
                if sock is None:
                    socks[i] = self._open()
                    continue
                try:
                    if self.feed:
                        sock.send(self.feed)
                    if sock.recv(4096, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError
                    raise ConnectionResetError  # the server answered (a refusal): reopen
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_by_server += 1
                    sock.close()
                    socks[i] = self._open()
        for sock in socks:
            if sock is not None:
                sock.close()

    def counts(self) -> dict:
        return {"connections": self.count, "opened": self.opened,
                "closed_by_server": self.closed_by_server, "open_failed": self.open_failed}


class KeepAliveSenders(Threads):
    """`count` clients posting `body` back to back, each on one kept-alive connection."""

    join_timeout = 15.0  # a sender blocked on a connection the receiver never answers

    def __init__(self, port: int, count: int, body: bytes, token: str):
        super().__init__()
        self.port, self.count, self.body, self.token = port, count, body, token
        self.answers = [0] * count
        self.threads = [threading.Thread(target=self._send, args=(i,), daemon=True)
                        for i in range(count)]

    def _send(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        conn = None
        while not self.stop.is_set():
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/alerts", body=self.body, headers=headers)
                conn.getresponse().read()
                self.answers[index] += 1
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                self.stop.wait(0.05)

    def counts(self) -> dict:
        return {"senders": self.count, "answers": sum(self.answers),
                "senders_never_answered": sum(1 for a in self.answers if a == 0)}


def under_attack(name: str, url: str, worker_pid: int, post, seconds: float,
                 start_attack: Callable[[], object], stop_attack: Callable[[object], dict]) -> dict:
    sampler, probe = Sampler(worker_pid), Probe(url, post)
    sampler.start()
    attack = start_attack()
    time.sleep(1.0)  # the attack in place before the first probe
    probe.start()
    time.sleep(seconds)
    probe.join()
    counts = stop_attack(attack)
    sampler.stop.set()
    sampler.join()
    return {"attack": name, "seconds": seconds, **counts,
            "healthz_ms": latency(probe.healthz), "webhook_ms": latency(probe.webhook),
            "rss_peak_mb": max(sampler.samples, default=None)}


def chunk_trickle(url, port, pid, post, seconds, connections=64) -> dict:
    raise_open_files(connections * 2 + 256)

    def start():
        # 256 one-byte chunks per send, every 10 ms: a body that is all framing.
        attack = SocketAttack(port, connections, CHUNKED_HEAD, b"1\r\nx\r\n" * 256, pause=0.01)
        attack.start()
        return attack
    return under_attack(f"chunk trickle, {connections} connections", url, pid, post, seconds,
                        start, lambda a: (a.stop.set(), a.join(), a.counts())[-1])


def idle(url, port, pid, post, seconds, connections=500) -> dict:
    raise_open_files(connections * 2 + 256)

    def start():
        attack = SocketAttack(port, connections, b"", None, pause=0.2)
        attack.start()
        return attack
    return under_attack(f"{connections} idle connections", url, pid, post, seconds,
                        start, lambda a: (a.stop.set(), a.join(), a.counts())[-1])


def keepalive_senders(url, port, pid, post, seconds, body, token, senders=200) -> dict:
    raise_open_files(senders * 2 + 256)

    def start():
        attack = KeepAliveSenders(port, senders, body, token)
        attack.start()
        return attack
    return under_attack(f"{senders} keep-alive senders", url, pid, post, seconds,
                        start, lambda a: (a.join(), a.counts())[-1])
