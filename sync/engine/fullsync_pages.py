"""The pages of a full sync's task: what one queue message reads, plans, writes and checkpoints.

    process_page:  one page per message (a dry run; a one-way stream, through the CRM adapter)
    run_pages:     a persons stream's pages from the checkpoint until the message's time is spent, in flight at once
                   (pipeline.py): each page is planned and its writes started while earlier ones finish, and links
                   commit behind, each page's checkpoint right after its links (in page order)

To Marketo, up to `ctx.import_unit_pages` consecutive pages share one Bulk Import and one id export (an import unit);
a job-level match index replaces the per-page lookups when it pays (match_index.py). To Dynamics, the persons come
from Marketo by REST or Bulk Extract (marketo_pages.py), matched against a Dynamics match index when it pays
(dynamics_index.py). The job's lifecycle (messages, phases, the end of a task) is fullsync.py's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from sync.connectors.dynamics.client import FIND_THREADS, IN_FILTER_MAX_VALUES
from sync.connectors.marketo.models import MarketoPerson
from sync.engine.changes import MarketoChangeSet
from sync.engine.context import SyncContext
from sync.engine.crm_stream import verify_object_type
from sync.engine.cycle import counts_of
from sync.engine.dynamics_index import DynamicsMatchIndex, folded
from sync.engine.execute import BulkCreates, Executor, PairWork
from sync.engine.marketo_pages import MarketoPages
from sync.engine.match_index import MatchIndex, index_windows, worth_an_index
from sync.engine.pairs import PairBuilder
from sync.engine.person_ids import oldest_persons
from sync.engine.pipeline import PagePipeline
from sync.engine.plan import DynamicsSide, PairInput
from sync.engine.roles import RoleBatches, batches_for, start_connection_feed
from sync.engine.staging import UnitStaging, mark, stage_unit
from sync.state import Job, Task
from sync.state.links import encode_snapshot

log = logging.getLogger(__name__)
PAGES_IN_FLIGHT = 3  # finishing or committing while the next is planned: memory, and Marketo's import queue
COMMIT_PAGES = 2  # finished pages saved together at most: fuller transactions, but every link of them in memory
UNITS_IN_FLIGHT = 3  # one imports while one has its ids read and one commits (Marketo runs 2 of each at once)


class PageResult(BaseModel):
    counts: dict[str, int]
    cursor: str | None
    finished: bool
    delta_link: str | None = None
    expected_records: int | None = None


def advance(
    ctx: SyncContext,
    task: Task,
    calls_before: dict[str, int],
    counts: dict[str, int],
    pages: int,
    cursor: str | None,
    expected: int | None,
) -> dict[str, int]:
    """Move the task's checkpoint (not saved yet) past `pages` pages; returns the API call counters it read."""
    after = ctx.api_calls()
    task.api_calls = {s: task.api_calls.get(s, 0) + after[s] - calls_before[s] for s in after}
    task.counts = task.counts.add(counts)
    task.pages_done += pages
    task.cursor = cursor
    task.next_enqueued = False
    task.state = "running"
    task.started_at = task.started_at or ctx.clock()
    if expected is not None:
        task.expected_records = (task.expected_records or 0) + expected
    return after


# --- pages ------------------------------------------------------------------------------------------------------------
def _builder(ctx: SyncContext, job: Job, task: Task) -> PairBuilder:
    entity = ctx.mapping.entity(task.entity)
    return PairBuilder(ctx, entity, dry_run=job.dry_run, direction=job.direction, bulk=True)


def process_page(ctx: SyncContext, job: Job, task: Task, first_delivery: bool) -> PageResult:
    """One page. A fresh task's page on its first delivery skips the link lookups: no link of the entity existed
    when the job started and every page holds other records. A redelivered page (a crash after some of its writes)
    looks them up; a duplicate message is still safe, as matching by the link fields finds what was created."""
    no_links = task.fresh and first_delivery
    if task.phase == "to_marketo":
        return _dynamics_page(ctx, job, task, no_links)
    return _marketo_page(ctx, job, task, no_links)


