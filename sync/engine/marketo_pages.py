"""How the to_dynamics phase of a full sync reads Marketo: pages of persons, by REST over a proven id range or by
Bulk Extract windows, from a cursor a later queue message resumes.

Bulk Extract: windows of at most 31 days on createdAt. Marketo runs 2 exports at once and queues 10, and each costs
seconds of queue and start whatever its size, so the exports of the next EXPORTS_AHEAD windows are queued while a
window is read, and the first window's export goes out with them, before anything waits: Marketo runs two at a
time from the start, and the reader seldom waits. (They hold up to 7 of Marketo's 10 queue places meanwhile: an
export of another integration waits behind them.) A page stops after ROWS_PER_MESSAGE rows; within one message the
file stays open from page to page (one file request a window), read ahead on a thread of its own while the rows
before are planned and written, and the cursor keeps the byte to resume at in the next message. While a window is
read, the next one's export is waited for and its file opened on another thread, so a page that starts a window
does not wait for a status poll and a download: only while the message's run `goes_on` (its time not spent), as a
file opened for a message that then ends is requested again by the next.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TypedDict

from sync.connectors.marketo import BulkJobFailedError
from sync.connectors.marketo.models import BulkJobStatus, MarketoPerson
from sync.engine.context import SyncContext
from sync.engine.person_ids import IDS_PER_CALL, OldestPersons, rest_id_range
from sync.engine.read_ahead import ReadAhead

log = logging.getLogger(__name__)
EXTRACT_WINDOW = timedelta(days=31)
ROWS_PER_MESSAGE = 5000
IDS_PER_MESSAGE = 16 * IDS_PER_CALL
EXPORTS_AHEAD = 6  # windows whose exports are queued while one is read: 2 run at once, the rest wait their turn
# (6 + the one being read: 7 of Marketo's 10 queue places; a full queue is waited out, see BulkExporter._enqueue)


class MarketoReadCursor(TypedDict, total=False):
    """The to_dynamics phase's cursor (JSON in Task.cursor): a REST id range, or Bulk Extract windows and where in
    the current window's file the last message stopped."""

    window: str  # ISO start of the export window being read
    until: str  # ISO end of the whole read
    low: int  # the lowest person id, until the first message chose REST or Bulk Extract with it
    ids: list[int]  # [next id, last id], read by REST
    export: str  # the current window's export
    byte: int  # where its next message resumes reading the file
    header: list[str] | None
    ahead: list[str]  # the exports queued for the next windows, in order
    next_export: str | None  # the same for one window, as cursors written before `ahead` hold it


Rows = Iterator[tuple[dict[str, str], int]]


