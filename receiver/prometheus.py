"""The receiver's one question to Prometheus: which alerts fire now (receiver/confirmation.py).

Bounded like every other outside call: a timeout (SWARMGUARD_PROMETHEUS_TIMEOUT), an
answer of at most MAX_ANSWER_BYTES, no retries (Alertmanager sends a firing alert again
at its next repeat; a decision never waits on a slow Prometheus for longer than the
timeout). Basic auth when a password file is set (the bundle's Prometheus requires it).
"""
from __future__ import annotations

import json
import time

import requests

from receiver.config import Settings, read_secret_file
from receiver.confirmation import FiringAlerts, Unanswered, firing_from_answer

# /api/v1/alerts is a few hundred bytes per active alert: 64 MiB is ~100,000 of them.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


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


def prometheus_of(settings: Settings) -> Prometheus:
    """The Prometheus the settings name; ConfigError if its password file cannot be read
    (refuse to start rather than run every decision into a 401)."""
    password = (read_secret_file(settings.prometheus_password_file,
                                 "SWARMGUARD_PROMETHEUS_PASSWORD_FILE")
                if settings.prometheus_password_file else "")
    return Prometheus(settings.prometheus_url, settings.prometheus_timeout,
                      settings.prometheus_user, password)
