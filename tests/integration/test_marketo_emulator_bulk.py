"""Bulk import and extract over HTTPS: multipart upload, jobs on a clock, failures, Range, queue limits, quotas."""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from tests.emulated import RunningEmulators
from tests.integration.marketo_helpers import Raw, error_code


@pytest.fixture
def mk(marketo_emulator: RunningEmulators) -> Iterator[Raw]:
    marketo_emulator.control("marketo", "POST", "/reset")
    raw = Raw(marketo_emulator)
    yield raw
    raw.session.close()


def _csv(rows: list[list[str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _import(mk: Raw, content: bytes, fmt: str = "csv", **form: str) -> dict:
    return mk.post(
        "/bulk/v1/leads.json",
        params={"format": fmt},
        files={"file": ("leads.csv", content, "text/csv")},
        data=form,
    )


def _wait_import(mk: Raw, batch_id: int, timeout: float = 20) -> tuple[dict, list[str]]:
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        status = mk.get(f"/bulk/v1/leads/batch/{batch_id}.json")["result"][0]
        if not seen or seen[-1] != status["status"]:
            seen.append(status["status"])
        if status["status"] in ("Complete", "Failed"):
            return status, seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


def test_import_progresses_on_a_clock_with_failures_and_warnings(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"bulk_min_seconds": 0.4, "bulk_rows_per_second": 1000})
    mk.sync([{"email": "existing@example.com", "firstName": "Old"}])
    rows = [["email", "firstName", "syncToDynamics", "title"]]
    rows.append(["EXISTING@example.com", "New", "true", ""])
    rows += [[f"p{i}@example.com", f"P{i}", "false", "Engineer"] for i in range(50)]
    rows.append(["bad-email", "X", "true", ""])
    rows.append(["t@example.com", "T", "maybe", ""])
    rows.append(["long@example.com", "L" * 300, "", ""])
    created = _import(mk, _csv(rows))
    job = created["result"][0]
    assert job["status"] == "Queued" and job["importId"] == str(job["batchId"])
    status, seen = _wait_import(mk, job["batchId"])
    assert seen[0] == "Queued" and "Importing" in seen and seen[-1] == "Complete"
    assert status["numOfLeadsProcessed"] == 52 and status["numOfRowsFailed"] == 2
    assert status["numOfRowsWithWarning"] == 1
    assert status["message"] == "Import completed with errors, 52 records imported (52 members), 2 failed"
    failures = list(
        csv.reader(io.StringIO(mk.call("GET", f"/bulk/v1/leads/batch/{job['batchId']}/failures.json").text))
    )
    assert failures[0][-1] == "Import Failure Reason" and [row[0] for row in failures[1:]] == [
        "bad-email",
        "t@example.com",
    ]
    assert "1001" in failures[2][-1]
    warnings = mk.call("GET", f"/bulk/v1/leads/batch/{job['batchId']}/warnings.json").text
    assert "long@example.com" in warnings
    existing = mk.control("GET", "/persons", params={"email": "existing@example.com"})["persons"]
    assert len(existing) == 1 and existing[0]["firstName"] == "New" and existing[0]["syncToDynamics"] is True
    assert mk.control("GET", "/stats")["persons"] == 52


def test_import_tsv_and_lookup_by_custom_field(mk: Raw) -> None:
    mk.sync([{"email": "a@example.com", "dynamicsLeadId": "L-1"}])
    content = _csv([["dynamicsLeadId", "email", "lastName"], ["L-1", "a2@example.com", "Moved"]], "\t")
    job = _import(mk, content, "tsv", lookupField="dynamicsLeadId")["result"][0]
    status, _ = _wait_import(mk, job["batchId"])
    assert status["status"] == "Complete" and status["numOfLeadsProcessed"] == 1
    person = mk.control("GET", "/persons", params={"field": "dynamicsLeadId", "value": "L-1"})["persons"][0]
    assert person["email"] == "a2@example.com" and person["lastName"] == "Moved"


def test_import_that_fails_halfway_keeps_the_rows_it_did(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"bulk_min_seconds": 0.1, "bulk_rows_per_second": 2000})
    mk.control("POST", "/faults", json={"import_fail_after": 100})
    rows = [["email"]] + [[f"h{i}@example.com"] for i in range(200)]
    job = _import(mk, _csv(rows))["result"][0]
    status, _ = _wait_import(mk, job["batchId"])
    assert status["status"] == "Failed" and status["message"]
    assert status["numOfLeadsProcessed"] == 100
    assert mk.control("GET", "/stats")["persons"] == 100


def test_import_with_unknown_column_fails(mk: Raw) -> None:
    job = _import(mk, _csv([["email", "shoeSize"], ["a@example.com", "9"]]))["result"][0]
    status, _ = _wait_import(mk, job["batchId"])
    assert status["status"] == "Failed" and "shoeSize" in status["message"]


def test_import_queue_limit_1016_and_10mb_413(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"bulk_min_seconds": 30})
    content = _csv([["email"], ["q@example.com"]])
    codes = [error_code(_import(mk, content)) for _ in range(11)]
    assert codes[:10] == [None] * 10 and codes[10] == "1016"
    big = b"email,address\n" + b"x@example.com," + b"y" * (10 * 1024 * 1024) + b"\n"
    response = mk.call("POST", "/bulk/v1/leads.json", params={"format": "csv"}, files={"file": ("a.csv", big)})
    assert response.status_code == 413
    not_multipart = mk.post("/bulk/v1/leads.json?format=csv", json={"file": "x"})
    assert error_code(not_multipart) == "612"


