"""Matching a batch's unlinked records to the other system's, the same rules both ways: the record names its
counterpart (new_marketopersonid, or a person's link field names the record), then the e-mail address. A match that
another record already follows is skipped or refused, never taken; several candidates are an error, none is a create.

A full sync matches against its job-level indexes (match_index.py, dynamics_index.py) instead of per-page lookups, and
reads whole only the records that matched. The builder (pairs.py) owns the links, the reads and the sides; this
module decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from sync.connectors.dynamics.models import DataverseRecord
from sync.connectors.marketo.models import MarketoPerson
from sync.engine.dynamics_index import folded
from sync.engine.execute import PairWork
from sync.engine.matching import duplicates_within, group_by_email, pick
from sync.engine.plan import DynamicsSide, MarketoSide, PairInput

if TYPE_CHECKING:
    from sync.engine.pairs import PairBuilder

Side = TypeVar("Side", DynamicsSide, MarketoSide)
Candidate = TypeVar("Candidate", DataverseRecord, MarketoPerson)


class PairMatcher:
    """The matching step of one builder's batches."""

    def __init__(self, builder: PairBuilder) -> None:
        self.builder = builder

    def match_dynamics(self, sides: list[DynamicsSide], works: list[PairWork]) -> list[PairInput]:
        """Unlinked Dynamics records: find their Marketo person, or plan a create. With a match index (a full
        sync's, see match_index.py) the link field and the e-mail are looked up in it, and only the persons that
        matched are read, by id."""
        inputs: list[PairInput] = []
        pending: list[DynamicsSide] = []
        fields = self.builder.marketo_field_names()
        index = self.builder.index
        lean: dict[str, int] = {}  # record id -> the index person it matched, read whole below

        def pair_for(side: DynamicsSide, person: MarketoPerson | None, error: str | None) -> PairInput:
            if index is not None and person is not None and error is None:
                lean[side.id] = person.id
                return PairInput(dynamics=side)
            return self._pair_for_match(side, person, error)

        # 1. The record names its person (new_marketopersonid), or a person names the record (its link field).
        named = self.builder.fetch_persons(s.marketo_id for s in sides if s.marketo_id and s.marketo_id.isdigit())
        by_link: dict[str, list[MarketoPerson]] = {}
        if sides:
            link_field = self.builder.entity.marketo_id_field
            people = (
                index.by_link_field(link_field, [s.id for s in sides])
                if index is not None
                else self.builder.ctx.marketo.get_leads(link_field, [s.id for s in sides], fields)
            )
            for person in people:
                by_link.setdefault(str(person.values.get(link_field) or "").lower(), []).append(person)
        followed = self.builder.followed_elsewhere([str(p.id) for people in by_link.values() for p in people])
        for side in sides:
            candidates = by_link.get(side.id, [])
            if candidates and all(str(c.id) in followed for c in candidates):  # e.g. a qualified lead's person
                owner = followed[str(candidates[0].id)]  # moved to its contact: it follows that now
                works.append(self.builder.skip(side.id, None, f"its Marketo person follows {owner}"))
                continue
            candidates = [c for c in candidates if str(c.id) not in followed]
            if (
                side.marketo_id is not None
                and side.marketo_id in named
                and all(str(c.id) != side.marketo_id for c in candidates)
            ):
                linked_to = self.builder.linked_elsewhere(side.marketo_id)
                if linked_to is not None:
                    works.append(
                        self.builder.skip(side.id, None, f"its Marketo person {side.marketo_id} follows {linked_to}")
                    )
                    continue
                candidates = [named[side.marketo_id], *candidates]
            if not candidates:
                pending.append(side)
                continue
            match = pick(
                f"{self.builder.entity.name} {side.id}", candidates, lambda p: str(p.id), lambda _: None, "persons"
            )
            found = match.found
            if found is not None and side.marketo_id is not None and found.id == int(side.marketo_id or 0):
                inputs.append(self._pair_for_match(side, found, match.error))  # read whole already
            else:
                inputs.append(pair_for(side, found, match.error))
        # 2. The e-mail address.
        batch_dupes = duplicates_within(pending)
        if index is not None:
            for side in pending:
                creator = index.creator_of(side.values.get("email"))
                if creator is not None and creator != side.id:
                    batch_dupes.setdefault(
                        side.id,
                        f"e-mail {side.values.get('email')} is shared with {self.builder.entity.name} {creator}, "
                        "whose new Marketo person this sync created",
                    )
        emails = group_by_email(pending, lambda s: s.values.get("email"))
        found_by_email: dict[str, list[MarketoPerson]] = {}
        if emails:
            people = (
                index.by_emails(emails)
                if index is not None
                else self.builder.ctx.marketo.get_leads("email", list(emails), fields)
            )
            for person in people:
                found_by_email.setdefault(str(person.values.get("email", "")).strip().casefold(), []).append(person)
        inputs.extend(match_by_email(pending, batch_dupes, found_by_email, self._person_owner, "persons", pair_for))
        if lean:
            inputs = self._read_lean_matches(inputs, lean)
        return inputs

    def _read_lean_matches(self, inputs: list[PairInput], lean: dict[str, int]) -> list[PairInput]:
        """The persons matched in the index, read whole by id (300 a call); one deleted meanwhile is created anew."""
        persons = self.builder.fetch_persons(str(pid) for pid in lean.values())
        out: list[PairInput] = []
        for pair in inputs:
            side = pair.dynamics
            if side is None or side.id not in lean or pair.marketo is not None or pair.match_error is not None:
                out.append(pair)
                continue
            out.append(self._pair_for_match(side, persons.get(str(lean[side.id])), None))
        return out

    def _person_owner(self, person: MarketoPerson, dynamics_id: str) -> str | None:
        for other in self.builder.ctx.mapping.person_streams():
            value = person.values.get(other.marketo_id_field)
            if value not in (None, "") and str(value).lower() != dynamics_id:
                return f"{other.name} {value}"
        return self.builder.linked_elsewhere(str(person.id))

    def _pair_for_match(self, side: DynamicsSide, person: MarketoPerson | None, error: str | None) -> PairInput:
        if error is not None:
            return PairInput(dynamics=side, match_error=error)
        if person is None:
            return PairInput(dynamics=side)
        marketo, problem = self.builder.marketo_side(person)
        if problem:
            return PairInput(dynamics=side, match_error=f"Marketo person {person.id}: {problem}")
        return PairInput(dynamics=side, marketo=marketo)

    def match_marketo(self, sides: list[MarketoSide]) -> list[PairInput]:
        """Unlinked Marketo persons marked to sync to Dynamics: find their Dynamics record, or plan a create."""
        inputs: list[PairInput] = []
        select = self.builder.select()
        named = self.builder.fetch_dynamics(
            s.linked_dynamics_id for s in sides if s.linked_dynamics_id is not None and is_guid(s.linked_dynamics_id)
        )
        # by the link field, then by e-mail: both asked in the same queries; e-mail answers serve the unmatched only
        link_column = self.builder.link_fields.dynamics_marketo_id
        email_column = self.builder.dynamics_email_column
        wanted: dict[str, list[str]] = {link_column: [s.id for s in sides]}
        emails = list(group_by_email(sides, lambda s: s.values.get("email"))) if email_column else []
        if email_column and emails:
            wanted[email_column] = emails
        found = self._find_dynamics(wanted, select)
        self.builder.resolve_references(
            [*named.values(), *(r for column in found.values() for rows in column.values() for r in rows)]
        )
        by_person = found[link_column]
        pending: list[MarketoSide] = []
        for side in sides:
            candidates = list(by_person.get(side.id, []))
            if (
                side.linked_dynamics_id is not None
                and side.linked_dynamics_id in named
                and all(str(c.id).lower() != side.linked_dynamics_id for c in candidates)
            ):
                candidates.insert(0, named[side.linked_dynamics_id])
            if not candidates:
                pending.append(side)
                continue
            match = pick(
                f"person {side.id}", candidates, lambda r: str(r.id), lambda _: None, f"{self.builder.entity.name}s"
            )
            inputs.append(self._pair_for_dynamics_match(side, match.found, match.error))
        batch_dupes = duplicates_within(pending)
        by_email = found.get(email_column, {}) if email_column else {}
        found_by_email = {str(k).strip().casefold(): v for k, v in by_email.items()}
        what = f"{self.builder.entity.name}s"
        inputs.extend(
            match_by_email(
                pending, batch_dupes, found_by_email, self._dynamics_owner, what, self._pair_for_dynamics_match
            )
        )
        return inputs

    def _find_dynamics(
        self, wanted: dict[str, list[str]], select: list[str]
    ) -> dict[str, dict[str, list[DataverseRecord]]]:
        """column -> value -> the records holding it: by lookups, or in the Dynamics match index and then only the
        matched records read whole by id (one that no longer holds the value, or is gone, is not a match)."""
        index = self.builder.dynamics_index
        if index is None:
            return self.builder.ctx.dynamics.find_by_any(
                self.builder.entity.table, wanted, select, annotations=self.builder.annotations
            )
        ids = index.find(wanted)
        records = self.builder.fetch_dynamics(
            i for by_value in ids.values() for found in by_value.values() for i in found
        )
        return {
            column: {
                value: [
                    records[i]
                    for i in dict.fromkeys(found)
                    if i in records and folded(records[i].values.get(column)) == folded(value)
                ]
                for value, found in by_value.items()
            }
            for column, by_value in ids.items()
        }

    def _dynamics_owner(self, record: DataverseRecord, marketo_id: str) -> str | None:
        value = record.values.get(self.builder.link_fields.dynamics_marketo_id)
        if value not in (None, "") and str(value) != marketo_id:
            return f"Marketo person {value}"
        link = self.builder.links.get_by_dynamics_id(self.builder.entity.name, str(record.id).lower())
        return f"Marketo person {link.marketo_id}" if link and link.marketo_id != marketo_id else None

    def _pair_for_dynamics_match(
        self, side: MarketoSide, record: DataverseRecord | None, error: str | None
    ) -> PairInput:
        if error is not None:
            return PairInput(marketo=side, match_error=error)
        if record is None:
            return PairInput(marketo=side)
        dynamics, problem = self.builder.dynamics_side(record)
        if problem:
            return PairInput(marketo=side, match_error=f"{self.builder.entity.name} {record.id}: {problem}")
        return PairInput(dynamics=dynamics, marketo=side)


