"""What Dataverse holds, read once for a full sync's Marketo pages to match against: the Dynamics match index.

A full sync to Dynamics must find, for each Marketo person, the record it already is: by the record's link column
(the person's id) or by e-mail. Asked per page, that is one In() query per 100 persons (the two keys ORed in it).
The index instead reads every record's id, link column and e-mail once, 5,000 a page, at the start of each queue
message, and matches the pages in memory; only the records that matched are then read whole, by id, and each is
kept only if it still holds the value it matched on.

It pays while the table's pages are fewer than the lookups they replace, so the read gives up after `max_rows`
rows (the caller then looks up per page, and keeps that decision on the task). The records this message creates
are added as their creates return, so a later page finds them as a lookup would (a twin gets an error, not a
second record). A record created or re-addressed by someone else during the message is the one race left: the
next message's index sees it, the pages in flight do not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.connectors.dynamics import DataverseClient

log = logging.getLogger(__name__)


def folded(value: object) -> str:
    """A value as the index keys it (Dataverse compares strings case-insensitively; stray blanks are ignored)."""
    return str(value or "").strip().casefold()


@dataclass
class DynamicsMatchIndex:
    """column -> folded value -> ids of the records holding it, for the link column and the e-mail column."""

    columns: tuple[str, ...]
    ids: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    records: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        for column in self.columns:
            self.ids.setdefault(column, {})

    def add(self, record_id: str, values: Mapping[str, object]) -> None:
        with self._lock:
            self.records += 1
            for column in self.columns:
                if key := folded(values.get(column)):
                    self.ids[column].setdefault(key, []).append(str(record_id).lower())

    @classmethod
    def read(
        cls, dynamics: DataverseClient, table: str, columns: Sequence[str], max_rows: int | None
    ) -> DynamicsMatchIndex | None:
        """Every record's id and `columns`, a page at a time; None once it holds more than `max_rows`."""
        index = cls(tuple(dict.fromkeys(columns)))
        for record in dynamics.query(table, list(index.columns), operation="match_index"):
            if max_rows is not None and index.records >= max_rows:
                log.info("Dynamics match index of %s: over %s records, the pages look up instead", table, max_rows)
                return None
            index.add(str(record.id), record.values)
        log.info("Dynamics match index of %s: %s records", table, index.records)
        return index

    def find(self, values_by_column: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
        """column -> each asked value -> the ids of the records that held it (as DataverseClient.find_by_any)."""
        with self._lock:
            return {
                column: {value: list(self.ids.get(column, {}).get(folded(value), [])) for value in values}
                for column, values in values_by_column.items()
            }
