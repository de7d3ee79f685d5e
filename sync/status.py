"""What an operator asks first, as Marketo's Sync Status tab shows it and more, per stream: what waits in each
direction and since when, what was synced in the last hour and day, when the last cycle succeeded, how long the
backlog will take; and for the whole sync: Marketo calls today against the budget, Dataverse 429s, full-sync jobs.

Backlog is measured by reading from the stored cursors without moving them (a cursor advances only through the
watermark store's compare-and-swap, which this module never calls):
- Dataverse: the stream's delta link is read page by page (up to DYNAMICS_COUNT_PAGES) and the changes counted; more
  pages than that gives "at least". The oldest change is estimated from `modifiedon` of the first changed rows.
- Marketo (person streams): lead-change and deleted-lead activities since the paging tokens, up to
  MARKETO_COUNT_PAGES pages; each page is a Marketo API call, counted against the day's budget like any other.
Both include the sync's own writes of its last cycle (the next cycle reads them back and skips them as echoes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, computed_field

from sync.connectors.marketo.budget import MARKETO_DAY_ZONE, marketo_day
from sync.mapping.model import EntityMapping, System
from sync.metrics import THROTTLED
from sync.state import Halt, RunRecord, StateStore

if TYPE_CHECKING:
    from sync.engine.context import SyncContext

log = logging.getLogger(__name__)

DYNAMICS_COUNT_PAGES = 3  # pages of up to DYNAMICS_PAGE_SIZE changes (5,000 by default) read to count a backlog
MARKETO_COUNT_PAGES = 2  # pages of up to 300 lead-change activities (plus one page of deletions)
OLDEST_SAMPLE = 50  # changed rows whose modifiedon is read to date the oldest Dataverse change
BUCKET = timedelta(minutes=5)  # the last hour's throughput chart: 12 bars
StreamState = Literal[
    "idle", "running", "partial", "failing", "waiting for quota", "full sync", "never run", "writing stopped"
]


class CursorStatus(BaseModel):
    system: str
    has_cursor: bool
    updated_at: datetime | None = None


class Backlog(BaseModel):
    """Changes waiting in `system` to go `direction`."""

    system: System
    direction: str
    count: int | None = None  # None: not measured (see note)
    exact: bool = False  # False: at least `count` (counting stopped at its page cap), or not measured
    oldest_at: datetime | None = None  # the oldest waiting change (an estimate for Dataverse)
    oldest_estimated: bool = True
    calls: int = 0  # API calls the measurement made
    note: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        if self.count is None:
            return "unknown"
        return str(self.count) if self.exact else f"at least {self.count} (estimate)"


class JobProgress(BaseModel):
    entity: str
    direction: str
    state: str
    read: int
    expected_records: int | None = None
    pages_done: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def percent(self) -> int | None:
        if not self.expected_records:
            return None
        return min(100, round(100 * self.read / self.expected_records))


class JobSummary(BaseModel):
    job_id: str
    state: str
    entities: list[str]
    direction: str
    dry_run: bool = False
    created_at: datetime
    eta_seconds: float | None = None
    error: str | None = None
    tasks: list[JobProgress] = Field(default_factory=list)


class EntityStatus(BaseModel):
    entity: str
    state: StreamState = "never run"
    cursors: list[CursorStatus]
    last_runs: list[RunRecord]
    error_count: int
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None
    resumes_at: datetime | None = None  # its last run stopped at Marketo's daily quota: it waits until then
    backlog: list[Backlog] = Field(default_factory=list)
    oldest_waiting_at: datetime | None = None
    oldest_waiting_age_seconds: float | None = None
    synced_last_hour: int = 0  # records created, updated or deleted on either side
    synced_last_24h: int = 0
    throughput_last_hour: list[int] = Field(default_factory=list)  # records synced per 5 minutes, oldest first
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    eta_seconds: float | None = None  # the backlog at the last 24 hours' processing rate; None: no rate yet
    dynamics_429s_24h: int = 0


class StatusReport(BaseModel):
    generated_at: datetime | None = None
    entities: list[EntityStatus]
    marketo_calls_today: int = 0  # by this sync (run history and full-sync tasks), since 00:00 US Central
    marketo_call_budget: int | None = None  # MARKETO_DAILY_CALL_BUDGET
    dynamics_429s_today: int = 0
    backlog_measured: bool = False
    jobs: list[JobSummary] = Field(default_factory=list)  # queued and running full syncs, then the newest others
    halts: list[Halt] = Field(default_factory=list)  # writing stopped: a system changed under the state


def _synced(run: RunRecord) -> int:
    return run.counts.created + run.counts.updated + run.counts.deleted


def _state(
    entity: str, state: StateStore, last: RunRecord | None, lease_active: bool, waits: bool, halted: bool
) -> StreamState:
    if halted:  # a sandbox refresh or reset: every cycle stops until relink
        return "writing stopped"
    if state.jobs.holder(entity) is not None:
        return "full sync"
    if lease_active:
        return "running"
    if waits:
        return "waiting for quota"
    if last is None:
        return "never run"
    return {"failed": "failing", "partial": "partial", "running": "running"}.get(last.outcome, "idle")  # type: ignore[return-value]


def _throughput(runs: list[RunRecord], now: datetime) -> list[int]:
    buckets = [0] * int(timedelta(hours=1) / BUCKET)
    start = now - timedelta(hours=1)
    for run in runs:
        if run.started_at >= start:
            index = min(len(buckets) - 1, int((run.started_at - start) / BUCKET))
            buckets[index] += _synced(run)
    return buckets


def _eta(backlog: list[Backlog], runs: list[RunRecord]) -> float | None:
    waiting = sum(b.count or 0 for b in backlog)
    if waiting == 0:
        return 0.0 if backlog and all(b.count is not None for b in backlog) else None
    busy = [(r.counts.read, (r.ended_at - r.started_at).total_seconds()) for r in runs if r.ended_at and r.counts.read]
    seconds = sum(s for _, s in busy)
    if not busy or seconds <= 0:
        return None
    return waiting / (sum(n for n, _ in busy) / seconds)


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def dynamics_backlog(
    ctx: SyncContext, stream: EntityMapping, cursor: str | None, updated_at: datetime | None
) -> Backlog:
    """Changes since the stream's delta link, counted by reading it (the watermark is not moved)."""
    from sync.connectors.dynamics.errors import DataverseError

    backlog = Backlog(system="dynamics", direction="to_marketo")
    if cursor is None:
        backlog.note = "no watermark yet: the first cycle reads the whole table"
        return backlog
    before = ctx.dynamics.calls.total()
    count, pages = 0, 0
    sample: list[str] = []
    try:
        for page in ctx.dynamics.read_changes(stream.table, [stream.primary_key], cursor):
            pages += 1
            if page.full_resync:
                backlog.note = "the change token expired: the next cycle reads the whole table"
                break
            count += len(page.records) + len(page.deleted_ids)
            sample.extend(r.id for r in page.records[: OLDEST_SAMPLE - len(sample)])
            if page.is_last or pages >= DYNAMICS_COUNT_PAGES:
                backlog.count, backlog.exact = count, page.is_last
                backlog.note = f"counted by a delta read of {pages} page(s)"
                break
        if sample:
            rows = ctx.dynamics.get_by_ids(stream.table, sample, ["modifiedon"])
            times = [t for r in rows.values() if (t := _parse_time(r.values.get("modifiedon")))]
            backlog.oldest_at = min(times) if times else None
        elif count and updated_at is not None:  # only deletions: they happened after the watermark moved
            backlog.oldest_at = updated_at
    except DataverseError as exc:
        backlog.count, backlog.exact, backlog.note = None, False, f"could not measure: {exc}"
    backlog.calls = ctx.dynamics.calls.total() - before
    return backlog


