"""The transport's control flow over recorded answers (the same behaviours run over HTTPS in the integration tests)."""

from __future__ import annotations

from typing import Any

import pytest

from sync.connectors.marketo.activities import activity_page
from sync.connectors.marketo.envelope import parse_envelope
from sync.connectors.marketo.errors import (
    CallBudgetExhaustedError,
    MarketoAuthError,
    MarketoError,
    RateLimitError,
    TransientError,
)
from tests.unit.test_marketo_fakes import FakeSession, fail, make_transport, ok


def test_601_and_602_renew_the_token_and_retry_once() -> None:
    session = FakeSession([fail("602", "Access token expired"), ok([{"id": 1}])])
    transport = make_transport(session)
    envelope = transport.call("get_lead", "GET", "/rest/v1/lead/1.json")
    assert envelope.result == [{"id": 1}]
    headers = [kw["headers"]["Authorization"] for _, _, kw in session.requests]
    assert headers == ["Bearer tok-1", "Bearer tok-2"]
    assert transport.calls == {"token": 2, "get_lead": 2}


def test_a_second_601_after_renewal_is_an_auth_error() -> None:
    session = FakeSession([fail("601", "Access token invalid"), fail("601", "Access token invalid")])
    transport = make_transport(session)
    with pytest.raises(MarketoAuthError) as info:
        transport.call("get_lead", "GET", "/rest/v1/lead/1.json")
    assert info.value.code == "601"
    assert len(session.requests) == 2


def test_606_waits_for_the_20s_window_then_succeeds() -> None:
    sleeps: list[float] = []
    session = FakeSession([fail("606", "Max rate limit '100' exceeded with in '20' secs"), ok()])
    transport = make_transport(session, sleeps=sleeps)
    transport.call("get_leads", "GET", "/rest/v1/leads.json")
    assert sleeps == [20.0]


@pytest.mark.parametrize("code", ["502", "604", "608", "611", "615", "713"])
def test_retryable_codes_back_off_and_retry(code: str) -> None:
    sleeps: list[float] = []
    session = FakeSession([fail(code), fail(code), ok([{"id": 2}])])
    transport = make_transport(session, sleeps=sleeps)
    assert transport.call("op", "GET", "/rest/v1/x.json").result == [{"id": 2}]
    assert len(sleeps) == 2 and all(0 <= s <= 0.02 for s in sleeps)


def test_retries_are_bounded_and_end_in_a_typed_error() -> None:
    session = FakeSession([fail("606")] * 3 + [fail("615")])
    transport = make_transport(session, attempts=4)
    with pytest.raises(RateLimitError) as info:
        transport.call("op", "GET", "/rest/v1/x.json")
    assert info.value.code == "615" and len(session.requests) == 4


