"""Drift between Dynamics and Marketo for the one-way streams, whose Marketo objects cannot be listed by change.

Marketo has no changed-since read for companies, sales persons, opportunities, roles or custom objects, so an edit
made in Marketo (or a write lost) is invisible to the incremental sync. `reconcile` reads every row of the stream
from Dataverse (as the sync would write it: transforms applied, references resolved from the link state), reads the
same keys back from Marketo, 300 per call, and reports what is missing, extra or different, field by field. Extra:
a record the link state still holds whose row is gone from Dataverse. Rows the stream skips or cannot write yet (a
reference that waits) are not compared; they are counted.

`repair` writes the difference through the stream's own planner: the link snapshot is set to what Marketo holds,
so the plan writes exactly the fields that differ (or creates what is missing); an extra record is deleted when the
stream's on_delete is delete (else it is reported and kept), and its link dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from sync.engine.context import SyncContext
from sync.engine.crm_plan import CrmInput, plan_row
from sync.engine.crm_stream import CrmBatches, verify_object_type
from sync.engine.roles import Role, RoleBatches, _Opportunity, batches_for
from sync.mapping.model import EntityMapping, MappingError
from sync.mapping.transforms import Canonical, TransformError, from_marketo, same
from sync.state import Link

CHUNK = 300  # Marketo reads (and writes) at most 300 records a call
ROLE_FIELDS = ["externalOpportunityId", "leadId", "role", "isPrimary"]
DriftKind = Literal["missing", "extra", "different"]


class Drift(BaseModel):
    key: str  # the row id (roles: <opportunity id>/<leadId>/<role>)
    kind: DriftKind
    fields: dict[str, tuple[Canonical, Canonical]] = Field(default_factory=dict)  # field -> (Dynamics, Marketo)


class ReconcileReport(BaseModel):
    entity: str
    repair: bool
    compared: int = 0
    not_compared: dict[str, int] = Field(default_factory=dict)  # why (skipped, waits, ...) -> rows
    drift: list[Drift] = Field(default_factory=list)
    repaired: int = 0
    kept: int = 0  # extras kept because on_delete is keep
    failed: list[str] = Field(default_factory=list)
    marketo_reads: int = 0

    def counts(self) -> dict[str, int]:
        return dict(Counter(d.kind for d in self.drift))


def _chunks(records: Iterator[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def reconcile(ctx: SyncContext, entity: str, repair: bool = False) -> ReconcileReport:
    stream = ctx.mapping.entity(entity)
    if stream.is_persons:
        raise MappingError(f"{entity} is a persons stream: Marketo lists its changes; reconcile serves one-way streams")
    verify_object_type(ctx, stream)
    report = ReconcileReport(entity=stream.name, repair=repair)
    batches = batches_for(ctx, stream)
    seen: set[str] = set()
    rows = ctx.dynamics.query(stream.table, batches.select(), annotations=True, operation="reconcile")
    for chunk in _chunks(rows):
        seen.update(str(r.id).lower() for r in chunk)
        if isinstance(batches, RoleBatches):
            _roles_chunk(ctx, batches, chunk, report)
        else:
            _crm_chunk(ctx, batches, chunk, report)
    _extras(ctx, stream, batches, seen, report)
    not_compared = Counter(report.not_compared)
    report.not_compared = dict(not_compared.most_common())
    return report


# --- CRM objects and custom objects ---------------------------------------------------------------------------------
def _marketo_values(stream: EntityMapping, raw: dict[str, Any], keys: Sequence[str]) -> dict[str, Canonical]:
    values: dict[str, Canonical] = {}
    for field in stream.synced_fields:
        if field.key in keys:
            try:
                values[field.key] = from_marketo(field, raw.get(field.marketo))
            except TransformError:
                values[field.key] = str(raw.get(field.marketo))
    return values


def _crm_chunk(ctx: SyncContext, batches: CrmBatches, records: list[Any], report: ReconcileReport) -> None:
    stream = batches.stream
    inputs = batches.inputs(records, [])
    comparable: list[CrmInput] = []
    for item in inputs:
        if item.skip is not None:
            report.not_compared[f"skipped: {item.skip}"] = report.not_compared.get(f"skipped: {item.skip}", 0) + 1
        elif item.problem is not None:
            why = f"cannot be written yet ({item.problem_code})"
            report.not_compared[why] = report.not_compared.get(why, 0) + 1
        else:
            comparable.append(item)
    if not comparable:
        return
    fields = list(dict.fromkeys([stream.key_field, *(f.marketo for f in stream.synced_fields)]))
    found = batches.client.query(stream.key_field, [i.row_id for i in comparable], fields)
    report.marketo_reads += 1
    in_marketo = {str(r.values.get(stream.key_field)).lower(): r for r in found}
    to_repair: list[CrmInput] = []
    for item in comparable:
        report.compared += 1
        record = in_marketo.get(item.row_id)
        if record is None:
            report.drift.append(Drift(key=item.row_id, kind="missing"))
            to_repair.append(item.model_copy(update={"linked": None, "snapshot": None}))
            continue
        actual = _marketo_values(stream, record.values, list(item.values))
        differing = {}
        for key, expected in item.values.items():
            field = stream.field(key)
            if field.never_blank and expected is None:
                continue
            if not same(field, expected, actual.get(key)):
                differing[field.marketo] = (expected, actual.get(key))
        if differing:
            report.drift.append(Drift(key=item.row_id, kind="different", fields=differing))
            to_repair.append(item.model_copy(update={"linked": str(record.id), "snapshot": actual}))
    if report.repair and to_repair:
        plans = [plan_row(stream, item) for item in to_repair]
        batches._write(plans)
        batches._commit(plans, {i.row_id: i for i in to_repair})
        report.repaired += sum(1 for p in plans if p.error is None and p.writes)
        report.failed += [p.error.message for p in plans if p.error is not None]


# --- opportunity roles ----------------------------------------------------------------------------------------------
def _roles_chunk(ctx: SyncContext, batches: RoleBatches, records: list[Any], report: ReconcileReport) -> None:
    from sync.engine.filters import skip_reason

    live: list[tuple[_Opportunity, Any]] = []
    for record in records:
        reason = skip_reason(batches.stream, ctx.mapping, record.values)
        if reason is not None:
            report.not_compared[f"skipped: {reason}"] = report.not_compared.get(f"skipped: {reason}", 0) + 1
        else:
            live.append((_Opportunity(str(record.id).lower(), None), record))
    batches._resolve(live)
    comparable = [(item, record) for item, record in live if not item.waiting and not item.problems]
    for item, _ in live:
        if item.waiting or item.problems:
            why = "roles that cannot be written yet (waits or bad input)"
            report.not_compared[why] = report.not_compared.get(why, 0) + 1
    if not comparable:
        return
    ids = [item.row_id for item, _ in comparable]
    found = batches.client.query("externalOpportunityId", ids, ROLE_FIELDS)
    report.marketo_reads += 1
    actual: dict[str, dict[tuple[int, str], bool]] = {i: {} for i in ids}
    for record in found:
        opportunity = str(record.values.get("externalOpportunityId")).lower()
        key = (int(record.values["leadId"]), str(record.values["role"]))
        actual.setdefault(opportunity, {})[key] = bool(record.values.get("isPrimary"))
    persons = ctx.mapping.entity(batches.rules.persons).name
    lead_ids = {str(lead) for roles in actual.values() for lead, _ in roles}
    contacts = {m: link.dynamics_id for m, link in ctx.state.links.get_many_by_marketo_id(persons, lead_ids).items()}
    drifted: list[tuple[_Opportunity, Any, dict[str, Role], list[Role]]] = []
    for item, record in comparable:
        report.compared += 1
        wanted = {(r.lead_id, r.role): r.is_primary for r in item.roles.values()}
        have = actual.get(item.row_id, {})
        drift = [
            Drift(key=f"{item.row_id}/{lead}/{role}", kind="missing")
            for (lead, role) in wanted
            if (lead, role) not in have
        ]
        drift += [
            Drift(key=f"{item.row_id}/{lead}/{role}", kind="extra")
            for (lead, role) in have
            if (lead, role) not in wanted
        ]
        drift += [
            Drift(
                key=f"{item.row_id}/{lead}/{role}",
                kind="different",
                fields={"isPrimary": (wanted[(lead, role)], primary)},
            )
            for (lead, role), primary in have.items()
            if (lead, role) in wanted and wanted[(lead, role)] != primary
        ]
        if drift:
            report.drift += drift
            snapshot: dict[str, Role] = {}
            strays: list[Role] = []
            for (lead, role), primary in sorted(have.items(), key=lambda kv: (kv[0] not in wanted, kv[0])):
                contact = contacts.get(str(lead))
                if contact is None or contact in snapshot:
                    strays.append(Role(lead, role, primary))
                else:
                    snapshot[contact] = Role(lead, role, primary)
            drifted.append((item, record, snapshot, strays))
    if report.repair and drifted:
        _repair_roles(ctx, batches, drifted, report)


def _repair_roles(
    ctx: SyncContext,
    batches: RoleBatches,
    drifted: list[tuple[_Opportunity, Any, dict[str, Role], list[Role]]],
    report: ReconcileReport,
) -> None:
    """The link snapshots become what Marketo holds; the roles a snapshot cannot hold (two for one contact, or a
    person the sync does not know) are deleted; then the stream's own run writes the difference."""
    strays = [role.key(item.row_id) for item, _, _, extra in drifted for role in extra]
    if strays:
        batches.client.delete(strays)
    name = batches.stream.name
    existing = ctx.state.links.get_many_by_dynamics_id(name, [item.row_id for item, *_ in drifted])
    ctx.state.links.save(
        Link(
            entity=name,
            dynamics_id=item.row_id,
            marketo_id=item.row_id,
            snapshot={
                "roles": {c: r.snapshot() for c, r in snapshot.items()},
                "connections": (
                    existing[item.row_id].snapshot.get("connections", []) if item.row_id in existing else []
                ),
            },
            synced_at=ctx.clock(),
        )
        for item, _, snapshot, _ in drifted
    )
    before = sum(batches.counts[k] for k in ("created", "updated", "deleted"))
    batches.run([record for _, record, _, _ in drifted])
    report.repaired += sum(batches.counts[k] for k in ("created", "updated", "deleted")) - before + len(strays)


