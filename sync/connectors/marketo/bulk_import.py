"""Bulk import of persons: CSV chunks of <= 10 MB, at most 2 jobs at once, polled with backoff until done; every
rejected or warned row is read back from failures.json / warnings.json and mapped to its input row.

A job that ends Failed (possibly halfway) is reported with its row range and how many rows it processed; the rest of
the import goes on. A systemic error (budget, quota, auth) stops the import: it is raised with `partial_result` set
to what was known so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from sync.connectors.marketo.bulk_csv import MAX_FILE_BYTES, CsvChunk, CsvChunker, issues_from_csv
from sync.connectors.marketo.envelope import first_result
from sync.connectors.marketo.errors import CODE_PROTOCOL, BulkJobFailedError, MarketoError, SystemicError
from sync.connectors.marketo.models import BulkImportResult, BulkJobFailure, BulkJobStatus, Reason
from sync.connectors.marketo.run_times import ImportSpans, RunTimes
from sync.connectors.marketo.transport import Transport

CODE_IMPORT_FAILURE = "import.failure"  # a row in failures.json (Marketo gives a reason text, no code)
CODE_IMPORT_WARNING = "import.warning"
MAX_RUNNING_JOBS = 2
RUN_SHARE = 0.9  # of the expected run, that a job still queued will take at least
POLL_MARGIN = 0.5  # seconds past a job's expected end (answers take a while): the answer then is "done"
UPLOAD_TIMEOUT = 300.0


@dataclass(frozen=True)
class PollPolicy:
    initial: float = 1.0  # first wait between status polls; grows by `factor` up to `maximum`
    factor: float = 1.5  # gentle growth: a job is noticed soon after it ends, at a few calls more
    maximum: float = 30.0
    # A wait set by a job's expected end (its size and the runs seen), not by backing off, may be longer: a real
    # job of minutes is then polled a few times, not every 30 s. Capped, so a wrong guess costs at most this.
    expected_maximum: float = 300.0
    timeout: float = 6 * 3600.0  # give up on a job after this long (it is reported, not dropped)
    queue_retries: int = 10  # tries to submit/enqueue while Marketo says its queue is full (1016 / 1029)
    first_wait: float = 2.0  # a job's expected wait in Marketo's queue, before its run: its first poll comes after


def import_status(item: dict[str, Any]) -> BulkJobStatus:
    return BulkJobStatus(
        job_id=str(item.get("batchId") or item.get("importId")),
        status=str(item.get("status", "")),
        rows_processed=item.get("numOfLeadsProcessed"),
        rows_failed=item.get("numOfRowsFailed"),
        rows_with_warning=item.get("numOfRowsWithWarning"),
        message=item.get("message"),
    )


@dataclass
class PendingImport:
    """An import started by `BulkImporter.submit`: its files, those running, and what is known so far."""

    fields: list[str]
    params: dict[str, Any]
    chunker: CsvChunker
    chunks: Iterator[CsvChunk]
    running: list[tuple[CsvChunk, BulkJobStatus, float]] = field(default_factory=list)
    result: BulkImportResult = field(default_factory=BulkImportResult)
    submitting: CsvChunk | None = None
    exhausted: bool = False
    created_at: datetime | None = None  # Marketo's time when its first job was created: no row is older


class BulkImporter:
    def __init__(
        self,
        transport: Transport,
        poll: PollPolicy | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._t = transport
        self.poll = poll or PollPolicy()
        self.max_file_bytes = max_file_bytes
        self._sleep = sleep
        self._clock = clock
        self.runs = RunTimes()  # how long imports run, learned from their progress: when to poll (run_times.py)
        self._progress: dict[str, tuple[float, int]] = {}  # a running job's last poll: when, rows processed
        self.spans = ImportSpans(self.runs)  # when our jobs ran, by Marketo's clock: what a createdAt window holds

    def run(
        self,
        rows: Iterable[dict[str, Any]],
        fields: Sequence[str],
        lookup_field: str = "email",
        partition_name: str | None = None,
        list_id: int | None = None,
    ) -> BulkImportResult:
        return self.wait(self.submit(rows, fields, lookup_field, partition_name, list_id))

    def submit(
        self,
        rows: Iterable[dict[str, Any]],
        fields: Sequence[str],
        lookup_field: str = "email",
        partition_name: str | None = None,
        list_id: int | None = None,
    ) -> PendingImport:
        """Start an import without waiting for it: its first files are submitted (at most MAX_RUNNING_JOBS), the
        rest go in as earlier ones end, in `wait`. Several pending imports may run at once: Marketo queues up to
        10 jobs, and a full queue (1016) only delays a file."""
        chunker = CsvChunker(fields, self.max_file_bytes)
        params = {"format": "csv", "lookupField": lookup_field, "partitionName": partition_name, "listId": list_id}
        pending = PendingImport(list(fields), params, chunker, chunker.chunks(rows))
        try:
            self._fill(pending)
        except SystemicError as exc:
            self._stopped(pending, exc)
            raise
        return pending

    def wait(self, pending: PendingImport) -> BulkImportResult:
        """Run a pending import to its end: every file submitted and finished, failures read back."""
        try:
            while True:
                self._fill(pending)
                if not pending.running:
                    if pending.exhausted:
                        break
                    continue
                self._poll_until_one_finishes(pending.running, pending.fields, pending.result)
        except SystemicError as exc:
            self._stopped(pending, exc)
            raise
        finally:
            result = pending.result
            result.failures.extend(pending.chunker.rejected)
            result.rows_failed += len(pending.chunker.rejected)
            pending.chunker.rejected.clear()
            result.failures.sort(key=lambda issue: (issue.index is None, issue.index or 0))
        return pending.result

    def _fill(self, pending: PendingImport) -> None:
        """Submit the import's next files while fewer than MAX_RUNNING_JOBS of them run."""
        while not pending.exhausted and len(pending.running) < MAX_RUNNING_JOBS:
            pending.submitting = next(pending.chunks, None)
            if pending.submitting is None:
                pending.exhausted = True
                return
            try:
                created = self._submit(pending.submitting, pending.params, pending.result, busy=bool(pending.running))
            except _QueueFull:
                # Marketo's queue is full (1016): finish one of ours first, then submit this chunk again.
                pending.chunks = _prepend(pending.submitting, pending.chunks)
                pending.submitting = None
                return
            pending.result.rows_submitted += pending.submitting.row_count
            if created is not None:
                job, created_at = created
                pending.created_at = pending.created_at or created_at
                pending.running.append((pending.submitting, job, self._clock()))
            pending.submitting = None

    @staticmethod
    def _stopped(pending: PendingImport, exc: SystemicError) -> None:
        """Stopped: the jobs still running and the chunk being submitted have an unknown outcome. Rows after them
        were never read from the rows; the caller resumes after the last reported index."""
        unknown: list[tuple[CsvChunk, str | None]] = [(chunk, job.job_id) for chunk, job, _ in pending.running]
        if pending.submitting is not None:
            unknown.append((pending.submitting, None))
        for chunk, job_id in unknown:
            pending.result.failed_jobs.append(_unknown(chunk, job_id, exc))
        pending.running.clear()
        pending.submitting = None
        exc.partial_result = pending.result

    def _submit(
        self, chunk: CsvChunk, params: dict[str, Any], result: BulkImportResult, busy: bool
    ) -> tuple[BulkJobStatus, datetime | None] | None:
        """Create the import job for one chunk: the job and Marketo's time at its creation (the transport's last
        Date, read once, right after the answer: later calls on other threads move it); None when it was refused
        (recorded in `result.failed_jobs`).

        Raises _QueueFull when Marketo's import queue is full (1016) while jobs of ours are still running.
        """
        delay = self.poll.initial
        for attempt in range(1, self.poll.queue_retries + 1):
            try:
                envelope = self._t.call(
                    "bulk_import_create",
                    "POST",
                    "/bulk/v1/leads.json",
                    params=params,
                    files={"file": ("persons.csv", chunk.data, "text/csv")},
                    timeout=UPLOAD_TIMEOUT,
                )
                job = import_status(first_result(envelope, "bulk import create"))
                created_at = self._t.server_time
                self.spans.created(job.job_id, chunk.row_count, created_at.timestamp() if created_at else None)
                return job, created_at
            except BulkJobFailedError as exc:
                if exc.code != "1016" or attempt == self.poll.queue_retries:
                    result.failed_jobs.append(_unknown(chunk, None, exc))
                    return None
                if busy:
                    raise _QueueFull from None
                self._sleep(delay)
                delay = min(delay * self.poll.factor, self.poll.maximum)
            except MarketoError as exc:
                if isinstance(exc, SystemicError):
                    raise
                # The file itself was refused (e.g. 413, malformed): every row of this chunk is unimported.
                result.failed_jobs.append(_unknown(chunk, None, exc))
                return None
        return None

    def _poll_until_one_finishes(
        self, running: list[tuple[CsvChunk, BulkJobStatus, float]], fields: list[str], result: BulkImportResult
    ) -> None:
        """Poll until at least one job ends; ended jobs leave `running` as soon as they are collected. The first
        poll of a job waits for its expected end (a queue wait and the run `runs` expects for its rows); then each
        poll's answer sets the next: a job still queued cannot end sooner than most of a run, a running one ends
        when its progress says (rows processed since its last poll, or the pace of the runs before). Before any run
        was seen, the polls back off."""
        first = self._expected_wait(running)
        if first > 0:
            self._sleep(first)
        delay = self.poll.initial
        while True:
            ended = False
            pauses: list[float] = []
            for entry in list(running):
                chunk, job, started = entry
                asked = self._clock()
                status = self.status(job.job_id)
                seen = (asked + self._clock()) / 2  # Marketo counted the rows processed somewhere in between
                processed = status.rows_processed or 0
                self.spans.polled(
                    job.job_id, self._marketo_now(), status.status == "Importing", status.finished, processed
                )
                if status.finished:
                    running.remove(entry)
                    self._progress.pop(job.job_id, None)
                    self._collect(chunk, status, fields, result)
                    ended = True
                elif self._clock() - started > self.poll.timeout:
                    running.remove(entry)
                    self._progress.pop(job.job_id, None)
                    reason = Reason(
                        code=CODE_PROTOCOL, message=f"job still {status.status} after {self.poll.timeout} s"
                    )
                    result.jobs.append(status)
                    result.failed_jobs.append(_failure(chunk, status, reason))
                    ended = True
                else:
                    pauses.append(self._pause(chunk.row_count, status, delay, seen))
            if ended:
                return
            self._sleep(min(min(pauses, default=delay), self.poll.expected_maximum))  # a backoff is <= maximum
            delay = min(delay * self.poll.factor, self.poll.maximum)

    def _expected_wait(self, running: list[tuple[CsvChunk, BulkJobStatus, float]]) -> float:
        if not running:
            return 0.0
        now = self._clock()
        ends = []
        for chunk, _, started in running:
            run = self.runs.run(chunk.row_count)
            ends.append(started + self.poll.first_wait + (run + POLL_MARGIN if run is not None else 0.0))
        return min(max(0.0, min(ends) - now), self.poll.expected_maximum)

    def _pause(self, rows: int, status: BulkJobStatus, delay: float, seen: float) -> float:
        """How long to wait before polling a job that has not ended (see _poll_until_one_finishes); `seen`: when
        the answer was given."""
        done = status.rows_processed or 0
        run = self.runs.run(rows)
        if status.status != "Importing" or done <= 0 or rows <= 0:
            return max(delay, RUN_SHARE * run) if run is not None and status.status == "Queued" else delay
        before = self._progress.get(status.job_id)
        self._progress[status.job_id] = (seen, done)
        since = self._clock() - seen  # the answer's own way back
        if before is not None and 0 < before[1] < done and seen > before[0]:
            rate = (done - before[1]) / (seen - before[0])  # rows a second, between two polls of this job
            self.runs.learn(rows, rows / rate)
            return max(0.0, (rows - done) / rate - since) + POLL_MARGIN
        if run is not None:
            return max(0.0, run * (rows - done) / rows - since) + POLL_MARGIN
        return delay

    def _marketo_now(self) -> float | None:
        seen = self._t.server_time
        return seen.timestamp() if seen is not None else None

    def status(self, job_id: str) -> BulkJobStatus:
        envelope = self._t.get("bulk_import_status", f"/bulk/v1/leads/batch/{job_id}.json")
        return import_status(first_result(envelope, f"bulk import {job_id} status"))

    def _collect(self, chunk: CsvChunk, status: BulkJobStatus, fields: list[str], result: BulkImportResult) -> None:
        result.jobs.append(status)
        result.rows_processed += status.rows_processed or 0
        result.rows_with_warning += status.rows_with_warning or 0
        if status.rows_failed or not status.succeeded:
            failures = issues_from_csv(self._file(status.job_id, "failures"), chunk, fields, CODE_IMPORT_FAILURE)
            result.failures.extend(failures)
            result.rows_failed += max(status.rows_failed or 0, len(failures))
        if status.rows_with_warning:
            warnings = issues_from_csv(self._file(status.job_id, "warnings"), chunk, fields, CODE_IMPORT_WARNING)
            result.warnings.extend(warnings)
        if not status.succeeded:
            message = status.message or f"import job ended {status.status}"
            result.failed_jobs.append(_failure(chunk, status, Reason(code=status.status.lower(), message=message)))

    def _file(self, job_id: str, kind: str) -> str:
        try:
            answer = self._t.call(f"bulk_import_{kind}", "GET", f"/bulk/v1/leads/batch/{job_id}/{kind}.json", raw=True)
        except MarketoError as exc:
            if isinstance(exc, SystemicError):
                raise
            return ""
        if isinstance(answer, requests.Response):
            answer.encoding = answer.encoding or "utf-8"
            return answer.text
        return ""


class _QueueFull(Exception):
    pass


def _failure(chunk: CsvChunk, status: BulkJobStatus, reason: Reason) -> BulkJobFailure:
    return BulkJobFailure(
        job_id=status.job_id,
        first_index=chunk.first_index,
        row_count=chunk.row_count,
        rows_processed=status.rows_processed,
        reason=reason,
    )


def _unknown(chunk: CsvChunk, job_id: str | None, exc: MarketoError) -> BulkJobFailure:
    return BulkJobFailure(
        job_id=job_id or None,
        first_index=chunk.first_index,
        row_count=chunk.row_count,
        reason=Reason(code=exc.code, message=exc.message),
    )


def _prepend(chunk: CsvChunk, rest: Iterator[CsvChunk]) -> Iterator[CsvChunk]:
    yield chunk
    yield from rest