def _one_way_page(ctx: SyncContext, job: Job, task: Task) -> PageResult:
    """A page of a one-way stream, through the CRM adapter (the same batches as its incremental cycle)."""
    batches = batches_for(ctx, ctx.mapping.entity(task.entity), dry_run=job.dry_run)
    verify_object_type(ctx, batches.stream)
    if isinstance(batches, RoleBatches) and task.cursor is None and not job.dry_run:
        start_connection_feed(ctx, batches)  # connections changed from now on are read by the incremental cycle
    pages = ctx.dynamics.read_changes(batches.stream.table, batches.select(), task.cursor, annotations=True)
    page = next(iter(pages), None)
    if page is None:
        return PageResult(counts={}, cursor=task.cursor, finished=True)
    batches.run(page.records)
    return PageResult(
        counts={**counts_of(batches.counts).model_dump(), "read": len(page.records)},
        cursor=page.cursor,
        finished=page.is_last,
        delta_link=page.cursor if page.is_last else None,
    )


def _dynamics_page(ctx: SyncContext, job: Job, task: Task, no_links: bool) -> PageResult:
    if not ctx.mapping.entity(task.entity).is_persons:
        return _one_way_page(ctx, job, task)
    builder = _builder(ctx, job, task)
    entity = builder.entity
    pages = ctx.dynamics.read_changes(entity.table, builder.select(), task.cursor, annotations=builder.annotations)
    page = next(iter(pages), None)
    if page is None:
        return PageResult(counts={}, cursor=task.cursor, finished=True)
    builder.run_batch(_planned_dynamics_page(builder, page.records, no_links))
    return PageResult(
        counts={**counts_of(builder.counts).model_dump(), "read": len(page.records)},
        cursor=page.cursor,
        finished=page.is_last,
        delta_link=page.cursor if page.is_last else None,
    )


# --- a run of pages in flight (persons to Marketo) --------------------------------------------------------------------
def _planned_dynamics_page(builder: PairBuilder, records: list[Any], no_links: bool) -> list[PairWork]:
    """A page of Dynamics records, read from the start of change tracking: pairs, counterparts fetched."""
    return builder.dynamics_batch(
        records, [], MarketoChangeSet(), set(), fetch_counterparts=True, assume_unlinked=no_links
    )


def _planned_marketo_persons(
    builder: PairBuilder, job: Job, persons: list[MarketoPerson], no_links: bool
) -> list[PairWork]:
    """Marketo persons read whole (REST or an export): pairs; links this job's first phase made are left alone."""
    if not persons:
        return []
    return builder.marketo_batch(
        {str(p.id) for p in persons},
        MarketoChangeSet(),
        dynamics_complete=False,
        known_persons=persons,
        synced_since=job.created_at if job.direction == "both" else None,
        assume_unlinked=no_links,
    )


def runs_pages(ctx: SyncContext, job: Job, task: Task) -> bool:
    """A persons stream's phases run several pages per message, in flight at once (pipeline.py)."""
    return not job.dry_run and ctx.mapping.entity(task.entity).is_persons


@dataclass
class _RunPage:
    works: list[PairWork]
    bulk: BulkCreates | None
    cursor: str | None
    is_last: bool
    rows: int
    counts: Counter[str]
    expected: int | None = None  # records the phase expects in all, learned at this page (for the ETA)
    ends_run: bool = False  # the message starts no page after this one


@dataclass
class _PageRun:
    """What one message's run of pages shares between its page source and its commits: `task` is the current one
    (each commit moves its checkpoint), `calls` the API calls counted up to the last commit."""

    ctx: SyncContext
    job: Job
    builder: PairBuilder
    no_links: bool  # the task's first delivery of a fresh task: no link can exist yet
    task: Task
    calls: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    delta: str | None = None
    # the import units sent, in order: their creates, their upload's end, their staging (not the unit: its file)
    units: list[tuple[list[PairWork], threading.Event, UnitStaging]] = field(default_factory=list)

    def has_time(self) -> bool:
        """Whether the message's time is not spent yet (its run may read on)."""
        return time.monotonic() - self.started < self.ctx.message_seconds

    def ends_run(self, page_is_last: bool) -> bool:
        """Whether the message starts no page after this one: the last page, the message's time spent, or a cancel."""
        if page_is_last or not self.has_time():
            return True
        return _cancel_asked(self.ctx, self.job)