def _export(mk: Raw, kind: str, body: dict) -> dict:
    return mk.post(f"/bulk/v1/{kind}/export/create.json", json=body)


def _run_export(mk: Raw, kind: str, export_id: str, timeout: float = 20) -> tuple[dict, list[str]]:
    queued = mk.post(f"/bulk/v1/{kind}/export/{export_id}/enqueue.json")["result"][0]
    assert queued["status"] == "Queued" and "queuedAt" in queued
    seen = ["Queued"]
    deadline = time.monotonic() + timeout
    while True:
        status = mk.get(f"/bulk/v1/{kind}/export/{export_id}/status.json")["result"][0]
        if seen[-1] != status["status"]:
            seen.append(status["status"])
        if status["status"] in ("Completed", "Failed", "Cancelled"):
            return status, seen
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _window(mk: Raw, days_before: float = 30, days_after: float = 1) -> dict:
    now = mk.control("GET", "/clock")["now"]
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "startAt": time.strftime(fmt, time.gmtime(now - days_before * 86400)),
        "endAt": time.strftime(fmt, time.gmtime(now + days_after * 86400)),
    }


def test_lead_export_with_range_and_checksum(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"bulk_min_seconds": 0.3, "bulk_rows_per_second": 5000})
    mk.control("POST", "/seed", json={"count": 300, "fast": True, "days": 10})
    mk.sync([{"email": "nulls@example.com"}])
    created = _export(
        mk,
        "leads",
        {
            "fields": ["id", "email", "firstName", "dynamicsLeadId"],
            "format": "CSV",
            "columnHeaderNames": {"email": "Email Address"},
            "filter": {"createdAt": _window(mk, 30, 0.01)},
        },
    )["result"][0]
    assert created["status"] == "Created" and created["format"] == "CSV"
    early = mk.call("GET", f"/bulk/v1/leads/export/{created['exportId']}/file.json")
    assert early.status_code == 404 and not early.headers["content-type"].startswith("application/json")
    status, seen = _run_export(mk, "leads", created["exportId"])
    assert seen == ["Queued", "Processing", "Completed"]
    assert status["numberOfRecords"] == 301
    assert {"startedAt", "finishedAt", "fileSize", "fileChecksum"} <= set(status)
    whole = mk.call("GET", f"/bulk/v1/leads/export/{created['exportId']}/file.json").content
    assert len(whole) == status["fileSize"]
    assert status["fileChecksum"] == "sha256:" + hashlib.sha256(whole).hexdigest()
    rows = list(csv.reader(io.StringIO(whole.decode())))
    assert rows[0] == ["id", "Email Address", "firstName", "dynamicsLeadId"] and len(rows) == 302
    assert rows[-1][1:] == ["nulls@example.com", "null", "null"]
    part = mk.call("GET", f"/bulk/v1/leads/export/{created['exportId']}/file.json", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == whole[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(whole)}"
    rest = mk.call("GET", f"/bulk/v1/leads/export/{created['exportId']}/file.json", headers={"Range": "bytes=100-"})
    assert part.content + rest.content == whole
    mk.control("POST", "/clock/advance", json={"days": 8})  # files are kept 7 days
    mk.authenticate()
    assert mk.call("GET", f"/bulk/v1/leads/export/{created['exportId']}/file.json").status_code == 404


def test_export_validation_window_and_filters(mk: Raw) -> None:
    too_wide = _export(mk, "leads", {"fields": ["email"], "filter": {"updatedAt": _window(mk, 40, 0)}})
    assert error_code(too_wide) == "1003"
    two = _export(
        mk,
        "leads",
        {"fields": ["email"], "filter": {"updatedAt": _window(mk, 1), "createdAt": _window(mk, 1)}},
    )
    assert error_code(two) == "1003"
    unknown = _export(mk, "leads", {"fields": ["shoeSize"], "filter": {"createdAt": _window(mk, 1)}})
    assert error_code(unknown) == "1006"
    smart = _export(mk, "leads", {"fields": ["email"], "filter": {"smartListId": 5}})
    assert error_code(smart) == "1035"
    no_dates = _export(mk, "activities", {"filter": {"activityTypeIds": [12]}})
    assert error_code(no_dates) == "1003"


def test_activity_export(mk: Raw) -> None:
    ident = mk.sync([{"email": "act@example.com", "firstName": "A"}])["result"][0]["id"]
    mk.sync([{"email": "act@example.com", "firstName": "B"}])
    created = _export(mk, "activities", {"filter": {"createdAt": _window(mk, 1), "activityTypeIds": [12, 13]}})[
        "result"
    ][0]
    status, _ = _run_export(mk, "activities", created["exportId"])
    assert status["status"] == "Completed" and status["numberOfRecords"] == 2
    text = mk.call("GET", f"/bulk/v1/activities/export/{created['exportId']}/file.json").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "marketoGUID",
        "leadId",
        "activityDate",
        "activityTypeId",
        "campaignId",
        "primaryAttributeValueId",
        "primaryAttributeValue",
        "attributes",
    ]
    assert [(row["activityTypeId"], row["leadId"]) for row in rows] == [("12", str(ident)), ("13", str(ident))]
    assert '"New Value":"B"' in rows[1]["attributes"] and rows[1]["campaignId"] == "null"


