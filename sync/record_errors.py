"""The Sync Errors tab, actionable: find record errors by stream, system, code and text, export them as CSV, retry
them now or dismiss them. The CLI (`python -m sync errors`), the HTTP API and the status page all go through here.

Every cycle of a stream retries its stored errors first, so "retry now" runs the cycle of each stream that has a
selected error, at once and under its lease; an error its record then syncs is resolved by that cycle. "Dismiss"
removes the error: its record is no longer retried, and syncs again when it next changes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError, field_validator

from sync.engine.context import SyncContext
from sync.mapping.model import System
from sync.state import RecordError, StateStore

CSV_COLUMNS = (
    "stream",
    "system",
    "direction",
    "record_id",
    "operation",
    "code",
    "message",
    "attempts",
    "first_seen",
    "last_seen",
)


class ErrorQueryError(ValueError):
    """A filter that names an unknown field or value."""


class ErrorQuery(BaseModel):
    """Which errors: every given criterion must match. `text` is a case-insensitive substring of the message, the
    record id or the code; `record_id` (with stream and system) picks one error."""

    model_config = {"extra": "forbid"}

    stream: str | None = None
    system: System | None = None
    code: str | None = None
    text: str | None = None
    record_id: str | None = None

    @field_validator("stream", "code", "text", "record_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @classmethod
    def parse(cls, values: Mapping[str, Any], *, http: bool = False) -> ErrorQuery:
        """From query parameters or a form or JSON body; `entity` is accepted for `stream`. Over HTTP the error code
        is `error_code`, since `code` carries the function key. Bad input raises ErrorQueryError naming the field."""
        given = dict(values)
        if http:
            given.pop("code", None)
            given.pop("action", None)  # the status page's forms say which button was pressed
            if "error_code" in given:
                given["code"] = given.pop("error_code")
        if "entity" in given:
            given.setdefault("stream", given.pop("entity"))
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "filter"
            raise ErrorQueryError(f"error filter {field}: {first['msg']}") from None

    def matches(self, error: RecordError) -> bool:
        if self.stream is not None and error.entity != self.stream:
            return False
        if self.system is not None and error.system != self.system:
            return False
        if self.code is not None and (error.code or "").lower() != self.code.lower():
            return False
        if self.record_id is not None and error.record_id != self.record_id:
            return False
        if self.text is not None:
            needle = self.text.lower()
            haystack = (error.message, error.record_id, error.code or "", error.operation)
            if not any(needle in value.lower() for value in haystack):
                return False
        return True


def find(state: StateStore, query: ErrorQuery, limit: int | None = None) -> list[RecordError]:
    """Matching errors, the most recently seen first."""
    found = [e for e in state.errors.list(query.stream, query.system) if query.matches(e)]
    found.sort(key=lambda e: (e.last_seen is not None, e.last_seen), reverse=True)
    return found[:limit] if limit is not None else found


def to_csv(errors: Iterable[RecordError]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in errors:
        writer.writerow(
            [
                e.entity,
                e.system,
                e.direction,
                e.record_id,
                e.operation,
                e.code or "",
                e.message,
                e.attempts,
                e.first_seen.isoformat() if e.first_seen else "",
                e.last_seen.isoformat() if e.last_seen else "",
            ]
        )
    return out.getvalue()


def dismiss(state: StateStore, query: ErrorQuery) -> int:
    """Remove the matching errors; returns how many."""
    return sum(state.errors.resolve(e.entity, e.system, e.record_id) for e in find(state, query))


class RetryOutcome(BaseModel):
    stream: str
    selected: int  # errors of this stream that matched
    resolved: int  # of those, gone after the cycle (their records synced)
    cycle: str  # the cycle's outcome: succeeded, partial, failed, skipped
    detail: str | None = None  # why a cycle was skipped or failed


def retry(ctx: SyncContext, query: ErrorQuery) -> list[RetryOutcome]:
    """Run one cycle of every stream with a matching error (which retries its errors first), in the mapping's order."""
    from sync.metrics import run_cycle_counted

    selected = find(ctx.state, query)
    by_stream: dict[str, set[tuple[str, str]]] = {}
    for e in selected:
        by_stream.setdefault(e.entity, set()).add((e.system, e.record_id))
    known = [s.name for s in ctx.mapping.ordered_entities()]
    outcomes = []
    for stream in sorted(by_stream, key=lambda s: known.index(s) if s in known else len(known)):
        keys = by_stream[stream]
        if stream not in known:
            outcomes.append(
                RetryOutcome(
                    stream=stream, selected=len(keys), resolved=0, cycle="skipped", detail="not a stream of the mapping"
                )
            )
            continue
        report = run_cycle_counted(ctx, stream)
        left = {(e.system, e.record_id) for e in ctx.state.errors.list(stream)}
        outcomes.append(
            RetryOutcome(
                stream=stream,
                selected=len(keys),
                resolved=len(keys - left),
                cycle=report.outcome,
                detail=report.error,
            )
        )
    return outcomes
