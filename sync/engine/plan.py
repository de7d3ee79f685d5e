"""The write plan for one pair: what to create, update, delete, link and unlink. Pure, and printable (dry run).

The cycle gathers a `PairInput` per touched record (current values of both sides, the link and its snapshot, what
was deleted, what matching found) and `plan_pair` decides. An empty plan is the echo check: a change that was our
own write, or that touched no synced field, plans nothing.

Link fields are written in the same calls as data: a Marketo person carries the Dynamics id, type and created date;
a Dynamics record carries the Marketo person id. When a side's id is only known after a create, the executor adds it
(`needs_marketo_id` / `needs_dynamics_id`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from sync.engine.merge import Conflict, merge_pair
from sync.engine.records import OptionSets, dynamics_raw, marketo_raw
from sync.mapping.model import Direction, EntityMapping, MappingConfig
from sync.mapping.transforms import Canonical, TransformError
from sync.state import RecordError

Outcome = Literal["created", "updated", "unchanged", "skipped", "deleted", "failed"]
PAUSED = "@paused"  # snapshot marker: the Dynamics record's sync filter is false, so the pair is not updated


class DynamicsSide(BaseModel):
    id: str
    values: dict[str, Canonical]  # canonical, by field key
    created_on: str | None = None
    sync_filter: bool | None = None  # new_synctomkto as read: only an explicit False skips the record
    marketo_id: str | None = None  # new_marketopersonid as read


class MarketoSide(BaseModel):
    id: str
    values: dict[str, Canonical]
    sync_to_dynamics: bool | None = None
    linked_dynamics_id: str | None = None  # the entity's link field (dynamicsLeadId / dynamicsContactId) as read
    type: str | None = None  # dynamicsType as read


class LinkRef(BaseModel):
    entity: str
    dynamics_id: str
    marketo_id: str


class PairInput(BaseModel):
    dynamics: DynamicsSide | None = None  # None: no Dynamics record (yet)
    marketo: MarketoSide | None = None
    link: LinkRef | None = None  # the existing link of exactly this pair
    snapshot: dict[str, Canonical] | None = None
    dynamics_deleted_id: str | None = None  # a linked Dynamics record that was deleted
    marketo_deleted_id: str | None = None
    relink_from: LinkRef | None = None  # qualification: the lead link this contact takes over
    match_error: str | None = None  # e.g. several Marketo persons share the e-mail


class PlanError(BaseModel):
    system: Literal["dynamics", "marketo"]
    record_id: str
    operation: str
    code: str
    message: str


def as_record_error(entity: str, error: PlanError) -> RecordError:
    """A planned or failed write as the error store keeps it (retried by the next cycle)."""
    return RecordError(
        entity=entity,
        system=error.system,
        record_id=error.record_id,
        operation=error.operation,
        code=error.code,
        message=error.message,
    )


@dataclass(slots=True)
class PairPlan:
    """The writes planned for one pair. A plain slotted dataclass, not a model: a full sync holds tens of thousands
    of them while their pages are in flight (a pydantic model costs ~1.6 KB more each, and validation per record)."""

    dynamics_id: str | None = None
    marketo_id: str | None = None
    create_dynamics: dict[str, Any] | None = None
    update_dynamics: dict[str, Any] | None = None
    create_marketo: dict[str, Any] | None = None
    update_marketo: dict[str, Any] | None = None
    delete_dynamics: bool = False
    delete_marketo: bool = False
    needs_marketo_id: bool = False  # add new_marketopersonid once the Marketo create returns an id
    needs_dynamics_id: bool = False  # add the Marketo link fields once the Dynamics create returns an id
    save_snapshot: dict[str, Canonical] | None = None  # save the link with this snapshot once the writes land
    snapshot_json: str | None = None  # or with this one, encoded already (a full sync's pages in flight keep it so)
    remove_links: list[LinkRef] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    outcome: Outcome = "unchanged"
    reason: str | None = None
    error: PlanError | None = None

    def shown(self) -> dict[str, Any]:
        """What a dry run prints: the fields that differ from an empty plan."""
        empty = PairPlan()
        return {
            name: value
            for name in self.__dataclass_fields__
            if (value := getattr(self, name)) != getattr(empty, name) and value is not None
        }

    @property
    def writes(self) -> bool:
        return any(
            (
                self.create_dynamics,
                self.update_dynamics,
                self.create_marketo,
                self.update_marketo,
                self.delete_dynamics,
                self.delete_marketo,
            )
        )


def marketo_link_fields(
    entity: EntityMapping, mapping: MappingConfig, dynamics_id: str | None, created_on: str | None
) -> dict[str, Any]:
    links = mapping.link_fields
    fields: dict[str, Any] = {links.marketo_type: entity.person_type, links.marketo_is_deleted: False}
    if dynamics_id is not None:
        fields[entity.marketo_id_field] = dynamics_id
    if created_on is not None:
        fields[links.marketo_created_date] = created_on
    return fields


def _failed(
    plan: PairPlan, system: Literal["dynamics", "marketo"], record_id: str, op: str, code: str, msg: str
) -> PairPlan:
    plan.error = PlanError(system=system, record_id=record_id, operation=op, code=code, message=msg)
    plan.outcome = "failed"
    return plan


def plan_pair(pair: PairInput, entity: EntityMapping, mapping: MappingConfig, options: OptionSets) -> PairPlan:
    d, m = pair.dynamics, pair.marketo
    plan = PairPlan(
        dynamics_id=d.id if d else (pair.link.dynamics_id if pair.link else pair.dynamics_deleted_id),
        marketo_id=m.id if m else (pair.link.marketo_id if pair.link else pair.marketo_deleted_id),
    )
    deletes = mapping.deletes

    if pair.match_error:
        if d is not None:
            return _failed(plan, "dynamics", d.id, "link", "ambiguous_match", pair.match_error)
        return _failed(plan, "marketo", m.id if m else "?", "link", "ambiguous_match", pair.match_error)

    if pair.dynamics_deleted_id is not None:
        if pair.link is None or m is None:
            plan.outcome, plan.reason = "skipped", "deleted in Dynamics; it was never synced"
            if pair.link is not None:
                plan.remove_links.append(pair.link)
            return plan
        if deletes.propagate_to_marketo:
            plan.delete_marketo = True
            plan.remove_links.append(pair.link)
        else:  # native behaviour: flag the person, keep it and the link
            plan.update_marketo = {mapping.link_fields.marketo_is_deleted: True}
        plan.outcome = "deleted"
        return plan

    if pair.marketo_deleted_id is not None:
        if pair.link is not None:
            plan.remove_links.append(pair.link)
            plan.delete_dynamics = deletes.propagate_to_dynamics
        plan.outcome = "deleted" if pair.link is not None else "skipped"
        plan.reason = None if pair.link is not None else "deleted in Marketo; it was never synced"
        return plan

    if d is not None and d.sync_filter is False:
        plan.outcome, plan.reason = "skipped", f"{mapping.link_fields.dynamics_sync_filter} is false"
        if pair.link is not None and not (pair.snapshot or {}).get(PAUSED):
            plan.save_snapshot = {**(pair.snapshot or {}), PAUSED: True}  # remember it while Dynamics is quiet
        return plan

    if pair.link is not None and (d is None or m is None):
        # A linked pair always arrives with both sides (read, or rebuilt from the snapshot); never create a twin.
        missing = "Dynamics" if d is None else "Marketo"
        plan.outcome, plan.reason = "skipped", f"linked, but the {missing} record was not found"
        return plan
    if d is None and m is not None and not (entity.create_in_dynamics and m.sync_to_dynamics):
        plan.outcome, plan.reason = "skipped", "Marketo-only person (not marked to sync to Dynamics)"
        return plan
    if d is None and m is None:
        plan.outcome, plan.reason = "skipped", "neither side has the record"
        return plan

    base = pair.snapshot if (pair.link is not None or pair.relink_from is not None) else None
    merged = merge_pair(entity, d.values if d else None, m.values if m else None, base)
    plan.conflicts = merged.conflicts
    try:
        to_dynamics = dynamics_raw(entity, merged.to_dynamics, options)
    except TransformError as exc:  # a Marketo value Dynamics cannot take: the Marketo record waits for a fix
        return _failed(plan, "marketo", m.id if m else "?", "transform", "invalid_value", str(exc))
    try:
        to_marketo = marketo_raw(entity, merged.to_marketo)
    except TransformError as exc:
        return _failed(plan, "dynamics", d.id if d else "?", "transform", "invalid_value", str(exc))

    if d is None:  # create in Dynamics from a Marketo person; its link fields follow once the id is known
        assert m is not None
        for column, default in entity.required_defaults.items():
            if to_dynamics.get(column) in (None, ""):
                to_dynamics[column] = default
        to_dynamics[mapping.link_fields.dynamics_marketo_id] = m.id
        plan.create_dynamics = to_dynamics
        plan.update_marketo = to_marketo or None
        plan.needs_dynamics_id = True
        plan.outcome = "created"
    elif m is None:  # create in Marketo from a Dynamics record
        to_marketo.update(marketo_link_fields(entity, mapping, d.id, d.created_on))
        plan.create_marketo = to_marketo
        plan.needs_marketo_id = True
        plan.outcome = "created"
    else:
        if pair.link is None:  # a new link: both records learn about each other
            if d.marketo_id != m.id:
                to_dynamics[mapping.link_fields.dynamics_marketo_id] = m.id
            to_marketo.update(marketo_link_fields(entity, mapping, d.id, d.created_on))
        plan.update_dynamics = to_dynamics or None
        plan.update_marketo = to_marketo or None
        plan.outcome = "updated" if plan.writes else "unchanged"

    if pair.link is None or plan.writes or merged.snapshot != (pair.snapshot or {}):
        plan.save_snapshot = merged.snapshot
    if pair.relink_from is not None:
        plan.remove_links.append(pair.relink_from)
    return plan


def restrict_plan(plan: PairPlan, direction: Direction, entity: EntityMapping) -> PairPlan:
    """A one-way job writes to one system only: drop the other system's writes, and leave the values they would have
    set out of the snapshot (so the next incremental cycle treats those fields as never synced, not as in sync)."""
    if direction == "both" or not plan.writes:
        return plan
    plan = copy.copy(plan)  # shallow: the fields changed below are replaced, never changed in place
    to_marketo = direction == "to_marketo"
    if (plan.create_dynamics if to_marketo else plan.create_marketo) is not None:
        return PairPlan(
            dynamics_id=plan.dynamics_id,
            marketo_id=plan.marketo_id,
            outcome="skipped",
            reason=f"the job only writes {'to Marketo' if to_marketo else 'to Dynamics'}",
        )
    dropped = plan.update_dynamics if to_marketo else plan.update_marketo
    if to_marketo:
        plan.update_dynamics, plan.delete_dynamics, plan.needs_marketo_id = None, False, False
    else:
        plan.update_marketo, plan.delete_marketo, plan.needs_dynamics_id = None, False, False
    if dropped and plan.save_snapshot is not None:
        names = {f.dynamics if to_marketo else f.marketo: f.key for f in entity.synced_fields}
        plan.save_snapshot = {k: v for k, v in plan.save_snapshot.items() if k not in {names.get(c) for c in dropped}}
    if plan.outcome == "updated" and not plan.writes:
        plan.outcome = "unchanged"
    return plan
