"""The Dataverse emulator's larger messages and controls: $batch, QualifyLead, metadata, certificate auth, schema
changes by an admin, service protection limits, another user's changes, and `python -m emulators` itself."""

from __future__ import annotations

import binascii
import hashlib
import threading
import uuid
from pathlib import Path

import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sync.connectors.http import build_session
from tests.emulated import start_emulators
from tests.integration.dataverse_emulator_helpers import Dataverse, dataverse_client, error_of

__all__ = ["dataverse_client"]  # the `dv` fixture


def _batch(dv: Dataverse, body: str, boundary: str, prefer: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    response = dv.call("POST", "$batch", data=body.replace("\n", "\r\n").encode(), headers=headers, prefer=prefer)
    return response.status_code, response.text


def test_batch_with_a_changeset_and_content_id_references(dv: Dataverse) -> None:
    body = """--batch_1
Content-Type: multipart/mixed; boundary=changeset_1

--changeset_1
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST /api/data/v9.2/accounts HTTP/1.1
Content-Type: application/json

{"name": "Batch Account"}
--changeset_1
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

POST /api/data/v9.2/contacts HTTP/1.1
Content-Type: application/json

{"lastname": "Batch", "parentcustomerid_account@odata.bind": "$1"}
--changeset_1
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

PATCH $2 HTTP/1.1
Content-Type: application/json

{"jobtitle": "Buyer"}
--changeset_1--
--batch_1
Content-Type: application/http
Content-Transfer-Encoding: binary

GET /api/data/v9.2/contacts?$select=lastname,jobtitle,_parentcustomerid_value HTTP/1.1


--batch_1--
"""
    status, text = _batch(dv, body, "batch_1")
    assert status == 200, text
    assert text.count("HTTP/1.1 204 No Content") == 3 and "HTTP/1.1 200 OK" in text
    assert "Content-ID: 1" in text and "--changesetresponse_" in text
    contacts = dv.get("contacts?$select=lastname,jobtitle,_parentcustomerid_value").json()["value"]
    accounts = dv.get("accounts?$select=name").json()["value"]
    assert len(contacts) == 1 and contacts[0]["jobtitle"] == "Buyer"
    assert contacts[0]["_parentcustomerid_value"] == accounts[0]["accountid"]
    assert f'"accountid":"{accounts[0]["accountid"]}"' not in text  # the GET returned contacts
    assert contacts[0]["contactid"] in text


def test_a_failing_changeset_rolls_back_and_stops_the_batch(dv: Dataverse) -> None:
    body = """--batch_2
Content-Type: multipart/mixed; boundary=changeset_2

--changeset_2
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST leads HTTP/1.1
Content-Type: application/json

{"lastname": "Kept only if all succeed"}
--changeset_2
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

POST leads HTTP/1.1
Content-Type: application/json

{"lastname": "%s"}
--changeset_2--
--batch_2
Content-Type: application/http
Content-Transfer-Encoding: binary

POST leads HTTP/1.1
Content-Type: application/json

{"lastname": "after the failure"}
--batch_2--
""" % ("x" * 80)
    status, text = _batch(dv, body, "batch_2")
    assert status == 400
    assert '"code":"0x80044331"' in text and "exceeded the maximum allowed length of '50'" in text
    assert dv.control("GET", "/records/lead")["count"] == 0

    status, text = _batch(dv, body, "batch_2", prefer="odata.continue-on-error")
    assert status == 200 and '"code":"0x80044331"' in text
    leads = dv.get("leads?$select=lastname").json()["value"]
    assert [lead["lastname"] for lead in leads] == ["after the failure"]


def test_batch_continue_on_error_reports_each_part(dv: Dataverse) -> None:
    missing = uuid.uuid4()
    parts = []
    for line in (f"PATCH leads({missing}) HTTP/1.1", "POST leads HTTP/1.1"):
        parts.append(
            "--b\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n\n"
            f"{line}\nContent-Type: application/json\nIf-Match: *\n\n" + '{"lastname": "z"}\n'
        )
    status, text = _batch(dv, "".join(parts) + "--b--\n", "b", prefer="odata.continue-on-error")
    assert status == 200 and "HTTP/1.1 404 Not Found" in text and "HTTP/1.1 204 No Content" in text
    assert dv.control("GET", "/records/lead")["count"] == 1


def test_qualify_lead_creates_account_contact_and_closes_the_lead(dv: Dataverse) -> None:
    lead = dv.create("leads", {"firstname": "Quinn", "lastname": "Lead", "companyname": "Qualified Co",
                               "emailaddress1": "q@example.com", "subject": "Big deal"})  # fmt: skip
    params = {"CreateAccount": True, "CreateContact": True, "CreateOpportunity": True, "Status": 3}
    response = dv.post(f"leads({lead})/Microsoft.Dynamics.CRM.QualifyLead", params)
    assert response.status_code == 200, response.text
    created = {item["@odata.type"]: item for item in response.json()["value"]}
    account = created["#Microsoft.Dynamics.CRM.account"]["accountid"]
    contact = created["#Microsoft.Dynamics.CRM.contact"]["contactid"]
    opportunity = created["#Microsoft.Dynamics.CRM.opportunity"]["opportunityid"]
    assert dv.record("account", account)["_originatingleadid_value"] == lead
    stored_contact = dv.record("contact", contact)
    assert stored_contact["_originatingleadid_value"] == lead and stored_contact["emailaddress1"] == "q@example.com"
    assert stored_contact["_parentcustomerid_value"] == account
    assert dv.record("opportunity", opportunity)["_customerid_value"] == account
    stored_lead = dv.record("lead", lead)
    assert (stored_lead["statecode"], stored_lead["statuscode"]) == (1, 3)
    assert stored_lead["_qualifyingopportunityid_value"] == opportunity
    assert dv.post(f"leads({lead})/Microsoft.Dynamics.CRM.QualifyLead", params).status_code == 400
    assert dv.control("GET", "/records/contact")["count"] == 1


# --- metadata ----------------------------------------------------------------------------------------------------


def test_entity_definitions(dv: Dataverse) -> None:
    product = dv.get("EntityDefinitions(LogicalName='new_product')?$select=EntitySetName,PrimaryIdAttribute").json()
    assert product["EntitySetName"] == "new_products" and product["PrimaryIdAttribute"] == "new_productid"
    assert product["@odata.context"].endswith("$metadata#EntityDefinitions(EntitySetName,PrimaryIdAttribute)/$entity")
    tracked = dv.get("EntityDefinitions?$select=LogicalName&$filter=ChangeTrackingEnabled eq true").json()["value"]
    assert {"lead", "contact", "account", "new_product"} <= {t["LogicalName"] for t in tracked}
    by_id = dv.get(f"EntityDefinitions({product['MetadataId']})?$select=LogicalName").json()
    assert by_id["LogicalName"] == "new_product"
    missing = dv.get("EntityDefinitions(LogicalName='nosuch')")
    assert missing.status_code == 404


def test_attributes_option_sets_and_keys(dv: Dataverse) -> None:
    path = "EntityDefinitions(LogicalName='lead')/Attributes"
    picklists = dv.get(f"{path}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet")
    source = next(a for a in picklists.json()["value"] if a["LogicalName"] == "leadsourcecode")
    labels = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in source["OptionSet"]["Options"]}
    assert labels[8] == "Web" and labels[1] == "Advertisement"
    strings = dv.get(f"{path}/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength").json()
    lengths = {a["LogicalName"]: a["MaxLength"] for a in strings["value"]}
    assert lengths["lastname"] == 50 and lengths["new_marketopersonid"] == 100
    assert error_of(dv.get(f"{path}?$select=LogicalName,MaxLength"))[:2] == (400, "0x80060888")
    one = dv.get(f"{path}(LogicalName='new_synctomkto')?$select=LogicalName,AttributeType,RequiredLevel").json()
    assert one["AttributeType"] == "Boolean" and one["RequiredLevel"]["Value"] == "None"
    keys = dv.get("EntityDefinitions(LogicalName='contact')/Keys").json()["value"]
    assert keys[0]["KeyAttributes"] == ["new_marketopersonid"] and keys[0]["EntityKeyIndexStatus"] == "Active"
    assert dv.get("EntityDefinitions(LogicalName='account')/Keys").json()["value"] == []


