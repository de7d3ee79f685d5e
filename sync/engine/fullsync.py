"""The initial full sync: a job of tasks (entity x phase), each processed a page per queue message.

    start_full_sync:  validate -> claim the entities -> job and task rows -> the first message of each entity
    process_message:  the task's checkpoint -> one page (same pair/plan/write code as the incremental cycle)
                      -> checkpoint with its ETag -> the next message, the next phase, or the end of the job

Phases of an entity, in order: `to_marketo` reads Dynamics through the initial change-tracking request (pages of up to
5,000; the delta link that ends it becomes the incremental watermark, so nothing changed meanwhile is missed), and
`to_dynamics` reads Marketo for persons to create or link in Dynamics: by REST, ids in order, when the id range is
narrow and provable (see person_ids), else through Bulk Extract (windows of at most 31 days, a part of a file per
message; the next window's export is queued while a window is read). The Marketo paging token is taken when the job
starts.

Streams run in dependency order: a stream's first message is sent once every stream of the job it points at has
finished (sales persons, then companies, then persons), so that its references find their targets linked. A one-way
stream has only the `to_marketo` phase, run by the CRM adapter (crm_stream).

Delivery is at least once. A page's writes are idempotent (links are matched before anything is created, creates
are upserts on the link fields), and a message whose page is already checkpointed changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync.connectors.dynamics.client import FIND_THREADS, IN_FILTER_MAX_VALUES
from sync.connectors.marketo.models import MarketoPerson
from sync.engine.changes import MarketoChangeSet, initial_marketo_cursor
from sync.engine.context import SyncContext
from sync.engine.crm_stream import verify_object_type
from sync.engine.cycle import counts_of
from sync.engine.dynamics_index import DynamicsMatchIndex
from sync.engine.execute import BulkCreates, Executor, PairWork
from sync.engine.identity import SandboxChanged, check_systems, halted_reason
from sync.engine.marketo_pages import MarketoPages, MarketoReadCursor
from sync.engine.match_index import MatchIndex, index_windows, worth_an_index
from sync.engine.pairs import PairBuilder
from sync.engine.person_ids import oldest_persons
from sync.engine.pipeline import PagePipeline
from sync.engine.plan import DynamicsSide, PairInput
from sync.engine.roles import RoleBatches, batches_for, start_connection_feed
from sync.mapping.model import Direction, EntityMapping, MappingConfig, System
from sync.state import CheckpointConflict, EntityClaimed, Job, Task
from sync.state.jobs import JobState, Phase
from sync.state.links import encode_snapshot
from sync.state.queue import MAX_DEQUEUE_COUNT, WorkMessage, WorkQueue

log = logging.getLogger(__name__)
PHASE_ORDER: tuple[Phase, ...] = ("to_marketo", "to_dynamics")
PAGES_IN_FLIGHT = 3  # finishing or committing while the next is planned: memory, and Marketo's import queue
COMMIT_PAGES = 2  # finished pages saved together at most: fuller transactions, but every link of them in memory
UNITS_IN_FLIGHT = 3  # one imports while one has its ids read and one commits (Marketo runs 2 of each at once)


class FullSyncRejected(ValueError):
    """The request is invalid (HTTP 400); the message names the problem."""


class FullSyncConflict(Exception):
    """A full sync of one of the entities is already running (HTTP 409)."""


class FullSyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entities: list[str] | None = None
    direction: Direction = "both"
    dry_run: bool = Field(default=False, alias="dryRun")
    since: datetime | None = Field(
        default=None, description="oldest Marketo person to read, by Bulk Extract from that date (default: all)"
    )

    @field_validator("since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @classmethod
    def parse(cls, body: bytes | str | None) -> FullSyncRequest:
        try:
            raw = json.loads(body) if body and str(body).strip() else {}
        except json.JSONDecodeError as exc:
            raise FullSyncRejected(f"the body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(raw, dict):
            raise FullSyncRejected("the body must be a JSON object")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise FullSyncRejected(f"{where}: {first['msg']}") from None


def phases_for(entity: EntityMapping, direction: Direction) -> list[Phase]:
    phases: list[Phase] = []
    if direction in ("both", "to_marketo") and entity.direction in ("both", "to_marketo"):
        phases.append("to_marketo")
    if direction in ("both", "to_dynamics") and entity.create_in_dynamics:
        phases.append("to_dynamics")
    return phases


class JobView(BaseModel):
    """What GET /api/sync/jobs/{id} answers."""

    job_id: str
    state: JobState
    direction: Direction
    dry_run: bool
    entities: list[str]
    created_at: datetime
    updated_at: datetime | None
    finished_at: datetime | None
    eta_seconds: float | None = None
    error: str | None = None
    tasks: list[dict[str, Any]]


# --- starting, viewing, cancelling ------------------------------------------------------------------------------------
def start_full_sync(ctx: SyncContext, queue: WorkQueue, request: FullSyncRequest) -> Job:
    mapping = ctx.mapping
    names = request.entities or [e.name for e in mapping.ordered_entities()]
    unknown = [n for n in names if n not in mapping.entities]
    if unknown:
        known = ", ".join(mapping.entities)
        raise FullSyncRejected(f"unknown entities: {', '.join(unknown)} (configured: {known})")
    if not names:
        raise FullSyncRejected("entities: give at least one entity")
    names = list(dict.fromkeys(names))
    _refuse_if_systems_changed(ctx)
    if request.direction in ("both", "to_marketo"):
        names = _with_unsynced_dependencies(ctx, names)
    job = Job(entities=names, direction=request.direction, dry_run=request.dry_run)
    tasks: list[Task] = []
    for name in names:
        phases = phases_for(mapping.entity(name), request.direction)
        if not phases:
            raise FullSyncRejected(f"{name} has nothing to sync {request.direction.replace('_', ' ')}")
        tasks.extend(Task(job_id=job.job_id, entity=name, phase=phase) for phase in phases)
    try:
        ctx.state.jobs.claim(job.job_id, names)
    except EntityClaimed as exc:
        raise FullSyncConflict(str(exc)) from None
    try:
        now = ctx.clock()
        token = initial_marketo_cursor(ctx.marketo, now).dump()  # changes from here on belong to the incremental sync
        reads_marketo = any(t.phase == "to_dynamics" for t in tasks)
        marketo_cursor = _marketo_read_cursor(ctx, request.since, now) if reads_marketo else None
        unlinked = {name for name in names if not ctx.state.links.has_any(name)}
        for task in tasks:
            task.marketo_start = token
            # a first sync of an entity finds no links: its pages need not look for them (see _process_page)
            task.fresh = task.entity in unlinked and (
                task.phase == "to_marketo" or len(phases_for(mapping.entity(task.entity), request.direction)) == 1
            )
            if task.phase == "to_dynamics":
                task.cursor = marketo_cursor
        for name in _ready(mapping, names, finished=set(), started=set()):
            next(t for t in tasks if t.entity == name).next_enqueued = True  # its first message goes now
        ctx.state.jobs.create(job, tasks)
        for name in _ready(mapping, names, finished=set(), started=set()):
            first = next(t for t in tasks if t.entity == name)
            queue.send(WorkMessage(job=job.job_id, entity=name, phase=first.phase, page=0))
    except Exception:
        ctx.state.jobs.release(job.job_id, names)
        raise
    return job


def _refuse_if_systems_changed(ctx: SyncContext) -> None:
    """A full sync starts by asking both systems whether they are still the ones the state knows (sync/engine/
    identity.py): after a sandbox refresh only `relink --after-refresh` may start one."""
    with contextlib.suppress(SandboxChanged):  # recorded as a halt, read just below
        check_systems(ctx)
    stopped = halted_reason(ctx)
    if stopped is not None:
        raise FullSyncConflict(stopped)


def _with_unsynced_dependencies(ctx: SyncContext, names: list[str]) -> list[str]:
    """The requested streams and, before them, every stream they point at that has never synced (no watermark)
    and that no other job holds: a first full sync of leads brings their owners and companies with it, so that
    their references find something to point at."""
    wanted = set(names)
    todo = list(names)
    while todo:
        for dep in ctx.mapping.entity(todo.pop()).reference_targets():
            if dep in wanted or ctx.state.jobs.holder(dep) is not None:
                continue
            if ctx.state.watermarks.get(dep, "dynamics").cursor is None:
                wanted.add(dep)
                todo.append(dep)
    return [stream.name for stream in ctx.mapping.ordered_entities() if stream.name in wanted]


def _start_ready(ctx: SyncContext, queue: WorkQueue, job: Job, tasks: list[Task]) -> None:
    """Send the first message of each stream whose dependencies in the job have all finished (a failed one counts:
    its dependents still run, and their references to what it did not sync wait as record errors). In a cancelled
    job they are cancelled instead."""
    terminal = ("succeeded", "failed", "cancelled")
    finished = {name for name in job.entities if all(t.state in terminal for t in tasks if t.entity == name)}
    started = {t.entity for t in tasks if t.state not in ("queued",) or t.pages_done or t.next_enqueued}
    for name in _ready(ctx.mapping, job.entities, finished, started):
        first = min((t for t in tasks if t.entity == name), key=lambda t: PHASE_ORDER.index(t.phase))
        if job.cancel_requested:
            _finish_task(ctx, first, "cancelled", None, queue)
            continue
        queue.send(WorkMessage(job=job.job_id, entity=name, phase=first.phase, page=0))
        first.next_enqueued = True
        with contextlib.suppress(CheckpointConflict):
            ctx.state.jobs.save_task(first)


def _ready(mapping: MappingConfig, names: list[str], finished: set[str], started: set[str]) -> list[str]:
    """The job's streams that may start now: not started, and every stream of the job they point at finished."""
    return [
        name
        for name in names
        if name not in started
        and name not in finished
        and all(dep in finished for dep in mapping.entity(name).depends_on() if dep in names)
    ]


