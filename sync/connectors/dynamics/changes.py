"""Pages of reads and change-tracking reads, parsed from the JSON Dataverse returns. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.connectors.dynamics.errors import DataverseError
from sync.connectors.dynamics.models import ChangePage, DataverseRecord
from sync.connectors.dynamics.odata import split_annotations

NEXT_LINK = "@odata.nextLink"
DELTA_LINK = "@odata.deltaLink"


def record_from_row(row: Mapping[str, Any], primary_id: str, *, annotations: bool = False) -> DataverseRecord:
    etag, values, by_column = split_annotations(row, annotations)
    record_id = values.get(primary_id)
    if not isinstance(record_id, str):
        raise DataverseError(None, "MissingPrimaryKey", f"a row came back without its primary key {primary_id!r}")
    return DataverseRecord.model_construct(id=record_id.lower(), etag=etag, values=values, annotations=by_column)


def is_deleted_row(row: Mapping[str, Any]) -> bool:
    context = row.get("@odata.context")
    return (isinstance(context, str) and context.endswith("/$deletedEntity")) or (
        row.get("reason") == "deleted" and "id" in row
    )


def change_page(
    body: Mapping[str, Any], primary_id: str, *, full_resync: bool = False, annotations: bool = False
) -> ChangePage:
    """One change-tracking page: upserted rows, $deletedEntity ids, and where to continue."""
    records: list[DataverseRecord] = []
    deleted: list[str] = []
    for row in body.get("value") or ():
        if is_deleted_row(row):
            deleted.append(str(row["id"]).lower())
        else:
            records.append(record_from_row(row, primary_id, annotations=annotations))
    next_link = body.get(NEXT_LINK)
    delta_link = body.get(DELTA_LINK)
    if next_link:
        cursor, is_last = str(next_link), False
    elif delta_link:
        cursor, is_last = str(delta_link), True
    else:
        raise DataverseError(
            None, "MissingDeltaLink", "a change-tracking page carried neither @odata.nextLink nor @odata.deltaLink"
        )
    return ChangePage.model_construct(
        records=records, deleted_ids=deleted, cursor=cursor, is_last=is_last, full_resync=full_resync
    )


def prefer(*, page_size: int | None = None, track_changes: bool = False, annotations: bool = False) -> str:
    parts = []
    if track_changes:
        parts.append("odata.track-changes")
    if page_size:
        parts.append(f"odata.maxpagesize={int(page_size)}")
    if annotations:
        parts.append('odata.include-annotations="*"')
    return ",".join(parts)