def run_pages(ctx: SyncContext, job: Job, task: Task, first_delivery: bool) -> tuple[Task, bool, str | None]:
    builder = _builder(ctx, job, task)
    pages_before = task.pages_done  # the commits move the checkpoint of `task` itself (advance)
    run = _PageRun(ctx, job, builder, task.fresh and first_delivery, task, ctx.api_calls())
    if task.phase == "to_marketo":
        source = _dynamics_source(run)
        depth = max(PAGES_IN_FLIGHT, ctx.import_unit_pages * UNITS_IN_FLIGHT)
    else:
        source = _marketo_source(run)
        depth = PAGES_IN_FLIGHT

    def finish(page: _RunPage) -> None:
        builder.executor.finish(page.works, page.bulk)
        page.bulk = None  # the import's files and rows are done with: a page waiting to commit keeps only its plans
        for work in page.works:
            work.plan.create_marketo = work.plan.update_marketo = None
            work.plan.create_dynamics = work.plan.update_dynamics = None

    def commit(pages: list[_RunPage]) -> None:
        """Consecutive finished pages: their links in one save, then one checkpoint past the last of them."""
        builder.executor.commit([work for page in pages for work in page.works], builder.retried)
        counts: Counter[str] = Counter()
        for page in pages:
            outcome = Executor.outcome(page.works)
            counts.update({**counts_of(page.counts + outcome.counts).model_dump(), "read": page.rows})
        known = [page.expected for page in pages if page.expected is not None]
        current = run.task
        run.calls = advance(
            ctx, current, run.calls, dict(counts), len(pages), pages[-1].cursor, sum(known) if known else None
        )
        run.task = ctx.state.jobs.save_task(current)
        if pages[-1].is_last:
            run.finished, run.delta = True, pages[-1].cursor if task.phase == "to_marketo" else None

    def stage() -> None:
        for _, submitted, _ in run.units:  # after the uploads: an upload's file is most of a run's peak memory
            submitted.wait()
        for works, _, staging in run.units:
            stage_unit(ctx.state.links, builder.entity.name, works, staging, ctx.clock())

    stager = threading.Thread(target=stage, name="link-stager", daemon=True)
    # the source closes first: an import unit it never submitted releases the finishers waiting for it
    try:
        with PagePipeline(finish, commit, depth=depth, merge=COMMIT_PAGES) as pipeline, contextlib.closing(source):
            for page in source:
                pipeline.submit(page)
                if page.ends_run:
                    break
            if run.units:  # every page is planned: the D rows of the units still importing are staged meanwhile
                stager.start()
    finally:
        if stager.is_alive():
            stager.join()
    if run.task.pages_done == pages_before and not run.finished:  # nothing was left to read
        run.finished = True
    return run.task, run.finished, run.delta


def _cancel_asked(ctx: SyncContext, job: Job) -> bool:
    """Whether the job was asked to stop (one read a page): the next message then ends the task."""
    found = ctx.state.jobs.get(job.job_id)
    return found is None or found[0].cancel_requested


def _planned_counts(builder: PairBuilder, before: Counter[str]) -> Counter[str]:
    """The counts a page's planning added."""
    planned = Counter(builder.counts)
    planned.subtract(before)
    return +planned


def _dynamics_source(run: _PageRun) -> Generator[_RunPage]:
    """Dynamics pages from the checkpoint, planned and started: the to_marketo phase. Up to `ctx.import_unit_pages`
    consecutive pages share one Bulk Import and one id export (an import unit), submitted with its last page or with
    the page that ends the run, and uploaded on a thread of its own while the next pages are planned."""
    ctx, builder, task = run.ctx, run.builder, run.task
    entity = builder.entity
    pages = iter(
        ctx.dynamics.read_changes(entity.table, builder.select(), task.cursor, annotations=builder.annotations)
    )
    page = next(pages, None)
    if page is None:
        return
    builder.index, run.task = _match_index(ctx, task, page.records, more=not page.is_last)
    unit: BulkCreates | None = None
    unit_pages = 0
    # imports go up on a thread of their own, in order, while the next pages are planned; closing waits for them
    uploads = ThreadPoolExecutor(1, thread_name_prefix="import-upload")
    try:
        while page is not None:
            before = Counter(builder.counts)
            works = _planned_dynamics_page(builder, page.records, run.no_links)
            if builder.index is not None:
                for work in works:
                    if work.ok and work.plan.create_marketo is not None and work.plan.dynamics_id:
                        builder.index.note_create(work.plan.create_marketo.get("email"), work.plan.dynamics_id)
            rows_before = unit.rows if unit is not None else 0
            unit = builder.executor.start(works, unit, submit=False)
            joined = unit is not None and unit.rows > rows_before
            # every page since the unit opened counts, creates or not: each waits behind it to commit, and the
            # unit must be sent before they fill the pipeline (else the caller would wait for ever for a slot)
            unit_pages += unit is not None
            last_of_run = run.ends_run(page.is_last)
            bulk = unit if joined else None
            sent = None
            if unit is not None and (unit_pages >= ctx.import_unit_pages or last_of_run):
                builder.executor.submit_bulk(unit, send=uploads.submit)
                for work in unit.works:
                    work.plan.create_marketo = _IN_THE_FILE  # (kept not None: it is a create)
                sent, unit, unit_pages = unit, None, 0
            _keep_plans_only(works)
            if sent is not None:  # its creates' D rows may be staged once the run's pages are planned
                run.units.append((sent.works, sent.submitted, UnitStaging()))
                mark(sent.works, run.units[-1][2])
            planned = _planned_counts(builder, before)
            builder.forget_page()
            yield _RunPage(works, bulk, page.cursor, page.is_last, len(page.records), planned, ends_run=last_of_run)
            page = next(pages, None) if not page.is_last else None
    finally:
        if unit is not None:
            unit.abandon("the run stopped before the import unit was complete")
        uploads.shutdown(wait=True)