def _marketo_read_cursor(ctx: SyncContext, since: datetime | None, now: datetime) -> str:
    """Where the to_dynamics phase starts: the extract window from `since` or the oldest person, and the lowest id,
    with which the phase's first message decides between REST by ids and Bulk Extract (never with `since`)."""
    if since is not None:
        return json.dumps({"window": since.isoformat(), "until": now.isoformat()})
    oldest = oldest_persons(ctx.marketo, now)
    cursor: MarketoReadCursor = {"window": oldest.created.isoformat(), "until": now.isoformat()}
    if oldest.lowest_id is not None:
        cursor["low"] = oldest.lowest_id
    return json.dumps(cursor)


def view_job(ctx: SyncContext, job_id: str) -> JobView | None:
    found = ctx.state.jobs.get(job_id)
    if found is None:
        return None
    job, tasks = found
    rows = []
    eta: float | None = None
    for task in sorted(tasks, key=lambda t: (job.entities.index(t.entity), PHASE_ORDER.index(t.phase))):
        rows.append(
            {
                "entity": task.entity,
                "direction": task.phase,
                "state": task.state,
                "pages_done": task.pages_done,
                **task.counts.model_dump(),
                "api_calls": task.api_calls,
                "started_at": task.started_at,
                "updated_at": task.updated_at,
                "finished_at": task.finished_at,
                "expected_records": task.expected_records,
                "error": task.error,
            }
        )
        task_eta = _eta(task)
        if task_eta is not None:
            eta = max(eta or 0.0, task_eta)
    return JobView(
        job_id=job.job_id,
        state=job.state,
        direction=job.direction,
        dry_run=job.dry_run,
        entities=job.entities,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        eta_seconds=eta if job.state in ("queued", "running") else None,
        error=job.error,
        tasks=rows,
    )


