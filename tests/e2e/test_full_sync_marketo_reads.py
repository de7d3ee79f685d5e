"""How a full sync to Dynamics reads Marketo: by REST over a narrow, proven id range, else by Bulk Extract."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from sync.engine import marketo_pages
from sync.engine.fullsync import view_job
from tests.e2e.test_full_sync import run_job, start
from tests.e2e.world import World

EXPORT = "/bulk/v1/leads/export"


def seed(world: World, count: int, days: float = 300, activities: bool = True, **values: Any) -> dict[str, int]:
    body = {"count": count, "days": days, "activities": activities, "values": values}
    return world.emulators.control("marketo", "POST", "/seed", json=body).json()


def marketo_endpoints(world: World) -> dict[str, int]:
    return world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]


def export_calls(world: World) -> int:
    return sum(n for endpoint, n in marketo_endpoints(world).items() if EXPORT in endpoint)


def run_to_dynamics(world: World) -> dict[str, Any]:
    world.clear_request_logs()
    return run_job(world, {"entities": ["lead"], "direction": "to_dynamics"}).tasks[0]


def assert_one_lead_per_synced_person(world: World, ids: range) -> None:
    """Every surviving person marked syncToDynamics is one Dynamics lead, linked; no other person is."""
    wanted = 0
    for person_id in ids:
        person = world.mk_get(person_id)
        link = world.ctx.state.links.get_by_marketo_id("lead", str(person_id))
        if person is None or not person.get("syncToDynamics"):
            assert link is None, (person_id, link)
            continue
        wanted += 1
        assert link is not None, person_id
        [lead] = world.dv_find("lead", "emailaddress1", person["email"])
        assert lead["leadid"] == link.dynamics_id and lead["lastname"] == person["lastName"]
    assert world.dv_count("lead") == wanted


def test_a_small_marketo_with_a_long_history_is_read_by_rest_and_no_export(world: World, monkeypatch) -> None:
    synced = seed(world, 30, days=360, syncToDynamics=True)
    others = seed(world, 10, days=360)
    world.mk_delete(synced["firstId"] + 3)  # a gap in the ids: read as nothing
    monkeypatch.setattr(marketo_pages, "IDS_PER_MESSAGE", 16)  # 40 ids: three messages
    task = run_to_dynamics(world)
    assert export_calls(world) == 0
    assert task["read"] == 39 and task["created"] == 29 and task["pages_done"] == 3
    assert task["expected_records"] == 40
    by_id = [n for e, n in marketo_endpoints(world).items() if e.endswith("/rest/v1/leads.json")]
    # 3 pages of 16 ids, plus the job start's oldest-person probe and the probe above the newest id
    assert sum(by_id) == 3 + 1 + 1, marketo_endpoints(world)
    assert_one_lead_per_synced_person(world, range(synced["firstId"], others["lastId"] + 2))


@pytest.mark.parametrize("match_index", ["never", "always"])
def test_a_phase_whose_messages_end_on_time_goes_on_in_the_next_message(
    world: World, monkeypatch: pytest.MonkeyPatch, match_index: str
) -> None:
    synced = seed(world, 12, days=100, syncToDynamics=True)
    monkeypatch.setattr(marketo_pages, "IDS_PER_MESSAGE", 4)
    world.ctx.message_seconds = 0  # each message's time is spent after its first page
    world.ctx.match_index = match_index
    job_id = start(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert world.drain() == 3
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    assert view.tasks[0]["pages_done"] == 3 and view.tasks[0]["created"] == 12, view.tasks
    assert_one_lead_per_synced_person(world, range(synced["firstId"], synced["lastId"] + 2))


@pytest.mark.parametrize(("message_seconds", "messages", "file_requests"), [(240, 1, 3), (0, 9, 9)])
def test_an_export_file_stays_open_from_page_to_page_and_a_message_resumes_it_where_the_last_stopped(
    world: World, monkeypatch: pytest.MonkeyPatch, message_seconds: float, messages: int, file_requests: int
) -> None:
    seed(world, 30, days=75, syncToDynamics=True)  # three windows of 31 days at most, about 10 persons each
    world.ctx.bulk_extract_threshold = 0  # never by REST
    monkeypatch.setattr(marketo_pages, "ROWS_PER_MESSAGE", 4)  # pages of 4 rows: three or so a window
    world.ctx.message_seconds = message_seconds
    world.clear_request_logs()
    job_id = start(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert world.drain() == messages
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    assert view.tasks[0]["read"] == 30 and view.tasks[0]["created"] == 30, view.tasks
    endpoints = marketo_endpoints(world)
    assert endpoints[f"GET {EXPORT}/{{id}}/file.json"] == file_requests, endpoints  # a message resumes by Range
    assert endpoints[f"POST {EXPORT}/create.json"] == 3, endpoints
    assert world.dv_count("lead") == 30 and world.ctx.state.links.count("lead") == 30


def test_an_id_range_wider_than_the_threshold_is_read_by_bulk_extract(world: World) -> None:
    synced = seed(world, 30, days=20, syncToDynamics=True)
    world.ctx.bulk_extract_threshold = 29
    task = run_to_dynamics(world)
    assert export_calls(world) > 0
    assert task["read"] == 30 and task["created"] == 30
    assert_one_lead_per_synced_person(world, range(synced["firstId"], synced["lastId"] + 2))


def test_a_person_above_the_newest_new_lead_activity_sends_the_read_to_bulk_extract(world: World) -> None:
    synced = seed(world, 20, days=20, syncToDynamics=True)
    quiet = seed(world, 5, days=20, activities=False, syncToDynamics=True)  # no New Lead activity: unproven
    task = run_to_dynamics(world)
    assert export_calls(world) > 0
    assert task["read"] == 25 and task["created"] == 25
    assert_one_lead_per_synced_person(world, range(synced["firstId"], quiet["lastId"] + 2))


def test_persons_without_any_new_lead_activity_are_read_by_bulk_extract(world: World) -> None:
    synced = seed(world, 12, days=20, activities=False, syncToDynamics=True)
    task = run_to_dynamics(world)
    assert export_calls(world) > 0
    assert task["read"] == 12 and task["created"] == 12
    assert_one_lead_per_synced_person(world, range(synced["firstId"], synced["lastId"] + 2))


def test_a_rest_read_message_delivered_twice_changes_nothing(world: World, monkeypatch) -> None:
    synced = seed(world, 20, days=100, syncToDynamics=True)
    monkeypatch.setattr(marketo_pages, "IDS_PER_MESSAGE", 8)
    seen: list = []
    job_id = start(world, {"entities": ["lead"], "direction": "to_dynamics"})
    world.drain(on_message=seen.append)
    before = view_job(world.ctx, job_id)
    assert before is not None and before.state == "succeeded" and before.tasks[0]["pages_done"] == 3
    world.clear_request_logs()
    for delivery in seen:
        world.queue.send(delivery.message)
    world.drain()
    assert world.dv_sync_calls() == 0 and world.mk_api_calls() == 0
    assert view_job(world.ctx, job_id) == before
    assert_one_lead_per_synced_person(world, range(synced["firstId"], synced["lastId"] + 2))


def test_the_first_windows_exports_all_go_out_before_the_read_waits_for_the_first(world: World) -> None:
    """Marketo runs 2 exports at once: the first window's export is queued with the next ones', not waited for
    alone, so two run from the start."""
    seed(world, 50, days=150, syncToDynamics=True)  # five windows of 31 days at most
    world.ctx.bulk_extract_threshold = 0  # never by REST
    task = run_to_dynamics(world)
    assert task["read"] == 50 and task["created"] == 50
    entries = world.emulators.control("marketo", "GET", "/requests").json()["entries"]
    order = [e["endpoint"] for e in entries if EXPORT in str(e["endpoint"])]
    first_poll = order.index(f"GET {EXPORT}/{{id}}/status.json")
    assert order[:first_poll].count(f"POST {EXPORT}/{{id}}/enqueue.json") == 5, order  # every window's, then a wait
    assert order.count(f"POST {EXPORT}/create.json") == 5, order  # one export a window, none twice


def test_while_a_window_is_read_the_next_windows_export_is_waited_for_and_its_file_opened(world: World) -> None:
    seed(world, 30, days=75, syncToDynamics=True)  # three windows of 31 days at most
    now = world.ctx.marketo.server_time() or world.ctx.clock()
    cursor = json.dumps({"window": (now - timedelta(days=80)).isoformat(), "until": now.isoformat()})
    world.clear_request_logs()
    files = f"GET {EXPORT}/{{id}}/file.json"
    read: list[int] = []
    with contextlib.closing(marketo_pages.MarketoPages(world.ctx, "lead", ["email"], goes_on=lambda: True)) as pages:
        finished = False
        while not finished:
            persons, cursor, finished, _ = pages.next(cursor)
            read.extend(p.id for p in persons)
            if not finished and read:  # a window's rows are in hand: the next window's file is asked for meanwhile
                deadline = time.monotonic() + 20
                while marketo_endpoints(world).get(files, 0) < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert marketo_endpoints(world).get(files, 0) >= 2, marketo_endpoints(world)
                break
        while not finished:
            persons, cursor, finished, _ = pages.next(cursor)
            read.extend(p.id for p in persons)
    assert len(read) == len(set(read)) == 30  # every person once, from the files made ready
    endpoints = marketo_endpoints(world)
    assert endpoints[files] == 3 and endpoints[f"POST {EXPORT}/create.json"] == 3, endpoints


def test_a_window_made_ready_for_a_run_that_then_ends_asks_for_no_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(world, 30, days=75, syncToDynamics=True)
    now = world.ctx.marketo.server_time() or world.ctx.clock()
    cursor = json.dumps({"window": (now - timedelta(days=80)).isoformat(), "until": now.isoformat()})
    marketo = world.ctx.marketo
    wait, release, waiting = marketo.wait_lead_export, threading.Event(), threading.Event()
    calls: list[str] = []

    def wait_then_hold(export_id: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(export_id)
        status = wait(export_id, *args, **kwargs)
        if len(calls) == 2:  # the second window's, on the thread that makes it ready: held until the run ended
            waiting.set()
            assert release.wait(timeout=20)
        return status

    monkeypatch.setattr(marketo, "wait_lead_export", wait_then_hold)
    world.clear_request_logs()
    pages = marketo_pages.MarketoPages(world.ctx, "lead", ["email"], goes_on=lambda: True)
    persons, _, finished, _ = pages.next(cursor)
    assert persons and not finished
    assert waiting.wait(timeout=20)
    pages.close()  # the message ends while the next window is being made ready
    release.set()
    for thread in threading.enumerate():  # the thread that made it ready ends (it would have asked by then)
        if thread.name.startswith("next-window"):
            thread.join(timeout=20)
    assert marketo_endpoints(world).get(f"GET {EXPORT}/{{id}}/file.json", 0) == 1, marketo_endpoints(world)
