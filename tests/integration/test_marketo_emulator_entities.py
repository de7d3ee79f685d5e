"""The Marketo emulator for the one-way entity streams: persons linked to companies show the company's fields and
cannot change them (1021), sales person links, deletes refused while in use (1022), key lengths, and call counts
per object."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulated import RunningEmulators
from tests.integration.marketo_helpers import Raw
from tests.integration.test_marketo_emulator_bulk import _export, _run_export, _window

ACME = {
    "externalCompanyId": "ACC-1",
    "company": "Acme",
    "website": "https://acme.example",
    "mainPhone": "+1 555 0100",
    "industry": "Retail",
    "annualRevenue": 1_000_000,
    "numberOfEmployees": 250,
    "sicCode": "5311",
    "billingStreet": "1 Main St",
    "billingCity": "Seattle",
    "billingState": "WA",
    "billingCountry": "United States",
    "billingPostalCode": "98101",
}
COMPANY_FIELDS = [name for name in ACME if name != "externalCompanyId"]


@pytest.fixture
def mk(marketo_emulator: RunningEmulators) -> Iterator[Raw]:
    marketo_emulator.control("marketo", "POST", "/reset")
    raw = Raw(marketo_emulator)
    yield raw
    raw.session.close()


def _companies(mk: Raw, *records: dict[str, Any]) -> list[dict[str, Any]]:
    return mk.post("/rest/v1/companies.json", json={"input": list(records)})["result"]


def _lead(mk: Raw, ident: int, fields: list[str]) -> dict[str, Any]:
    """The fields asked for; one not returned is null (Adobe), and `id` comes whatever is asked."""
    found = mk.get(f"/rest/v1/lead/{ident}.json", params={"fields": ",".join(fields)})["result"][0]
    assert found["id"] == ident
    return {name: found.get(name) for name in fields}


def _reason(result: dict[str, Any]) -> tuple[str, str]:
    assert result["status"] == "skipped", result
    return result["reasons"][0]["code"], result["reasons"][0]["message"]


def test_a_linked_person_shows_its_company_in_every_read(mk: Raw) -> None:
    _companies(mk, ACME, {"externalCompanyId": "ACC-2", "company": "Globex", "billingCity": "Boston"})
    own = {"company": "Own Co", "billingCity": "Austin", "industry": "Farming"}
    linked = mk.sync([{"email": "ada@example.com", "externalCompanyId": "ACC-1"}])["result"][0]["id"]
    alone = mk.sync([{"email": "bob@example.com", **own}])["result"][0]["id"]

    fields = ["email", "externalCompanyId", *COMPANY_FIELDS]
    expected = {name: value for name, value in ACME.items() if name in fields}
    shown = _lead(mk, linked, fields)
    assert {name: shown[name] for name in expected} == expected
    assert {name: _lead(mk, alone, fields)[name] for name in own} == own  # no company: its own fields

    filtered = mk.get(
        "/rest/v1/leads.json", params={"filterType": "externalCompanyId", "filterValues": "acc-1", "fields": "company"}
    )["result"]
    assert [{k: v for k, v in found.items() if k != "id"} for found in filtered] == [{"company": "Acme"}]
    assert mk.control("GET", f"/persons/{linked}")["billingCity"] == "Seattle"

    # A company update shows on all its persons; a new externalCompanyId moves the person.
    _companies(mk, {"externalCompanyId": "ACC-1", "company": "Acme Corp"})
    assert _lead(mk, linked, ["company"])["company"] == "Acme Corp"
    mk.sync([{"email": "ada@example.com", "externalCompanyId": "ACC-2"}])
    moved = _lead(mk, linked, ["externalCompanyId", "company", "billingCity", "website"])
    assert moved == {"externalCompanyId": "ACC-2", "company": "Globex", "billingCity": "Boston", "website": None}


def test_bulk_extract_shows_the_company_fields(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"bulk_min_seconds": 0.1})
    _companies(mk, ACME)
    mk.sync([{"email": "ada@example.com", "externalCompanyId": "ACC-1"}, {"email": "bob@example.com", "company": "B"}])
    body = {"fields": ["email", "company", "billingCity"], "filter": {"createdAt": _window(mk, 1)}}
    export_id = _export(mk, "leads", body)["result"][0]["exportId"]
    status, _ = _run_export(mk, "leads", export_id)
    assert status["status"] == "Completed"
    text = mk.call("GET", f"/bulk/v1/leads/export/{export_id}/file.json").text
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(text))}
    assert (rows["ada@example.com"]["company"], rows["ada@example.com"]["billingCity"]) == ("Acme", "Seattle")
    assert rows["bob@example.com"]["company"] == "B"


def test_sync_leads_refuses_company_fields_of_a_linked_person(mk: Raw) -> None:
    _companies(mk, ACME)
    linked = mk.sync([{"email": "ada@example.com", "externalCompanyId": "ACC-1", "firstName": "Ada"}])["result"][0]
    results = mk.sync(
        [
            {"email": "ada@example.com", "company": "Renamed"},  # linked already
            {"email": "ada@example.com", "billingCity": None},  # clearing is a company update too
            {"email": "new@example.com", "externalCompanyId": "ACC-1", "industry": "Mining"},  # linking and writing
            {"email": "ada@example.com", "firstName": "Ada L."},  # person fields still sync
            {"email": "free@example.com", "company": "Freelance", "externalCompanyId": "NOT-YET"},
        ]
    )["result"]
    assert [_reason(result) for result in results[:3]] == [("1021", "Company update not allowed")] * 3
    assert results[3] == {"id": linked["id"], "status": "updated"}
    assert results[4]["status"] == "created"  # the named company does not exist: its own company fields stay
    assert _lead(mk, linked["id"], ["firstName", "company"]) == {
        "firstName": "Ada L.",
        "company": "Acme",
    }
    assert mk.control("GET", "/persons", params={"email": "new@example.com"})["persons"] == []
    free = mk.control("GET", "/persons", params={"email": "free@example.com"})["persons"][0]
    assert (free["company"], free["externalCompanyId"]) == ("Freelance", "NOT-YET")
    # Once that company exists, the person shows it.
    _companies(mk, {"externalCompanyId": "NOT-YET", "company": "Arrived"})
    assert mk.control("GET", f"/persons/{free['id']}")["company"] == "Arrived"

    # A person cannot leave its company except for another: a null externalCompanyId leaves the link.
    assert mk.sync([{"email": "ada@example.com", "externalCompanyId": None}])["result"][0]["status"] == "updated"
    assert _lead(mk, linked["id"], ["externalCompanyId"])["externalCompanyId"] == "ACC-1"


def test_sales_person_links_and_deletes_refused_while_in_use(mk: Raw) -> None:
    mk.post(
        "/rest/v1/salespersons.json",
        json={"input": [{"externalSalesPersonId": f"SP-{n}", "email": f"sp{n}@example.com"} for n in range(4)]},
    )
    _companies(mk, {"externalCompanyId": "ACC-1", "company": "Acme", "externalSalesPersonId": "SP-1"})
    mk.post(
        "/rest/v1/opportunities.json",
        json={"input": [{"externalOpportunityId": "O-1", "name": "Deal", "externalSalesPersonId": "SP-2"}]},
    )
    person = mk.sync(
        [
            {"email": "ada@example.com", "externalSalesPersonId": "SP-0"},
            {"email": "bob@example.com", "externalSalesPersonId": "SP-404"},  # no such sales person: still stored
        ]
    )["result"]
    assert [result["status"] for result in person] == ["created", "created"]
    assert _lead(mk, person[1]["id"], ["externalSalesPersonId"])["externalSalesPersonId"] == "SP-404"

    deleted = mk.post(
        "/rest/v1/salespersons/delete.json",
        json={"input": [{"externalSalesPersonId": f"SP-{n}"} for n in range(4)]},
    )["result"]
    assert [_reason(result) for result in deleted[:3]] == [("1022", "Object in use")] * 3
    assert deleted[3]["status"] == "deleted"
    assert mk.control("GET", "/stats")["crm"]["salespersons"] == 3

    # A company with persons is in use too; one without is deleted.
    mk.sync([{"email": "ada@example.com", "externalCompanyId": "ACC-1"}])
    _companies(mk, {"externalCompanyId": "ACC-9", "company": "Empty"})
    gone = mk.post(
        "/rest/v1/companies/delete.json",
        json={"input": [{"externalCompanyId": "ACC-1"}, {"externalCompanyId": "ACC-9"}]},
    )["result"]
    assert _reason(gone[0]) == ("1022", "Object in use") and gone[1]["status"] == "deleted"


@pytest.mark.parametrize(
    ("path", "record", "field", "limit"),
    [
        ("companies", {"externalCompanyId": "C" * 101}, "externalCompanyId", 100),
        ("opportunities", {"externalOpportunityId": "O" * 51, "name": "Deal"}, "externalOpportunityId", 50),
        ("salespersons", {"externalSalesPersonId": "S" * 256}, "externalSalesPersonId", 255),
        ("leads", {"email": "long@example.com", "externalCompanyId": "C" * 101}, "externalCompanyId", 100),
    ],
)
def test_values_too_long_are_refused_per_record(
    mk: Raw, path: str, record: dict[str, Any], field: str, limit: int
) -> None:
    fitting = {name: value[:limit] if name == field else value for name, value in record.items()}
    if path == "leads":
        fitting["email"] = "fits@example.com"
    results = mk.post(f"/rest/v1/{path}.json", json={"input": [record, fitting]})["result"]
    code, message = _reason(results[0])
    assert code == "1003" and field in message and str(limit) in message
    assert results[1]["status"] == "created"


def test_a_text_area_holds_30000_bytes_of_utf8(mk: Raw) -> None:
    """Adobe's field types: a text area supports up to 30,000 bytes, a Unicode character taking up to 4."""
    records = [
        {"email": "ascii@example.com", "address": "a" * 30_000},
        {"email": "emoji@example.com", "address": "😀" * 7_500},  # 30,000 bytes
        {"email": "over@example.com", "address": "😀" * 7_501},
    ]
    results = mk.sync(records)["result"]
    assert [r["status"] for r in results[:2]] == ["created", "created"]
    code, message = _reason(results[2])
    assert code == "1003" and "'address'" in message and "30000 bytes" in message


