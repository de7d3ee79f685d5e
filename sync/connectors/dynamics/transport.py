"""One authenticated Dataverse request: headers, token (refreshed once on 401), call counting, typed errors.

Every request is counted in `calls` by operation name; urllib3's retries of it are counted there too (they are
requests the service sees and limits) and, separately, in `retries`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from sync.connectors.dynamics.auth import TokenProvider
from sync.connectors.dynamics.errors import DataverseError, TransportError, error_from_response
from sync.connectors.dynamics.retry import IDEMPOTENT_METHODS

log = logging.getLogger(__name__)

API_PATH = "/api/data/v9.2/"
BODY_READ_ATTEMPTS = 3
BASE_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


class Transport:
    def __init__(
        self,
        url: str,
        tokens: TokenProvider,
        session: requests.Session,
        *,
        calls: Counter[str],
        timeout: tuple[float, float] = (10.0, 120.0),
        api_path: str = API_PATH,
    ) -> None:
        self.api_base = url.rstrip("/") + api_path
        self.tokens = tokens
        self.session = session
        self.timeout = timeout
        self.calls = calls
        self.retries: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()  # 429 answers (retried or not), by operation: for the status
        self._count_lock = threading.Lock()  # requests may be sent from several threads (find_by's chunks)
        self.dop_hint: int | None = None  # x-ms-dop-hint: the parallelism Dataverse recommends
        self._local = threading.local()  # the operation in flight on this thread, for counting urllib3's retries

    def __repr__(self) -> str:
        return f"Transport(api_base={self.api_base!r})"

    def url(self, path_or_url: str) -> str:
        """Absolute URL for an API path; an absolute URL (a nextLink, a deltaLink) must point at this organization,
        so the bearer token never goes anywhere else."""
        if path_or_url.startswith(("https://", "http://")):
            if not path_or_url.startswith(self.api_base):
                raise DataverseError(
                    None, "ForeignUrl", f"refusing a link outside {self.api_base}: {path_or_url[:120]}"
                )
            return path_or_url
        return self.api_base + path_or_url.lstrip("/")

    def request(
        self,
        operation: str,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        table: str | None = None,
        record: str | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one request; raise the typed error for any status >= 400 not in `ok_statuses`."""
        url = self.url(path_or_url)
        body = data
        all_headers = dict(BASE_HEADERS)
        if json is not None:
            body = orjson.dumps(json, default=_json_default)
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        all_headers.update(headers or {})
        response = self._send(operation, method, url, body, all_headers, fresh=False)
        if response.status_code == 401:
            log.info("dataverse %s: 401, renewing the token once", operation)
            response = self._send(operation, method, url, body, all_headers, fresh=True)
        if response.status_code == 429:  # the retries ran out, or Retry-After was too long to wait
            with self._count_lock:
                self.throttled[operation] += 1
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.isdigit():
            self.dop_hint = int(hint)
        if response.status_code >= 400 and response.status_code not in ok_statuses:
            raise error_from_response(
                response.status_code, response.headers, response.content, table=table, record=record
            )
        return response

    def _send(
        self, operation: str, method: str, url: str, body: bytes | None, headers: dict[str, str], *, fresh: bool
    ) -> requests.Response:
        headers["Authorization"] = "Bearer " + self.tokens.token(fresh=fresh)
        try:
            # urllib3's Retry covers everything up to the response headers; a body cut off after them
            # (ChunkedEncodingError) surfaces here, and is retried for idempotent methods only.
            for attempt in Retrying(
                retry=retry_if_exception_type(requests.exceptions.ChunkedEncodingError),
                stop=stop_after_attempt(BODY_READ_ATTEMPTS if method in IDEMPOTENT_METHODS else 1),
                wait=wait_exponential(multiplier=0.2, max=2),
                before_sleep=lambda state: self._count_retry(operation),
                reraise=True,
            ):
                with attempt:
                    response = self._send_once(operation, method, url, body, headers)
        except requests.RequestException as exc:
            raise TransportError(None, type(exc).__name__, _describe(exc)) from None
        finally:
            headers.pop("Authorization", None)
        return response

    def _send_once(
        self, operation: str, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> requests.Response:
        self._local.operation = operation
        with self._count_lock:
            self.calls[operation] += 1
        return self.session.request(method, url, data=body, headers=headers, timeout=self.timeout)

    def count_retry(self, status: int | None) -> None:
        """Called by urllib3's Retry (DataverseRetry.on_retry) before each retry it makes: another request sent."""
        operation = getattr(self._local, "operation", "unknown")
        with self._count_lock:
            self.calls[operation] += 1
            self.retries[operation] += 1
            if status == 429:
                self.throttled[operation] += 1
        log.info("dataverse %s: retrying after %s", operation, status or "a connection error")

    def _count_retry(self, operation: str) -> None:
        with self._count_lock:
            self.retries[operation] += 1  # the new attempt counts itself in calls
        log.info("dataverse %s: the response body was cut off; retrying", operation)


def _describe(exc: requests.RequestException) -> str:
    # requests' messages name the host and the failure; they never carry headers (so never the token).
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def _json_default(value: Any) -> Any:
    # orjson writes datetime, date and UUID itself
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")
