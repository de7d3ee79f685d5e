"""The adapter for one-way streams: Dataverse rows -> a Marketo CRM object (sales persons, companies, opportunities,
custom objects), by the stream's dedupe key.

Per batch of rows (a change-tracking page, or the rows whose record errors are retried): references are resolved from
the link state, each row is planned against its snapshot (crm_plan, pure), the creates and updates go to Marketo 300
per call and the deletes by dedupe key, and then links, snapshots and record errors are committed. A row Marketo
refuses becomes a record error while the rest of the batch syncs; the error store owns its retry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sync.connectors.marketo import MarketoError
from sync.connectors.marketo.models import ObjectDescription
from sync.engine.crm_plan import CrmInput, CrmPlan, plan_row
from sync.engine.filters import filter_columns, skip_reason
from sync.engine.plan import PlanError, as_record_error
from sync.engine.records import OptionSets, dynamics_canonical, dynamics_select, option_sets
from sync.engine.references import ReferenceResolver
from sync.mapping.model import EntityMapping
from sync.state import Link

if TYPE_CHECKING:
    from sync.engine.context import SyncContext

NOT_FOUND = "1013"  # Marketo: the record is already gone
ADMIN_HINT = "a Marketo admin creates and approves custom object types (Admin > Marketo Custom Objects)"


class ObjectTypeMismatch(ValueError):
    """A custom object stream's type is missing in Marketo or lacks what the mapping writes; names the field."""


def object_type_problems(stream: EntityMapping, described: ObjectDescription) -> list[str]:
    """What a custom object type lacks for a stream: a mapped field, its dedupe field, a link field. Pure."""
    target = stream.marketo_object
    fields = {f.name for f in described.fields}
    problems = [
        f"{target} has no field {f.marketo!r} (mapped from {stream.table}.{f.dynamics})"
        for f in stream.synced_fields
        if f.marketo not in fields
    ]
    if stream.key_field not in described.dedupe_fields:
        dedupe = ", ".join(described.dedupe_fields) or "none"
        problems.append(f"{stream.key_field!r} (marketo_key) is not a dedupe field of {target} ({dedupe})")
    links = {str(r.get("field")) for r in described.relationships if isinstance(r, dict)}
    for reference in stream.references:
        if reference.marketo in fields and reference.marketo not in links:
            problems.append(
                f"{reference.marketo!r} (from {stream.table}.{reference.column}) is not a link field of {target}"
                f" (links: {', '.join(sorted(links)) or 'none'})"
            )
    return problems


def verify_object_type(ctx: SyncContext, stream: EntityMapping) -> None:
    """Before a custom object stream writes anything (once per process): its type exists with every mapped field,
    its dedupe field and its link. Raises ObjectTypeMismatch naming what is missing."""
    if not stream.marketo_object.startswith("customobjects/") or stream.name in ctx.verified_objects:
        return
    try:
        described = ctx.marketo.crm(stream.marketo_object).describe()
    except MarketoError as exc:
        if exc.systemic:
            raise
        raise ObjectTypeMismatch(
            f"stream {stream.name}: Marketo has no custom object type {stream.marketo_object} ({exc.code} "
            f"{exc.message}); {ADMIN_HINT}"
        ) from None
    problems = object_type_problems(stream, described)
    if problems:
        raise ObjectTypeMismatch(f"stream {stream.name}: {'; '.join(problems)}; {ADMIN_HINT}")
    ctx.verified_objects.add(stream.name)


