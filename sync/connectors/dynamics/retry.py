"""The retry policy for Dataverse calls: urllib3's `Retry`, tuned to the documented service protection behaviour.

- 429, 502, 503, 504 are transient; Retry-After (seconds) is honoured, else exponential backoff.
- A 429 is retried for every method, POST included: a throttled request was not executed.
- 502/503/504 and dropped reads are retried only for idempotent methods (GET, PATCH, PUT, DELETE): a POST may have
  been executed (a second CreateMultiple would duplicate records).
- A Retry-After longer than `max_retry_after` is not slept through: the 429 comes back to the client, which raises
  ServiceProtectionError(retry_after=...) so the caller can stop at a page boundary and come back later.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PATCH", "PUT", "DELETE"})


class DataverseRetry(Retry):
    def __init__(
        self,
        *args: Any,
        max_retry_after: float = 120.0,
        on_retry: Callable[[int | None], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after
        self.on_retry = on_retry  # told of every retry (with the status, None for a connection error): call counting

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        retry.on_retry = self.on_retry
        return retry

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 429:
            return bool(self.total)
        return super().is_retry(method, status_code, has_retry_after)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_retry_after:
                too_long = ResponseError(f"Retry-After {wait:g}s is too long")
                # MaxRetryError's pool is typed as required, but urllib3's own Retry.increment passes this Optional.
                raise MaxRetryError(_pool, url or "", too_long)  # type: ignore[arg-type]
        retry = super().increment(method, url, response=response, error=error, _pool=_pool, _stacktrace=_stacktrace)
        if self.on_retry is not None:
            self.on_retry(response.status if response is not None else None)
        return retry


def dataverse_retry(total: int = 6, backoff_factor: float = 0.5, max_retry_after: float = 120.0) -> DataverseRetry:
    return DataverseRetry(
        total=total,
        connect=total,
        read=2,
        status=total,
        other=0,
        redirect=0,
        allowed_methods=IDEMPOTENT_METHODS,
        status_forcelist=TRANSIENT_STATUSES,
        backoff_factor=backoff_factor,
        backoff_max=30,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
        max_retry_after=max_retry_after,
    )


def token_retry() -> Retry:
    """For MSAL's session: the token endpoint is safe to call again, so POST is retried too."""
    return Retry(
        total=3,
        backoff_factor=0.5,
        status_forcelist=TRANSIENT_STATUSES,
        allowed_methods=None,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
