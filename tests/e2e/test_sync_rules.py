"""Issue 5's numbered rules, one test (or a few) each, asserting the final state of both systems."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync.engine.execute import Executor
from tests.e2e.world import World


def start(world: World) -> None:
    """A first cycle of each entity sets the watermarks: what happens afterwards is incremental."""
    world.cycles("lead", "contact")


def make_synced_lead(world: World, **values: str) -> tuple[str, int]:
    fields = {"firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.com", "companyname": "Acme"}
    fields.update(values)
    lead_id = world.dv_create("lead", **fields)
    world.cycle("lead")
    [person] = world.mk_by_email(fields["emailaddress1"])
    return lead_id, int(person["id"])


def make_synced_contact(world: World, **values: str) -> tuple[str, int]:
    account = world.dv_create("account", name="Contoso Ltd")
    fields = {"firstname": "Cy", "lastname": "Cole", "emailaddress1": "cy@example.com"}
    fields.update(values)
    contact_id = world.dv_create(
        "contact", **fields, **{"parentcustomerid_account@odata.bind": f"/accounts({account})"}
    )
    world.cycles("account", "contact")  # a contact follows its account's company
    [person] = world.mk_by_email(fields["emailaddress1"])
    return contact_id, int(person["id"])


# --- 3. change detection ----------------------------------------------------------------------------------------------
def test_marketo_change_reaches_dynamics(world: World) -> None:
    start(world)
    lead_id, person_id = make_synced_lead(world)
    world.mk_edit(person_id, title="CTO", phone="555-0100")
    report = world.cycle("lead")
    assert report.counts.updated == 1
    lead = world.dv_get("lead", lead_id)
    assert (lead["jobtitle"], lead["telephone1"]) == ("CTO", "555-0100")


def test_expired_delta_token_falls_back_to_a_full_comparison_without_rewriting(world: World) -> None:
    start(world)
    make_synced_lead(world)
    make_synced_lead(world, emailaddress1="bo@example.com", firstname="Bo")
    world.emulators.control("dataverse", "POST", "/change-tracking", json={"expire_all": True})
    world.clear_request_logs()
    report = world.cycle("lead")
    assert report.outcome == "succeeded", report
    assert report.counts.unchanged == 2 and report.counts.updated == report.counts.created == 0
    assert (
        "POST /rest/v1/leads.json" not in world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    )


# --- 4. three-way merge -----------------------------------------------------------------------------------------------
def test_lead_conflict_goes_to_marketo_and_other_field_changes_survive(world: World) -> None:
    start(world)
    lead_id, person_id = make_synced_lead(world)
    world.dv_update("lead", lead_id, firstname="Anne", jobtitle="VP Sales")  # salesperson
    world.mk_edit(person_id, firstName="Anna", phone="555-0199")  # marketer
    report = world.cycle("lead")
    assert [c["field"] for c in report.conflicts] == ["firstName"]
    lead, person = world.dv_get("lead", lead_id), world.mk_get(person_id)
    assert lead["firstname"] == person["firstName"] == "Anna"  # Marketo wins for leads
    assert lead["jobtitle"] == person["title"] == "VP Sales"  # the Dynamics-only change survives
    assert lead["telephone1"] == person["phone"] == "555-0199"  # the Marketo-only change survives
    run = world.ctx.state.runs.recent("lead", limit=1)[0]
    assert run.conflicts[0]["winner"] == "marketo" and run.conflicts[0]["base_value"] == "Ann"


def test_contact_conflict_goes_to_dynamics_and_other_field_changes_survive(world: World) -> None:
    start(world)
    contact_id, person_id = make_synced_contact(world)
    world.dv_update("contact", contact_id, lastname="Coleman")
    world.mk_edit(person_id, lastName="Cole-Smith", title="Buyer")
    world.cycle("contact")
    contact, person = world.dv_get("contact", contact_id), world.mk_get(person_id)
    assert contact["lastname"] == person["lastName"] == "Coleman"  # Dynamics wins for contacts
    assert contact["jobtitle"] == person["title"] == "Buyer"


def test_contact_company_comes_from_the_parent_account(world: World) -> None:
    start(world)
    _, person_id = make_synced_contact(world)
    assert world.mk_get(person_id)["company"] == "Contoso Ltd"


# --- 6. linking and no duplicates -------------------------------------------------------------------------------------
def test_existing_person_is_linked_by_email_case_insensitively(world: World) -> None:
    start(world)
    person_id = world.mk_form_fill(email="Dee@Example.com", firstName="Dee", title="Founder")
    world.cycle("lead")  # a form fill by someone not marked for Dynamics: stays in Marketo
    lead_id = world.dv_create("lead", lastname="Dunn", emailaddress1="dee@example.COM", companyname="D Co")
    world.cycle("lead")
    assert len(world.mk_by_email("dee@example.com")) == 1
    person = world.mk_get(person_id)
    assert person["dynamicsLeadId"] == lead_id and person["lastName"] == "Dunn"
    lead = world.dv_get("lead", lead_id)
    assert lead["new_marketopersonid"] == str(person_id)
    assert (lead["firstname"], lead["jobtitle"]) == ("Dee", "Founder")  # first link fills Dynamics' blanks


def test_several_candidates_is_a_record_error_never_a_guess(world: World) -> None:
    start(world)
    for _ in range(2):  # two persons share an address (Marketo allows it through the API's createDuplicate)
        world.ctx.marketo.sync_leads([{"email": "twin@example.com"}], action="createDuplicate")
    lead_id = world.dv_create("lead", lastname="Twin", emailaddress1="twin@example.com", companyname="T")
    report = world.cycle("lead")
    assert report.counts.failed == 1
    [error] = list(world.ctx.state.errors.list("lead"))
    assert (error.system, error.record_id, error.code) == ("dynamics", lead_id, "ambiguous_match")
    assert "2 persons match" in error.message
    assert len(world.mk_by_email("twin@example.com")) == 2
    assert world.dv_get("lead", lead_id).get("new_marketopersonid") is None


def test_crash_between_create_and_link_commit_makes_no_duplicate(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    start(world)
    lead_id = world.dv_create("lead", lastname="Crash", emailaddress1="crash@example.com", companyname="C")

    def crash(self: Executor, works: object, retried: object) -> None:
        raise RuntimeError("the worker died before committing its links")

    monkeypatch.setattr(Executor, "commit", crash)
    crashed = world.ctx and __import__("sync.engine.cycle", fromlist=["run_cycle"]).run_cycle(world.ctx, "lead")
    assert crashed.outcome == "failed"
    assert len(world.mk_by_email("crash@example.com")) == 1  # the create landed, the link did not
    monkeypatch.undo()
    world.cycle("lead")
    [person] = world.mk_by_email("crash@example.com")
    assert person["dynamicsLeadId"] == lead_id
    link = world.ctx.state.links.get_by_dynamics_id("lead", lead_id)
    assert link is not None and link.marketo_id == str(person["id"])


# --- 7. which Marketo persons reach Dynamics --------------------------------------------------------------------------
def test_person_marked_for_dynamics_becomes_a_lead_with_defaults_others_stay(world: World) -> None:
    start(world)
    marked = world.mk_form_fill(email="eve@example.com", firstName="Eve", syncToDynamics=True)
    world.mk_form_fill(email="fay@example.com", firstName="Fay")
    world.cycle("lead")
    [lead] = world.dv_find("lead", "emailaddress1", "eve@example.com")
    assert (lead["firstname"], lead["lastname"], lead["companyname"]) == ("Eve", "[not provided]", "[not provided]")
    assert lead["new_marketopersonid"] == str(marked)
    assert world.mk_get(marked)["dynamicsLeadId"] == lead["leadid"]
    assert world.dv_find("lead", "emailaddress1", "fay@example.com") == []
    world.clear_request_logs()
    assert world.cycle("lead").counts.created == 0  # and it does not come back as a change


# --- 8. the sync filter -----------------------------------------------------------------------------------------------
def test_sync_filter_false_skips_true_syncs_and_switching_off_deletes_nothing(world: World) -> None:
    start(world)
    lead_id = world.dv_create(
        "lead", lastname="Hid", emailaddress1="hid@example.com", companyname="H", new_synctomkto=False
    )
    world.cycle("lead")
    assert world.mk_by_email("hid@example.com") == []
    world.dv_update("lead", lead_id, new_synctomkto=True)
    world.cycle("lead")
    [person] = world.mk_by_email("hid@example.com")
    world.dv_update("lead", lead_id, new_synctomkto=False)
    world.cycle("lead")
    world.dv_update("lead", lead_id, jobtitle="Hidden title")
    world.mk_edit(person["id"], firstName="Marketo-side")
    world.cycle("lead")
    assert world.mk_get(person["id"]).get("title") is None  # updates stopped both ways
    assert world.dv_get("lead", lead_id).get("firstname") is None
    assert world.mk_get(person["id"]) is not None  # and nothing was deleted


# --- 9. qualification -------------------------------------------------------------------------------------------------
def test_qualification_relinks_the_person_to_the_contact(world: World) -> None:
    start(world)
    lead_id, person_id = make_synced_lead(world, emailaddress1="q@example.com", firstname="Quinn")
    world.sales.qualify_lead(lead_id, create_account=True, create_contact=True)
    world.cycles("lead", "account", "contact", "lead")  # the account made by qualifying goes first
    persons = world.mk_by_email("q@example.com")
    assert [p["id"] for p in persons] == [person_id]  # never a second person
    person = persons[0]
    [contact] = world.dv_find("contact", "emailaddress1", "q@example.com")
    assert (person["dynamicsType"], person["dynamicsContactId"]) == ("Contact", contact["contactid"])
    assert contact["new_marketopersonid"] == str(person_id)
    assert world.ctx.state.links.get_by_dynamics_id("lead", lead_id) is None
    assert world.ctx.state.errors.count() == 0


# --- 10. deletes ------------------------------------------------------------------------------------------------------
def test_deleted_dynamics_lead_flags_the_person_and_deleted_person_only_unlinks(world: World) -> None:
    start(world)
    lead_id, person_id = make_synced_lead(world)
    world.dv_delete("lead", lead_id)
    world.cycle("lead")
    person = world.mk_get(person_id)
    assert person is not None and person["dynamicsIsDeleted"] is True

    other_lead, other_person = make_synced_lead(world, emailaddress1="gus@example.com")
    world.mk_delete(other_person)
    world.cycle("lead")
    assert world.dv_get("lead", other_lead) is not None
    assert world.ctx.state.links.get_by_dynamics_id("lead", other_lead) is None


def test_deletes_propagate_when_switched_on(world: World) -> None:
    deletes = world.ctx.mapping.deletes.model_copy(update={"propagate_to_marketo": True, "propagate_to_dynamics": True})
    world.ctx.mapping = world.ctx.mapping.model_copy(update={"deletes": deletes})
    start(world)
    lead_id, person_id = make_synced_lead(world)
    world.dv_delete("lead", lead_id)
    world.cycle("lead")
    assert world.mk_get(person_id) is None
    other_lead, other_person = make_synced_lead(world, emailaddress1="gus@example.com")
    world.mk_delete(other_person)
    world.cycle("lead")
    assert world.dv_get("lead", other_lead) is None


# --- 11. nothing lost: failures become record errors and are retried --------------------------------------------------
def test_rejected_record_is_an_error_the_rest_syncs_and_a_fix_at_the_source_retries_it(world: World) -> None:
    start(world)
    world.emulators.control(
        "dataverse", "POST", "/schema/lead/columns", json={"name": "new_probe", "type": "String", "max_length": 10}
    )
    lead_id, person_id = make_synced_lead(world)
    world.mk_edit(person_id, title="T" * 120)  # Dynamics' jobtitle holds 100 characters
    ok_lead = world.dv_create("lead", lastname="Fine", emailaddress1="fine@example.com", companyname="F")
    report = world.cycle("lead")
    assert report.counts.failed == 1 and report.counts.created == 1
    [error] = list(world.ctx.state.errors.list("lead"))
    assert error.record_id == str(person_id) and error.system == "marketo"
    assert "jobtitle" in error.message
    assert world.mk_by_email("fine@example.com")[0]["dynamicsLeadId"] == ok_lead
    world.cycle("lead")  # still bad: retried, still an error, one more attempt
    assert world.ctx.state.errors.get("lead", "marketo", str(person_id)).attempts == 2  # type: ignore[union-attr]
    world.mk_edit(person_id, title="Head of Ops")  # fixed at the source
    world.cycle("lead")
    assert world.ctx.state.errors.count("lead") == 0
    assert world.dv_get("lead", lead_id)["jobtitle"] == "Head of Ops"


# --- 12. the time budget: stop at a page boundary, continue next time -------------------------------------------------
def test_cycle_stops_at_a_page_boundary_and_the_next_continues(world: World) -> None:
    start(world)
    for i in range(5):
        world.dv_create("lead", lastname=f"P{i}", emailaddress1=f"p{i}@example.com", companyname="P")
    world.ctx.dynamics.page_size = 2
    world.ctx.time_budget = timedelta(seconds=0)
    first = world.cycle("lead")
    assert not first.complete and first.counts.created == 2 and first.outcome == "partial"
    world.ctx.time_budget = timedelta(minutes=4)
    second = world.cycle("lead")
    assert second.complete and second.counts.created == 3
    assert world.mk_count() == 5


def test_a_large_marketo_backlog_also_stops_at_the_time_budget(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from sync.engine import cycle

    start(world)
    persons = [make_synced_lead(world, emailaddress1=f"m{i}@example.com")[1] for i in range(3)]
    world.cycle("lead")  # the echoes of those creates come and go
    for person_id in persons:
        world.mk_edit(person_id, title="Changed in Marketo")
    monkeypatch.setattr(cycle, "MARKETO_CHUNK", 1)
    world.ctx.time_budget = timedelta(seconds=0)
    mark = world.ctx.state.watermarks.get("lead", "marketo")
    first = world.cycle("lead")
    assert not first.complete and first.counts.updated == 1
    assert world.ctx.state.watermarks.get("lead", "marketo").cursor == mark.cursor  # read again next time
    world.ctx.time_budget = timedelta(minutes=4)
    second = world.cycle("lead")
    assert second.complete and second.counts.updated == 2
    leads = [world.ctx.state.links.get_by_marketo_id("lead", str(p)).dynamics_id for p in persons]  # type: ignore[union-attr]
    assert [world.dv_get("lead", lead)["jobtitle"] for lead in leads] == ["Changed in Marketo"] * 3
