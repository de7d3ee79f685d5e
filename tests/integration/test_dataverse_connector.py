"""The Dataverse connector over real HTTPS against the local Dataverse emulator (MSAL unmodified).

Each test starts from an empty emulator and asserts on the emulator's final state (its /records control and its
request log), not only on what the client returned.
"""

from __future__ import annotations

import itertools
import logging
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sync.connectors.dynamics import (
    AuthenticationError,
    DataverseClient,
    DataverseError,
    InvalidRequestError,
    ServiceProtectionError,
    eq,
)
from sync.settings import Settings
from tests.emulated import RunningEmulators

LEAD_COLUMNS = ["firstname", "lastname", "emailaddress1"]


@pytest.fixture
def dv(dataverse_emulator: RunningEmulators) -> Iterator[RunningEmulators]:
    dataverse_emulator.control("dataverse", "POST", "/reset")
    yield dataverse_emulator
    dataverse_emulator.control("dataverse", "DELETE", "/faults")


def make_client(dv: RunningEmulators, **kwargs: Any) -> DataverseClient:
    s = dv.settings
    secret = kwargs.pop("credential", None) or SecretStr(s["DYNAMICS_CLIENT_SECRET"])
    return DataverseClient(
        s["DYNAMICS_URL"],
        s["DYNAMICS_AUTHORITY"],
        s["DYNAMICS_CLIENT_ID"],
        secret,
        extra_ca=Path(s["SYNC_CA_BUNDLE"]),
        **kwargs,
    )


@pytest.fixture
def client(dv: RunningEmulators) -> Iterator[DataverseClient]:
    with make_client(dv) as c:
        yield c


def control(dv: RunningEmulators, method: str, path: str, **json: Any) -> Any:
    return dv.control("dataverse", method, path, json=json if json else None).json()


def seed(dv: RunningEmulators, table: str, count: int, **values: Any) -> list[str]:
    return control(dv, "POST", "/seed", table=table, count=count, values=values or None)["ids"]


def record_count(dv: RunningEmulators, table: str) -> int:
    return control(dv, "GET", f"/records/{table}")["count"]


def raw_row(dv: RunningEmulators, table: str, record_id: str) -> dict[str, Any]:
    return control(dv, "GET", f"/records/{table}/{record_id}")


def server_ops(dv: RunningEmulators) -> dict[str, int]:
    return control(dv, "GET", "/requests?entries=0")["by_operation"]


# --- auth --------------------------------------------------------------------------------------------------------


