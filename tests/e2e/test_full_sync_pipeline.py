"""A first full sync to Marketo at scale, in small: pages in flight within a message, the job-level match index,
imported ids proven by one export, and the checkpoints that make a message safe to run twice or die halfway."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from sync.engine import imported_ids
from sync.engine.fullsync import view_job
from tests.e2e.test_full_sync import emails_of_leads, one_person_each, run_job, start
from tests.e2e.world import World


@pytest.fixture
def lookups(world: World, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """get_leads calls by filter type (they still go to Marketo)."""
    seen: Counter[str] = Counter()
    real = world.ctx.marketo.get_leads

    def counted(filter_type: str, values: Any, fields: Any, batch_size: int = 300) -> Any:
        seen[filter_type] += 1
        return real(filter_type, values, fields, batch_size)

    monkeypatch.setattr(world.ctx.marketo, "get_leads", counted)
    return seen


def leads(world: World, count: int, **extra: Any) -> dict[str, str]:
    return {
        f"p{i}@example.com": world.dv_create(
            "lead", lastname=f"P{i}", emailaddress1=f"p{i}@example.com", companyname="Co", **extra
        )
        for i in range(count)
    }


def linked(world: World, email: str) -> tuple[str, str]:
    [person] = world.mk_by_email(email)
    link = world.ctx.state.links.get_by_marketo_id("lead", str(person["id"]))
    assert link is not None, email
    return link.dynamics_id, str(person["id"])


def drain_or_fail(world: World, hang: str, seconds: float = 120) -> None:
    """Drain the queue on a thread, failing the test (instead of hanging it) when that takes over `seconds`."""
    import threading

    drained = threading.Thread(target=world.drain, daemon=True)
    drained.start()
    drained.join(timeout=seconds)
    assert not drained.is_alive(), hang


def indexed_job(world: World, monkeypatch: pytest.MonkeyPatch, page_size: int = 5) -> None:
    world.upstream("lead")
    world.ctx.dynamics.page_size = page_size
    world.ctx.match_index = "always"
    world.ctx.bulk_import_threshold = 2
    monkeypatch.setattr(imported_ids, "EXPORT_CALLS", 0)  # ids by export at any size


@pytest.mark.parametrize(("unit_pages", "imports"), [(1, 4), (2, 2), (4, 1)])
def test_pages_match_against_one_index_and_imported_ids_come_from_an_export(
    world: World, monkeypatch: pytest.MonkeyPatch, lookups: Counter[str], unit_pages: int, imports: int
) -> None:
    ids = leads(world, 17)
    existing = world.mk_form_fill(email="P3@example.com", firstName="Already")  # matched by e-mail, in the index
    indexed_job(world, monkeypatch)
    world.ctx.import_unit_pages = unit_pages
    world.clear_request_logs()
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    messages = world.drain()
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    task = next(t for t in view.tasks if t["entity"] == "lead")
    assert messages >= 1 and task["pages_done"] == 4 and task["created"] == 16 and task["updated"] == 1
    assert lookups["email"] == 0 and lookups["dynamicsLeadId"] == 0  # no per-page lookups, no id lookups
    endpoints = world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    # an import per unit of `unit_pages` pages (4 pages of at most 5 rows: one file each); the index, then at most
    # one id export each (none for an import whose span the exports before it already held)
    assert endpoints["POST /bulk/v1/leads.json"] == imports
    assert 2 <= endpoints["POST /bulk/v1/leads/export/create.json"] <= 1 + imports
    one_person_each(world, list(ids))
    for email, lead_id in ids.items():
        assert linked(world, email)[0] == lead_id
    assert linked(world, "p3@example.com")[1] == str(existing)
    assert world.ctx.state.links.count("lead") == 17 == world.mk_count()


def test_a_person_created_in_marketo_during_the_job_is_matched_not_duplicated(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = leads(world, 12)
    indexed_job(world, monkeypatch, page_size=4)
    world.ctx.message_seconds = 0  # a page per message, so that something happens between two of them
    late_email = sorted(ids)[-1]  # of the last page (change tracking pages in creation order? not assumed:)
    created: dict[str, int] = {}

    def create_once(delivery: Any) -> None:
        if delivery.message.page == 1 and not created:
            done = {e for e in ids if world.mk_by_email(e)}
            email = next(e for e in sorted(ids) if e not in done)  # a record no page has synced yet
            created[email] = world.mk_form_fill(email=email, firstName="Came in meanwhile")

    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    world.drain(on_message=create_once)
    assert view_job(world.ctx, job_id).state == "succeeded"  # type: ignore[union-attr]
    [(email, person_id)] = created.items()
    assert late_email
    one_person_each(world, list(ids))
    assert linked(world, email) == (ids[email], str(person_id))
    assert world.mk_get(person_id)["firstName"] == "Came in meanwhile"  # type: ignore[index]
    assert world.mk_count() == 12


def test_twins_in_two_pages_of_one_message_give_one_person_and_an_error(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = world.dv_create("lead", lastname="Twin", emailaddress1="twin@example.com", companyname="Co")
    others = leads(world, 5)
    second = world.dv_create("lead", lastname="Twin", emailaddress1="TWIN@example.com", companyname="Co")
    indexed_job(world, monkeypatch, page_size=3)
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    world.drain()
    assert view_job(world.ctx, job_id).state == "succeeded"  # type: ignore[union-attr]
    one_person_each(world, [*others, "twin@example.com"])
    assert linked(world, "twin@example.com")[0] == first
    [error] = world.ctx.state.errors.list("lead")
    assert error.record_id == second and f"lead {first}" in error.message, error


def test_a_message_that_died_halfway_goes_on_from_its_last_checkpoint(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery dies after some pages checkpointed (the link store fails on its third page); the redelivery does
    the rest, and nothing is duplicated: the pages it redoes are matched by their link field in the index."""
    ids = leads(world, 14)
    indexed_job(world, monkeypatch, page_size=3)
    world.ctx.import_unit_pages = 1  # an import per page: pages finish (and save) one by one
    links = world.ctx.state.links
    real_save = links.save
    saves = {"n": 0}

    def save_failing_once(batch: Any, *args: Any, **kw: Any) -> int:
        saves["n"] += 1
        if saves["n"] == 3:
            raise ConnectionError("storage went away")
        return real_save(batch, *args, **kw)

    monkeypatch.setattr(links, "save", save_failing_once)
    view = run_job(world, {"entities": ["lead"], "direction": "to_marketo"})
    task = next(t for t in view.tasks if t["entity"] == "lead")
    assert task["pages_done"] == 5 and task["failed"] == 0
    assert saves["n"] >= 4  # the failed save was made again, on the second delivery
    one_person_each(world, list(ids))
    for email, lead_id in ids.items():
        assert linked(world, email)[0] == lead_id
    assert world.mk_count() == 14 == links.count("lead")
    assert emails_of_leads(world)


