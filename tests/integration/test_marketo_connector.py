"""The Marketo connector over real HTTPS against the Marketo emulator: persons, activities, limits and faults.

Each test resets the emulator and asserts on what the emulator holds afterwards (through its uncounted test
controls), not only on what the connector returned.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sync.connectors.marketo import (
    CallBudgetExhaustedError,
    DailyQuotaExceededError,
    MarketoAuthError,
    MarketoClient,
    MarketoError,
    PollPolicy,
    RateLimitError,
    RetryPolicy,
)
from sync.settings import Settings
from tests.emulated import RunningEmulators

FAST_RETRY = RetryPolicy(attempts=6, backoff_initial=0.01, backoff_max=0.05, rate_limit_wait=0.05)
FAST_POLL = PollPolicy(initial=0.05, maximum=0.3, timeout=60, queue_retries=40)


class Marketo:
    """The emulator's test controls, for arranging and asserting (these calls are not counted by the emulator)."""

    def __init__(self, running: RunningEmulators) -> None:
        self.running = running
        self.settings = running.settings

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.running.control("marketo", method, path, **kwargs).json()

    def config(self, **changes: Any) -> None:
        self.control("PATCH", "/config", json=changes)

    def faults(self, **body: Any) -> None:
        self.control("POST", "/faults", json=body)

    def requests(self) -> dict[str, Any]:
        return self.control("GET", "/requests", params={"limit": 5000})

    def person(self, email: str) -> dict[str, Any] | None:
        persons = self.control("GET", "/persons", params={"email": email})["persons"]
        assert len(persons) <= 1, f"{len(persons)} persons with {email}"
        return persons[0] if persons else None

    def person_count(self) -> int:
        return int(self.control("GET", "/stats")["persons"])

    def client(self, **options: Any) -> MarketoClient:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("poll", FAST_POLL)
        return MarketoClient(
            self.settings["MARKETO_BASE_URL"],
            self.settings["MARKETO_CLIENT_ID"],
            SecretStr(self.settings["MARKETO_CLIENT_SECRET"]),
            extra_ca=Path(self.settings["SYNC_CA_BUNDLE"]),
            **options,
        )


@pytest.fixture
def mk(marketo_emulator: RunningEmulators) -> Marketo:
    marketo = Marketo(marketo_emulator)
    marketo.control("POST", "/reset")
    return marketo


def people(count: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"email": f"person{i}@example.com", "firstName": f"First{i}", "lastName": f"Last{i}", **extra}
        for i in range(start, start + count)
    ]


# --- persons ------------------------------------------------------------------------------------------------------


def test_sync_read_and_delete_persons_in_batches_of_300(mk: Marketo) -> None:
    client = mk.client()
    records = people(650, dynamicsLeadId="6f1c1020-0000-4000-8000-000000000001")
    results = client.sync_leads(records)
    assert [r.index for r in results] == list(range(650))
    assert {r.status for r in results} == {"created"} and all(isinstance(r.id, int) for r in results)
    assert client.calls["sync_leads"] == 3  # ceil(650 / 300)
    stored = mk.person("person649@example.com")
    assert stored is not None and stored["id"] == results[649].id and stored["firstName"] == "First649"

    found = client.get_leads("email", [r["email"] for r in records], ["email", "firstName", "dynamicsLeadId"])
    assert len(found) == 650 and client.calls["get_leads"] == 3
    by_email = {p.values["email"]: p for p in found}
    assert by_email["person7@example.com"].id == results[7].id
    assert by_email["person7@example.com"].values["dynamicsLeadId"] == "6f1c1020-0000-4000-8000-000000000001"

    updated = client.sync_leads([{"email": "person1@example.com", "firstName": "Renamed"}], action="updateOnly")
    assert updated[0].status == "updated" and mk.person("person1@example.com")["firstName"] == "Renamed"

    lead = client.get_lead(results[3].id, ["email", "firstName"])
    assert lead is not None and lead.values["email"] == "person3@example.com"
    assert client.get_lead(999_999_999) is None

    deleted = client.delete_leads([results[0].id, results[1].id, 999_999_999])
    assert [r.status for r in deleted[:2]] == ["deleted", "deleted"]
    assert deleted[2].status in ("skipped", "failed") and deleted[2].reasons and deleted[2].reasons[0].code
    assert mk.person("person0@example.com") is None and mk.person_count() == 648


