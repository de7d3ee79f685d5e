"""CSV for bulk import (pure): rows -> chunks of at most 10 MB, and rejected/warned rows read back to input rows."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sync.connectors.marketo.errors import CODE_NOT_SERIALIZABLE, CODE_TOO_LARGE, CODE_UNKNOWN_COLUMN
from sync.connectors.marketo.models import BulkRowIssue, Reason

MAX_FILE_BYTES = 10 * 1024 * 1024 - 64 * 1024  # 10 MB, less room for the multipart envelope around the file
_CODED_REASON = re.compile(r"^\s*(\d{3,4})\s*[:-]\s*(.+)$", re.DOTALL)


def reason_of(text: str, default_code: str) -> Reason:
    """A failure/warning reason; a leading Marketo code ("1003: Invalid email") becomes the reason's code."""
    match = _CODED_REASON.match(text)
    if match:
        return Reason(code=match.group(1), message=match.group(2).strip())
    return Reason(code=default_code, message=text)


def csv_value(value: Any) -> str:
    if type(value) is str:  # nearly every cell: first, without the checks below
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple | set | bytes):
        raise TypeError(f"a {type(value).__name__} can't be a CSV cell")
    return str(value)


def _line(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8")


class _LineWriter:
    """`_line`, with one writer and buffer for every line of a file (a new writer a row was half of a file's time)."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def line(self, cells: Sequence[str]) -> bytes:
        self._writer.writerow(cells)
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate(0)
        return text.encode("utf-8")


@dataclass
class CsvChunk:
    """One import file. It lives until its job ends (its rows are found again in failures.json), so once complete
    it holds only its bytes and row indices: each row's cells are parsed back from the bytes when needed."""

    first_index: int
    indices: list[int] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)  # the lines while it fills
    size: int = 0
    sealed: bytes | None = None  # the file, once complete

    @property
    def data(self) -> bytes:
        return self.sealed if self.sealed is not None else b"".join(self.parts)

    def seal(self) -> CsvChunk:
        self.sealed, self.parts = self.data, []
        return self

    def keys(self) -> Iterator[tuple[str, ...]]:
        """Each row's cells, as written (CSV reads back what it wrote), in row order."""
        reader = csv.reader(io.StringIO(self.data.decode("utf-8"), newline=""))
        next(reader, None)  # the header
        return (tuple(cells) for cells in reader)

    @property
    def row_count(self) -> int:
        return len(self.indices)


class CsvChunker:
    """Turns rows (dicts keyed by REST field name) into CSV chunks; rows that can't be written go to `rejected`."""

    def __init__(self, fields: Sequence[str], max_bytes: int = MAX_FILE_BYTES) -> None:
        if not fields:
            raise ValueError("bulk import needs at least one field (the CSV header)")
        if len(set(fields)) != len(fields):
            raise ValueError(f"bulk import fields repeat a name: {list(fields)}")
        self.fields = list(fields)
        self.max_bytes = max_bytes
        self.header = _line(self.fields)
        self.rejected: list[BulkRowIssue] = []

    def _reject(self, index: int, row: Any, code: str, message: str) -> None:
        shown = {str(k): str(v)[:200] for k, v in row.items()} if isinstance(row, dict) else {"row": str(row)[:200]}
        self.rejected.append(BulkRowIssue(index=index, row=shown, reason=Reason(code=code, message=message)))

    def chunks(self, rows: Iterable[dict[str, Any]]) -> Iterator[CsvChunk]:
        current: CsvChunk | None = None
        known = set(self.fields)
        writer = _LineWriter()
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                self._reject(index, row, CODE_NOT_SERIALIZABLE, f"row is a {type(row).__name__}, not a dict")
                continue
            if not row.keys() <= known:
                unknown = sorted(str(k) for k in row if k not in known)
                self._reject(index, row, CODE_UNKNOWN_COLUMN, f"columns not in the import's fields: {unknown}")
                continue
            try:
                cells = tuple(map(csv_value, map(row.get, self.fields)))
            except TypeError as exc:
                self._reject(index, row, CODE_NOT_SERIALIZABLE, str(exc))
                continue
            line = writer.line(cells)
            if len(self.header) + len(line) > self.max_bytes:
                self._reject(
                    index, row, CODE_TOO_LARGE, f"row is {len(line)} bytes; an import file takes {self.max_bytes}"
                )
                continue
            if current is not None and current.size + len(line) > self.max_bytes:
                yield current.seal()
                current = None
            if current is None:
                current = CsvChunk(first_index=index, parts=[self.header], size=len(self.header))
            current.indices.append(index)
            current.parts.append(line)
            current.size += len(line)
        if current is not None:
            yield current.seal()


def issues_from_csv(text: str, chunk: CsvChunk, fields: Sequence[str], reason_code: str) -> list[BulkRowIssue]:
    """Rows of a failures/warnings file (our columns + a reason column) -> issues mapped back to input indices."""
    if not text.strip() or text.strip() == "null":
        return []
    positions: dict[tuple[str, ...], deque[int]] = defaultdict(deque)
    for key, index in zip(chunk.keys(), chunk.indices, strict=True):
        positions[key].append(index)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return []
    issues = []
    for cells in reader:
        if not cells:
            continue
        row = dict(zip(header, cells, strict=False))
        reason = next((row[h] for h in header if h not in fields and h in row), "") or "(no reason given)"
        key = tuple(row.get(name, "") for name in fields)
        matches = positions.get(key)
        input_index = matches.popleft() if matches else None
        shown = {name: row.get(name, "") for name in fields}
        issues.append(BulkRowIssue(index=input_index, row=shown, reason=reason_of(reason, reason_code)))
    return issues
