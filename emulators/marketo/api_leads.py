"""Identity, persons (leads), activities, partitions and usage: the REST handlers."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from emulators.marketo.activities import (
    ACTIVITY_TYPES,
    CHANGE_DATA_VALUE,
    DELETE_LEAD,
    NEW_LEAD,
    Activity,
    BadToken,
)
from emulators.marketo.clock import parse_datetime
from emulators.marketo.errors import RequestError
from emulators.marketo.persons import DEFAULT_FIELDS
from emulators.marketo.state import API_USER, MarketoState
from emulators.marketo.web import Call, Router, json_response

MAX_ACTIVITY_TYPES = 10
MAX_LEAD_IDS = 30


async def identity(request: Request, state: MarketoState) -> Response:
    """GET or POST /identity/oauth/token, parameters in the query or a form body."""
    params = dict(parse_qsl(request.scope["query_string"].decode("latin-1")))
    if request.method == "POST":
        body = await request.body()
        if "form" in request.headers.get("content-type", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace")))
    elif request.method != "GET":
        return json_response({"error": "method_not_allowed", "error_description": "Use GET or POST"}, 405)
    if params.get("grant_type") != "client_credentials":
        return json_response(
            {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}, 400
        )  # (unverified) shape
    if params.get("client_id") != state.client_id or params.get("client_secret") != state.client_secret:
        return json_response({"error": "invalid_client", "error_description": "Bad client credentials"}, 401)
    token, remaining = state.tokens.grant()
    return json_response({"access_token": token, "token_type": "bearer", "expires_in": remaining, "scope": API_USER})


def _fields(call: Call) -> list[str]:
    fields = call.array("fields") or list(DEFAULT_FIELDS)
    call.state.persons.check_fields(fields)
    return fields


def _batch_size(call: Call, default: int = 300) -> int:
    size = call.int_param("batchSize", default) or default
    if size < 1 or size > call.state.config.max_batch:
        raise RequestError("1003", f"Invalid batchSize '{size}': must be between 1 and {call.state.config.max_batch}")
    return size


def input_records(call: Call, body: dict[str, Any]) -> list[Any]:
    records = body.get("input")
    if records is None:
        raise RequestError("701", "input cannot be blank")
    if not isinstance(records, list):
        raise RequestError("1003", "Invalid data: input must be an array")
    if len(records) > call.state.config.max_batch:
        raise RequestError("1003", f"Too many records in input: {len(records)}, max {call.state.config.max_batch}")
    call.records = len(records)
    return records


async def get_lead(call: Call) -> dict[str, Any]:
    persons = call.state.persons
    try:
        ident = int(call.path_args["id"])
    except ValueError:
        raise RequestError("1001", f"Invalid value '{call.path_args['id']}'. Required of type 'integer'") from None
    fields = _fields(call)
    result = [persons.render(ident, fields, call.state.config.omit_null_fields)] if ident in persons.persons else []
    return {"result": result}


def _page_token(offset: int, filter_type: str) -> str:
    return base64.b32encode(orjson.dumps({"o": offset, "f": filter_type})).decode()


def _page_offset(token: str | None, filter_type: str) -> int:
    if not token:
        return 0
    try:
        data = orjson.loads(base64.b32decode(token + "=" * (-len(token) % 8)))
        if data["f"] == filter_type:
            return int(data["o"])
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        pass
    raise RequestError("1003", f"Invalid nextPageToken '{token}'")


async def get_leads(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads.json?filterType=..&filterValues=..: 300 values, paging by nextPageToken."""
    state = call.state
    filter_type = call.param("filterType")
    if not filter_type:
        raise RequestError("701", "filterType cannot be blank")
    values = call.array("filterValues")
    if not values:
        raise RequestError("701", "filterValues cannot be blank")
    if len(values) > state.config.max_batch:
        raise RequestError("1003", f"Too many filterValues: {len(values)}, max {state.config.max_batch}")
    fields = _fields(call)
    size = _batch_size(call)
    ids = state.persons.filter(filter_type, values, state.config.max_filter_matches)
    offset = _page_offset(call.param("nextPageToken"), filter_type)
    page = ids[offset : offset + size]
    call.records = len(page)
    omit = state.config.omit_null_fields
    payload: dict[str, Any] = {"result": [state.persons.render(ident, fields, omit) for ident in page]}
    if offset + size < len(ids):
        payload["nextPageToken"] = _page_token(offset + size, filter_type)
        payload["moreResult"] = True
    return payload