_READ_FROM_DYNAMICS = PairInput(dynamics=DynamicsSide(id="", values={}))  # all a started page's writes ask of a pair
_IN_THE_FILE: dict[str, Any] = {}  # a create sent in an import's file: one shared empty row, read by no one
_NONE_PLANNED: list[Any] = []  # a planned pair's empty lists (read only from here on)


def _keep_plans_only(works: list[PairWork]) -> None:
    """A started Dynamics page keeps its plans until it commits, not the records it read (the plans hold what the
    writes, the errors and the snapshot need; a failed write only asks whether the pair came from Dynamics), and
    each snapshot as the JSON its link row will hold (a third of the dict's size): the memory of the pages in
    flight, under 1 KB a record."""
    for work in works:
        if work.pair.dynamics is not None:
            work.pair = _READ_FROM_DYNAMICS
        plan = work.plan
        if plan.save_snapshot is not None:
            plan.snapshot_json, plan.save_snapshot = encode_snapshot(plan.save_snapshot), None
        if not plan.remove_links:  # planned: nothing adds to them now, so the empty ones can be one
            plan.remove_links = _NONE_PLANNED
        if not plan.conflicts:
            plan.conflicts = _NONE_PLANNED


def _marketo_source(run: _PageRun) -> Generator[_RunPage]:
    """Marketo persons from the checkpoint (REST by ids or a Bulk Extract's file), planned and started: the
    to_dynamics phase. Its links commit behind. With a Dynamics match index, a page's Dataverse creates run on a
    thread while the next page is planned (Dataverse's time beside ours), unless a person of the next page shares
    an e-mail or id with one of those creates: then they finish first and go into the index, as a lookup would
    find them. Without the index the pages' lookups must see the creates before: each page starts before the next
    is planned."""
    ctx, builder, task = run.ctx, run.builder, run.task
    cursor = task.cursor
    first = True
    held: _StartedPage | None = None  # planned, its creates running: yielded once they are done
    starts = ThreadPoolExecutor(1, thread_name_prefix="dynamics-creates")
    try:
        pages = MarketoPages(ctx, builder.entity.name, builder.marketo_field_names(), goes_on=run.has_time)
        with contextlib.closing(pages):
            while True:
                persons, cursor, finished, expected = pages.next(cursor)
                if first:
                    builder.dynamics_index, run.task = _dynamics_match_index(ctx, builder, task, len(persons), finished)
                    first = False
                index = builder.dynamics_index  # set at the first page, for the whole run
                if held is not None and index is not None and held.shares_keys(persons, index):
                    yield held.done(builder)
                    held = None
                before = Counter(builder.counts)
                works = _planned_marketo_persons(builder, run.job, persons, run.no_links)
                planned = _planned_counts(builder, before)
                builder.forget_page()
                last_of_run = run.ends_run(finished)
                if held is not None:
                    yield held.done(builder)
                page = _RunPage(works, None, cursor, finished, len(persons), planned, expected, ends_run=last_of_run)
                held = _StartedPage(page, starts.submit(builder.executor.start, works))
                if finished or last_of_run or index is None:  # without the index, nothing is held
                    yield held.done(builder)
                    held = None
                if finished or last_of_run:
                    return
    finally:
        starts.shutdown(wait=True)  # creates in flight end before the run does (their pages redo them, keyed)


