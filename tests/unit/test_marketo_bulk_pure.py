from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

import sync.connectors.marketo.bulk_extract as exporter_module
from sync.connectors.marketo.bulk_csv import CsvChunker, issues_from_csv
from sync.connectors.marketo.bulk_extract import BulkExporter, date_windows
from sync.connectors.marketo.bulk_import import BulkImporter, PollPolicy
from sync.connectors.marketo.run_times import RunTimes
from tests.unit.test_marketo_fakes import FakeSession, make_transport, ok


def _rows(chunk_data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(chunk_data.decode())))


def test_chunks_stay_under_the_limit_and_each_carries_the_header() -> None:
    chunker = CsvChunker(["email", "firstName"], max_bytes=200)
    rows = [{"email": f"p{i}@x.com", "firstName": f"Name {i}"} for i in range(40)]
    chunks = list(chunker.chunks(rows))
    assert len(chunks) > 1 and chunker.rejected == []
    for chunk in chunks:
        assert len(chunk.data) <= 200
        assert _rows(chunk.data)[0] == ["email", "firstName"]
    assert [i for c in chunks for i in c.indices] == list(range(40))
    assert chunks[1].first_index == chunks[0].row_count


def test_values_are_quoted_and_typed_for_csv() -> None:
    chunker = CsvChunker(["email", "title", "flag", "when", "empty"])
    row = {"email": "a@x.com", "title": 'CEO, "Boss"\nline2', "flag": True, "when": datetime(2026, 1, 2, tzinfo=UTC)}
    (chunk,) = chunker.chunks([row])
    assert _rows(chunk.data)[1] == ["a@x.com", 'CEO, "Boss"\nline2', "true", "2026-01-02T00:00:00+00:00", ""]


def test_bad_rows_are_rejected_with_a_reason_and_the_rest_goes_on() -> None:
    chunker = CsvChunker(["email"], max_bytes=1000)
    rows: list[Any] = [
        {"email": "a@x.com"},
        {"email": "b@x.com", "nope": 1},
        ["not", "a", "dict"],
        {"email": {"nested": 1}},
        {"email": "z" * 2000},
        {"email": "c@x.com"},
    ]
    chunks = list(chunker.chunks(rows))
    assert [c.indices for c in chunks] == [[0, 5]]
    codes = {issue.index: issue.reason.code for issue in chunker.rejected}
    assert codes == {
        1: "sync.unknown_column",
        2: "sync.not_serializable",
        3: "sync.not_serializable",
        4: "sync.too_large",
    }
    assert "nope" in chunker.rejected[0].reason.message


def test_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        CsvChunker([])
    with pytest.raises(ValueError, match="repeat"):
        CsvChunker(["email", "email"])


def test_failure_rows_map_back_to_input_indices_even_with_duplicates() -> None:
    chunker = CsvChunker(["email", "firstName"])
    rows = [
        {"email": "a@x.com", "firstName": "A"},
        {"email": "bad", "firstName": "B"},
        {"email": "bad", "firstName": "B"},
    ]
    (chunk,) = chunker.chunks(rows)
    text = "email,firstName,Import Failure Reason\nbad,B,Invalid email\nbad,B,1003: Invalid email\nghost,G,Whatever\n"
    issues = issues_from_csv(text, chunk, ["email", "firstName"], "import.failure")
    assert [i.index for i in issues] == [1, 2, None]
    assert issues[0].reason.message == "Invalid email" and issues[0].reason.code == "import.failure"
    assert issues[1].reason.message == "Invalid email" and issues[1].reason.code == "1003"
    assert issues[2].row == {"email": "ghost", "firstName": "G"}


def test_a_complete_chunk_keeps_only_its_bytes_and_finds_rows_with_awkward_cells_again() -> None:
    """A chunk lives until its job ends: it holds its file, not every row's cells, and still maps a failure row
    back to its input row when the cells hold quotes, commas, line breaks, blanks or non-ASCII."""
    fields = ["email", "firstName", "title"]
    awkward = [
        {"email": "q@x.com", "firstName": 'Say "hi"', "title": "a, b"},
        {"email": "n@x.com", "firstName": "two\nlines", "title": None},
        {"email": "u@x.com", "firstName": "Zoë", "title": ""},
    ]
    (chunk,) = CsvChunker(fields).chunks([{"email": "ok@x.com"}, *awkward])
    assert chunk.parts == [] and chunk.sealed == chunk.data
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*fields, "Import Failure Reason"])
    for row in reversed(awkward):
        writer.writerow([row["email"], row["firstName"], row["title"] or "", "1003 refused"])
    issues = issues_from_csv(out.getvalue(), chunk, fields, "import.failure")
    assert [i.index for i in issues] == [3, 2, 1]


