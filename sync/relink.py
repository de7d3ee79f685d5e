"""`python -m sync relink --after-refresh` (and `POST /api/sync/relink`): re-baseline the sync after a Dynamics
sandbox refresh or a Marketo sandbox reset.

After a refresh every link is wrong: the Dataverse rows carry production's GUIDs and production's Marketo ids in
`new_marketopersonid`, and the Marketo persons name the old sandbox's GUIDs; after a Marketo reset the persons have
new ids. The re-baseline:

1. stops the timers (a halt, so every cycle skips) and refuses while a full sync runs;
2. per persons stream (contacts before the leads they were qualified from): reads every Dataverse row and the
   Marketo persons that might be its counterpart (same e-mail, a link field naming the row, or linked before),
   and pairs them while *ignoring* the link values, except where they are proven to belong to this pair of
   systems: the person's link field names the row's current id AND the row's `new_marketopersonid` names that
   person. Otherwise one row and one person with the same e-mail (case-insensitive) pair; anything else stays
   unpaired (the full sync then creates it or reports the ambiguity as a record error, never a guess);
3. rewrites the link values on both sides: paired ones to each other, stale ones cleared;
4. one-way streams (companies, sales persons, ...): their Marketo records keyed on ids that no longer exist in
   Dataverse are kept, and reported (`orphans`): the full sync upserts the current rows under their current ids
   and moves every person to them;
5. drops every link, watermark and record error (they name the old ids), records the systems' identities, lifts
   the halt and starts a full sync of every stream, whose watermarks then carry the incremental sync on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from sync.engine.context import SyncContext
from sync.engine.fullsync import FullSyncRequest, start_full_sync
from sync.engine.matching import group_by_email
from sync.mapping.model import EntityMapping, System
from sync.state import Halt
from sync.state.queue import WorkQueue

ORPHANS_LISTED = 1000  # keys per stream listed in the report (the count is always whole)


class RelinkRejected(Exception):
    """The re-baseline cannot start now (a full sync runs); the message says why."""


class StreamRelink(BaseModel):
    entity: str
    records: int = 0  # Dataverse rows read
    proven: int = 0  # paired by link values that point at each other
    by_email: int = 0
    unpaired: int = 0
    dynamics_rewritten: int = 0
    dynamics_cleared: int = 0
    marketo_rewritten: int = 0
    marketo_cleared: int = 0
    errors: list[str] = Field(default_factory=list)


class Orphans(BaseModel):
    """Marketo records of a one-way stream keyed on Dataverse ids that no longer exist: kept, for the operator."""

    entity: str
    marketo_object: str
    key_field: str
    count: int
    keys: list[str]


class RelinkReport(BaseModel):
    halts: list[Halt]  # what had stopped the sync
    persons: list[StreamRelink] = Field(default_factory=list)
    orphans: list[Orphans] = Field(default_factory=list)
    links_dropped: dict[str, int] = Field(default_factory=dict)
    watermarks_dropped: int = 0
    errors_dropped: int = 0
    job_id: str | None = None


def relink_after_refresh(ctx: SyncContext, queue: WorkQueue) -> RelinkReport:
    mapping, state = ctx.mapping, ctx.state
    running = {name: job for name in mapping.entities if (job := state.jobs.holder(name)) is not None}
    if running:
        jobs = ", ".join(f"{name} (job {job})" for name, job in running.items())
        raise RelinkRejected(f"a full sync runs: {jobs}; cancel it (DELETE /api/sync/jobs/<id>) and relink again")
    for stream in mapping.person_streams():
        _email_column(stream)  # a mapping that cannot match is refused before anything stops or changes
    report = RelinkReport(halts=state.systems.halts())
    stopped: set[System] = {h.system for h in report.halts} or {"dynamics"}
    for system in stopped:  # the timers skip while the links are rebuilt
        state.systems.halt(system, "re-baselining: relink --after-refresh is running", at=ctx.clock())
    claimed: set[str] = set()  # persons paired so far, in any stream: one person follows one record
    streams = sorted(mapping.person_streams(), key=lambda s: s.qualified_from is None)  # contacts first
    for stream in streams:
        report.persons.append(_relink_persons(ctx, stream, claimed))
    report.orphans = [o for s in mapping.ordered_entities() if not s.is_persons if (o := _orphans(ctx, s))]
    for stream in mapping.ordered_entities():
        report.links_dropped[stream.name] = state.links.delete_all(stream.name)
    for mark in state.watermarks.list():
        state.watermarks.reset(mark.entity, mark.system)
        report.watermarks_dropped += 1
    report.errors_dropped = state.errors.clear()
    state.systems.set_marker("dynamics", ctx.dynamics.who_am_i()["OrganizationId"].lower())
    state.systems.clear_halts()
    report.job_id = start_full_sync(ctx, queue, FullSyncRequest()).job_id
    return report


def _relink_persons(ctx: SyncContext, stream: EntityMapping, claimed: set[str]) -> StreamRelink:
    out = StreamRelink(entity=stream.name)
    link_column = ctx.mapping.link_fields.dynamics_marketo_id
    key = stream.marketo_id_field
    email_column = _email_column(stream)
    pk = stream.primary_key
    fields = list(dict.fromkeys(["id", "email", *(s.marketo_id_field for s in ctx.mapping.person_streams())]))
    records = {r.id.lower(): r.values for r in ctx.dynamics.query(stream.table, [pk, email_column, link_column])}
    out.records = len(records)

    persons: dict[str, Any] = {}
    by_key: dict[str, list[str]] = defaultdict(list)
    for person in _persons(ctx, key, list(records), fields):
        persons[str(person.id)] = person
        by_key[_text(person.values.get(key))].append(str(person.id))
    emails = group_by_email(records.items(), lambda item: item[1].get(email_column))
    by_email: dict[str, list[str]] = defaultdict(list)
    for person in _persons(ctx, "email", list(emails), fields):
        persons[str(person.id)] = person
        by_email[_text(person.values.get("email"))].append(str(person.id))
    linked_before = [link.marketo_id for link in ctx.state.links.list(stream.name)]
    stale = [int(i) for i in dict.fromkeys(linked_before) if i.isdigit() and i not in persons]
    for person in _persons(ctx, "id", stale, fields):
        persons[str(person.id)] = person

    links = {i: _text(v.get(link_column)) for i, v in records.items()}
    emails_of = {address: [record_id for record_id, _ in group] for address, group in emails.items()}
    pairs, proven = pair_persons(links, by_key, emails_of, by_email, claimed)
    out.proven, out.by_email = proven, len(pairs) - proven
    out.unpaired = len(records) - len(pairs)

    clear = [{pk: i, link_column: None} for i, v in records.items() if i not in pairs and _text(v.get(link_column))]
    rewrite = [{pk: i, link_column: p} for i, p in pairs.items() if _text(records[i].get(link_column)) != p]
    out.dynamics_cleared = _write_dynamics(ctx, stream, clear, out.errors)  # first: a key value is unique
    out.dynamics_rewritten = _write_dynamics(ctx, stream, rewrite, out.errors)

    follows = {person_id: record_id for record_id, person_id in pairs.items()}
    set_key, clear_key = [], []
    for person_id, person in persons.items():
        has, wants = _text(person.values.get(key)), follows.get(person_id)
        if wants is not None and has != wants:
            set_key.append({"id": int(person_id), key: wants})
        elif wants is None and has:
            clear_key.append({"id": int(person_id), key: None})
    out.marketo_rewritten = _write_marketo(ctx, set_key, out.errors)
    out.marketo_cleared = _write_marketo(ctx, clear_key, out.errors)
    return out


def pair_persons(
    links: dict[str, str],
    by_key: dict[str, list[str]],
    emails: dict[str, list[str]],
    by_email: dict[str, list[str]],
    claimed: set[str],
) -> tuple[dict[str, str], int]:
    """Pure: record id -> person id, and how many of them were proven. `links`: record id -> the person id its link
    column names; `by_key`: record id -> persons whose link field names it; `emails`: address -> records;
    `by_email`: address -> persons. A pair is proven when both link values point at each other; otherwise the only
    free record and the only free person of an address pair. `claimed` (persons paired already) grows."""
    pairs: dict[str, str] = {}
    for record_id, named in links.items():
        if named and named in by_key.get(record_id, ()) and named not in claimed:
            pairs[record_id] = named
            claimed.add(named)
    proven = len(pairs)
    for address, records in emails.items():
        free_records = [record_id for record_id in records if record_id not in pairs]
        free_persons = list(dict.fromkeys(p for p in by_email.get(address, ()) if p not in claimed))
        if len(free_records) == 1 and len(free_persons) == 1:
            pairs[free_records[0]] = free_persons[0]
            claimed.add(free_persons[0])
    return pairs, proven


def _email_column(stream: EntityMapping) -> str:
    column = next((f.dynamics for f in stream.fields if f.marketo == "email"), None)
    if column is None:
        raise RelinkRejected(f"stream {stream.name}: no field maps to Marketo's email: its records cannot be matched")
    return column


def _orphans(ctx: SyncContext, stream: EntityMapping) -> Orphans | None:
    old = list(dict.fromkeys(link.dynamics_id.lower() for link in ctx.state.links.list(stream.name)))
    if not old:
        return None
    present = {i.lower() for i in ctx.dynamics.get_by_ids(stream.table, old, [stream.primary_key])}
    gone = [i for i in old if i not in present]
    if not gone:
        return None
    return Orphans(
        entity=stream.name,
        marketo_object=stream.marketo_object,
        key_field=stream.key_field,
        count=len(gone),
        keys=gone[:ORPHANS_LISTED],
    )


def _persons(ctx: SyncContext, filter_type: str, values: list[Any], fields: list[str]) -> Iterable[Any]:
    return ctx.marketo.get_leads(filter_type, values, fields) if values else []


def _write_dynamics(ctx: SyncContext, stream: EntityMapping, rows: list[dict[str, Any]], errors: list[str]) -> int:
    if not rows:
        return 0
    done = 0
    for result in ctx.dynamics.update_multiple(stream.table, rows):
        if result.error is None:
            done += 1
        else:
            errors.append(f"{stream.table} {rows[result.index][stream.primary_key]}: {result.error}")
    return done


def _write_marketo(ctx: SyncContext, rows: list[dict[str, Any]], errors: list[str]) -> int:
    if not rows:
        return 0
    done = 0
    for result in ctx.marketo.sync_leads(rows, action="updateOnly", lookup_field="id"):
        if result.ok:
            done += 1
        else:
            reasons = "; ".join(f"{r.code} {r.message}" for r in result.reasons)
            errors.append(f"Marketo person {rows[result.index]['id']}: {reasons or result.status}")
    return done


def _text(value: Any) -> str:
    return str(value).strip().casefold() if value not in (None, "") else ""
