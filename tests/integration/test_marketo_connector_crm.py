"""The Marketo connector's CRM object and custom object clients over HTTPS against the emulator."""

from __future__ import annotations

import pytest

from sync.connectors.marketo import MarketoError
from tests.integration.test_marketo_connector import Marketo, mk

__all__ = ["mk"]  # the fixture, shared with the REST tests


def test_companies_sync_query_describe_delete(mk: Marketo) -> None:
    client = mk.client()
    companies = client.crm("companies")
    description = companies.describe()
    assert description.id_field == "id" and description.dedupe_fields == ["externalCompanyId"]
    assert any(f.name == "company" for f in description.fields)

    records = [{"externalCompanyId": f"acc-{i}", "company": f"Company {i}", "industry": "Retail"} for i in range(320)]
    results = companies.sync(records)
    assert [r.index for r in results] == list(range(320)) and {r.status for r in results} == {"created"}
    assert all(r.id is not None for r in results) and client.calls["companies_sync"] == 2

    again = companies.sync([{"externalCompanyId": "acc-1", "company": "Renamed"}, {"externalCompanyId": "new"}])
    assert [r.status for r in again] == ["updated", "created"]
    found = companies.query("externalCompanyId", [f"acc-{i}" for i in range(320)], ["externalCompanyId", "company"])
    assert len(found) == 320
    by_key = {c.values["externalCompanyId"]: c for c in found}
    assert by_key["acc-1"].values["company"] == "Renamed" and by_key["acc-1"].id == results[1].id

    deleted = companies.delete([{"externalCompanyId": "acc-0"}, {"externalCompanyId": "nope"}])
    assert deleted[0].status == "deleted"
    assert deleted[1].status in ("skipped", "failed") and deleted[1].reasons[0].code
    assert companies.query("externalCompanyId", ["acc-0"]) == []
    by_id = companies.delete([{"id": results[2].id}], delete_by="idField")
    assert by_id[0].status == "deleted" and companies.query("externalCompanyId", ["acc-2"]) == []


def test_bad_crm_records_are_reported_per_record(mk: Marketo) -> None:
    companies = mk.client().crm("companies")
    results = companies.sync(
        [
            {"externalCompanyId": "ok-1", "company": "Fine"},
            {"company": "No key"},  # the dedupe field is missing
            {"externalCompanyId": "bad-field", "noSuchField": 1},
            {"externalCompanyId": "ok-2", "company": "Fine too"},
        ]
    )
    assert [r.status for r in results][::3] == ["created", "created"]
    for result in results[1:3]:
        assert result.status in ("skipped", "failed") and result.reasons and result.reasons[0].code
    assert len(companies.query("externalCompanyId", ["ok-1", "ok-2", "bad-field"])) == 2


def test_sales_persons_opportunities_and_roles_with_compound_keys(mk: Marketo) -> None:
    client = mk.client()
    sales = client.crm("salespersons")
    assert sales.sync([{"externalSalesPersonId": "u-1", "email": "owner@example.com"}])[0].status == "created"
    owner = sales.query("externalSalesPersonId", ["u-1"], ["externalSalesPersonId", "email"])
    assert owner[0].values["email"] == "owner@example.com" and owner[0].id

    lead = client.sync_leads([{"email": "buyer@example.com"}])[0]
    opportunities = client.crm("opportunities")
    opp = opportunities.sync([{"externalOpportunityId": "opp-1", "name": "Big deal", "externalCompanyId": "acc-1"}])
    assert opp[0].status == "created" and isinstance(opp[0].id, str)  # marketoGUID

    roles = client.crm("opportunities/roles")
    assert roles.describe().dedupe_fields == ["externalOpportunityId", "leadId", "role"]
    key = {"externalOpportunityId": "opp-1", "leadId": lead.id, "role": "Decision maker"}
    assert roles.sync([{**key, "isPrimary": True}])[0].status == "created"
    found = roles.query_by_keys([key, {**key, "role": "Nobody"}], ["externalOpportunityId", "leadId", "role"])
    assert len(found) == 1 and found[0].values["role"] == "Decision maker" and found[0].id
    assert roles.delete([key])[0].status == "deleted"
    assert roles.query_by_keys([key]) == []


def test_custom_objects(mk: Marketo) -> None:
    mk.control(
        "POST",
        "/schema/customobjects",
        json={
            "name": "subscription_c",
            "displayName": "Subscription",
            "dedupeFields": ["subscriptionId"],
            "fields": [
                {"name": "subscriptionId", "dataType": "string"},
                {"name": "plan", "dataType": "string"},
                {"name": "seats", "dataType": "integer"},
            ],
        },
    )
    client = mk.client()
    assert any(t.get("name") == "subscription_c" for t in client.custom_object_types())
    subscriptions = client.crm("customobjects/subscription_c")
    description = subscriptions.describe()
    assert description.dedupe_fields == ["subscriptionId"] and description.id_field == "marketoGUID"
    results = subscriptions.sync([{"subscriptionId": "s-1", "plan": "Gold", "seats": 5}, {"subscriptionId": "s-2"}])
    assert [r.status for r in results] == ["created", "created"] and all(isinstance(r.id, str) for r in results)
    found = subscriptions.query("subscriptionId", ["s-1"], ["subscriptionId", "plan", "seats"])
    assert found[0].values["plan"] == "Gold" and found[0].id == results[0].id
    bad = subscriptions.sync([{"subscriptionId": "s-3", "seats": "many"}])
    assert bad[0].status in ("skipped", "failed") and bad[0].reasons[0].code
    assert subscriptions.delete([{"marketoGUID": results[1].id}], delete_by="idField")[0].status == "deleted"
    assert subscriptions.query("subscriptionId", ["s-2"]) == []


def test_unknown_objects_are_refused_before_any_call(mk: Marketo) -> None:
    client = mk.client()
    with pytest.raises(ValueError, match="unknown Marketo object"):
        client.crm("accounts")
    with pytest.raises(MarketoError):
        client.crm("customobjects/never_defined_c").describe()
    assert client.calls["token"] <= 1
