"""A full sync to Dynamics matches Marketo persons against one read of what Dataverse holds (dynamics_index.py):
no per-page lookups, only the matched records read whole, twins across pages refused, a lead created in Dynamics
between two messages matched, and a table too big for the index looked up per page instead."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sync.engine import dynamics_index, marketo_pages
from sync.engine.fullsync import view_job
from tests.e2e.test_full_sync import run_job, start
from tests.e2e.world import World


def persons(world: World, count: int, prefix: str = "m") -> dict[str, int]:
    return {
        f"{prefix}{i}@example.com": world.mk_form_fill(
            email=f"{prefix}{i}@example.com", firstName=f"F{i}", lastName=f"L{i}", syncToDynamics=True
        )
        for i in range(count)
    }


def lead_of(world: World, email: str) -> dict[str, Any]:
    [lead] = world.dv_find("lead", "emailaddress1", email)
    return lead


def assert_linked(world: World, email: str, person_id: int) -> str:
    lead = lead_of(world, email)
    link = world.ctx.state.links.get_by_marketo_id("lead", str(person_id))
    assert link is not None and link.dynamics_id == lead["leadid"], (email, link)
    return str(lead["leadid"])


@pytest.fixture
def pages_of_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(marketo_pages, "IDS_PER_MESSAGE", 4)  # REST pages of 4 ids


def test_persons_match_existing_leads_in_the_index_without_lookups(world: World, pages_of_four: None) -> None:
    by_email = world.dv_create("lead", lastname="Old", emailaddress1="M2@Example.com", companyname="Co")
    people = persons(world, 10)
    by_link = world.dv_create(
        "lead", lastname="Named", emailaddress1="other@example.com", new_marketopersonid=str(people["m7@example.com"])
    )
    unrelated = world.dv_create("lead", lastname="Else", emailaddress1="else@example.com")
    world.ctx.match_index = "always"
    world.clear_request_logs()
    view = run_job(world, {"entities": ["lead"], "direction": "to_dynamics"})
    calls = world.ctx.dynamics.calls
    task = view.tasks[0]
    assert task["created"] == 8 and task["updated"] == 2 and task["failed"] == 0, task
    assert calls["find_by"] == 0 and calls["match_index"] == 1, calls  # one read, no lookups
    log = world.emulators.control("dataverse", "GET", "/requests", params={"client": "sync"}).json()
    # the index, then the matched leads read whole: m2 in the first page of 4, m7 in the second
    assert log["by_table_operation"]["RetrieveMultiple:lead"] == 1 + 2, log["by_table_operation"]
    assert assert_linked(world, "m2@example.com", people["m2@example.com"]) == by_email
    link = world.ctx.state.links.get_by_marketo_id("lead", str(people["m7@example.com"]))
    assert link is not None and link.dynamics_id == by_link
    for email, person_id in people.items():
        if email not in ("m2@example.com", "m7@example.com"):
            assert_linked(world, email, person_id)
    assert world.dv_get("lead", unrelated).get("new_marketopersonid") is None  # type: ignore[union-attr]
    assert world.dv_count("lead") == 11  # 3 before, 8 new: nobody twice


def test_twins_in_two_pages_of_one_message_give_one_lead_and_an_error(world: World, pages_of_four: None) -> None:
    first = world.mk_form_fill(email="twin@example.com", firstName="A", lastName="Twin", syncToDynamics=True)
    persons(world, 5)
    second = world.mk_form_fill(email="b@example.com", firstName="B", lastName="Twin", syncToDynamics=True)
    world.mk_edit(second, email="TWIN@example.com")  # a form fill would have found the first twin
    world.ctx.match_index = "always"
    job_id = start(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert world.drain() == 1  # one message: the twins are in its first and second page
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded" and view.tasks[0]["pages_done"] == 2, view
    assert world.ctx.dynamics.calls["find_by"] == 0
    lead = assert_linked(world, "twin@example.com", first)
    [error] = world.ctx.state.errors.list("lead")
    assert error.record_id == str(second) and f"Marketo person {first}" in error.message, error
    assert f"lead {lead}" in error.message and "twin@example.com" in error.message.casefold(), error
    assert world.ctx.state.links.get_by_marketo_id("lead", str(second)) is None
    assert world.dv_count("lead") == 6


def test_a_lead_created_in_dynamics_during_the_job_is_matched_not_duplicated(world: World, pages_of_four: None) -> None:
    people = persons(world, 12)
    world.ctx.match_index = "always"
    world.ctx.message_seconds = 0  # a page per message: something happens between two of them
    created: dict[str, str] = {}

    def create_once(delivery: Any) -> None:
        if delivery.message.page == 1 and not created:
            email = next(e for e in people if not world.dv_find("lead", "emailaddress1", e))  # not synced yet
            created[email] = world.dv_create("lead", lastname="Came in meanwhile", emailaddress1=email.upper())

    job_id = start(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert world.drain(on_message=create_once) == 3
    assert view_job(world.ctx, job_id).state == "succeeded"  # type: ignore[union-attr]
    [(email, lead_id)] = created.items()
    assert assert_linked(world, email, people[email]) == lead_id
    for other, person_id in people.items():
        assert_linked(world, other, person_id)
    assert world.ctx.dynamics.calls["find_by"] == 0
    assert world.dv_count("lead") == 12


def test_a_lead_readdressed_after_the_index_was_read_is_not_matched_by_its_old_address(
    world: World, pages_of_four: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = world.dv_create("lead", lastname="Moved", emailaddress1="m1@example.com")
    people = persons(world, 3)
    world.ctx.match_index = "always"
    read = dynamics_index.DynamicsMatchIndex.read

    def then_readdress(*args: Any, **kwargs: Any) -> Any:
        index = read(*args, **kwargs)
        world.dv_update("lead", moved, emailaddress1="elsewhere@example.com")
        return index

    monkeypatch.setattr(dynamics_index.DynamicsMatchIndex, "read", then_readdress)
    run_job(world, {"entities": ["lead"], "direction": "to_dynamics"})
    new = assert_linked(world, "m1@example.com", people["m1@example.com"])
    assert new != moved and world.dv_get("lead", moved).get("new_marketopersonid") is None  # type: ignore[union-attr]
    assert world.dv_count("lead") == 4


def test_a_table_too_big_for_the_index_is_looked_up_and_the_task_keeps_that(world: World, pages_of_four: None) -> None:
    existing = world.dv_create("lead", lastname="Old", emailaddress1="m0@example.com")
    for i in range(3):
        world.dv_create("lead", lastname=f"Other{i}", emailaddress1=f"other{i}@example.com")
    people = persons(world, 6)
    world.ctx.dynamics.page_size = 2  # 4 leads: more than the one page a first page's lookups would pay for
    world.ctx.message_seconds = 0
    job_id = start(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert world.drain() == 2
    assert view_job(world.ctx, job_id).state == "succeeded"  # type: ignore[union-attr]
    assert world.ctx.dynamics.calls["match_index"] == 2  # gave up in its second page, once: the next message did not
    assert world.ctx.dynamics.calls["find_by"] == 2  # a lookup per page instead
    task = world.ctx.state.jobs.get_task(job_id, "lead", "to_dynamics")
    assert task.dynamics_index is False
    assert assert_linked(world, "m0@example.com", people["m0@example.com"]) == existing
    for email, person_id in people.items():
        assert_linked(world, email, person_id)
    assert world.dv_count("lead") == 4 + 5


def test_a_pages_creates_run_while_the_next_page_is_planned(
    world: World, pages_of_four: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync.engine.execute import Executor
    from sync.engine.pairs import PairBuilder

    people = persons(world, 12)
    world.ctx.match_index = "always"
    planning = threading.Event()
    overlapped: list[bool] = []
    start_writes, plan_page = Executor.start, PairBuilder.marketo_batch

    def start_when_the_next_page_is_planned(self: Any, works: Any, *args: Any, **kwargs: Any) -> Any:
        if not overlapped:  # the first page's creates wait (bounded) for the second page's planning to begin
            overlapped.append(planning.wait(timeout=20))
        return start_writes(self, works, *args, **kwargs)

    plan_calls: list[int] = []

    def planned(self: Any, *args: Any, **kwargs: Any) -> Any:
        if plan_calls:  # a page after the first is being planned
            planning.set()
        plan_calls.append(1)
        return plan_page(self, *args, **kwargs)

    monkeypatch.setattr(Executor, "start", start_when_the_next_page_is_planned)
    monkeypatch.setattr(PairBuilder, "marketo_batch", planned)
    view = run_job(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert overlapped == [True]  # the second page was being planned while the first page's creates waited
    assert view.tasks[0]["created"] == 12 and view.tasks[0]["failed"] == 0, view.tasks
    for email, person_id in people.items():
        assert_linked(world, email, person_id)
    assert world.dv_count("lead") == 12