def test_role_too_long_is_refused(mk: Raw) -> None:
    lead = mk.sync([{"email": "ada@example.com"}])["result"][0]["id"]
    mk.post("/rest/v1/opportunities.json", json={"input": [{"externalOpportunityId": "O-1", "name": "Deal"}]})
    results = mk.post(
        "/rest/v1/opportunities/roles.json",
        json={"input": [{"externalOpportunityId": "O-1", "leadId": lead, "role": "R" * n} for n in (51, 50)]},
    )["result"]
    assert _reason(results[0])[0] == "1003" and results[1]["status"] == "created"


def test_request_log_counts_calls_per_object(mk: Raw) -> None:
    mk.post("/rest/v1/salespersons.json", json={"input": [{"externalSalesPersonId": "SP-1"}]})
    _companies(mk, ACME)
    _companies(mk, {"externalCompanyId": "ACC-2"})
    mk.get("/rest/v1/companies.json", params={"filterType": "externalCompanyId", "filterValues": "ACC-1"})
    mk.post(
        "/rest/v1/opportunities/roles.json?_method=GET",
        json={"filterType": "dedupeFields", "input": [{"externalOpportunityId": "x", "leadId": 1, "role": "r"}]},
    )
    mk.sync([{"email": "ada@example.com"}])
    mk.post("/rest/v1/customobjects/product_c.json", json={"input": [{"productCode": "P-1"}]})
    mk.post("/rest/v1/companies/delete.json", json={"input": [{"externalCompanyId": "ACC-2"}]})
    counts = mk.requests_log()["by_object"]
    assert counts == {
        "salespersons.sync": 1,
        "companies.sync": 2,
        "companies.query": 1,
        "opportunities/roles.query": 1,
        "leads.sync": 1,
        "product_c.sync": 1,
        "companies.delete": 1,
    }
