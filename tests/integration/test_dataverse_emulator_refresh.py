"""The Dataverse emulator's sandbox refresh control over real HTTPS: the same rows under new GUIDs with their lookups
following, production's link values, a new organization id, and every delta token from before refused."""

from __future__ import annotations

from tests.integration.dataverse_emulator_helpers import Dataverse, dataverse_client, error_of

__all__ = ["dataverse_client"]  # the `dv` fixture

TRACK = "odata.track-changes"


def test_a_sandbox_refresh_rekeys_every_row_and_voids_the_delta_tokens(dv: Dataverse) -> None:
    account = dv.create("accounts", {"name": "Fabrikam"})
    parent = {"parentcustomerid_account@odata.bind": f"/accounts({account})"}
    contact = dv.create("contacts", {"lastname": "Old", "new_marketopersonid": "41", **parent})
    lead = dv.create("leads", {"lastname": "Lead", "companyname": "Co", "new_marketopersonid": "7"})
    who = dv.get("WhoAmI").json()
    _, last, _ = dv.read_all("contacts?$select=lastname", prefer=TRACK)
    old_delta = last["@odata.deltaLink"]

    done = dv.control("POST", "/sandbox-refresh", json={"link_values": {"7": "900"}})
    ids = done["ids"]
    assert done["previous_organization_id"] == who["OrganizationId"] != done["organization_id"]
    assert {account, contact, lead} <= set(ids) and not {account, contact, lead} & set(ids.values())

    after = dv.get("WhoAmI").json()
    assert after["OrganizationId"] == done["organization_id"]
    assert after["UserId"] == who["UserId"]  # the app's application user keeps signing in as itself
    row = dv.record("contact", ids[contact])
    assert row["lastname"] == "Old" and row["_parentcustomerid_value"] == ids[account]
    assert row["new_marketopersonid"] == "1000041"  # shifted: an id this Marketo never handed out
    assert dv.record("lead", ids[lead])["new_marketopersonid"] == "900"  # as given
    assert dv.get(f"contacts({contact})").status_code == 404
    status, code, message = error_of(dv.get(old_delta, prefer=TRACK))
    assert (status, code) == (400, "0x80044352") and "expired" in message

    rows, last, _ = dv.read_all("contacts?$select=lastname", prefer=TRACK)  # a new initial read works, and its token
    assert [r["contactid"] for r in rows] == [ids[contact]]
    dv.patch(f"contacts({ids[contact]})", {"lastname": "New"})
    changed = dv.get(last["@odata.deltaLink"], prefer=TRACK)
    assert changed.status_code == 200 and [r["lastname"] for r in changed.json()["value"]] == ["New"]
