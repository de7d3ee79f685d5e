"""One incremental cycle of one stream: what a timer runs. `run_cycle` is the same for every stream (lease, run
history, report); the stream's adapter does the reading and writing: persons (two-way, below) or one-way CRM objects.

Persons:

    lease -> Marketo changes since its watermark (compacted per person)
          -> Dynamics changes page by page; per page: pairs -> plans -> bulk writes -> commit -> Dynamics watermark
          -> the Marketo changes no Dynamics page covered -> plans -> writes -> commit -> Marketo watermark

A linked pair's side that did not change this cycle is rebuilt from the snapshot (it still holds what was synced),
so an incremental cycle reads each change once and fetches nothing else for linked records. Unlinked records are
matched (link fields, then e-mail) before anything is created. The cycle stops at a page boundary when its time
budget is spent; what it has not read stays behind the watermark for the next cycle.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from sync.connectors.dynamics.errors import AuthenticationError as DataverseAuthenticationError
from sync.connectors.dynamics.errors import DataverseError
from sync.connectors.marketo import CallBudgetExhaustedError, DailyQuotaExceededError
from sync.connectors.marketo.budget import marketo_day_end
from sync.connectors.marketo.errors import MarketoAuthError, MarketoError
from sync.engine.changes import MarketoCursor, initial_marketo_cursor, read_marketo_changes
from sync.engine.context import SyncContext
from sync.engine.crm_plan import CrmPlan
from sync.engine.crm_stream import verify_object_type
from sync.engine.identity import SandboxChanged, guard, on_token_refused
from sync.engine.pairs import MERGED_DUPLICATE, PairBuilder
from sync.engine.plan import PairPlan
from sync.engine.roles import CONNECTION_COLUMNS, RoleBatches, batches_for
from sync.mapping.model import EntityMapping
from sync.state import Lease, LeaseHeld, RunCounts, RunRecord, Watermark
from sync.state.runs import RunOutcome

MARKETO_CHUNK = 5000  # Marketo-side changes handled between two looks at the clock (as a Dataverse page)
# A cycle's lease is short, so a killed runner blocks its entity for about a minute; the live holder renews it at
# page boundaries once half of it has passed (a page must take less than LEASE_DURATION).
LEASE_DURATION = timedelta(seconds=60)
# Lead and contact cycles match and create the same Marketo persons: they take turns under one more lease, so an
# unlinked lead and contact with one e-mail never race to create or link two persons (the first takes it, the other
# becomes an ambiguous_match record error naming it). A turn is waited for, not skipped, so neither starves.
PERSONS_LEASE = "persons"
PERSONS_LEASE_WAIT_SECONDS = 45.0


class LeaseLost(Exception):
    """Another runner took the entity's lease over (this one paused past its expiry): stop before writing more."""


class CycleReport(BaseModel):
    entity: str
    run_id: str
    outcome: RunOutcome  # succeeded, partial (stopped at the time budget or with record errors), failed, skipped
    counts: RunCounts = Field(default_factory=RunCounts)
    conflicts: list[dict[str, Any]] = Field(default_factory=list)
    api_calls: dict[str, int] = Field(default_factory=dict)
    complete: bool = True
    error: str | None = None
    plans: list[PairPlan | CrmPlan] = Field(default_factory=list)  # kept for dry runs
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    resumes_at: datetime | None = None  # stopped by Marketo's daily quota or our call budget: waits until then