async def sync_leads(call: Call) -> dict[str, Any]:
    body = call.json_object()
    records = input_records(call, body)
    result = call.state.persons.sync(
        records,
        action=body.get("action") or "createOrUpdate",
        lookup_field=body.get("lookupField") or "email",
        partition_name=body.get("partitionName"),
    )
    return {"result": result}


async def delete_leads(call: Call) -> dict[str, Any]:
    """POST /rest/v1/leads/delete.json {"input":[{"id":..}]} (or ?id=1,2), and DELETE /rest/v1/leads.json."""
    ids: list[Any] = list(call.array("id"))
    if not ids:
        body = call.json_object()
        ids = [item.get("id") if isinstance(item, dict) else None for item in input_records(call, body)]
    if len(ids) > call.state.config.max_batch:
        raise RequestError("1003", f"Too many records in input: {len(ids)}, max {call.state.config.max_batch}")
    call.records = len(ids)
    result: list[dict[str, Any]] = []
    for raw in ids:
        try:
            ident = int(raw)
        except (TypeError, ValueError):
            result.append({"status": "skipped", "reasons": [{"code": "1003", "message": "Invalid data"}]})
            continue
        if call.state.persons.delete(ident):
            result.append({"id": ident, "status": "deleted"})
        else:
            result.append(
                {"id": ident, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}
            )
    return {"result": result}


async def describe(call: Call) -> dict[str, Any]:
    return {"result": [definition.describe() for definition in call.state.schema.fields.values()]}


async def describe2(call: Call) -> dict[str, Any]:
    schema = call.state.schema
    return {
        "result": [
            {
                "name": "API Lead",
                "searchableFields": [[name] for name in schema.searchable()],
                "fields": [definition.describe2() for definition in schema.fields.values()],
            }
        ]
    }


async def schema_fields(call: Call) -> dict[str, Any]:
    return {"result": [definition.schema_field() for definition in call.state.schema.fields.values()]}


async def schema_field(call: Call) -> dict[str, Any]:
    definition = call.state.schema.get(call.path_args["name"])
    if definition is None:
        raise RequestError("1006", f"Field '{call.path_args['name']}' not found")
    return {"result": [definition.schema_field()]}


async def merge(call: Call) -> dict[str, Any]:
    """POST /rest/v1/leads/{id}/merge.json?leadId=..|leadIds=a,b: success, no result."""
    try:
        winner = int(call.path_args["id"])
        losers = [int(value) for value in call.array("leadIds") or call.array("leadId")]
    except ValueError:
        raise RequestError("1003", "Invalid lead id") from None
    if not losers:
        raise RequestError("701", "leadId cannot be blank")
    call.state.persons.merge(winner, losers)
    return {}


async def partitions(call: Call) -> dict[str, Any]:
    return {"result": [partition.as_dict() for partition in call.state.persons.partitions]}


async def paging_token(call: Call) -> dict[str, Any]:
    since = call.param("sinceDatetime")
    if not since:
        raise RequestError("701", "sinceDatetime cannot be blank")
    try:
        moment = parse_datetime(since)
    except ValueError:
        raise RequestError("704", "Invalid date format") from None
    return {"nextPageToken": call.state.log.token_since(moment)}


def _activity_page(call: Call, keep: Any, render: Any) -> dict[str, Any]:
    state = call.state
    token = call.param("nextPageToken")
    if not token:
        raise RequestError("701", "nextPageToken cannot be blank")
    size = _batch_size(call)
    config = state.config
    try:
        page = state.log.page(
            token, size, keep, config.activity_scan_limit, config.short_page_every, config.empty_page_every
        )
    except BadToken as problem:
        raise RequestError("1003", str(problem)) from None
    call.records = len(page.activities)
    return {
        "result": [render(activity) for activity in page.activities],
        "nextPageToken": page.next_token,
        "moreResult": page.more,
    }


def _lead_filter(call: Call) -> set[int] | None:
    if call.param("listId"):
        raise RequestError("1003", f"Static list '{call.param('listId')}' not found")  # no lists here
    raw = call.array("leadIds")
    if not raw:
        return None
    if len(raw) > MAX_LEAD_IDS:
        raise RequestError("1003", f"Too many leadIds: {len(raw)}, max {MAX_LEAD_IDS}")
    try:
        return {int(value) for value in raw}
    except ValueError:
        raise RequestError("1003", "Invalid leadIds") from None