def marketo_backlog(ctx: SyncContext, stream: EntityMapping, cursor: str | None) -> Backlog:
    """Lead-change and deleted-lead activities since the stream's paging tokens (each page is an API call)."""
    from sync.connectors.marketo.errors import MarketoError
    from sync.engine.changes import MarketoCursor
    from sync.engine.records import marketo_fields

    backlog = Backlog(system="marketo", direction="to_dynamics", oldest_estimated=False)
    if cursor is None:
        backlog.note = "no watermark yet: the first cycle starts from its own start"
        return backlog
    before = ctx.marketo.calls.total()
    tokens = MarketoCursor.load(cursor)
    count, exact = 0, True
    dates: list[datetime] = []
    try:
        for pages, page in enumerate(ctx.marketo.lead_changes(tokens.changes, marketo_fields(stream)), start=1):
            count += len(page.activities)
            dates.extend(a.activity_date for a in page.activities)
            if page.more_result and pages >= MARKETO_COUNT_PAGES:
                exact = False
                break
        for page in ctx.marketo.deleted_leads(tokens.deletes):
            count += len(page.activities)
            dates.extend(a.activity_date for a in page.activities)
            exact = exact and not page.more_result
            break
        backlog.count, backlog.exact = count, exact
        backlog.oldest_at = min(dates) if dates else None
        backlog.note = "activities since the paging tokens"
    except MarketoError as exc:
        backlog.note = f"could not measure: {exc}"
    backlog.calls = ctx.marketo.calls.total() - before
    return backlog


def _jobs(state: StateStore, ctx: SyncContext | None) -> list[JobSummary]:
    from sync.engine.fullsync import view_job

    jobs = state.jobs.list_jobs(limit=20)
    active = [j for j in jobs if j.state in ("queued", "running")]
    shown = active + [j for j in jobs if j not in active][: max(0, 5 - len(active))]
    out = []
    for job in shown:
        found = state.jobs.get(job.job_id)
        tasks = found[1] if found else []
        view = view_job(ctx, job.job_id) if ctx is not None and job in active else None
        out.append(
            JobSummary(
                job_id=job.job_id,
                state=job.state,
                entities=job.entities,
                direction=job.direction,
                dry_run=job.dry_run,
                created_at=job.created_at,
                eta_seconds=view.eta_seconds if view else None,
                error=job.error,
                tasks=[
                    JobProgress(
                        entity=t.entity,
                        direction=t.phase,
                        state=t.state,
                        read=t.counts.read,
                        expected_records=t.expected_records,
                        pages_done=t.pages_done,
                    )
                    for t in sorted(
                        tasks, key=lambda t: job.entities.index(t.entity) if t.entity in job.entities else 0
                    )
                ],
            )
        )
    return out


