"""Opportunity contact roles end to end: the customer contact and the stakeholders (connections) of each opportunity
become Marketo opportunity roles, with leadId from the link state. Both emulators, Azurite, the real connectors;
each test asserts the final roles in Marketo."""

from __future__ import annotations

from typing import Any

from tests.e2e.world import World

ROLE_FIELDS = ["externalOpportunityId", "leadId", "role", "isPrimary"]


def roles(world: World, opportunity: str) -> set[tuple[int, str, bool]]:
    found = world.ctx.marketo.crm("opportunities/roles").query("externalOpportunityId", [opportunity], ROLE_FIELDS)
    return {(int(r.values["leadId"]), r.values["role"], bool(r.values["isPrimary"])) for r in found}


def role_id(world: World, name: str) -> str:
    found = world.dv_query("connectionrole", ["connectionroleid", "name"], f"name eq '{name}'")
    if found:
        return str(found[0]["id"])
    return world.dv_create("connectionrole", name=name, category=1)


def connect(world: World, opportunity: str, other: str, role: str, table: str = "contact") -> str:
    return world.dv_create(
        "connection",
        **{
            "record1id_opportunity@odata.bind": f"/opportunities({opportunity})",
            f"record2id_{table}@odata.bind": f"/{table}s({other})",
            "record2roleid@odata.bind": f"/connectionroles({role_id(world, role)})",
        },
    )


def contact(world: World, name: str, **values: Any) -> str:
    return world.dv_create("contact", lastname=name, emailaddress1=f"{name.lower()}@example.com", **values)


def person_id(world: World, name: str) -> int:
    [person] = world.mk_by_email(f"{name.lower()}@example.com")
    return int(person["id"])


def sync_all(world: World) -> None:
    world.cycles("contact", "opportunity", "opportunityrole")


def ready(world: World) -> None:
    world.upstream("contact", "opportunity")  # users, teams, accounts
    world.cycles("lead", "contact")


def test_a_stakeholder_added_re_roled_and_removed(world: World) -> None:
    account = world.dv_create("account", name="Fabrikam")
    ready(world)
    buyer = contact(world, "Buyer", **{"parentcustomerid_account@odata.bind": f"/accounts({account})"})
    opportunity = world.dv_create(
        "opportunity", name="Fleet", **{"customerid_account@odata.bind": f"/accounts({account})"}
    )
    sync_all(world)
    assert roles(world, opportunity) == set()

    connection = connect(world, opportunity, buyer, "Influencer")
    world.cycle("opportunityrole")
    lead = person_id(world, "Buyer")
    assert roles(world, opportunity) == {(lead, "Influencer", False)}

    world.dv_update(
        "connection",
        connection,
        **{"record2roleid@odata.bind": f"/connectionroles({role_id(world, 'Decision Maker')})"},
    )
    report = world.cycle("opportunityrole")
    assert (report.counts.deleted, report.counts.created) == (1, 1), report  # Marketo cannot update a role's name
    assert roles(world, opportunity) == {(lead, "Decision Maker", False)}

    world.dv_delete("connection", connection)  # Dataverse deletes its reciprocal with it
    world.cycle("opportunityrole")
    assert roles(world, opportunity) == set()

    world.clear_request_logs()
    report = world.cycle("opportunityrole")
    assert report.api_calls["marketo"] == 0, report.api_calls


def test_a_deactivated_connection_deletes_its_role_and_a_reciprocal_pair_counts_once(world: World) -> None:
    account = world.dv_create("account", name="Contoso")
    ready(world)
    first = contact(world, "First")
    second = contact(world, "Second")
    opportunity = world.dv_create(
        "opportunity", name="Pair", **{"customerid_account@odata.bind": f"/accounts({account})"}
    )
    kept = connect(world, opportunity, first, "Stakeholder")
    dropped = connect(world, opportunity, second, "Influencer")
    sync_all(world)
    assert world.dv_count("connection") == 4  # two connections, each with its reciprocal
    assert roles(world, opportunity) == {
        (person_id(world, "First"), "Stakeholder", False),
        (person_id(world, "Second"), "Influencer", False),
    }
    world.dv_update("connection", dropped, statecode=1, statuscode=2)
    world.cycle("opportunityrole")
    assert roles(world, opportunity) == {(person_id(world, "First"), "Stakeholder", False)}
    assert kept


def test_a_customer_changed_from_a_contact_to_an_account_deletes_the_customer_role(world: World) -> None:
    account = world.dv_create("account", name="Northwind")
    ready(world)
    buyer = contact(world, "Solo", **{"parentcustomerid_account@odata.bind": f"/accounts({account})"})
    opportunity = world.dv_create(
        "opportunity", name="Solo deal", **{"customerid_contact@odata.bind": f"/contacts({buyer})"}
    )
    sync_all(world)
    lead = person_id(world, "Solo")
    assert roles(world, opportunity) == {(lead, "Customer", True)}
    found = world.mk_crm("opportunities", "externalOpportunityId", [opportunity], ("externalCompanyId",))
    assert found[opportunity]["externalCompanyId"] == account  # the customer contact's account

    other = world.dv_create("account", name="New Owner Co")
    world.cycle("account")
    world.dv_update("opportunity", opportunity, **{"customerid_account@odata.bind": f"/accounts({other})"})
    world.cycles("opportunity", "opportunityrole")
    assert roles(world, opportunity) == set()
    found = world.mk_crm("opportunities", "externalOpportunityId", [opportunity], ("externalCompanyId",))
    assert found[opportunity]["externalCompanyId"] == other


