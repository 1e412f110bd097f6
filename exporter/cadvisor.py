"""The one place that talks HTTP to cAdvisor's REST API (v1.3, as in cAdvisor 0.38).

``POST /api/v1.3/docker`` with ``{"num_stats": 2}`` answers a JSON object keyed by
container name (``/docker/<id>``) whose values are cAdvisor ``ContainerInfo`` objects,
each with only its two latest stats: exactly what a rate needs, and a small answer to
parse on every scrape. (This is how cAdvisor's own Go client asks; a plain GET returns the
default 60 stats per container.)
"""

from __future__ import annotations

import requests

DOCKER_CONTAINERS_PATH = "/api/v1.3/docker"
NUM_STATS = 2


class CadvisorError(Exception):
    """cAdvisor could not give a usable answer. `reason` labels the exporter's error count."""

    reason = "bad_response"


class CadvisorUnreachable(CadvisorError):
    reason = "unreachable"


class CadvisorTimeout(CadvisorError):
    reason = "timeout"


class CadvisorBadResponse(CadvisorError):
    reason = "bad_response"


class CadvisorClient:
    def __init__(
        self, base_url: str, timeout_seconds: float, session: requests.Session | None = None
    ) -> None:
        self.url = base_url.rstrip("/") + DOCKER_CONTAINERS_PATH
        self._timeout = timeout_seconds
        # One session keeps the connection to cAdvisor open between scrapes.
        self._session = session if session is not None else requests.Session()

    def docker_containers(self) -> object:
        """The decoded JSON answer; its shape is checked by `exporter.parsing`."""
        try:
            response = self._session.post(
                self.url, json={"num_stats": NUM_STATS}, timeout=self._timeout
            )
        except requests.Timeout as error:
            raise CadvisorTimeout(f"no answer from {self.url} within {self._timeout} s") from error
        except requests.RequestException as error:
            raise CadvisorUnreachable(f"cannot reach {self.url}: {error}") from error
        if response.status_code != 200:
            raise CadvisorBadResponse(
                f"{self.url} answered HTTP {response.status_code}: {response.text[:200]!r}"
            )
        try:
            return response.json()
        except (ValueError, RecursionError) as error:  # RecursionError: absurdly nested JSON
            raise CadvisorBadResponse(f"{self.url} answered something that is not JSON") from error

    def close(self) -> None:
        self._session.close()