def failure_line(exc: Exception) -> str:
    """One line for the operator: which system failed, and for a refused credential which setting to renew."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    if isinstance(exc, DataverseAuthenticationError):
        return f"Dynamics refused the sync's credential (renew DYNAMICS_CLIENT_SECRET or _CERTIFICATE): {text}"
    if isinstance(exc, MarketoAuthError):
        return f"Marketo refused the sync's credential (renew MARKETO_CLIENT_ID / MARKETO_CLIENT_SECRET): {text}"
    if isinstance(exc, MarketoError) and exc.code == "1006":  # a mapped field an admin deleted
        return f"Marketo: {text}; the mapping names a field Marketo does not have: `python -m sync check` lists them"
    if isinstance(exc, DataverseError):
        return f"Dynamics: {text}"
    if isinstance(exc, MarketoError):
        return f"Marketo: {text}"
    return text


class _Cycle:
    """What every stream's cycle shares: the time budget and the watermark's advance."""

    def __init__(self, ctx: SyncContext, entity: EntityMapping, dry_run: bool = False) -> None:
        self.ctx = ctx
        self.entity = entity
        self.dry_run = dry_run
        self._deadline: datetime | None = None
        self.lease: Lease | None = None  # renewed as the cycle goes; run_cycle sets it
        self.token_refused = False  # the Dynamics delta token was refused and the organization checked
        self.persons_lease: Lease | None = None  # person streams: the turn they share (PERSONS_LEASE)

    def past_deadline(self) -> bool:
        return self._deadline is not None and self.ctx.clock() >= self._deadline

    def keep_lease(self) -> None:
        """At a page boundary: renew the lease once half of it has passed, by compare-and-swap on its ETag. Raises
        LeaseLost if another runner holds it now, so nothing more is written."""
        now = self.ctx.clock()
        try:
            if self.lease is not None and self.lease.expires_at - now <= LEASE_DURATION / 2:
                self.lease = self.ctx.state.leases.renew(self.lease, LEASE_DURATION, now=now)
            if self.persons_lease is not None and self.persons_lease.expires_at - now <= LEASE_DURATION / 2:
                self.persons_lease = self.ctx.state.leases.renew(self.persons_lease, LEASE_DURATION, now=now)
        except LeaseHeld as held:
            raise LeaseLost(f"lost the lease of {self.entity.name} ({held}); stopped at a page boundary") from None

    def _page_boundary(self) -> bool:
        """Between two pages of a read: keep the lease, and say whether the time budget is spent."""
        self.keep_lease()
        return self.past_deadline()

    def _advance(self, mark: Watermark, cursor: str) -> Watermark:
        if self.dry_run:
            return mark
        return self.ctx.state.watermarks.advance(mark, cursor)

    def run(self) -> bool:
        raise NotImplementedError

    @property
    def counts(self) -> Counter[str]:
        raise NotImplementedError

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        return []

    @property
    def plans(self) -> list[PairPlan | CrmPlan]:
        return []

    @property
    def skipped_reasons(self) -> dict[str, int]:
        return {}


class OneWayCycle(_Cycle):
    """A one-way stream: the rows whose errors are retried, then Dataverse changes page by page, each page planned,
    written and committed before the watermark moves past it. Idle, it costs one Dataverse call and no Marketo call."""

    def __init__(self, ctx: SyncContext, entity: EntityMapping, dry_run: bool = False) -> None:
        super().__init__(ctx, entity, dry_run)
        self.batches = batches_for(ctx, entity, dry_run)

    @property
    def counts(self) -> Counter[str]:
        return self.batches.counts

    @property
    def plans(self) -> list[PairPlan | CrmPlan]:
        return list(self.batches.plans)

    @property
    def skipped_reasons(self) -> dict[str, int]:
        return dict(self.batches.skipped.most_common())

    def run(self) -> bool:
        self._deadline = self.ctx.clock() + self.ctx.time_budget
        verify_object_type(self.ctx, self.entity)  # a custom object type that lacks a mapped field fails here
        state, name = self.ctx.state, self.entity.name
        retry = sorted({e.record_id for e in state.errors.list(name) if e.system == "dynamics"})
        self.batches.retried = set(retry)
        if retry:  # records that failed before are read again and go first; one gone since is a delete
            found = self.batches.fetch(retry)
            self.keep_lease()
            self.batches.run(list(found.values()), [i for i in retry if i not in found])
        mark = state.watermarks.get(name, "dynamics")
        pages = self.ctx.dynamics.read_changes(self.entity.table, self.batches.select(), mark.cursor, annotations=True)
        for page in pages:
            if page.full_resync and not self.token_refused:
                self.token_refused = True  # once: the pages after it are of the same full read
                on_token_refused(self.ctx, self.entity.table)
            self.keep_lease()
            self.batches.run(page.records, page.deleted_ids)
            mark = self._advance(mark, page.cursor)
            if not page.is_last and self.past_deadline():
                return False
        if isinstance(self.batches, RoleBatches):
            return self._connection_changes(self.batches)
        return True

    def _connection_changes(self, batches: RoleBatches) -> bool:
        """Roles: the connections changed since the connection feed's watermark name the opportunities to redo."""
        mark = self.ctx.state.watermarks.get(batches.connection_feed, "dynamics")
        table = batches.rules.connection_table
        for page in self.ctx.dynamics.read_changes(table, CONNECTION_COLUMNS, mark.cursor, annotations=True):
            self.keep_lease()
            batches.run_opportunities(batches.opportunities_of(page.records, page.deleted_ids))
            mark = self._advance(mark, page.cursor)
            if not page.is_last and self.past_deadline():
                return False
        return True


