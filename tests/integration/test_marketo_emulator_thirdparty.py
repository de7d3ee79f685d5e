"""A well-known third-party client (marketorestpython, unchanged) pointed at the emulator must just work.

Only its host is redirected to the emulator, and requests trusts the emulator's CA through REQUESTS_CA_BUNDLE.
The client paces itself at 5 calls per second, so this file stays short.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from marketorestpython.client import MarketoClient

from tests.emulated import RunningEmulators


@pytest.fixture
def client(marketo_emulator: RunningEmulators, monkeypatch: pytest.MonkeyPatch) -> MarketoClient:
    marketo_emulator.control("marketo", "POST", "/reset")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", marketo_emulator.ca_file)
    settings = marketo_emulator.settings
    mc = MarketoClient(
        "000-EMU-000", settings["MARKETO_CLIENT_ID"], settings["MARKETO_CLIENT_SECRET"], max_retry_time=10
    )
    mc.host = settings["MARKETO_BASE_URL"]
    return mc


def test_leads_activities_and_token_renewal(client: MarketoClient, marketo_emulator: RunningEmulators) -> None:
    # Tokens live 62 s: this client renews when less than 60 s remain, so it renews after about 2 s, mid-test.
    marketo_emulator.control("marketo", "PATCH", "/config", json={"token_lifetime_s": 62})
    marketo_emulator.control("marketo", "POST", "/tokens/expire")  # tokens granted before were for an hour
    token = client.execute(method="get_paging_token", sinceDatetime="2000-01-01T00:00:00Z")
    created = client.execute(
        method="create_update_leads",
        leads=[{"email": "ada@example.com", "firstName": "Ada"}, {"email": "bo@example.com", "firstName": "Bo"}],
        action="createOrUpdate",
        lookupField="email",
    )
    assert [item["status"] for item in created] == ["created", "created"]
    found = client.execute(
        method="get_multiple_leads_by_filter_type",
        filterType="email",
        filterValues=["ADA@example.com", "bo@example.com"],
        fields=["email", "firstName"],
    )
    assert sorted(item["firstName"] for item in found) == ["Ada", "Bo"]
    time.sleep(2.1)
    client.execute(method="create_update_leads", leads=[{"email": "ada@example.com", "firstName": "Ada2"}])
    changes = client.execute(method="get_lead_changes", fields=["firstName"], nextPageToken=token)
    assert [item["activityTypeId"] for item in changes] == [12, 12, 13]
    assert changes[-1]["fields"][0]["newValue"] == "Ada2"
    client.execute(method="delete_lead", id=[created[1]["id"]])
    deleted = client.execute(method="get_deleted_leads", nextPageToken=token)
    assert [item["leadId"] for item in deleted] == [created[1]["id"]]
    fields = {item["rest"]["name"] for item in client.execute(method="describe")}
    assert {"email", "dynamicsLeadId", "syncToDynamics"} <= fields
    log = marketo_emulator.control("marketo", "GET", "/requests").json()
    assert log["identity_calls"] >= 2 and "602" not in log["by_code"] and "601" not in log["by_code"]


def test_bulk_import_and_export(client: MarketoClient, marketo_emulator: RunningEmulators, tmp_path: Path) -> None:
    marketo_emulator.control("marketo", "PATCH", "/config", json={"bulk_min_seconds": 0.1})
    source = tmp_path / "leads.csv"
    source.write_text("email,firstName\n" + "".join(f"b{i}@example.com,B{i}\n" for i in range(20)) + "bad,X\n")
    batch = client.execute(method="import_lead", format="csv", file=str(source), lookupField="email")[0]
    for _ in range(50):
        status = client.execute(method="get_import_lead_status", id=batch["batchId"])[0]
        if status["status"] in ("Complete", "Failed"):
            break
    assert status["status"] == "Complete" and status["numOfLeadsProcessed"] == 20 and status["numOfRowsFailed"] == 1
    failures = client.execute(method="get_import_failure_file", id=batch["batchId"])
    assert "bad" in failures
    now = marketo_emulator.control("marketo", "GET", "/clock").json()["now"]
    window = {
        "startAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
        "endAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
    }
    job = client.execute(method="create_leads_export_job", fields=["email", "firstName"], filters={"createdAt": window})
    client.execute(method="enqueue_leads_export_job", job_id=job[0]["exportId"])
    for _ in range(50):
        state = client.execute(method="get_leads_export_job_status", job_id=job[0]["exportId"])[0]
        if state["status"] == "Completed":
            break
    content = client.execute(method="get_leads_export_job_file", job_id=job[0]["exportId"])
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(rows) == 20 and rows[0]["email"] == "b0@example.com"


def test_companies_and_custom_objects(client: MarketoClient) -> None:
    synced = client.execute(
        method="create_update_companies",
        input=[{"externalCompanyId": "ACC-9", "company": "Initech"}],
        action="createOrUpdate",
    )
    assert synced[0]["status"] == "created" and synced[0]["seq"] == 0
    companies = client.execute(method="get_companies", filterType="externalCompanyId", filterValues=["ACC-9"])
    assert companies[0]["id"] == synced[0]["id"]
    made = client.execute(
        method="create_update_custom_objects", name="product_c", input=[{"productCode": "P-9", "quantity": 2}]
    )
    found = client.execute(
        method="get_custom_objects", name="product_c", filterType="dedupeFields", input=[{"productCode": "P-9"}]
    )
    assert found[0]["marketoGUID"] == made[0]["marketoGUID"]
