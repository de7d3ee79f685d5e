"""Issue 13's holes 3 and 4: a Marketo merge moves the link to the winner; a lead and a contact with one e-mail
end the same way whatever order they run in."""

from __future__ import annotations

from typing import Any

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
