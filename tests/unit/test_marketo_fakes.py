"""Helpers (no tests here): a scripted stand-in for requests.Session, to test the Marketo transport over recorded JSON.

Integration tests use the real emulator over HTTPS; this only feeds recorded answers to check the control flow
(token renewal, retries, paging) without a network.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from pydantic import SecretStr

from sync.connectors.marketo.auth import TokenProvider
from sync.connectors.marketo.budget import CallBudget, Limits, RateWindow
from sync.connectors.marketo.transport import RetryPolicy, Transport

Answer = dict[str, Any] | tuple[int, str] | requests.Response


def response(answer: Answer) -> requests.Response:
    if isinstance(answer, requests.Response):
        return answer
    r = requests.Response()
    if isinstance(answer, tuple):
        r.status_code, text = answer
        r._content = text.encode()
        r.headers["Content-Type"] = "text/plain"
    else:
        r.status_code = 200
        r._content = json.dumps(answer).encode()
        r.headers["Content-Type"] = "application/json"
    return r


def ok(result: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"requestId": "r#1", "success": True, "errors": [], "result": result or [], **extra}


def fail(code: str, message: str = "boom") -> dict[str, Any]:
    return {"requestId": "r#2", "success": False, "errors": [{"code": code, "message": message}]}


class FakeSession:
    """Answers REST calls from `script` (a list consumed in order, or a function of the request)."""

    def __init__(self, script: list[Answer] | Callable[[str, str, dict[str, Any]], Answer]) -> None:
        self.script = script
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.token_lifetime = 3599
        self.tokens_issued = 0

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> requests.Response:
        assert url.endswith("/identity/oauth/token")
        self.token_requests.append(dict(data or {}))
        self.tokens_issued += 1
        return response({"access_token": f"tok-{self.tokens_issued}", "expires_in": self.token_lifetime})

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.requests.append((method, url, kwargs))
        if callable(self.script):
            return response(self.script(method, url, kwargs))
        assert self.script, f"unexpected call {method} {url}"
        return response(self.script.pop(0))

    def close(self) -> None:
        pass


def make_transport(
    session: FakeSession,
    budget: int = 1000,
    concurrency: int = 4,
    attempts: int = 4,
    sleeps: list[float] | None = None,
    clock: Callable[[], float] | None = None,
) -> Transport:
    calls: Counter[str] = Counter()
    tokens = TokenProvider(
        session,  # type: ignore[arg-type]
        "https://mk.test",
        "client-id",
        SecretStr("s3cret-value"),
        calls,
        **({"clock": clock} if clock else {}),
    )
    limits = Limits(CallBudget(budget), max_concurrency=concurrency, window=RateWindow(0))
    recorded = sleeps if sleeps is not None else []
    return Transport(
        session,  # type: ignore[arg-type]
        "https://mk.test",
        tokens,
        limits,
        calls,
        retry=RetryPolicy(attempts=attempts, backoff_initial=0.01, backoff_max=0.02, rate_limit_wait=20.0),
        sleep=recorded.append,
    )