def test_schema_changes_by_an_admin(dv: Dataverse) -> None:
    before = dv.create("contacts", {"lastname": "Before"})
    dv.control("POST", "/schema/contact/columns", json={"name": "new_tier", "type": "String", "max_length": 10})
    after = dv.create("contacts", {"lastname": "After", "new_tier": "gold"})
    rows = {r["contactid"]: r for r in dv.get("contacts?$select=new_tier").json()["value"]}
    assert rows[before]["new_tier"] is None and rows[after]["new_tier"] == "gold"
    attributes = dv.get("EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName").json()["value"]
    assert "new_tier" in {a["LogicalName"] for a in attributes}
    assert error_of(dv.post("contacts", {"lastname": "x", "new_tier": "x" * 11}))[1] == "0x80044331"

    dv.control("DELETE", "/schema/contact/columns/new_tier")
    assert error_of(dv.get("contacts?$select=new_tier"))[:2] == (400, "0x80060888")
    assert "new_tier" not in dv.get(f"contacts({after})").json()

    dv.control("PATCH", "/schema/contact/columns/jobtitle", json={"required": "SystemRequired"})
    status, _, message = error_of(dv.post("contacts", {"lastname": "No title"}))
    assert status == 400 and "'jobtitle'" in message


# --- auth variants and other users -------------------------------------------------------------------------------