@pytest.mark.parametrize("text", ["", "null", "email,firstName,Import Failure Reason\n"])
def test_empty_failure_files(text: str) -> None:
    (chunk,) = CsvChunker(["email", "firstName"]).chunks([{"email": "a@x.com"}])
    assert issues_from_csv(text, chunk, ["email", "firstName"], "import.failure") == []


def test_date_windows_are_at_most_31_days_and_cover_the_range() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime(2026, 4, 15, 12, tzinfo=UTC)
    windows = date_windows(start, end)
    assert windows[0][0] == start and windows[-1][1] == end
    for (a, b), nxt in zip(windows, [*windows[1:], None], strict=True):
        assert b - a < timedelta(days=31)
        if nxt:
            assert nxt[0] == b + timedelta(seconds=1)
    assert len(windows) == 4


def test_a_short_range_is_one_window_and_a_backwards_one_is_refused() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert date_windows(start, start + timedelta(hours=1)) == [(start, start + timedelta(hours=1))]
    with pytest.raises(ValueError, match="before it starts"):
        date_windows(start, start - timedelta(seconds=1))


class _Streamed(requests.Response):
    """A file answer whose connection drops after `fail_after` bytes (when set)."""

    def __init__(self, data: bytes, status: int = 200, fail_after: int | None = None) -> None:
        super().__init__()
        self.status_code = status
        self.headers["Content-Type"] = "text/csv"
        self._data = data
        self._fail_after = fail_after

    def close(self) -> None:
        pass

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[bytes]:
        size = chunk_size or 1
        for start in range(0, len(self._data), size):
            if self._fail_after is not None and start >= self._fail_after:
                raise requests.exceptions.ChunkedEncodingError("connection broken")
            yield self._data[start : start + size]


CSV_FILE = ("email,firstName\n" + "".join(f'p{i}@x.com,"Name, {i}"\n' for i in range(2000))).encode()