def match_by_email(
    pending: Sequence[Side],
    batch_dupes: dict[str, str],
    found_by_email: dict[str, list[Candidate]],
    owner_of: Callable[[Candidate, str], str | None],
    what: str,
    pair_for: Callable[[Side, Candidate | None, str | None], PairInput],
) -> list[PairInput]:
    """The e-mail step of matching, the same both ways: a record shares its address with an earlier one of the same
    batch (error), or the other system holds exactly one free record with it (link), several (error) or none (create).
    `pair_for(side, found, error)` builds the pair; `owner_of(candidate, side id)` names who already holds a candidate.
    """
    inputs: list[PairInput] = []
    for side in pending:
        if side.id in batch_dupes:
            inputs.append(pair_for(side, None, batch_dupes[side.id]))
            continue
        email = side.values.get("email")
        key = email.strip().casefold() if isinstance(email, str) else ""

        side_id: str = side.id

        def taken_by(candidate: Candidate, side_id: str = side_id) -> str | None:
            return owner_of(candidate, side_id)

        match = pick(f"e-mail {email}", found_by_email.get(key, []) if key else [], lambda c: str(c.id), taken_by, what)
        inputs.append(pair_for(side, match.found, match.error))
    return inputs


def is_guid(value: str | None) -> bool:
    """A link field typed in by hand may hold anything; only a GUID can name a Dynamics record."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
