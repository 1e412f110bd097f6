"""/readyz's answer, refreshed in a background thread: a request never waits for Docker.

Asking Docker inside the request would let a slow daemon hold one request thread per
/readyz call, with webhooks waiting behind them. So one thread asks Docker every
`readiness_interval` seconds and /readyz returns the last answer, saying how old it is.
The same thread negotiates the Docker API version again each time
(cluster.NegotiatingClient), so that /readyz says which one is spoken.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from receiver.cluster import NegotiatingClient, is_ready

log = logging.getLogger(__name__)


class Readiness:
    def __init__(self, api: NegotiatingClient, interval: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self._api = api
        self._interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._answer: dict = {"status": "not ready", "reason": "not checked yet"}
        self._ready = False
        self._checked_at: float | None = None
        self._stop = threading.Event()

    def start(self) -> "Readiness":
        threading.Thread(target=self._loop, name="swarmguard-readiness", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def current(self) -> tuple[bool, dict]:
        """(ready, the JSON answer) from the last check; never calls Docker."""
        with self._lock:
            answer = dict(self._answer)
            if self._checked_at is not None:
                answer["checked_seconds_ago"] = round(self._monotonic() - self._checked_at, 3)
            return self._ready, answer

    def check(self) -> bool:
        """Ask Docker now (the background thread's job; tests call it directly)."""
        try:
            daemon = self._api.negotiate()
        except Exception as exc:  # any failure to reach Docker means not ready
            ready, answer = False, {"status": "not ready",
                                    "reason": f"docker unreachable: {exc}"}
        else:
            ok, reason = is_ready(self._api, daemon)
            ready, answer = ok, {"status": "ready" if ok else "not ready", "reason": reason,
                                 "docker_engine": daemon.engine,
                                 "docker_api_version": daemon.using,
                                 "docker_api_versions_accepted":
                                     f"{daemon.min_api_version}-{daemon.api_version}"}
        with self._lock:
            if ready != self._ready or answer.get("reason") != self._answer.get("reason"):
                log.log(logging.INFO if ready else logging.WARNING, "Readiness: %s",
                        answer["reason"] if not ready else
                        f"ready, Docker Engine {answer['docker_engine']} "
                        f"(API {answer['docker_api_version']})")
            self._ready, self._answer, self._checked_at = ready, answer, self._monotonic()
        return ready

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self._interval)
