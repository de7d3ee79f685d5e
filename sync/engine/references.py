"""Resolving references: a lookup column becomes the Marketo key of the stream it points at, from the link state.

For a page of Dataverse rows, each reference (e.g. ownerid -> externalSalesPersonId) is read with its
lookuplogicalname annotation, which picks the target stream (systemuser or team). The targets of the whole page are
looked up in the link state in one batched read per target stream: a linked target gives its key (a CRM target's key
is the Dataverse id itself; a person's is its Marketo id). An unlinked target is read from Dataverse, once per page
for all of them: a row the target stream's filter excludes (an application user, an access team) means "no owner"
and writes nothing; a row that would sync but has not yet makes the record wait as a record error, retried the next
cycle; a row that does not exist is a record error too. Nothing is ever written dangling.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync.engine.filters import filter_columns, skip_reason
from sync.mapping.model import EntityMapping, MappingConfig, Reference
from sync.mapping.transforms import Canonical

if TYPE_CHECKING:
    from sync.engine.context import SyncContext

LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
EXCLUDED_CACHE_LIMIT = 50_000


@dataclass(frozen=True)
class Problem:
    text: str
    waits: bool  # True: a record error, retried; False: the reference points at nothing Marketo holds
    code: str = "reference"


@dataclass(frozen=True)
class Target:
    """What one reference of one row points at: a stream and a row id (None: nothing to point at)."""

    stream: EntityMapping | None
    row_id: str | None
    via_team: str | None = None  # the team whose administrator this is (owner policy "administrator")


@dataclass
class Resolved:
    values: dict[str, dict[str, Canonical]] = field(default_factory=dict)  # row id -> Marketo field -> value
    waiting: dict[str, Problem] = field(default_factory=dict)  # row id -> why it cannot be written yet


def logical_name(record: Any, column: str) -> str | None:
    """The lookup's target table, from Prefer: odata.include-annotations (inline or gathered by the connector)."""
    values = getattr(record, "values", {}) or {}
    inline = values.get(f"{column}@{LOGICAL_NAME}")
    if inline:
        return str(inline)
    gathered = (getattr(record, "annotations", None) or {}).get(column) or {}
    found = gathered.get(LOGICAL_NAME)
    return str(found) if found else None


def target_of(reference: Reference, mapping: MappingConfig, record: Any, via: str | None = None) -> Target | Problem:
    """The stream and row a reference points at (read from column `via` instead of its own: a fallback's), or a
    problem. Pure."""
    source = via or reference.column
    column = f"_{source}_value"
    raw = (getattr(record, "values", {}) or {}).get(column)
    if raw in (None, ""):
        return Target(None, None)
    row_id = str(raw).lower()
    streams = [mapping.entities[name] for name in reference.targets]
    table = logical_name(record, column)
    if table is None:
        if len(streams) != 1:
            text = f"{source} {row_id}: Dataverse did not say which table it points at"
            return Problem(text, waits=True, code="unknown_reference")
        table = streams[0].table
    stream = next((s for s in streams if s.table == table), None)
    if stream is None:
        return Target(None, None)  # e.g. a contact's parent that is a contact: no company to point at
    policy = mapping.owners
    if table == "team" and reference.marketo == "externalSalesPersonId" and policy.teams != "team":
        if policy.teams == "sales_person":
            return Target(None, policy.sales_person)  # a fixed key, written as it is
        users = next((s for s in mapping.entities.values() if s.table == "systemuser"), None)
        return Target(users, None, via_team=row_id)
    return Target(stream, row_id)


def _final(target: Target | Problem) -> bool:
    """Whether a reference has its answer: a problem, a target row, or a fixed key (not "points at nothing")."""
    return isinstance(target, Problem) or target.stream is not None or target.row_id is not None


def _pointed_at(record: Any, column: str) -> tuple[str, str] | None:
    """The (table, row id) a lookup of the record points at, when Dataverse said which table."""
    raw = (getattr(record, "values", {}) or {}).get(f"_{column}_value")
    table = logical_name(record, f"_{column}_value")
    if raw in (None, "") or table is None:
        return None
    return table, str(raw).lower()


