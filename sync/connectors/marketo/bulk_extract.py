"""Bulk extract of persons and activities: windows of <= 31 days, each one job: create, enqueue (waiting while Marketo
says 1029 "too many jobs in queue"), poll with backoff, then stream the CSV file row by row.

The file is streamed, never held whole in memory; a dropped connection resumes with `Range: bytes=<offset>-`.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests

from sync.connectors.marketo.activities import marketo_datetime
from sync.connectors.marketo.bulk_import import PollPolicy
from sync.connectors.marketo.envelope import first_result
from sync.connectors.marketo.errors import (
    CODE_PROTOCOL,
    BulkJobFailedError,
    ExportQuotaExceededError,
    MarketoError,
    TransientError,
)
from sync.connectors.marketo.models import BulkJobStatus
from sync.connectors.marketo.run_times import EXPORT_ONE_SIZE_START, RunTimes
from sync.connectors.marketo.transport import Transport

MAX_WINDOW = timedelta(days=31)
STREAM_CHUNK = 256 * 1024
RESUME_ATTEMPTS = 5


def date_windows(start: datetime, end: datetime, max_window: timedelta = MAX_WINDOW) -> list[tuple[datetime, datetime]]:
    """[start, end] cut into back-to-back windows no longer than `max_window` (Marketo's filters take <= 31 days).

    Marketo's dates have whole seconds and both ends are inclusive, so a window ends 1 s before the next begins.
    """
    if end < start:
        raise ValueError(f"export window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    windows = []
    cursor = start
    while True:
        window_end = min(end, cursor + max_window - timedelta(seconds=1))
        windows.append((cursor, window_end))
        if window_end >= end:
            return windows
        cursor = window_end + timedelta(seconds=1)


def _marketo_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def export_status(item: dict[str, Any]) -> BulkJobStatus:
    return BulkJobStatus(
        job_id=str(item.get("exportId")),
        status=str(item.get("status", "")),
        number_of_records=item.get("numberOfRecords"),
        file_size=item.get("fileSize"),
        message=item.get("errorMsg") or item.get("message"),
        started_at=_marketo_time(item.get("startedAt")),
        finished_at=_marketo_time(item.get("finishedAt")),
    )


class _ByteStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte chunks (for TextIOWrapper -> csv)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _blend(known: float | None, seen: float) -> float:
    """A learned figure: half the one before, half the one just seen (the first seen stands alone)."""
    return seen if known is None else 0.5 * known + 0.5 * seen


RUN_SHARE = 0.8  # of the runs seen: jobs differ in size, and a poll a bit early beats one late
SIZED_SHARE = 1.0  # of the run expected for a job's rows, which is known: a poll early is a call spent
END_MARGIN = 0.5  # seconds past an expected end (Marketo's times are whole seconds): the answer is "done"
LATE_SHARE = 0.25  # of the expected run, between polls of a job past its expected end
RUNNING = 2  # export jobs Marketo runs at once, the rest queued in order ("Bulk Extract": 2 running, 10 queued)
KEEP_QUEUED = 64  # of our jobs, the latest remembered in queue order (with their ends, once seen)


class BulkExporter:
    def __init__(
        self,
        transport: Transport,
        poll: PollPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._t = transport
        self.poll = poll or PollPolicy()
        self._sleep = sleep
        self._clock = clock
        self.jobs: list[BulkJobStatus] = []  # every job run, finished state (for run history and benchmarks)
        self._queued_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._queue_order: dict[str, datetime | None] = {}  # our jobs as queued, oldest first -> end, once seen
        self.seconds_per_job: float | None = None  # learned from the jobs seen end: when to poll a new one first
        self.run_seconds: float | None = None  # how long a job runs once started (Marketo's startedAt, finishedAt)
        # the same, by rows (numberOfRecords): for a job whose size the caller expects
        self.runs = RunTimes(one_size_start=EXPORT_ONE_SIZE_START)
        self._hint_ratio: float | None = None  # rows the sized jobs held, per row their callers expected

    @property
    def hint_ratio(self) -> float:
        """How much the sized jobs' callers under-counted (a createdAt window also holds others' rows); 1 at first."""
        return 1.0 if self._hint_ratio is None else self._hint_ratio

    def export(
        self,
        kind: str,
        start: datetime,
        end: datetime,
        *,
        fields: Sequence[str] = (),
        date_field: str = "updatedAt",
        activity_type_ids: Sequence[int] = (),
    ) -> Iterator[dict[str, str]]:
        """Rows of every window in turn. kind: "leads" or "activities" (activities filter on createdAt only)."""
        if kind not in ("leads", "activities"):
            raise ValueError(f"bulk export kind must be 'leads' or 'activities', not {kind!r}")
        if kind == "leads" and not fields:
            raise ValueError("a leads export needs the field names to export")
        for window_start, window_end in date_windows(start, end):
            job_filter: dict[str, Any] = {
                date_field: {"startAt": marketo_datetime(window_start), "endAt": marketo_datetime(window_end)}
            }
            if activity_type_ids:
                job_filter["activityTypeIds"] = [int(t) for t in activity_type_ids]
            body: dict[str, Any] = {"format": "CSV", "filter": job_filter}
            if fields:
                body["fields"] = list(fields)
            yield from self.run_job(kind, body)

    def run_job(self, kind: str, body: dict[str, Any]) -> Iterator[dict[str, str]]:
        status = self.finished_job(kind, body)
        base = f"/bulk/v1/{kind}/export"
        stream = io.BufferedReader(_ByteStream(self._file(base, status.job_id)))
        yield from csv.DictReader(io.TextIOWrapper(stream, "utf-8", newline=""))

    def finished_job(self, kind: str, body: dict[str, Any]) -> BulkJobStatus:
        """Create and enqueue an export, wait for it to complete; raise BulkJobFailedError if it does not."""
        return self.wait_job(kind, self.queue_job(kind, body))

    def queue_job(self, kind: str, body: dict[str, Any]) -> str:
        """Create and enqueue an export without waiting for it (Marketo runs 2 at once and queues 10); its id."""
        base = f"/bulk/v1/{kind}/export"
        created = self._t.call(f"bulk_export_create_{kind}", "POST", f"{base}/create.json", json=body)
        job = export_status(first_result(created, f"{kind} export create"))
        self._enqueue(base, job.job_id)
        self._queued_at[job.job_id] = self._clock()
        with self._lock:
            self._queue_order[job.job_id] = None
            while len(self._queue_order) > KEEP_QUEUED:
                del self._queue_order[next(iter(self._queue_order))]
        return job.job_id

    def wait_job(self, kind: str, job_id: str, rows: int | None = None) -> BulkJobStatus:
        """Wait for a queued export to complete; raise BulkJobFailedError if it does not. `rows`: how many rows the
        caller expects it to hold, if it knows (the polls then go by the run that many rows take)."""
        status = self._wait(f"/bulk/v1/{kind}/export", job_id, rows)
        self.jobs.append(status)
        if not status.succeeded:
            raise BulkJobFailedError(
                status.status.lower(), status.message or f"export job ended {status.status}", job_id=job_id
            )
        return status

    def rows_from(
        self, kind: str, job_id: str, start_byte: int = 0, header: Sequence[str] | None = None
    ) -> Iterator[tuple[dict[str, str], int]]:
        """The rows of a finished export with, after each, the byte offset just past it: a reader can stop after any
        row and resume later from that offset (the file is kept 7 days). From offset 0 the header is read from the
        file; from any other offset the caller passes the header it read then."""
        if start_byte and header is None:
            raise ValueError("resuming an export file needs its header")
        position = start_byte
        columns: list[str] | None = list(header) if header else None

        def lines() -> Iterator[str]:
            nonlocal position
            pending = b""
            for chunk in self._file(f"/bulk/v1/{kind}/export", job_id, start_byte):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    position += len(line) + 1
                    yield line.decode("utf-8") + "\n"
            if pending:
                position += len(pending)
                yield pending.decode("utf-8")

        for record in csv.reader(lines()):
            if columns is None:
                columns = record
                continue
            if record:
                yield dict(zip(columns, record, strict=False)), position

    def _enqueue(self, base: str, job_id: str) -> None:
        delay = self.poll.initial
        for attempt in range(1, self.poll.queue_retries + 1):
            try:
                self._t.call("bulk_export_enqueue", "POST", f"{base}/{job_id}/enqueue.json")
                return
            except ExportQuotaExceededError:
                raise
            except BulkJobFailedError as exc:
                if exc.code != "1029" or attempt == self.poll.queue_retries:
                    raise BulkJobFailedError(exc.code, exc.message, job_id=job_id) from None
                self._sleep(delay)
                delay = min(delay * self.poll.factor, self.poll.maximum)

    def _wait(self, base: str, job_id: str, rows: int | None = None) -> BulkJobStatus:
        """Poll a job until it ends: first when a job of its size should (from its enqueue), or once the job that
        frees its slot has ended and a run has passed, or when jobs before it took to end; then as its status says
        (_pause)."""
        delay = self.poll.initial
        started = self._clock()
        queued_at = self._queued_at.pop(job_id, None)
        sized = self.runs.run(int(rows * self.hint_ratio)) if rows else None
        if queued_at is not None:
            behind = self._behind_slot(job_id, sized)
            if behind is not None:  # nor can it end before its own wait in the queue and a run
                run = sized if sized is not None else self.run_seconds or 0.0
                behind = max(behind, queued_at + self.poll.first_wait + run + END_MARGIN - started)
            if sized is not None:
                ahead = queued_at + self.poll.first_wait + SIZED_SHARE * sized + END_MARGIN - started
                ahead = max(ahead, behind) if behind is not None else ahead  # both are its earliest end
            elif behind is not None:
                ahead = behind
            else:  # a poll a bit early beats one late
                ahead = queued_at + (0.9 * self.seconds_per_job if self.seconds_per_job else self.poll.first_wait)
                ahead -= started
            if ahead > 0:
                self._sleep(min(ahead, self.poll.expected_maximum))
        while True:
            status = export_status(
                first_result(self._t.get("bulk_export_status", f"{base}/{job_id}/status.json"), "status")
            )
            if status.finished:
                with self._lock:
                    if job_id in self._queue_order:
                        self._queue_order[job_id] = status.finished_at
                if queued_at is not None:
                    took = self._clock() - queued_at
                    self.seconds_per_job = _blend(self.seconds_per_job, took)
                self._learn_run(status)
                if rows and status.number_of_records is not None:
                    self._hint_ratio = _blend(self._hint_ratio, max(1.0, status.number_of_records / rows))
                return status
            if self._clock() - started > self.poll.timeout:
                self._t.call("bulk_export_cancel", "POST", f"{base}/{job_id}/cancel.json")
                message = f"export still {status.status} after {self.poll.timeout} s"
                raise BulkJobFailedError(CODE_PROTOCOL, message, job_id=job_id)
            self._sleep(min(self._pause(status, delay, sized), self.poll.expected_maximum))  # a backoff <= maximum
            delay = min(delay * self.poll.factor, self.poll.maximum)

    def _behind_slot(self, job_id: str, sized: float | None) -> float | None:
        """Seconds from now until a job of ours queued behind others can end, by Marketo's clock: it starts when the
        job RUNNING places ahead of it ends (they run in queue order, RUNNING at a time), then runs. None when that
        job's end has not been seen (or there is none: it started once queued), or no run is known yet. Other
        clients' jobs can only delay it: this is its earliest end."""
        run = sized if sized is not None else self.run_seconds
        now = self._t.server_now()  # from whole seconds (the Date header): END_MARGIN covers the cut
        with self._lock:
            order = list(self._queue_order)
            place = order.index(job_id) if job_id in order else -1
            frees = self._queue_order.get(order[place - RUNNING]) if place >= RUNNING else None
        if frees is None or run is None or now is None:
            return None
        return (frees - now).total_seconds() + run + END_MARGIN

    def _pause(self, status: BulkJobStatus, delay: float, sized: float | None = None) -> float:
        """How long to wait before polling a job again. Once a run has been seen (or one of this job's size, `sized`,
        is expected): a job still queued cannot end sooner than most of a run from now; a running one about a run
        after Marketo started it, and past that a share of a run between polls. Else backing off."""
        run, share = (sized, SIZED_SHARE) if sized is not None else (self.run_seconds, RUN_SHARE)
        if run is None:
            return delay
        if status.started_at is None:
            return max(delay, share * run)
        now = self._t.server_time  # whole seconds (the Date header): half a second either way
        if now is None:
            return delay
        remaining = (status.started_at - now).total_seconds() + share * run
        if remaining > 0:
            return remaining + END_MARGIN
        return max(delay, LATE_SHARE * run) if sized is not None else delay

    def _learn_run(self, status: BulkJobStatus) -> None:
        if status.started_at is None or status.finished_at is None:
            return
        run = max(0.0, (status.finished_at - status.started_at).total_seconds())
        self.run_seconds = _blend(self.run_seconds, run)
        if status.number_of_records:
            self.runs.learn(status.number_of_records, run)

    def _file(self, base: str, job_id: str, start_byte: int = 0) -> Iterator[bytes]:
        """The file's bytes from `start_byte`; on a dropped connection, resume from the last byte received (bounded)."""
        offset = start_byte
        first = start_byte == 0
        for _attempt in range(RESUME_ATTEMPTS):
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                answer = self._t.call(
                    "bulk_export_file", "GET", f"{base}/{job_id}/file.json", raw=True, stream=True, headers=headers
                )
            except MarketoError as exc:
                if offset and "HTTP 416" in exc.message:  # resuming exactly at the end: nothing left to read
                    return
                raise
            if not isinstance(answer, requests.Response):
                return  # a JSON answer with no rows
            skip = offset if offset and answer.status_code != 206 else 0  # Range ignored: drop what we have
            try:
                with answer:
                    for chunk in answer.iter_content(STREAM_CHUNK):
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                        if first:
                            first = False
                            if chunk.strip() == b"null":  # Marketo's empty file
                                return
                        offset += len(chunk)
                        yield chunk
                return
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                continue
        raise TransientError("sync.connection", f"export {job_id}: file download kept failing at byte {offset}")
