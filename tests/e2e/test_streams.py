"""Entity streams end to end: users and teams -> sales persons, accounts -> companies, and persons linked to their
company and owner. Both emulators, Azurite, the real connectors; each test asserts the final state of both systems."""

from __future__ import annotations

from typing import Any

import yaml

from sync.mapping.model import DEFAULT_MAPPING_FILE, parse_mapping
from tests.e2e.world import World

SALES_FIELDS = ("externalSalesPersonId", "email", "firstName", "lastName", "title")
COMPANY_FIELDS = ("externalCompanyId", "company", "website", "industry", "annualRevenue", "externalSalesPersonId")


def users(world: World) -> dict[str, dict[str, Any]]:
    rows = world.dv_query("systemuser", ["systemuserid", "fullname", "applicationid", "accessmode", "isdisabled"])
    return {r["fullname"]: r for r in rows}


def default_team(world: World) -> str:
    [team] = world.dv_query("team", ["teamid", "name"], "name eq 'Contoso Sales'")
    return str(team["id"])


def sales_persons(world: World, *ids: str) -> dict[str, Any]:
    return world.mk_crm("salespersons", "externalSalesPersonId", list(ids), SALES_FIELDS)


def companies(world: World, *ids: str) -> dict[str, Any]:
    return world.mk_crm("companies", "externalCompanyId", list(ids), COMPANY_FIELDS)


def upstream(world: World) -> None:
    world.upstream("lead", "contact")  # users, teams, then accounts


# --- users and teams -> sales persons -----------------------------------------------------------------------------
def test_interactive_users_and_owner_teams_become_sales_persons_and_others_do_not(world: World) -> None:
    people = users(world)
    access_team = world.dv_create("team", name="Deal room", teamtype=1)
    upstream(world)
    admin = people["System Administrator"]["id"]
    app_users = [people["# Marketo Sync"]["id"], people["Sally Salesperson"]["id"]]
    team = default_team(world)
    found = sales_persons(world, admin, team, access_team, *app_users)
    assert set(found) == {admin, team}
    assert (found[admin]["email"], found[admin]["lastName"]) == ("admin@contoso.example", "Administrator")
    assert found[team]["lastName"] == "Contoso Sales"
    report = world.cycle("team")  # idle: one Dataverse call and no Marketo call
    assert report.api_calls == {"dynamics": 1, "marketo": 0}, report.api_calls


def test_a_disabled_user_keeps_its_sales_person_and_status_says_so(world: World) -> None:
    upstream(world)
    admin = users(world)["System Administrator"]["id"]
    world.dv_update("systemuser", admin, isdisabled=True, title="Retired")
    report = world.cycle("systemuser")
    assert report.counts.skipped == 1 and report.counts.updated == 0, report
    [(reason, count)] = report.skipped_reasons.items()
    assert count == 1 and "disabled" in reason and "kept" in reason
    assert sales_persons(world, admin)[admin]["title"] is None  # kept, not updated
    run = world.ctx.state.runs.recent("systemuser", limit=1)[0]
    assert run.skipped_reasons == report.skipped_reasons


# --- accounts -> companies ------------------------------------------------------------------------------------------
def test_an_account_becomes_a_company_owned_by_its_sales_person_and_only_changes_are_written(world: World) -> None:
    upstream(world)
    admin = users(world)["System Administrator"]["id"]
    account = world.dv_create(
        "account",
        name="Fabrikam",
        websiteurl="https://fabrikam.example",
        industrycode=1,
        revenue=1_500_000,
        **{"ownerid@odata.bind": f"/systemusers({admin})"},
    )
    report = world.cycle("account")
    assert report.counts.created == 1, report
    company = companies(world, account)[account]
    assert company["company"] == "Fabrikam" and company["website"] == "https://fabrikam.example"
    assert company["industry"] == "Accounting" and float(company["annualRevenue"]) == 1_500_000
    assert company["externalSalesPersonId"] == admin
    link = world.ctx.state.links.get_by_dynamics_id("account", account)
    assert link is not None and link.snapshot["company"] == "Fabrikam"

    world.clear_request_logs()
    world.dv_update("account", account, description="not synced")  # a change to an unmapped column
    world.cycle("account")
    by_endpoint = world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    assert "POST /rest/v1/companies.json" not in by_endpoint, by_endpoint

    # a marketer edits the website; then a salesperson the phone: only the phone is written
    world.ctx.marketo.crm("companies").sync([{"externalCompanyId": account, "website": "https://edited.example"}])
    world.dv_update("account", account, telephone1="555-0100")
    world.clear_request_logs()
    world.cycle("account")
    by_endpoint = world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    assert by_endpoint.get("POST /rest/v1/companies.json") == 1, by_endpoint
    company = world.mk_crm("companies", "externalCompanyId", [account], ("website", "mainPhone"))[account]
    assert (company["website"], company["mainPhone"]) == ("https://edited.example", "555-0100")