def test_sync_actions_report_marketos_per_record_reasons(mk: Marketo) -> None:
    client = mk.client()
    client.sync_leads(people(2))
    results = client.sync_leads(people(3), action="createOnly")
    assert [r.status for r in results] == ["skipped", "skipped", "created"]
    assert results[0].reasons[0].code == "1005"
    missing = client.sync_leads([{"email": "nobody@example.com", "firstName": "X"}], action="updateOnly")
    assert missing[0].status == "skipped" and missing[0].reasons[0].code == "1004"
    assert mk.person("nobody@example.com") is None
    with pytest.raises(ValueError, match="action must be one of"):
        client.sync_leads(people(1), action="upsert")


def test_bad_records_are_reported_with_code_and_message_and_the_rest_goes_on(mk: Marketo) -> None:
    client = mk.client()
    records: list[Any] = [
        {"email": "good0@example.com", "firstName": "Good"},
        {"email": "not-an-email", "firstName": "Bad email"},
        {"email": "long@example.com", "firstName": "x" * 300},  # firstName holds 255
        {"email": "type@example.com", "syncToDynamics": "perhaps"},  # a boolean field
        {"email": "unknown@example.com", "noSuchField": 1},
        {"email": "obj@example.com", "firstName": object()},  # can't even be sent
        {"email": "huge@example.com", "firstName": "y" * 1_100_000},  # over the 1 MB body alone
        {"email": "good1@example.com", "dynamicsCreatedDate": "2026-01-02T03:04:05Z", "syncToDynamics": True},
    ]
    results = client.sync_leads(records)
    assert [r.index for r in results] == list(range(8))
    assert [r.status for r in results[::7]] == ["created", "created"]
    for result in results[1:7]:
        assert result.status in ("skipped", "failed"), result
        assert result.reasons and result.reasons[0].code and result.reasons[0].message, result
    assert results[4].reasons[0].code == "1006" and "noSuchField" in results[4].reasons[0].message
    assert results[5].reasons[0].code == "sync.not_serializable"
    assert results[6].reasons[0].code == "sync.too_large"
    assert mk.person("good0@example.com") and mk.person("good1@example.com")["syncToDynamics"] is True
    for email in ("not-an-email", "long@example.com", "type@example.com", "unknown@example.com", "obj@example.com"):
        assert mk.person(email) is None
    assert mk.person_count() == 2
    assert client.calls["sync_leads"] == 1  # per-record skips need no extra calls


def test_oversized_bodies_are_split_and_413_is_bisected(mk: Marketo) -> None:
    mk.config(max_body_bytes=20_000)  # the emulator now answers 413 above 20 KB
    client = mk.client()
    records = people(300, title="t" * 150)
    results = client.sync_leads(records)
    assert {r.status for r in results} == {"created"} and mk.person_count() == 300
    log = mk.requests()
    assert log["by_code"].get("413", 0) >= 1
    assert client.calls["sync_leads"] > 2


def test_long_filter_queries_use_post_with_method_get(mk: Marketo) -> None:
    client = mk.client()
    records = people(300)
    client.sync_leads(records)
    emails = [r["email"] for r in records]
    assert client._transport.uri_too_long("/rest/v1/leads.json", {"filterValues": emails})
    found = client.get_leads("email", emails, ["email"])
    assert len(found) == 300 and client.calls["get_leads"] == 1
    reads = [e for e in mk.requests()["entries"] if e.get("endpoint") == "GET /rest/v1/leads.json"]
    assert [e["method"] for e in reads] == ["POST"] and "414" not in mk.requests()["by_code"]