def test_http_502_and_dropped_connections_are_transient() -> None:
    import requests

    answers: list[Any] = [(502, "Bad Gateway")]

    def script(method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if answers:
            return answers.pop(0)
        raise requests.ConnectionError("connection reset by peer")

    transport = make_transport(FakeSession(script), attempts=3)
    with pytest.raises(TransientError) as info:
        transport.call("op", "GET", "/rest/v1/x.json")
    assert info.value.code == "sync.connection"
    assert transport.calls["op"] == 3


def test_non_retryable_errors_are_raised_at_once() -> None:
    session = FakeSession([fail("1003", "Too many results match the filter")])
    transport = make_transport(session)
    with pytest.raises(MarketoError) as info:
        transport.call("op", "GET", "/rest/v1/x.json")
    assert info.value.code == "1003" and len(session.requests) == 1


def test_the_budget_refuses_before_the_call_even_mid_retry() -> None:
    session = FakeSession([fail("604"), fail("604"), ok()])
    transport = make_transport(session, budget=2)
    with pytest.raises(CallBudgetExhaustedError):
        transport.call("op", "GET", "/rest/v1/x.json")
    assert len(session.requests) == 2  # the third attempt was never sent
    assert transport.limits.budget.used == 2
    assert transport.calls["token"] == 1  # identity calls are counted apart and not against the budget


def test_long_queries_go_as_post_with_method_get() -> None:
    session = FakeSession([ok([{"id": 1}])])
    transport = make_transport(session)
    values = [f"person{i}@example.com" for i in range(300)]
    transport.get("get_leads", "/rest/v1/leads.json", {"filterType": "email", "filterValues": values})
    method, _url, kwargs = session.requests[0]
    assert method == "POST" and kwargs["params"] == {"_method": "GET"}
    assert kwargs["data"]["filterValues"] == ",".join(values)


def test_a_414_answer_falls_back_to_post() -> None:
    session = FakeSession([(414, "URI Too Long"), ok()])
    transport = make_transport(session)
    transport.get("op", "/rest/v1/leads.json", {"filterType": "id", "filterValues": [1, 2]})
    assert [m for m, _, _ in session.requests] == ["GET", "POST"]
    assert session.requests[0][2]["params"] == {"filterType": "id", "filterValues": "1,2"}


def test_pages_survive_empty_pages_with_more_result_true() -> None:
    session = FakeSession(
        [
            ok([], moreResult=True, nextPageToken="t1"),
            ok([], moreResult=True, nextPageToken="t2"),
            ok([{"n": 1}], moreResult=True, nextPageToken="t3"),
            ok([], moreResult=False, nextPageToken="t4"),
        ]
    )
    transport = make_transport(session)
    pages = list(transport.pages("lead_changes", "/rest/v1/activities/leadchanges.json", {"fields": ["a"]}, token="t0"))
    assert [p.next_page_token for p in pages] == ["t1", "t2", "t3", "t4"]
    assert [kw["params"]["nextPageToken"] for _, _, kw in session.requests] == ["t0", "t1", "t2", "t3"]


def test_more_result_without_a_token_is_a_protocol_error() -> None:
    session = FakeSession([ok([{"n": 1}], moreResult=True)])
    transport = make_transport(session)
    with pytest.raises(MarketoError, match="no nextPageToken"):
        list(transport.pages("x", "/rest/v1/x.json", {}, token="t0"))


def test_token_is_renewed_about_60s_before_it_expires() -> None:
    now = [0.0]
    session = FakeSession(lambda m, u, k: ok())
    session.token_lifetime = 3600
    transport = make_transport(session, clock=lambda: now[0])
    transport.call("op", "GET", "/x")
    now[0] = 3530.0  # 70 s left: still used
    transport.call("op", "GET", "/x")
    assert session.tokens_issued == 1
    now[0] = 3545.0  # 55 s left: renewed before the call
    transport.call("op", "GET", "/x")
    assert session.tokens_issued == 2
    assert session.requests[-1][2]["headers"]["Authorization"] == "Bearer tok-2"


def test_a_same_token_with_little_life_left_is_used_to_its_end_not_refetched_per_call() -> None:
    now = [0.0]
    session = FakeSession(lambda m, u, k: ok())
    session.token_lifetime = 30  # Marketo handed back the current token with 30 s left
    transport = make_transport(session, clock=lambda: now[0])
    for _ in range(5):
        transport.call("op", "GET", "/x")
    assert session.tokens_issued == 1
    now[0] = 31.0
    transport.call("op", "GET", "/x")
    assert session.tokens_issued == 2


def test_client_secret_goes_in_the_body_and_never_in_reprs_or_errors() -> None:
    session = FakeSession([fail("603", "Access denied")])
    transport = make_transport(session)
    with pytest.raises(MarketoAuthError) as info:
        transport.call("op", "GET", "/x")
    assert session.token_requests[0]["client_secret"] == "s3cret-value"
    for text in (str(info.value), repr(info.value), repr(transport.tokens), repr(transport.limits)):
        assert "s3cret" not in text and "tok-1" not in text
    assert all("s3cret" not in url and "tok-" not in url for _, url, _ in session.requests)


def test_activity_pages_parse_recorded_json() -> None:
    envelope = parse_envelope(
        {
            "success": True,
            "nextPageToken": "NEXT",
            "moreResult": True,
            "result": [
                {
                    "id": 1078,
                    "marketoGUID": "1078",
                    "leadId": 775,
                    "activityDate": "2014-09-17T22:31:49Z",
                    "activityTypeId": 13,
                    "fields": [{"id": 48, "name": "firstName", "newValue": "B", "oldValue": "A"}],
                    "attributes": [{"name": "Reason", "value": "Web service API"}, {"name": "Source", "value": "Web"}],
                }
            ],
        }
    )
    page = activity_page(envelope, "PREV")
    assert page.next_page_token == "NEXT" and page.more_result
    act = page.activities[0]
    assert (act.id, act.lead_id, act.activity_type_id) == (1078, 775, 13)
    assert act.fields[0].name == "firstName" and act.fields[0].new_value == "B" and act.fields[0].old_value == "A"
    assert act.attributes == {"Reason": "Web service API", "Source": "Web"}
    assert act.activity_date.year == 2014 and act.activity_date.tzinfo is not None


def test_an_unreadable_activity_is_a_protocol_error_not_skipped() -> None:
    envelope = parse_envelope({"success": True, "moreResult": False, "result": [{"id": 1, "activityTypeId": 13}]})
    with pytest.raises(MarketoError) as info:
        activity_page(envelope, "T")
    assert info.value.code == "sync.protocol"