class MarketoPages:
    """The pages of one message's run. `close()` ends the export file it may hold open."""

    def __init__(
        self, ctx: SyncContext, entity_name: str, fields: list[str], goes_on: Callable[[], bool] | None = None
    ) -> None:
        self.ctx = ctx
        self.goes_on = goes_on  # whether the run reads on (then the next window is made ready); None: never
        self.entity_name = entity_name
        self.fields = ["id", *fields]
        self._open: tuple[str, int, Rows] | None = None  # export id, the byte its rows have reached, the rows
        # the next window's export, made ready on a thread, and its "dropped" flag (set: it opens no file)
        self._next: tuple[str, Future[tuple[BulkJobStatus, Rows | None]], threading.Event] | None = None

    def close(self) -> None:
        self._close_open()
        self._drop_next()

    def _close_open(self) -> None:
        if self._open is not None:
            rows = self._open[2]
            self._open = None
            _close(rows)

    def _prepare(self, export_id: str) -> None:
        """Wait for the next window's export and open its file, on a thread, while this window is read."""
        if self._next is not None and self._next[0] == export_id:
            return
        self._drop_next()
        marketo = self.ctx.marketo
        dropped = threading.Event()

        def ready() -> tuple[BulkJobStatus, Rows | None]:
            status = marketo.wait_lead_export(export_id)
            if dropped.is_set():  # nobody will read it: no file request
                return status, None
            return status, ReadAhead(marketo.lead_export_rows(export_id, 0, None), ROWS_PER_MESSAGE, "export-file")

        pool = ThreadPoolExecutor(1, thread_name_prefix="next-window")
        self._next = (export_id, pool.submit(ready), dropped)
        pool.shutdown(wait=False)  # its one task runs on; nothing else is given to it

    def _drop_next(self) -> None:
        """Forget the window made ready: its file is closed once its thread is done (not waited for here)."""
        if self._next is not None:
            _, ready, dropped = self._next
            dropped.set()
            ready.add_done_callback(_close_ready_file)
            self._next = None

    def _take_next(self, export_id: str) -> BulkJobStatus | None:
        """The export made ready, if it is this one: its status (its failure raised), and its file open at byte 0
        for _rows."""
        if self._next is None or self._next[0] != export_id:
            return None
        ready, self._next = self._next[1], None
        status, rows = ready.result()
        if rows is not None:
            self._close_open()
            self._open = (export_id, 0, rows)
        return status

    def next(self, cursor: str | None) -> tuple[list[MarketoPerson], str, bool, int | None]:
        """The next persons after `cursor`: IDS_PER_MESSAGE ids by REST, or up to ROWS_PER_MESSAGE rows of a Bulk
        Extract. The phase's first page chooses which: REST when the id range is narrow and provable (person_ids).
        Returns the persons, the cursor after them, whether the phase is read to its end, and the records expected."""
        state: MarketoReadCursor = json.loads(cursor or "{}")
        expected = None
        if "low" in state:
            oldest = OldestPersons(datetime.fromisoformat(state["window"]), state.pop("low"))
            ids = rest_id_range(self.ctx.marketo, oldest, self.ctx.clock(), self.ctx.bulk_extract_threshold)
            if ids is not None:
                state = {"ids": [ids.start, ids.stop - 1], "until": state["until"]}
                expected = len(ids)
            how = f"by REST, ids {ids}" if ids else "by export"
            log.info("full sync %s: Marketo persons read %s", self.entity_name, how)
        if "ids" in state:
            persons, state, finished = self._read_ids(state)
        else:
            persons, state, finished, read_expected = self._read_extract(state)
            expected = expected if read_expected is None else (expected or 0) + read_expected
        return persons, json.dumps(state), finished, expected

    def _read_ids(self, state: MarketoReadCursor) -> tuple[list[MarketoPerson], MarketoReadCursor, bool]:
        """The next IDS_PER_MESSAGE ids of the range, 300 per call; deleted ids simply come back empty."""
        first, last = state["ids"]
        end = min(first + IDS_PER_MESSAGE - 1, last)
        persons = self.ctx.marketo.get_leads("id", list(range(first, end + 1)), self.fields) if first <= last else []
        state = {**state, "ids": [end + 1, last]}
        return persons, state, end >= last

    def _read_extract(
        self, state: MarketoReadCursor
    ) -> tuple[list[MarketoPerson], MarketoReadCursor, bool, int | None]:
        """Up to ROWS_PER_MESSAGE persons of the Bulk Extract: a window's export is waited for on its first page,
        the next windows' queued; later pages read on in its file (a later message from the byte it stopped)."""
        window = datetime.fromisoformat(state["window"])
        until = datetime.fromisoformat(state["until"])
        if window >= until:
            return [], state, True, None
        window_end = min(window + EXTRACT_WINDOW, until)
        expected = None
        ahead = list(state.pop("ahead", []))
        if not ahead and state.get("next_export"):
            ahead = [str(state["next_export"])]
        state.pop("next_export", None)
        if not state.get("export"):
            if not ahead:  # this window's export and the next ones' go out together, before waiting for any
                ahead = self._queue_ahead(window, until, [], EXPORTS_AHEAD + 1)
            status = self._window_export(window, window_end, ahead.pop(0) if ahead else None)
            state.update({"export": status.job_id, "byte": 0, "header": None})
            expected = status.number_of_records
        ahead = self._queue_ahead(window_end, until, ahead, EXPORTS_AHEAD)
        if ahead and self.goes_on is not None and self.goes_on():
            self._prepare(ahead[0])
        persons: list[MarketoPerson] = []
        end_byte: int | None = state["byte"]
        header = state.get("header")
        for row, offset in self._rows(state["export"], state["byte"], header):
            end_byte = offset
            header = header or list(row)
            values = {k: (None if v in ("", "null") else v) for k, v in row.items()}  # exports write blanks as null
            persons.append(MarketoPerson(id=int(row["id"]), values=values))
            if len(persons) >= ROWS_PER_MESSAGE:
                break
        else:  # the window is read to its end: the next page starts the next window
            self._close_open()
            state = {"window": window_end.isoformat(), "until": state["until"]}
            end_byte = None
        if end_byte is not None:
            state.update({"byte": end_byte, "header": header})
            if self._open is not None:
                self._open = (self._open[0], end_byte, self._open[2])
        if ahead:
            state["ahead"] = ahead
        finished = "export" not in state and datetime.fromisoformat(state["window"]) >= until
        return persons, state, finished, expected

    def _rows(self, export_id: str, byte: int, header: list[str] | None) -> Rows:
        """The file's rows from `byte`: the ones this run already has open there, else a new file request."""
        if self._open is not None and self._open[:2] == (export_id, byte):
            return self._open[2]
        self._close_open()
        # read ahead: the file downloads while the page before its next rows is planned and written
        rows = ReadAhead(self.ctx.marketo.lead_export_rows(export_id, byte, header), ROWS_PER_MESSAGE, "export-file")
        self._open = (export_id, byte, rows)
        return rows

    def _queue_ahead(self, first: datetime, until: datetime, ahead: list[str], size: int) -> list[str]:
        """The exports of the windows from `first` on (`ahead` holds the first ones'), topped up to `size` (the
        windows are fixed: each starts where the one before ends)."""
        start = first + EXTRACT_WINDOW * len(ahead)
        while len(ahead) < size and start < until:
            end = min(start + EXTRACT_WINDOW, until)
            ahead.append(self.ctx.marketo.queue_lead_export(self.fields, start, end, "createdAt"))
            start = end
        return ahead

    def _window_export(self, start: datetime, end: datetime, queued: str | None) -> BulkJobStatus:
        """The finished export of a window: the one queued ahead for it, or, if none was or it failed, a new one."""
        if queued:
            try:
                return self._take_next(queued) or self.ctx.marketo.wait_lead_export(queued)
            except BulkJobFailedError as exc:
                log.warning("the export queued ahead for %s failed (%s); exporting the window again", start, exc)
        return self.ctx.marketo.start_lead_export(self.fields, start, end, "createdAt")


def _close(rows: object) -> None:
    close = getattr(rows, "close", None)
    if close is not None:
        close()


def _close_ready_file(ready: Future[tuple[BulkJobStatus, Rows | None]]) -> None:
    if not ready.cancelled() and ready.exception() is None:
        _close(ready.result()[1])
