"""What Marketo holds, read once for a full sync's pages to match against: the job-level match index.

A first full sync to Marketo must find, for each Dynamics record, the person it already is: by the person's link
field (the record's id), or by e-mail. Asking per page costs 2 x ceil(rows/300) lookups; for a big job it is cheaper
to read every person's id, e-mail and link fields once by Bulk Extract (windows of at most 31 days on createdAt,
queued ahead: Marketo runs 2 at once and queues 10) and match each page in memory. Persons that matched are then
read whole by id (300 a call), so only the matches cost calls.

The index is read at the start of every queue message of the task, so a person created in Marketo while the job
runs is matched by the pages of the next message. Within a message, records planned as creates by an earlier page
are noted (`note_create`): a later record with the same address is then refused as a duplicate (`creator_of`), as a
lookup would have found the person its twin created, instead of creating a second person. A person created by
someone else during the message itself is the one race left: the next message sees it, the pages in flight do not.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sync.connectors.marketo import MarketoClient
from sync.connectors.marketo.bulk_extract import date_windows
from sync.connectors.marketo.models import MarketoPerson

log = logging.getLogger(__name__)
WINDOW = timedelta(days=31)
QUEUED_AHEAD = 8  # exports queued at once (Marketo queues 10; leave room for the id exports of the imports)
CALLS_PER_WINDOW = 5  # create, enqueue, a status poll or two, the file
LOOKUP_BATCH = 300


def index_windows(start: datetime, end: datetime) -> int:
    return 0 if end <= start else math.ceil((end - start) / WINDOW)


def worth_an_index(windows: int, page_rows: int, more_pages: bool) -> bool:
    """An index pays when reading it costs fewer calls than the per-page lookups it replaces (link field and
    e-mail, 300 a call) for the pages of one message (a full page with more to come counts as four)."""
    pages = 4 if more_pages else 1
    return windows * CALLS_PER_WINDOW <= 2 * math.ceil(page_rows / LOOKUP_BATCH) * pages


def _key(value: object) -> str:
    return str(value or "").strip().casefold()


@dataclass
class MatchIndex:
    """id, e-mail and link fields of every person Marketo held when the message started."""

    link_fields: tuple[str, ...]
    persons: dict[int, dict[str, str]] = field(default_factory=dict)
    by_email: dict[str, list[int]] = field(default_factory=dict)
    by_link: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (field, dynamics id) -> persons
    _pending: dict[str, str] = field(default_factory=dict)  # e-mail -> the record whose create is in flight
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fields(self) -> list[str]:
        return ["id", "email", *self.link_fields]

    def add(self, person_id: int, values: dict[str, str | None]) -> None:
        kept = {name: str(values[name]) for name in ("email", *self.link_fields) if values.get(name) not in (None, "")}
        with self._lock:
            self.persons[person_id] = kept
            if kept.get("email"):
                self.by_email.setdefault(_key(kept["email"]), []).append(person_id)
            for name in self.link_fields:
                if kept.get(name):
                    self.by_link.setdefault((name, _key(kept[name])), []).append(person_id)

    @classmethod
    def read(cls, marketo: MarketoClient, link_fields: Sequence[str], start: datetime, end: datetime) -> MatchIndex:
        """Every person created in [start, end] by Bulk Extract, the next windows' exports queued while one is read."""
        index = cls(tuple(dict.fromkeys(link_fields)))
        if end <= start:
            return index
        windows = date_windows(start, end, WINDOW)
        queued: list[str] = []
        position = 0
        for number in range(len(windows)):
            while position < len(windows) and len(queued) - number < QUEUED_AHEAD:
                window_start, window_end = windows[position]
                queued.append(marketo.queue_lead_export(index.fields, window_start, window_end, "createdAt"))
                position += 1
            marketo.wait_lead_export(queued[number])
            for row, _offset in marketo.lead_export_rows(queued[number]):
                values = {k: (None if v in ("", "null") else v) for k, v in row.items()}
                index.add(int(row["id"]), values)
        log.info("match index: %s persons from %s export window(s)", len(index.persons), len(windows))
        return index

    # --- matching ---------------------------------------------------------------------------------------------------
    def _lean(self, person_id: int) -> MarketoPerson:
        values: dict[str, object] = dict(self.persons.get(person_id, {}))
        return MarketoPerson(id=person_id, values=values)

    def by_link_field(self, link_field: str, dynamics_ids: Iterable[str]) -> list[MarketoPerson]:
        with self._lock:
            found = [pid for i in dynamics_ids for pid in self.by_link.get((link_field, _key(i)), [])]
        return [self._lean(pid) for pid in dict.fromkeys(found)]

    def by_emails(self, emails: Iterable[str]) -> list[MarketoPerson]:
        with self._lock:
            found = [pid for email in dict.fromkeys(_key(e) for e in emails) for pid in self.by_email.get(email, [])]
        return [self._lean(pid) for pid in dict.fromkeys(found)]

    def creator_of(self, email: object) -> str | None:
        """The record of an earlier page whose new person has this address (its create may still be in flight)."""
        with self._lock:
            return self._pending.get(_key(email)) if _key(email) else None

    def note_create(self, email: object, dynamics_id: str) -> None:
        if _key(email):
            with self._lock:
                self._pending.setdefault(_key(email), dynamics_id)
