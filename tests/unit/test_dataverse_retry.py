from __future__ import annotations

import pytest
from urllib3.exceptions import MaxRetryError
from urllib3.response import HTTPResponse

from sync.connectors.dynamics.retry import dataverse_retry


def response(status: int, retry_after: str | None = None) -> HTTPResponse:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return HTTPResponse(body=b"", headers=headers, status=status, preload_content=False)


@pytest.mark.parametrize(
    ("method", "status", "retried"),
    [
        ("GET", 429, True),
        ("POST", 429, True),  # a throttled request was not executed: safe for POST
        ("PATCH", 429, True),
        ("GET", 503, True),
        ("GET", 502, True),
        ("GET", 504, True),
        ("PATCH", 503, True),
        ("DELETE", 504, True),
        ("POST", 503, False),  # may have been executed: a second CreateMultiple would duplicate
        ("POST", 502, False),
        ("GET", 500, False),
        ("GET", 400, False),
        ("GET", 404, False),
        ("GET", 412, False),
    ],
)
def test_which_answers_are_retried(method: str, status: int, retried: bool) -> None:
    assert dataverse_retry().is_retry(method, status, has_retry_after=True) is retried


def test_retry_after_is_honoured_in_seconds() -> None:
    retry = dataverse_retry(total=3)
    assert retry.get_retry_after(response(429, "7")) == 7
    nxt = retry.increment("POST", "/leads", response=response(429, "2"))
    assert nxt.total == 2 and nxt.history[-1].status == 429


def test_retries_are_bounded() -> None:
    retry = dataverse_retry(total=2)
    retry = retry.increment("GET", "/x", response=response(429, "0"))
    retry = retry.increment("GET", "/x", response=response(429, "0"))
    assert retry.is_retry("GET", 429) is False  # total exhausted
    with pytest.raises(MaxRetryError):
        retry.increment("GET", "/x", response=response(429, "0"))


def test_a_retry_after_longer_than_we_wait_comes_back_to_the_caller() -> None:
    retry = dataverse_retry(max_retry_after=60)
    with pytest.raises(MaxRetryError, match="Retry-After 300s"):
        retry.increment("GET", "/x", response=response(429, "300"))
    assert retry.increment("GET", "/x", response=response(429, "60")).max_retry_after == 60  # survives new()


def test_backoff_without_retry_after_is_exponential_and_capped() -> None:
    retry = dataverse_retry(total=10, backoff_factor=0.5)
    for _ in range(8):
        retry = retry.increment("GET", "/x", response=response(503))
    assert retry.get_backoff_time() == 30