def _alive(call: Call) -> Any:
    persons = call.state.persons.persons

    def alive(activity: Activity) -> bool:
        # A deleted person's activities are gone with it, except its Delete Lead activity.
        return activity.lead_id in persons or activity.type_id == DELETE_LEAD

    return alive


async def activities(call: Call) -> dict[str, Any]:
    raw_types = call.array("activityTypeIds")
    if not raw_types:
        raise RequestError("701", "activityTypeIds cannot be blank")
    if len(raw_types) > MAX_ACTIVITY_TYPES:
        raise RequestError("1003", f"Too many activityTypeIds: {len(raw_types)}, max {MAX_ACTIVITY_TYPES}")
    try:
        types = {int(value) for value in raw_types}
    except ValueError:
        raise RequestError("1003", "Invalid activityTypeIds") from None
    leads = _lead_filter(call)
    alive = _alive(call)

    def keep(activity: Activity) -> bool:
        return activity.type_id in types and (leads is None or activity.lead_id in leads) and alive(activity)

    return _activity_page(call, keep, Activity.as_activity)


async def lead_changes(call: Call) -> dict[str, Any]:
    fields = call.array("fields")
    if not fields:
        raise RequestError("701", "fields cannot be blank")
    call.state.persons.check_fields(fields)
    wanted = set(fields)
    leads = _lead_filter(call)
    alive = _alive(call)

    def keep(activity: Activity) -> bool:
        if activity.type_id == CHANGE_DATA_VALUE:
            if activity.field not in wanted:
                return False
        elif activity.type_id != NEW_LEAD:
            return False
        return (leads is None or activity.lead_id in leads) and alive(activity)

    return _activity_page(call, keep, Activity.as_lead_change)


async def deleted_leads(call: Call) -> dict[str, Any]:
    horizon = call.state.clock.now() - call.state.config.deleted_retention_days * 86400

    def keep(activity: Activity) -> bool:
        return activity.type_id == DELETE_LEAD and activity.date >= horizon

    return _activity_page(call, keep, Activity.as_activity)


async def activity_types(call: Call) -> dict[str, Any]:
    return {"result": ACTIVITY_TYPES}


async def usage(call: Call) -> dict[str, Any]:
    gate = call.state.gate
    today = call.state.clock.central_date()
    total = gate.usage[today]
    return {"result": [{"date": today.isoformat(), "total": total, "users": [{"userId": API_USER, "count": total}]}]}


async def usage_last7(call: Call) -> dict[str, Any]:
    gate = call.state.gate
    days = sorted(gate.usage, reverse=True)[:7]
    return {
        "result": [
            {
                "date": day.isoformat(),
                "total": gate.usage[day],
                "users": [{"userId": API_USER, "count": gate.usage[day]}],
            }
            for day in days
        ]
    }


def add_routes(router: Router) -> None:
    router.add("GET", "/rest/v1/lead/{id}.json", get_lead)
    router.add("GET", "/rest/v1/leads.json", get_leads)
    router.add("POST", "/rest/v1/leads.json", sync_leads)
    router.add("DELETE", "/rest/v1/leads.json", delete_leads)
    router.add("POST", "/rest/v1/leads/delete.json", delete_leads)
    router.add("GET", "/rest/v1/leads/describe.json", describe)
    router.add("GET", "/rest/v1/leads/describe2.json", describe2)
    router.add("GET", "/rest/v1/leads/schema/fields.json", schema_fields)
    router.add("GET", "/rest/v1/leads/schema/fields/{name}.json", schema_field)
    router.add("GET", "/rest/v1/leads/partitions.json", partitions)
    router.add("POST", "/rest/v1/leads/{id}/merge.json", merge)
    router.add("GET", "/rest/v1/activities/pagingtoken.json", paging_token)
    router.add("GET", "/rest/v1/activities.json", activities)
    router.add("GET", "/rest/v1/activities/leadchanges.json", lead_changes)
    router.add("GET", "/rest/v1/activities/deletedleads.json", deleted_leads)
    router.add("GET", "/rest/v1/activities/types.json", activity_types)
    router.add("GET", "/rest/v1/stats/usage.json", usage)
    router.add("GET", "/rest/v1/stats/usage/last7days.json", usage_last7)