def test_an_opted_out_account_is_skipped_and_yes_to_no_stops_updates(world: World) -> None:
    upstream(world)
    skipped = world.dv_create("account", name="Private Co", new_synctomkto=False)
    synced = world.dv_create("account", name="Open Co")
    world.cycle("account")
    assert set(companies(world, skipped, synced)) == {synced}
    world.dv_update("account", synced, new_synctomkto=False, name="Open Co (renamed)")
    report = world.cycle("account")
    assert report.counts.skipped == 1
    assert companies(world, synced)[synced]["company"] == "Open Co"  # kept as it was
    world.dv_update("account", skipped, new_synctomkto=True)  # No -> Yes: created at once
    world.cycle("account")
    assert companies(world, skipped)[skipped]["company"] == "Private Co"


def test_a_deleted_account_keeps_its_company_and_drops_its_link(world: World) -> None:
    upstream(world)
    account = world.dv_create("account", name="Gone Co")
    world.cycle("account")
    world.dv_delete("account", account)
    report = world.cycle("account")
    assert report.counts.skipped == 1, report
    assert companies(world, account)[account]["company"] == "Gone Co"
    assert world.ctx.state.links.get_by_dynamics_id("account", account) is None


# --- persons linked to their company and owner ----------------------------------------------------------------------
def test_a_team_owned_lead_points_at_the_team_and_an_owner_change_moves_it(world: World) -> None:
    upstream(world)
    team = default_team(world)
    admin = users(world)["System Administrator"]["id"]
    world.cycles("lead")
    lead = world.dv_create(
        "lead", lastname="Team", emailaddress1="team@example.com", **{"ownerid@odata.bind": f"/teams({team})"}
    )
    world.cycle("lead")
    [person] = world.mk_by_email("team@example.com")
    assert person["externalSalesPersonId"] == team
    world.dv_update("lead", lead, **{"ownerid@odata.bind": f"/systemusers({admin})"})
    world.cycle("lead")
    assert world.mk_get(person["id"])["externalSalesPersonId"] == admin


def test_a_contact_moved_to_another_account_moves_to_its_company(world: World) -> None:
    first = world.dv_create("account", name="First Co")
    second = world.dv_create("account", name="Second Co")
    upstream(world)
    world.cycles("contact")
    contact = world.dv_create(
        "contact",
        lastname="Mover",
        emailaddress1="mover@example.com",
        **{"parentcustomerid_account@odata.bind": f"/accounts({first})"},
    )
    world.cycle("contact")
    [person] = world.mk_by_email("mover@example.com")
    assert person["externalCompanyId"] == first and person["company"] == "First Co"
    world.dv_update("contact", contact, **{"parentcustomerid_account@odata.bind": f"/accounts({second})"})
    world.cycle("contact")
    moved = world.mk_get(person["id"])
    assert moved["externalCompanyId"] == second and moved["company"] == "Second Co"
    assert world.dv_get("contact", contact)["new_marketopersonid"] == str(person["id"])


def test_a_contact_whose_account_is_not_in_marketo_yet_waits_and_follows_it(world: World) -> None:
    upstream(world)
    world.cycles("contact")
    account = world.dv_create("account", name="Same Cycle Co")
    contact = world.dv_create(
        "contact",
        lastname="Early",
        emailaddress1="early@example.com",
        **{"parentcustomerid_account@odata.bind": f"/accounts({account})"},
    )
    report = world.cycle("contact")  # the contact's timer fires before the account's
    assert report.counts.failed == 1 and world.mk_by_email("early@example.com") == []
    [error] = world.ctx.state.errors.list("contact")
    assert error.record_id == contact and error.code == "reference_waits"
    assert "parentcustomerid" in error.message and account in error.message
    world.cycles("account", "contact")
    [person] = world.mk_by_email("early@example.com")
    assert person["externalCompanyId"] == account and person["company"] == "Same Cycle Co"
    assert list(world.ctx.state.errors.list("contact")) == []


def test_a_linked_person_takes_its_company_name_from_the_company_and_the_sync_does_not_fight_it(
    world: World,
) -> None:
    account = world.dv_create("account", name="Northwind")
    upstream(world)
    world.cycles("lead")
    lead = world.dv_create(
        "lead",
        lastname="Lin",
        emailaddress1="lin@example.com",
        companyname="Typed by hand",
        **{"parentaccountid@odata.bind": f"/accounts({account})"},
    )
    report = world.cycle("lead")
    assert report.counts.created == 1 and report.counts.failed == 0, report
    [person] = world.mk_by_email("lin@example.com")
    assert person["externalCompanyId"] == account and person["company"] == "Northwind"
    world.dv_update("account", account, name="Northwind Traders")
    world.cycle("account")
    assert world.mk_get(person["id"])["company"] == "Northwind Traders"
    world.dv_update("lead", lead, jobtitle="Buyer")
    report = world.cycle("lead")
    assert report.counts.failed == 0, report  # no 1021: the company fields are not sent
    assert world.mk_get(person["id"])["title"] == "Buyer"
    assert world.dv_get("lead", lead)["companyname"] == "Typed by hand"  # the company's name does not flow back


