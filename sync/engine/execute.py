"""Carrying out the plans of one batch of pairs: bulk writes in dependency order, then the commit of their state.

Order: Dynamics creates (their ids go into the Marketo link fields), Marketo creates and updates (new person ids go
into new_marketopersonid), Dynamics updates, then deletes. Each step is one bulk call per chunk with per-record
results; a record that fails becomes a record error and its pair's link and snapshot are not advanced, while the
rest of the batch goes on. Only then are links, snapshots and errors written.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sync.connectors.dynamics.models import WriteResult
from sync.connectors.marketo.bulk_import import PendingImport
from sync.connectors.marketo.models import RecordResult
from sync.engine.imported_ids import ImportedIds
from sync.engine.plan import PairInput, PairPlan, PlanError, as_record_error, marketo_link_fields
from sync.engine.staging import UnitStaging, staged_slots
from sync.mapping.model import EntityMapping, MappingConfig, System
from sync.state import Link, StateStore
from sync.state.links import LinkStore

if TYPE_CHECKING:
    from sync.engine.context import SyncContext


@dataclass(slots=True)  # a full sync holds tens of thousands while their pages are in flight
class PairWork:
    pair: PairInput
    plan: PairPlan
    failure: PlanError | None = None
    stage: UnitStaging | None = None  # a full sync's create: the staging of its import unit's link rows

    @property
    def ok(self) -> bool:
        return self.failure is None and self.plan.error is None

    def fail(self, system: System, record_id: str | None, operation: str, code: str | None, message: str) -> None:
        if self.failure is None:
            self.failure = PlanError(
                system=system, record_id=record_id or "?", operation=operation, code=code or "error", message=message
            )


@dataclass
class BulkCreates:
    """Persons to create by one Bulk Import: a batch's, or those of consecutive pages of a full sync (an import
    unit: fewer, larger imports, one id export for all of them). `since`: Marketo's time when its first job was
    created (before it was submitted, if that is unknown).
    The pages of a unit finish on several threads: the first to get here waits for the import and its ids, once,
    for all of them; a unit that was never submitted (its run failed first) fails them."""

    works: list[PairWork]
    pending: PendingImport | None = None
    since: datetime | None = None
    submitted: threading.Event = field(default_factory=threading.Event, repr=False)
    abandoned: str | None = None
    finished: bool = False
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def rows(self) -> int:
        return len(self.works)

    def abandon(self, reason: str) -> None:
        """The unit will not be submitted: its pages' finishers stop waiting and fail."""
        if not self.submitted.is_set():
            self.abandoned = reason
            self.submitted.set()


@dataclass
class BatchOutcome:
    counts: Counter[str] = field(default_factory=Counter)
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def _dynamics_error_text(result: WriteResult, action: str, table: str, record_id: str | None) -> tuple[str | None, str]:
    error = result.error
    if error is None:  # accepted, but no id came back for it
        code, message, column = None, "no record id in the answer", None
    else:
        code, message, column = error.code, error.message, error.column
    where = f"{table} {record_id}" if record_id else f"a new {table}"
    text = f"Dynamics refused to {action} {where}: {message}" + (f" (column {column})" if column else "")
    return code, text


def _marketo_error_text(
    result: RecordResult,
    action: str,
    record_id: str | None,
    fields: list[str] | None = None,
    where: str | None = None,
) -> tuple[str | None, str]:
    """`fields`: the person fields the call wrote, named in the text when Marketo's reason names none of them;
    `where`: the record, when it has no person id yet."""
    reasons = result.reasons
    code = reasons[0].code if reasons else None
    message = "; ".join(f"{r.code} {r.message}" for r in reasons) or f"status {result.status}"
    where = f"person {record_id}" if record_id else (where or "a new person")
    if code and code.startswith("sync."):  # refused here, before any call: Marketo never saw it
        text = f"Could not send the {action} of {where} to Marketo: {message}"
    else:
        text = f"Marketo refused to {action} {where}: {message}"
    if fields and not any(f"'{name}'" in message for name in fields):
        text += f" (fields written: {', '.join(fields)})"
    return code, text


def _dynamics_ids(works: list[PairWork]) -> list[str]:
    return [w.plan.dynamics_id for w in works if w.plan.dynamics_id]


