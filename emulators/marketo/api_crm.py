"""Handlers for companies, opportunities, opportunity roles, sales persons and custom objects."""

from __future__ import annotations

from typing import Any

from emulators.marketo.api_leads import input_records
from emulators.marketo.errors import RequestError
from emulators.marketo.web import Call, Router

STANDARD = ("companies", "opportunities", "opportunities/roles", "salespersons")


def _store(call: Call, name: str | None) -> Any:
    if name is None:
        return call.state.crm.store(call.path_args["name"], custom=True)
    return call.state.crm.store(name)


def _describe(name: str | None) -> Any:
    async def handler(call: Call) -> dict[str, Any]:
        return {"result": [_store(call, name).kind.describe()]}

    return handler


def _sync(name: str | None) -> Any:
    async def handler(call: Call) -> dict[str, Any]:
        body = call.json_object()
        records = input_records(call, body)
        store = _store(call, name)
        result = call.state.crm.sync(
            store,
            records,
            body.get("action") or "createOrUpdate",
            body.get("dedupeBy") or "dedupeFields",
            call.state.persons.persons,
        )
        return {"result": result}

    return handler


async def _query_body(call: Call, name: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """POST ..?_method=GET with a JSON body: compound keys in `input`, or filterValues."""
    filter_type = body.get("filterType")
    if not filter_type:
        raise RequestError("701", "filterType cannot be blank")
    values = body.get("input") if body.get("input") is not None else body.get("filterValues")
    if isinstance(values, str):
        values = [part.strip() for part in values.split(",") if part.strip()]
    if not values:
        blank = "input" if filter_type == "dedupeFields" else "filterValues"
        raise RequestError("701", f"{blank} cannot be blank")
    if filter_type != "dedupeFields":
        # `input` may hold objects naming the filter field, e.g. [{"marketoGUID": ".."}] (as some clients send)
        key = _store(call, name).kind.id_field if filter_type == "idField" else filter_type
        values = [item.get(key) if isinstance(item, dict) else item for item in values]
    fields = body.get("fields")
    if isinstance(fields, str):
        fields = [part.strip() for part in fields.split(",") if part.strip()]
    store = _store(call, name)
    result = call.state.crm.query(store, filter_type, values, fields, call.state.config.max_batch)
    call.records = len(result)
    return {"result": result}


def _query(name: str | None) -> Any:
    async def handler(call: Call) -> dict[str, Any]:
        if call.request.method == "POST" and call.body and "json" in call.request.headers.get("content-type", ""):
            return await _query_body(call, name, call.json_object())
        filter_type = call.param("filterType")
        if not filter_type:
            raise RequestError("701", "filterType cannot be blank")
        values = call.array("filterValues")
        if not values:
            raise RequestError("701", "filterValues cannot be blank")
        store = _store(call, name)
        fields = call.array("fields") or None
        result = call.state.crm.query(store, filter_type, values, fields, call.state.config.max_batch)
        size = call.int_param("batchSize", 300) or 300
        offset = (call.int_param("nextPageToken") or 0) if (call.param("nextPageToken") or "").isdigit() else 0
        page = result[offset : offset + size]
        call.records = len(page)
        payload: dict[str, Any] = {"result": page}
        if offset + size < len(result):
            payload["nextPageToken"] = str(offset + size)
            payload["moreResult"] = True
        return payload

    return handler


def _delete(name: str | None) -> Any:
    async def handler(call: Call) -> dict[str, Any]:
        body = call.json_object()
        records = input_records(call, body)
        store = _store(call, name)
        deleted = call.state.crm.delete(store, records, body.get("deleteBy") or "dedupeFields", call.state.persons)
        return {"result": deleted}

    return handler


async def list_custom(call: Call) -> dict[str, Any]:
    names = set(call.array("names"))
    kinds = [kind for kind in call.state.crm.custom_types() if not names or kind.name in names]
    return {"result": [kind.meta() for kind in kinds]}


def add_routes(router: Router) -> None:
    for name in STANDARD:
        base = f"/rest/v1/{name}"
        router.add("GET", f"{base}/describe.json", _describe(name))
        router.add("POST", f"{base}/delete.json", _delete(name))
        router.add("GET", f"{base}.json", _query(name))
        router.add("POST", f"{base}.json", _sync(name))
    router.add("GET", "/rest/v1/customobjects.json", list_custom)
    router.add("GET", "/rest/v1/customobjects/{name}/describe.json", _describe(None))
    router.add("POST", "/rest/v1/customobjects/{name}/delete.json", _delete(None))
    router.add("GET", "/rest/v1/customobjects/{name}.json", _query(None))
    router.add("POST", "/rest/v1/customobjects/{name}.json", _sync(None))