class IncrementalCycle(_Cycle):
    def __init__(self, ctx: SyncContext, entity: EntityMapping, dry_run: bool = False) -> None:
        super().__init__(ctx, entity, dry_run)
        self.builder = PairBuilder(ctx, entity, dry_run)

    @property
    def counts(self) -> Counter[str]:
        return self.builder.counts

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        return self.builder.conflicts

    @property
    def plans(self) -> list[PairPlan | CrmPlan]:
        return list(self.builder.plans)

    # --- the cycle ----------------------------------------------------------------------------------------------
    def run(self) -> bool:
        """Run the cycle; True when every change up to now was read (False: stopped at the time budget)."""
        start = self.ctx.clock()
        self._deadline = start + self.ctx.time_budget
        state, name = self.ctx.state, self.entity.name
        errors = list(state.errors.list(name))
        self.builder.retried = {(e.system, e.record_id) for e in errors}
        self.builder.retry_persons = {e.record_id for e in errors if e.system == "marketo"}
        self.builder.merged_duplicates = {e.record_id: e.message for e in errors if e.code == MERGED_DUPLICATE}
        retry_dynamics = [e.record_id for e in errors if e.system == "dynamics"]

        mk_mark = state.watermarks.get(name, "marketo")
        if mk_mark.cursor is None:
            cursor = initial_marketo_cursor(self.ctx.marketo, start)
        else:
            cursor = MarketoCursor.load(mk_mark.cursor)
        changes = read_marketo_changes(
            self.ctx.marketo,
            cursor,
            self.builder.marketo_field_names(),
            self._page_boundary,
            # a write refused for a field Marketo does not have (1006): its fields' ids are read again, and a mapped
            # field gone from Marketo fails the read, as leadchanges.json fails it, with the `sync check` hint
            recheck_fields=any(e.code == "1006" for e in errors),
        )
        pending = changes.persons | changes.deleted | self.builder.retry_persons
        if changes.merged:  # first, so that this cycle's pairs already see the links at the winners
            self.keep_lease()
            failed_before = self.builder.counts["failed"]
            self.builder.run_batch(self.builder.merge_batch(changes))
            if self.builder.counts["failed"] > failed_before and changes.cursor is not None:
                # A move that did not land is read again next cycle (a moved link is not found twice, and the deletes
                # read with it apply once); past the activity, the loser's link would point at a person who is gone.
                changes.cursor.deletes = cursor.deletes

        dv_mark = state.watermarks.get(name, "dynamics")
        dynamics_complete = True
        if retry_dynamics:  # records that failed before are read again and go first
            retry_records = list(self.builder.fetch_dynamics(retry_dynamics).values())
            self.keep_lease()
            self.builder.run_batch(
                self.builder.dynamics_batch(retry_records, [], changes, pending, fetch_counterparts=True)
            )
        pages = self.ctx.dynamics.read_changes(
            self.entity.table, self.builder.select(), dv_mark.cursor, annotations=self.builder.annotations
        )
        for page in pages:
            if page.full_resync and not self.token_refused:
                self.token_refused = True  # once: the pages after it are of the same full read
                on_token_refused(self.ctx, self.entity.table)
            self.keep_lease()
            self.builder.run_batch(self.builder.dynamics_batch(page.records, page.deleted_ids, changes, pending))
            dv_mark = self._advance(dv_mark, page.cursor)
            if not page.is_last and self.past_deadline():
                dynamics_complete = False
                break

        remaining = sorted(pending)
        while remaining:  # in chunks, so a huge backlog still stops at the time budget
            chunk, remaining = set(remaining[:MARKETO_CHUNK]), remaining[MARKETO_CHUNK:]
            self.keep_lease()
            self.builder.run_batch(self.builder.marketo_batch(chunk, changes, dynamics_complete))
            if remaining and self.past_deadline():
                return False  # the Marketo watermark stays: the next cycle reads these changes again (echo-safe)
        assert changes.cursor is not None
        self._advance(mk_mark, changes.cursor.dump())
        return dynamics_complete and changes.complete


def counts_of(counts: Counter[str]) -> RunCounts:
    outcomes = ("created", "updated", "deleted", "unchanged", "skipped", "failed")
    return RunCounts(read=sum(counts.values()), **{k: counts.get(k, 0) for k in outcomes})


