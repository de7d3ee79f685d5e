"""Opportunities -> Marketo opportunities end to end: computed fields (amount, close date, isClosed/isWon), the company
from parentaccountid or the customer, the owner, bad input and deletes. Both emulators, Azurite, the real connectors;
each test asserts the final state in Marketo."""

from __future__ import annotations

from typing import Any

from tests.e2e.world import World

OPPORTUNITY_FIELDS = (
    "externalOpportunityId",
    "name",
    "description",
    "amount",
    "closeDate",
    "probability",
    "stage",
    "isClosed",
    "isWon",
    "externalCompanyId",
    "externalSalesPersonId",
    "externalCreatedDate",
)


def admin_id(world: World) -> str:
    [admin] = world.dv_query("systemuser", ["systemuserid"], "fullname eq 'System Administrator'")
    return str(admin["id"])


def opportunities(world: World, *ids: str) -> dict[str, Any]:
    return world.mk_crm("opportunities", "externalOpportunityId", list(ids), OPPORTUNITY_FIELDS)


def owned_by(user: str) -> dict[str, str]:
    return {"ownerid@odata.bind": f"/systemusers({user})"}


def test_a_won_opportunity_carries_its_actual_value_and_close_date(world: World) -> None:
    admin = admin_id(world)
    account = world.dv_create("account", name="Fabrikam")
    world.upstream("opportunity")
    opportunity = world.dv_create(
        "opportunity",
        name="100 bikes",
        description="Spring fleet",
        estimatedvalue=10_000,
        estimatedclosedate="2027-03-31T00:00:00Z",
        closeprobability=40,
        salesstagecode=1,
        **{"customerid_account@odata.bind": f"/accounts({account})"},
        **owned_by(admin),
    )
    report = world.cycle("opportunity")
    assert report.counts.created == 1, report
    found = opportunities(world, opportunity)[opportunity]
    assert (found["name"], found["description"], float(found["amount"])) == ("100 bikes", "Spring fleet", 10_000)
    assert (found["closeDate"], found["probability"], found["stage"]) == ("2027-03-31", 40, "Develop")
    assert (found["isClosed"], found["isWon"]) == (False, False)
    assert (found["externalCompanyId"], found["externalSalesPersonId"]) == (account, admin)
    assert found["externalCreatedDate"]

    world.dv_update(
        "opportunity",
        opportunity,
        statecode=1,
        statuscode=3,
        actualvalue=12_500,
        actualclosedate="2027-02-14T00:00:00Z",
        closeprobability=100,
    )
    report = world.cycle("opportunity")
    assert report.counts.updated == 1, report
    won = opportunities(world, opportunity)[opportunity]
    assert (float(won["amount"]), won["closeDate"], won["probability"]) == (12_500, "2027-02-14", 100)
    assert (won["isClosed"], won["isWon"]) == (True, True)

    world.clear_request_logs()
    assert world.cycle("opportunity").api_calls["marketo"] == 0  # idle: nothing written


def test_the_company_comes_from_parentaccountid_else_the_customer_account_else_the_customer_contacts_account(
    world: World,
) -> None:
    parent = world.dv_create("account", name="Parent Co")
    customer = world.dv_create("account", name="Customer Co")
    employer = world.dv_create("account", name="Employer Co")
    contact = world.dv_create(
        "contact", lastname="Buyer", **{"parentcustomerid_account@odata.bind": f"/accounts({employer})"}
    )
    world.upstream("opportunity")
    with_parent = world.dv_create(
        "opportunity",
        name="With parent",
        **{
            "customerid_account@odata.bind": f"/accounts({customer})",
            "parentaccountid@odata.bind": f"/accounts({parent})",
        },
    )
    with_account = world.dv_create(
        "opportunity", name="Account customer", **{"customerid_account@odata.bind": f"/accounts({customer})"}
    )
    with_contact = world.dv_create(
        "opportunity", name="Contact customer", **{"customerid_contact@odata.bind": f"/contacts({contact})"}
    )
    world.cycle("opportunity")
    found = opportunities(world, with_parent, with_account, with_contact)
    assert found[with_parent]["externalCompanyId"] == parent
    assert found[with_account]["externalCompanyId"] == customer
    assert found[with_contact]["externalCompanyId"] == employer


def test_an_opportunity_without_a_name_is_a_record_error_and_the_rest_syncs(world: World) -> None:
    account = world.dv_create("account", name="Contoso")
    world.upstream("opportunity")
    customer = {"customerid_account@odata.bind": f"/accounts({account})"}
    nameless = world.dv_create("opportunity", name="", estimatedvalue=5, **customer)
    named = world.dv_create("opportunity", name="Named", **customer)
    report = world.cycle("opportunity")
    assert (report.counts.created, report.counts.failed) == (1, 1), report
    assert set(opportunities(world, nameless, named)) == {named}
    [error] = world.ctx.state.errors.list("opportunity")
    assert error.record_id == nameless and "name" in error.message and "requires" in error.message

    world.dv_update("opportunity", nameless, name="Named later")
    world.cycle("opportunity")
    assert opportunities(world, nameless)[nameless]["name"] == "Named later"
    assert list(world.ctx.state.errors.list("opportunity")) == []


def test_an_opportunity_whose_account_is_not_in_marketo_yet_waits(world: World) -> None:
    world.upstream("opportunity")
    account = world.dv_create("account", name="Late Co")
    opportunity = world.dv_create(
        "opportunity", name="Early deal", **{"customerid_account@odata.bind": f"/accounts({account})"}
    )
    report = world.cycle("opportunity")
    assert report.counts.failed == 1 and opportunities(world, opportunity) == {}
    [error] = world.ctx.state.errors.list("opportunity")
    assert error.code == "reference_waits" and account in error.message
    world.cycles("account", "opportunity")
    assert opportunities(world, opportunity)[opportunity]["externalCompanyId"] == account


def test_a_deleted_opportunity_deletes_its_marketo_opportunity(world: World) -> None:
    account = world.dv_create("account", name="Gone Deals")
    world.upstream("opportunity")
    opportunity = world.dv_create(
        "opportunity", name="Lost cause", **{"customerid_account@odata.bind": f"/accounts({account})"}
    )
    world.cycle("opportunity")
    assert opportunity in opportunities(world, opportunity)
    world.dv_delete("opportunity", opportunity)
    report = world.cycle("opportunity")
    assert report.counts.deleted == 1, report
    assert opportunities(world, opportunity) == {}
    assert world.ctx.state.links.get_by_dynamics_id("opportunity", opportunity) is None
