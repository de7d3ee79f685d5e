"""Companies, opportunities, opportunity roles, sales persons and custom objects: one client shape for all.

Every object has sync (dedupeBy), query by filter type (simple keys as filterValues, compound keys through
`POST ..?_method=GET` with a JSON body), delete (by dedupe fields or id field) and describe. Results carry `seq`,
the input index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sync.connectors.marketo.batching import MAX_BATCH, write_all
from sync.connectors.marketo.envelope import first_result, has_more
from sync.connectors.marketo.errors import CODE_PROTOCOL, MarketoError
from sync.connectors.marketo.models import CrmRecord, ObjectDescription, ObjectField, RecordResult
from sync.connectors.marketo.transport import Transport

# object name -> (path under /rest/v1, idField)
STANDARD_OBJECTS = {
    "companies": "id",
    "opportunities": "marketoGUID",
    "opportunities/roles": "marketoGUID",
    "salespersons": "id",
}
CUSTOM_OBJECT = re.compile(r"^customobjects/([A-Za-z][A-Za-z0-9_]*)$")
SYNC_ACTIONS = ("createOnly", "updateOnly", "createOrUpdate")
DEDUPE_BY = ("dedupeFields", "idField")


def object_field(item: dict[str, Any]) -> ObjectField:
    return ObjectField(
        name=str(item.get("name")),
        display_name=item.get("displayName"),
        data_type=item.get("dataType"),
        length=item.get("length"),
        updateable=bool(item.get("updateable", True)),
    )


class CrmObjectClient:
    def __init__(self, transport: Transport, object_name: str) -> None:
        if object_name not in STANDARD_OBJECTS and not CUSTOM_OBJECT.match(object_name):
            known = ", ".join([*STANDARD_OBJECTS, "customobjects/<apiName>"])
            raise ValueError(f"unknown Marketo object {object_name!r}; expected one of {known}")
        self._t = transport
        self.object_name = object_name
        self.id_field = STANDARD_OBJECTS.get(object_name, "marketoGUID")
        self._path = f"/rest/v1/{object_name}"
        self._op = object_name.replace("/", "_")

    def __repr__(self) -> str:
        return f"CrmObjectClient({self.object_name!r})"

    def _with_id(self, fields: Sequence[str]) -> list[str] | None:
        """The fields to ask for, the idField always among them (None: Marketo's default set)."""
        if not fields:
            return None
        return list(fields) if self.id_field in fields else [self.id_field, *fields]

    def _record(self, item: Any) -> CrmRecord:
        if not isinstance(item, dict):
            raise MarketoError(CODE_PROTOCOL, f"{self.object_name}: a result that is not an object: {str(item)[:200]}")
        values = {k: v for k, v in item.items() if k != "seq"}
        return CrmRecord(id=values.get(self.id_field), values=values)

    def sync(
        self, records: Sequence[dict[str, Any]], dedupe_by: str = "dedupeFields", action: str = "createOrUpdate"
    ) -> list[RecordResult]:
        """Create or update by dedupe fields (or by id field, for updateOnly): one result per input, in order."""
        if dedupe_by not in DEDUPE_BY:
            raise ValueError(f"dedupe_by must be one of {DEDUPE_BY}, not {dedupe_by!r}")
        if action not in SYNC_ACTIONS:
            raise ValueError(f"action must be one of {SYNC_ACTIONS}, not {action!r}")

        def send(payloads: list[dict[str, Any]]) -> list[Any]:
            body = {"action": action, "dedupeBy": dedupe_by, "input": payloads}
            return self._t.call(f"{self._op}_sync", "POST", f"{self._path}.json", json=body).result

        return write_all(records, send, id_keys=(self.id_field, "id", "marketoGUID"))

    def delete(self, keys: Sequence[dict[str, Any]], delete_by: str = "dedupeFields") -> list[RecordResult]:
        """Delete by dedupe fields (e.g. [{"externalCompanyId": "..."}]) or by id field ([{"id": 5}])."""
        if delete_by not in DEDUPE_BY:
            raise ValueError(f"delete_by must be one of {DEDUPE_BY}, not {delete_by!r}")

        def send(payloads: list[dict[str, Any]]) -> list[Any]:
            body = {"deleteBy": delete_by, "input": payloads}
            return self._t.call(f"{self._op}_delete", "POST", f"{self._path}/delete.json", json=body).result

        return write_all(keys, send, id_keys=(self.id_field, "id", "marketoGUID"))

    def query(
        self, filter_type: str, values: Sequence[str | int], fields: Sequence[str] = (), batch_size: int = MAX_BATCH
    ) -> list[CrmRecord]:
        """Records whose `filter_type` field equals one of `values` (300 per call, every page)."""
        unique = list(dict.fromkeys(str(v) for v in values if v is not None and str(v) != ""))
        found: list[CrmRecord] = []
        for start in range(0, len(unique), MAX_BATCH):
            params = {
                "filterType": filter_type,
                "filterValues": unique[start : start + MAX_BATCH],
                "fields": self._with_id(fields),
                "batchSize": min(max(1, batch_size), MAX_BATCH),
            }
            for page in self._t.pages(f"{self._op}_query", f"{self._path}.json", params):
                found.extend(self._record(item) for item in page.result)
        return found

    def query_by_keys(self, keys: Sequence[dict[str, Any]], fields: Sequence[str] = ()) -> list[CrmRecord]:
        """Records matching compound dedupe keys (e.g. roles: externalOpportunityId + leadId + role), 300 per call."""
        found: list[CrmRecord] = []
        for start in range(0, len(keys), MAX_BATCH):
            body: dict[str, Any] = {"filterType": "dedupeFields", "input": list(keys[start : start + MAX_BATCH])}
            if fields:
                body["fields"] = self._with_id(fields)
            token: str | None = None
            while True:
                if token:
                    body["nextPageToken"] = token
                envelope = self._t.call(
                    f"{self._op}_query", "POST", f"{self._path}.json", params={"_method": "GET"}, json=body
                )
                found.extend(self._record(item) for item in envelope.result)
                if not has_more(envelope, token):
                    break
                token = envelope.next_page_token
        return found

    def describe(self) -> ObjectDescription:
        item = first_result(self._t.get(f"{self._op}_describe", f"{self._path}/describe.json"), "describe")
        return ObjectDescription(
            name=str(item.get("name") or item.get("apiName") or self.object_name),
            id_field=str(item.get("idField") or self.id_field),
            dedupe_fields=[str(f) for f in item.get("dedupeFields") or []],
            searchable_fields=[list(s) for s in item.get("searchableFields") or []],
            fields=[object_field(f) for f in item.get("fields") or [] if isinstance(f, dict)],
            relationships=list(item.get("relationships") or []),
        )


def list_custom_objects(transport: Transport, names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The custom object types (GET /rest/v1/customobjects.json), optionally only those named."""
    params = {"names": list(names) or None}
    return list(transport.get("custom_objects", "/rest/v1/customobjects.json", params).result)
