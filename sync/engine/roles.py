"""Opportunity contact roles: the persons of each opportunity, Dynamics -> Marketo opportunities/roles.

An opportunity's roles are computed from Dataverse as a whole, every time the opportunity or one of its connections
changes: the customer, when it is a contact (isPrimary, the configured customer role), and every stakeholder, an
active `connection` between the opportunity and a contact in either direction (role: the contact's connection role).
Dataverse stores each connection as a reciprocal pair (relatedconnectionid): a pair counts once, and only while both
halves are active. One role per (opportunity, contact): the customer role wins over a stakeholder one, and of two
connection roles the first by name.

Changes are read from two change-tracking feeds: the opportunity table's (the stream's own watermark: a customer
changed, an opportunity deleted) and the connection table's (watermark `<stream>.connection`). A deleted connection
names only its id, so every connection counted for an opportunity is indexed in the link state
(`<stream>.connection`: connection id -> opportunity id).

The link of an opportunity in this stream holds, as its snapshot, the roles written ({contact id: leadId, role,
isPrimary}) and the connections seen. Marketo cannot update a role's `role` or `leadId`: a change of either deletes
the old role and creates the new one; a change of isPrimary alone updates it. A role whose contact has no person in
Marketo yet waits (a record error, retried), as does every role of an opportunity not in Marketo yet: nothing is
written with a wrong id. A role name longer than Marketo's 50 characters is a record error naming the opportunity,
the contact and the role (not truncated: two long names could collide).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync.engine.crm_plan import CrmOutcome, CrmPlan
from sync.engine.crm_stream import NOT_FOUND, CrmBatches
from sync.engine.filters import filter_columns, skip_reason
from sync.engine.plan import PlanError
from sync.engine.records import FORMATTED
from sync.engine.references import Problem, ReferenceResolver, Target, logical_name
from sync.mapping.model import EntityMapping
from sync.state import Link, RecordError

if TYPE_CHECKING:
    from sync.engine.context import SyncContext

ROLE_LENGTH = 50  # Marketo: opportunity role `role` is a string of 50
CONNECTION_COLUMNS = [
    "connectionid",
    "_record1id_value",
    "_record2id_value",
    "_record1roleid_value",
    "_record2roleid_value",
    "_relatedconnectionid_value",
    "statecode",
    "ismaster",
]
ACTIVE = 0


@dataclass(frozen=True)
class Role:
    lead_id: int
    role: str
    is_primary: bool

    def snapshot(self) -> dict[str, Any]:
        return {"leadId": self.lead_id, "role": self.role, "isPrimary": self.is_primary}

    @classmethod
    def from_snapshot(cls, raw: Mapping[str, Any]) -> Role:
        return cls(int(raw["leadId"]), str(raw["role"]), bool(raw["isPrimary"]))

    def key(self, opportunity_id: str) -> dict[str, Any]:
        return {"externalOpportunityId": opportunity_id, "leadId": self.lead_id, "role": self.role}


@dataclass
class Wanted:
    """What Dataverse says an opportunity's roles are: contact id -> (role name, isPrimary). Pure."""

    roles: dict[str, tuple[str, bool]] = field(default_factory=dict)
    connections: list[str] = field(default_factory=list)  # every connection id seen, both halves of each pair
    skipped: list[str] = field(default_factory=list)  # stakeholders that are not contacts
    problems: list[str] = field(default_factory=list)


def _lookup(record: Any, column: str) -> tuple[str | None, str | None]:
    """A lookup's (row id, table) on a Dataverse record."""
    raw = (record.values or {}).get(column)
    return (str(raw).lower() if raw else None), logical_name(record, column)


def _formatted(record: Any, column: str) -> str | None:
    values = record.values or {}
    found = values.get(column + FORMATTED) or ((getattr(record, "annotations", None) or {}).get(column) or {}).get(
        FORMATTED[1:]
    )
    return str(found).strip() or None if found else None