def test_export_queue_cancel_and_failure(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"bulk_min_seconds": 60})
    body = {"fields": ["email"], "filter": {"createdAt": _window(mk, 1)}}
    ids = [_export(mk, "leads", body)["result"][0]["exportId"] for _ in range(11)]
    codes = [error_code(mk.post(f"/bulk/v1/leads/export/{export_id}/enqueue.json")) for export_id in ids]
    assert codes[:10] == [None] * 10
    assert codes[10] == "1029"
    assert mk.post(f"/bulk/v1/leads/export/{ids[10]}/enqueue.json")["errors"][0]["message"] == "Too many jobs in queue"
    time.sleep(0.2)  # past the pick-up delay
    statuses = [mk.get(f"/bulk/v1/leads/export/{i}/status.json")["result"][0]["status"] for i in ids[:4]]
    assert statuses == ["Processing", "Processing", "Queued", "Queued"]
    cancelled = mk.post(f"/bulk/v1/leads/export/{ids[0]}/cancel.json")["result"][0]
    assert cancelled["status"] == "Cancelled"
    assert mk.get(f"/bulk/v1/leads/export/{ids[2]}/status.json")["result"][0]["status"] == "Processing"
    listed = mk.get("/bulk/v1/leads/export.json", params={"status": "Cancelled"})["result"]
    assert [job["exportId"] for job in listed] == [ids[0]]
    mk.control("POST", "/reset")
    mk.control("POST", "/faults", json={"export_fail": True})
    failing = _export(mk, "leads", {"fields": ["email"], "filter": {"createdAt": _window(mk, 1)}})["result"][0]
    status, _ = _run_export(mk, "leads", failing["exportId"])
    assert status["status"] == "Failed"


def test_export_daily_quota(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"export_daily_quota_bytes": 2000})
    mk.control("POST", "/seed", json={"count": 100, "fast": True, "days": 1})
    body = {"fields": ["email", "firstName", "lastName"], "filter": {"createdAt": _window(mk, 2)}}
    first = _export(mk, "leads", body)["result"][0]
    status, _ = _run_export(mk, "leads", first["exportId"])
    assert status["fileSize"] > 2000
    over = _export(mk, "leads", body)
    assert error_code(over) == "1029" and over["errors"][0]["message"] == "Export daily quota 500MB exceeded"
    mk.control("POST", "/clock/advance", json={"days": 1})
    mk.authenticate()
    assert error_code(_export(mk, "leads", body)) is None


def test_imported_persons_are_created_when_the_job_processed_them(mk: Raw) -> None:
    """Persons created by an import carry the moment the job processed them (evenly over its run), not the moment a
    later request made the emulator look: an export over a createdAt window sees what real Marketo would."""
    mk.control("PATCH", "/config", json={"bulk_min_seconds": 0.0, "bulk_rows_per_second": 10, "bulk_pickup_seconds": 0})
    rows = [["email"]] + [[f"p{i}@example.com"] for i in range(30)]  # a 3 s run
    job = _import(mk, _csv(rows))["result"][0]
    time.sleep(4.5)  # no request while it runs
    status = mk.get(f"/bulk/v1/leads/batch/{job['batchId']}.json")["result"][0]
    assert status["status"] == "Complete"
    first, last = (mk.control("GET", "/persons", params={"email": f"p{i}@example.com"})["persons"][0] for i in (0, 29))
    spread = datetime.fromisoformat(last["createdAt"]) - datetime.fromisoformat(first["createdAt"])
    assert timedelta(seconds=2) <= spread <= timedelta(seconds=4), (first["createdAt"], last["createdAt"])
    assert first["updatedAt"] == first["createdAt"] and last["updatedAt"] == last["createdAt"]
