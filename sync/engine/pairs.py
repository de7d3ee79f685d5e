"""Turning changed records into pairs, plans and writes: the part of a sync shared by the incremental cycle and the
full sync.

For each batch (a Dynamics page, or a set of Marketo persons) the builder finds each record's link and snapshot,
rebuilds or reads the counterpart, matches unlinked records (pair_matching.py), plans every pair and hands
the plans to the executor. Counts, conflicts and (for dry runs) the plans accumulate on the builder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sync.connectors.dynamics.models import DataverseRecord
from sync.connectors.marketo.models import MarketoPerson
from sync.engine.changes import MarketoChangeSet
from sync.engine.context import SyncContext
from sync.engine.dynamics_index import DynamicsMatchIndex
from sync.engine.execute import BatchOutcome, Executor, PairWork
from sync.engine.filters import filter_columns
from sync.engine.match_index import MatchIndex
from sync.engine.pair_matching import PairMatcher
from sync.engine.plan import (
    PAUSED,
    DynamicsSide,
    LinkRef,
    MarketoSide,
    PairInput,
    PairPlan,
    PlanError,
    plan_pair,
    restrict_plan,
)
from sync.engine.records import (
    OptionSets,
    dynamics_canonical,
    dynamics_select,
    marketo_canonical,
    marketo_fields,
    option_sets,
)
from sync.engine.references import ReferenceResolver, Resolved
from sync.mapping.model import Direction, EntityMapping, System
from sync.mapping.transforms import Canonical
from sync.state import Link

MERGED_DUPLICATE = "merged_duplicate"  # a record whose Marketo person was merged into one another record follows


def link_ref(link: Link) -> LinkRef:
    return LinkRef(entity=link.entity, dynamics_id=link.dynamics_id, marketo_id=link.marketo_id)


class PairBuilder:
    def __init__(
        self,
        ctx: SyncContext,
        entity: EntityMapping,
        dry_run: bool = False,
        direction: Direction = "both",
        bulk: bool = False,
    ) -> None:
        self.ctx = ctx
        self.entity = entity
        self.dry_run = dry_run
        self.direction = direction
        self.links = ctx.state.links
        self.link_fields = ctx.mapping.link_fields
        self.executor = Executor(ctx, entity, dry_run, bulk=bulk)
        self.counts: Counter[str] = Counter()
        self.conflicts: list[dict[str, Any]] = []
        self.plans: list[PairPlan] = []
        self.retried: set[tuple[str, str]] = set()
        self.retry_persons: set[str] = set()
        self.merged_duplicates: dict[str, str] = {}  # record id -> its open merged_duplicate error's message
        self.annotations = any(f.transform in ("lookup_name", "reference") for f in entity.synced_fields)
        self._options: OptionSets | None = None
        self.references = ReferenceResolver(ctx, entity, dry_run)
        self._resolved: dict[tuple[str, tuple[object, ...]], tuple[dict[str, Any] | None, str | None]] = {}
        self._reference_columns = tuple(f"_{r.column}_value" for r in entity.references)  # built once, not per row
        self._problem_codes: dict[str, str] = {}  # row id -> the code of a reference that waits
        self.index: MatchIndex | None = None  # a full sync's match index: no per-page lookups (match_index.py)
        self.dynamics_index: DynamicsMatchIndex | None = None  # the same, of Dataverse, to Dynamics (dynamics_index.py)
        self.matcher = PairMatcher(self)  # unlinked records: found in the other system, or created (pair_matching.py)

    # --- small helpers ------------------------------------------------------------------------------------------
    @property
    def options(self) -> OptionSets:
        if self._options is None:
            self._options = option_sets(self.ctx.dynamics, self.entity)
        return self._options

    def select(self) -> list[str]:
        extra = [self.entity.primary_key, "createdon", self.link_fields.dynamics_marketo_id]
        extra.extend(filter_columns(self.entity, self.ctx.mapping))
        if self.entity.qualified_from:
            extra.append(f"_{self.entity.qualified_from.column}_value")
        return dynamics_select(self.entity, tuple(extra))

    @property
    def dynamics_email_column(self) -> str | None:
        """The Dataverse column mapped to the Marketo e-mail, if any: what matching by e-mail asks for."""
        return next((f.dynamics for f in self.entity.fields if f.key == "email"), None)

    def marketo_field_names(self) -> list[str]:
        lf = self.link_fields
        extra = (self.entity.marketo_id_field, lf.marketo_type, lf.marketo_sync_to_dynamics, lf.marketo_is_deleted)
        return marketo_fields(self.entity, extra)

    def links_by_dynamics_id(self, entity: str, ids: Iterable[str]) -> dict[str, Link]:
        return self.links.get_many_by_dynamics_id(entity, ids)

    def links_by_marketo_id(self, entity: str, ids: Iterable[str]) -> dict[str, Link]:
        return self.links.get_many_by_marketo_id(entity, ids)

    def _reference_key(self, record: DataverseRecord) -> tuple[str, tuple[object, ...]]:
        values = record.values
        return str(record.id).lower(), tuple([values.get(column) for column in self._reference_columns])

    def resolve_references(self, records: Sequence[DataverseRecord]) -> None:
        """Resolve the references of these rows in one batch (see references.py); `_dynamics_side` reads them."""
        if not self.entity.references:
            return
        todo = [(key, r) for r in records if (key := self._reference_key(r)) not in self._resolved]
        resolved: Resolved = self.references.resolve([record for _, record in todo])
        for key, _ in todo:
            row_id = key[0]
            waiting = resolved.waiting.get(row_id)
            text = waiting.text if waiting is not None else None
            if waiting is not None:
                self._problem_codes[row_id] = waiting.code
            self._resolved[key] = (resolved.values.get(row_id), text)

    def forget_page(self) -> None:
        """Drop what planning one page cached (resolved references): a full sync's run plans many pages."""
        self._resolved.clear()
        self._problem_codes.clear()

    # --- sides --------------------------------------------------------------------------------------------------
    def dynamics_side(self, record: DataverseRecord) -> tuple[DynamicsSide | None, str | None]:
        values, problems = dynamics_canonical(self.entity, record.values, self.options, record.annotations)
        if self.entity.references:
            key = self._reference_key(record)
            if key not in self._resolved:
                self.resolve_references([record])
            references, waiting = self._resolved[key]
            if waiting is not None:
                problems.append(waiting)
            values.update(references or {})
        if problems:
            return None, "; ".join(problems)
        raw = record.values
        marketo_id = raw.get(self.link_fields.dynamics_marketo_id)
        sync_filter = raw.get(self.link_fields.dynamics_sync_filter)
        if any(rule.rejects(raw.get(rule.column)) for rule in self.entity.filter):
            sync_filter = False  # the stream's own rules pause a row as new_synctomkto No does
        return (
            DynamicsSide(
                id=str(record.id).lower(),
                values=values,
                created_on=raw.get("createdon"),
                sync_filter=sync_filter,
                marketo_id=str(marketo_id) if marketo_id not in (None, "") else None,
            ),
            None,
        )

    def marketo_side(self, person: MarketoPerson) -> tuple[MarketoSide | None, str | None]:
        values, problems = marketo_canonical(self.entity, person.values)
        if problems:
            return None, "; ".join(problems)
        raw = person.values
        linked = raw.get(self.entity.marketo_id_field)
        return (
            MarketoSide(
                id=str(person.id),
                values=values,
                sync_to_dynamics=_as_bool(raw.get(self.link_fields.marketo_sync_to_dynamics)),
                linked_dynamics_id=str(linked).lower() if linked not in (None, "") else None,
                type=raw.get(self.link_fields.marketo_type),
            ),
            None,
        )

    def _snapshot_values(self, link: Link) -> dict[str, Canonical]:
        return {f.key: link.snapshot.get(f.key) for f in self.entity.synced_fields if f.key in link.snapshot}

    def _dynamics_from_snapshot(self, link: Link) -> DynamicsSide:
        paused = bool(link.snapshot.get(PAUSED))
        return DynamicsSide(
            id=link.dynamics_id,
            values=self._snapshot_values(link),
            sync_filter=False if paused else None,
            marketo_id=link.marketo_id,
        )

    def _marketo_from_snapshot(self, link: Link, changes: MarketoChangeSet) -> tuple[MarketoSide | None, str | None]:
        values = self._snapshot_values(link)
        changed, problems = marketo_canonical(self.entity, changes.values.get(link.marketo_id, {}))
        if problems:
            return None, "; ".join(problems)
        values.update(changed)
        return MarketoSide(id=link.marketo_id, values=values, linked_dynamics_id=link.dynamics_id), None

    # --- fetching -----------------------------------------------------------------------------------------------
    def fetch_persons(self, ids: Iterable[str]) -> dict[str, MarketoPerson]:
        ids = sorted(set(ids), key=lambda x: int(x) if x.isdigit() else 0)
        if not ids:
            return {}
        persons = self.ctx.marketo.get_leads("id", [int(i) for i in ids], self.marketo_field_names())
        return {str(p.id): p for p in persons}

    def fetch_dynamics(self, ids: Iterable[str]) -> dict[str, DataverseRecord]:
        ids = sorted(set(ids))
        if not ids:
            return {}
        found = self.ctx.dynamics.get_by_ids(self.entity.table, ids, self.select(), annotations=self.annotations)
        return {str(k).lower(): v for k, v in found.items()}

    # --- matching unlinked records ------------------------------------------------------------------------------
    def _linked_anywhere(self, marketo_ids: list[str], assume_unlinked: bool = False) -> set[str]:
        """The persons among these that some entity already links. With `assume_unlinked` this entity's own links
        are not read (its links, if any, are of other persons); entities without any link are not read either."""
        taken: set[str] = set()
        for other in self.ctx.mapping.person_streams():
            if (assume_unlinked and other.name == self.entity.name) or not self.links.has_any(other.name):
                continue
            taken |= set(self.links_by_marketo_id(other.name, [i for i in marketo_ids if i not in taken]))
        return taken

    def followed_elsewhere(self, marketo_ids: list[str]) -> dict[str, str]:
        """Of these persons, those another record already links, with who that is (a batched read per stream)."""
        owners: dict[str, str] = {}
        for other in self.ctx.mapping.person_streams():
            if marketo_ids and self.links.has_any(other.name):
                for marketo_id, link in self.links_by_marketo_id(other.name, marketo_ids).items():
                    owners.setdefault(marketo_id, f"{other.name} {link.dynamics_id}")
        return owners

    def linked_elsewhere(self, marketo_id: str) -> str | None:
        for other in self.ctx.mapping.person_streams():
            link = self.links.get_by_marketo_id(other.name, marketo_id)
            if link is not None:
                return f"{other.name} {link.dynamics_id}"
        return None

    def skip(self, dynamics_id: str | None, marketo_id: str | None, reason: str) -> PairWork:
        plan = PairPlan(dynamics_id=dynamics_id, marketo_id=marketo_id, outcome="skipped", reason=reason)
        return PairWork(pair=PairInput(), plan=plan)

    def _read_failure(self, system: System, record_id: str, message: str) -> PairWork:
        plan = PairPlan(outcome="failed")
        code = self._problem_codes.get(record_id, "invalid_value") if system == "dynamics" else "invalid_value"
        plan.error = PlanError(system=system, record_id=record_id, operation="read", code=code, message=message)
        return PairWork(pair=PairInput(), plan=plan)

    # --- batches ------------------------------------------------------------------------------------------------
    def dynamics_batch(
        self,
        records: Sequence[DataverseRecord],
        deleted_ids: Sequence[str],
        changes: MarketoChangeSet,
        pending: set[str],
        fetch_counterparts: bool = False,
        assume_unlinked: bool = False,
    ) -> list[PairWork]:
        """Pairs for Dynamics records. A linked person is rebuilt from the snapshot and this cycle's Marketo changes,
        or read afresh when `fetch_counterparts` (a retry, or a full sync) or when it is new; a linked person a
        fresh read does not find is rebuilt from the snapshot (its delete arrives as an activity). `assume_unlinked`
        skips the link lookups (the caller knows none can exist); matching still runs."""
        works: list[PairWork] = []
        sides: list[DynamicsSide] = []
        self.resolve_references(records)
        for record in records:
            side, problem = self.dynamics_side(record)
            if side is None:
                works.append(self._read_failure("dynamics", str(record.id).lower(), problem or "unreadable"))
            else:
                sides.append(side)
        by_id = {} if assume_unlinked else self.links_by_dynamics_id(self.entity.name, [s.id for s in sides])
        links = [by_id.get(s.id) for s in sides]
        inputs: list[PairInput] = []
        unlinked: list[DynamicsSide] = []
        fresh = changes.new | self.retry_persons
        full_persons = self.fetch_persons(  # by id, 300 a call
            link.marketo_id
            for link in links
            if link is not None
            and link.marketo_id not in changes.deleted
            and (fetch_counterparts or link.marketo_id in fresh)
        )
        for side, link in zip(sides, links, strict=True):
            if link is None and side.id in self.merged_duplicates:  # never matched again: it would re-create a person
                works.append(self._held_duplicate(side.id, self.merged_duplicates[side.id]))
                continue
            if link is None:
                unlinked.append(side)
                continue
            pending.discard(link.marketo_id)
            if link.marketo_id in changes.deleted:
                inputs.append(
                    PairInput(
                        dynamics=side, link=link_ref(link), snapshot=link.snapshot, marketo_deleted_id=link.marketo_id
                    )
                )
                continue
            if link.marketo_id in full_persons:
                marketo, problem = self.marketo_side(full_persons[link.marketo_id])
            else:
                marketo, problem = self._marketo_from_snapshot(link, changes)
            if marketo is None:
                works.append(self._read_failure("marketo", link.marketo_id, problem or "unreadable"))
                continue
            inputs.append(PairInput(dynamics=side, marketo=marketo, link=link_ref(link), snapshot=link.snapshot))
        inputs.extend(self._qualified_or_matched(unlinked, records, works))
        deleted_links = self.links_by_dynamics_id(self.entity.name, [str(i).lower() for i in deleted_ids])
        for dynamics_id in deleted_ids:
            link = deleted_links.get(str(dynamics_id).lower())
            if link is None:
                continue
            pending.discard(link.marketo_id)
            marketo, _ = self._marketo_from_snapshot(link, changes)
            inputs.append(
                PairInput(
                    marketo=marketo, link=link_ref(link), snapshot=link.snapshot, dynamics_deleted_id=link.dynamics_id
                )
            )
        return works + self._plan(inputs)

    def merge_batch(self, changes: MarketoChangeSet) -> list[PairWork]:
        """Links of persons Marketo merged away. A winner no record follows takes the loser's link, merged afresh
        against the loser's snapshot (the winner's values flow to the record, the record learns the winner's id); a
        winner that already follows a record keeps its pair; the loser's record is unlinked and held as a
        `merged_duplicate` record error (never matched again, which would re-create the person the marketer merged
        away) until someone merges the two records in Dynamics and clears the error: that is a salesperson's call."""
        links = self.links_by_marketo_id(self.entity.name, sorted(changes.merged))
        if not links:
            return []
        winners = sorted({changes.merged[loser] for loser in links} - changes.deleted)
        taken = self.followed_elsewhere(winners)
        persons = self.fetch_persons(w for w in winners if w not in taken)
        records = self.fetch_dynamics(link.dynamics_id for link in links.values())
        self.resolve_references(list(records.values()))
        works: list[PairWork] = []
        inputs: list[PairInput] = []
        for loser, link in sorted(links.items()):
            winner = changes.merged[loser]
            record, person = records.get(link.dynamics_id), persons.get(winner)
            if winner in taken or record is None or person is None:
                why = f"follows {taken[winner]}" if winner in taken else "is gone"
                unlink = PairPlan(
                    dynamics_id=link.dynamics_id,
                    marketo_id=loser,
                    outcome="skipped",
                    reason=f"its person was merged into {winner}, which {why}: unlinked",
                    remove_links=[link_ref(link)],
                )
                works.append(PairWork(pair=PairInput(link=link_ref(link)), plan=unlink))
                if record is not None and winner in taken:  # two records for one person: a salesperson merges them
                    works.append(self._merged_duplicate(link.dynamics_id, loser, winner, taken[winner]))
                continue
            dynamics, problem = self.dynamics_side(record)
            marketo, marketo_problem = self.marketo_side(person)
            if dynamics is None or marketo is None:
                system: System = "dynamics" if dynamics is None else "marketo"
                ident = link.dynamics_id if dynamics is None else winner
                works.append(self._read_failure(system, ident, problem or marketo_problem or "unreadable"))
                continue
            taken[winner] = f"{self.entity.name} {link.dynamics_id}"  # a second loser of this winner is unlinked
            inputs.append(
                PairInput(dynamics=dynamics, marketo=marketo, snapshot=link.snapshot, relink_from=link_ref(link))
            )
        return works + self._plan(inputs)

    def _merged_duplicate(self, dynamics_id: str, loser: str, winner: str, owner: str) -> PairWork:
        message = (
            f"Marketo merged person {loser} into {winner}, which follows {owner}: {self.entity.name} {dynamics_id} "
            f"is now its duplicate in Dynamics; merge the two there (or delete this one), then clear this error"
        )
        self.merged_duplicates[dynamics_id] = message  # held from now on, within this cycle too
        return self._held_duplicate(dynamics_id, message)

    def _held_duplicate(self, dynamics_id: str, message: str) -> PairWork:
        plan = PairPlan(dynamics_id=dynamics_id, outcome="failed")
        plan.error = PlanError(
            system="dynamics", record_id=dynamics_id, operation="merge", code=MERGED_DUPLICATE, message=message
        )
        return PairWork(pair=PairInput(), plan=plan)

    def _qualified_or_matched(
        self, unlinked: list[DynamicsSide], records: Sequence[DataverseRecord], works: list[PairWork]
    ) -> list[PairInput]:
        if not unlinked:
            return []
        inputs: list[PairInput] = []
        to_match: list[DynamicsSide] = []
        qualified = self.entity.qualified_from
        origins: dict[str, str] = {}
        if qualified is not None:
            column = f"_{qualified.column}_value"
            origins = {str(r.id).lower(): str(r.values[column]).lower() for r in records if r.values.get(column)}
        for side in unlinked:
            origin = origins.get(side.id)
            origin_link = self.links.get_by_dynamics_id(qualified.entity, origin) if (qualified and origin) else None
            if origin_link is None:
                to_match.append(side)
                continue
            persons = self.fetch_persons([origin_link.marketo_id])
            person = persons.get(origin_link.marketo_id)
            if person is None:
                to_match.append(side)
                continue
            marketo, problem = self.marketo_side(person)
            if marketo is None:
                works.append(self._read_failure("marketo", origin_link.marketo_id, problem or "unreadable"))
                continue
            inputs.append(
                PairInput(
                    dynamics=side, marketo=marketo, snapshot=origin_link.snapshot, relink_from=link_ref(origin_link)
                )
            )
        if to_match:
            inputs.extend(self.matcher.match_dynamics(to_match, works))
        return inputs

    def marketo_batch(
        self,
        person_ids: set[str],
        changes: MarketoChangeSet,
        dynamics_complete: bool,
        known_persons: Sequence[MarketoPerson] = (),
        synced_since: datetime | None = None,
        assume_unlinked: bool = False,
    ) -> list[PairWork]:
        """Pairs for Marketo persons. A linked record's Dynamics side is rebuilt from the snapshot, or read afresh when
        the Dynamics changes were not all read (`dynamics_complete` False). `known_persons` carry full values already
        (a bulk extract); links saved at or after `synced_since` were merged moments ago and are left alone."""
        works: list[PairWork] = []
        known = {str(p.id): p for p in known_persons}
        ids = sorted(person_ids)
        by_person = {} if assume_unlinked else self.links_by_marketo_id(self.entity.name, ids)
        links = [by_person.get(pid) for pid in ids]
        linked = [(pid, link) for pid, link in zip(ids, links, strict=True) if link is not None]
        if synced_since is not None:
            fresh = [pid for pid, link in linked if link.synced_at is not None and link.synced_at >= synced_since]
            self.counts["unchanged"] += len(fresh)
            linked = [(pid, link) for pid, link in linked if pid not in set(fresh)]
        unlinked = [pid for pid, link in zip(ids, links, strict=True) if link is None and pid not in changes.deleted]
        moved = self._retried_elsewhere(unlinked)
        works.extend(self.skip(None, pid, f"its person follows {owner} now") for pid, owner in moved.items())
        unlinked = [pid for pid in unlinked if pid not in moved]
        refetch_dynamics = {link.dynamics_id for _, link in linked} if not dynamics_complete else set()
        refetch_dynamics |= {link.dynamics_id for pid, link in linked if pid in self.retry_persons}
        current = self.fetch_dynamics(refetch_dynamics)
        self.resolve_references(list(current.values()))
        wanted = {pid for pid, _ in linked if pid in (changes.new | self.retry_persons) and pid not in known}
        full_persons = {**self.fetch_persons(wanted), **known}
        inputs: list[PairInput] = []
        for pid, link in linked:
            if link.dynamics_id in current:
                dynamics, problem = self.dynamics_side(current[link.dynamics_id])
                if dynamics is None:
                    works.append(self._read_failure("dynamics", link.dynamics_id, problem or "unreadable"))
                    continue
            elif link.dynamics_id in refetch_dynamics:
                dynamics = None  # gone from Dynamics: the delete arrives through change tracking
                works.append(self.skip(link.dynamics_id, pid, "the Dynamics record was not found"))
                continue
            else:
                dynamics = self._dynamics_from_snapshot(link)
            if pid in changes.deleted:
                inputs.append(
                    PairInput(dynamics=dynamics, link=link_ref(link), snapshot=link.snapshot, marketo_deleted_id=pid)
                )
                continue
            if pid in full_persons:
                marketo, problem = self.marketo_side(full_persons[pid])
            else:
                marketo, problem = self._marketo_from_snapshot(link, changes)
            if marketo is None:
                works.append(self._read_failure("marketo", pid, problem or "unreadable"))
                continue
            inputs.append(PairInput(dynamics=dynamics, marketo=marketo, link=link_ref(link), snapshot=link.snapshot))
        if unlinked and self.entity.create_in_dynamics:
            persons = [known[pid] for pid in unlinked if pid in known]
            persons += self.fetch_persons(pid for pid in unlinked if pid not in known).values()
            marked: list[MarketoSide] = []
            for person in persons:
                side, problem = self.marketo_side(person)
                if side is None:
                    works.append(self._read_failure("marketo", str(person.id), problem or "unreadable"))
                elif side.sync_to_dynamics:
                    marked.append(side)
            taken = self._linked_anywhere([side.id for side in marked], assume_unlinked) if marked else set()
            candidates = [side for side in marked if side.id not in taken]
            if candidates:
                inputs.extend(self.matcher.match_marketo(candidates))
        return works + self._plan(inputs)

    def _retried_elsewhere(self, person_ids: list[str]) -> dict[str, str]:
        """Of these persons, those with an error of this stream that another record now follows (a qualified lead's
        person moved to its contact): that stream carries their changes, so this stream's errors are settled."""
        retried = [pid for pid in person_ids if pid in self.retry_persons]
        return self.followed_elsewhere(retried) if retried else {}

    def _plan(self, inputs: list[PairInput]) -> list[PairWork]:
        plans = [plan_pair(i, self.entity, self.ctx.mapping, self.options) for i in inputs]
        return [
            PairWork(pair=i, plan=restrict_plan(p, self.direction, self.entity))
            for i, p in zip(inputs, plans, strict=True)
        ]

    def run_batch(self, works: list[PairWork]) -> None:
        outcome: BatchOutcome = self.executor.run(works, self.retried)
        self.counts.update(outcome.counts)
        self.conflicts.extend(outcome.conflicts)
        if self.dry_run:
            self.plans.extend(w.plan for w in works)


def _as_bool(value: object) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")