@pytest.mark.parametrize("honours_range", [True, False])
def test_export_file_download_resumes_after_a_dropped_connection(
    honours_range: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[Any] = []

    def script(method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if url.endswith("/create.json"):
            return ok([{"exportId": "e1", "status": "Created"}])
        if url.endswith("/enqueue.json"):
            return ok([{"exportId": "e1", "status": "Queued"}])
        if url.endswith("/status.json"):
            return ok([{"exportId": "e1", "status": "Completed", "numberOfRecords": 2000}])
        answers.append(kwargs.get("headers", {}).get("Range"))
        if len(answers) == 1:
            return _Streamed(CSV_FILE, fail_after=4 * 1024)
        offset = int(answers[-1].removeprefix("bytes=").rstrip("-"))
        return _Streamed(CSV_FILE[offset:], 206) if honours_range else _Streamed(CSV_FILE)

    exporter = BulkExporter(make_transport(FakeSession(script)), sleep=lambda s: None)
    monkeypatch.setattr(exporter_module, "STREAM_CHUNK", 1024)
    exported = list(exporter.run_job("leads", {"format": "CSV", "fields": ["email", "firstName"]}))
    assert len(exported) == 2000 and exported[1999] == {"email": "p1999@x.com", "firstName": "Name, 1999"}
    assert answers == [None, "bytes=4096-"]


def test_null_file_is_an_empty_export() -> None:
    def script(method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if url.endswith("/file.json"):
            return _Streamed(b"null")
        return ok([{"exportId": "e1", "status": "Completed"}])

    exporter = BulkExporter(make_transport(FakeSession(script)), sleep=lambda s: None)
    assert list(exporter.run_job("leads", {"format": "CSV"})) == []


def test_export_polls_wait_for_a_run_once_one_has_been_seen() -> None:
    """A job still queued is polled again after most of a run; a running one about a run after Marketo started it
    (Marketo's own startedAt against its Date header); before any run is seen, the polls back off."""
    t0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    statuses = iter(
        [
            {"exportId": "e1", "status": "Queued"},
            {
                "exportId": "e1",
                "status": "Completed",
                "startedAt": "2026-12-01T12:00:02Z",
                "finishedAt": "2026-12-01T12:00:12Z",
            },
            {"exportId": "e2", "status": "Queued"},
            {"exportId": "e2", "status": "Processing", "startedAt": "2026-12-01T12:01:00Z"},
            {
                "exportId": "e2",
                "status": "Completed",
                "startedAt": "2026-12-01T12:01:00Z",
                "finishedAt": "2026-12-01T12:01:06Z",
            },
        ]
    )

    def script(method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if url.endswith("/status.json"):
            return ok([next(statuses)])
        return ok([{"exportId": "e1" if "e1" in url or "create" in url else "e2", "status": "Queued"}])

    slept: list[float] = []
    exporter = BulkExporter(make_transport(FakeSession(script)), sleep=slept.append)
    exporter.poll = exporter.poll.__class__(initial=1.0, factor=1.5, maximum=30.0, first_wait=0.0)
    assert exporter._wait("/bulk/v1/leads/export", "e1").status == "Completed"
    assert slept == [1.0] and exporter.run_seconds == 10.0  # no run seen yet: backing off
    slept.clear()
    exporter._t.server_time = t0 + timedelta(minutes=1, seconds=2)  # type: ignore[attr-defined]
    assert exporter._wait("/bulk/v1/leads/export", "e2").status == "Completed"
    # queued: most of a run (0.8 x 10 s); running since 12:01:00, seen at 12:01:02: 8 - 2 = 6 s, and half a second
    assert slept == [8.0, 6.5], slept
    assert exporter.run_seconds == 8.0  # 10 s and 6 s, blended


def test_a_job_queued_behind_others_is_polled_once_the_job_that_frees_its_slot_has_run() -> None:
    """Marketo runs 2 exports at once, in queue order: the third of ours starts when the first ends. Its first poll
    comes a run after that end (Marketo's clock), and never before its own wait in the queue and a run; not when the
    jobs before it took from their enqueue, which counts their wait in the queue and any lateness of their polls."""
    finished = {
        "e1": ("2026-12-01T12:00:02Z", "2026-12-01T12:00:07Z"),
        "e2": ("2026-12-01T12:00:02Z", "2026-12-01T12:00:07Z"),
        "e3": ("2026-12-01T12:00:07Z", "2026-12-01T12:00:12Z"),
        "e4": ("2026-12-01T12:00:15Z", "2026-12-01T12:00:20Z"),
    }
    created = iter(finished)
    polls: list[str] = []

    def script(method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if url.endswith("/create.json"):
            return ok([{"exportId": next(created), "status": "Created"}])
        job = url.split("/export/")[1].split("/")[0]
        if url.endswith("/status.json"):
            polls.append(job)
            started, ended = finished[job]
            return ok([{"exportId": job, "status": "Completed", "startedAt": started, "finishedAt": ended}])
        return ok([{"exportId": job, "status": "Queued"}])

    t0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    clock = {"now": 0.0}  # seconds since t0, on both clocks
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock["now"] += seconds

    def at(seconds: float) -> None:
        clock["now"] = seconds

    exporter = BulkExporter(make_transport(FakeSession(script)), sleep=sleep, clock=lambda: clock["now"])
    exporter.poll = PollPolicy(first_wait=2.0)
    exporter._t.server_now = lambda: t0 + timedelta(seconds=clock["now"])  # type: ignore[method-assign]
    jobs = [exporter.queue_job("leads", {"format": "CSV"}) for _ in range(3)]
    at(8.0)  # the first two ran at once, 12:00:02 to 12:00:07, and were polled at 12:00:08
    for job in jobs[:2]:
        exporter._wait("/bulk/v1/leads/export", job)
    assert exporter.seconds_per_job == 8.0 and exporter.run_seconds == 5.0 and slept == []
    at(8.5)
    exporter._wait("/bulk/v1/leads/export", jobs[2])
    assert slept == [4.0]  # e1 ended 12:00:07: e3 ends 12:00:12 + half a second (0.9 x 8 s from 0 is past)
    slept.clear()
    at(13.0)
    jobs.append(exporter.queue_job("leads", {"format": "CSV"}))  # its slot is free (e2 ended): its own wait, a run
    exporter._wait("/bulk/v1/leads/export", jobs[3])
    assert slept == [7.5] and polls == ["e1", "e2", "e3", "e4"]  # 2 s queued + 5 s + half (not 0.9 x 10.25 s)


class _TimedImports:
    """Marketo's import jobs on a virtual clock: each waits `queued` s, then runs `per_row` s a row, its progress
    (numOfLeadsProcessed) growing evenly; the importer's sleeps move the clock."""

    def __init__(self, queued: float, per_row: float) -> None:
        self.now, self.queued, self.per_row = 0.0, queued, per_row
        self.jobs: dict[str, tuple[float, int]] = {}  # id -> created at, rows
        self.polls: dict[str, list[float]] = {}

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def ends(self, job_id: str) -> float:
        created, rows = self.jobs[job_id]
        return created + self.queued + rows * self.per_row

    def __call__(self, method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if url.endswith("/bulk/v1/leads.json"):
            job_id = str(1000 + len(self.jobs))
            rows = kwargs["files"]["file"][1].count(b"\n") - 1
            self.jobs[job_id] = (self.now, rows)
            return ok([{"batchId": int(job_id), "importId": job_id, "status": "Queued"}])
        job_id = url.rsplit("/", 1)[-1].removesuffix(".json")
        self.polls.setdefault(job_id, []).append(self.now)
        created, rows = self.jobs[job_id]
        started = created + self.queued
        if self.now < started:
            status, done = "Queued", 0
        elif self.now < self.ends(job_id):
            status, done = "Importing", int(rows * (self.now - started) / (self.ends(job_id) - started))
        else:
            status, done = "Complete", rows
        return ok([{"batchId": int(job_id), "status": status, "numOfLeadsProcessed": done, "numOfRowsFailed": 0}])


def test_import_polls_follow_the_jobs_progress() -> None:
    """Blind, the first import's polls back off, and two answers while it runs give its pace; later imports are
    polled just after their expected end, once, and found done within a second of it."""
    server = _TimedImports(queued=2.0, per_row=0.001)
    importer = BulkImporter(make_transport(FakeSession(server)), sleep=server.sleep, clock=lambda: server.now)
    for size in (10_000, 10_000, 20_000, 5_000):
        result = importer.run([{"email": f"p{i}@x.com"} for i in range(size)], ["email"])
        assert result.rows_processed == size
    polls = {job: len(times) for job, times in server.polls.items()}
    assert polls["1000"] <= 5, server.polls
    assert all(polls[job] == 1 for job in ("1001", "1002", "1003")), server.polls  # the pace known: one poll
    for job, times in server.polls.items():
        assert times[-1] - server.ends(job) < 1.0, (job, times, server.ends(job))  # seen done soon after its end
    assert importer.runs.run(10_000) == pytest.approx(10.0, rel=0.05)  # the pace learned from the progress


def test_a_queued_import_is_not_polled_again_before_most_of_a_run() -> None:
    server = _TimedImports(queued=2.0, per_row=0.001)
    importer = BulkImporter(make_transport(FakeSession(server)), sleep=server.sleep, clock=lambda: server.now)
    importer.runs.learn(10_000, 10.0)
    server.queued = 30.0  # Marketo is busy: the job waits long in its queue
    importer.run([{"email": f"p{i}@x.com"} for i in range(10_000)], ["email"])
    times = server.polls["1000"]
    queued = [(earlier, later) for earlier, later in itertools.pairwise(times) if earlier < 30.0]
    assert queued and all(later - earlier >= 0.9 * 10.0 - 1e-9 for earlier, later in queued), times
    assert times[-1] - server.ends("1000") < 1.0 and len(times) <= 6, times


def test_a_job_of_minutes_is_polled_by_its_expected_end_not_every_30_seconds() -> None:
    """Real Marketo takes minutes over a 10 MB file. Once the pace is known, the waits it sets may pass the
    backoff's 30 s cap (up to expected_maximum), so a 10-minute import costs a few polls, not 20."""
    server = _TimedImports(queued=2.0, per_row=0.02)  # 30,000 rows: 10 minutes
    importer = BulkImporter(make_transport(FakeSession(server)), sleep=server.sleep, clock=lambda: server.now)
    importer.runs.learn(30_000, 600.0)
    importer.run([{"email": f"p{i}@x.com"} for i in range(30_000)], ["email"])
    times = server.polls["1000"]
    assert len(times) <= 3 and times[-1] - server.ends("1000") < 1.0, times
    assert max(b - a for a, b in itertools.pairwise([0.0, *times])) <= importer.poll.expected_maximum
    assert max(b - a for a, b in itertools.pairwise([0.0, *times])) > importer.poll.maximum  # the old cap is gone

    capped = _TimedImports(queued=2.0, per_row=0.02)
    importer = BulkImporter(make_transport(FakeSession(capped)), sleep=capped.sleep, clock=lambda: capped.now)
    importer.poll = PollPolicy(expected_maximum=60.0)
    importer.runs.learn(30_000, 600.0)
    importer.run([{"email": f"p{i}@x.com"} for i in range(30_000)], ["email"])
    gaps = [b - a for a, b in itertools.pairwise([0.0, *capped.polls["1000"]])]
    assert max(gaps) <= 60.0 and len(gaps) >= 10, gaps  # a wrong guess costs at most the cap


def _exporter_after_imports(script: Any, slept: list[float], rows: int, seconds: float) -> BulkExporter:
    """An exporter on a fixed clock that sleeps into `slept`, and has seen no export yet: it borrows the pace of
    imports that ran `seconds` for `rows` rows."""
    exporter = BulkExporter(make_transport(FakeSession(script)), sleep=slept.append, clock=lambda: 100.0)
    exporter.runs.prior = RunTimes()
    exporter.runs.prior.learn(rows, seconds)
    return exporter


def test_export_polls_go_by_the_rows_a_caller_expects() -> None:
    """Given the rows an export should hold, its first poll waits for the run that many take (the imports' pace
    until an export was seen run); a running one is polled when that run ends; the hints that ran short scale up."""
    t0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    statuses = iter(
        [
            {
                "exportId": "e1",
                "status": "Completed",
                "numberOfRecords": 20_000,
                "startedAt": "2026-12-01T12:00:02Z",
                "finishedAt": "2026-12-01T12:00:20Z",
            },
            {"exportId": "e2", "status": "Processing", "startedAt": "2026-12-01T12:01:00Z"},
            {
                "exportId": "e2",
                "status": "Completed",
                "numberOfRecords": 15_000,
                "startedAt": "2026-12-01T12:01:00Z",
                "finishedAt": "2026-12-01T12:01:12Z",
            },
        ]
    )

    def script(method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if url.endswith("/status.json"):
            return ok([next(statuses)])
        if url.endswith("/create.json"):
            created.append(f"e{len(created) + 1}")
        return ok([{"exportId": created[-1], "status": "Created"}])

    slept: list[float] = []
    created: list[str] = []
    exporter = _exporter_after_imports(script, slept, rows=10_000, seconds=10.0)  # 10 s for 10,000 rows
    exporter.queue_job("leads", {"format": "CSV"})
    exporter.wait_job("leads", "e1", rows=20_000)
    # queue, run (the imports' one size: a third of its 10 s is the start, then 20,000 rows at their pace), margin
    assert slept == [pytest.approx(2.0 + 10.0 / 3 + 2 * 20.0 / 3 + 0.5)] and exporter.hint_ratio == 1.0
    slept.clear()
    exporter.queue_job("leads", {"format": "CSV"})
    exporter._t.server_time = t0 + timedelta(minutes=1, seconds=5)  # type: ignore[attr-defined]
    exporter.wait_job("leads", "e2", rows=10_000)
    # its own run (18 s for 20,000 rows) and the imports' (10 s for 10,000): 2 s + 0.8 ms a row, 10 s; running
    # since 12:01:00, seen at 12:01:05: 10 - 5, and 0.5
    assert slept == [pytest.approx(2.0 + 10.0 + 0.5), pytest.approx(10.0 - 5.0 + 0.5)], slept
    assert exporter.hint_ratio == pytest.approx(1.25)  # 15,000 rows held where 10,000 were expected


def test_an_export_of_minutes_waits_past_the_backoff_cap_up_to_the_expected_one() -> None:
    statuses = iter([{"exportId": "e1", "status": "Queued"}, {"exportId": "e1", "status": "Completed"}])

    def script(method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if url.endswith("/status.json"):
            return ok([next(statuses)])
        return ok([{"exportId": "e1", "status": "Created"}])

    slept: list[float] = []
    exporter = _exporter_after_imports(script, slept, rows=30_000, seconds=240.0)  # 4 minutes for 30,000 rows
    exporter.queue_job("leads", {"format": "CSV"})
    exporter.wait_job("leads", "e1", rows=30_000)
    # the first poll at the expected end (queue wait, run, margin); still queued: most of a run again, capped
    assert slept == [pytest.approx(2.0 + 240.0 + 0.5), pytest.approx(240.0)], slept
    assert all(pause > exporter.poll.maximum for pause in slept)


def test_an_import_file_is_what_the_csv_module_writes_for_its_rows_whatever_their_cells() -> None:
    """The chunker writes its lines through one shared writer (fast), so each line must still be exactly the line
    a writer of its own makes: quoting, empty cells, non-strings, non-ASCII."""
    fields = ["a", "b", "c"]
    cells = [None, "", True, False, 3, 2.5, "x,y", 'say "hi"', "two\nlines", "cr\rhere", " pad ", "Ωμέγα", "null"]
    rows = [dict(zip(fields, combo, strict=True)) for combo in itertools.product(cells, repeat=3)]
    [chunk] = CsvChunker(fields).chunks(rows)
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow(
            ["" if v is None else ("true" if v is True else "false" if v is False else str(v)) for v in row.values()]
        )
    assert chunk.data == expected.getvalue().encode("utf-8")
    assert chunk.indices == list(range(len(rows)))
