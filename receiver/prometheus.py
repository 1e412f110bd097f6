"""The receiver's one question to Prometheus: which alerts fire now (receiver/confirmation.py).

Asked of every Prometheus the settings name (a `tasks.<service>` host: of each task's
address, looked up at each confirmation), at once, and merged there. Bounded like every
other outside call: each question has a timeout (SWARMGUARD_PROMETHEUS_TIMEOUT), an answer
of at most MAX_ANSWER_BYTES, no retries (Alertmanager sends a firing alert again at its
next repeat), and the whole round, DNS included, ends by the timeout plus ROUND_GRACE:
an instance that has not answered by then is one that did not answer. Basic auth when a
password file is set (the bundle's Prometheus requires it).
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import requests

from receiver.config import Settings, read_secret_file
from receiver.confirmation import (FiringAlerts, Unanswered, firing_from_answer, instance_urls,
                                   merge, tasks_host)

# /api/v1/alerts is a few hundred bytes per active alert: 64 MiB is ~100,000 of them.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
# Questions (and DNS lookups) of one round in flight at once: a Prometheus per node of a
# larger cluster waits for a thread, within the same deadline.
MAX_ASKED_AT_ONCE = 16
# Seconds a round may take beyond the timeout: room for an answer that arrives just within
# it to be read and parsed.
ROUND_GRACE = 0.5


class Prometheus:
    def __init__(self, url: str, timeout: float, user: str = "", password: str = ""):
        self.alerts_url = url.rstrip("/") + "/api/v1/alerts"
        self.timeout = timeout
        self.session = requests.Session()
        if password:
            self.session.auth = (user, password)

    def firing_alerts(self) -> FiringAlerts:
        """Raises Unanswered, saying why, when Prometheus does not answer properly."""
        deadline = time.monotonic() + self.timeout
        try:
            with self.session.get(self.alerts_url, timeout=self.timeout, stream=True) as answer:
                if answer.status_code != 200:
                    raise Unanswered(f"{self.alerts_url} answered HTTP {answer.status_code}")
                body = bytearray()
                for chunk in answer.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise Unanswered(f"{self.alerts_url} answered more than "
                                         f"{MAX_ANSWER_BYTES} bytes")
                    if time.monotonic() > deadline:  # a trickled answer: the timeout is per read
                        raise Unanswered(f"{self.alerts_url} answered too slowly")
        except requests.RequestException as exc:
            raise Unanswered(f"{self.alerts_url} unreachable ({type(exc).__name__})") from None
        try:
            parsed = json.loads(body)
        except ValueError:
            raise Unanswered(f"{self.alerts_url} answered something other than JSON") from None
        return firing_from_answer(parsed)


def ipv4_addresses(host: str) -> list[str]:
    """The IPv4 addresses DNS gives for `host` (Swarm's overlay networks are IPv4);
    Unanswered if the lookup fails."""
    try:
        found = socket.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
        raise Unanswered(f"cannot resolve {host} ({exc})") from None
    return [address[0] for *_, address in found]


class PrometheusGroup:
    """Every Prometheus of `urls`, asked together: what any of them fires (merge)."""

    def __init__(self, urls: Sequence[str], timeout: float, user: str = "", password: str = "",
                 resolve: Callable[[str], list[str]] = ipv4_addresses):
        self.urls = tuple(urls)
        self.timeout = timeout
        self.user, self.password = user, password
        self.resolve = resolve

    def firing_alerts(self) -> FiringAlerts:
        """Raises Unanswered, saying why of each, when no Prometheus answers properly."""
        deadline = time.monotonic() + self.timeout + ROUND_GRACE
        # A pool per round: shut down without waiting, so a question past the deadline
        # ends on its own (a read times out, or the answer ends) while the decision goes
        # on; questions not started by then are dropped.
        pool = ThreadPoolExecutor(MAX_ASKED_AT_ONCE, thread_name_prefix="confirm")
        questions: dict[str, Future] = {}

        def ask(urls: Iterable[str]) -> None:
            for url in urls:
                if url not in questions:
                    questions[url] = pool.submit(self._ask, url)
        try:
            lookups = {host: pool.submit(self.resolve, host)
                       for host in {tasks_host(url) for url in self.urls} if host}
            # The other URLs at once: a slow lookup does not hold their questions.
            ask(url for url in self.urls if tasks_host(url) is None)
            wait(lookups.values(), timeout=deadline - time.monotonic())
            urls, unanswered = instance_urls(
                self.urls, lambda host: _outcome(lookups[host], f"no address for {host}"))
            ask(urls)
            wait(questions.values(), timeout=deadline - time.monotonic())
            answered = []
            for url, question in questions.items():
                try:
                    answered.append(_outcome(question, f"{url} did not answer"))
                except Unanswered as exc:
                    unanswered.append(str(exc))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return merge(answered, unanswered)

    def _ask(self, url: str) -> FiringAlerts:
        prometheus = Prometheus(url, self.timeout, self.user, self.password)
        try:
            return prometheus.firing_alerts()
        finally:
            prometheus.session.close()


def _outcome(future: Future, late: str):
    """A finished future's result (or its Unanswered); Unanswered saying `late` if it has
    not finished by the round's deadline."""
    if not future.done():
        raise Unanswered(f"{late} within the round's deadline")
    return future.result()


def prometheus_of(settings: Settings) -> PrometheusGroup:
    """The Prometheus servers the settings name; ConfigError if the password file cannot
    be read (refuse to start rather than run every decision into a 401)."""
    password = (read_secret_file(settings.prometheus_password_file,
                                 "SWARMGUARD_PROMETHEUS_PASSWORD_FILE")
                if settings.prometheus_password_file else "")
    return PrometheusGroup(settings.prometheus_urls, settings.prometheus_timeout,
                           settings.prometheus_user, password)