def test_an_import_unit_whose_links_fail_is_done_again_and_the_units_before_it_stay(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units of two pages (one import, one id export each): the second unit's save fails; the first unit's pages
    keep their checkpoint, the redelivery redoes the second from there, and no person is made twice."""
    ids = leads(world, 14)
    indexed_job(world, monkeypatch, page_size=3)
    world.ctx.import_unit_pages = 2
    links = world.ctx.state.links
    real_save = links.save
    failed_at: list[int] = []

    def save_failing_once(batch: Any, *args: Any, **kw: Any) -> int:
        checkpoint = world.ctx.state.jobs.get_task(job_id, "lead", "to_marketo")
        if not failed_at and checkpoint.pages_done >= 2:  # the first save of the second unit
            failed_at.append(checkpoint.pages_done)
            raise ConnectionError("storage went away")
        return real_save(batch, *args, **kw)

    monkeypatch.setattr(links, "save", save_failing_once)
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    world.drain()
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    task = next(t for t in view.tasks if t["entity"] == "lead")
    assert task["pages_done"] == 5 and task["failed"] == 0
    # the first unit's two pages had committed (with the next page too, when it finished in time to share their
    # save), and kept their checkpoint
    assert len(failed_at) == 1 and failed_at[0] >= 2, failed_at
    one_person_each(world, list(ids))
    for email, lead_id in ids.items():
        assert linked(world, email)[0] == lead_id
    assert world.mk_count() == 14 == links.count("lead")


def test_an_import_whose_upload_fails_fails_its_unit_and_the_redelivery_does_it_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Imports go up on a thread of their own while the next pages are planned. The second unit's upload fails
    there: the delivery fails with the upload's own (typed) error, the first unit keeps its checkpoint (its persons
    are never sent again), and the redelivery sends the rest: every record one person, linked."""
    import threading

    from sync.connectors.marketo import TransientError
    from sync.engine import fullsync

    ids = leads(world, 14)
    indexed_job(world, monkeypatch, page_size=3)  # 5 pages: units of 2, 2 and 1
    world.ctx.import_unit_pages = 2
    marketo = world.ctx.marketo
    real_start = marketo.start_import_leads
    uploads: list[tuple[str, list[str]]] = []  # the thread, the e-mails in the file

    def second_upload_fails(rows: Any, *args: Any, **kw: Any) -> Any:
        uploads.append((threading.current_thread().name, [row["email"] for row in rows]))
        if len(uploads) == 2:
            raise TransientError("604", "bulk_import_create: no answer within 120 s")
        return real_start(rows, *args, **kw)

    real_process = fullsync.process_message
    failures: list[BaseException] = []

    def recorded(*args: Any, **kw: Any) -> Any:
        try:
            return real_process(*args, **kw)
        except BaseException as exc:
            failures.append(exc)
            raise

    monkeypatch.setattr(marketo, "start_import_leads", second_upload_fails)
    monkeypatch.setattr(fullsync, "process_message", recorded)
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    drain_or_fail(world, "a failed upload hung its unit's pages")
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    assert [type(exc) for exc in failures] == [TransientError] and failures[0].code == "604"  # type: ignore[attr-defined]
    assert all(thread.startswith("import-upload") for thread, _ in uploads), uploads  # never the planning thread
    first_unit = uploads[0][1]
    assert len(first_unit) == 6 and sum(first_unit[0] in emails for _, emails in uploads) == 1  # checkpoint kept
    failed_unit = uploads[1][1]
    assert len(failed_unit) == 6 and [emails for _, emails in uploads[2:]].count(failed_unit) == 1  # sent again once
    one_person_each(world, list(ids))
    for email, lead_id in ids.items():
        assert linked(world, email)[0] == lead_id
    assert world.mk_count() == 14 == world.ctx.state.links.count("lead")


def test_a_run_that_fails_inside_an_unsent_import_unit_does_not_hang_and_is_done_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dataverse read fails at the third page, while the first two wait in a unit of four that was never sent:
    their finishers give up instead of waiting for ever, nothing is linked or created, and the redelivery does it."""
    ids = leads(world, 14)
    indexed_job(world, monkeypatch, page_size=3)
    world.ctx.import_unit_pages = 4
    real_read = world.ctx.dynamics.read_changes
    reads = {"n": 0, "failed": 0}

    def read_failing_at_the_third_page(*args: Any, **kw: Any) -> Any:
        reads["n"] += 1
        for number, page in enumerate(real_read(*args, **kw)):
            if reads["n"] == 1 and number == 2:  # the first delivery's third page
                reads["failed"] += 1
                raise ConnectionError("Dataverse went away")
            yield page

    monkeypatch.setattr(world.ctx.dynamics, "read_changes", read_failing_at_the_third_page)
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    drain_or_fail(world, "the run hung on an import unit that was never sent")
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    assert reads["failed"] == 1 and reads["n"] >= 2  # the failed delivery, then the one that did the work
    one_person_each(world, list(ids))
    for email, lead_id in ids.items():
        assert linked(world, email)[0] == lead_id
    assert world.mk_count() == 14 == world.ctx.state.links.count("lead")


def test_pages_without_creates_behind_an_open_unit_do_not_fill_the_pipeline(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of new persons opens a unit of two; the pages after it only update persons Marketo already has. The
    unit goes out after two pages whatever they hold, so the pages waiting behind it never take every slot."""
    new = leads(world, 3)
    existing = {}
    for i in range(18):  # six pages of three behind the first
        email = f"known{i}@example.com"
        existing[email] = world.mk_form_fill(email=email, firstName="Known")
        world.dv_create("lead", lastname=f"K{i}", emailaddress1=email, companyname="Co")
    indexed_job(world, monkeypatch, page_size=3)
    world.ctx.import_unit_pages = 2
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    drain_or_fail(world, "pages behind an unsent import unit filled the pipeline")
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    task = next(t for t in view.tasks if t["entity"] == "lead")
    assert task["created"] == 3 and task["updated"] == 18 and task["pages_done"] == 7
    one_person_each(world, [*new, *existing])
    for email, person_id in existing.items():
        assert linked(world, email)[1] == str(person_id)
    assert world.mk_count() == 21 == world.ctx.state.links.count("lead")


def test_a_cancel_stops_a_run_at_the_next_page_and_what_was_written_is_linked(world: World) -> None:
    import threading
    import time

    from sync.engine.fullsync import cancel_job

    leads(world, 30)
    world.upstream("lead")
    world.ctx.dynamics.page_size = 3
    world.emulators.control("dataverse", "POST", "/faults", json={"latency_ms": 150})  # pages take a moment
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})

    def cancel_after_two_pages() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            view = view_job(world.ctx, job_id)
            if view is not None and any(t["entity"] == "lead" and t["pages_done"] >= 2 for t in view.tasks):
                cancel_job(world.ctx, job_id)
                return
            time.sleep(0.02)

    canceller = threading.Thread(target=cancel_after_two_pages)
    canceller.start()
    world.drain()
    canceller.join()
    world.emulators.control("dataverse", "DELETE", "/faults")
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "cancelled", view
    task = next(t for t in view.tasks if t["entity"] == "lead")
    assert 2 <= task["pages_done"] < 10, task
    assert world.mk_count() == world.ctx.state.links.count("lead") == task["read"]  # nothing written unlinked


