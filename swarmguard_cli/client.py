"""The receiver's maintenance API over HTTP: one method per call, dicts in and out.

Every answer that is not the one the API promises becomes an exception carrying the
receiver's own sentence (its `{"error": ...}`), so that callers never look at a status
code. Which exception is which (the CLI's exit codes follow them):

    Unreachable     no answer (refused, timed out, cut off), a 5xx, or an answer that is
                    not a JSON object: the receiver, or what it stands on, is not there
    TokenRefused    401: the token is not the receiver's
    Refused         any other 4xx: the receiver understood and said no; the whole answer
                    is kept (a refused drain carries its plan)
"""
from __future__ import annotations

from typing import Any

import requests

USER_AGENT = "swarmguard-cli/0.1"


class ClientError(Exception):
    """The call did not get the answer the API promises; str() is a sentence for a person."""


class Unreachable(ClientError):
    pass


class TokenRefused(ClientError):
    pass


class Refused(ClientError):
    def __init__(self, sentence: str, status: int, answer: dict[str, Any]):
        super().__init__(sentence)
        self.status = status
        self.answer = answer


class Client:
    """Calls to one receiver with one token; `timeout` bounds each request, in seconds."""

    def __init__(self, url: str, token: str, timeout: float,
                 session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}

    def drain(self, node: str, *, force: bool = False, dry_run: bool = False) -> dict[str, Any]:
        return self._call("POST", "/maintenance/drain",
                          {"node": node, "force": force, "dry_run": dry_run})

    def undrain(self, node: str, *, dry_run: bool = False) -> dict[str, Any]:
        return self._call("POST", "/maintenance/undrain", {"node": node, "dry_run": dry_run})

    def rebalance(self, *, dry_run: bool = False) -> dict[str, Any]:
        return self._call("POST", "/maintenance/rebalance", {"dry_run": dry_run})

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status", None)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        where = f"{method} {self.url}{path}"
        try:
            response = self._session.request(
                method, self.url + path, json=body, headers=self._headers,
                timeout=self.timeout,
                # A redirect would carry the token to wherever it points; the API has none.
                allow_redirects=False,
            )
        except requests.Timeout:
            raise Unreachable(f"{where}: no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as error:
            raise Unreachable(f"{where} failed: {_cause(error)}") from None
        except requests.RequestException as error:
            raise Unreachable(f"{where} failed: {_cause(error)}") from None
        return _answer(where, response)


def _answer(where: str, response: requests.Response) -> dict[str, Any]:
    status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = None
    sentence = answer.get("error") if isinstance(answer, dict) else None
    told = f": {sentence}" if isinstance(sentence, str) and sentence else ""
    if status == 401:
        raise TokenRefused(f"the receiver refused the token{told} ({where})")
    if 400 <= status < 500:
        if not told:
            # Flask's own 404 page: a receiver without the maintenance API, or a wrong --url.
            raise Refused(f"{where} answered {status} {response.reason} without an error "
                          f"sentence: is this a SwarmGuard receiver with the maintenance API?",
                          status, {})
        raise Refused(sentence, status, answer)
    if status >= 500:
        raise Unreachable(f"{where} answered {status} {response.reason}{told}")
    if not 200 <= status < 300:
        raise Unreachable(f"{where} answered {status} {response.reason}, which the API never does")
    if not isinstance(answer, dict):
        raise Unreachable(f"{where} answered {status} with something that is not a JSON object")
    return answer


def _cause(error: Exception) -> str:
    """The innermost reason requests wraps (e.g. 'Connection refused'), not its repr chain."""
    reason, seen = error, {id(error)}
    while reason.__context__ is not None and id(reason.__context__) not in seen:
        reason = reason.__context__
        seen.add(id(reason))
    text = str(reason) or type(reason).__name__
    # urllib3 prefixes its reasons with an object repr: keep the part a person reads.
    return text.rsplit(": ", 1)[-1] if "object at 0x" in text else text
