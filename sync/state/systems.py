"""What the state was built against, per system, and whether writing is stopped because that system changed.

Rows: PartitionKey "identity", RowKey system -> Marker (Dataverse: the organization id; Marketo: none stored, its
reset is seen from the persons the links name); PartitionKey "halt", RowKey system -> why writing stopped.
A halt lasts until `python -m sync relink --after-refresh` re-baselines and clears it.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel

from sync.mapping.model import System


class Halt(BaseModel):
    system: System
    reason: str
    detected_at: datetime


class SystemStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def marker(self, system: System) -> str | None:
        try:
            return self._table.get_entity("identity", system).get("Marker")
        except ResourceNotFoundError:
            return None

    def set_marker(self, system: System, marker: str) -> None:
        row = {"PartitionKey": "identity", "RowKey": system, "Marker": marker, "UpdatedAt": datetime.now(UTC)}
        self._table.upsert_entity(row, mode=UpdateMode.REPLACE)

    def halt(self, system: System, reason: str, at: datetime | None = None) -> Halt:
        halt = Halt(system=system, reason=reason, detected_at=at or datetime.now(UTC))
        row = {"PartitionKey": "halt", "RowKey": system, "Reason": reason, "DetectedAt": halt.detected_at}
        self._table.upsert_entity(row, mode=UpdateMode.REPLACE)
        return halt

    def halts(self) -> list[Halt]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": "halt"})
        return [Halt(system=r["RowKey"], reason=r["Reason"], detected_at=r["DetectedAt"]) for r in rows]

    def clear_halts(self) -> None:
        for halt in self.halts():
            with contextlib.suppress(ResourceNotFoundError):
                self._table.delete_entity("halt", halt.system)