def _ids_wait_for_the_stager(world: World, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Hold every import's id resolution until the stager has written the last unit (it stages once the pages are
    planned, while Marketo imports: here the imports are quicker than that, so they are made to wait). Returns the
    Dynamics ids of each stage call."""
    import threading

    import sync.engine.fullsync_pages as pages
    from sync.engine import staging
    from sync.engine.imported_ids import ImportedIds

    links = world.ctx.state.links
    real_stage, real_unit, real_resolve = links.stage, staging.stage_unit, ImportedIds.resolve
    staged: list[list[str]] = []
    units_done = threading.Event()
    units_left = {"n": 0}

    def stage(rows: Any) -> int:
        rows = list(rows)
        staged.append([link.dynamics_id for link, _ in rows])
        return real_stage(rows)

    def stage_unit(*args: Any, **kw: Any) -> None:
        try:
            real_unit(*args, **kw)
        finally:
            units_left["n"] -= 1
            if units_left["n"] <= 0:
                units_done.set()

    def resolve(self: ImportedIds, *args: Any, **kw: Any) -> Any:
        assert units_done.wait(60), "the stager never finished"
        return real_resolve(self, *args, **kw)

    real_mark = staging.mark

    def mark(*args: Any, **kw: Any) -> None:
        units_left["n"] += 1
        real_mark(*args, **kw)

    monkeypatch.setattr(links, "stage", stage)
    monkeypatch.setattr(ImportedIds, "resolve", resolve)
    monkeypatch.setattr(pages, "stage_unit", stage_unit)
    monkeypatch.setattr(pages, "mark", mark)
    return staged


def test_link_rows_are_staged_while_marketo_imports_and_then_only_the_unit_maps_are_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the pages are planned, the D rows of every import unit's creates are written while Marketo imports;
    when the ids are proven, the commits write no D row for them, only the units' maps and the index packs."""
    ids = leads(world, 14)
    existing = world.mk_form_fill(email="p3@example.com", firstName="Already")  # an update: its row is not staged
    indexed_job(world, monkeypatch, page_size=3)  # 5 pages: units of 2, 2 and 1
    world.ctx.import_unit_pages = 2
    staged = _ids_wait_for_the_stager(world, monkeypatch)
    links = world.ctx.state.links
    real_save = links.save
    saves: list[tuple[int, int]] = []  # links, of which staged

    def save(batch: Any, *args: Any, staged: Any = None, **kw: Any) -> int:
        batch = list(batch)
        saves.append((len(batch), len(staged or {})))
        return real_save(batch, *args, staged=staged, **kw)

    monkeypatch.setattr(links, "save", save)
    view = run_job(world, {"entities": ["lead"], "direction": "to_marketo"})
    task = next(t for t in view.tasks if t["entity"] == "lead")
    assert task["created"] == 13 and task["updated"] == 1 and task["failed"] == 0
    creates = {lead_id for email, lead_id in ids.items() if email != "p3@example.com"}
    assert sorted(d for call in staged for d in call) == sorted(creates)  # every create staged, once
    lead_saves = [(n, s) for n, s in saves if n > 1]
    assert sum(n for n, _ in lead_saves) == 14 and sum(s for _, s in lead_saves) == 13  # all but the update
    d_rows = list(links._side_iter("lead", "D"))
    assert sum(1 for row in d_rows if "Unit" in row) == 13 and len(d_rows) == 14
    assert len(list(links._side_iter("lead", "U"))) == 3  # a map row per unit (each under 100 rows)
    one_person_each(world, list(ids))
    for email, lead_id in ids.items():
        assert linked(world, email)[0] == lead_id
    assert linked(world, "p3@example.com")[1] == str(existing)
    found = links.get_many_by_dynamics_id("lead", list(ids.values()))
    for email, lead_id in ids.items():  # by Dynamics id too: the staged rows' ids come from the unit maps
        assert found[lead_id].marketo_id == str(world.mk_by_email(email)[0]["id"])
    assert world.mk_count() == 14 == links.count("lead") == len(list(links.list("lead")))


