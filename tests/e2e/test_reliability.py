"""Issue 13's holes in the engine, each through the emulators and Azurite, asserting the final state."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.connectors.marketo.budget import marketo_day_end
from sync.engine.changes import MarketoCursor, read_marketo_changes
from sync.engine.cycle import LEASE_DURATION, run_cycle
from sync.engine.execute import Executor
from sync.engine.pairs import PairBuilder
from sync.state import LeaseHeld
from sync.status import EntityStatus, collect_status
from tests.e2e.test_full_sync import run_job
from tests.e2e.test_sync_rules import make_synced_lead, start
from tests.e2e.world import World


def move_marketo_watermark_to_now(world: World, entity: str = "lead") -> None:
    """Past every Marketo change so far, unread by the sync (as after a lost activity page or a restored backup)."""
    mark = world.ctx.state.watermarks.get(entity, "marketo")
    fields = PairBuilder(world.ctx, world.ctx.mapping.entity(entity)).marketo_field_names()
    passed = read_marketo_changes(world.ctx.marketo, MarketoCursor.load(mark.cursor), fields, lambda: False)  # type: ignore[arg-type]
    world.ctx.state.watermarks.advance(mark, passed.cursor.dump())  # type: ignore[union-attr]


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


# --- 2. a full sync reads linked persons fresh, so it repairs drift the incremental sync cannot see ------------------
def test_a_full_sync_reads_linked_persons_fresh_and_repairs_a_pair_changed_behind_its_back(world: World) -> None:
    start(world)
    drifted_lead, drifted_person = make_synced_lead(world, emailaddress1="ann@example.com")
    other_lead, other_person = make_synced_lead(world, emailaddress1="bo@example.com", firstname="Bo")
    world.dv_update("lead", drifted_lead, telephone1="555-0100")
    world.cycle("lead")  # that phone number, and the echoes of the links
    world.mk_edit(drifted_person, phone="555-0101")
    # The sync's Marketo watermark moves past that edit (a lost activity page, a restored backup): only a fresh
    # read of the person can see it now.
    move_marketo_watermark_to_now(world)
    assert world.cycle("lead").counts.updated == 0  # the incremental sync cannot see the drift
    # A salesperson's edit of the same record: the full sync's Dynamics phase writes this pair (and so its
    # Marketo phase leaves it alone); it must merge with what the person holds now, not with the snapshot.
    world.dv_update("lead", drifted_lead, jobtitle="CFO")
    world.dv_update("lead", other_lead, jobtitle="CTO")

    world.clear_request_logs()
    run_job(world, {"entities": ["lead"]})
    lead, person = world.dv_get("lead", drifted_lead), world.mk_get(drifted_person)
    assert (lead["jobtitle"], lead["telephone1"]) == ("CFO", "555-0101") == (person["title"], person["phone"])
    assert world.mk_get(other_person)["title"] == "CTO"
    endpoints = world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    assert not [e for e in endpoints if e.startswith("GET /rest/v1/lead/")], endpoints  # batched reads, none per record
    assert world.cycle("lead").counts.updated == 0  # repaired for good: nothing left to do


# --- 6. a field Marketo leaves out of a lead is null ------------------------------------------------------------------
def test_a_field_cleared_behind_the_syncs_back_is_cleared_by_a_full_sync(world: World) -> None:
    start(world)
    lead_id, person_id = make_synced_lead(world, emailaddress1="ann@example.com", jobtitle="CFO")
    assert world.mk_get(person_id)["title"] == "CFO"
    world.mk_edit(person_id, title=None)  # the emulator then leaves `title` out of the lead it returns
    move_marketo_watermark_to_now(world)
    world.dv_update("lead", lead_id, firstname="Annie")
    run_job(world, {"entities": ["lead"]})
    lead, person = world.dv_get("lead", lead_id), world.mk_get(person_id)
    assert (lead["firstname"], lead.get("jobtitle")) == ("Annie", None)
    assert (person["firstName"], person.get("title")) == ("Annie", None)


# --- 5. a short lease, renewed by the live holder as it goes ------------------------------------------------------
class EngineClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def after_each_batch(monkeypatch: pytest.MonkeyPatch, then: Any) -> None:
    original = PairBuilder.run_batch

    def run_batch(self: PairBuilder, works: Any) -> None:
        original(self, works)
        then()

    monkeypatch.setattr(PairBuilder, "run_batch", run_batch)


def new_leads(world: World, count: int) -> None:
    for i in range(count):
        world.dv_create("lead", lastname=f"L{i}", emailaddress1=f"l{i}@example.com", companyname="L")


def test_a_killed_runners_lease_is_taken_over_within_a_minute(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    start(world)
    world.ctx.clock = clock = EngineClock()
    new_leads(world, 1)

    def killed(*_: Any, **__: Any) -> None:
        raise RuntimeError("SIGKILL")

    monkeypatch.setattr(Executor, "run", killed)
    monkeypatch.setattr(world.ctx.state.leases, "release", lambda lease: False)  # a dead process gives nothing back
    assert run_cycle(world.ctx, "lead").outcome == "failed"
    monkeypatch.undo()
    other = dataclasses.replace(world.ctx, holder="runner-b")
    clock.now += timedelta(seconds=30)
    skipped = run_cycle(other, "lead")
    assert skipped.outcome == "skipped" and "is leased by" in (skipped.error or "")
    clock.now += timedelta(seconds=31)
    assert run_cycle(other, "lead").outcome == "succeeded"
    assert len(world.mk_by_email("l0@example.com")) == 1


def test_the_live_holder_renews_its_lease_page_by_page(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    start(world)
    world.ctx.clock = clock = EngineClock()
    world.ctx.time_budget = timedelta(minutes=10)
    world.ctx.dynamics.page_size = 2
    new_leads(world, 5)
    refused: list[str] = []

    def slow_page_and_a_rival() -> None:
        clock.now += timedelta(seconds=40)  # three pages take two minutes, twice the lease
        try:
            world.ctx.state.leases.acquire("lead", "rival", LEASE_DURATION, now=clock.now)
        except LeaseHeld as held:
            refused.append(held.holder)

    after_each_batch(monkeypatch, slow_page_and_a_rival)
    report = world.cycle("lead")
    assert report.outcome == "succeeded" and report.counts.created == 5
    assert len(refused) >= 3 and set(refused) == {world.ctx.holder}  # the rival never got in
    assert world.ctx.state.leases.get("lead") is None  # released at the end


def test_a_holder_that_lost_its_lease_stops_writing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    start(world)
    world.ctx.clock = clock = EngineClock()
    world.ctx.time_budget = timedelta(minutes=10)
    world.ctx.dynamics.page_size = 2
    new_leads(world, 5)
    taken: list[str] = []

    def paused_and_taken_over() -> None:
        if not taken:
            clock.now += timedelta(minutes=2)  # the holder stalled past its lease; a rival takes the entity
            taken.append(world.ctx.state.leases.acquire("lead", "rival", LEASE_DURATION, now=clock.now).holder)

    after_each_batch(monkeypatch, paused_and_taken_over)
    report = run_cycle(world.ctx, "lead")
    assert report.outcome == "failed" and "lost the lease of lead" in (report.error or ""), report
    assert report.counts.created == 2 and world.mk_count() == 2  # the first page only: then it stopped
    assert world.ctx.state.leases.get("lead").holder == "rival"  # type: ignore[union-attr]  # left to the rival
    monkeypatch.undo()
    rival = run_cycle(dataclasses.replace(world.ctx, holder="rival"), "lead")
    assert rival.outcome == "succeeded" and rival.counts.created == 3
    assert world.mk_count() == 5 and all(len(world.mk_by_email(f"l{i}@example.com")) == 1 for i in range(5))


def lead_status(world: World, now: datetime) -> EntityStatus:
    return next(e for e in collect_status(world.ctx.state, ["lead"], now=now).entities if e.entity == "lead")


# --- 7. Marketo's daily quota: stop at a page boundary, wait for 00:00 US Central, continue ---------------------------
def test_the_daily_quota_stops_a_cycle_cleanly_and_the_next_day_continues(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(world)
    world.ctx.clock = clock = EngineClock()
    world.ctx.dynamics.page_size = 2
    new_leads(world, 5)
    world.emulators.control("marketo", "PATCH", "/config", json={"daily_quota": 50_000})

    def quota_spent_by_others() -> None:
        world.emulators.control("marketo", "POST", "/usage", json={"used": 50_000})

    after_each_batch(monkeypatch, quota_spent_by_others)  # after the first page, Marketo answers 607
    report = run_cycle(world.ctx, "lead")
    assert report.outcome == "partial" and not report.complete and "607" in (report.error or ""), report
    assert report.resumes_at == marketo_day_end(clock.now) and "resumes at" in (report.error or "")
    assert report.counts.created == 2 and world.mk_count() == 2  # the first page, committed; nothing else written
    status = lead_status(world, clock.now)
    assert status.resumes_at == report.resumes_at and status.last_runs[0].resumes_at == report.resumes_at
    monkeypatch.undo()

    world.clear_request_logs()
    clock.now = report.resumes_at - timedelta(minutes=1)  # type: ignore[operator]  # later that day: it waits
    waiting = run_cycle(world.ctx, "lead")
    assert waiting.outcome == "skipped" and "resumes at" in (waiting.error or "")
    assert world.mk_api_calls() == 0  # not even a call answered 607

    marketo_now = datetime.fromtimestamp(world.emulators.control("marketo", "GET", "/clock").json()["now"], UTC)
    to_midnight = (marketo_day_end(marketo_now) - marketo_now).total_seconds()
    world.emulators.control("marketo", "POST", "/clock/advance", json={"seconds": to_midnight + 60})
    clock.now = report.resumes_at + timedelta(minutes=1)  # type: ignore[operator]  # the next day, both sides
    following = world.cycle("lead")
    assert following.outcome == "succeeded" and following.counts.created == 3, following
    for i in range(5):
        [person] = world.mk_by_email(f"l{i}@example.com")
        assert person["dynamicsLeadId"]  # each lead once, linked
    assert lead_status(world, clock.now).resumes_at is None