def _wait_for_persons_turn(ctx: SyncContext, holder: str) -> Lease:
    """The person streams' shared lease, waited for (a live holder releases it within its time budget, a dead one's
    expires within LEASE_DURATION); LeaseHeld when it is not free within PERSONS_LEASE_WAIT_SECONDS. `holder` names
    the stream too: lead and contact timers of one process must not share a turn."""
    give_up = time.monotonic() + PERSONS_LEASE_WAIT_SECONDS
    while True:
        try:
            return ctx.state.leases.acquire(PERSONS_LEASE, holder, LEASE_DURATION, now=ctx.clock())
        except LeaseHeld:
            if time.monotonic() >= give_up:
                raise
            time.sleep(0.5)


def run_cycle(ctx: SyncContext, entity_name: str, dry_run: bool = False) -> CycleReport:
    """Run one incremental cycle of an entity under its lease, and record it in the run history."""
    entity = ctx.mapping.entity(entity_name)
    run = RunRecord(entity=entity.name, direction=entity.direction, kind="incremental", started_at=ctx.clock())
    report = CycleReport(entity=entity.name, run_id=run.run_id, outcome="running")
    calls_before = ctx.api_calls()  # from here: the identity check below counts as this cycle's
    stopped = guard(ctx)
    if stopped is not None:  # a system changed under the state (sandbox refresh or reset): nothing is written
        report.outcome, report.error = "skipped", stopped
        return report
    job = ctx.state.jobs.holder(entity.name)
    if job is not None:  # the full sync owns the entity until it ends; its delta link then becomes the watermark
        report.outcome, report.error = "skipped", f"a full sync of {entity.name} is running (job {job})"
        return report
    last = ctx.state.runs.recent(entity.name, limit=1)
    if last and last[0].resumes_at is not None and ctx.clock() < last[0].resumes_at:
        report.outcome, report.resumes_at = "skipped", last[0].resumes_at
        report.error = f"the day's Marketo calls are spent; {entity.name} resumes at {last[0].resumes_at.isoformat()}"
        return report
    try:
        lease = ctx.state.leases.acquire(entity.name, ctx.holder, LEASE_DURATION, now=ctx.clock())
    except LeaseHeld as held:
        report.outcome, report.error = "skipped", str(held)
        return report
    persons_lease = None
    if entity.is_persons:
        try:
            persons_lease = _wait_for_persons_turn(ctx, f"{ctx.holder}/{entity.name}")
        except LeaseHeld as held:
            ctx.state.leases.release(lease)
            report.outcome, report.error = "skipped", f"the other person streams' cycle still runs ({held})"
            return report
    cycle: _Cycle = IncrementalCycle(ctx, entity, dry_run) if entity.is_persons else OneWayCycle(ctx, entity, dry_run)
    cycle.lease, cycle.persons_lease = lease, persons_lease
    if not dry_run:
        ctx.state.runs.record(run)
    try:
        report.complete = cycle.run()
        failed = cycle.counts.get("failed", 0)
        report.outcome = "succeeded" if report.complete and not failed else "partial"
    except (DailyQuotaExceededError, CallBudgetExhaustedError) as exc:
        # The page in flight is not committed (its writes are idempotent and are redone): the watermarks stay at the
        # last page boundary, and the entity waits for the quota to reset at 00:00 US Central.
        report.outcome, report.complete = "partial", False
        report.resumes_at = marketo_day_end(ctx.clock())
        report.error = (
            f"{exc}; stopped at a page boundary, resumes at {report.resumes_at.isoformat()} (00:00 US Central)"
        )
    except SandboxChanged as exc:  # found mid-cycle: it stops before writing the page whose token was refused
        report.outcome, report.complete = "skipped", False
        report.error = f"writing stopped: {exc}; run `python -m sync relink --after-refresh`"
    except Exception as exc:  # recorded for the operator; the watermark stays where the last commit left it
        report.outcome = "failed"
        report.error = failure_line(exc)
    finally:
        ctx.state.leases.release(cycle.lease or lease)  # the renewed one: a lease lost meanwhile is left to its holder
        if cycle.persons_lease is not None:
            ctx.state.leases.release(cycle.persons_lease)
    after = ctx.api_calls()
    report.api_calls = {system: after[system] - calls_before[system] for system in after}
    report.counts = counts_of(cycle.counts)
    report.conflicts = cycle.conflicts
    report.plans = cycle.plans
    report.skipped_reasons = cycle.skipped_reasons
    if not dry_run:
        run.ended_at = ctx.clock()
        run.counts = report.counts
        run.api_calls = report.api_calls
        run.outcome = report.outcome
        run.error = report.error
        run.conflicts = cycle.conflicts[:50]
        run.skipped_reasons = report.skipped_reasons
        run.resumes_at = report.resumes_at
        ctx.state.runs.record(run)
    return report
