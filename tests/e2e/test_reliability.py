"""Issue 13's holes in the engine, each through the emulators and Azurite, asserting the final state."""

from __future__ import annotations

from tests.e2e.test_sync_rules import make_synced_lead, start
from tests.e2e.world import World


# --- 1. a person update that Marketo refuses is a record error; the rest of the batch syncs ---------------------------
def test_a_person_update_marketo_refuses_is_a_record_error_and_is_retried(world: World) -> None:
    start(world)
    bad_lead, bad_person = make_synced_lead(world, emailaddress1="ann@example.com")
    good_lead, good_person = make_synced_lead(world, emailaddress1="bo@example.com", firstname="Bo")
    mark = world.ctx.state.watermarks.get("lead", "dynamics")
    # Dataverse takes any text in emailaddress1; Marketo refuses an invalid address on update (1003).
    world.dv_update("lead", bad_lead, emailaddress1="ann at example dot com", jobtitle="CFO")
    world.dv_update("lead", good_lead, jobtitle="CTO")
    report = world.cycle("lead")
    assert report.outcome == "partial" and report.counts.failed == 1 and report.counts.updated == 1
    [error] = list(world.ctx.state.errors.list("lead"))
    assert (error.system, error.record_id, error.operation, error.code) == ("dynamics", bad_lead, "update", "1003")
    assert f"person {bad_person}" in error.message and "'ann at example dot com'" in error.message
    assert "email" in error.message.partition("fields written:")[2]  # Marketo's reason names no field: we do
    assert world.mk_get(good_person)["title"] == "CTO"  # the rest of the batch synced
    person = world.mk_get(bad_person)
    assert (person["email"], person.get("title")) == ("ann@example.com", None)  # nothing half-written
    assert world.ctx.state.watermarks.get("lead", "dynamics").cursor != mark.cursor  # the cycle committed

    world.cycle("lead")  # still bad at the source: read again, refused again
    assert world.ctx.state.errors.get("lead", "dynamics", bad_lead).attempts == 2  # type: ignore[union-attr]
    world.dv_update("lead", bad_lead, emailaddress1="ann@example.org")  # fixed at the source
    assert world.cycle("lead").outcome == "succeeded"
    assert world.ctx.state.errors.count("lead") == 0
    person = world.mk_get(bad_person)
    assert (person["email"], person["title"]) == ("ann@example.org", "CFO")
