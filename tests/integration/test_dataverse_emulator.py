"""The Dataverse emulator over real HTTPS: Entra tokens (unmodified MSAL), bearer checks, reads, paging, change
tracking, writes and the documented errors, each reproduced with raw requests."""

from __future__ import annotations

from pathlib import Path

import jwt
import msal
import pytest

from sync.connectors.http import build_session
from tests.integration.dataverse_emulator_helpers import Dataverse, dataverse_client, error_of

__all__ = ["dataverse_client"]  # the `dv` fixture

# --- Entra ID ----------------------------------------------------------------------------------------------------


def _msal_app(dv: Dataverse, secret: str | None = None) -> msal.ConfidentialClientApplication:
    s = dv.settings
    return msal.ConfidentialClientApplication(
        s["DYNAMICS_CLIENT_ID"],
        client_credential=secret or s["DYNAMICS_CLIENT_SECRET"],
        authority=s["DYNAMICS_AUTHORITY"],
        instance_discovery=False,
        http_client=build_session(Path(dv.running.ca_file)),
    )


def test_unmodified_msal_gets_a_token_that_the_web_api_accepts(dv: Dataverse) -> None:
    result = _msal_app(dv).acquire_token_for_client(scopes=[f"{dv.url}/.default"])
    assert result["token_type"] == "Bearer" and result["expires_in"] > 3000
    response = dv.session.get(dv.api + "WhoAmI", headers={"Authorization": f"Bearer {result['access_token']}"})
    assert response.status_code == 200
    assert response.json()["UserId"] == dv.app("sync")["systemuserid"]
    counts = dv.control("GET", "/requests")["by_operation"]
    assert counts["discovery"] == 1 and counts["token"] == 1 and counts["WhoAmI"] == 1


def test_msal_with_a_bad_secret_gets_the_documented_error(dv: Dataverse) -> None:
    result = _msal_app(dv, secret="not-the-secret").acquire_token_for_client(scopes=[f"{dv.url}/.default"])
    assert "access_token" not in result
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert "not-the-secret" not in str(result)


@pytest.mark.parametrize(
    ("form", "error", "code"),
    [
        ({"client_secret": "wrong"}, "invalid_client", 7000215),
        ({"client_id": "00000000-0000-0000-0000-000000000001"}, "unauthorized_client", 700016),
        ({"grant_type": "password"}, "unsupported_grant_type", 70003),
        ({"scope": "https://elsewhere.crm.dynamics.com/.default"}, "invalid_resource", 500011),
        ({"scope": "user.read"}, "invalid_scope", 1002012),
    ],
)
def test_token_endpoint_errors(dv: Dataverse, form: dict[str, str], error: str, code: int) -> None:
    creds = dv.app("sync")
    data = {
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "grant_type": "client_credentials",
        "scope": f"{dv.url}/.default",
        **form,
    }
    response = dv.session.post(dv.token_url, data=data)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")


