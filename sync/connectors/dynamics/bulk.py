"""Bulk writes, planned as pure data: targets, *Multiple payloads, single requests for `$batch`, and results.

A *Multiple call is all-or-nothing on standard tables: one bad target rolls the whole chunk back. The client then
re-sends that chunk as one `$batch` of single requests with `odata.continue-on-error`, so every good record lands
and every bad one gets its own error (one extra call per failing chunk, not a bisection).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sync.connectors.dynamics.batch import BatchRequest, BatchResponse
from sync.connectors.dynamics.errors import DataverseError, error_from_response
from sync.connectors.dynamics.models import TableMetadata, WriteError, WriteResult
from sync.connectors.dynamics.odata import guid, key_segment, odata_identifier

WriteKind = Literal["create", "update", "upsert"]
MESSAGES: dict[WriteKind, str] = {"create": "CreateMultiple", "update": "UpdateMultiple", "upsert": "UpsertMultiple"}
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


@dataclass(frozen=True)
class Target:
    index: int  # position in the caller's list
    body: dict[str, Any]  # the columns to write
    record_id: str | None  # the primary key, when the caller gave it
    address: str | None  # "(<guid>)" or "(key='v')": how single requests address the record (None: create)

    @property
    def label(self) -> str | None:
        """How errors name this record: its address, else its id."""
        return self.address or self.record_id


def plan_targets(
    kind: WriteKind, table: TableMetadata, records: Sequence[Mapping[str, Any]], alternate_key: str | None = None
) -> tuple[list[Target], list[WriteResult]]:
    """Targets to send, and results for records that cannot be sent at all (no key, bad GUID)."""
    pk = table.primary_id_attribute
    if alternate_key is not None:
        odata_identifier(alternate_key, table=table.logical_name)
    targets: list[Target] = []
    rejected: list[WriteResult] = []
    for index, record in enumerate(records):
        body = dict(record)
        try:
            record_id = str(guid(body[pk], table=table.logical_name, column=pk)) if body.get(pk) is not None else None
            if record_id is not None:
                body[pk] = record_id
            address: str | None = None
            if kind == "upsert" and alternate_key:
                if body.get(alternate_key) in (None, ""):
                    raise DataverseError(
                        None, "MissingKey", f"no value for the alternate key {alternate_key!r}", alternate_key
                    )
                address = key_segment({alternate_key: body[alternate_key]})
            elif kind in ("update", "upsert"):
                if record_id is None:
                    raise DataverseError(None, "MissingKey", f"no value for the primary key {pk!r}", pk)
                address = key_segment(uuid.UUID(record_id))
        except DataverseError as exc:
            rejected.append(WriteResult(index=index, error=exc.to_write_error(_describe(record, pk, alternate_key))))
            continue
        targets.append(Target(index=index, body=body, record_id=record_id, address=address))
    return targets, rejected


def multiple_payload(kind: WriteKind, table: TableMetadata, targets: Sequence[Target]) -> dict[str, Any]:
    odata_type = f"Microsoft.Dynamics.CRM.{table.logical_name}"
    items = []
    for target in targets:
        item = {**target.body, "@odata.type": odata_type}
        if kind == "upsert" and target.address:
            item["@odata.id"] = table.entity_set_name + target.address
        items.append(item)
    return {"Targets": items}


def results_from_multiple(kind: WriteKind, targets: Sequence[Target], reply: Any) -> list[WriteResult]:
    """CreateMultiple answers {"Ids": [...]} in target order; UpdateMultiple and UpsertMultiple answer 204 (some
    services also give UpsertMultiple's Ids and Results[].RecordCreated: used when present)."""
    ids = reply.get("Ids") if isinstance(reply, Mapping) else None
    upserts = reply.get("Results") if isinstance(reply, Mapping) else None
    results = []
    for position, target in enumerate(targets):
        record_id = target.record_id
        if isinstance(ids, list) and position < len(ids):
            record_id = str(ids[position]).lower()
        created = True if kind == "create" else False if kind == "update" else None
        if kind == "upsert" and isinstance(upserts, list) and position < len(upserts):
            flag = upserts[position].get("RecordCreated") if isinstance(upserts[position], Mapping) else None
            created = flag if isinstance(flag, bool) else None
        results.append(WriteResult(index=target.index, id=record_id, created=created))
    return results


def single_request(kind: WriteKind, table: TableMetadata, target: Target, api_base: str) -> BatchRequest:
    """The one-record request for `$batch`: POST (create), PATCH + If-Match:* (update only), PATCH (upsert)."""
    pk = table.primary_id_attribute
    collection = api_base + table.entity_set_name
    if kind == "create":
        return BatchRequest("POST", collection, target.body)
    assert target.address is not None
    headers = {"Prefer": "return=representation"}
    if kind == "update":
        headers["If-Match"] = "*"
    return BatchRequest("PATCH", f"{collection}{target.address}?$select={pk}", target.body, headers)


def result_from_single(
    kind: WriteKind, table: TableMetadata, target: Target, response: BatchResponse | None
) -> WriteResult:
    if response is None:
        error = WriteError(
            code="NotExecuted", message="the $batch reply held no answer for this record", record=target.label
        )
        return WriteResult(index=target.index, error=error)
    if response.status >= 400:
        exc = error_from_response(response.status, response.headers, response.body, table=table.logical_name)
        return WriteResult(index=target.index, error=exc.to_write_error(target.label))
    record_id = target.record_id
    body = response.json() if response.body else None
    if isinstance(body, Mapping) and isinstance(body.get(table.primary_id_attribute), str):
        record_id = body[table.primary_id_attribute].lower()
    else:
        match = _ENTITY_ID.search(response.headers.get("OData-EntityId", "") or "")
        record_id = match.group(1).lower() if match else record_id
    created = {"create": True, "update": False}.get(kind, response.status == 201 if response.status != 204 else None)
    return WriteResult(index=target.index, id=record_id, created=created)


def is_unsupported_message(error: DataverseError, kind: WriteKind) -> bool:
    """Does this error say the table does not support the *Multiple message (so $batch is the way)?"""
    if error.status not in (400, 404, 405, 501):
        return False
    text = error.message.lower()
    return MESSAGES[kind].lower() in text and any(
        phrase in text for phrase in ("not supported", "does not support", "not found", "not valid", "no route")
    )


def failed(targets: Sequence[Target], error: WriteError) -> list[WriteResult]:
    return [WriteResult(index=t.index, error=error.model_copy(update={"record": t.label})) for t in targets]


def _describe(record: Mapping[str, Any], pk: str, alternate_key: str | None) -> str | None:
    for column in (pk, alternate_key):
        if column and record.get(column) not in (None, ""):
            return f"{column}={str(record[column])[:80]}"
    return None


def chunked(items: Sequence[Target], size: int) -> list[Sequence[Target]]:
    if size < 1:
        raise ValueError("chunk_size must be at least 1")
    return [items[start : start + size] for start in range(0, len(items), size)]