def test_a_deleted_opportunity_deletes_its_opportunity_and_its_roles(world: World) -> None:
    account = world.dv_create("account", name="Gone")
    ready(world)
    buyer = contact(world, "Gone", **{"parentcustomerid_account@odata.bind": f"/accounts({account})"})
    helper = contact(world, "Helper")
    opportunity = world.dv_create(
        "opportunity", name="Doomed", **{"customerid_contact@odata.bind": f"/contacts({buyer})"}
    )
    connect(world, opportunity, helper, "Stakeholder")
    sync_all(world)
    assert len(roles(world, opportunity)) == 2
    world.dv_delete("opportunity", opportunity)
    world.cycles("opportunity", "opportunityrole")
    assert world.mk_crm("opportunities", "externalOpportunityId", [opportunity]) == {}
    assert roles(world, opportunity) == set()
    assert world.ctx.state.links.get_by_dynamics_id("opportunityrole", opportunity) is None


def test_a_role_whose_person_is_not_linked_waits_and_then_syncs(world: World) -> None:
    account = world.dv_create("account", name="Waiting Co")
    ready(world)
    late = contact(world, "Late")
    opportunity = world.dv_create(
        "opportunity", name="Early", **{"customerid_contact@odata.bind": f"/contacts({late})"}
    )
    world.cycles("opportunity", "opportunityrole")  # the contact's timer has not fired yet
    assert roles(world, opportunity) == set()
    [error] = world.ctx.state.errors.list("opportunityrole")
    assert error.record_id == opportunity and error.code == "reference_waits" and late in error.message
    sync_all(world)
    assert roles(world, opportunity) == {(person_id(world, "Late"), "Customer", True)}
    assert list(world.ctx.state.errors.list("opportunityrole")) == []
    assert account


def test_an_account_stakeholder_is_skipped_and_a_too_long_role_name_is_a_record_error(world: World) -> None:
    account = world.dv_create("account", name="Partner Co")
    ready(world)
    fine = contact(world, "Fine")
    long_name = contact(world, "Verbose")
    opportunity = world.dv_create(
        "opportunity", name="Mixed", **{"customerid_account@odata.bind": f"/accounts({account})"}
    )
    connect(world, opportunity, account, "Stakeholder", table="account")
    connect(world, opportunity, long_name, "Executive sponsor and budget holder for the whole region")
    connect(world, opportunity, fine, "Influencer")
    sync_all(world)
    assert roles(world, opportunity) == {(person_id(world, "Fine"), "Influencer", False)}
    report = world.cycle("opportunityrole")  # retried: still failing, still naming the role
    [(reason, count)] = report.skipped_reasons.items()
    assert "account, not a contact" in reason and count == 1
    [error] = world.ctx.state.errors.list("opportunityrole")
    assert error.record_id == opportunity and long_name in error.message and "at most 50" in error.message
    assert report.counts.failed == 1


def test_a_full_sync_then_an_idle_cycle_of_every_stream_writes_nothing_to_marketo(world: World) -> None:
    from tests.e2e.test_full_sync import run_job

    account = world.dv_create("account", name="Full Co")
    buyer = contact(world, "Fullbuyer", **{"parentcustomerid_account@odata.bind": f"/accounts({account})"})
    helper = contact(world, "Fullhelper")
    opportunity = world.dv_create(
        "opportunity", name="Full deal", **{"customerid_contact@odata.bind": f"/contacts({buyer})"}
    )
    connect(world, opportunity, helper, "Influencer")
    product = world.dv_create("new_product", new_name="Widget", **{"new_AccountId@odata.bind": f"/accounts({account})"})
    run_job(world, {"entities": ["opportunityrole", "new_product"]})  # brings the streams they point at along
    assert roles(world, opportunity) == {
        (person_id(world, "Fullbuyer"), "Customer", True),
        (person_id(world, "Fullhelper"), "Influencer", False),
    }
    found = world.mk_crm("opportunities", "externalOpportunityId", [opportunity], ("name", "externalCompanyId"))
    assert found[opportunity] == {**found[opportunity], "name": "Full deal", "externalCompanyId": account}
    product_c = world.mk_crm("customobjects/product_c", "productCode", [product], ("externalCompanyId",))
    assert product_c[product]["externalCompanyId"] == account

    world.clear_request_logs()
    for stream in world.ctx.mapping.ordered_entities():
        world.cycle(stream.name)
    by_object = world.emulators.control("marketo", "GET", "/requests").json()["by_object"]
    writes = {k: v for k, v in by_object.items() if k.endswith((".sync", ".delete", ".push"))}
    assert writes == {}, by_object


def test_an_opted_out_opportunity_keeps_its_roles_as_they_are(world: World) -> None:
    account = world.dv_create("account", name="Quiet Co")
    ready(world)
    buyer = contact(world, "Quiet", **{"parentcustomerid_account@odata.bind": f"/accounts({account})"})
    helper = contact(world, "Quieter")
    opportunity = world.dv_create(
        "opportunity", name="Quiet deal", **{"customerid_contact@odata.bind": f"/contacts({buyer})"}
    )
    sync_all(world)
    world.dv_update("opportunity", opportunity, new_synctomkto=False)
    connect(world, opportunity, helper, "Influencer")
    report = world.cycle("opportunityrole")
    assert report.counts.created == 0 and report.counts.skipped >= 1, report
    assert roles(world, opportunity) == {(person_id(world, "Quiet"), "Customer", True)}  # kept, not updated
    world.dv_update("opportunity", opportunity, new_synctomkto=True)  # No -> Yes: written at once
    world.cycle("opportunityrole")
    assert len(roles(world, opportunity)) == 2