class Executor:
    def __init__(self, ctx: SyncContext, entity: EntityMapping, dry_run: bool = False, bulk: bool = False) -> None:
        self.ctx = ctx
        self.entity = entity
        self.mapping: MappingConfig = ctx.mapping
        self.dry_run = dry_run
        self.bulk = bulk  # the full sync: many creates go through Marketo's Bulk Import
        self.imported_ids = ImportedIds(ctx.marketo, entity.marketo_id_field)  # shared by the run's imports

    # --- writes -------------------------------------------------------------------------------------------------
    def _create_dynamics(self, works: list[PairWork]) -> None:
        todo = [(w, w.plan.create_dynamics) for w in works if w.ok and w.plan.create_dynamics is not None]
        if not todo:
            return
        key = self.mapping.link_fields.dynamics_marketo_id
        results = self.ctx.dynamics.upsert_multiple(self.entity.table, [row for _, row in todo], alternate_key=key)
        for (work, _), result in zip(todo, results, strict=True):
            if result.error is None and result.id:
                work.plan.dynamics_id = str(result.id)
            else:
                code, text = _dynamics_error_text(result, "create", self.entity.table, None)
                self._fail_write(work, "dynamics", "create", code, text)

    def submit_bulk(self, bulk: BulkCreates, send: Callable[[Callable[[], None]], object] | None = None) -> BulkCreates:
        """Submit the persons to create as a Bulk Import (CSV up to 10 MB a job), keyed on the link field so a
        repeat is an update; `_finish_bulk_create` waits for it and learns their ids. The rows are taken now; the
        upload runs here, or through `send` (a one-thread pool's submit: a full sync plans its next pages while a
        file goes up, and the imports still go out in order). A failed upload fails the unit's pages with its
        error; here it is raised as well."""
        rows = [w.plan.create_marketo or {} for w in bulk.works]
        fields = sorted({name for row in rows for name in row})
        keys = _dynamics_ids(bulk.works)
        self.imported_ids.expect(keys)  # before the upload: an export made meanwhile keeps this import's rows

        def upload() -> None:
            marketo = self.ctx.marketo
            try:
                bulk.since = marketo.server_time()
                bulk.pending = marketo.start_import_leads(rows, fields, lookup_field=self.entity.marketo_id_field)
                if bulk.pending.created_at is not None:  # the job's own creation: rows before it are another import's
                    bulk.since = bulk.pending.created_at
            except BaseException as exc:
                self.imported_ids.forget(keys)
                bulk.error, bulk.finished = exc, True  # nothing to finish: its pages fail with this error
                if send is None:
                    raise
            finally:
                bulk.submitted.set()

        if send is None:
            upload()
        else:
            send(upload)
        return bulk

    def _finish_bulk_create(self, bulk: BulkCreates) -> None:
        """Once per import, whichever page of it gets here first; the others wait and share its outcome."""
        bulk.submitted.wait()
        with bulk.lock:
            if not bulk.finished:
                try:
                    if bulk.abandoned is not None or bulk.pending is None:
                        raise RuntimeError(f"the Bulk Import of {bulk.rows} persons was not sent: {bulk.abandoned}")
                    self._finish_import(bulk, bulk.pending)
                except BaseException as exc:
                    bulk.error = exc
                finally:
                    self.imported_ids.forget(_dynamics_ids(bulk.works))  # resolved or failed: no longer collected
                bulk.finished = True
        if bulk.error is not None:
            raise bulk.error

    def _finish_import(self, bulk: BulkCreates, pending: PendingImport) -> None:
        """Rejected rows become record errors; the others' ids are proven (imported_ids.py) before anything links."""
        creates = bulk.works
        result = self.ctx.marketo.finish_import_leads(pending)
        failed: dict[int, str] = {
            f.index: f"{f.reason.code} {f.reason.message}" for f in result.failures if f.index is not None
        }
        for job in result.failed_jobs:
            done = job.rows_processed or 0
            for index in range(job.first_index + done, job.first_index + job.row_count):
                failed.setdefault(index, f"{job.reason.code} {job.reason.message} (import job {job.job_id})")
        for index, reason in failed.items():
            self._fail_write(
                creates[index], "marketo", "create", reason.split(" ", 1)[0], f"Bulk Import rejected it: {reason}"
            )
        imported = [(w, w.plan.dynamics_id) for i, w in enumerate(creates) if i not in failed and w.plan.dynamics_id]
        if not imported:
            return
        ids = self.imported_ids.resolve([d for _, d in imported], bulk.since)
        for work, dynamics_id in imported:
            person = ids.get(dynamics_id.lower())
            if person is None:
                self._fail_write(work, "marketo", "create", "not_found", "imported, but not found by its link field")
            else:
                work.plan.marketo_id = person

    def _bulk_creates(self, works: list[PairWork]) -> list[PairWork]:
        creates = [w for w in works if w.ok and w.plan.create_marketo is not None]
        return creates if self.bulk and len(creates) >= self.ctx.bulk_import_threshold else []

    def _write_marketo(self, works: list[PairWork], bulk: BulkCreates | None = None) -> None:
        if bulk is not None:
            self._finish_bulk_create(bulk)
        in_bulk = {id(w) for w in bulk.works} if bulk is not None else set()
        creates = [
            (w, w.plan.create_marketo)
            for w in works
            if w.ok and w.plan.create_marketo is not None and id(w) not in in_bulk
        ]
        if creates:
            results = self.ctx.marketo.sync_leads(
                [person for _, person in creates],
                action="createOrUpdate",
                lookup_field=self.entity.marketo_id_field,
            )
            for (work, _), result in zip(creates, results, strict=True):
                if result.status in ("created", "updated") and result.id is not None:
                    work.plan.marketo_id = str(result.id)
                else:
                    source = (
                        f"a new person for {self.entity.table} {work.plan.dynamics_id}"
                        if work.plan.dynamics_id
                        else None
                    )
                    code, text = _marketo_error_text(result, "create", None, where=source)
                    self._fail_write(work, "marketo", "create", code, text)
        updates: list[tuple[PairWork, dict[str, Any]]] = []
        for work in works:
            if not work.ok or work.plan.marketo_id is None or work.plan.create_marketo is not None:
                continue
            fields = dict(work.plan.update_marketo or {})
            if work.plan.needs_dynamics_id and work.plan.dynamics_id:
                created = self.ctx.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                fields.update(marketo_link_fields(self.entity, self.mapping, work.plan.dynamics_id, created))
            if fields:
                updates.append((work, {"id": int(work.plan.marketo_id), **fields}))
        if updates:
            results = self.ctx.marketo.sync_leads([u for _, u in updates], action="updateOnly", lookup_field="id")
            for (work, sent), result in zip(updates, results, strict=True):
                if result.status not in ("updated", "created"):
                    written = [name for name in sent if name != "id"]
                    code, text = _marketo_error_text(result, "update", work.plan.marketo_id, written)
                    self._fail_write(work, "marketo", "update", code, text)

    def _update_dynamics(self, works: list[PairWork]) -> None:
        key = self.mapping.link_fields.dynamics_marketo_id
        primary = f"{self.entity.table}id"
        updates: list[tuple[PairWork, dict[str, Any]]] = []
        for work in works:
            if not work.ok or work.plan.dynamics_id is None or work.plan.create_dynamics is not None:
                continue
            columns = dict(work.plan.update_dynamics or {})
            if work.plan.needs_marketo_id and work.plan.marketo_id:
                columns[key] = work.plan.marketo_id
            if columns:
                updates.append((work, {primary: work.plan.dynamics_id, **columns}))
        if not updates:
            return
        results = self.ctx.dynamics.update_multiple(self.entity.table, [u for _, u in updates])
        for (work, _), result in zip(updates, results, strict=True):
            if result.error is not None:
                code, text = _dynamics_error_text(result, "update", self.entity.table, work.plan.dynamics_id)
                self._fail_write(work, "dynamics", "update", code, text)

    def _deletes(self, works: list[PairWork]) -> None:
        marketo_deletes = [
            (w, w.plan.marketo_id) for w in works if w.ok and w.plan.delete_marketo and w.plan.marketo_id
        ]
        if marketo_deletes:
            results = self.ctx.marketo.delete_leads([int(marketo_id) for _, marketo_id in marketo_deletes])
            for (work, marketo_id), result in zip(marketo_deletes, results, strict=True):
                if result.status != "deleted" and not any(r.code == "1004" for r in result.reasons):
                    code, text = _marketo_error_text(result, "delete", marketo_id)
                    self._fail_write(work, "marketo", "delete", code, text)
        for work in works:
            if work.ok and work.plan.delete_dynamics and work.plan.dynamics_id:
                self.ctx.dynamics.delete(self.entity.table, work.plan.dynamics_id)  # a missing record is fine

    @staticmethod
    def _fail_write(work: PairWork, target: System, operation: str, code: str | None, message: str) -> None:
        """Record the failure under the record the data came from (the other side), so that the retry re-reads it
        with its counterpart; a write with no source record on the other side is recorded under its target."""
        source: System = "marketo" if target == "dynamics" else "dynamics"
        source_id = work.plan.marketo_id if source == "marketo" else work.plan.dynamics_id
        if source_id is None or (
            source == "dynamics" and work.pair.dynamics is None and work.pair.dynamics_deleted_id is None
        ):
            source, source_id = target, work.plan.dynamics_id if target == "dynamics" else work.plan.marketo_id
        work.fail(source, source_id, operation, code, message)

    # --- the batch ----------------------------------------------------------------------------------------------
    def run(self, works: list[PairWork], retried: set[tuple[str, str]] | None = None) -> BatchOutcome:
        if not self.dry_run:
            self.finish(works, self.start(works))
            self.commit(works, retried or set())
        return self.outcome(works)

    def start(self, works: list[PairWork], unit: BulkCreates | None = None, submit: bool = True) -> BulkCreates | None:
        """The writes a batch can start without waiting: Dynamics creates (their ids go into the link fields), then
        the Bulk Import of many Marketo creates, submitted but not waited for (a full sync's pipeline overlaps it
        with the next page and with the commit of the one before). The creates join `unit` when given (an import
        shared by consecutive pages); `submit=False` leaves it for a later page to submit (`submit_bulk`).
        Returns the import the batch's creates are in, or `unit` (maybe None) when it has none."""
        self._create_dynamics(works)
        creates = self._bulk_creates(works)
        if not creates:
            return unit
        if unit is None:
            unit = BulkCreates(works=[])
        unit.works.extend(creates)
        return self.submit_bulk(unit) if submit else unit

    def finish(self, works: list[PairWork], bulk: BulkCreates | None) -> None:
        """The rest, in order: the import's end and its ids, Marketo creates and updates, Dynamics updates, deletes."""
        self._write_marketo(works, bulk)
        self._update_dynamics(works)
        self._deletes(works)

    @staticmethod
    def outcome(works: list[PairWork]) -> BatchOutcome:
        outcome = BatchOutcome()
        for work in works:
            outcome.counts["failed" if not work.ok else work.plan.outcome] += 1
            outcome.conflicts.extend(
                {"dynamics_id": work.plan.dynamics_id, "marketo_id": work.plan.marketo_id, **c.model_dump()}
                for c in work.plan.conflicts
            )
        return outcome

    def commit(self, works: list[PairWork], retried: set[tuple[str, str]]) -> None:
        state: StateStore = self.ctx.state
        now = self.ctx.clock()
        to_save: list[Link] = []
        to_remove = []
        for work in works:
            if not work.ok:
                continue
            to_remove.extend(work.plan.remove_links)
            plan = work.plan
            saves = plan.save_snapshot is not None or plan.snapshot_json is not None
            if saves and plan.dynamics_id and plan.marketo_id:
                to_save.append(
                    Link.model_construct(  # our own values: a model's validation would copy every snapshot
                        entity=self.entity.name,
                        dynamics_id=plan.dynamics_id,
                        marketo_id=plan.marketo_id,
                        snapshot=plan.save_snapshot or {},
                        snapshot_json=plan.snapshot_json,
                        synced_at=now,
                    )
                )
        links: LinkStore = state.links
        if to_remove:
            links.delete(Link(entity=r.entity, dynamics_id=r.dynamics_id, marketo_id=r.marketo_id) for r in to_remove)
        if to_save:
            saved = {link.dynamics_id for link in to_save}
            links.save(to_save, staged=staged_slots(w for w in works if w.ok and w.plan.dynamics_id in saved))
        for work in works:
            error = work.failure or work.plan.error
            if error is not None:
                state.errors.record(as_record_error(self.entity.name, error), now=now)
                continue
            sides: tuple[tuple[System, str | None], ...] = (
                ("dynamics", work.plan.dynamics_id),
                ("marketo", work.plan.marketo_id),
            )
            for system, record_id in sides:
                if record_id and (system, record_id) in retried:
                    state.errors.resolve(self.entity.name, system, record_id)