def test_unknown_tenant_is_refused_at_discovery(dv: Dataverse) -> None:
    response = dv.session.get(f"{dv.url}/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400 and response.json()["error_codes"] == [90002]


def test_web_api_refuses_missing_foreign_expired_and_revoked_tokens(dv: Dataverse) -> None:
    assert dv.session.get(dv.api + "leads").status_code == 401
    good = dv.token(fresh=True)
    claims = jwt.decode(good, options={"verify_signature": False})
    foreign = jwt.encode(claims, "another-tenant-key-000000000000000000", algorithm="HS256")
    response = dv.session.get(dv.api + "leads", headers={"Authorization": f"Bearer {foreign}"})
    assert response.status_code == 401 and "invalid_token" in response.headers["WWW-Authenticate"]
    other_audience = dv.request_token(dv.settings["DYNAMICS_CLIENT_ID"], dv.settings["DYNAMICS_CLIENT_SECRET"])
    assert other_audience.status_code == 200
    dv.control("POST", "/tokens/lifetime", json={"seconds": 60})
    short = dv.token(fresh=True)
    assert dv.session.get(dv.api + "leads", headers={"Authorization": f"Bearer {short}"}).status_code == 200
    dv.control("POST", "/clock", json={"advance_seconds": 61})
    assert dv.session.get(dv.api + "leads", headers={"Authorization": f"Bearer {short}"}).status_code == 401
    dv.control("POST", "/reset")
    token = dv.token(fresh=True)
    dv.control("POST", "/tokens/revoke", json={"app": "sync"})
    assert dv.session.get(dv.api + "leads", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert dv.get("leads", headers={"Authorization": f"Bearer {dv.token(fresh=True)}"}).status_code == 200


# --- reads -------------------------------------------------------------------------------------------------------


def test_collection_shape_select_and_primary_key_order(dv: Dataverse) -> None:
    ids = dv.seed("lead", 30)
    response = dv.get("leads?$select=firstname,lastname")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert response.headers["OData-Version"] == "4.0"
    body = response.json()
    assert body["@odata.context"] == f"{dv.api}$metadata#leads(firstname,lastname)"
    first = body["value"][0]
    assert set(first) == {"@odata.etag", "firstname", "lastname", "leadid"}
    assert first["@odata.etag"].startswith('W/"')
    assert [r["leadid"] for r in body["value"]] == sorted(ids)


def test_filter_language(dv: Dataverse) -> None:
    account = dv.create("accounts", {"name": "Contoso"})
    a = dv.create(
        "leads",
        {
            "lastname": "O'Bryan",
            "firstname": "Ann",
            "emailaddress1": "ANN@x.example",
            "parentaccountid@odata.bind": f"/accounts({account})",
            "leadsourcecode": 8,
        },
    )
    b = dv.create("leads", {"lastname": "Smith", "firstname": "Bob", "numberofemployees": 50, "new_synctomkto": False})
    c = dv.create("leads", {"lastname": "Jones", "emailaddress1": "c@y.example", "numberofemployees": 500})

    def ids(expression: str) -> set[str]:
        response = dv.get("leads", params={"$select": "leadid", "$filter": expression})
        assert response.status_code == 200, response.text
        return {r["leadid"] for r in response.json()["value"]}

    assert ids("lastname eq 'o''bryan'") == {a}
    assert ids("emailaddress1 eq 'ann@x.example'") == {a}
    assert ids(f"_parentaccountid_value eq {account}") == {a}
    assert ids("numberofemployees gt 10 and not (numberofemployees ge 500)") == {b}
    assert ids("firstname eq null") == {c}
    assert ids("contains(emailaddress1,'.EXAMPLE') and startswith(lastname,'o')") == {a}
    assert ids("endswith(lastname,'s') or leadsourcecode eq 8") == {a, c}
    assert ids("new_synctomkto eq false") == {b}
    assert ids("Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=['smith','JONES'])") == {b, c}
    assert ids("createdon gt 2000-01-01T00:00:00Z and modifiedon le 2999-01-01T00:00:00Z") == {a, b, c}
    assert ids(f"leadid eq {b}") == {b}


@pytest.mark.parametrize(
    ("params", "status", "code", "text"),
    [
        ({"$skip": "1"}, 400, "0x80060888", "The query parameter $skip is not supported"),
        (
            {"$select": "nosuchcolumn"},
            400,
            "0x80060888",
            "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.lead'.",
        ),
        ({"$filter": "statecode eq 0 and"}, 400, "0x80060888", "Syntax error at position"),
        ({"$filter": "lastname eq 'abc"}, 400, "0x80060888", "There is an unterminated string literal"),
        ({"$filter": "lastname eq 5"}, 400, "0x80060888", "A binary operator with incompatible types was detected."),
        ({"$filter": "leadid eq 'x'"}, 400, "0x80060888", "Found operand types 'Edm.Guid' and 'Edm.String'"),
        ({"$filter": "frobnicate(lastname)"}, 400, "0x80060888", "An unknown function with name 'frobnicate'"),
        ({"$orderby": "nosuch desc"}, 400, "0x80060888", "Could not find a property named 'nosuch'"),
    ],
)
def test_query_errors(dv: Dataverse, params: dict[str, str], status: int, code: str, text: str) -> None:
    response = dv.get("leads", params=params)
    got_status, got_code, message = error_of(response)
    assert (got_status, got_code) == (status, code)
    assert message.startswith(text) or text in message


def test_unknown_entity_set_and_missing_record(dv: Dataverse) -> None:
    assert error_of(dv.get("leeds")) == (404, "0x8006088a", "Resource not found for the segment 'leeds'.")
    missing = "00000000-0000-0000-0000-00000000abcd"
    assert error_of(dv.get(f"leads({missing})")) == (
        404,
        "0x80040217",
        f"Entity 'lead' With Id = {missing} Does Not Exist",
    )
    assert error_of(dv.get("leads(not-a-guid)"))[:2] == (400, "0x80060888")


def test_paging_with_maxpagesize_follows_nextlinks_and_ignores_top(dv: Dataverse) -> None:
    ids = dv.seed("contact", 23)
    rows, last, calls = dv.read_all("contacts?$select=lastname&$top=3", prefer="odata.maxpagesize=10")
    assert calls == 3 and [r["contactid"] for r in rows] == sorted(ids)
    assert "@odata.nextLink" not in last and "@odata.deltaLink" not in last
    first = dv.get("contacts?$select=lastname", prefer="odata.maxpagesize=10")
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=10"
    assert "$skiptoken=" in first.json()["@odata.nextLink"]
    top = dv.get("contacts?$select=lastname&$top=3").json()
    assert len(top["value"]) == 3 and "@odata.nextLink" not in top


def test_orderby_and_count(dv: Dataverse) -> None:
    for name, employees in (("b", 5), ("a", 50), ("c", 20)):
        dv.create("accounts", {"name": name, "numberofemployees": employees})
    body = dv.get("accounts?$select=name&$orderby=numberofemployees desc&$count=true").json()
    assert [r["name"] for r in body["value"]] == ["a", "c", "b"] and body["@odata.count"] == 3
    rows, _, calls = dv.read_all("accounts?$select=name&$orderby=name", prefer="odata.maxpagesize=2")
    assert [r["name"] for r in rows] == ["a", "b", "c"] and calls == 2


def test_annotations_and_expand(dv: Dataverse) -> None:
    account = dv.create("accounts", {"name": "Fabrikam"})
    contact = dv.create(
        "contacts",
        {
            "lastname": "Lee",
            "parentcustomerid_account@odata.bind": f"/accounts({account})",
            "preferredcontactmethodcode": 2,
        },
    )
    prefer = 'odata.include-annotations="*"'
    row = dv.get(
        f"contacts({contact})?$select=_parentcustomerid_value,preferredcontactmethodcode,_ownerid_value", prefer=prefer
    ).json()
    assert row["_parentcustomerid_value"] == account
    assert row["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Fabrikam"
    assert row["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert (
        row["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "parentcustomerid_account"
    )
    assert row["preferredcontactmethodcode@OData.Community.Display.V1.FormattedValue"] == "Email"
    assert row["_ownerid_value@OData.Community.Display.V1.FormattedValue"] == "# Marketo Sync"
    listed = dv.get(
        "contacts?$select=_parentcustomerid_value",
        prefer='odata.include-annotations="OData.Community.Display.V1.FormattedValue,'
        'Microsoft.Dynamics.CRM.lookuplogicalname",odata.maxpagesize=10',
    )
    assert "odata.maxpagesize=10" in listed.headers["Preference-Applied"]
    first = listed.json()["value"][0]
    assert first["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Fabrikam"
    assert first["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert "_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty" not in first
    plain = dv.get(f"contacts({contact})?$select=preferredcontactmethodcode").json()
    assert not [k for k in plain if "@OData.Community" in k]
    expanded = dv.get(f"contacts({contact})?$select=lastname&$expand=parentcustomerid_account($select=name)").json()
    assert expanded["parentcustomerid_account"]["name"] == "Fabrikam"


# --- change tracking ---------------------------------------------------------------------------------------------


def test_change_tracking_initial_read_delta_and_deletions(dv: Dataverse) -> None:
    ids = dv.seed("account", 10)
    prefer = "odata.track-changes,odata.maxpagesize=5"
    rows, last, calls = dv.read_all("accounts?$select=name", prefer=prefer)
    assert calls == 2 and len(rows) == 10  # exactly ceil(N / page size) calls
    assert last["@odata.context"].endswith("$metadata#accounts(name)/$delta")
    delta = last["@odata.deltaLink"]
    assert "$deltatoken=" in delta and "%21" in delta
    assert dv.get(delta).json()["value"] == []

    dv.patch(f"accounts({ids[3]})", {"name": "Renamed"})
    created = dv.create("accounts", {"name": "New"})
    dv.delete(f"accounts({ids[5]})")
    temp = dv.create("accounts", {"name": "Temp"})
    dv.delete(f"accounts({temp})")
    page = dv.get(delta).json()
    values = page["value"]
    assert [v.get("accountid") for v in values[:2]] == [ids[3], created]
    assert values[0]["name"] == "Renamed"
    deleted = values[2:]
    assert {d["id"] for d in deleted} == {ids[5], temp}
    assert all(
        d["@odata.context"] == f"{dv.api}$metadata#accounts/$deletedEntity" and d["reason"] == "deleted"
        for d in deleted
    )
    assert dv.get(page["@odata.deltaLink"]).json()["value"] == []


def test_change_tracking_exact_multiple_of_page_size(dv: Dataverse) -> None:
    dv.seed("lead", 10)
    _, last, calls = dv.read_all("leads?$select=lastname", prefer="odata.track-changes,odata.maxpagesize=5")
    assert calls == 2 and "@odata.deltaLink" in last


@pytest.mark.parametrize(
    "option", ["$filter=lastname eq 'x'", "$orderby=lastname", "$top=5", "$expand=parentaccountid($select=name)"]
)
def test_change_tracking_rejects_query_options(dv: Dataverse, option: str) -> None:
    name = option.split("=")[0]
    response = dv.get(f"leads?$select=lastname&{option}", prefer="odata.track-changes")
    status, _, message = error_of(response)
    assert status == 400
    assert message == f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.'


def test_expired_delta_token_answers_version_stamp_expired(dv: Dataverse) -> None:
    dv.seed("lead", 2)
    _, last, _ = dv.read_all("leads?$select=lastname", prefer="odata.track-changes")
    delta = last["@odata.deltaLink"]
    dv.control("POST", "/change-tracking", json={"expiry_seconds": 3600})
    dv.control("POST", "/clock", json={"advance_seconds": 3601})
    dv.token(fresh=True)
    status, code, message = error_of(dv.get(delta))
    assert (status, code) == (400, "0x80044352")
    assert message == "Version stamp associated with the client has expired. Please perform a full sync."


def test_change_tracking_turned_off_by_an_admin(dv: Dataverse) -> None:
    _, last, _ = dv.read_all("contacts?$select=lastname", prefer="odata.track-changes")
    dv.control("PATCH", "/schema/contact", json={"change_tracking": False})
    assert dv.get(last["@odata.deltaLink"]).status_code == 400
    metadata = dv.get("EntityDefinitions(LogicalName='contact')?$select=ChangeTrackingEnabled").json()
    assert metadata["ChangeTrackingEnabled"] is False


# --- writes ------------------------------------------------------------------------------------------------------


def test_create_update_delete_and_server_maintained_columns(dv: Dataverse) -> None:
    response = dv.post("leads", {"firstname": "Ann", "lastname": "Lee"}, prefer="return=representation")
    assert response.status_code == 201 and response.headers["Preference-Applied"] == "return=representation"
    row = response.json()
    lead_id = row["leadid"]
    assert response.headers["OData-EntityId"] == f"{dv.api}leads({lead_id})"
    assert row["fullname"] == "Ann Lee" and row["statecode"] == 0 and row["statuscode"] == 1
    assert row["new_synctomkto"] is True and row["versionnumber"] > 0
    assert row["_modifiedby_value"] == dv.app("sync")["systemuserid"]
    assert row["createdon"].endswith("Z") and len(row["createdon"]) == 20

    assert dv.patch(f"leads({lead_id})", {"jobtitle": "CTO"}).status_code == 204
    stored = dv.record("lead", lead_id)
    assert stored["jobtitle"] == "CTO" and stored["versionnumber"] > row["versionnumber"]

    assert dv.patch(f"leads({lead_id})", {"jobtitle": "CEO"}, app="salesperson").status_code == 204
    assert dv.record("lead", lead_id)["_modifiedby_value"] == dv.app("salesperson")["systemuserid"]

    assert dv.delete(f"leads({lead_id})").status_code == 204
    assert dv.delete(f"leads({lead_id})").status_code == 404
    log = dv.control("GET", "/requests?client=sync")
    assert log["by_table_operation"]["Create:lead"] == 1 and log["by_table_operation"]["Delete:lead"] == 2
    assert log["by_table_operation"]["Upsert:lead"] == 1  # the salesperson's PATCH is not the sync's


def test_upsert_by_alternate_key_and_conditional_headers(dv: Dataverse) -> None:
    url = "contacts(new_marketopersonid='1001')"
    created = dv.patch(url, {"lastname": "Kim"}, prefer="return=representation")
    assert created.status_code == 201 and created.json()["new_marketopersonid"] == "1001"
    updated = dv.patch(url, {"firstname": "Jo"}, prefer="return=representation")
    assert updated.status_code == 200 and updated.json()["contactid"] == created.json()["contactid"]
    assert dv.patch(url, {"firstname": "X"}).status_code == 204

    blocked = dv.patch(url, {"firstname": "Y"}, headers={"If-None-Match": "*"})
    assert error_of(blocked) == (412, "0x80040237", "A record with matching key values already exists.")
    missing = dv.patch("contacts(new_marketopersonid='nope')", {"firstname": "Y"}, headers={"If-Match": "*"})
    assert missing.status_code == 404
    stale = dv.patch(url, {"firstname": "Z"}, headers={"If-Match": 'W/"1"'})
    mismatch = "The version of the existing record doesn't match the RowVersion property provided."
    assert error_of(stale) == (412, "0x80060882", mismatch)
    etag = dv.get(url + "?$select=firstname").json()["@odata.etag"]
    assert dv.patch(url, {"firstname": "Z"}, headers={"If-Match": etag}).status_code == 204
    assert dv.get(url, headers={"If-None-Match": dv.get(url).json()["@odata.etag"]}).status_code == 304

    bad_key = dv.patch("leads(emailaddress1='a@b.example')", {"lastname": "Q"})
    status, _, message = error_of(bad_key)
    assert status == 400 and message.startswith("The key in the request URI is not valid for resource")


def test_duplicate_alternate_key_and_primary_key(dv: Dataverse) -> None:
    dv.create("leads", {"lastname": "A", "new_marketopersonid": "7"})
    assert error_of(dv.post("leads", {"lastname": "B", "new_marketopersonid": "7"}))[:2] == (412, "0x80040237")
    lead = dv.create("leads", {"lastname": "C"})
    assert error_of(dv.post("leads", {"leadid": lead, "lastname": "D"}))[:2] == (412, "0x80040237")


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        (
            {"lastname": "x" * 51},
            400,
            "0x80044331",
            "A validation error occurred.  The length of the 'lastname' attribute of the 'lead' entity exceeded the "
            "maximum allowed length of '50'.",
        ),
        ({"lastname": "😀" * 26}, 400, "0x80044331", "maximum allowed length of '50'"),  # 52 UTF-16 units
        ({"lastname": "Lee\x00"}, 400, "0x80040203", "hexadecimal value 0x00, is an invalid character"),
        ({"lastname": "Lee\x1b"}, 400, "0x80040203", "hexadecimal value 0x1B, is an invalid character"),
        ({"lastname": "x", "nosuch": 1}, 400, "0x80048d19", "The property 'nosuch' does not exist on type"),
        ({"lastname": "x", "numberofemployees": "many"}, 400, "0x80048d19", "Cannot convert the literal 'many'"),
        ({"lastname": "x", "leadsourcecode": 99}, 400, "0x8004431a", "is outside the valid range"),
        (
            {"lastname": "x", "_parentaccountid_value": "00000000-0000-0000-0000-000000000001"},
            400,
            "0x80060888",
            "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.",
        ),
        (
            {"lastname": "x", "parentaccountid@odata.bind": "/accounts(00000000-0000-0000-0000-000000000001)"},
            404,
            "0x80040217",
            "Does Not Exist",
        ),
        (
            {"lastname": "x", "parentcustomerid@odata.bind": "/accounts(00000000-0000-0000-0000-000000000001)"},
            400,
            "0x80048d19",
            "An undeclared property 'parentcustomerid'",
        ),
    ],
)
def test_write_errors(dv: Dataverse, body: dict[str, object], status: int, code: str, text: str) -> None:
    got_status, got_code, message = error_of(dv.post("leads", body))
    assert (got_status, got_code) == (status, code)
    assert text in message
    assert dv.control("GET", "/records/lead")["count"] == 0


def test_required_column_and_lead_state_rules(dv: Dataverse) -> None:
    status, _, message = error_of(dv.post("new_products", {"new_sku": "S1"}))
    assert status == 400 and "'new_name'" in message
    assert error_of(dv.post("leads", {"lastname": "x", "statecode": 1}))[0] == 400
    lead = dv.create("leads", {"lastname": "Open"})
    assert dv.patch(f"leads({lead})", {"statuscode": 4}).status_code == 204  # disqualify: statecode follows
    assert dv.record("lead", lead)["statecode"] == 2
    assert error_of(dv.patch(f"leads({lead})", {"jobtitle": "x"}))[0] == 400  # closed leads are read-only
    assert dv.patch(f"leads({lead})", {"statecode": 0, "statuscode": 2}).status_code == 204
    assert error_of(dv.patch(f"leads({lead})", {"statecode": 0, "statuscode": 3}))[0] == 400


# --- bulk messages -----------------------------------------------------------------------------------------------


def test_create_update_upsert_multiple(dv: Dataverse) -> None:
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.lead", "lastname": f"L{i}"} for i in range(3)]
    response = dv.post("leads/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets})
    assert response.status_code == 200
    ids = response.json()["Ids"]
    assert len(ids) == 3 and dv.control("GET", "/records/lead")["count"] == 3

    updates = [{"@odata.type": "Microsoft.Dynamics.CRM.lead", "leadid": i, "jobtitle": "T"} for i in ids]
    assert dv.post("leads/Microsoft.Dynamics.CRM.UpdateMultiple", {"Targets": updates}).status_code == 204
    assert all(dv.record("lead", i)["jobtitle"] == "T" for i in ids)

    upserts = [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.lead",
            "@odata.id": f"leads(new_marketopersonid='{n}')",
            "lastname": f"M{n}",
        }
        for n in (1, 2)
    ]
    upserts.append({"@odata.type": "Microsoft.Dynamics.CRM.lead", "leadid": ids[0], "lastname": "Changed"})
    response = dv.post("leads/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": upserts})
    assert response.status_code == 200
    assert [r["RecordCreated"] for r in response.json()["Results"]] == [True, True, False]
    assert dv.record("lead", ids[0])["lastname"] == "Changed"
    assert dv.control("GET", "/records/lead")["count"] == 5


def test_bulk_messages_are_all_or_nothing(dv: Dataverse) -> None:
    existing = dv.create("contacts", {"lastname": "Keep", "new_marketopersonid": "1"})
    targets = [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.contact",
            "@odata.id": "contacts(new_marketopersonid='1')",
            "lastname": "Changed",
        },
        {
            "@odata.type": "Microsoft.Dynamics.CRM.contact",
            "@odata.id": "contacts(new_marketopersonid='2')",
            "lastname": "y" * 60,
        },
    ]
    status, code, _ = error_of(dv.post("contacts/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": targets}))
    assert (status, code) == (400, "0x80044331")
    assert dv.record("contact", existing)["lastname"] == "Keep"
    assert dv.control("GET", "/records/contact")["count"] == 1
    _, last, _ = dv.read_all("contacts?$select=lastname", prefer="odata.track-changes")
    assert len(last["value"]) == 1


# --- service protection and faults -------------------------------------------------------------------------------


def test_request_limit_answers_429_with_retry_after(dv: Dataverse) -> None:
    dv.control("POST", "/limits", json={"enabled": True, "requests": 3, "window_seconds": 300})
    for _ in range(3):
        assert dv.get("leads?$select=lastname").status_code == 200
    response = dv.get("leads?$select=lastname")
    limit = "Number of requests exceeded the limit of 3 over time window of 300 seconds."
    assert error_of(response) == (429, "0x80072322", limit)
    assert int(response.headers["Retry-After"]) > 0
    assert dv.get("leads?$select=lastname", app="salesperson").status_code == 200  # limits are per user


def test_queued_faults_and_dropped_connections(dv: Dataverse) -> None:
    dv.control("POST", "/faults", json={"queue": [{"status": 429, "retry_after": 7}, {"status": 503}, {"drop": True}]})
    first = dv.get("leads")
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert dv.get("leads").status_code == 503
    with pytest.raises(Exception) as dropped:  # requests raises ChunkedEncodingError or ConnectionError
        dv.get("leads")
    assert "Connection" in type(dropped.value).__name__ or "Chunked" in type(dropped.value).__name__
    assert dv.get("leads").status_code == 200


def test_seeding_a_large_table_pages_in_exact_calls(dv: Dataverse) -> None:
    result = dv.control("POST", "/seed", json={"table": "lead", "count": 20000})
    assert result["count"] == 20000 and dv.control("GET", "/records/lead")["count"] == 20000
    _, last, calls = dv.read_all("leads?$select=lastname,emailaddress1", prefer="odata.track-changes")
    assert calls == 4 and "@odata.deltaLink" in last
