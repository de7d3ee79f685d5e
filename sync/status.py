"""What an operator asks first: where each entity's cursors stand, how its last runs went, what is failing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel

from sync.state import Halt, RunRecord, StateStore


class CursorStatus(BaseModel):
    system: str
    has_cursor: bool
    updated_at: datetime | None = None


class EntityStatus(BaseModel):
    entity: str
    cursors: list[CursorStatus]
    last_runs: list[RunRecord]
    error_count: int
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None
    resumes_at: datetime | None = None  # its last run stopped at Marketo's daily quota: it waits until then


class StatusReport(BaseModel):
    entities: list[EntityStatus]
    halts: list[Halt] = []  # writing stopped: a system changed under the state (sandbox refresh or reset)


def collect_status(
    state: StateStore, entities: Iterable[str], runs: int = 5, now: datetime | None = None
) -> StatusReport:
    """Every stream of the mapping (in its order), and any other entity the state still has watermarks of."""
    now = now or datetime.now(UTC)
    watermarks = state.watermarks.list()
    names = list(dict.fromkeys([*entities, *(w.entity for w in watermarks)]))
    report = []
    for entity in names:
        lease = state.leases.get(entity)
        last_runs = state.runs.recent(entity, limit=runs)
        resumes_at = last_runs[0].resumes_at if last_runs else None
        report.append(
            EntityStatus(
                entity=entity,
                cursors=[
                    CursorStatus(system=w.system, has_cursor=w.cursor is not None, updated_at=w.updated_at)
                    for w in watermarks
                    if w.entity == entity
                ],
                last_runs=last_runs,
                error_count=state.errors.count(entity),
                lease_holder=lease.holder if lease else None,
                lease_expires_at=lease.expires_at if lease else None,
                resumes_at=resumes_at if resumes_at is not None and resumes_at > now else None,
            )
        )
    return StatusReport(entities=report, halts=state.systems.halts())
