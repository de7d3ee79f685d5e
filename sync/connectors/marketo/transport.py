"""One Marketo REST call, done right: budget, rate window, concurrency slot, bearer token, envelope, retries.

`Transport.call` is the only place that talks HTTP to the REST and bulk endpoints. Per attempt it spends one unit of
the daily budget (refusing before the call if none is left), waits for the rate window, holds a concurrency slot, and
counts the call in `calls` by operation. A 601/602 renews the token and repeats the call once. Retryable codes
(502/604/606/608/611/615/713, dropped connections) are retried by tenacity with bounded attempts: 606 waits for
Marketo's rolling 20 s window to pass, the others back off exponentially with jitter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, overload
from urllib.parse import urlencode

import requests
import tenacity
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from sync.connectors.marketo.auth import TokenProvider
from sync.connectors.marketo.budget import Limits
from sync.connectors.marketo.envelope import Envelope, has_more, http_error, parse_envelope
from sync.connectors.marketo.errors import (
    CODE_PROTOCOL,
    TOKEN_CODES,
    MarketoAuthError,
    MarketoError,
    RateLimitError,
    RequestTooLargeError,
    TransientError,
)

log = logging.getLogger("sync.connectors.marketo")

MAX_URI_BYTES = 8 * 1024
URI_MARGIN = 512  # keep well clear of the limit: proxies add their own bits
EMPTY_PAGE_LIMIT = 1000  # pages in a row with neither records nor a new token before we call it a loop


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, per call, for retryable codes
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    rate_limit_wait: float = 20.0  # 606: Marketo counts calls over a rolling 20 s window


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError | RateLimitError)


def _params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters as Marketo documents them: lists comma-joined, booleans lowercase, None left out."""
    encoded: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            encoded[key] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            encoded[key] = "true" if value else "false"
        else:
            encoded[key] = str(value)
    return encoded


def _is_envelope(response: requests.Response) -> bool:
    """A raw answer (a file) may still be a JSON envelope carrying an error; `null` is an empty file, not one."""
    if "json" not in response.headers.get("Content-Type", ""):
        return False
    return response.content.lstrip()[:1] == b"{"


