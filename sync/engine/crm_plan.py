"""The write plan of a one-way row (Dynamics -> a Marketo CRM object or custom object). Pure, and printable.

A row's mapped values (its references already resolved) are compared with the snapshot of its last sync: only what
changed is written, keyed on the stream's Marketo key (the row's Dataverse id); an unchanged row plans nothing (our
own echo and changes to unmapped columns alike). A row the stream's filter skips keeps its Marketo record as it is. A
deleted row deletes its Marketo record, or keeps it, by the stream's on_delete; either way its link goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

from sync.engine.plan import PlanError
from sync.mapping.model import EntityMapping
from sync.mapping.transforms import Canonical, same, to_marketo

CrmOutcome = Literal["created", "updated", "unchanged", "skipped", "deleted", "failed"]


class CrmInput(BaseModel):
    row_id: str
    values: dict[str, Canonical] = {}  # canonical, by field key; references resolved
    linked: str | None = None  # the Marketo id of its record, when it has been synced
    snapshot: dict[str, Canonical] | None = None
    deleted: bool = False
    skip: str | None = None  # why the filter skips it
    problem: str | None = None  # why it cannot be written (a bad value, a reference that waits)
    problem_code: str = "invalid_value"


class CrmPlan(BaseModel):
    row_id: str
    outcome: CrmOutcome = "unchanged"
    reason: str | None = None
    upsert: dict[str, Any] | None = None  # the Marketo record to create or update, with its key
    delete: bool = False  # delete the Marketo record by its key
    unlink: bool = False
    snapshot: dict[str, Canonical] | None = None  # saved once the write lands
    marketo_id: str | None = None  # what Marketo answered for the upsert, for the link
    error: PlanError | None = None

    @property
    def writes(self) -> bool:
        return self.upsert is not None or self.delete


def _changed(field_key: str, field: Any, value: Canonical, snapshot: Mapping[str, Canonical] | None) -> bool:
    if snapshot is None or field_key not in snapshot:
        return value is not None  # a first sync writes what the row has; blanks stay blank
    return not same(field, value, snapshot[field_key])


def plan_row(stream: EntityMapping, item: CrmInput) -> CrmPlan:
    plan = CrmPlan(row_id=item.row_id)
    if item.deleted:
        if item.linked is None:
            plan.reason = "deleted before it was synced"
            return plan
        plan.unlink = True
        if stream.on_delete == "delete":
            plan.delete, plan.outcome = True, "deleted"
        else:
            plan.outcome, plan.reason = "skipped", f"deleted in Dynamics; its {stream.marketo_object} record is kept"
        return plan
    if item.problem is not None:
        plan.outcome = "failed"
        plan.error = PlanError(
            system="dynamics", record_id=item.row_id, operation="read", code=item.problem_code, message=item.problem
        )
        return plan
    if item.skip is not None:
        kept = " (its Marketo record is kept, not updated)" if item.linked else ""
        plan.outcome, plan.reason = "skipped", f"{item.skip}{kept}"
        return plan
    payload: dict[str, Any] = {}
    for field in stream.synced_fields:
        if field.key not in item.values:
            continue
        value = item.values[field.key]
        if field.never_blank and value is None:
            continue
        if item.linked is None or _changed(field.key, field, value, item.snapshot):
            if item.linked is None and value is None:
                continue  # a create leaves blanks out
            payload[field.marketo] = to_marketo(field, value)
    snapshot = {**(item.snapshot or {}), **item.values}
    if item.linked is not None and not payload:
        if snapshot != item.snapshot:
            plan.snapshot = snapshot  # e.g. a newly mapped field that is blank on both sides
        return plan
    plan.upsert = {stream.key_field: item.row_id, **payload}
    plan.snapshot = snapshot
    plan.outcome = "created" if item.linked is None else "updated"
    return plan