def test_msal_gets_a_token_once_and_the_pinned_ca_ignores_the_environment(dv, monkeypatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca.pem")
    with make_client(dv) as client:
        assert client.entity_set_name("lead") == "leads"
        assert client.entity_set_name("new_product") == "new_products"
        list(client.query("lead", LEAD_COLUMNS))
        assert client.calls["token"] == 1 and client.calls["discovery"] == 1  # cached by MSAL afterwards
        assert client.calls["metadata"] == 2 and client.calls["query"] == 1
    assert server_ops(dv)["token"] == 1


def test_certificate_credential(dv) -> None:
    pem = control(dv, "GET", "/apps/sync")["certificate_pem"]
    with make_client(dv, credential=SecretStr(pem)) as client:
        assert client.definition("lead").primary_id_attribute == "leadid"
        assert client.calls["token"] == 1


def test_from_settings(dv) -> None:
    settings = Settings(
        **dv.settings,
        AzureWebJobsStorage="UseDevelopmentStorage=true",
        MARKETO_BASE_URL="https://m",
        MARKETO_CLIENT_ID="m",
        MARKETO_CLIENT_SECRET="m",
    )
    with DataverseClient.from_settings(settings) as client:
        assert client.describe("lead").change_tracking is True


def test_a_wrong_secret_is_a_typed_error_without_the_secret(dv, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "definitely-wrong-secret-123"
    with make_client(dv, credential=SecretStr(wrong)) as client, pytest.raises(AuthenticationError) as info:
        client.entity_set_name("lead")
    assert info.value.code == "invalid_client" and info.value.message.startswith("AADSTS")
    assert wrong not in str(info.value) and wrong not in repr(info.value) and wrong not in caplog.text


def test_a_revoked_token_is_renewed_once_on_401(dv, client) -> None:
    client.entity_set_name("lead")
    control(dv, "POST", "/tokens/revoke", app="sync")
    assert [r.id for r in client.query("lead", LEAD_COLUMNS)] == []
    assert client.calls["token"] == 2 and client.calls["query"] == 2  # the 401, then the retry with a fresh token


def test_an_expired_token_is_renewed(dv, client) -> None:
    client.entity_set_name("lead")
    control(dv, "POST", "/clock", advance_seconds=3600 * 2)  # the cached token is past its expiry on the server
    seed(dv, "lead", 3)
    assert len(list(client.query("lead", LEAD_COLUMNS))) == 3


def test_no_secret_or_token_in_logs(dv, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = dv.settings["DYNAMICS_CLIENT_SECRET"]
    with make_client(dv) as client:
        seed(dv, "lead", 5)
        list(client.query("lead", LEAD_COLUMNS))
        token = client._transport.tokens.token()
        client.upsert_multiple("lead", [{"new_marketopersonid": "1", "lastname": "x" * 60}], "new_marketopersonid")
    assert secret not in caplog.text and token not in caplog.text
    assert secret not in repr(client) and token not in repr(client)


# --- reads ------------------------------------------------------------------------------------------------------


def test_query_streams_pages_following_next_links(dv, client) -> None:
    seed(dv, "lead", 1234)
    control(dv, "DELETE", "/requests")
    records = list(client.query("lead", LEAD_COLUMNS, page_size=500))
    assert len(records) == 1234 and len({r.id for r in records}) == 1234
    assert client.calls["query"] == 3 == server_ops(dv)["RetrieveMultiple"]
    assert set(records[0].values) >= {"leadid", *LEAD_COLUMNS} and records[0].etag.startswith('W/"')


def test_query_is_lazy(dv, client) -> None:
    seed(dv, "lead", 30)
    iterator = client.query("lead", LEAD_COLUMNS, page_size=10)
    first = next(iterator)
    assert first.id and client.calls["query"] == 1  # only the first page was read


def test_filters_with_quotes_and_url_characters(dv, client) -> None:
    seed(dv, "lead", 3, lastname="O'Bryan & Sons #1+2%")
    seed(dv, "lead", 4, lastname="Other")
    found = list(client.query("lead", LEAD_COLUMNS, filter=eq("lastname", "o'bryan & sons #1+2%")))
    assert len(found) == 3 and {r.values["lastname"] for r in found} == {"O'Bryan & Sons #1+2%"}
    top = list(client.query("lead", LEAD_COLUMNS, orderby="lastname desc", top=2))
    assert len(top) == 2 and client.calls["query"] == 2


def test_annotations_on_request(dv, client) -> None:
    seed(dv, "lead", 1, leadsourcecode=1)
    plain = next(client.query("lead", ["leadsourcecode"]))
    annotated = next(client.query("lead", ["leadsourcecode"], annotations=True))
    assert plain.annotations == {}
    assert annotated.annotations["leadsourcecode"]["OData.Community.Display.V1.FormattedValue"]
    assert "leadsourcecode@OData.Community.Display.V1.FormattedValue" not in annotated.values


def test_get_by_ids_and_find_by(dv, client) -> None:
    ids = seed(dv, "lead", 250)
    missing = str(uuid.uuid4())
    found = client.get_by_ids("lead", [*ids[:230], missing, ids[0].upper()], LEAD_COLUMNS)
    assert set(found) == set(ids[:230])
    assert client.calls["get_by_ids"] == 3  # 100 GUIDs per In() call
    seed(dv, "lead", 2, emailaddress1="Ann@Example.com")
    matches = client.find_by("lead", "emailaddress1", ["ann@example.com", "nobody@example.com"], ["lastname"])
    assert len(matches["ann@example.com"]) == 2 and matches["nobody@example.com"] == []


def test_find_by_many_values_sends_its_chunks_concurrently_and_keeps_every_answer(dv, client) -> None:
    ids = seed(dv, "lead", 250)
    emails = {
        str(r.values["emailaddress1"]).upper(): str(r.id) for r in client.get_by_ids("lead", ids, LEAD_COLUMNS).values()
    }
    assert len(emails) == 250  # the seed gives each lead its own address
    missing = [f"nobody{n}@example.com" for n in range(60)]
    before = client.calls["find_by"]
    matches = client.find_by("lead", "emailaddress1", [*emails, *missing], ["lastname"])
    assert client.calls["find_by"] - before == 4  # 310 values, 100 per In() query
    assert {email: [str(r.id) for r in found] for email, found in matches.items() if found} == {
        email: [record_id] for email, record_id in emails.items()
    }
    assert all(matches[m] == [] for m in missing)


def test_find_by_any_asks_for_two_columns_in_shared_queries(dv, client) -> None:
    both = seed(dv, "lead", 1, emailaddress1="both@example.com", new_marketopersonid="77")[0]
    by_key = seed(dv, "lead", 1, emailaddress1="other@example.com", new_marketopersonid="78")[0]
    by_mail = seed(dv, "lead", 1, emailaddress1="Mail@Example.com")[0]
    keys = [*[str(1000 + n) for n in range(148)], "78", "77"]  # 150 keys: two In() chunks, 77 in the second
    emails = ["BOTH@example.com", "mail@example.com", "none@example.com"]
    before = client.calls["find_by"]
    found = client.find_by_any("lead", {"new_marketopersonid": keys, "emailaddress1": emails}, ["lastname"])
    assert client.calls["find_by"] - before == 2  # chunk i of each column shares query i
    # `both` answers both queries (its e-mail in chunk 0, its key in chunk 1) and is still listed once per match
    hits = {
        column: {v: [str(r.id) for r in rs] for v, rs in answers.items() if rs} for column, answers in found.items()
    }
    assert hits == {
        "new_marketopersonid": {"77": [both], "78": [by_key]},
        "emailaddress1": {"BOTH@example.com": [both], "mail@example.com": [by_mail]},
    }
    assert found["emailaddress1"]["none@example.com"] == [] and len(found["new_marketopersonid"]) == 150


# --- change tracking -----------------------------------------------------------------------------------------------


def read_all(client: DataverseClient, cursor: str | None, page_size: int = 500) -> tuple[list[Any], str]:
    pages = list(client.read_changes("lead", LEAD_COLUMNS, cursor, page_size=page_size))
    assert pages and pages[-1].is_last and not any(p.is_last for p in pages[:-1])
    return pages, pages[-1].cursor


def test_initial_read_then_delta_with_upserts_and_deletions(dv, client) -> None:
    ids = seed(dv, "lead", 1200)
    pages, delta = read_all(client, None)
    assert [len(p.records) for p in pages] == [500, 500, 200]
    assert client.calls["read_changes"] == 3 == math.ceil(1200 / 500)
    assert "$deltatoken=" in delta and not any(p.full_resync for p in pages)

    created = client.create_multiple("lead", [{"lastname": "New 1"}, {"lastname": "New 2"}])
    updated = client.update_multiple("lead", [{"leadid": ids[5], "firstname": "Changed"}])
    assert client.delete("lead", ids[7]) is True
    assert all(r.ok for r in created + updated)

    pages, delta2 = read_all(client, delta)
    records = [r for p in pages for r in p.records]
    assert {r.id for r in records} == {created[0].id, created[1].id, ids[5]}
    assert [d for p in pages for d in p.deleted_ids] == [ids[7]]
    assert next(r for r in records if r.id == ids[5]).values["firstname"] == "Changed"

    pages, _ = read_all(client, delta2)  # nothing changed since
    assert [(p.records, p.deleted_ids) for p in pages] == [([], [])]


def test_resume_from_a_next_link(dv, client) -> None:
    seed(dv, "lead", 25)
    first = next(client.read_changes("lead", LEAD_COLUMNS, None, page_size=10))
    assert not first.is_last and "$skiptoken=" in first.cursor
    rest, _ = read_all(client, first.cursor, page_size=10)
    ids = [r.id for r in first.records] + [r.id for p in rest for r in p.records]
    assert len(ids) == 25 == len(set(ids))


def test_an_expired_delta_token_falls_back_to_a_full_read(dv, client) -> None:
    seed(dv, "lead", 30)
    _, delta = read_all(client, None)
    control(dv, "POST", "/change-tracking", expire_all=True)
    control(dv, "POST", "/clock", advance_seconds=2)  # tokens issued from now on are after the expiry
    pages, fresh = read_all(client, delta, page_size=20)
    assert all(p.full_resync for p in pages) and sum(len(p.records) for p in pages) == 30
    seed(dv, "lead", 1)
    pages, _ = read_all(client, fresh)  # the new token works as a delta again
    assert sum(len(p.records) for p in pages) == 1 and not pages[0].full_resync


def test_change_tracking_turned_off_is_a_typed_error(dv, client) -> None:
    _, delta = read_all(client, None)
    control(dv, "PATCH", "/schema/lead", change_tracking=False)
    try:
        with pytest.raises(DataverseError) as initial:
            list(client.read_changes("lead", LEAD_COLUMNS))
        with pytest.raises(InvalidRequestError) as resumed:
            list(client.read_changes("lead", LEAD_COLUMNS, delta))
    finally:
        control(dv, "PATCH", "/schema/lead", change_tracking=True)
    assert initial.value.code == "ChangeTrackingNotEnabled" and initial.value.table == "lead"
    assert resumed.value.status == 400 and resumed.value.table == "lead"


# --- service protection and transient faults ---------------------------------------------------------------------


def test_429_with_retry_after_is_retried_after_the_wait(dv, client) -> None:
    seed(dv, "lead", 3)
    client.entity_set_name("lead")
    control(dv, "POST", "/faults", queue=[{"status": 429, "retry_after": 1, "times": 2, "method": "GET"}])
    control(dv, "DELETE", "/requests")
    assert len(list(client.query("lead", LEAD_COLUMNS))) == 3
    assert client.retries["query"] == 2 and client.calls["query"] == 3
    entries = [e for e in control(dv, "GET", "/requests")["entries"] if e["method"] == "GET"]
    assert [e["status"] for e in entries] == [429, 429, 200]
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(entries)]
    assert all(gap >= 0.95 for gap in gaps)  # Retry-After: 1 honoured (a lower bound, not a performance claim)


def test_service_protection_limit_is_waited_out(dv, client) -> None:
    seed(dv, "lead", 2)
    client.entity_set_name("lead")
    control(dv, "POST", "/limits", enabled=True, requests=4, window_seconds=2, concurrent=52, execution_ms=1_200_000)
    try:
        control(dv, "DELETE", "/requests")
        counts = [len(list(client.query("lead", LEAD_COLUMNS))) for _ in range(6)]
    finally:
        control(dv, "POST", "/limits", enabled=False)
    assert counts == [2] * 6
    throttled = [e for e in control(dv, "GET", "/requests")["entries"] if e["status"] == 429]
    assert throttled and client.retries["query"] == len(throttled)
    assert client.calls["query"] == 6 + len(throttled)


def test_429_on_a_bulk_post_is_retried(dv, client) -> None:
    client.entity_set_name("lead")
    control(dv, "POST", "/faults", queue=[{"status": 429, "retry_after": 0, "times": 1, "method": "POST"}])
    results = client.create_multiple("lead", [{"lastname": "A"}, {"lastname": "B"}])
    assert all(r.ok for r in results) and record_count(dv, "lead") == 2
    assert client.retries["create_multiple"] == 1


def test_bulk_chunks_after_the_first_go_several_at_once_and_results_keep_the_input_order(dv, client) -> None:
    client.entity_set_name("lead")
    control(dv, "POST", "/faults", latency_ms=150)  # each chunk waits: the ones in flight overlap
    control(dv, "DELETE", "/requests")
    try:
        results = client.create_multiple("lead", [{"lastname": f"L{n}"} for n in range(45)], chunk_size=10)
    finally:
        control(dv, "DELETE", "/faults")
    assert [r.index for r in results] == list(range(45)) and all(r.ok for r in results)
    assert record_count(dv, "lead") == 45 and client.calls["create_multiple"] == 5
    posts = [e for e in control(dv, "GET", "/requests")["entries"] if e["method"] == "POST"]
    starts = sorted(e["time"] for e in posts)
    assert starts[1] - starts[0] >= 0.14  # the first chunk alone
    assert starts[-1] - starts[1] < 0.14  # the other four together


def test_a_chunk_that_stops_the_writing_fails_the_chunks_not_yet_sent_and_nothing_raises(dv) -> None:
    with make_client(dv, max_retry_after=2) as client:
        client.entity_set_name("lead")
        refuse = {"status": 429, "retry_after": 60, "times": 1, "method": "POST", "code": "0x80072322"}
        control(dv, "POST", "/faults", queue=[{"delay_ms": 1, "times": 1, "method": "POST"}, refuse])
        results = client.create_multiple("lead", [{"lastname": f"L{n}"} for n in range(45)], chunk_size=10)
    assert [r.index for r in results] == list(range(45))
    written = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert len(written) >= 10 and written[0].index == 0  # the first chunk, and any sent in time
    assert len(refused) >= 10 and {r.error.code for r in refused if r.error} == {"0x80072322"}
    assert record_count(dv, "lead") == len(written)  # what is reported written is written, and nothing else


def test_a_retry_after_longer_than_we_wait_raises_service_protection(dv) -> None:
    with make_client(dv, max_retry_after=2) as client:
        client.entity_set_name("lead")
        control(dv, "POST", "/faults", queue=[{"status": 429, "retry_after": 60, "times": 1, "code": "0x80072322"}])
        with pytest.raises(ServiceProtectionError) as info:
            list(client.query("lead", LEAD_COLUMNS))
    assert info.value.retry_after == 60 and info.value.code == "0x80072322"


def test_retries_are_bounded(dv) -> None:
    with make_client(dv, max_retries=2) as client:
        client.entity_set_name("lead")
        control(dv, "POST", "/faults", queue=[{"status": 429, "retry_after": 0, "times": 5}])
        with pytest.raises(ServiceProtectionError):
            list(client.query("lead", LEAD_COLUMNS))
        assert client.calls["query"] == 3


def test_5xx_and_dropped_connections_on_reads_are_retried(dv, client) -> None:
    seed(dv, "lead", 2)
    client.entity_set_name("lead")
    control(dv, "POST", "/faults", queue=[{"status": 503, "times": 1}, {"drop": True, "times": 1}])
    assert len(list(client.query("lead", LEAD_COLUMNS))) == 2
    assert client.retries["query"] == 2 and client.calls["query"] == 3
