from __future__ import annotations

import pytest

from sync.connectors.marketo.envelope import has_more, http_error, parse_envelope
from sync.connectors.marketo.errors import (
    BulkJobFailedError,
    CallBudgetExhaustedError,
    DailyQuotaExceededError,
    ExportQuotaExceededError,
    InvalidRequestError,
    MarketoAuthError,
    MarketoError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    TransientError,
    error_for,
)


def test_success_envelope_is_parsed_with_paging_fields() -> None:
    env = parse_envelope(
        b'{"requestId":"e42b#14272d07d78","success":true,"errors":[],"warnings":[],'
        b'"result":[{"id":1}],"moreResult":true,"nextPageToken":"GIYD"}'
    )
    assert env.success and env.error() is None
    assert env.request_id == "e42b#14272d07d78"
    assert env.result == [{"id": 1}]
    assert env.more_result is True and env.next_page_token == "GIYD"


def test_failure_envelope_carries_code_as_string_and_message() -> None:
    env = parse_envelope({"requestId": "x#1", "success": False, "errors": [{"code": 606, "message": "Max rate"}]})
    error = env.error()
    assert isinstance(error, RateLimitError)
    assert error.code == "606" and error.message == "Max rate" and error.request_id == "x#1"
    assert "606" in str(error) and "Max rate" in str(error)


def test_success_false_without_errors_is_still_an_error() -> None:
    error = parse_envelope({"success": False}).error()
    assert isinstance(error, MarketoError) and error.code == "sync.protocol"


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b"[1,2]", b"", b"\xff\xfe"])
def test_non_envelope_bodies_raise_a_protocol_error(body: bytes) -> None:
    with pytest.raises(MarketoError) as info:
        parse_envelope(body)
    assert info.value.code == "sync.protocol"


def test_missing_result_is_an_empty_list_and_empty_token_is_none() -> None:
    env = parse_envelope({"success": True, "nextPageToken": ""})
    assert env.result == [] and env.next_page_token is None and env.more_result is None


@pytest.mark.parametrize(
    ("code", "message", "cls", "retryable", "systemic"),
    [
        ("502", "Bad gateway", TransientError, True, True),
        ("601", "Access token invalid", MarketoAuthError, False, True),
        ("602", "Access token expired", MarketoAuthError, False, True),
        ("603", "Access denied", MarketoAuthError, False, True),
        ("604", "Request timed out", TransientError, True, True),
        ("606", "Max rate limit '100' exceeded with in '20' secs", RateLimitError, True, True),
        ("607", "Daily quota reached", DailyQuotaExceededError, False, True),
        ("608", "API Temporarily Unavailable", TransientError, True, True),
        ("609", "Invalid JSON", InvalidRequestError, False, False),
        ("610", "Requested resource not found", NotFoundError, False, True),
        ("611", "System error", TransientError, True, True),
        ("614", "Invalid Subscription", InvalidRequestError, False, True),
        ("615", "Concurrent access limit '10' reached", RateLimitError, True, True),
        ("701", "email cannot be blank", InvalidRequestError, False, False),
        ("713", "Transient Error", TransientError, True, True),
        ("1003", "Too many results match the filter", InvalidRequestError, False, False),
        ("1016", "Too many imports", BulkJobFailedError, False, False),
        ("1029", "Too many jobs in queue", BulkJobFailedError, False, False),
        ("1029", "Export daily quota 500MB exceeded", ExportQuotaExceededError, False, True),
    ],
)
def test_error_mapping(code: str, message: str, cls: type, retryable: bool, systemic: bool) -> None:
    error = error_for(code, message)
    assert type(error) is cls or isinstance(error, cls)
    assert error.code == code and error.message == message
    assert error.retryable is retryable
    assert error.systemic is systemic


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (413, RequestTooLargeError, "413"),
        (414, RequestTooLargeError, "414"),
        (404, NotFoundError, "404"),
        (502, TransientError, "502"),
        (500, MarketoError, "sync.http"),
    ],
)
def test_http_errors(status: int, cls: type, code: str) -> None:
    error = http_error(status, "<html>  too\n big </html>")
    assert isinstance(error, cls) and error.code == code and error.status == status
    assert "too big" in error.message


def test_budget_error_is_typed_and_names_the_setting() -> None:
    error = CallBudgetExhaustedError(used=40_000, budget=40_000)
    assert error.systemic and not error.retryable
    assert "MARKETO_DAILY_CALL_BUDGET" in str(error) and "40000" in str(error)


@pytest.mark.parametrize(
    ("more", "token", "previous", "expected"),
    [
        (True, "b", "a", True),
        (True, None, "a", True),  # the pager refuses this one with a protocol error
        (False, "b", "a", False),
        (None, "b", "a", True),  # leads.json: a fresh token means another page
        (None, "a", "a", False),
        (None, None, "a", False),
    ],
)
def test_has_more(more: bool | None, token: str | None, previous: str, expected: bool) -> None:
    env = parse_envelope({"success": True, "moreResult": more, "nextPageToken": token})
    assert has_more(env, previous) is expected