# --- policies and bad input ----------------------------------------------------------------------------------------
def custom_mapping(world: World, change: Any) -> None:
    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    change(raw)
    world.ctx.mapping = parse_mapping(raw, "custom.yaml")


def test_the_administrator_policy_gives_a_team_owned_lead_the_team_administrators_sales_person(world: World) -> None:
    custom_mapping(world, lambda raw: raw["owners"].update(teams="administrator"))
    upstream(world)
    team, admin = default_team(world), users(world)["System Administrator"]["id"]
    world.cycles("lead")
    world.dv_create(
        "lead", lastname="Admin", emailaddress1="adm@example.com", **{"ownerid@odata.bind": f"/teams({team})"}
    )
    world.cycle("lead")
    [person] = world.mk_by_email("adm@example.com")
    assert person["externalSalesPersonId"] == admin


def test_a_user_marketo_refuses_is_a_record_error_and_the_other_users_sync(world: World) -> None:
    world.cycles("systemuser")
    bad = world.dv_create(
        "systemuser", lastname="Typo", domainname="typo@contoso.example", internalemailaddress="typo at contoso"
    )
    good = world.dv_create(
        "systemuser", lastname="Good", domainname="good@contoso.example", internalemailaddress="good@contoso.example"
    )
    report = world.cycle("systemuser")
    assert (report.counts.created, report.counts.failed) == (1, 1), report
    assert set(sales_persons(world, bad, good)) == {good}
    [error] = world.ctx.state.errors.list("systemuser")
    assert error.record_id == bad and error.code == "1003"
    assert f"systemuser {bad}" in error.message and "typo at contoso" in error.message
    assert world.ctx.state.watermarks.get("systemuser", "dynamics").cursor is not None
    world.dv_update("systemuser", bad, internalemailaddress="typo@contoso.example")  # fixed at the source
    world.cycle("systemuser")
    assert set(sales_persons(world, bad)) == {bad} and list(world.ctx.state.errors.list("systemuser")) == []


def test_a_value_too_long_for_marketo_is_a_record_error_naming_the_account(world: World) -> None:
    def long_sic(raw: dict) -> None:  # a custom mapping that carries a 2,000-character column into a 255 one
        fields = raw["entities"]["account"]["fields"]
        raw["entities"]["account"]["fields"] = [f for f in fields if f["marketo"] != "sicCode"]
        raw["entities"]["account"]["fields"].append({"dynamics": "description", "marketo": "sicCode"})

    custom_mapping(world, long_sic)
    upstream(world)
    long_one = world.dv_create("account", name="Long Co", description="x" * 300)
    short = world.dv_create("account", name="Short Co", description="fine")
    report = world.cycle("account")
    assert (report.counts.created, report.counts.failed) == (1, 1), report
    assert set(companies(world, long_one, short)) == {short}
    [error] = world.ctx.state.errors.list("account")
    assert error.record_id == long_one and "sicCode" in error.message and "max length" in error.message


def test_a_stream_that_deletes_removes_the_company_of_a_deleted_account(world: World) -> None:
    custom_mapping(world, lambda raw: raw["entities"]["account"].update(on_delete="delete"))
    upstream(world)
    account = world.dv_create("account", name="Gone For Good")
    world.cycle("account")
    assert set(companies(world, account)) == {account}
    world.dv_delete("account", account)
    report = world.cycle("account")
    assert report.counts.deleted == 1, report
    assert companies(world, account) == {}
    assert world.ctx.state.links.get_by_dynamics_id("account", account) is None


def test_a_full_sync_runs_every_stream_in_dependency_order(world: World) -> None:
    from tests.e2e.test_full_sync import run_job

    accounts = [world.dv_create("account", name=f"Full {i}") for i in range(3)]
    for i, account in enumerate(accounts):
        world.dv_create(
            "contact",
            lastname=f"Full{i}",
            emailaddress1=f"full{i}@example.com",
            **{"parentcustomerid_account@odata.bind": f"/accounts({account})"},
        )
    job = run_job(world, {"entities": ["contact"], "direction": "to_marketo"})  # brings users, teams, accounts along
    assert job.entities == ["systemuser", "team", "account", "contact"]
    finished = {t["entity"]: t["finished_at"] for t in job.tasks}
    started = {t["entity"]: t["started_at"] for t in job.tasks}
    assert finished["systemuser"] <= started["account"] and finished["team"] <= started["account"]
    assert finished["account"] <= started["contact"]
    for i, account in enumerate(accounts):
        [person] = world.mk_by_email(f"full{i}@example.com")
        assert person["externalCompanyId"] == account and person["company"] == f"Full {i}"
    assert world.ctx.state.errors.count() == 0
    assert set(companies(world, *accounts)) == set(accounts)