def wanted_roles(
    opportunity_id: str,
    customer: tuple[str | None, str | None],
    connections: Iterable[Any],
    customer_role: str,
    stakeholder_role: str,
) -> Wanted:
    """An opportunity's roles from its customer lookup (id, table) and the connections that name it. Pure."""
    wanted = Wanted()
    pairs: dict[frozenset[str], list[Any]] = {}
    for record in connections:
        own = str(record.id).lower()
        related = (record.values or {}).get("_relatedconnectionid_value")
        pairs.setdefault(frozenset({own, str(related).lower() if related else own}), []).append(record)
        wanted.connections.append(own)
    stakeholders: dict[str, str] = {}
    for halves in pairs.values():
        if any((h.values or {}).get("statecode") not in (ACTIVE, None) for h in halves):
            continue  # a deactivated connection: no role
        # the master half first: the one a user made (and edits); its reciprocal is the system's copy
        for half in sorted(halves, key=lambda h: ((h.values or {}).get("ismaster") is False, str(h.id))):
            first, _ = _lookup(half, "_record1id_value")
            other, table = _lookup(half, "_record2id_value")
            side = "2"
            if first != opportunity_id:
                other, table = _lookup(half, "_record1id_value")
                side = "1"
                if _lookup(half, "_record2id_value")[0] != opportunity_id:
                    continue
            if other is None or other == opportunity_id:
                continue
            if table != "contact":
                wanted.skipped.append(
                    f"a stakeholder that is {'an' if (table or 'x')[0] in 'aeiou' else 'a'} {table}, "
                    "not a contact (no person to give a role)"
                )
                break
            role = _formatted(half, f"_record{side}roleid_value") or stakeholder_role
            if other not in stakeholders or role < stakeholders[other]:
                stakeholders[other] = role
            break
    for contact, role in sorted(stakeholders.items()):
        wanted.roles[contact] = (role, False)
    customer_id, customer_table = customer
    if customer_id and customer_table == "contact":
        wanted.roles[customer_id] = (customer_role, True)
    for contact, (role, _) in list(wanted.roles.items()):
        if len(role) > ROLE_LENGTH:
            wanted.problems.append(
                f"contact {contact}: role {role!r} is {len(role)} characters; Marketo takes at most {ROLE_LENGTH}"
                " (shorten the connection role's name)"
            )
            del wanted.roles[contact]
    return wanted


@dataclass
class RoleDiff:
    deletes: list[tuple[str, Role]] = field(default_factory=list)  # (contact id, role) to delete
    writes: list[tuple[str, Role]] = field(default_factory=list)  # creates, and isPrimary updates
    updates: set[str] = field(default_factory=set)  # contacts whose write only updates isPrimary
    unchanged: int = 0


def diff_roles(old: Mapping[str, Role], new: Mapping[str, Role], waiting: set[str]) -> RoleDiff:
    """What to write to go from the roles written to the roles wanted. A contact whose role waits keeps its old
    role (its person is not known: nothing is deleted on a guess). Pure."""
    diff = RoleDiff()
    for contact, before in old.items():
        if contact in waiting:
            continue
        after = new.get(contact)
        if after is None or (after.lead_id, after.role) != (before.lead_id, before.role):
            diff.deletes.append((contact, before))
    for contact, after in new.items():
        earlier = old.get(contact)
        if earlier == after:
            diff.unchanged += 1
        else:
            if earlier is not None and (earlier.lead_id, earlier.role) == (after.lead_id, after.role):
                diff.updates.add(contact)
            diff.writes.append((contact, after))
    return diff


def _old_roles(link: Link | None) -> dict[str, Role]:
    return {c: Role.from_snapshot(r) for c, r in ((link.snapshot if link else {}).get("roles") or {}).items()}


@dataclass
class _Opportunity:
    row_id: str
    link: Link | None
    deleted: bool = False
    roles: dict[str, Role] = field(default_factory=dict)  # what it should have, resolved
    waiting: dict[str, str] = field(default_factory=dict)  # contact -> why its role cannot be written yet
    connections: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    diff: RoleDiff = field(default_factory=RoleDiff)
    written: dict[str, Role] = field(default_factory=dict)  # the roles in Marketo after this batch


