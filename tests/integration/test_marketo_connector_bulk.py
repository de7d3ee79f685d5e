"""The Marketo connector's bulk import and bulk extract runners over HTTPS against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.connectors.marketo import (
    BulkJobFailedError,
    CallBudgetExhaustedError,
    ExportQuotaExceededError,
    PollPolicy,
)
from tests.integration.test_marketo_connector import Marketo, mk, people

__all__ = ["mk"]  # the fixture, shared with the REST tests

FIELDS = ["email", "firstName", "lastName", "title"]


def rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{**p, "title": f"Title {i}"} for i, p in enumerate(people(count, start), start)]


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=2), now + timedelta(days=1)


# --- import ------------------------------------------------------------------------------------------------------


def test_import_in_chunks_with_at_most_two_jobs_and_per_row_failures(mk: Marketo) -> None:
    client = mk.client()
    client.importer.max_file_bytes = 20_000  # ~400 rows per file: several jobs
    data: list[Any] = rows(2000)
    data[10] = {"email": "not-an-email", "firstName": "Bad"}
    data[11] = {"email": "p11@example.com", "noSuchColumn": "x"}  # can't be in the file: rejected before upload
    data[12] = {"email": "p12@example.com", "firstName": "N" * 300}  # over the field's length
    data[1500] = {"email": "person1500@example.com", "firstName": 'Line\nbreak, "quoted"', "title": "Émile"}
    result = client.import_leads(data, FIELDS)

    assert len(result.jobs) >= 5 and result.failed_jobs == []
    assert result.rows_submitted == 1999
    failures = {f.index: f for f in result.failures}
    assert 10 in failures and failures[10].reason.message and failures[10].reason.code
    assert failures[11].reason.code == "sync.unknown_column" and "noSuchColumn" in failures[11].reason.message
    assert failures[10].reason.code == "1003" and "not-an-email" in failures[10].reason.message
    assert [(w.index, w.reason.code) for w in result.warnings] == [(12, "import.warning")]  # truncated, and said so
    assert sorted(failures) == [10, 11]
    assert (result.rows_processed, result.rows_failed, result.rows_with_warning) == (1998, 2, 1)

    assert mk.person("not-an-email") is None and mk.person("p11@example.com") is None
    stored = mk.person("person1500@example.com")
    assert stored is not None and stored["firstName"] == 'Line\nbreak, "quoted"' and stored["title"] == "Émile"
    assert mk.person("person1999@example.com")["title"] == "Title 1999"
    log = mk.requests()
    assert "1016" not in log["by_code"]  # never more than 2 jobs of ours at once, so never a full queue
    assert client.calls["bulk_import_create"] == len(result.jobs)


def test_an_import_job_failing_halfway_is_reported_with_its_rows_and_the_rest_goes_on(mk: Marketo) -> None:
    client = mk.client()
    client.importer.max_file_bytes = 20_000
    mk.faults(import_fail_after=150)  # the next import job fails after 150 rows
    result = client.import_leads(rows(1000), FIELDS)
    assert len(result.failed_jobs) == 1
    failed = result.failed_jobs[0]
    assert failed.job_id and failed.first_index == 0 and failed.row_count > 150
    assert failed.rows_processed == 150 and failed.reason.message
    assert not result.ok
    assert mk.person("person149@example.com") is not None
    assert mk.person(f"person{failed.row_count - 1}@example.com") is None  # unknown outcome: reported, not lost
    assert mk.person("person999@example.com") is not None  # later chunks still ran
    assert result.rows_processed == 150 + 1000 - failed.row_count


def test_an_import_of_unknown_columns_fails_the_job_not_the_run(mk: Marketo) -> None:
    client = mk.client()
    result = client.import_leads([{"email": "a@example.com", "bogusField": "1"}], ["email", "bogusField"])
    assert len(result.failed_jobs) == 1 and "bogusField" in result.failed_jobs[0].reason.message
    assert mk.person("a@example.com") is None


def test_an_import_waits_while_marketos_import_queue_is_full(mk: Marketo) -> None:
    mk.config(bulk_max_queued=1, bulk_min_seconds=0.6)
    other = mk.client()
    busy = other._transport.call(
        "x",
        "POST",
        "/bulk/v1/leads.json",
        params={"format": "csv"},
        files={"file": ("a.csv", b"email\nother@example.com\n", "text/csv")},
    )
    assert busy.result[0]["batchId"]
    client = mk.client(poll=PollPolicy(initial=0.1, maximum=0.2, timeout=30, queue_retries=40))
    result = client.import_leads(rows(10), FIELDS)
    assert result.ok and result.rows_processed == 10 and mk.person("person9@example.com") is not None
    assert mk.requests()["by_code"].get("1016", 0) >= 1 and client.calls["bulk_import_create"] >= 2


def test_the_budget_stops_an_import_with_what_was_known(mk: Marketo) -> None:
    client = mk.client(daily_call_budget=3)
    client.importer.max_file_bytes = 20_000
    with pytest.raises(CallBudgetExhaustedError) as info:
        client.import_leads(rows(2000), FIELDS)
    partial = info.value.partial_result
    assert partial is not None
    assert partial.failed_jobs and all(f.reason.code == "sync.budget" for f in partial.failed_jobs)
    assert mk.requests()["api_calls"] == 3


# --- extract -----------------------------------------------------------------------------------------------------


def test_export_streams_every_person_in_the_window(mk: Marketo) -> None:
    client = mk.client()
    client.sync_leads(rows(700))
    start, end = window()
    exported = list(client.export_leads(["id", "email", "firstName", "title"], start, end, date_field="createdAt"))
    assert len(exported) == 700
    by_email = {r["email"]: r for r in exported}
    assert by_email["person42@example.com"]["title"] == "Title 42" and by_email["person42@example.com"]["id"]
    assert len(client.exporter.jobs) == 1 and client.exporter.jobs[0].number_of_records == 700
    assert client.calls["bulk_export_file"] == 1


def test_export_over_more_than_31_days_runs_one_job_per_window(mk: Marketo) -> None:
    client = mk.client()
    client.sync_leads(rows(30))
    end = datetime.now(UTC) + timedelta(hours=1)
    exported = list(client.export_leads(["email"], end - timedelta(days=70), end))
    assert len(exported) == 30
    assert len(client.exporter.jobs) == 3
    assert "1003" not in mk.requests()["by_code"]


def test_an_empty_export_yields_nothing(mk: Marketo) -> None:
    client = mk.client()
    start, end = window()
    assert list(client.export_leads(["email"], start, end)) == []


def test_export_waits_while_the_queue_is_full(mk: Marketo) -> None:
    mk.config(bulk_max_queued=1, bulk_min_seconds=0.8)
    client = mk.client(poll=PollPolicy(initial=0.1, maximum=0.2, timeout=30, queue_retries=40))
    client.sync_leads(rows(5))
    start, end = window()
    # Another job takes the only queue slot until it completes.
    other = mk.client()._transport
    body = {"format": "CSV", "fields": ["email"], "filter": {"createdAt": _iso_window(start, end)}}
    job_id = other.call("x", "POST", "/bulk/v1/leads/export/create.json", json=body).result[0]["exportId"]
    other.call("x", "POST", f"/bulk/v1/leads/export/{job_id}/enqueue.json")
    exported = list(client.export_leads(["email"], start, end, date_field="createdAt"))
    assert len(exported) == 5
    assert mk.requests()["by_code"].get("1029", 0) >= 1 and client.calls["bulk_export_enqueue"] >= 2


def test_export_quota_is_a_typed_error(mk: Marketo) -> None:
    mk.config(export_daily_quota_bytes=10)
    client = mk.client()
    client.sync_leads(rows(50))
    start, end = window()
    list(client.export_leads(["email", "firstName"], start, end, date_field="createdAt"))
    with pytest.raises(ExportQuotaExceededError) as info:
        list(client.export_leads(["email"], start, end, date_field="createdAt"))
    assert info.value.code == "1029"


def test_an_export_job_that_fails_raises_with_its_id(mk: Marketo) -> None:
    client = mk.client()
    client.sync_leads(rows(5))
    mk.faults(export_fail=True)
    start, end = window()
    with pytest.raises(BulkJobFailedError) as info:
        list(client.export_leads(["email"], start, end, date_field="createdAt"))
    assert info.value.job_id and info.value.code == "failed"


def test_activities_export(mk: Marketo) -> None:
    client = mk.client()
    created = client.sync_leads(rows(20))
    start, end = window()
    exported = list(client.export_activities([12], start, end))
    assert sorted(int(r["leadId"]) for r in exported) == sorted(r.id for r in created)


def _iso_window(start: datetime, end: datetime) -> dict[str, str]:
    return {"startAt": start.isoformat(timespec="seconds"), "endAt": end.isoformat(timespec="seconds")}


def test_an_export_can_be_read_in_parts_resuming_at_a_byte_offset(mk: Marketo) -> None:
    client = mk.client()
    client.sync_leads(people(57, firstName='Quote "me", please\nacross lines'))
    now = datetime.now(UTC)
    status = client.start_lead_export(["id", "email", "firstName"], now - timedelta(days=1), now + timedelta(minutes=1))
    assert status.succeeded and status.number_of_records == 57
    seen: list[dict[str, str]] = []
    header: list[str] | None = None
    offset = 0
    while True:  # read 10 rows at a time, as one queue message each would
        part = []
        for row, end in client.lead_export_rows(status.job_id, offset, header):
            part.append(row)
            offset = end
            if len(part) == 10:
                break
        if not part:
            break
        header = list(part[0])
        seen.extend(part)
    assert sorted(r["email"] for r in seen) == sorted(p["email"] for p in people(57))
    assert {r["firstName"] for r in seen} == {'Quote "me", please\nacross lines'}
    with pytest.raises(ValueError, match="header"):
        next(client.lead_export_rows(status.job_id, 5))
