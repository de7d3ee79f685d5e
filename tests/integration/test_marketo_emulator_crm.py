"""CRM objects and custom objects over HTTPS: describe, sync with dedupeBy, query (compound keys), delete, seq."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulated import RunningEmulators
from tests.integration.marketo_helpers import Raw, error_code


@pytest.fixture
def mk(marketo_emulator: RunningEmulators) -> Iterator[Raw]:
    marketo_emulator.control("marketo", "POST", "/reset")
    raw = Raw(marketo_emulator)
    yield raw
    raw.session.close()


def test_describe_standard_objects(mk: Raw) -> None:
    expected = {
        "companies": ("id", ["externalCompanyId"]),
        "opportunities": ("marketoGUID", ["externalOpportunityId"]),
        "opportunities/roles": ("marketoGUID", ["externalOpportunityId", "leadId", "role"]),
        "salespersons": ("id", ["externalSalesPersonId"]),
    }
    for path, (id_field, dedupe) in expected.items():
        described = mk.get(f"/rest/v1/{path}/describe.json")["result"][0]
        assert described["idField"] == id_field and described["dedupeFields"] == dedupe
        assert described["searchableFields"] and {"name", "dataType", "updateable"} <= set(described["fields"][0])


def test_sales_persons_companies_leads_opportunities_roles_in_order(mk: Raw) -> None:
    sales = mk.post(
        "/rest/v1/salespersons.json",
        json={"input": [{"externalSalesPersonId": "SP-1", "email": "rep@example.com", "firstName": "Rep"}]},
    )["result"]
    assert sales == [{"seq": 0, "status": "created", "id": sales[0]["id"]}]
    companies = mk.post(
        "/rest/v1/companies.json",
        json={
            "action": "createOrUpdate",
            "dedupeBy": "dedupeFields",
            "input": [
                {"externalCompanyId": "ACC-1", "company": "Acme", "externalSalesPersonId": "SP-1"},
                {"externalCompanyId": "ACC-2", "company": "Globex", "externalSalesPersonId": "SP-404"},
                {"company": "No key"},
                {"externalCompanyId": "ACC-1", "company": "Acme again"},
            ],
        },
    )["result"]
    assert [item["seq"] for item in companies] == [0, 1, 2, 3]
    assert companies[0]["status"] == "created" and isinstance(companies[0]["id"], int)
    assert companies[1]["reasons"][0]["code"] == "718"
    assert companies[2]["status"] == "skipped" and companies[2]["reasons"][0]["code"] == "1003"
    assert companies[3]["reasons"] == [{"code": "1036", "message": "Duplicate object found in input"}]
    lead = mk.sync([{"email": "buyer@example.com", "externalCompanyId": "ACC-1"}])["result"][0]["id"]
    opportunity = mk.post(
        "/rest/v1/opportunities.json",
        json={"input": [{"externalOpportunityId": "OPP-1", "name": "Big deal", "amount": 1000, "isWon": False}]},
    )["result"][0]
    assert opportunity["status"] == "created" and len(opportunity["marketoGUID"]) == 36
    roles = mk.post(
        "/rest/v1/opportunities/roles.json",
        json={
            "input": [
                {"externalOpportunityId": "OPP-1", "leadId": lead, "role": "Decision Maker", "isPrimary": True},
                {"externalOpportunityId": "OPP-1", "leadId": 999999, "role": "Champion"},
                {"externalOpportunityId": "OPP-404", "leadId": lead, "role": "Champion"},
            ]
        },
    )["result"]
    assert roles[0]["status"] == "created"
    assert roles[1]["reasons"][0]["code"] == "1004" and roles[2]["reasons"][0]["code"] == "1013"
    compound = mk.post(
        "/rest/v1/opportunities/roles.json?_method=GET",
        json={
            "filterType": "dedupeFields",
            "fields": ["marketoGUID", "role", "isPrimary"],
            "input": [
                {"externalOpportunityId": "nope", "leadId": lead, "role": "x"},
                {"externalOpportunityId": "OPP-1", "leadId": lead, "role": "Decision Maker"},
            ],
        },
    )["result"]
    assert compound == [{"seq": 1, "marketoGUID": roles[0]["marketoGUID"], "role": "Decision Maker", "isPrimary": True}]


def test_create_only_update_only_and_id_field(mk: Raw) -> None:
    first = mk.post("/rest/v1/companies.json", json={"input": [{"externalCompanyId": "C1", "company": "One"}]})
    ident = first["result"][0]["id"]
    again = mk.post("/rest/v1/companies.json", json={"action": "createOnly", "input": [{"externalCompanyId": "c1"}]})[
        "result"
    ][0]
    assert again["status"] == "skipped" and again["reasons"][0]["code"] == "1005"
    missing = mk.post("/rest/v1/companies.json", json={"action": "updateOnly", "input": [{"externalCompanyId": "C9"}]})[
        "result"
    ][0]
    assert missing["reasons"][0]["code"] == "1013"
    by_id = mk.post(
        "/rest/v1/companies.json",
        json={"action": "updateOnly", "dedupeBy": "idField", "input": [{"id": ident, "industry": "Retail"}]},
    )["result"][0]
    assert by_id == {"seq": 0, "status": "updated", "id": ident}
    not_allowed = mk.post(
        "/rest/v1/companies.json", json={"dedupeBy": "idField", "input": [{"id": ident, "industry": "x"}]}
    )
    assert error_code(not_allowed) == "1003"
    queried = mk.get(
        "/rest/v1/companies.json",
        params={"filterType": "externalCompanyId", "filterValues": "nope,C1", "fields": "company,industry"},
    )["result"]
    assert queried == [{"seq": 1, "company": "One", "industry": "Retail"}]
    unknown = mk.post("/rest/v1/companies.json", json={"input": [{"externalCompanyId": "C2", "shoe": 1}]})
    assert unknown["result"][0]["reasons"][0] == {"code": "1006", "message": "Field 'shoe' not found"}


def test_delete_by_dedupe_fields_and_id_field(mk: Raw) -> None:
    made = mk.post(
        "/rest/v1/salespersons.json",
        json={"input": [{"externalSalesPersonId": f"S{i}", "email": f"s{i}@example.com"} for i in range(3)]},
    )["result"]
    deleted = mk.post(
        "/rest/v1/salespersons/delete.json",
        json={"deleteBy": "dedupeFields", "input": [{"externalSalesPersonId": "S0"}, {"externalSalesPersonId": "X"}]},
    )["result"]
    assert deleted[0] == {"seq": 0, "status": "deleted", "id": made[0]["id"]}
    assert deleted[1]["status"] == "skipped" and deleted[1]["reasons"][0]["code"] == "1013"
    by_id = mk.post(
        "/rest/v1/salespersons/delete.json", json={"deleteBy": "idField", "input": [{"id": made[1]["id"]}]}
    )["result"]
    assert by_id[0]["status"] == "deleted"
    assert mk.control("GET", "/stats")["crm"]["salespersons"] == 1


def test_custom_object_list_describe_sync_query_delete(mk: Raw) -> None:
    listed = mk.get("/rest/v1/customobjects.json")["result"]
    assert [item["name"] for item in listed] == ["product_c"]
    described = mk.get("/rest/v1/customobjects/product_c/describe.json")["result"][0]
    assert described["idField"] == "marketoGUID" and described["dedupeFields"] == ["productCode"]
    assert described["relationships"] == [
        {"field": "externalCompanyId", "type": "parent", "relatedTo": {"name": "Company", "field": "externalCompanyId"}}
    ]
    synced = mk.post(
        "/rest/v1/customobjects/product_c.json",
        json={
            "input": [
                {"productCode": "P-1", "externalCompanyId": "ACC-1", "quantity": 3},
                {"productCode": "P-2", "externalCompanyId": "ACC-1", "quantity": "many"},
            ]
        },
    )["result"]
    assert synced[0]["status"] == "created" and synced[1]["reasons"][0]["code"] == "1001"
    by_company = mk.get(
        "/rest/v1/customobjects/product_c.json",
        params={"filterType": "externalCompanyId", "filterValues": "ACC-1", "fields": "productCode,quantity"},
    )["result"]
    assert by_company == [{"seq": 0, "productCode": "P-1", "quantity": 3}]
    by_guid = mk.get(
        "/rest/v1/customobjects/product_c.json",
        params={"filterType": "idField", "filterValues": synced[0]["marketoGUID"]},
    )["result"]
    assert by_guid[0]["marketoGUID"] == synced[0]["marketoGUID"] and set(by_guid[0]) >= {"seq", "createdAt"}
    compound = mk.post(
        "/rest/v1/customobjects/product_c.json?_method=GET",
        json={"filterType": "dedupeFields", "input": [{"productCode": "p-1"}]},
    )["result"]
    assert [item["marketoGUID"] for item in compound] == [synced[0]["marketoGUID"]]
    gone = mk.post("/rest/v1/customobjects/product_c/delete.json", json={"input": [{"productCode": "P-1"}]})
    assert gone["result"][0]["status"] == "deleted"
    unknown = mk.get("/rest/v1/customobjects/ghost_c/describe.json")
    assert error_code(unknown) == "1003"


def test_custom_object_types_defined_by_configuration(mk: Raw) -> None:
    mk.control(
        "POST",
        "/schema/customobjects",
        json={
            "name": "subscription_c",
            "displayName": "Subscription",
            "dedupeFields": ["plan", "leadId"],
            "fields": [{"name": "plan", "dataType": "string"}, {"name": "leadId", "dataType": "integer"}],
            "relationships": [{"field": "leadId", "type": "parent", "relatedTo": {"name": "Lead", "field": "id"}}],
        },
    )
    names = [item["name"] for item in mk.get("/rest/v1/customobjects.json")["result"]]
    assert names == ["product_c", "subscription_c"]
    made = mk.post("/rest/v1/customobjects/subscription_c.json", json={"input": [{"plan": "Gold", "leadId": 7}]})
    assert made["result"][0]["status"] == "created"
    found = mk.post(
        "/rest/v1/customobjects/subscription_c.json?_method=GET",
        json={"filterType": "dedupeFields", "fields": ["plan"], "input": [{"plan": "gold", "leadId": 7}]},
    )["result"]
    assert found == [{"seq": 0, "plan": "Gold"}]


def test_more_than_300_inputs_is_refused(mk: Raw) -> None:
    body = {"input": [{"externalCompanyId": f"C{i}"} for i in range(301)]}
    assert error_code(mk.post("/rest/v1/companies.json", json=body)) == "1003"