def _eta(task: Task) -> float | None:
    """Seconds left at the rate so far, when the task knows how many records it expects."""
    if task.state != "running" or not task.expected_records or not task.started_at or not task.updated_at:
        return None
    done = task.counts.read
    elapsed = (task.updated_at - task.started_at).total_seconds()
    if done <= 0 or elapsed <= 0:
        return None
    return max(task.expected_records - done, 0) * elapsed / done


def cancel_job(ctx: SyncContext, job_id: str) -> Job | None:
    """Ask the job to stop at the next page boundary."""
    found = ctx.state.jobs.get(job_id)
    if found is None:
        return None
    job, _tasks = found
    if job.state in ("succeeded", "failed", "cancelled"):
        return job
    job.cancel_requested = True  # each task's next message sees it and ends the task there
    return ctx.state.jobs.update_job(job)


# --- processing one message -------------------------------------------------------------------------------------------
class PageResult(BaseModel):
    counts: dict[str, int]
    cursor: str | None
    finished: bool
    delta_link: str | None = None
    expected_records: int | None = None


def process_message(ctx: SyncContext, queue: WorkQueue, message: WorkMessage, dequeue_count: int = 1) -> str:
    """Do the page a message asks for, exactly once in effect. Returns what happened, for logs."""
    found = ctx.state.jobs.get(message.job)
    if found is None:
        return f"job {message.job} not found: message dropped"
    job, tasks = found
    task = next((t for t in tasks if t.entity == message.entity and t.phase == message.phase), None)
    if task is None:
        return f"job {job.job_id} has no task {message.entity}/{message.phase}: message dropped"
    if job.state in ("succeeded", "failed", "cancelled") or task.state in ("succeeded", "failed", "cancelled"):
        return f"{task.entity}/{task.phase} already {task.state}: nothing to do"
    if message.page < task.pages_done:
        if not task.next_enqueued and task.state == "running" and _runs_pages(ctx, job, task):
            message = message.model_copy(update={"page": task.pages_done})  # died mid-run: go on from its checkpoint
        elif message.page == task.pages_done - 1 and not task.next_enqueued and task.state == "running":
            _enqueue_next(ctx, queue, task)  # the first delivery checkpointed but died before sending the next
            return f"page {message.page} of {task.entity}/{task.phase} was already done"
        else:
            return f"page {message.page} of {task.entity}/{task.phase} was already done"
    if message.page > task.pages_done:
        return f"page {message.page} of {task.entity}/{task.phase} is ahead of its checkpoint: ignored"
    if job.cancel_requested:
        _finish_task(ctx, task, "cancelled", None, queue)
        return f"{task.entity}/{task.phase} cancelled"

    if job.state == "queued":
        job.state = "running"
        ctx.state.jobs.update_job(job)
    if _runs_pages(ctx, job, task):
        return _process_run(ctx, queue, job, tasks, task, message, dequeue_count)
    calls_before = ctx.api_calls()
    try:
        result = _process_page(ctx, job, task, first_delivery=dequeue_count == 1)
    except Exception as exc:
        if dequeue_count >= MAX_DEQUEUE_COUNT:  # the host moves it to the poison queue: record why, end the job
            log.exception(
                "full sync %s %s/%s page %s failed for good", job.job_id, task.entity, task.phase, task.pages_done
            )
            _finish_task(ctx, task, "failed", f"page {task.pages_done}: {type(exc).__name__}: {exc}", queue)
        raise
    _advance(ctx, task, calls_before, result.counts, 1, result.cursor, result.expected_records)
    try:
        task = ctx.state.jobs.save_task(task)
    except CheckpointConflict:
        return f"page {message.page} of {task.entity}/{task.phase} was checkpointed by another delivery"
    if not result.finished:
        _enqueue_next(ctx, queue, task)
        return f"{task.entity}/{task.phase} page {message.page} done"
    return _phase_done(ctx, queue, job, tasks, task, result.delta_link)


