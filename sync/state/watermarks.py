"""Watermarks: one opaque cursor per (entity, source system), advanced only by ETag compare-and-swap.

Row: PartitionKey = entity, RowKey = system. The cursor is a Dataverse delta link or a Marketo paging token.
`advance` takes the ETag the caller read; if another runner advanced the row since, it raises WatermarkConflict
and the caller's work must not be committed as if it owned the cursor.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel

from sync.mapping.model import System
from sync.state.keys import encode_key


class WatermarkConflict(Exception):
    """Someone else advanced the watermark since it was read."""

    def __init__(self, entity: str, system: System) -> None:
        super().__init__(f"watermark {entity}/{system} was advanced by another runner")
        self.entity = entity
        self.system = system


class Watermark(BaseModel):
    entity: str
    system: System
    cursor: str | None = None
    updated_at: datetime | None = None
    etag: str | None = None  # None: no row yet


class WatermarkStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, entity: str, system: System) -> Watermark:
        try:
            row = self._table.get_entity(encode_key(entity), encode_key(system))
        except ResourceNotFoundError:
            return Watermark(entity=entity, system=system)
        return Watermark(
            entity=entity,
            system=system,
            cursor=row.get("Cursor"),
            updated_at=row.get("UpdatedAt"),
            etag=row.metadata["etag"],
        )

    def advance(self, current: Watermark, cursor: str | None) -> Watermark:
        """Move the watermark from `current` (as read) to `cursor`; raise WatermarkConflict if it moved meanwhile."""
        now = datetime.now(UTC)
        row = {
            "PartitionKey": encode_key(current.entity),
            "RowKey": encode_key(current.system),
            "Entity": current.entity,
            "System": current.system,
            "Cursor": cursor,
            "UpdatedAt": now,
        }
        try:
            if current.etag is None:
                meta = self._table.create_entity(row)
            else:
                meta = self._table.update_entity(
                    row, mode=UpdateMode.REPLACE, etag=current.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceNotFoundError) as exc:
            raise WatermarkConflict(current.entity, current.system) from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise WatermarkConflict(current.entity, current.system) from exc
            raise
        return current.model_copy(update={"cursor": cursor, "updated_at": now, "etag": meta["etag"]})

    def reset(self, entity: str, system: System) -> None:
        """Forget the cursor: the next run reads from the beginning."""
        with contextlib.suppress(ResourceNotFoundError):
            self._table.delete_entity(encode_key(entity), encode_key(system))

    def list(self) -> list[Watermark]:
        return [
            Watermark(
                entity=row["Entity"],
                system=row["System"],
                cursor=row.get("Cursor"),
                updated_at=row.get("UpdatedAt"),
                etag=row.metadata["etag"],
            )
            for row in self._table.list_entities()
        ]
