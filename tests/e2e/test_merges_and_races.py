"""Issue 13's holes 3 and 4: a Marketo merge moves the link to the winner; a lead and a contact with one e-mail
end the same way whatever order they run in."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sync.engine.context import build_context
from sync.engine.cycle import run_cycle
from sync.engine.execute import Executor
from tests.e2e.test_sync_rules import make_synced_lead, start
from tests.e2e.world import World


def mk_merge(world: World, winner: int, *losers: int) -> None:
    """A marketer merges duplicates in the Marketo UI (a Merge Leads activity on the winner)."""
    world.emulators.control("marketo", "POST", "/act/merge", json={"winner": winner, "losers": list(losers)})


def lead_links(world: World) -> list[tuple[str, str]]:
    return sorted((link.dynamics_id, link.marketo_id) for link in world.ctx.state.links.list("lead"))


# --- 3. a Marketo merge moves the link to the winner --------------------------------------------------------------
def test_a_merge_into_a_marketo_only_person_moves_the_link_to_the_winner(world: World) -> None:
    start(world)
    lead_id, loser = make_synced_lead(world, emailaddress1="ann@example.com", jobtitle="CFO")
    winner = world.mk_form_fill(email="ann.lee@example.org", firstName="Ann", lastName="Lee", phone="555-0100")
    world.cycle("lead")  # a Marketo-only person (not marked to sync): stays out of Dynamics
    mk_merge(world, winner, loser)

    report = world.cycle("lead")
    assert report.counts.failed == 0, report
    assert lead_links(world) == [(lead_id, str(winner))]  # moved: no orphan link to the vanished loser
    lead = world.dv_get("lead", lead_id)
    assert lead is not None and lead["new_marketopersonid"] == str(winner)
    # The winner's values (its own, and the loser's where it had none) reach the lead; no second lead appears.
    assert (lead["emailaddress1"], lead["telephone1"], lead["jobtitle"]) == ("ann.lee@example.org", "555-0100", "CFO")
    assert world.dv_count("lead") == 1
    person: Any = world.mk_get(winner)
    assert person["dynamicsLeadId"] == lead_id

    # The pair lives on both ways.
    world.dv_update("lead", lead_id, jobtitle="CEO")
    world.mk_edit(winner, lastName="Lee-Smith")
    world.cycles("lead", "lead")
    assert world.mk_get(winner)["title"] == "CEO"  # type: ignore[index]
    assert world.dv_get("lead", lead_id)["lastname"] == "Lee-Smith"  # type: ignore[index]
    assert world.dv_count("lead") == 1 and world.ctx.state.errors.count("lead") == 0
    assert lead_links(world) == [(lead_id, str(winner))]


def test_a_merge_whose_relink_fails_is_read_again_and_moves_the_link_next_cycle(world: World) -> None:
    start(world)
    lead_id, loser = make_synced_lead(world, emailaddress1="ann@example.com")
    winner = world.mk_form_fill(email="ann.lee@example.org", lastName="Lee")
    world.cycle("lead")
    mk_merge(world, winner, loser)
    # Dataverse fails every write of this cycle (past the client's retries): the relink cannot land.
    fault = {"status": 500, "path": "UpdateMultiple", "times": 50}
    world.emulators.control("dataverse", "POST", "/faults", json={"queue": [fault]})
    assert world.cycle("lead").counts.failed >= 1
    world.emulators.control("dataverse", "DELETE", "/faults")
    assert world.cycle("lead").outcome == "succeeded"
    assert lead_links(world) == [(lead_id, str(winner))]  # the merge was not lost with the failed write
    assert world.dv_get("lead", lead_id)["new_marketopersonid"] == str(winner)  # type: ignore[index]
    assert world.ctx.state.errors.count("lead") == 0


def test_a_merge_of_two_synced_persons_keeps_the_winners_pair_and_unlinks_the_loser(world: World) -> None:
    start(world)
    winner_lead, winner = make_synced_lead(world, emailaddress1="ann@example.com")
    loser_lead, loser = make_synced_lead(world, emailaddress1="ann.lee@example.com", jobtitle="CFO")
    mk_merge(world, winner, loser)

    report = world.cycle("lead")
    assert report.outcome == "partial", report  # the held duplicate
    assert lead_links(world) == [(winner_lead, str(winner))]  # the loser's link went with the loser
    assert world.dv_count("lead") == 2  # nothing created, nothing deleted: the salesperson merges the two
    [error] = world.ctx.state.errors.list("lead")
    assert (error.system, error.record_id, error.code) == ("dynamics", loser_lead, "merged_duplicate")
    assert f"merged person {loser} into {winner}, which follows lead {winner_lead}" in error.message
    assert world.dv_get("lead", winner_lead)["jobtitle"] == "CFO"  # type: ignore[index]  # filled in by the merge
    world.dv_update("lead", winner_lead, jobtitle="CEO")
    world.dv_update("lead", loser_lead, telephone1="555-0199")  # the loser's record never re-creates its person
    world.cycles("lead", "lead")
    assert world.mk_get(winner)["title"] == "CEO"  # type: ignore[index]
    assert world.mk_count() == 1 and world.dv_count("lead") == 2
    assert lead_links(world) == [(winner_lead, str(winner))]
    [error] = world.ctx.state.errors.list("lead")
    assert (error.record_id, error.code) == (loser_lead, "merged_duplicate") and error.attempts >= 3  # still held


# --- 4. a lead and a contact with one e-mail: the lead stream goes first, and the contact waits as an error ---------
def assert_the_lead_holds_the_person(world: World, lead_id: str, contact_id: str, email: str) -> None:
    [person] = world.mk_by_email(email)  # one person, never two racing creates
    assert (person["dynamicsLeadId"], person["dynamicsType"]) == (lead_id, "Lead")
    assert not person.get("dynamicsContactId")
    assert lead_links(world) == [(lead_id, str(person["id"]))]
    assert list(world.ctx.state.links.list("contact")) == []
    [error] = world.ctx.state.errors.list("contact")
    assert (error.system, error.record_id, error.code) == ("dynamics", contact_id, "ambiguous_match")
    assert f"lead {lead_id}" in error.message


def test_in_a_full_sync_the_lead_takes_the_person_and_a_contact_with_its_e_mail_is_a_record_error(
    world: World,
) -> None:
    from tests.e2e.test_full_sync import run_job

    contact_id = world.dv_create("contact", firstname="Cy", lastname="Cole", emailaddress1="Same@Example.com")
    lead_id = world.dv_create("lead", firstname="Cy", lastname="Cole", emailaddress1="same@example.com")
    run_job(world, {"entities": ["lead", "contact"]})
    assert_the_lead_holds_the_person(world, lead_id, contact_id, "same@example.com")


def test_parallel_lead_and_contact_timers_take_turns_so_one_e_mail_never_makes_two_persons(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(world)
    lead_id = world.dv_create("lead", firstname="Cy", lastname="Cole", emailaddress1="same@example.com")
    contact_id = world.dv_create("contact", firstname="Cy", lastname="Cole", emailaddress1="same@example.com")
    # Both timers fire at once. Without turns both would match (nobody holds the e-mail yet) before either writes:
    # the barrier holds each cycle's first batch until the other has planned its own (or for 3 s, if it cannot).
    barrier = threading.Barrier(2)
    original = Executor.run

    def run_after_the_other_planned(self: Executor, works: Any, retried: Any = None) -> Any:
        if any(w.plan.create_marketo or w.plan.update_marketo for w in works):
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=3)
        return original(self, works, retried)

    monkeypatch.setattr(Executor, "run", run_after_the_other_planned)
    contexts = {name: build_context(world.settings, world.ctx.state) for name in ("lead", "contact")}
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda name: run_cycle(contexts[name], name), ["lead", "contact"]))
    assert all(r.outcome in ("succeeded", "partial") for r in reports), reports

    assert len(world.mk_by_email("same@example.com")) == 1  # one person
    links = [(s, link.dynamics_id) for s in ("lead", "contact") for link in world.ctx.state.links.list(s)]
    assert len(links) == 1  # followed by one record: the first to take its turn
    [(holder_stream, holder_id)] = links
    other_stream, other_id = ("contact", contact_id) if holder_stream == "lead" else ("lead", lead_id)
    assert holder_id == (lead_id if holder_stream == "lead" else contact_id)
    [error] = world.ctx.state.errors.list(other_stream)  # the other waits, naming who holds the person
    assert (error.record_id, error.code) == (other_id, "ambiguous_match") and holder_id in error.message
    assert world.ctx.state.leases.get("persons") is None  # the turn is given back


# --- found by the chaos suite --------------------------------------------------------------------------------------
def test_a_person_edit_refused_by_a_qualified_lead_is_settled_once_the_contact_takes_the_person(world: World) -> None:
    start(world)
    lead_id, person_id = make_synced_lead(world, emailaddress1="q@example.com", firstname="Quinn")
    world.sales.qualify_lead(lead_id, create_account=False, create_contact=True)
    world.mk_edit(person_id, title="CTO")  # before the sync saw the qualification
    world.cycle("lead")  # still linked to the lead, which Dynamics no longer lets anyone edit: a record error
    [error] = world.ctx.state.errors.list("lead")
    assert (error.system, error.record_id) == ("marketo", str(person_id))
    world.cycles("contact", "lead")  # the contact takes the person (and its edit); the lead's error is settled
    [contact] = world.dv_find("contact", "emailaddress1", "q@example.com")
    assert contact["jobtitle"] == "CTO" and contact["new_marketopersonid"] == str(person_id)
    assert world.ctx.state.errors.count("lead") == 0 and world.ctx.state.errors.count("contact") == 0