def test_a_414_from_the_server_falls_back_to_post(mk: Marketo) -> None:
    mk.config(max_uri_bytes=300)
    client = mk.client()
    client.sync_leads(people(20))
    found = client.get_leads("email", [f"person{i}@example.com" for i in range(20)], ["email"])
    assert len(found) == 20 and client.calls["get_leads"] == 2
    assert mk.requests()["by_code"].get("414") == 1


def test_a_field_the_service_leaves_out_reads_as_null(mk: Marketo) -> None:
    client = mk.client()
    [created] = client.sync_leads([{"email": "n@example.com", "firstName": "N", "title": "CTO"}])
    client.sync_leads([{"id": created.id, "title": ""}], action="updateOnly", lookup_field="id")  # cleared
    for omit in (True, False):
        mk.config(omit_null_fields=omit)
        [found] = client.get_leads("email", ["n@example.com"], ["firstName", "title", "phone"])
        assert found.values == {"id": created.id, "firstName": "N", "title": None, "phone": None}
        single = client.get_lead(int(created.id), ["title"])  # type: ignore[arg-type]
        assert single is not None and single.values == {"id": created.id, "title": None}


def test_get_leads_follows_next_page_tokens(mk: Marketo) -> None:
    client = mk.client()
    client.sync_leads(people(25, dynamicsType="Lead") + people(5, start=25, dynamicsType="Contact"))
    found = client.get_leads("dynamicsType", ["Lead"], ["email", "dynamicsType"], batch_size=10)
    assert len(found) == 25 and {p.values["dynamicsType"] for p in found} == {"Lead"}
    assert client.calls["get_leads"] == 3


def test_1003_too_many_matches_is_split_into_smaller_queries(mk: Marketo) -> None:
    mk.config(max_filter_matches=40)
    client = mk.client()
    client.sync_leads(people(100, leadSource="Webinar") + people(100, start=100, leadSource="Trade show"))
    found = client.get_leads("email", [f"person{i}@example.com" for i in range(0, 200, 2)], ["email"])
    assert len(found) == 100
    assert mk.requests()["by_code"].get("1003", 0) >= 1


def test_merge_and_partitions(mk: Marketo) -> None:
    client = mk.client()
    winner, loser = client.sync_leads([{"email": "w@example.com"}, {"email": "l@example.com", "title": "CTO"}])
    client.merge_leads(int(winner.id), [int(loser.id)])
    assert mk.person("l@example.com") is None and mk.person("w@example.com")["id"] == winner.id
    assert client.get_lead(int(loser.id)) is None
    assert any(p.get("name") == "Default" for p in client.partitions())
    with pytest.raises(MarketoError) as info:
        client.merge_leads(int(winner.id), [123_456_789])
    assert info.value.code == "1004"


def test_describe_and_schema_changes(mk: Marketo) -> None:
    client = mk.client()
    fields = {f.name: f for f in client.describe_leads()}
    for name in ("email", "firstName", "externalCompanyId", "dynamicsLeadId", "dynamicsContactId", "syncToDynamics"):
        assert name in fields
    assert fields["email"].data_type == "email" and fields["syncToDynamics"].data_type == "boolean"
    assert fields["dynamicsLeadId"].updateable and not fields["id"].updateable
    schema = client.describe_leads2()
    assert ["email"] in schema.searchable_fields and any(f.name == "dynamicsLeadId" for f in schema.fields)

    mk.control("POST", "/schema/fields", json={"name": "dynamicsOwnerId", "dataType": "string", "searchable": True})
    assert any(f.name == "dynamicsOwnerId" for f in client.describe_leads())
    assert client.sync_leads([{"email": "a@example.com", "dynamicsOwnerId": "o1"}])[0].status == "created"
    mk.control("DELETE", "/schema/fields/dynamicsOwnerId")
    result = client.sync_leads([{"email": "b@example.com", "dynamicsOwnerId": "o2"}])[0]
    assert result.status == "skipped" and result.reasons[0].code == "1006"
    assert mk.person("b@example.com") is None


