"""Finding the counterpart of an unlinked record, so that nothing is ever created twice.

Order: the link fields first (the id one system already stores of the other: it is how a create that crashed before
its link was committed is found again, and how records linked by the native sync are adopted), then the e-mail
address, case-insensitively. Several candidates, or a candidate already linked to another record, is a record error
naming them, never a guess. No candidate: the caller creates the record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sync.engine.plan import DynamicsSide, MarketoSide

T = TypeVar("T")


@dataclass
class Match(Generic[T]):
    found: T | None = None
    error: str | None = None


def pick(
    key: str,
    candidates: Iterable[T],
    ident: Callable[[T], str],
    taken_by: Callable[[T], str | None],
    what: str,
) -> Match[T]:
    """One free candidate, or an error naming them. `taken_by` names the record a candidate is already linked to."""
    candidates = list(candidates)
    if not candidates:
        return Match()
    if len(candidates) > 1:
        ids = ", ".join(sorted(ident(c) for c in candidates))
        return Match(error=f"{len(candidates)} {what} match {key}: {ids}; link one by hand or merge them")
    [candidate] = candidates
    owner = taken_by(candidate)
    if owner is not None:
        return Match(error=f"{what[:-1]} {ident(candidate)} matches {key} but is already linked to {owner}")
    return Match(found=candidate)


def group_by_email(sides: Iterable[T], email: Callable[[T], object]) -> dict[str, list[T]]:
    groups: dict[str, list[T]] = defaultdict(list)
    for side in sides:
        value = email(side)
        if isinstance(value, str) and value.strip():
            groups[value.strip().casefold()].append(side)
    return groups


def duplicates_within(sides: Iterable[DynamicsSide | MarketoSide], email_key: str = "email") -> dict[str, str]:
    """Records of one batch that share an e-mail with an earlier one: id -> message. The first one goes ahead."""
    errors: dict[str, str] = {}
    for address, group in group_by_email(sides, lambda s: s.values.get(email_key)).items():
        for later in group[1:]:
            errors[later.id] = f"e-mail {address} is shared with record {group[0].id} in the same batch"
    return errors
