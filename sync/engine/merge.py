"""The three-way, field-level merge of one linked pair against its snapshot. Pure: plain data in, plain data out.

For each field, with d = Dynamics' value, m = Marketo's value and s = the snapshot (both sides after the last sync):
- d equals m: in sync, nothing to write (this is also what makes our own writes come back as no-ops: echo suppression);
- no snapshot yet (first link, or a newly mapped field): a blank never overwrites a value; otherwise the winner's value;
- d equals s: only Marketo changed, so m flows to Dynamics;  m equals s: only Dynamics changed, so d flows to Marketo;
- both changed, differently: a conflict, resolved by the field's winner (or the entity's), and reported.
One-way fields: a change of the source side flows (on first link, a non-blank source value); the target's own edits
stay until the source changes again. The snapshot then holds the source's value. A `never_blank` field (a person's
company link: Marketo cannot take a person out of a company) does not flow when the source turns blank.
A person linked to a company (externalCompanyId on either side) takes its company fields from that company: Marketo
refuses them through Sync Leads (1021), so they are neither written nor read back, and their snapshot stays.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from sync.mapping.model import MARKETO_COMPANY_FIELDS, EntityMapping, System
from sync.mapping.transforms import Canonical, same


class Conflict(BaseModel):
    field: str
    dynamics_value: Canonical
    marketo_value: Canonical
    base_value: Canonical
    winner: System


class PairMerge(BaseModel):
    to_dynamics: dict[str, Canonical] = Field(default_factory=dict)  # field key -> value to write to Dynamics
    to_marketo: dict[str, Canonical] = Field(default_factory=dict)
    snapshot: dict[str, Canonical] = Field(default_factory=dict)  # what both sides hold once the writes land
    conflicts: list[Conflict] = Field(default_factory=list)

    @property
    def is_noop(self) -> bool:
        return not self.to_dynamics and not self.to_marketo


def merge_pair(
    entity: EntityMapping,
    dynamics: Mapping[str, Canonical] | None,
    marketo: Mapping[str, Canonical] | None,
    snapshot: Mapping[str, Canonical] | None,
) -> PairMerge:
    """Merge one pair. `dynamics`/`marketo` are current canonical values by field key; None: the record does not exist
    on that side yet (everything flows to it that its direction allows)."""
    result = PairMerge()
    owned_by_company = has_company(entity, dynamics, marketo, snapshot)
    for field in entity.synced_fields:
        key = field.key
        direction = entity.field_direction(field)
        d = dynamics.get(key) if dynamics is not None else None
        m = marketo.get(key) if marketo is not None else None
        unresolved = field.transform == "reference" and key not in (dynamics or {}) and key not in (marketo or {})
        if unresolved or (owned_by_company and field.marketo in MARKETO_COMPANY_FIELDS):
            if snapshot is not None and key in snapshot:
                result.snapshot[key] = snapshot[key]
            continue

        if dynamics is None or marketo is None:  # a create: copy what may flow to the new side
            source, value = ("marketo", m) if dynamics is None else ("dynamics", d)
            allowed = direction in ("both", "to_dynamics" if source == "marketo" else "to_marketo")
            if allowed and not (field.never_blank and value is None):
                if value is not None:
                    (result.to_dynamics if source == "marketo" else result.to_marketo)[key] = value
                result.snapshot[key] = value
            continue

        has_base = snapshot is not None and key in snapshot  # a snapshot's None is a value: both sides were blank
        base = snapshot.get(key) if snapshot is not None else None
        if same(field, d, m):
            result.snapshot[key] = d
            continue
        if direction != "both":  # one way: the source's change flows; the target's own edits stay until it changes
            source_value, target = (d, result.to_marketo) if direction == "to_marketo" else (m, result.to_dynamics)
            if field.never_blank and source_value is None:  # the target keeps what it has
                result.snapshot[key] = m if direction == "to_marketo" else d
                continue
            if not has_base:
                source_changed = source_value is not None
            else:
                source_changed = not same(field, source_value, base)
            if source_changed:
                target[key] = source_value
            result.snapshot[key] = source_value
            continue

        if not has_base:
            if d is None or m is None:  # first link: fill the blank side, never blank out data
                winner: System = "marketo" if d is None else "dynamics"
            else:
                winner = entity.winner_for(field)
                result.conflicts.append(
                    Conflict(field=key, dynamics_value=d, marketo_value=m, base_value=None, winner=winner)
                )
        elif same(field, d, base):
            winner = "marketo"
        elif same(field, m, base):
            winner = "dynamics"
        else:
            winner = entity.winner_for(field)
            result.conflicts.append(
                Conflict(field=key, dynamics_value=d, marketo_value=m, base_value=base, winner=winner)
            )
        if winner == "marketo":
            result.to_dynamics[key] = m
            result.snapshot[key] = m
        else:
            result.to_marketo[key] = d
            result.snapshot[key] = d
    return result


COMPANY_LINK = "externalCompanyId"


def has_company(
    entity: EntityMapping,
    dynamics: Mapping[str, Canonical] | None,
    marketo: Mapping[str, Canonical] | None,
    snapshot: Mapping[str, Canonical] | None,
) -> bool:
    """Whether the person is (or is about to be) linked to a Marketo company."""
    if not entity.is_persons or COMPANY_LINK not in entity.reference_fields:
        return False
    return any(side is not None and side.get(COMPANY_LINK) for side in (dynamics, marketo, snapshot))


def differs_from_snapshot(
    entity: EntityMapping, values: Mapping[str, Canonical], snapshot: Mapping[str, Canonical]
) -> bool:
    """Whether any mapped field in `values` differs from the snapshot (False: an echo of our own write, or a change
    to fields we do not sync)."""
    for field in entity.synced_fields:
        if field.key in values and (
            field.key not in snapshot or not same(field, values[field.key], snapshot[field.key])
        ):
            return True
    return False