def test_usage_and_budget_refresh(mk: Marketo) -> None:
    client = mk.client(daily_call_budget=1000)
    client.sync_leads(people(5))
    days = client.usage()
    assert days and days[-1].total >= 1
    assert client.refresh_budget_from_usage() >= days[-1].total
    week = client.usage(last_7_days=True)
    assert week and week[-1].total >= days[-1].total
    assert client.calls["usage"] == 3


# --- tokens, limits and faults ---------------------------------------------------------------------------------------


def test_token_expiry_mid_run_renews_and_retries_once(mk: Marketo) -> None:
    client = mk.client()
    client.sync_leads(people(300))
    mk.control("POST", "/tokens/expire")
    results = client.sync_leads(people(300, start=300))
    assert {r.status for r in results} == {"created"} and mk.person_count() == 600
    assert client.calls["token"] == 2
    log = mk.requests()
    assert log["by_code"].get("602") == 1
    assert client.calls["sync_leads"] == 3  # the refused call was made again once


def test_short_token_lifetime_is_renewed_before_it_expires(mk: Marketo) -> None:
    mk.config(token_lifetime_s=2)
    mk.control("POST", "/tokens/expire")  # the next token is issued with the short lifetime
    client = mk.client(token_renew_before=1.5)
    deadline = time.monotonic() + 2.6
    while time.monotonic() < deadline:
        client.get_leads("email", ["x@example.com"], ["email"])
        time.sleep(0.1)
    assert client.calls["token"] >= 2
    assert "602" not in mk.requests()["by_code"] or mk.requests()["by_code"]["602"] <= 1


