"""The Dataverse emulator for the one-way entity streams: change tracking on every synced table, lookup annotations
on polymorphic lookups (plain and change-tracking reads), owner assignment to users and teams, and seeding users,
teams, accounts and persons linked to them."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.integration.dataverse_emulator_helpers import Dataverse, dataverse_client, error_of

__all__ = ["dataverse_client"]  # the `dv` fixture

TRACK = 'odata.track-changes,odata.maxpagesize=2,odata.include-annotations="*"'
LOOKUP = "@Microsoft.Dynamics.CRM.lookuplogicalname"
NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
LABEL = "@OData.Community.Display.V1.FormattedValue"


def _user(dv: Dataverse, first: str, **extra: Any) -> str:
    body = {"firstname": first, "lastname": "Owner", "domainname": f"{first.lower()}@contoso.example", **extra}
    return dv.create("systemusers", {"internalemailaddress": f"{first.lower()}@contoso.example", **body})


def _team(dv: Dataverse, name: str, teamtype: int = 0) -> str:
    return dv.create("teams", {"name": name, "teamtype": teamtype, "emailaddress": f"{name.lower()}@contoso.example"})


def _bodies(dv: Dataverse) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """Per table: entity set, a create body and an update body."""
    account = dv.create("accounts", {"name": "Parent"})
    contact = dv.create("contacts", {"lastname": "Stakeholder"})
    opportunity = dv.create("opportunities", {"name": "Deal", "customerid_account@odata.bind": f"/accounts({account})"})
    return {
        "systemuser": ("systemusers", {"firstname": "Ann", "domainname": "ann@contoso.example"}, {"title": "VP"}),
        "team": ("teams", {"name": "Field", "teamtype": 0}, {"emailaddress": "field@contoso.example"}),
        "account": ("accounts", {"name": "Contoso"}, {"websiteurl": "https://contoso.example"}),
        "opportunity": (
            "opportunities",
            {"name": "Renewal", "customerid_account@odata.bind": f"/accounts({account})"},
            {"estimatedvalue": 5000},
        ),
        "connection": (
            "connections",
            {
                "record1id_opportunity@odata.bind": f"/opportunities({opportunity})",
                "record2id_contact@odata.bind": f"/contacts({contact})",
            },
            {"description": "decision maker"},
        ),
        "new_product": ("new_products", {"new_name": "Widget"}, {"new_sku": "W-1"}),
    }


@pytest.mark.parametrize("table", ["systemuser", "team", "account", "opportunity", "connection", "new_product"])
def test_change_tracking_on_every_synced_table(dv: Dataverse, table: str) -> None:
    entity_set, create, update = _bodies(dv)[table]
    metadata = dv.get(f"EntityDefinitions(LogicalName='{table}')?$select=ChangeTrackingEnabled").json()
    assert metadata["ChangeTrackingEnabled"] is True
    kept, gone = dv.create(entity_set, create), dv.create(entity_set, create)
    primary = f"{table}id"
    rows, last, _ = dv.read_all(f"{entity_set}?$select={primary}", TRACK)
    assert {kept, gone} <= {row[primary] for row in rows} and "@odata.deltaLink" in last

    assert dv.patch(f"{entity_set}({kept})", update).status_code == 204
    assert dv.delete(f"{entity_set}({gone})").status_code == 204
    changes, _, _ = dv.read_all(last["@odata.deltaLink"], TRACK)
    updated = [row for row in changes if primary in row]
    deleted = [row["id"] for row in changes if row.get("@odata.context", "").endswith("/$deletedEntity")]
    assert [row[primary] for row in updated] == [kept]
    assert gone in deleted
    if table == "connection":  # the reciprocal row goes with its connection, and shows as deleted too
        assert len(deleted) == 2


def test_polymorphic_lookups_carry_their_table_in_plain_and_change_tracking_reads(dv: Dataverse) -> None:
    team = _team(dv, "Enterprise")
    account = dv.create("accounts", {"name": "Contoso", "ownerid@odata.bind": f"/teams({team})"})
    contact = dv.create("contacts", {"lastname": "Ada", "parentcustomerid_account@odata.bind": f"/accounts({account})"})
    select = "$select=lastname,_parentcustomerid_value,_ownerid_value,_owninguser_value,_owningteam_value"
    caller = dv.app("sync")["systemuserid"]

    def check(row: dict[str, Any]) -> None:
        assert row["_parentcustomerid_value"] == account
        assert row[f"_parentcustomerid_value{LOOKUP}"] == "account"
        assert row[f"_parentcustomerid_value{NAV}"] == "parentcustomerid_account"
        assert row[f"_parentcustomerid_value{LABEL}"] == "Contoso"
        assert row["_ownerid_value"] == caller and row[f"_ownerid_value{LOOKUP}"] == "systemuser"
        assert row[f"_ownerid_value{NAV}"] == "ownerid"
        assert row["_owninguser_value"] == caller and row["_owningteam_value"] is None

    plain = dv.get(f"contacts({contact})?{select}", prefer='odata.include-annotations="*"').json()
    check(plain)
    rows, last, _ = dv.read_all(f"contacts?{select}", TRACK)
    check(next(row for row in rows if row["contactid"] == contact))

    dv.patch(f"contacts({contact})", {"ownerid@odata.bind": f"/teams({team})"})
    changes, _, _ = dv.read_all(last["@odata.deltaLink"], TRACK)
    [changed] = changes
    assert changed["_ownerid_value"] == team and changed[f"_ownerid_value{LOOKUP}"] == "team"
    assert changed[f"_ownerid_value{LABEL}"] == "Enterprise"
    assert changed["_owningteam_value"] == team and changed["_owninguser_value"] is None

    # A list naming one annotation gets only that one.
    only = dv.get(f"accounts({account})?$select=_ownerid_value", prefer=f'odata.include-annotations="{LOOKUP[1:]}"')
    assert only.json()[f"_ownerid_value{LOOKUP}"] == "team"
    assert f"_ownerid_value{LABEL}" not in only.json() and f"_ownerid_value{NAV}" not in only.json()
    # Without the preference there are no annotations at all.
    bare = dv.get(f"accounts({account})?$select=_ownerid_value").json()
    assert not [key for key in bare if "@" in key and not key.startswith("@odata")]


def test_connection_and_opportunity_customer_lookups_name_their_table(dv: Dataverse) -> None:
    contact = dv.create("contacts", {"lastname": "Buyer"})
    opportunity = dv.create("opportunities", {"name": "Deal", "customerid_contact@odata.bind": f"/contacts({contact})"})
    dv.create(
        "connections",
        {
            "record1id_opportunity@odata.bind": f"/opportunities({opportunity})",
            "record2id_contact@odata.bind": f"/contacts({contact})",
        },
    )
    deal = dv.get(f"opportunities({opportunity})?$select=_customerid_value", prefer='odata.include-annotations="*"')
    assert deal.json()[f"_customerid_value{LOOKUP}"] == "contact"
    assert deal.json()[f"_customerid_value{NAV}"] == "customerid_contact"
    rows, _, _ = dv.read_all("connections?$select=_record1id_value,_record2id_value,ismaster", TRACK)
    master = next(row for row in rows if row["ismaster"])
    reverse = next(row for row in rows if not row["ismaster"])
    assert master[f"_record1id_value{LOOKUP}"] == "opportunity" and master[f"_record2id_value{LOOKUP}"] == "contact"
    assert reverse[f"_record1id_value{LOOKUP}"] == "contact" and reverse[f"_record2id_value{LOOKUP}"] == "opportunity"
    assert master[f"_record1id_value{NAV}"] == "record1id_opportunity"


def test_owner_assignment_to_users_and_teams(dv: Dataverse) -> None:
    user, team = _user(dv, "Olga"), _team(dv, "Owners")
    lead = dv.create("leads", {"lastname": "Lee", "ownerid@odata.bind": f"/systemusers({user})"})
    stored = dv.record("lead", lead)
    assert (stored["_ownerid_value"], stored["_owninguser_value"], stored["_owningteam_value"]) == (user, user, None)

    _, last, _ = dv.read_all("leads?$select=_ownerid_value", TRACK)
    assert dv.patch(f"leads({lead})", {"ownerid@odata.bind": f"/teams({team})"}).status_code == 204
    stored = dv.record("lead", lead)
    assert (stored["_ownerid_value"], stored["_owninguser_value"], stored["_owningteam_value"]) == (team, None, team)
    changes, _, _ = dv.read_all(last["@odata.deltaLink"], TRACK)
    assert [(row["leadid"], row[f"_ownerid_value{LOOKUP}"]) for row in changes] == [(lead, "team")]

    # The owner of a new record defaults to the caller.
    account = dv.create("accounts", {"name": "Mine"})
    caller = dv.app("sync")["systemuserid"]
    assert dv.record("account", account)["_owninguser_value"] == caller


def test_owner_assignment_errors(dv: Dataverse) -> None:
    access = _team(dv, "Deal room", teamtype=1)
    lead = dv.create("leads", {"lastname": "Lee"})
    before = dv.record("lead", lead)

    status, code, message = error_of(dv.patch(f"leads({lead})", {"ownerid@odata.bind": f"/teams({access})"}))
    assert (status, code) == (400, "0x80048340")
    assert message == "You cannot assign a record to the access team. You can assign a record to the owner team."
    missing = "00000000-0000-0000-0000-00000000beef"
    status, code, message = error_of(dv.post("accounts", {"name": "X", "ownerid@odata.bind": f"/teams({missing})"}))
    assert (status, code) == (404, "0x80040217") and missing in message
    status, code, _ = error_of(dv.post("accounts", {"name": "X", "ownerid@odata.bind": f"/accounts({lead})"}))
    assert status == 404 and code == "0x80040217"
    assert dv.record("lead", lead)["versionnumber"] == before["versionnumber"]
    assert dv.control("GET", "/records/account")["count"] == 0


def test_seeding_users_teams_accounts_and_linked_persons(dv: Dataverse) -> None:
    seeded_users = set(dv.seed("systemuser", 20))
    teams = dv.seed("team", 10)
    accounts = dv.seed("account", 30, refs={"ownerid": ["systemuser", "team"]})
    contacts = dv.seed("contact", 30, refs={"parentcustomerid": "account", "ownerid": "team"})
    leads = dv.seed("lead", 30, refs={"parentaccountid": "account"})

    users, _, _ = dv.read_all("systemusers?$select=isdisabled,accessmode,applicationid,internalemailaddress", TRACK)
    seeded = [row for row in users if row["systemuserid"] in seeded_users]  # not the organization's own users
    assert len(seeded) == 20
    assert sum(row["applicationid"] is not None and row["accessmode"] == 4 for row in seeded) == 2
    assert sum(row["isdisabled"] for row in seeded) == 2
    assert all(row["internalemailaddress"] for row in seeded)

    team_rows = [dv.record("team", team) for team in teams]
    assert sorted({row["teamtype"] for row in team_rows}) == [0, 1, 2]
    assert all(row["_administratorid_value"] and row["emailaddress"] for row in team_rows)
    access_teams = {row["teamid"] for row in team_rows if row["teamtype"] == 1}

    owned = [dv.record("account", account) for account in accounts]
    kinds = {row["_owninguser_value"] is not None for row in owned}
    assert kinds == {True, False}  # some accounts owned by users, some by teams
    assert not {row["_ownerid_value"] for row in owned} & access_teams
    for row in owned:
        assert row["_ownerid_value"] in (row["_owninguser_value"], row["_owningteam_value"])

    linked = [dv.record("contact", contact) for contact in contacts]
    assert [row["_parentcustomerid_value"] for row in linked] == accounts  # contact i belongs to account i
    assert all(row["_owningteam_value"] == row["_ownerid_value"] for row in linked)
    page = dv.get(
        f"contacts({contacts[0]})?$select=_parentcustomerid_value,_ownerid_value",
        prefer='odata.include-annotations="*"',
    ).json()
    assert page[f"_parentcustomerid_value{LOOKUP}"] == "account" and page[f"_ownerid_value{LOOKUP}"] == "team"
    assert [dv.record("lead", lead)["_parentaccountid_value"] for lead in leads] == accounts


def test_seeding_linked_rows_at_scale_uses_the_fast_generator(dv: Dataverse) -> None:
    dv.seed("systemuser", 50)
    dv.seed("team", 10)
    accounts = dv.control(
        "POST", "/seed", json={"table": "account", "count": 10_000, "refs": {"ownerid": ["systemuser", "team"]}}
    )
    contacts = dv.control(
        "POST", "/seed", json={"table": "contact", "count": 10_000, "refs": {"parentcustomerid": "account"}}
    )
    assert accounts["seconds"] < 5 and contacts["seconds"] < 5
    assert dv.control("GET", "/records/contact")["count"] == 10_000
    # The control answers the first 1,000 ids; contact i belongs to account i.
    assert dv.record("contact", contacts["ids"][999])["_parentcustomerid_value"] == accounts["ids"][999]


@pytest.mark.parametrize(
    ("refs", "text"),
    [
        ({"parentcustomerid": "lead"}, "cannot point at 'lead'"),
        ({"firstname": "account"}, "'firstname' is not a lookup column"),
        ({"parentcustomerid": "account"}, "no account rows"),
    ],
)
def test_seeding_refs_errors_name_the_column(dv: Dataverse, refs: dict[str, str], text: str) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        dv.seed("contact", 1, refs=refs)
    response = raised.value.response
    assert response.status_code == 400 and text in response.json()["error"]