def _job_marketo_calls_today(state: StateStore, day_start: datetime) -> int:
    total = 0
    for job in state.jobs.list_jobs(limit=50):
        found = state.jobs.get(job.job_id)
        for task in found[1] if found else []:
            if task.updated_at is not None and task.updated_at >= day_start:
                total += task.api_calls.get("marketo", 0)
    return total


def collect_status(
    state: StateStore,
    entities: Iterable[str],
    runs: int = 5,
    now: datetime | None = None,
    *,
    ctx: SyncContext | None = None,
    measure_backlog: bool = True,
    marketo_call_budget: int | None = None,
) -> StatusReport:
    """Every stream of the mapping (in its order), and any other entity the state still has watermarks of. With a
    context, the backlog is measured in both systems (a few read calls per stream) and jobs show their progress."""
    now = now or datetime.now(UTC)
    watermarks = state.watermarks.list()
    # the streams, and entities of an older mapping that still have watermarks ("stream.feed" rows are a stream's
    # own second cursor, e.g. the roles' connection feed, not streams)
    names = list(dict.fromkeys([*entities, *(w.entity for w in watermarks if "." not in w.entity)]))
    day_start = datetime.combine(marketo_day(now), datetime.min.time(), tzinfo=MARKETO_DAY_ZONE).astimezone(UTC)
    measure = ctx is not None and measure_backlog
    report = StatusReport(
        generated_at=now,
        entities=[],
        marketo_call_budget=marketo_call_budget,
        backlog_measured=measure,
        jobs=_jobs(state, ctx),
        halts=state.systems.halts(),
    )
    for entity in names:
        lease = state.leases.get(entity)
        lease_active = lease is not None and lease.expires_at > now
        day = state.runs.since(entity, now - timedelta(hours=24))
        last_runs = day[:runs] if len(day) >= runs else state.runs.recent(entity, limit=runs)
        finished = [r for r in day if r.outcome != "running"]
        resumes_at = last_runs[0].resumes_at if last_runs else None
        waits = resumes_at is not None and resumes_at > now
        marks = {w.system: w for w in watermarks if w.entity == entity}
        status = EntityStatus(
            entity=entity,
            state=_state(entity, state, last_runs[0] if last_runs else None, lease_active, waits, bool(report.halts)),
            cursors=[
                CursorStatus(system=w.system, has_cursor=w.cursor is not None, updated_at=w.updated_at)
                for w in marks.values()
            ],
            last_runs=last_runs,
            error_count=state.errors.count(entity),
            lease_holder=lease.holder if lease_active and lease else None,
            lease_expires_at=lease.expires_at if lease_active and lease else None,
            resumes_at=resumes_at if waits else None,
            synced_last_hour=sum(_synced(r) for r in day if r.started_at >= now - timedelta(hours=1)),
            synced_last_24h=sum(_synced(r) for r in day),
            throughput_last_hour=_throughput(day, now),
            last_run_at=last_runs[0].started_at if last_runs else None,
            last_success_at=next((r.ended_at or r.started_at for r in last_runs if r.outcome == "succeeded"), None)
            or next((r.ended_at or r.started_at for r in day if r.outcome == "succeeded"), None),
            dynamics_429s_24h=sum(r.api_calls.get(THROTTLED, 0) for r in day),
        )
        report.marketo_calls_today += sum(r.api_calls.get("marketo", 0) for r in day if r.started_at >= day_start)
        report.dynamics_429s_today += sum(r.api_calls.get(THROTTLED, 0) for r in day if r.started_at >= day_start)
        if measure and ctx is not None and entity in ctx.mapping.entities:
            stream = ctx.mapping.entity(entity)
            dv = marks.get("dynamics")
            status.backlog.append(
                dynamics_backlog(ctx, stream, dv.cursor if dv else None, dv.updated_at if dv else None)
            )
            if stream.is_persons:
                mk = marks.get("marketo")
                status.backlog.append(marketo_backlog(ctx, stream, mk.cursor if mk else None))
            known = [b.oldest_at for b in status.backlog if b.oldest_at is not None and b.count]
            status.oldest_waiting_at = min(known) if known else None
            if status.oldest_waiting_at is not None:
                status.oldest_waiting_age_seconds = max(0.0, (now - status.oldest_waiting_at).total_seconds())
            status.eta_seconds = _eta(status.backlog, finished)
        report.entities.append(status)
    report.marketo_calls_today += _job_marketo_calls_today(state, day_start)
    return report


# --- how the tables and the status page print times (one place, so the CLI and the page agree) ---------------------
def when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "never"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")
