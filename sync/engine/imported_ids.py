"""The Marketo ids of persons a Bulk Import just created or updated: Marketo's import answers with counts, not ids.

They are proven by the link field each row carried (the Dynamics record's id), the cheaper way for the size:
- few rows: a REST lookup by the link field, 300 values a call;
- many rows: a Bulk Extract of id and link field over the persons created since the import began (Marketo's own
  time, from its Date header: create, enqueue, a status poll or two, the file: about 5 calls for any size), then a
  REST lookup for the rows the exports did not hold (a repeat of an import updates persons created earlier).
A row found neither way is not linked: its record gets an error and the next sync tries again.

Marketo runs two imports at once, so one import's createdAt window also holds the rows of the one beside it. The
imports of one run share an `ImportedIds`: its exports cover consecutive windows, each starting where the ones
before it ended, and each export's rows serve every import still waiting for its ids. Marketo exports each person
once (its export quota is counted in bytes) and an export's run time follows its rows, not the imports' overlap.
An import whose span the exports before it cover whole needs no export; when it is the only import still making
rows (a run's last), its own progress (the import spans: imported_rows_in_window) says how many rows the rest of
its span holds: when they pay for an export, it goes at once, beside the exports before; else it waits for those
and exports the rest only if the rows they left pay for an export after all (often its tail is a few rows, or
none), else looks them up.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sync.connectors.marketo import MarketoClient

log = logging.getLogger(__name__)
LOOKUP_BATCH = 300
EXPORT_CALLS = 5  # create, enqueue, status polls, the file
SKEW = timedelta(seconds=1)  # HTTP dates and createdAt have whole seconds (both cut down): a second of margin


def export_pays(rows: int) -> bool:
    return math.ceil(rows / LOOKUP_BATCH) > EXPORT_CALLS


@dataclass
class _Window:
    """One export's createdAt window [start, end); `read` is set once its rows were read, or it failed (then the
    rows it would have held are not in `_seen`, and their imports look them up)."""

    start: datetime
    end: datetime
    read: threading.Event = field(default_factory=threading.Event)


def uncovered_start(start: datetime, end: datetime, windows: Iterable[tuple[datetime, datetime]]) -> datetime:
    """Where [start, end) stops being covered by the union of `windows` (each [start, end)): start itself when
    none covers it; end (or past it) when they cover all of it."""
    reach = start
    for window_start, window_end in sorted(windows):
        if window_start > reach:
            break
        reach = max(reach, window_end)
    return reach


class ImportedIds:
    """The ids of the persons the imports of one run created; `expect` a unit's rows before its import is sent,
    then `resolve` them once it has ended. Thread-safe: the units end on the pipeline's finisher threads."""

    def __init__(self, marketo: MarketoClient, link_field: str) -> None:
        self.marketo = marketo
        self.link_field = link_field
        self._lock = threading.Lock()
        self._expected: set[str] = set()  # lower-cased Dynamics ids of imports not yet resolved
        self._ended: set[str] = set()  # ... of those whose import has ended (being resolved): they add no rows
        self._seen: dict[str, str] = {}  # ... those an export already held: Dynamics id -> Marketo id
        self._windows: list[_Window] = []

    def expect(self, dynamics_ids: Iterable[str]) -> None:
        with self._lock:
            self._expected.update(d.lower() for d in dynamics_ids)

    def forget(self, dynamics_ids: Iterable[str]) -> None:
        """An import that will not be resolved (it failed): its rows stop being collected."""
        keys = {d.lower() for d in dynamics_ids}
        with self._lock:
            self._expected -= keys
            self._ended -= keys
            for key in keys:
                self._seen.pop(key, None)

    def resolve(self, dynamics_ids: Sequence[str], since: datetime | None) -> dict[str, str]:
        """lower-cased Dynamics id -> Marketo person id, for the imported rows found. `since`: Marketo's time
        when the import was created."""
        wanted = {d.lower() for d in dynamics_ids}
        with self._lock:
            self._ended |= wanted & self._expected
        try:
            self._by_export(wanted, since)
        finally:
            with self._lock:
                found = {key: self._seen.pop(key) for key in wanted if key in self._seen}
                self._expected -= wanted
                self._ended -= wanted
        rest = sorted(wanted - set(found))
        if rest:
            for person in self.marketo.get_leads(self.link_field, rest, ["id", self.link_field]):
                key = str(person.values.get(self.link_field) or "").lower()
                found.setdefault(key, str(person.id))
        return found

    def _by_export(self, wanted: set[str], since: datetime | None) -> None:
        """The exports over the import's span have been read: this one's own, and those before it."""
        until = self.marketo.server_time()
        if since is None or until is None or not export_pays(len(wanted)):
            return
        needed_start, end = since - SKEW, until + SKEW
        with self._lock:
            start = uncovered_start(needed_start, end, ((w.start, w.end) for w in self._windows))
            before = [w for w in self._windows if w.start < start and w.end > needed_start]
            window = _Window(start, end) if start < end else None
            if window is not None:
                self._windows.append(window)
        estimate: int | None = None
        if window is not None and before and self._alone(wanted):
            # the only import still making rows is this one, and exports before hold part of it: what they leave
            # decides (the tail of a run's last import is often a few rows, or none, not worth an export). When
            # the import's own progress says its tail pays for an export anyway, it goes now, beside them.
            estimate = self.marketo.imported_rows_in_window(window.start, window.end)
        if window is not None and estimate is not None and not export_pays(estimate):
            for earlier in before:
                earlier.read.wait()
            with self._lock:
                left = len(wanted - self._seen.keys())
            if not export_pays(left) and self._alone(wanted):
                with self._lock:  # not exported: a later import's window covers its span again
                    self._windows.remove(window)
                window.read.set()  # the rows left are looked up by their link field
                log.debug("imported ids: %s rows left after the exports before, looked up", left)
                return
        if window is not None:
            self._export(window, len(wanted), estimate)
        for earlier in before:  # the part of this import's span that exports before this one hold
            earlier.read.wait()

    def _alone(self, wanted: set[str]) -> bool:
        """Whether no import but this one may still be making rows (every other one expected has ended), so that
        a window from now back to the exports before holds rows of this import only."""
        with self._lock:
            return not (self._expected - self._ended - wanted)

    def _export(self, window: _Window, rows: int, estimate: int | None = None) -> None:
        """`estimate`: the rows our imports made in its window, if already asked (imported_rows_in_window)."""
        try:
            marketo = self.marketo
            export = marketo.queue_lead_export(["id", self.link_field], window.start, window.end, "createdAt")
            # its size (the polls go by it): the rows our imports made in its window, as their spans say
            if estimate is None:
                estimate = marketo.imported_rows_in_window(window.start, window.end)
            marketo.wait_lead_export(export, rows=estimate or rows)
            with self._lock:
                expected = frozenset(self._expected)  # now: any import whose rows it holds was expected before
            held: dict[str, str] = {}
            for row, _offset in marketo.lead_export_rows(export):
                key = str(row.get(self.link_field) or "").lower()
                if key in expected and key not in held:
                    held[key] = str(row["id"])
            with self._lock:
                for key, person in held.items():
                    if key in self._expected:
                        self._seen.setdefault(key, person)
            log.debug("imported ids: %s rows of our imports by one export", len(held))
        finally:
            window.read.set()