class RoleBatches:
    """Runs batches of opportunities of a roles stream (the same interface as CrmBatches)."""

    def __init__(self, ctx: SyncContext, stream: EntityMapping, dry_run: bool = False) -> None:
        assert stream.roles is not None
        self.ctx = ctx
        self.stream = stream
        self.rules = stream.roles
        self.dry_run = dry_run
        self.client = ctx.marketo.crm(stream.marketo_object)
        self.resolver = ReferenceResolver(ctx, stream, dry_run)
        self.counts: Counter[str] = Counter()
        self.plans: list[CrmPlan] = []
        self.conflicts: list[dict[str, Any]] = []
        self.retried: set[str] = set()
        self.skipped: Counter[str] = Counter()

    @property
    def connection_feed(self) -> str:
        """The name of the connection feed's watermark and of the connection -> opportunity index in the links."""
        return f"{self.stream.name}.connection"

    def select(self) -> list[str]:
        columns = [self.stream.primary_key, "_customerid_value", *filter_columns(self.stream, self.ctx.mapping)]
        return list(dict.fromkeys(columns))

    def fetch(self, ids: Sequence[str]) -> dict[str, Any]:
        found = self.ctx.dynamics.get_by_ids(self.stream.table, list(ids), self.select(), annotations=True)
        return {str(k).lower(): v for k, v in found.items()}

    # --- the connection feed --------------------------------------------------------------------------------------
    def opportunities_of(self, records: Sequence[Any], deleted_ids: Sequence[str]) -> list[str]:
        """The opportunities that changed connections (or deleted ones, through the index) name."""
        table = self.ctx.mapping.entity(self.rules.opportunity).table
        ids: set[str] = set()
        for record in records:
            for column in ("_record1id_value", "_record2id_value"):
                row_id, target = _lookup(record, column)
                if row_id and target == table:
                    ids.add(row_id)
        if deleted_ids:
            index = self.ctx.state.links.get_many_by_dynamics_id(
                self.connection_feed, [str(i).lower() for i in deleted_ids]
            )
            ids |= {link.marketo_id for link in index.values()}
        return sorted(ids)

    def run_opportunities(self, ids: Sequence[str]) -> None:
        """Recompute the roles of these opportunities (one gone since is a delete)."""
        if not ids:
            return
        found = self.fetch(ids)
        self.run(list(found.values()), [i for i in ids if i not in found])

    # --- one batch ------------------------------------------------------------------------------------------------
    def run(self, records: Sequence[Any], deleted_ids: Sequence[str] = ()) -> list[CrmPlan]:
        name = self.stream.name
        ids = [str(r.id).lower() for r in records]
        deleted = [str(i).lower() for i in deleted_ids if str(i).lower() not in ids]
        links = self.ctx.state.links.get_many_by_dynamics_id(name, [*ids, *deleted])
        work: list[_Opportunity] = []
        live: list[tuple[_Opportunity, Any]] = []
        settled: list[str] = []
        for record, row_id in zip(records, ids, strict=True):
            reason = skip_reason(self.stream, self.ctx.mapping, record.values)
            if reason is not None:
                kept = " (its roles are kept, not updated)" if links.get(row_id) else ""
                self.counts["skipped"] += 1
                self.skipped[f"{reason}{kept}"] += 1
                settled.append(row_id)
                continue
            item = _Opportunity(row_id, links.get(row_id))
            work.append(item)
            live.append((item, record))
        for row_id in deleted:
            if row_id in links:
                work.append(_Opportunity(row_id, links[row_id], deleted=True))
            else:
                settled.append(row_id)
        if not self.dry_run:  # skipped, or deleted before any role was written: a retried error is settled
            for row_id in settled:
                if row_id in self.retried:
                    self.ctx.state.errors.resolve(name, "dynamics", row_id)
        self._resolve(live)
        for item in work:
            old = _old_roles(item.link)
            item.diff = diff_roles(old, item.roles, set(item.waiting))
            item.written = dict(old)
        plans = self._plans(work)
        if self.dry_run:
            self.plans.extend(plans)
        else:
            self._write(work)
            self._commit(work)
        for item in work:
            self.counts["created"] += sum(1 for c, _ in item.diff.writes if c not in item.diff.updates)
            self.counts["updated"] += len(item.diff.updates)
            self.counts["deleted"] += len(item.diff.deletes)
            if item.problems:
                self.counts["failed"] += 1
            elif not item.diff.writes and not item.diff.deletes:
                self.counts["unchanged"] += 1
        return plans

    def _resolve(self, live: list[tuple[_Opportunity, Any]]) -> None:
        """The roles each opportunity should have, with leadId from the link state."""
        if not live:
            return
        mapping = self.ctx.mapping
        opportunities = mapping.entity(self.rules.opportunity)
        persons = mapping.entity(self.rules.persons)
        ids = [item.row_id for item, _ in live]
        found = self.ctx.dynamics.find_by_any(
            self.rules.connection_table,
            {"_record1id_value": ids, "_record2id_value": ids},
            CONNECTION_COLUMNS,
            annotations=True,
        )
        wanted: dict[str, Wanted] = {}
        for item, record in live:
            seen: dict[str, Any] = {}
            for column in ("_record1id_value", "_record2id_value"):
                for connection in found[column].get(item.row_id, ()):
                    seen[str(connection.id).lower()] = connection
            customer = _lookup(record, "_customerid_value")
            wanted[item.row_id] = wanted_roles(
                item.row_id, customer, seen.values(), self.rules.customer_role, self.rules.stakeholder_role
            )
        targets = [Target(opportunities, i) for i in ids]
        targets += [Target(persons, c) for w in wanted.values() for c in w.roles]
        keys = self.resolver.keys(targets)
        for item, _ in live:
            want = wanted[item.row_id]
            item.connections = want.connections
            for reason in want.skipped:
                self.counts["skipped"] += 1
                self.skipped[reason] += 1
            item.problems += [("invalid_value", p) for p in want.problems]
            opportunity = keys.get((opportunities.name, item.row_id))
            if isinstance(opportunity, Problem) and opportunity.code != "dry_run":  # dry run: as if synced first
                if opportunity.waits:
                    text = f"opportunity {item.row_id}: {opportunity.text}"
                    item.problems.append((opportunity.code, text))
                    item.waiting = dict.fromkeys([*want.roles, *_old_roles(item.link)], text)
                # excluded by the opportunities stream: no roles are wanted, and none are deleted on that account
                else:
                    item.waiting = dict.fromkeys(_old_roles(item.link), opportunity.text)
                continue
            for contact, (role, primary) in want.roles.items():
                key = keys.get((persons.name, contact))
                if isinstance(key, Problem):
                    if key.waits:
                        text = f"contact {contact} ({role}): {key.text}"
                        item.waiting[contact] = text
                        item.problems.append((key.code, text))
                    continue  # a contact its stream excludes has no person: no role
                if key is None:
                    continue
                item.roles[contact] = Role(int(str(key)), role, primary)

    def _plans(self, work: list[_Opportunity]) -> list[CrmPlan]:
        plans: list[CrmPlan] = []
        for item in work:
            for contact, _ in item.diff.deletes:
                plans.append(CrmPlan(row_id=f"{item.row_id}/{contact}", outcome="deleted", delete=True))
            for contact, role in item.diff.writes:
                outcome: CrmOutcome = "updated" if contact in item.diff.updates else "created"
                upsert = {**role.key(item.row_id), "isPrimary": role.is_primary}
                plans.append(CrmPlan(row_id=f"{item.row_id}/{contact}", outcome=outcome, upsert=upsert))
            for code, message in item.problems:
                error = PlanError(
                    system="dynamics", record_id=item.row_id, operation="read", code=code, message=message
                )
                plans.append(CrmPlan(row_id=item.row_id, outcome="failed", reason=message, error=error))
        return plans

    # --- writes and commit ----------------------------------------------------------------------------------------
    @staticmethod
    def _refusal(result: Any) -> str:
        reasons = getattr(result, "reasons", None) or []
        return "; ".join(f"{r.code} {r.message}" for r in reasons) or f"status {result.status}"

    def _write(self, work: list[_Opportunity]) -> None:
        deletes = [(item, contact, role) for item in work for contact, role in item.diff.deletes]
        if deletes:
            results = self.client.delete([role.key(item.row_id) for item, _, role in deletes])
            for (item, contact, role), result in zip(deletes, results, strict=True):
                gone = any(r.code == NOT_FOUND for r in getattr(result, "reasons", None) or [])
                if result.status == "deleted" or gone:
                    item.written.pop(contact, None)
                else:
                    refusal = self._refusal(result)
                    text = f"Marketo refused to delete the role {role.role!r} of contact {contact}: {refusal}"
                    item.problems.append(("marketo", text))
        writes = [
            (item, contact, role)
            for item in work
            for contact, role in item.diff.writes
            if contact not in item.written or contact in item.diff.updates
        ]
        if writes:
            results = self.client.sync(
                [{**role.key(item.row_id), "isPrimary": role.is_primary} for item, _, role in writes]
            )
            for (item, contact, role), result in zip(writes, results, strict=True):
                if result.status in ("created", "updated"):
                    item.written[contact] = role
                else:
                    text = f"Marketo refused the role {role.role!r} of contact {contact}: {self._refusal(result)}"
                    item.problems.append(("marketo", text))

    def _commit(self, work: list[_Opportunity]) -> None:
        state, name, now = self.ctx.state, self.stream.name, self.ctx.clock()
        to_save: list[Link] = []
        to_remove: list[Link] = []
        index_save: list[Link] = []
        index_remove: list[Link] = []
        for item in work:
            before = item.link.snapshot if item.link else {}
            known = set(before.get("connections") or [])
            if item.deleted and not item.written:
                to_remove.append(Link(entity=name, dynamics_id=item.row_id, marketo_id=item.row_id))
                index_remove += [
                    Link(entity=self.connection_feed, dynamics_id=c, marketo_id=item.row_id) for c in known
                ]
                continue
            connections = sorted(known | set(item.connections)) if item.deleted else sorted(set(item.connections))
            snapshot = {"roles": {c: r.snapshot() for c, r in sorted(item.written.items())}, "connections": connections}
            if snapshot != before:
                to_save.append(
                    Link(entity=name, dynamics_id=item.row_id, marketo_id=item.row_id, snapshot=snapshot, synced_at=now)
                )
            index_save += [
                Link(entity=self.connection_feed, dynamics_id=c, marketo_id=item.row_id)
                for c in connections
                if c not in known
            ]
        if to_remove or index_remove:
            state.links.delete([*to_remove, *index_remove])
        if to_save or index_save:
            state.links.save([*to_save, *index_save])
        for item in work:
            if item.problems:
                codes = {code for code, _ in item.problems}
                code = item.problems[0][0] if len(codes) == 1 else "several"
                state.errors.record(
                    RecordError(
                        entity=name,
                        system="dynamics",
                        record_id=item.row_id,
                        operation="write" if "marketo" in codes else "read",
                        code=code,
                        message="; ".join(message for _, message in item.problems),
                    ),
                    now=now,
                )
            elif item.row_id in self.retried:
                state.errors.resolve(name, "dynamics", item.row_id)


def start_connection_feed(ctx: SyncContext, batches: RoleBatches) -> None:
    """A full sync computes every opportunity's roles from the current connections; the connection feed starts at
    the delta link of an initial read taken before (its rows are not needed: the opportunity pages cover them)."""
    mark = ctx.state.watermarks.get(batches.connection_feed, "dynamics")
    pages = ctx.dynamics.read_changes(batches.rules.connection_table, ["connectionid"], None)
    last = None
    for page in pages:
        last = page.cursor
    if last is not None:
        ctx.state.watermarks.advance(mark, last)


def batches_for(ctx: SyncContext, stream: EntityMapping, dry_run: bool = False) -> CrmBatches | RoleBatches:
    """The adapter of a one-way stream: roles, or any other CRM or custom object."""
    return RoleBatches(ctx, stream, dry_run) if stream.roles is not None else CrmBatches(ctx, stream, dry_run)