@dataclass
class _StartedPage:
    """A planned Marketo page whose writes were started on a thread (Executor.start: the Dataverse creates)."""

    page: _RunPage
    started: Future[BulkCreates | None]

    def shares_keys(self, persons: list[MarketoPerson], index: DynamicsMatchIndex) -> bool:
        """Whether a person may match one of this page's creates in the Dynamics match index: its id or e-mail is
        a value of theirs in a column the index keys (folded as it keys them; either column: a false alarm only
        costs the overlap)."""
        creating = {
            folded(create.get(column))
            for work in self.page.works
            if (create := work.plan.create_dynamics) is not None
            for column in index.columns
        }
        creating.discard("")
        return any(
            folded(person.id) in creating or folded(person.values.get("email")) in creating for person in persons
        )

    def done(self, builder: PairBuilder) -> _RunPage:
        """Its creates finished (their error raised here), and added to the match index for the pages after."""
        self.page.bulk = self.started.result()
        if builder.dynamics_index is not None:  # later pages find this page's new records, as a lookup would
            for work in self.page.works:
                if work.ok and work.plan.create_dynamics is not None and work.plan.dynamics_id:
                    builder.dynamics_index.add(work.plan.dynamics_id, work.plan.create_dynamics)
        return self.page


def _match_index(ctx: SyncContext, task: Task, first_rows: list[Any], more: bool) -> tuple[MatchIndex | None, Task]:
    """The message's match index, when the task uses one (decided at its first page: match_index.worth_an_index)."""
    if ctx.match_index == "never" or not task.fresh:
        return None, task
    empty = False
    if task.index_from is None:  # the first message decides, and keeps the decision on the task
        rows = len(first_rows) * (4 if more else 1)
        task.index_from = ""
        if ctx.match_index == "always" or worth_an_index(1, rows, more_pages=False):  # could one window pay?
            now = ctx.marketo.server_time() or ctx.clock()
            oldest = oldest_persons(ctx.marketo, now)
            empty = oldest.lowest_id is None and oldest.created >= now  # no person at all: nothing to read yet
            windows = index_windows(oldest.created, now)
            if ctx.match_index == "always" or worth_an_index(windows, len(first_rows), more):
                task.index_from = oldest.created.isoformat()
        task = ctx.state.jobs.save_task(task)
    if not task.index_from:
        return None, task
    link_fields = [stream.marketo_id_field for stream in ctx.mapping.person_streams()]
    if empty:  # later messages read the persons created from then on
        return MatchIndex(tuple(link_fields)), task
    until = (ctx.marketo.server_time() or ctx.clock()) + timedelta(minutes=1)
    return MatchIndex.read(ctx.marketo, link_fields, datetime.fromisoformat(task.index_from), until), task


def _dynamics_match_index(
    ctx: SyncContext, builder: PairBuilder, task: Task, rows: int, finished: bool
) -> tuple[DynamicsMatchIndex | None, Task]:
    """The message's Dynamics match index, read while it costs no more time than the lookups of the message's
    pages would (a full page with more to come counts as four): its pages of `page_size` rows come one after the
    other, the lookups (one per IN_FILTER_MAX_VALUES persons) FIND_THREADS at once. A table too big for that is not
    read again by the task: its pages look up."""
    if ctx.match_index == "never" or task.dynamics_index is False or rows == 0:
        return None, task
    columns = [builder.link_fields.dynamics_marketo_id]
    if builder.dynamics_email_column:
        columns.append(builder.dynamics_email_column)
    lookups = math.ceil(rows / IN_FILTER_MAX_VALUES) * (1 if finished else 4)
    pages = max(1, lookups // FIND_THREADS)
    max_rows = None if ctx.match_index == "always" else pages * ctx.dynamics.page_size
    index = DynamicsMatchIndex.read(ctx.dynamics, builder.entity.table, columns, max_rows)
    if index is None:
        task.dynamics_index = False
        task = ctx.state.jobs.save_task(task)
    return index, task


def _marketo_page(ctx: SyncContext, job: Job, task: Task, no_links: bool) -> PageResult:
    """The next Marketo persons, one page per message (a dry run; a live job runs pages, see run_pages)."""
    builder = _builder(ctx, job, task)
    with contextlib.closing(MarketoPages(ctx, builder.entity.name, builder.marketo_field_names())) as pages:
        persons, cursor, finished, expected = pages.next(task.cursor)
    if persons:
        builder.run_batch(_planned_marketo_persons(builder, job, persons, no_links))
    counts = {**counts_of(builder.counts).model_dump(), "read": len(persons)}
    return PageResult(counts=counts, cursor=cursor, finished=finished, expected_records=expected)