def test_certificate_credentials_with_unmodified_msal(dv: Dataverse) -> None:
    pem = dv.app("sync")["certificate_pem"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    thumbprint = binascii.hexlify(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest()).decode()
    app = msal.ConfidentialClientApplication(
        dv.settings["DYNAMICS_CLIENT_ID"],
        client_credential={"private_key": pem, "thumbprint": thumbprint},
        authority=dv.settings["DYNAMICS_AUTHORITY"],
        instance_discovery=False,
        http_client=build_session(Path(dv.running.ca_file)),
    )
    result = app.acquire_token_for_client(scopes=[f"{dv.url}/.default"])
    assert "access_token" in result, result
    who = dv.session.get(dv.api + "WhoAmI", headers={"Authorization": f"Bearer {result['access_token']}"})
    assert who.json()["UserId"] == dv.app("sync")["systemuserid"]

    other = dv.app("salesperson")["certificate_pem"]  # a certificate registered on another app
    wrong = msal.ConfidentialClientApplication(
        dv.settings["DYNAMICS_CLIENT_ID"],
        client_credential={"private_key": other, "thumbprint": thumbprint},
        authority=dv.settings["DYNAMICS_AUTHORITY"],
        instance_discovery=False,
        http_client=build_session(Path(dv.running.ca_file)),
    ).acquire_token_for_client(scopes=[f"{dv.url}/.default"])
    assert wrong.get("error") == "invalid_client"


def test_changes_by_a_salesperson_are_theirs_and_not_counted_as_the_syncs(dv: Dataverse) -> None:
    lead = dv.create("leads", {"lastname": "Shared"})
    _, last, _ = dv.read_all("leads?$select=lastname,_modifiedby_value", prefer="odata.track-changes")
    dv.control("DELETE", "/requests")
    assert dv.patch(f"leads({lead})", {"lastname": "Edited by sales"}, app="salesperson").status_code == 204
    changed = dv.get(last["@odata.deltaLink"]).json()["value"]
    assert changed[0]["_modifiedby_value"] == dv.app("salesperson")["systemuserid"]
    assert changed[0]["_modifiedby_value"] != dv.app("sync")["systemuserid"]
    sync_calls = dv.control("GET", "/requests?client=sync")
    sales_calls = dv.control("GET", "/requests?client=salesperson")
    assert sync_calls["by_operation"] == {"RetrieveEntityChanges": 1}
    assert sales_calls["by_operation"].get("Upsert") == 1


# --- service protection ------------------------------------------------------------------------------------------


def test_concurrency_and_execution_time_limits(dv: Dataverse) -> None:
    dv.control("POST", "/limits", json={"enabled": True, "concurrent": 2})
    dv.control("POST", "/faults", json={"latency_ms": 800})
    statuses: list[int] = []
    bodies: list[str] = []
    dv.token()  # fetched once, before the threads share it
    start = threading.Barrier(4)

    def call() -> None:
        start.wait()
        response = dv.get("leads?$select=lastname")
        statuses.append(response.status_code)
        bodies.append(response.text)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(429) >= 1 and statuses.count(200) >= 2
    assert any('"0x80072326"' in body for body in bodies)

    dv.control("DELETE", "/faults")
    dv.control("POST", "/limits", json={"enabled": True, "concurrent": 52, "execution_ms": 1})
    dv.control("POST", "/faults", json={"latency_ms": 20})
    assert dv.get("leads").status_code == 200
    response = dv.get("leads")
    assert error_of(response)[:2] == (429, "0x80072321") and int(response.headers["Retry-After"]) >= 1


def test_delta_pages_when_many_rows_changed(dv: Dataverse) -> None:
    ids = dv.seed("account", 7)
    _, last, _ = dv.read_all("accounts?$select=name", prefer="odata.track-changes")
    for record_id in ids[:5]:
        dv.patch(f"accounts({record_id})", {"name": "changed"})
    for record_id in ids[5:]:
        dv.delete(f"accounts({record_id})")
    rows, final, calls = dv.read_all(last["@odata.deltaLink"], prefer="odata.track-changes,odata.maxpagesize=3")
    assert calls == 3
    assert [r["accountid"] for r in rows[:5]] == ids[:5]
    assert {r["id"] for r in rows[5:]} == set(ids[5:])
    assert "@odata.deltaLink" in final


# --- the command ---------------------------------------------------------------------------------------------------


def test_command_with_demo_records_realistic_profile_and_faults(tmp_path: Path) -> None:
    running = start_emulators("--only", "dataverse", "--profile", "realistic", "--demo-records", "3",
                              "--faults", "dataverse:latency_ms=1,dataverse:token_lifetime=120,marketo:606=0.5",
                              directory=tmp_path)  # fmt: skip
    try:
        client = Dataverse(running)
        text = running.env_file.read_text()
        for name in ("DYNAMICS_URL", "DYNAMICS_TENANT_ID", "DYNAMICS_CLIENT_ID", "DYNAMICS_CLIENT_SECRET",
                     "DYNAMICS_AUTHORITY", "SYNC_CA_BUNDLE"):  # fmt: skip
            assert f"{name}=" in text
        token = client.request_token(running.settings["DYNAMICS_CLIENT_ID"], running.settings["DYNAMICS_CLIENT_SECRET"])
        assert token.json()["expires_in"] == 120
        response = client.get("leads?$select=lastname")
        assert len(response.json()["value"]) == 3
        assert "x-ms-ratelimit-burst-remaining-xrm-requests" in response.headers
        assert client.control("GET", "/limits")["requests"] == 6000
    finally:
        running.stop()


def test_bad_fault_spec_fails_at_start_naming_the_item(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="dataverse:bogus=1"):
        start_emulators("--only", "dataverse", "--faults", "dataverse:bogus=1", directory=tmp_path, timeout=30)


def test_connections_get_their_reciprocal_and_teammemberships_are_read_only(dv: Dataverse) -> None:
    opportunity = dv.create("opportunities", {"name": "Deal"})
    contact = dv.create("contacts", {"lastname": "Stakeholder"})
    role = dv.get("connectionroles?$select=name&$filter=name eq 'Stakeholder'").json()["value"][0]["connectionroleid"]
    connection = dv.create("connections", {"record1id_opportunity@odata.bind": f"/opportunities({opportunity})",
                                           "record2id_contact@odata.bind": f"/contacts({contact})",
                                           "record2roleid@odata.bind": f"/connectionroles({role})"})  # fmt: skip
    rows = dv.get(
        "connections?$select=_record1id_value,_record2id_value,_record2roleid_value,ismaster,_relatedconnectionid_value",
        prefer='odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"',
    ).json()["value"]
    assert len(rows) == 2
    master = next(r for r in rows if r["connectionid"] == connection)
    reverse = next(r for r in rows if r["connectionid"] != connection)
    assert master["ismaster"] is True and reverse["ismaster"] is False
    assert (reverse["_record1id_value"], reverse["_record2id_value"]) == (contact, opportunity)
    assert reverse["_record1id_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    assert (
        reverse["_relatedconnectionid_value"] == connection
        and master["_relatedconnectionid_value"] == reverse["connectionid"]
    )

    members = dv.get("teammemberships").json()["value"]
    assert dv.app("sync")["systemuserid"] in {m["systemuserid"] for m in members}
    assert dv.post("teammemberships", {"teamid": members[0]["teamid"]}).status_code == 400


def test_metadata_document_and_older_versions(dv: Dataverse) -> None:
    document = dv.get("$metadata", headers={"Accept": "application/xml"})
    assert document.status_code == 200 and document.headers["Content-Type"] == "application/xml"
    assert '<EntitySet Name="new_products" EntityType="Microsoft.Dynamics.CRM.new_product">' in document.text
    assert '<NavigationProperty Name="new_AccountId" Type="mscrm.account"/>' in document.text
    older = dv.get(f"{dv.url}/api/data/v9.1/leads?$select=lastname").json()
    assert older["@odata.context"].startswith(f"{dv.url}/api/data/v9.1/$metadata#leads")
    assert error_of(dv.get("leads?$apply=groupby((lastname))"))[:2] == (400, "0x80060888")


def test_certificate_credentials_with_sha256_thumbprint(dv: Dataverse) -> None:
    pem = dv.app("sync")["certificate_pem"]
    cert_pem = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    app = msal.ConfidentialClientApplication(
        dv.settings["DYNAMICS_CLIENT_ID"],
        client_credential={"private_key": pem, "public_certificate": cert_pem},  # MSAL signs PS256 with x5t#S256
        authority=dv.settings["DYNAMICS_AUTHORITY"],
        instance_discovery=False,
        http_client=build_session(Path(dv.running.ca_file)),
    )
    assert "access_token" in app.acquire_token_for_client(scopes=[f"{dv.url}/.default"])
