"""Run history: one row per sync run (incremental cycle or full-sync page run), newest first.

Row: PartitionKey = entity, RowKey = inverted start time + run id, so a plain query of a partition lists the newest
runs first and `recent` reads only the rows it returns.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel, Field

from sync.mapping.model import Direction
from sync.state.keys import encode_key

RunKind: TypeAlias = Literal["incremental", "full"]
# partial: stopped at the time budget or with record errors; skipped: the entity was leased or in a full sync
RunOutcome: TypeAlias = Literal["running", "succeeded", "partial", "failed", "skipped"]
_MAX_TICKS = 10**19


class RunCounts(BaseModel):
    read: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0


class RunRecord(BaseModel):
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    entity: str
    direction: Direction
    kind: RunKind = "incremental"
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None
    counts: RunCounts = Field(default_factory=RunCounts)
    api_calls: dict[str, int] = Field(default_factory=dict)  # per system
    outcome: RunOutcome = "running"
    error: str | None = None
    conflicts: list[dict[str, Any]] = Field(default_factory=list)  # resolved conflicts (the first 50 of a run)
    skipped_reasons: dict[str, int] = Field(default_factory=dict)  # why records were skipped, e.g. a disabled user
    resumes_at: datetime | None = None  # stopped by Marketo's daily quota or our call budget: waits until then


def _row_key(run: RunRecord) -> str:
    ticks = int(run.started_at.timestamp() * 1_000_000)
    return f"{_MAX_TICKS - ticks:020d}-{run.run_id}"


class RunHistory:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def record(self, run: RunRecord) -> None:
        """Insert or replace the row of `run` (call at start and again when it ends)."""
        row: dict[str, Any] = {
            "PartitionKey": encode_key(run.entity),
            "RowKey": _row_key(run),
            "RunId": run.run_id,
            "Entity": run.entity,
            "Direction": run.direction,
            "Kind": run.kind,
            "StartedAt": run.started_at,
            "EndedAt": run.ended_at,
            "Outcome": run.outcome,
            "Error": (run.error or "")[:8000] or None,
            "ApiCallsJson": json.dumps(run.api_calls, sort_keys=True),
            "ConflictsJson": json.dumps(run.conflicts[:50], sort_keys=True, default=str),
            "SkippedJson": json.dumps(dict(list(run.skipped_reasons.items())[:20]), sort_keys=True),
            "ResumesAt": run.resumes_at,
            **{f"Count{name.capitalize()}": value for name, value in run.counts.model_dump().items()},
        }
        self._table.upsert_entity({k: v for k, v in row.items() if v is not None}, mode=UpdateMode.REPLACE)

    def recent(self, entity: str, limit: int = 20) -> list[RunRecord]:
        rows = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": encode_key(entity)}, results_per_page=limit
        )
        out: list[RunRecord] = []
        for row in rows:
            out.append(_from_row(row))
            if len(out) >= limit:
                break
        return out

    def since(self, entity: str, start: datetime) -> list[RunRecord]:
        """The runs of `entity` that started at or after `start`, newest first (one range query on the row key)."""
        ticks = int(start.timestamp() * 1_000_000)
        upper = f"{_MAX_TICKS - ticks:020d}-~"  # "~" sorts after every run id
        rows = self._table.query_entities(
            "PartitionKey eq @pk and RowKey lt @upper", parameters={"pk": encode_key(entity), "upper": upper}
        )
        return [_from_row(row) for row in rows]


def _from_row(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=row["RunId"],
        entity=row["Entity"],
        direction=row["Direction"],
        kind=row.get("Kind", "incremental"),
        started_at=row["StartedAt"],
        ended_at=row.get("EndedAt"),
        outcome=row.get("Outcome", "running"),
        error=row.get("Error"),
        api_calls=json.loads(row.get("ApiCallsJson") or "{}"),
        conflicts=json.loads(row.get("ConflictsJson") or "[]"),
        skipped_reasons=json.loads(row.get("SkippedJson") or "{}"),
        resumes_at=row.get("ResumesAt"),
        counts=RunCounts(**{name: row.get(f"Count{name.capitalize()}", 0) for name in RunCounts.model_fields}),
    )