class Transport:
    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        tokens: TokenProvider,
        limits: Limits,
        calls: Counter[str],
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.limits = limits
        self.calls = calls
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self._calls_lock = threading.Lock()
        self.server_time: datetime | None = None  # Marketo's own time, from the Date header of the last answer
        self._server_time_seen = 0.0  # time.monotonic() when server_time was last moved

    # --- the one HTTP exchange -------------------------------------------------------------------------------------

    def _count(self, operation: str) -> None:
        with self._calls_lock:
            self.calls[operation] += 1

    def _send(self, operation: str, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        self.limits.budget.spend(1)  # raises CallBudgetExhaustedError before the call
        self.limits.window.acquire()
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", self.timeout)
        with self.limits.slot():
            self._count(operation)
            try:
                response = self.session.request(method, self.base_url + path, headers=headers, **kwargs)
            except requests.Timeout:
                raise TransientError("604", f"{operation}: no answer within {kwargs['timeout']} s") from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                # The text of a urllib3 error names the URL: ours never holds a secret (the token is in a header).
                raise TransientError(
                    "sync.connection", f"{operation}: connection failed: {type(exc).__name__}"
                ) from None
        self._note_server_time(response.headers.get("Date"))
        return response

    def _note_server_time(self, date: str | None) -> None:
        """Keep the latest server time seen (HTTP dates have whole seconds; answers may arrive out of order)."""
        if not date:
            return
        try:
            seen = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        with self._calls_lock:
            if self.server_time is None or seen > self.server_time:
                self.server_time = seen
                self._server_time_seen = time.monotonic()

    def server_now(self) -> datetime | None:
        """Marketo's time now, by the latest Date header and the time passed here since (None before any answer)."""
        with self._calls_lock:
            if self.server_time is None:
                return None
            return self.server_time + timedelta(seconds=time.monotonic() - self._server_time_seen)

    def _attempt(
        self, operation: str, method: str, path: str, raw: bool, kwargs: dict[str, Any]
    ) -> Envelope | requests.Response:
        """One try, plus one more with a fresh token if Marketo says 601/602."""
        for renewal in (False, True):
            token = self.tokens.token()
            response = self._send(operation, method, path, token.get_secret_value(), **dict(kwargs))
            if response.status_code != 200 and not (raw and response.status_code == 206):
                failure = http_error(response.status_code, response.text)
                response.close()
                raise failure
            if raw and not _is_envelope(response):
                return response
            envelope = parse_envelope(response.content)
            error = envelope.error()
            if error is not None and error.code in TOKEN_CODES:
                self.tokens.invalidate(token)
                if renewal:
                    raise MarketoAuthError(error.code, f"{error.message} (again, with a fresh token)")
                log.info("marketo %s: token %s, renewing and retrying once", operation, error.code)
                continue
            if error is not None:
                raise error
            return envelope
        raise AssertionError("unreachable")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitError) and exc.code == "606":
            return self.retry.rate_limit_wait
        return wait_random_exponential(multiplier=self.retry.backoff_initial, max=self.retry.backoff_max)(state)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "marketo call failed with %s, retry %d in %.2f s", getattr(exc, "code", exc), state.attempt_number, wait
        )

    @overload
    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        raw: Literal[False] = False,
        **kwargs: Any,
    ) -> Envelope: ...

    @overload
    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        raw: Literal[True],
        **kwargs: Any,
    ) -> Envelope | requests.Response: ...

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        raw: bool = False,
        **kwargs: Any,
    ) -> Envelope | requests.Response:
        """One logical call: an Envelope (success), or the requests.Response of a non-JSON answer when `raw`.

        Raises the typed MarketoError of a `success: false` answer after the retries it deserves.
        """
        if params:
            kwargs["params"] = _params(params)
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(max(1, self.retry.attempts)),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
            sleep=self._sleep or tenacity.sleep,
        )
        return retrying(self._attempt, operation, method, path, raw, kwargs)

    # --- GET with the 414 fallback -------------------------------------------------------------------------------

    def uri_too_long(self, path: str, params: Mapping[str, Any] | None) -> bool:
        query = urlencode(_params(params))
        return len(self.base_url) + len(path) + 1 + len(query) > MAX_URI_BYTES - URI_MARGIN

    def get(self, operation: str, path: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Envelope:
        """GET, or POST with `_method=GET` and a form body when the URI would pass 8 KB (or Marketo says 414)."""
        if not self.uri_too_long(path, params):
            try:
                return self.call(operation, "GET", path, params=params, raw=False, **kwargs)
            except RequestTooLargeError as exc:
                if exc.code != "414":
                    raise
        return self.call(
            operation,
            "POST",
            path,
            params={"_method": "GET"},
            raw=False,
            data=_params(params),
            **kwargs,
        )

    # --- paging ------------------------------------------------------------------------------------------------------

    def pages(
        self,
        operation: str,
        path: str,
        params: Mapping[str, Any],
        token: str | None = None,
        **kwargs: Any,
    ) -> Iterator[Envelope]:
        """Every page until Marketo says there is no more, empty pages included (callers keep each page's token).

        A page may be short or empty while `moreResult` is true: that is not the end. The end is `moreResult` false
        (or, where an endpoint sends no `moreResult`, no new `nextPageToken`).
        """
        stalled = 0
        while True:
            page_params = dict(params)
            if token is not None:
                page_params["nextPageToken"] = token
            envelope = self.get(operation, path, page_params, **kwargs)
            yield envelope
            more = has_more(envelope, token)
            if not more:
                return
            if envelope.next_page_token is None:
                raise MarketoError(CODE_PROTOCOL, f"{operation}: moreResult true but no nextPageToken")
            stalled = stalled + 1 if not envelope.result and envelope.next_page_token == token else 0
            if stalled >= EMPTY_PAGE_LIMIT:
                raise MarketoError(CODE_PROTOCOL, f"{operation}: {stalled} empty pages without a new nextPageToken")
            token = envelope.next_page_token