class ReferenceResolver:
    """Resolves a stream's references for batches of rows. Keeps, for the life of the context, the target rows that
    were found excluded by their stream's filter, so that a page of records owned by an application user costs one
    Dataverse read once, not every cycle."""

    def __init__(self, ctx: SyncContext, stream: EntityMapping, dry_run: bool = False) -> None:
        self.ctx = ctx
        self.stream = stream
        self.dry_run = dry_run  # a dry run plans as if the targets it would sync first were synced
        self.mapping = ctx.mapping
        self.excluded = ctx.excluded_targets  # (stream, row id) -> why it is not in Marketo

    def resolve(self, records: Sequence[Any]) -> Resolved:
        resolved = Resolved()
        if not self.stream.references or not records:
            return resolved
        found = self._targets(records)
        targets: dict[str, dict[str, Target]] = {}  # row id -> Marketo field -> target
        for record in records:
            row_id = str(record.id).lower()
            row_targets: dict[str, Target] = {}
            for reference in self.stream.references:
                target = found[(row_id, reference.marketo)]
                if isinstance(target, Problem):
                    resolved.waiting[row_id] = target
                    break
                row_targets[reference.marketo] = target
            else:
                targets[row_id] = row_targets
        self._administrators(targets)
        keys = self.keys(t for row in targets.values() for t in row.values())
        for row_id, row_targets in targets.items():
            values: dict[str, Canonical] = {}
            for marketo_field, target in row_targets.items():
                if target.stream is None:
                    values[marketo_field] = target.row_id  # nothing, or a fixed sales person
                    continue
                if target.row_id is None:  # a team without an administrator
                    values[marketo_field] = None
                    continue
                key = keys.get((target.stream.name, target.row_id))
                if isinstance(key, Problem) and key.code == "dry_run":
                    values[marketo_field] = key.text  # what the real run will write once the target is synced
                    continue
                if isinstance(key, Problem):
                    if key.waits:
                        where = f"{reference_column(self.stream, marketo_field)} -> {marketo_field}"
                        resolved.waiting[row_id] = Problem(f"{where}: {key.text}", waits=True, code=key.code)
                        break
                    values[marketo_field] = None
                    continue
                values[marketo_field] = key
            else:
                resolved.values[row_id] = values
        return resolved

    def _targets(self, records: Sequence[Any]) -> dict[tuple[str, str], Target | Problem]:
        """(row id, Marketo field) -> what each reference points at: its column, else its fallbacks in order. A
        fallback `via` a lookup of the row pointed at reads those rows, one batched read per table and round."""
        done: dict[tuple[str, str], Target | Problem] = {}
        todo = {(str(r.id).lower(), ref.marketo): (r, ref, 0) for r in records for ref in self.stream.references}
        while todo:
            wanted: dict[tuple[str, str], tuple[str, str, str]] = {}  # key -> (table, row id, via column)
            for key, (record, reference, step) in list(todo.items()):
                while True:
                    fallback = reference.fallbacks[step - 1] if step else None
                    if fallback is not None and fallback.via:
                        pointed = _pointed_at(record, fallback.column)
                        if pointed is not None:
                            wanted[key] = (*pointed, fallback.via)
                            todo[key] = (record, reference, step)
                            break
                        step += 1
                    else:
                        column = fallback.column if fallback else reference.column
                        target = target_of(reference, self.mapping, record, column)
                        if _final(target) or step >= len(reference.fallbacks):
                            done[key] = target
                            del todo[key]
                            break
                        step += 1
                    if step > len(reference.fallbacks):
                        done[key] = Target(None, None)
                        del todo[key]
                        break
            if not wanted:
                break
            rows = self._via_rows(wanted.values())
            for key, (table, row_id, via) in wanted.items():
                record, reference, step = todo[key]
                row = rows.get((table, row_id))
                pointed_at: Target | Problem = Target(None, None)
                if row is not None:
                    pointed_at = target_of(reference, self.mapping, row, via)
                if _final(pointed_at) or step >= len(reference.fallbacks):
                    done[key] = pointed_at
                    del todo[key]
                else:
                    todo[key] = (record, reference, step + 1)
        return done

    def _via_rows(self, wanted: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], Any]:
        by_table: dict[str, tuple[set[str], set[str]]] = {}
        for table, row_id, via in wanted:
            ids, columns = by_table.setdefault(table, (set(), set()))
            ids.add(row_id)
            columns.add(f"_{via}_value")
        rows: dict[tuple[str, str], Any] = {}
        for table, (ids, columns) in by_table.items():
            found = self.ctx.dynamics.get_by_ids(table, sorted(ids), [f"{table}id", *sorted(columns)], annotations=True)
            rows.update({(table, str(k).lower()): v for k, v in found.items()})
        return rows

    def _administrators(self, targets: dict[str, dict[str, Target]]) -> None:
        """Owner policy "administrator": a team owner stands for its administrator (one read for all teams)."""
        teams = sorted({t.via_team for row in targets.values() for t in row.values() if t.via_team})
        if not teams:
            return
        found = self.ctx.dynamics.get_by_ids("team", teams, ["teamid", "_administratorid_value"])
        admins = {str(k).lower(): r.values.get("_administratorid_value") for k, r in found.items()}
        for row in targets.values():
            for name, target in list(row.items()):
                if target.via_team:
                    admin = admins.get(target.via_team)
                    row[name] = Target(target.stream, str(admin).lower() if admin else None)

    def keys(self, targets: Iterable[Target]) -> dict[tuple[str, str], Canonical | Problem]:
        wanted: dict[str, set[str]] = {}
        for target in targets:
            if target.stream is not None and target.row_id is not None:
                wanted.setdefault(target.stream.name, set()).add(target.row_id)
        keys: dict[tuple[str, str], Canonical | Problem] = {}
        for name, ids in wanted.items():
            stream = self.mapping.entities[name]
            links = self.ctx.state.links.get_many_by_dynamics_id(name, ids)
            for row_id, link in links.items():
                keys[(name, row_id)] = link.marketo_id if stream.is_persons else row_id
            unlinked = sorted(i for i in ids if i not in links)
            for row_id, problem in self._unlinked(stream, unlinked).items():
                keys[(name, row_id)] = problem
        return keys

    def _unlinked(self, stream: EntityMapping, ids: list[str]) -> dict[str, Problem]:
        problems: dict[str, Problem] = {}
        unknown = []
        for row_id in ids:
            if (stream.name, row_id) in self.excluded:
                problems[row_id] = Problem(self.excluded[(stream.name, row_id)], waits=False)
            else:
                unknown.append(row_id)
        if not unknown:
            return problems
        columns = [stream.primary_key, *filter_columns(stream, self.mapping)]
        rows = self.ctx.dynamics.get_by_ids(stream.table, unknown, list(dict.fromkeys(columns)))
        found = {str(k).lower(): r for k, r in rows.items()}
        for row_id in unknown:
            row = found.get(row_id)
            if row is None:
                text = f"points at {stream.table} {row_id}, which does not exist in Dynamics"
                problems[row_id] = Problem(text, waits=True, code="missing_reference")
                continue
            reason = skip_reason(stream, self.mapping, row.values)
            if reason is not None:
                if len(self.excluded) < EXCLUDED_CACHE_LIMIT:
                    self.excluded[(stream.name, row_id)] = reason
                problems[row_id] = Problem(reason, waits=False)
            elif self.dry_run and not stream.is_persons:
                problems[row_id] = Problem(row_id, waits=False, code="dry_run")
            else:
                problems[row_id] = Problem(
                    f"waits for {stream.name} {row_id}, which is not in Marketo yet (its stream has not synced it)",
                    waits=True,
                    code="reference_waits",
                )
        return problems


def reference_column(stream: EntityMapping, marketo_field: str) -> str:
    return next((r.column for r in stream.references if r.marketo == marketo_field), marketo_field)