def _advance(
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


def _phase_done(
    ctx: SyncContext, queue: WorkQueue, job: Job, tasks: list[Task], task: Task, delta_link: str | None
) -> str:
    """A phase read to its end: the Dynamics watermark from its delta link, the task's end, the next phase."""
    if task.phase == "to_marketo" and delta_link and not job.dry_run:
        _set_watermark_if_unset(ctx, task.entity, "dynamics", delta_link)
    _finish_task(ctx, task, "succeeded", None, queue)
    _start_next_phase(ctx, queue, job, tasks, task)
    return f"{task.entity}/{task.phase} finished after {task.pages_done} pages"


def _enqueue_next(ctx: SyncContext, queue: WorkQueue, task: Task) -> None:
    queue.send(WorkMessage(job=task.job_id, entity=task.entity, phase=task.phase, page=task.pages_done))
    task.next_enqueued = True
    with contextlib.suppress(CheckpointConflict):  # another delivery got there first; a duplicate is harmless
        ctx.state.jobs.save_task(task)


def _start_next_phase(ctx: SyncContext, queue: WorkQueue, job: Job, tasks: list[Task], done: Task) -> None:
    phases = sorted((t for t in tasks if t.entity == done.entity), key=lambda t: PHASE_ORDER.index(t.phase))
    position = next(i for i, t in enumerate(phases) if t.phase == done.phase)
    if position + 1 < len(phases):
        following = phases[position + 1]
        queue.send(WorkMessage(job=job.job_id, entity=following.entity, phase=following.phase, page=0))


def _job_and_tasks(ctx: SyncContext, job_id: str) -> tuple[Job, list[Task]]:
    found = ctx.state.jobs.get(job_id)
    if found is None:  # a job's rows are never deleted while one of its tasks runs
        raise LookupError(f"full sync job {job_id} is gone while one of its tasks was finishing")
    return found


def _finish_task(ctx: SyncContext, task: Task, state: JobState, error: str | None, queue: WorkQueue) -> None:
    """End a task; when it was its entity's last, hand the watermarks over, release the entity and start the streams
    that were waiting for it; when it was the job's last, end the job."""
    fresh = ctx.state.jobs.get_task(task.job_id, task.entity, task.phase)
    fresh.state = state
    fresh.error = error
    fresh.finished_at = ctx.clock()
    fresh.pages_done = max(fresh.pages_done, task.pages_done)
    ctx.state.jobs.save_task(fresh)
    job, tasks = _job_and_tasks(ctx, task.job_id)
    entity_tasks = [t for t in tasks if t.entity == task.entity]
    if state != "succeeded":  # the entity's later phases will not run
        for other in entity_tasks:
            if other.state in ("queued", "running") and other.phase != task.phase:
                other.state = "cancelled"
                other.finished_at = ctx.clock()
                ctx.state.jobs.save_task(other)
        tasks = _job_and_tasks(ctx, task.job_id)[1]
    if all(t.state in ("succeeded", "failed", "cancelled") for t in tasks if t.entity == task.entity):
        persons = ctx.mapping.entity(task.entity).is_persons  # one-way streams read no Marketo changes
        if persons and not job.dry_run and all(t.state == "succeeded" for t in tasks if t.entity == task.entity):
            _set_watermark_if_unset(ctx, task.entity, "marketo", fresh.marketo_start)
        ctx.state.jobs.release(job.job_id, [task.entity])
        _start_ready(ctx, queue, job, tasks)
        tasks = _job_and_tasks(ctx, task.job_id)[1]
    if all(t.state in ("succeeded", "failed", "cancelled") for t in tasks):
        states = {t.state for t in tasks}
        job.state = "failed" if "failed" in states else "cancelled" if "cancelled" in states else "succeeded"
        job.error = next((f"{t.entity}/{t.phase}: {t.error}" for t in tasks if t.error), None)
        job.finished_at = ctx.clock()
        ctx.state.jobs.update_job(job)


def _set_watermark_if_unset(ctx: SyncContext, entity: str, system: System, cursor: str | None) -> None:
    """The incremental sync continues from where the full sync started reading, unless it already runs on its own."""
    if cursor is None:
        return
    mark = ctx.state.watermarks.get(entity, system)
    if mark.cursor is None:
        ctx.state.watermarks.advance(mark, cursor)


# --- pages ------------------------------------------------------------------------------------------------------------
def _builder(ctx: SyncContext, job: Job, task: Task) -> PairBuilder:
    entity = ctx.mapping.entity(task.entity)
    return PairBuilder(ctx, entity, dry_run=job.dry_run, direction=job.direction, bulk=True)


def _process_page(ctx: SyncContext, job: Job, task: Task, first_delivery: bool) -> PageResult:
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


def _runs_pages(ctx: SyncContext, job: Job, task: Task) -> bool:
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


def _process_run(
    ctx: SyncContext,
    queue: WorkQueue,
    job: Job,
    tasks: list[Task],
    task: Task,
    message: WorkMessage,
    dequeue_count: int,
) -> str:
    """Pages from the task's checkpoint until the message's time is spent: each page's Bulk Import is submitted and
    the next page read while earlier ones wait for their imports, and links commit behind, each page's checkpoint
    right after its links (in page order). Then the next message, or the end of the phase."""
    try:
        task, finished, delta_link = _run_pages(ctx, job, task, first_delivery=dequeue_count == 1)
    except CheckpointConflict:
        return f"{task.entity}/{task.phase}: another delivery checkpointed first; this one stops"
    except Exception as exc:
        if dequeue_count >= MAX_DEQUEUE_COUNT:
            log.exception(
                "full sync %s %s/%s failed for good at page %s", job.job_id, task.entity, task.phase, task.pages_done
            )
            current = ctx.state.jobs.get_task(task.job_id, task.entity, task.phase)
            _finish_task(ctx, current, "failed", f"page {current.pages_done}: {type(exc).__name__}: {exc}", queue)
        raise
    if not finished:
        _enqueue_next(ctx, queue, task)
        return f"{task.entity}/{task.phase} pages {message.page}-{task.pages_done - 1} done"
    return _phase_done(ctx, queue, job, tasks, task, delta_link)


def _run_pages(ctx: SyncContext, job: Job, task: Task, first_delivery: bool) -> tuple[Task, bool, str | None]:
    builder = _builder(ctx, job, task)
    no_links = task.fresh and first_delivery
    pages_before = task.pages_done  # the commits move the checkpoint of `task` itself (_advance)
    started = time.monotonic()
    state: dict[str, Any] = {"task": task, "calls": ctx.api_calls(), "finished": False, "delta": None}

    def ends_run(page_is_last: bool) -> bool:
        return page_is_last or time.monotonic() - started >= ctx.message_seconds or _cancel_asked(ctx, job)

    if task.phase == "to_marketo":
        source = _dynamics_source(ctx, job, task, builder, no_links, state, ends_run)
        depth = max(PAGES_IN_FLIGHT, ctx.import_unit_pages * UNITS_IN_FLIGHT)
    else:
        source = _marketo_source(ctx, job, task, builder, no_links, state, ends_run)
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
        current: Task = state["task"]
        state["calls"] = _advance(
            ctx, current, state["calls"], dict(counts), len(pages), pages[-1].cursor, sum(known) if known else None
        )
        state["task"] = ctx.state.jobs.save_task(current)
        if pages[-1].is_last:
            state["finished"], state["delta"] = True, pages[-1].cursor if task.phase == "to_marketo" else None

    # the source closes first: an import unit it never submitted releases the finishers waiting for it
    with PagePipeline(finish, commit, depth=depth, merge=COMMIT_PAGES) as pipeline, contextlib.closing(source):
        for page in source:
            pipeline.submit(page)
            if page.ends_run:
                break
    if state["task"].pages_done == pages_before and not state["finished"]:  # nothing was left to read
        state["finished"] = True
    return state["task"], bool(state["finished"]), state["delta"]


def _cancel_asked(ctx: SyncContext, job: Job) -> bool:
    """Whether the job was asked to stop (one read a page): the next message then ends the task."""
    found = ctx.state.jobs.get(job.job_id)
    return found is None or found[0].cancel_requested


def _planned_counts(builder: PairBuilder, before: Counter[str]) -> Counter[str]:
    """The counts a page's planning added."""
    planned = Counter(builder.counts)
    planned.subtract(before)
    return +planned


def _dynamics_source(
    ctx: SyncContext,
    job: Job,
    task: Task,
    builder: PairBuilder,
    no_links: bool,
    state: dict[str, Any],
    ends_run: Callable[[bool], bool],
) -> Generator[_RunPage]:
    """Dynamics pages from the checkpoint, planned and started: the to_marketo phase. Up to `ctx.import_unit_pages`
    consecutive pages share one Bulk Import and one id export (an import unit), submitted with its last page or with
    the page that ends the run."""
    entity = builder.entity
    pages = iter(
        ctx.dynamics.read_changes(entity.table, builder.select(), task.cursor, annotations=builder.annotations)
    )
    page = next(pages, None)
    if page is None:
        return
    builder.index, state["task"] = _match_index(ctx, task, page.records, more=not page.is_last)
    unit: BulkCreates | None = None
    unit_pages = 0
    try:
        while page is not None:
            before = Counter(builder.counts)
            works = _planned_dynamics_page(builder, page.records, no_links)
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
            last_of_run = ends_run(page.is_last)
            bulk = unit if joined else None
            if unit is not None and (unit_pages >= ctx.import_unit_pages or last_of_run):
                builder.executor.submit_bulk(unit)
                for work in unit.works:
                    work.plan.create_marketo = _IN_THE_FILE  # (kept not None: it is a create)
                unit, unit_pages = None, 0
            _keep_plans_only(works)
            planned = _planned_counts(builder, before)
            builder.forget_page()
            yield _RunPage(works, bulk, page.cursor, page.is_last, len(page.records), planned, ends_run=last_of_run)
            page = next(pages, None) if not page.is_last else None
    finally:
        if unit is not None:
            unit.abandon("the run stopped before the import unit was complete")


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


def _marketo_source(
    ctx: SyncContext,
    job: Job,
    task: Task,
    builder: PairBuilder,
    no_links: bool,
    state: dict[str, Any],
    ends_run: Callable[[bool], bool],
) -> Generator[_RunPage]:
    """Marketo persons from the checkpoint (REST by ids or a Bulk Extract's file), planned and started: the
    to_dynamics phase. Its Dynamics creates are written as each page starts; its links commit behind."""
    cursor = task.cursor
    first = True
    with contextlib.closing(MarketoPages(ctx, builder.entity.name, builder.marketo_field_names())) as pages:
        while True:
            persons, cursor, finished, expected = pages.next(cursor)
            if first:
                builder.dynamics_index, state["task"] = _dynamics_match_index(
                    ctx, builder, task, len(persons), finished
                )
                first = False
            before = Counter(builder.counts)
            works = _planned_marketo_persons(builder, job, persons, no_links)
            bulk = builder.executor.start(works)
            if builder.dynamics_index is not None:  # later pages find this page's new records, as a lookup would
                for work in works:
                    if work.ok and work.plan.create_dynamics is not None and work.plan.dynamics_id:
                        builder.dynamics_index.add(work.plan.dynamics_id, work.plan.create_dynamics)
            planned = _planned_counts(builder, before)
            builder.forget_page()
            last_of_run = ends_run(finished)
            yield _RunPage(works, bulk, cursor, finished, len(persons), planned, expected, ends_run=last_of_run)
            if finished or last_of_run:
                return


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
    """The next Marketo persons, one page per message (a dry run; a live job runs pages, see _run_pages)."""
    builder = _builder(ctx, job, task)
    with contextlib.closing(MarketoPages(ctx, builder.entity.name, builder.marketo_field_names())) as pages:
        persons, cursor, finished, expected = pages.next(task.cursor)
    if persons:
        builder.run_batch(_planned_marketo_persons(builder, job, persons, no_links))
    counts = {**counts_of(builder.counts).model_dump(), "read": len(persons)}
    return PageResult(counts=counts, cursor=cursor, finished=finished, expected_records=expected)