def test_a_unit_whose_maps_fail_after_staging_is_done_again_and_nothing_is_duplicated(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The D rows are staged, then the save of the second unit's ids fails: the delivery fails and its staged rows
    read as no link; the redelivery redoes that unit from the checkpoint, matching its persons by their link field,
    and every record ends linked to one person."""
    ids = leads(world, 14)
    indexed_job(world, monkeypatch, page_size=3)
    world.ctx.import_unit_pages = 2
    staged = _ids_wait_for_the_stager(world, monkeypatch)
    links = world.ctx.state.links
    real_save = links.save
    failed: list[int] = []
    pending_after_failure: list[int] = []

    def save(batch: Any, *args: Any, staged: Any = None, **kw: Any) -> int:
        batch = list(batch)
        if staged and not failed and links.count("lead") >= 1:  # the first unit is linked: fail the next
            failed.append(len(staged))
            pending_after_failure.append(links.count("lead"))
            raise ConnectionError("storage went away")
        return real_save(batch, *args, staged=staged, **kw)

    monkeypatch.setattr(links, "save", save)
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    world.drain()
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    assert failed and staged
    assert pending_after_failure[0] < 14  # the failed unit's staged rows did not count as links
    one_person_each(world, list(ids))
    for email, lead_id in ids.items():
        assert linked(world, email)[0] == lead_id
    assert world.mk_count() == 14 == links.count("lead") == len(list(links.list("lead")))