class CrmBatches:
    """Runs batches of one one-way stream; counts and (for dry runs) plans accumulate across batches."""

    def __init__(self, ctx: SyncContext, stream: EntityMapping, dry_run: bool = False) -> None:
        self.ctx = ctx
        self.stream = stream
        self.dry_run = dry_run
        self.client = ctx.marketo.crm(stream.marketo_object)
        self.references = ReferenceResolver(ctx, stream, dry_run)
        self.counts: Counter[str] = Counter()
        self.plans: list[CrmPlan] = []
        self.conflicts: list[dict[str, Any]] = []  # one-way: Dynamics always wins, so never any
        self.retried: set[str] = set()
        self.skipped: Counter[str] = Counter()  # why rows were skipped, for the run history and status
        self._options: OptionSets | None = None

    @property
    def options(self) -> OptionSets:
        if self._options is None:
            self._options = option_sets(self.ctx.dynamics, self.stream)
        return self._options

    def select(self) -> list[str]:
        extra = (self.stream.primary_key, *filter_columns(self.stream, self.ctx.mapping))
        return dynamics_select(self.stream, extra)

    def fetch(self, ids: Sequence[str]) -> dict[str, Any]:
        found = self.ctx.dynamics.get_by_ids(self.stream.table, list(ids), self.select(), annotations=True)
        return {str(k).lower(): v for k, v in found.items()}

    # --- one batch ------------------------------------------------------------------------------------------------
    def run(self, records: Sequence[Any], deleted_ids: Sequence[str] = ()) -> list[CrmPlan]:
        inputs = self.inputs(records, deleted_ids)
        plans = [plan_row(self.stream, item) for item in inputs]
        if not self.dry_run:
            self._write(plans)
            self._commit(plans, {i.row_id: i for i in inputs})
        else:
            self.plans.extend(plans)
        for plan in plans:
            self.counts["failed" if plan.error else plan.outcome] += 1
            if plan.outcome == "skipped" and plan.reason:
                self.skipped[plan.reason] += 1
        return plans

    def inputs(self, records: Sequence[Any], deleted_ids: Sequence[str]) -> list[CrmInput]:
        ids = [str(r.id).lower() for r in records]
        deleted = [str(i).lower() for i in deleted_ids]
        links = self.ctx.state.links.get_many_by_dynamics_id(self.stream.name, [*ids, *deleted])
        resolved = self.references.resolve(records)
        inputs: list[CrmInput] = []
        for record, row_id in zip(records, ids, strict=True):
            link = links.get(row_id)
            item = CrmInput(
                row_id=row_id,
                linked=link.marketo_id if link else None,
                snapshot=link.snapshot if link else None,
                skip=skip_reason(self.stream, self.ctx.mapping, record.values),
            )
            values, problems = dynamics_canonical(
                self.stream, record.values, self.options, getattr(record, "annotations", None)
            )
            waiting = resolved.waiting.get(row_id)
            if item.skip is None and waiting is not None:
                item.problem, item.problem_code = waiting.text, waiting.code
            elif item.skip is None and problems:
                item.problem = "; ".join(problems)
            item.values = {**values, **resolved.values.get(row_id, {})}
            inputs.append(item)
        for row_id in deleted:
            link = links.get(row_id)
            inputs.append(CrmInput(row_id=row_id, deleted=True, linked=link.marketo_id if link else None))
        return inputs

    # --- writes and commit --------------------------------------------------------------------------------------
    def _fail(self, plan: CrmPlan, operation: str, code: str | None, message: str) -> None:
        plan.error = PlanError(
            system="dynamics", record_id=plan.row_id, operation=operation, code=code or "error", message=message
        )
        plan.outcome = "failed"

    def _refused(self, plan: CrmPlan, operation: str, result: Any) -> None:
        reasons = getattr(result, "reasons", None) or []
        code = reasons[0].code if reasons else None
        detail = "; ".join(f"{r.code} {r.message}" for r in reasons) or f"status {result.status}"
        what = f"{self.stream.table} {plan.row_id}"
        self._fail(
            plan,
            operation,
            code,
            f"Marketo refused to {operation} the {self.stream.marketo_object} of {what}: {detail}",
        )

    def _write(self, plans: list[CrmPlan]) -> None:
        upserts = [p for p in plans if p.upsert is not None and p.error is None]
        if upserts:
            results = self.client.sync([p.upsert for p in upserts if p.upsert is not None])
            for plan, result in zip(upserts, results, strict=True):
                if result.status in ("created", "updated") and result.id is not None:
                    plan.marketo_id = str(result.id)
                else:
                    self._refused(plan, "create" if plan.outcome == "created" else "update", result)
        deletes = [p for p in plans if p.delete and p.error is None]
        if deletes:
            results = self.client.delete([{self.stream.key_field: p.row_id} for p in deletes])
            for plan, result in zip(deletes, results, strict=True):
                gone = any(r.code == NOT_FOUND for r in getattr(result, "reasons", None) or [])
                if result.status != "deleted" and not gone:
                    self._refused(plan, "delete", result)

    def _commit(self, plans: list[CrmPlan], inputs: dict[str, CrmInput]) -> None:
        state = self.ctx.state
        now = self.ctx.clock()
        name = self.stream.name
        to_save: list[Link] = []
        to_remove: list[Link] = []
        for plan in plans:
            if plan.error is not None:
                continue
            item = inputs[plan.row_id]
            if plan.unlink and item.linked is not None:
                to_remove.append(Link(entity=name, dynamics_id=plan.row_id, marketo_id=item.linked))
            elif plan.snapshot is not None:
                marketo_id = plan.marketo_id or item.linked
                if marketo_id is not None:
                    to_save.append(
                        Link(
                            entity=name,
                            dynamics_id=plan.row_id,
                            marketo_id=marketo_id,
                            snapshot=plan.snapshot,
                            synced_at=now,
                        )
                    )
        if to_remove:
            state.links.delete(to_remove)
        if to_save:
            state.links.save(to_save)
        for plan in plans:
            if plan.error is not None:
                state.errors.record(as_record_error(name, plan.error), now=now)
            elif plan.row_id in self.retried:
                state.errors.resolve(name, "dynamics", plan.row_id)
