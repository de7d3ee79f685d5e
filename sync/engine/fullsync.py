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

What one message does with its pages (one page, or a run of pages in flight) is in fullsync_pages.py.

Delivery is at least once. A page's writes are idempotent (links are matched before anything is created, creates
are upserts on the link fields), and a message whose page is already checkpointed changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync.engine.changes import initial_marketo_cursor
from sync.engine.context import SyncContext
from sync.engine.fullsync_pages import advance, process_page, run_pages, runs_pages
from sync.engine.identity import SandboxChanged, check_systems, halted_reason
from sync.engine.marketo_pages import MarketoReadCursor
from sync.engine.person_ids import oldest_persons
from sync.mapping.model import Direction, EntityMapping, MappingConfig, System
from sync.state import CheckpointConflict, EntityClaimed, Job, Task
from sync.state.jobs import JobState, Phase
from sync.state.queue import MAX_DEQUEUE_COUNT, WorkMessage, WorkQueue

log = logging.getLogger(__name__)
PHASE_ORDER: tuple[Phase, ...] = ("to_marketo", "to_dynamics")


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
            # a first sync of an entity finds no links: its pages need not look for them (see process_page)
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
        if not task.next_enqueued and task.state == "running" and runs_pages(ctx, job, task):
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
    if runs_pages(ctx, job, task):
        return _process_run(ctx, queue, job, tasks, task, message, dequeue_count)
    calls_before = ctx.api_calls()
    try:
        result = process_page(ctx, job, task, first_delivery=dequeue_count == 1)
    except Exception as exc:
        if dequeue_count >= MAX_DEQUEUE_COUNT:  # the host moves it to the poison queue: record why, end the job
            log.exception(
                "full sync %s %s/%s page %s failed for good", job.job_id, task.entity, task.phase, task.pages_done
            )
            _finish_task(ctx, task, "failed", f"page {task.pages_done}: {type(exc).__name__}: {exc}", queue)
        raise
    advance(ctx, task, calls_before, result.counts, 1, result.cursor, result.expected_records)
    try:
        task = ctx.state.jobs.save_task(task)
    except CheckpointConflict:
        return f"page {message.page} of {task.entity}/{task.phase} was checkpointed by another delivery"
    if not result.finished:
        _enqueue_next(ctx, queue, task)
        return f"{task.entity}/{task.phase} page {message.page} done"
    return _phase_done(ctx, queue, job, tasks, task, result.delta_link)


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
        task, finished, delta_link = run_pages(ctx, job, task, first_delivery=dequeue_count == 1)
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