def test_bad_credentials_are_an_auth_error_without_the_secret(mk: Marketo, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = MarketoClient(
        mk.settings["MARKETO_BASE_URL"],
        mk.settings["MARKETO_CLIENT_ID"],
        SecretStr("wrong-secret-value-123"),
        extra_ca=Path(mk.settings["SYNC_CA_BUNDLE"]),
    )
    with pytest.raises(MarketoAuthError) as info:
        client.get_lead(1)
    assert "invalid_client" in info.value.message
    for text in (str(info.value), repr(client), caplog.text):
        assert "wrong-secret-value-123" not in text
        assert mk.settings["MARKETO_CLIENT_SECRET"] not in text


def test_no_secret_or_token_in_logs_or_errors_during_faults(mk: Marketo, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = mk.client()
    mk.faults(next=["606", "drop", "5xx"])
    client.sync_leads(people(3))
    mk.faults(rates={"606": 1.0})
    with pytest.raises(RateLimitError) as info:
        client.get_lead(1)
    token = client._tokens.token().get_secret_value()
    for text in (caplog.text, str(info.value), repr(client), repr(client._tokens)):
        assert mk.settings["MARKETO_CLIENT_SECRET"] not in text and token not in text


def test_606_storm_is_ridden_out_with_bounded_retries(mk: Marketo) -> None:
    mk.faults(rates={"606": 0.4}, seed=7)
    client = mk.client(retry=RetryPolicy(attempts=12, backoff_initial=0.01, backoff_max=0.05, rate_limit_wait=0.02))
    results = client.sync_leads(people(1500))
    assert {r.status for r in results} == {"created"} and mk.person_count() == 1500
    found = client.get_leads("email", [f"person{i}@example.com" for i in range(1500)], ["email"])
    assert len(found) == 1500
    log = mk.requests()
    assert log["by_code"].get("606", 0) >= 2
    assert log["api_calls"] == client.quota_calls  # every call made was counted, retries included

    mk.faults(rates={"606": 1.0})
    with pytest.raises(RateLimitError) as info:
        client.sync_leads(people(1, start=9999))
    assert info.value.code == "606"
    assert mk.requests()["api_calls"] - log["api_calls"] == 12  # bounded: exactly `attempts` tries
    assert mk.person("person9999@example.com") is None


def test_the_rate_window_keeps_the_client_under_the_limit_instead_of_hitting_606(mk: Marketo) -> None:
    mk.config(rate_limit_calls=10, rate_limit_window_s=1.0)
    client = mk.client(rate_limit_calls=10, rate_limit_seconds=1.1)
    started = time.monotonic()
    for i in range(25):
        client.get_leads("email", [f"p{i}@example.com"], ["email"])
    elapsed = time.monotonic() - started
    assert "606" not in mk.requests()["by_code"]
    assert elapsed >= 2.0  # 25 calls at 10 per window take at least two windows of waiting
    assert client.limits.window.waited > 1.0


@pytest.mark.parametrize("fault", ["502", "604", "608", "611", "615", "713", "5xx", "drop"])
def test_each_transient_fault_is_retried(mk: Marketo, fault: str) -> None:
    client = mk.client()
    mk.faults(next=[fault, fault])
    results = client.sync_leads(people(2))
    assert [r.status for r in results] == ["created", "created"] and mk.person_count() == 2
    assert client.calls["sync_leads"] == 3


def test_a_connection_dropped_after_a_write_is_retried_without_duplicates(mk: Marketo) -> None:
    client = mk.client()
    mk.faults(next=["drop_after"])  # the write happens, the answer is lost
    results = client.sync_leads(people(3))
    assert [r.status for r in results] == ["updated"] * 3  # the retry found them: createOrUpdate is idempotent
    assert mk.person_count() == 3 and client.calls["sync_leads"] == 2


def test_concurrency_is_capped_across_threads(mk: Marketo) -> None:
    mk.config(max_concurrency=3, latency_ms=30)
    client = mk.client(max_concurrency=3)
    client.sync_leads(people(50))
    errors: list[BaseException] = []

    def reader(offset: int) -> None:
        try:
            for i in range(4):
                client.get_leads("email", [f"person{(offset + i) % 50}@example.com"], ["email"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = client.get_leads("email", [f"person{i}@example.com" for i in range(50)] * 1, ["email"])
    assert errors == [] and len(found) == 50
    assert client.limits.peak_concurrency == 3
    assert "615" not in mk.requests()["by_code"]


def test_the_daily_budget_stops_cleanly_before_the_call_that_would_exceed_it(mk: Marketo) -> None:
    client = mk.client(daily_call_budget=2)
    with pytest.raises(CallBudgetExhaustedError) as info:
        client.sync_leads(people(900))
    assert info.value.used == 2 and info.value.budget == 2
    assert "MARKETO_DAILY_CALL_BUDGET" in str(info.value)
    log = mk.requests()
    assert log["api_calls"] == 2  # the third call was never sent
    assert mk.person_count() == 600
    with pytest.raises(CallBudgetExhaustedError):
        client.get_lead(1)
    assert mk.requests()["api_calls"] == 2 and client.calls["token"] == 1


def test_marketos_own_daily_quota_is_a_typed_error_and_not_retried(mk: Marketo) -> None:
    mk.config(daily_quota=100)
    mk.control("POST", "/usage", json={"used": 100})
    client = mk.client()
    with pytest.raises(DailyQuotaExceededError) as info:
        client.sync_leads(people(5))
    assert info.value.code == "607"
    assert mk.requests()["by_code"].get("607") == 1 and mk.person_count() == 0


def test_from_settings_shares_limits_between_clients(mk: Marketo) -> None:
    settings = Settings(
        **{
            **mk.settings,
            "DYNAMICS_URL": "https://unused.crm.dynamics.com",
            "DYNAMICS_TENANT_ID": "tenant",
            "DYNAMICS_CLIENT_ID": "client",
            "DYNAMICS_CLIENT_SECRET": "unused",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "MARKETO_DAILY_CALL_BUDGET": "3",
            "MARKETO_MAX_CONCURRENCY": "2",
        }
    )
    first = MarketoClient.from_settings(settings, retry=FAST_RETRY)
    second = MarketoClient.from_settings(settings, retry=FAST_RETRY)
    assert first.limits is second.limits and first.limits.max_concurrency == 2
    first.get_lead(1)
    second.get_lead(1)
    first.get_lead(1)
    with pytest.raises(CallBudgetExhaustedError):
        second.get_lead(1)
    assert mk.requests()["api_calls"] == 3


# --- change detection ------------------------------------------------------------------------------------------------


def test_lead_changes_page_through_short_and_empty_pages_to_the_last_token(mk: Marketo) -> None:
    mk.config(short_page_every=2, empty_page_every=3)
    client = mk.client()
    since = datetime.now(UTC) - timedelta(minutes=5)
    token = client.get_paging_token(since)
    created = client.sync_leads(people(120))
    client.sync_leads([{"email": f"person{i}@example.com", "firstName": f"New{i}"} for i in range(40)])
    mk.control("POST", "/act/edit", json={"email": "person5@example.com", "values": {"lastName": "Edited"}})

    pages = list(client.lead_changes(token, ["firstName", "lastName"], batch_size=50))
    activities = [a for p in pages for a in p.activities]
    assert any(not p.activities and p.more_result for p in pages), "the emulator served no empty page"
    assert not pages[-1].more_result and all(p.more_result for p in pages[:-1])
    assert len({a.marketo_guid for a in activities}) == len(activities)
    assert sum(a.activity_type_id == 12 for a in activities) == 120
    changes = [a for a in activities if a.activity_type_id == 13]
    renamed = [a for a in changes if any(f.name == "firstName" for f in a.fields)]
    assert len(renamed) == 40
    first = next(f for f in renamed[0].fields if f.name == "firstName")
    assert first.old_value.startswith("First") and first.new_value.startswith("New")
    assert {a.attributes.get("Source") for a in renamed} == {"Web service API"}
    edit = [a for a in changes if a.lead_id == created[5].id and any(f.name == "lastName" for f in a.fields)]
    assert len(edit) == 1 and edit[0].attributes.get("Source") != "Web service API"

    watermark = pages[-1].next_page_token
    assert [a for p in client.lead_changes(watermark, ["firstName"]) for a in p.activities] == []
    mk.control("POST", "/act/edit", json={"email": "person9@example.com", "values": {"firstName": "Later"}})
    later = [a for p in client.lead_changes(watermark, ["firstName"]) for a in p.activities]
    assert [(a.lead_id, a.fields[0].new_value) for a in later] == [(created[9].id, "Later")]


def test_deleted_leads_and_activities_by_type(mk: Marketo) -> None:
    client = mk.client()
    token = client.get_paging_token(datetime.now(UTC) - timedelta(minutes=1))
    created = client.sync_leads(people(10))
    new_leads = [a for p in client.activities(token, [12]) for a in p.activities]
    assert sorted(a.lead_id for a in new_leads) == sorted(r.id for r in created)
    ids = [r.id for r in created[:3]]
    client.delete_leads(ids)
    mk.control("POST", "/act/delete", json={"email": "person4@example.com"})
    deleted = [a for p in client.deleted_leads(token) for a in p.activities]
    assert sorted(a.lead_id for a in deleted) == sorted([*ids, created[4].id])
    assert {a.activity_type_id for a in deleted} == {37}
    types = {t.id: t.name for t in client.activity_types()}
    assert {12, 13, 37} <= set(types)
    with pytest.raises(ValueError, match="1 to 10"):
        list(client.activities(token, list(range(11))))
