"""Persons (leads): read by id or filter, sync, delete, describe, merge, partitions."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sync.connectors.marketo.batching import MAX_BATCH, write_all
from sync.connectors.marketo.errors import CODE_PROTOCOL, InvalidRequestError, MarketoError
from sync.connectors.marketo.models import LeadField, MarketoPerson, PersonSchema, RecordResult
from sync.connectors.marketo.transport import Transport

SYNC_ACTIONS = ("createOnly", "updateOnly", "createOrUpdate", "createDuplicate")
SYNC_TIMEOUT = 90.0  # Marketo: Sync Leads may take up to 90 s
FILTER_TIMEOUT = 60.0  # Get Leads by Filter Type: 60 s
MERGE_TIMEOUT = 180.0


def person(item: Any, fields: Sequence[str] = ()) -> MarketoPerson:
    """A lead from a result; a requested field it leaves out is null (Adobe: fields not returned are null)."""
    if not isinstance(item, dict) or "id" not in item:
        raise MarketoError(CODE_PROTOCOL, f"a lead without an id in the result: {str(item)[:200]}")
    return MarketoPerson(id=int(item["id"]), values=dict.fromkeys(fields) | item)


def with_id(fields: Sequence[str]) -> list[str] | None:
    """The fields to ask for, `id` always among them (None: Marketo's default set, which has it)."""
    if not fields:
        return None
    return list(fields) if "id" in fields else ["id", *fields]


def lead_field(item: dict[str, Any]) -> LeadField:
    """From describe.json (`rest.name`, `rest.readOnly`) or describe2.json (`name`, `updateable`, `crmManaged`)."""
    rest = item.get("rest") or {}
    soap = item.get("soap") or {}
    name = rest.get("name") or item.get("name")
    updateable = item.get("updateable")
    if updateable is None:
        updateable = not rest.get("readOnly", False)
    return LeadField(
        name=str(name),
        display_name=str(item.get("displayName") or name),
        data_type=str(item.get("dataType") or "string"),
        length=item.get("length"),
        updateable=bool(updateable),
        crm_managed=bool(item.get("crmManaged", False)),
        id=item.get("id"),
        soap_name=soap.get("name"),
    )


class PersonsApi:
    def __init__(self, transport: Transport, max_concurrency: int) -> None:
        self._t = transport
        self._workers = max_concurrency

    def get_lead(self, lead_id: int, fields: Sequence[str] = ()) -> MarketoPerson | None:
        envelope = self._t.get("get_lead", f"/rest/v1/lead/{int(lead_id)}.json", {"fields": with_id(fields)})
        return person(envelope.result[0], fields) if envelope.result else None

    def get_leads(
        self, filter_type: str, values: Sequence[str | int], fields: Sequence[str], batch_size: int = MAX_BATCH
    ) -> list[MarketoPerson]:
        """Every lead whose `filter_type` field equals one of `values`: 300 values per call, all pages of each.

        Chunks are read concurrently (within the client's concurrency cap); the result keeps the values' order.
        """
        unique = list(dict.fromkeys(str(v) for v in values if v is not None and str(v) != ""))
        for value in unique:
            if "," in value:
                raise ValueError(f"filter value {value!r} holds a comma: Marketo's filterValues can't carry it")
        chunks = [unique[i : i + MAX_BATCH] for i in range(0, len(unique), MAX_BATCH)]
        if len(chunks) <= 1 or self._workers <= 1:
            parts = [self._read_chunk(filter_type, chunk, fields, batch_size) for chunk in chunks]
        else:
            with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="marketo-read") as pool:
                parts = list(pool.map(lambda c: self._read_chunk(filter_type, c, fields, batch_size), chunks))
        seen: set[int] = set()
        found = []
        for part in parts:
            for lead in part:
                if lead.id not in seen:
                    seen.add(lead.id)
                    found.append(lead)
        return found

    def _read_chunk(
        self, filter_type: str, values: list[str], fields: Sequence[str], batch_size: int
    ) -> list[MarketoPerson]:
        params = {
            "filterType": filter_type,
            "filterValues": values,
            "fields": with_id(fields),
            "batchSize": min(max(1, batch_size), MAX_BATCH),
        }
        try:
            return [
                person(item, fields)
                for page in self._t.pages("get_leads", "/rest/v1/leads.json", params, timeout=FILTER_TIMEOUT)
                for item in page.result
            ]
        except InvalidRequestError as exc:
            # 1003 "Too many results match the filter" (> 1,000 leads): ask for fewer values at a time.
            if exc.code != "1003" or len(values) == 1:
                raise
            half = len(values) // 2
            return self._read_chunk(filter_type, values[:half], fields, batch_size) + self._read_chunk(
                filter_type, values[half:], fields, batch_size
            )

    def sync_leads(
        self,
        records: Sequence[dict[str, Any]],
        action: str = "createOrUpdate",
        lookup_field: str = "email",
        partition_name: str | None = None,
    ) -> list[RecordResult]:
        if action not in SYNC_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(SYNC_ACTIONS)}, not {action!r}")

        def send(payloads: list[dict[str, Any]]) -> list[Any]:
            body: dict[str, Any] = {"action": action, "lookupField": lookup_field, "input": payloads}
            if partition_name:
                body["partitionName"] = partition_name
            return self._t.call("sync_leads", "POST", "/rest/v1/leads.json", json=body, timeout=SYNC_TIMEOUT).result

        return write_all(records, send)

    def delete_leads(self, ids: Sequence[int]) -> list[RecordResult]:
        def send(payloads: list[dict[str, Any]]) -> list[Any]:
            return self._t.call("delete_leads", "POST", "/rest/v1/leads/delete.json", json={"input": payloads}).result

        return write_all([{"id": lead_id} for lead_id in ids], send)

    def describe(self) -> list[LeadField]:
        return [lead_field(item) for item in self._t.get("describe_leads", "/rest/v1/leads/describe.json").result]

    def describe2(self) -> PersonSchema:
        result = self._t.get("describe_leads2", "/rest/v1/leads/describe2.json").result
        if not result:
            raise MarketoError(CODE_PROTOCOL, "describe2 returned no result")
        item = result[0]
        return PersonSchema(
            name=str(item.get("name", "")),
            searchable_fields=[list(s) for s in item.get("searchableFields") or []],
            fields=[lead_field(f) for f in item.get("fields") or []],
        )

    def partitions(self) -> list[dict[str, Any]]:
        return list(self._t.get("partitions", "/rest/v1/leads/partitions.json").result)

    def merge(self, winner_id: int, loser_ids: Sequence[int], merge_in_crm: bool = False) -> None:
        params = {"leadIds": [int(i) for i in loser_ids], "mergeInCRM": merge_in_crm or None}
        path = f"/rest/v1/leads/{int(winner_id)}/merge.json"
        self._t.call("merge_leads", "POST", path, params=params, timeout=MERGE_TIMEOUT)
