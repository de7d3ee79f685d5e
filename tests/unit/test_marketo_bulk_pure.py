from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

import sync.connectors.marketo.bulk_extract as exporter_module
from sync.connectors.marketo.bulk_csv import CsvChunker, issues_from_csv
from sync.connectors.marketo.bulk_extract import BulkExporter, date_windows
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