# --- extras -------------------------------------------------------------------------------------------------------
def _extras(
    ctx: SyncContext, stream: EntityMapping, batches: CrmBatches | RoleBatches, seen: set[str], report: ReconcileReport
) -> None:
    """Records the link state holds whose Dataverse row is gone (a delete the sync never saw)."""
    stale = [link for link in ctx.state.links.list(stream.name) if link.dynamics_id not in seen]
    for start in range(0, len(stale), CHUNK):
        links = stale[start : start + CHUNK]
        if isinstance(batches, RoleBatches):
            gone = [
                (link, Role.from_snapshot(r)) for link in links for r in (link.snapshot.get("roles") or {}).values()
            ]
            for link, role in gone:
                report.drift.append(Drift(key=f"{link.dynamics_id}/{role.lead_id}/{role.role}", kind="extra"))
            if report.repair:
                if gone:
                    batches.client.delete([role.key(link.dynamics_id) for link, role in gone])
                ctx.state.links.delete(links)
                report.repaired += len(gone)
            continue
        found = batches.client.query(stream.key_field, [link.dynamics_id for link in links], [stream.key_field])
        report.marketo_reads += 1
        present = {str(r.values.get(stream.key_field)).lower() for r in found}
        extra = [link for link in links if link.dynamics_id in present]
        report.drift += [Drift(key=link.dynamics_id, kind="extra") for link in extra]
        if not report.repair:
            continue
        if stream.on_delete == "delete" and extra:
            batches.client.delete([{stream.key_field: link.dynamics_id} for link in extra])
            report.repaired += len(extra)
        else:
            report.kept += len(extra)
        ctx.state.links.delete(links)
