"""Record errors: records that failed to sync, kept until a later run succeeds or an operator clears them.

Row: PartitionKey = entity, RowKey = system + record id. Recording the same record again bumps `attempts` and
`last_seen` and keeps `first_seen`, so the store shows how long a record has been stuck. The next run of the entity
reads its errors back (`list`) and retries those records; a success removes the row (`resolve`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel, computed_field

from sync.mapping.model import System
from sync.state.keys import encode_key


class RecordError(BaseModel):
    entity: str
    system: System  # the system holding the record that failed to sync
    record_id: str
    operation: str  # create, update, delete, link, read, ...
    code: str | None = None  # the service's own error code, e.g. "1006" or "0x80040237"
    message: str
    attempts: int = 1
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def direction(self) -> str:
        """The way the record was going: a Dynamics record failed to reach Marketo, or the other way round."""
        return "to_marketo" if self.system == "dynamics" else "to_dynamics"


RETENTION = timedelta(days=30)  # the native Sync Errors tab keeps 5 days


def _row_key(system: System, record_id: str) -> str:
    return f"{encode_key(system)}~~{encode_key(record_id)}"


class RecordErrorStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def record(self, error: RecordError, now: datetime | None = None) -> RecordError:
        """Store a failure; a repeat of the same (entity, system, record) counts one more attempt."""
        now = now or datetime.now(UTC)
        previous = self.get(error.entity, error.system, error.record_id)
        stored = error.model_copy(
            update={
                "attempts": (previous.attempts + 1) if previous else 1,
                "first_seen": previous.first_seen if previous else now,
                "last_seen": now,
            }
        )
        self._table.upsert_entity(self._to_row(stored), mode=UpdateMode.REPLACE)
        return stored

    def get(self, entity: str, system: System, record_id: str) -> RecordError | None:
        try:
            row = self._table.get_entity(encode_key(entity), _row_key(system, record_id))
        except ResourceNotFoundError:
            return None
        return self._from_row(row)

    def list(self, entity: str | None = None, system: System | None = None) -> Iterator[RecordError]:
        if entity is None:
            rows = self._table.list_entities()
        else:
            rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": encode_key(entity)})
        for row in rows:
            error = self._from_row(row)
            if system is None or error.system == system:
                yield error

    def resolve(self, entity: str, system: System, record_id: str) -> bool:
        """Remove the error of a record that has now synced; True if there was one."""
        try:
            self._table.delete_entity(encode_key(entity), _row_key(system, record_id))
        except ResourceNotFoundError:
            return False
        return True

    def clear(self, entity: str | None = None) -> int:
        """Remove every error (of one entity, or of all); returns how many were removed."""
        removed = 0
        for error in list(self.list(entity)):
            removed += self.resolve(error.entity, error.system, error.record_id)
        return removed

    def count(self, entity: str | None = None) -> int:
        return sum(1 for _ in self.list(entity))

    def prune(self, now: datetime | None = None, keep: timedelta = RETENTION) -> int:
        """Remove errors last seen longer than `keep` ago (a record still failing is seen again by every retry, so
        only errors nothing retries any more age out); returns how many were removed."""
        cutoff = (now or datetime.now(UTC)) - keep
        removed = 0
        for row in list(self._table.query_entities("LastSeen lt @cutoff", parameters={"cutoff": cutoff})):
            error = self._from_row(row)
            removed += self.resolve(error.entity, error.system, error.record_id)
        return removed

    @staticmethod
    def _to_row(error: RecordError) -> dict[str, Any]:
        row = {
            "PartitionKey": encode_key(error.entity),
            "RowKey": _row_key(error.system, error.record_id),
            "Entity": error.entity,
            "System": error.system,
            "RecordId": error.record_id,
            "Operation": error.operation,
            "Code": error.code,
            "Message": error.message[:8000],
            "Attempts": error.attempts,
            "FirstSeen": error.first_seen,
            "LastSeen": error.last_seen,
        }
        return {k: v for k, v in row.items() if v is not None}

    @staticmethod
    def _from_row(row: dict[str, Any]) -> RecordError:
        return RecordError(
            entity=row["Entity"],
            system=row["System"],
            record_id=row["RecordId"],
            operation=row.get("Operation", ""),
            code=row.get("Code"),
            message=row.get("Message", ""),
            attempts=row.get("Attempts", 1),
            first_seen=row.get("FirstSeen"),
            last_seen=row.get("LastSeen"),
        )
