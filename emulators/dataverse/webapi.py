"""The Dataverse Web API (`/api/data/v9.2/...`) over the in-memory store: queries with paging and change
tracking, writes, bulk messages, QualifyLead. Transport-free: takes an ApiRequest, returns an ApiResponse, so
`$batch` can dispatch its parts through the same code."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson

from emulators.dataverse import errors
from emulators.dataverse.auth import AppRegistration
from emulators.dataverse.errors import DataverseFault
from emulators.dataverse.odata import (
    Expand,
    FilterCompiler,
    Prefer,
    format_datetime,
    parse_expand,
    parse_key_segment,
    parse_orderby,
    parse_prefer,
    parse_select,
    sort_key,
)
from emulators.dataverse.schema import CHOICE_TYPES, Table
from emulators.dataverse.store import Store, TableData
from emulators.dataverse.writes import (
    WriteContext,
    apply_body,
    check_keys,
    finish_row,
)

Row = dict[str, Any]
JSON_TYPE = "application/json; odata.metadata=minimal"
MAX_PAGE = 5000
SAFE_QUERY = ",()/'$"
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAV_NAME = "Microsoft.Dynamics.CRM.associatednavigationproperty"
ALLOWED_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$expand", "$count", "$skiptoken", "$deltatoken"}
_COOKIE_ATTR = re.compile(r'(\w+)="([^"]*)"')
_INNER_LAST = re.compile(r'last="\{?([0-9a-fA-F-]{36})\}?"')


@dataclass
class ApiRequest:
    method: str
    path: str  # below the service root, e.g. "leads(…)/Microsoft.Dynamics.CRM.QualifyLead"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    caller: AppRegistration
    base: str  # service root with trailing slash, e.g. "https://127.0.0.1:1234/api/data/v9.2/"
    content_ids: dict[str, str] = field(default_factory=dict)
    operation: str = ""  # what dispatch found this request to be (for the request log, also on errors)
    table: str = ""

    @property
    def prefer(self) -> Prefer:
        header = self.headers.get("prefer")
        return parse_prefer([header] if header else [])

    def json(self, entity_set: str) -> Any:
        if not self.body.strip():
            raise errors.payload_error(entity_set, "The request body is empty.")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise errors.payload_error(entity_set, f"Invalid JSON. {exc}") from exc


@dataclass
class ApiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    operation: str = ""
    table: str = ""
    records: int = 0  # rows returned or written, for the request log

    @staticmethod
    def json(status: int, payload: Any, headers: list[tuple[str, str]] | None = None, **kw: Any) -> ApiResponse:
        body = orjson.dumps(payload)
        return ApiResponse(
            status, [("Content-Type", JSON_TYPE), ("OData-Version", "4.0"), *(headers or [])], body, **kw
        )

    @staticmethod
    def empty(status: int = 204, headers: list[tuple[str, str]] | None = None, **kw: Any) -> ApiResponse:
        return ApiResponse(status, [("OData-Version", "4.0"), *(headers or [])], b"", **kw)


def fault_response(fault: DataverseFault) -> ApiResponse:
    headers = list(fault.headers.items())
    return ApiResponse.json(fault.status, fault.body(), headers, operation="error")


def _by_attribute(attribute: str, key: Callable[[Any], Any]) -> Callable[[Row], Any]:
    """The sort key of a row by one attribute's value."""
    return lambda row: key(row.get(attribute))


def split_path(path: str) -> list[str]:
    """Split on '/' outside parentheses and quotes (key values may hold '/')."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in path:
        if char == "'" and depth:
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "/" and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p != ""]


def _split_segment(segment: str) -> tuple[str, str | None]:
    match = re.fullmatch(r"([^()]+)(?:\((.*)\))?", segment)
    if not match:
        raise errors.query_error("Bad Request - Error in query syntax.")
    return match.group(1), match.group(2)


@dataclass
class Cookie:
    """Our $skiptoken: a paging cookie shaped like Dataverse's, carrying where the next page starts."""

    page: int = 1
    last: str | None = None  # primary key of the last row returned (primary-key order)
    offset: int = 0  # rows already returned ($orderby)
    version: int = 0  # change tracking: the version the deltaLink will carry
    tracking: bool = False
    since: int = 0  # delta reads: changes after this version ...
    until: int = 0  # ... up to this one
    phase: str = "u"  # delta reads: "u" rows, then "d" deletions
    position: int = 0  # delta reads: position in the change log

    def encode(self, primary_id: str) -> str:
        inner = f'<cookie page="{self.page - 1}"><{primary_id} last="{{{(self.last or "").upper()}}}" /></cookie>'
        paging = quote(quote(inner, safe=""), safe="")
        extra = ""
        if self.offset:
            extra += f' offset="{self.offset}"'
        if self.tracking:
            extra += f' version="{self.version}"'
        if self.until:
            extra += f' since="{self.since}" until="{self.until}" phase="{self.phase}" position="{self.position}"'
        tracking = "True" if self.tracking or self.until else "False"
        return f'<cookie pagenumber="{self.page}" pagingcookie="{paging}" istracking="{tracking}"{extra} />'

    @staticmethod
    def decode(text: str) -> Cookie:
        attrs = dict(_COOKIE_ATTR.findall(text))
        try:
            cookie = Cookie(
                page=int(attrs.get("pagenumber", "1")),
                offset=int(attrs.get("offset", "0")),
                version=int(attrs.get("version", "0")),
                tracking=attrs.get("istracking") == "True" and "version" in attrs,
                since=int(attrs.get("since", "0")),
                until=int(attrs.get("until", "0")),
                phase=attrs.get("phase", "u"),
                position=int(attrs.get("position", "0")),
            )
        except ValueError as exc:
            raise errors.query_error("The $skiptoken value is not valid.") from exc
        inner = unquote(unquote(attrs.get("pagingcookie", "")))
        match = _INNER_LAST.search(inner)
        if match:
            cookie.last = match.group(1).lower()
        return cookie


def _guess_operation(method: str, keyed: bool, rest: list[str], headers: dict[str, str]) -> str:
    if rest:
        return rest[0].removeprefix("Microsoft.Dynamics.CRM.") if rest[0].startswith("Microsoft.") else "Property"
    if method == "GET":
        if keyed:
            return "Retrieve"
        return "RetrieveEntityChanges" if "track-changes" in headers.get("prefer", "") else "RetrieveMultiple"
    if method == "POST":
        return "Create"
    if method == "PATCH":
        return "Update" if "if-match" in headers else "Upsert"
    return "Delete" if method == "DELETE" else method


class WebApi:
    """Serves one organization's Web API from `store`."""

    def __init__(self, store: Store, tables: dict[str, Table], clock: Callable[[], float]) -> None:
        self.store = store
        self.tables = tables
        self.clock = clock
        self.delta_expiry_seconds: float = 7 * 86400  # organization.expirechangetrackingindays (7 by default today)
        self.expired_before = 0.0  # delta tokens issued before this instant have expired (control)
        self.batch_handler: Callable[[ApiRequest], ApiResponse] | None = None
        self.metadata_handler: Callable[[ApiRequest, list[str]], ApiResponse] | None = None
        self.organization_id = str(uuid.uuid4())
        self.business_unit_id = str(uuid.uuid4())

    @property
    def entity_sets(self) -> dict[str, Table]:
        return {table.entity_set: table for table in self.tables.values()}

    def now_json(self) -> str:
        return format_datetime(datetime.fromtimestamp(self.clock(), UTC))

    # ------------------------------------------------------------------------------------------------------------
    # dispatch

    def handle(self, request: ApiRequest) -> ApiResponse:
        try:
            return self._dispatch(request)
        except DataverseFault as fault:
            response = fault_response(fault)
            response.operation = request.operation or "error"
            response.table = request.table
            return response

    def _dispatch(self, request: ApiRequest) -> ApiResponse:
        segments = split_path(request.path)
        if not segments:
            return self._service_document(request)
        first = segments[0]
        if first == "$batch" and len(segments) == 1:
            if request.method != "POST" or self.batch_handler is None:
                raise errors.method_not_allowed("The $batch endpoint only accepts POST.")
            return self.batch_handler(request)
        if first == "$metadata":
            from emulators.dataverse.metadata import csdl

            headers = [("Content-Type", "application/xml"), ("OData-Version", "4.0")]
            return ApiResponse(200, headers, csdl(self.tables), operation="$metadata")
        if first in ("WhoAmI", "WhoAmI()"):
            return ApiResponse.json(
                200,
                {
                    "@odata.context": f"{request.base}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": self.business_unit_id,
                    "UserId": request.caller.systemuser_id,
                    "OrganizationId": self.organization_id,
                },
                operation="WhoAmI",
            )
        name, key_text = _split_segment(first)
        if name in ("EntityDefinitions", "GlobalOptionSetDefinitions", "RelationshipDefinitions"):
            if self.metadata_handler is None:
                raise errors.segment_not_found(name)
            return self.metadata_handler(request, segments)
        table = self.entity_sets.get(name)
        if table is None:
            raise errors.segment_not_found(name)
        rest = segments[1:]
        request.table = table.logical_name
        request.operation = _guess_operation(request.method, key_text is not None, rest, request.headers)
        if key_text is None:
            if not rest:
                if request.method == "GET":
                    return self.retrieve_multiple(request, table)
                if request.method == "POST":
                    return self.create(request, table)
                raise errors.method_not_allowed(f"The HTTP method '{request.method}' is not allowed on '{name}'.")
            # Bound actions are named with their namespace; the unqualified name is accepted too (unverified).
            if len(rest) == 1 and request.method == "POST":
                action = rest[0].removeprefix("Microsoft.Dynamics.CRM.")
                if action in ("CreateMultiple", "UpdateMultiple", "UpsertMultiple"):
                    return self.bulk(request, table, action)
            raise errors.segment_not_found(rest[0])
        key = parse_key_segment(key_text)
        if key is None:
            raise errors.query_error("Bad Request - Error in query syntax.")
        if not rest:
            if request.method == "GET":
                return self.retrieve(request, table, key)
            if request.method == "PATCH":
                return self.update_or_upsert(request, table, key)
            if request.method == "DELETE":
                return self.delete(request, table, key)
            raise errors.method_not_allowed(f"The HTTP method '{request.method}' is not allowed on this resource.")
        qualify = rest in (["Microsoft.Dynamics.CRM.QualifyLead"], ["QualifyLead"])
        if qualify and table.logical_name == "lead" and request.method == "POST":
            return self.qualify_lead(request, table, key)
        return self.property_request(request, table, key, rest)

    def _service_document(self, request: ApiRequest) -> ApiResponse:
        value = [{"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set} for t in self.tables.values()]
        return ApiResponse.json(
            200, {"@odata.context": f"{request.base}$metadata", "value": value}, operation="service"
        )

    # ------------------------------------------------------------------------------------------------------------
    # reading

    def find(self, logical_name: str, key: str | dict[str, Any]) -> Row | None:
        data = self.store[logical_name]
        if isinstance(key, str):
            return data.rows.get(key)
        record_id = self._id_for_key(data, key)
        return None if record_id is None else data.rows.get(record_id)

    def _id_for_key(self, data: TableData, key: dict[str, Any]) -> str | None:
        table = data.table
        if set(key) == {table.primary_id}:
            value = key[table.primary_id]
            return value if isinstance(value, str) else None
        for name, columns in table.alternate_keys.items():
            if set(columns) == set(key):
                return data.find_by_key(name, tuple(key[c] for c in columns))
        raise errors.invalid_key(table.type_name)

    def project(
        self,
        table: Table,
        row: Row,
        select: list[str] | None,
        prefer: Prefer | None,
        expand: list[Expand] | None = None,
    ) -> Row:
        attributes = select or table.output_attributes
        out: Row = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        if prefer is None or not prefer.annotations:
            for attribute in attributes:
                out[attribute] = row.get(attribute)
        else:
            for attribute in attributes:
                value = row.get(attribute)
                if value is not None:
                    self._annotate(table, row, attribute, value, prefer, out)
                out[attribute] = value
        for item in expand or ():
            out[item.nav] = self._expanded(table, row, item, prefer)
        return out

    def _annotate(self, table: Table, row: Row, attribute: str, value: Any, prefer: Prefer, out: Row) -> None:
        column = table.attributes[attribute]
        if prefer.wants(FORMATTED):
            label = self._formatted(table, row, attribute, value)
            if label is not None:
                out[f"{attribute}@{FORMATTED}"] = label
        if column.is_lookup:
            target = row.get("~" + column.name) or column.targets[0]
            if prefer.wants(NAV_NAME):
                nav = next((n for n, t in column.nav.items() if t in (target, "principal")), column.name)
                out[f"{attribute}@{NAV_NAME}"] = nav
            if prefer.wants(LOOKUP_NAME):
                out[f"{attribute}@{LOOKUP_NAME}"] = target

    def _formatted(self, table: Table, row: Row, attribute: str, value: Any) -> str | None:
        column = table.attributes[attribute]
        if column.type in CHOICE_TYPES:
            return (column.options or {}).get(value, str(value))
        if column.type == "Boolean":
            return "Yes" if value else "No"
        if column.is_lookup:
            target = row.get("~" + column.name) or column.targets[0]
            other = self.store[target].rows.get(value) if target in self.store.data else None
            if other is None:
                return None
            return other.get(self.tables[target].primary_name)
        if column.type == "DateTime":
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return f"{moment.month}/{moment.day}/{moment.year} {moment.strftime('%I:%M %p').lstrip('0')}"
        if column.type == "Money":
            return f"${value:,.2f}"
        if column.type in ("Integer", "BigInt"):
            return f"{value:,}"
        return None

    def _expanded(self, table: Table, row: Row, item: Expand, prefer: Prefer | None) -> Row | None:
        ref = row.get(item.column.attribute)
        if ref is None:
            return None
        target = row.get("~" + item.column.name) or item.column.targets[0]
        if item.target not in ("principal", target):
            return None  # a Customer lookup pointing at the other table
        target_table = self.tables[target]
        other = self.store[target].rows.get(ref)
        if other is None:
            return None
        select = parse_select(target_table, item.select)
        out = self.project(target_table, other, select, prefer)
        if item.target == "principal":
            out = {"@odata.type": f"#{target_table.type_name}", **out}
        return out

    def _context(self, request: ApiRequest, table: Table, select_text: str | None, expand: list[Expand]) -> str:
        parts = [s.strip() for s in select_text.split(",")] if select_text else []
        parts += [f"{e.nav}({e.select or ''})" for e in expand]
        return f"{request.base}$metadata#{table.entity_set}" + (f"({','.join(parts)})" if parts else "")

    def retrieve(self, request: ApiRequest, table: Table, key: str | dict[str, Any]) -> ApiResponse:
        row = self.find(table.logical_name, key)
        if row is None:
            raise self._missing(table, key)
        self._check_options(request.query)
        select = parse_select(table, request.query.get("$select"))
        expand = parse_expand(table, request.query.get("$expand"))
        etag = f'W/"{row["versionnumber"]}"'
        if request.headers.get("if-none-match") == etag:
            return ApiResponse.empty(304, [("ETag", etag)], operation="Retrieve", table=table.logical_name)
        prefer = request.prefer
        body = {"@odata.context": self._context(request, table, request.query.get("$select"), expand) + "/$entity"}
        body.update(self.project(table, row, select, prefer, expand))
        headers = [("ETag", etag)]
        if prefer.annotations:
            headers.append(("Preference-Applied", f'odata.include-annotations="{",".join(prefer.annotations)}"'))
        return ApiResponse.json(200, body, headers, operation="Retrieve", table=table.logical_name, records=1)

    def _missing(self, table: Table, key: str | dict[str, Any]) -> DataverseFault:
        if isinstance(key, str):
            return errors.not_found(table.logical_name, key)
        if set(key) == {table.primary_id}:
            return errors.not_found(table.logical_name, str(key[table.primary_id]))
        return errors.not_found_by_key(table.logical_name, ",".join(f"{k}={v}" for k, v in key.items()))

    @staticmethod
    def _check_options(query: dict[str, str]) -> None:
        for name in query:
            if name == "$skip":
                raise errors.query_error("The query parameter $skip is not supported")  # (unverified) code
            if name.startswith("$") and name not in ALLOWED_OPTIONS:
                raise errors.query_error(f"The query parameter {name} is not supported")

    def retrieve_multiple(self, request: ApiRequest, table: Table) -> ApiResponse:
        query = request.query
        self._check_options(query)
        prefer = request.prefer
        data = self.store[table.logical_name]
        if "$deltatoken" in query:
            return self._delta(request, table, data, prefer)
        cookie = Cookie.decode(query["$skiptoken"]) if "$skiptoken" in query else None
        tracking = (prefer.track_changes or (cookie is not None and cookie.tracking)) and table.change_tracking
        if tracking:
            for option in ("$filter", "$orderby", "$top", "$expand"):
                if option in query:
                    raise errors.change_tracking_rejects(option)
        select = parse_select(table, query.get("$select"))
        expand = parse_expand(table, query.get("$expand"))
        predicate = None
        if "$filter" in query:
            predicate = FilterCompiler(table, self._related).compile(query["$filter"])
        orderby = parse_orderby(table, query.get("$orderby"))
        page_size = self._page_size(prefer)
        top = None
        if "$top" in query and prefer.max_page_size is None:  # $top is ignored when maxpagesize is sent
            try:
                top = int(query["$top"])
            except ValueError as exc:
                raise errors.query_error(f"Invalid value '{query['$top']}' for $top query option found.") from exc
            if top < 0:
                raise errors.query_error(f"Invalid value '{query['$top']}' for $top query option found.")
        limit = min(top, MAX_PAGE) if top is not None else page_size
        count = query.get("$count", "").lower() == "true"

        if orderby:
            matching = [row for row in data.rows.values() if predicate is None or predicate(row)]
            matching.sort(key=lambda r: r[table.primary_id])
            for attribute, descending in reversed(orderby):
                matching.sort(
                    key=_by_attribute(attribute, sort_key(table.attributes.get(attribute))), reverse=descending
                )
            offset = cookie.offset if cookie else 0
            page = matching[offset : offset + limit + 1]
            total = len(matching)
        else:
            page = []
            ids = (
                data.order.irange(minimum=cookie.last, inclusive=(False, True))
                if cookie and cookie.last
                else data.order
            )
            rows = data.rows
            for record_id in ids:
                row = rows[record_id]
                if predicate is None or predicate(row):
                    page.append(row)
                    if len(page) > limit:
                        break
            offset = 0
            total = -1
        more = len(page) > limit and top is None
        page = page[:limit]
        body: dict[str, Any] = {"@odata.context": self._context(request, table, query.get("$select"), expand)}
        if tracking:
            body["@odata.context"] += "/$delta"
        if count:
            if total < 0:
                total = sum(1 for r in data.rows.values() if predicate is None or predicate(r))
            body["@odata.count"] = min(total, MAX_PAGE)
        body["value"] = [self.project(table, row, select, prefer, expand) for row in page]
        snapshot = cookie.version if cookie and cookie.tracking else self.store.version
        if more:
            next_cookie = Cookie(
                page=(cookie.page if cookie else 1) + 1,
                last=page[-1][table.primary_id],
                offset=offset + len(page) if orderby else 0,
                version=snapshot,
                tracking=tracking,
            )
            body["@odata.nextLink"] = self._link(
                request, table, query, "$skiptoken", next_cookie.encode(table.primary_id)
            )
        elif tracking:
            body["@odata.deltaLink"] = self._link(
                request, table, {"$select": query.get("$select", "")}, "$deltatoken", self._delta_token(snapshot)
            )
        headers = self._applied(prefer, tracking, page_size)
        operation = "RetrieveEntityChanges" if tracking else "RetrieveMultiple"
        return ApiResponse.json(200, body, headers, operation=operation, table=table.logical_name, records=len(page))

    @staticmethod
    def _page_size(prefer: Prefer) -> int:
        size = prefer.max_page_size
        if size is None or size <= 0:
            return MAX_PAGE
        return min(size, MAX_PAGE)

    @staticmethod
    def _applied(prefer: Prefer, tracking: bool, page_size: int) -> list[tuple[str, str]]:
        applied = []
        if tracking:
            applied.append("odata.track-changes")
        if prefer.max_page_size is not None:
            applied.append(f"odata.maxpagesize={page_size}")
        if prefer.annotations:
            applied.append(f'odata.include-annotations="{",".join(prefer.annotations)}"')
        return [("Preference-Applied", ",".join(applied))] if applied else []

    def _related(self, logical_name: str, record_id: str) -> Row | None:
        return self.store[logical_name].rows.get(record_id) if logical_name in self.store.data else None

    @staticmethod
    def _link(request: ApiRequest, table: Table, query: dict[str, str], name: str, value: str) -> str:
        params = [f"{k}={quote(v, safe=SAFE_QUERY)}" for k, v in query.items() if v and k not in ("$skiptoken", name)]
        params.append(f"{name}={quote(value, safe='')}")
        return f"{request.base}{table.entity_set}?{'&'.join(params)}"

    # --- change tracking

    def _delta_token(self, version: int) -> str:
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%m/%d/%Y %H:%M:%S")
        return f"{version}!{stamp}"

    def _check_token(self, table: Table, data: TableData, token: str) -> int:
        match = re.fullmatch(r"(\d+)!(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)", token)
        if not match:
            raise errors.query_error(f"The delta token '{token}' is not valid.")  # (unverified)
        if not table.change_tracking:
            raise errors.change_tracking_disabled(table.logical_name)
        version = int(match.group(1))
        issued = datetime.strptime(match.group(2), "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC).timestamp()
        if issued < self.clock() - self.delta_expiry_seconds or issued < self.expired_before - 1:
            raise errors.expired_version_stamp()
        if version < data.tracking_since or version > self.store.version:
            raise errors.expired_version_stamp()
        return version

    def _delta(self, request: ApiRequest, table: Table, data: TableData, prefer: Prefer) -> ApiResponse:
        query = request.query
        for option in ("$filter", "$orderby", "$top", "$expand"):
            if option in query:
                raise errors.change_tracking_rejects(option)
        since = self._check_token(table, data, query["$deltatoken"])
        select = parse_select(table, query.get("$select"))
        cookie = Cookie.decode(query["$skiptoken"]) if "$skiptoken" in query else None
        if cookie is None or not cookie.until:
            cookie = Cookie(since=since, until=self.store.version, phase="u", position=-1, page=1)
        page_size = self._page_size(prefer)
        import bisect

        start = bisect.bisect_right(data.log_versions, cookie.since)
        stop = bisect.bisect_right(data.log_versions, cookie.until)
        items: list[tuple[str, int, str]] = []  # (phase, position, id)
        for phase in ("u", "d"):
            if phase == "u" and cookie.phase == "d":
                continue
            begin = cookie.position + 1 if phase == cookie.phase and cookie.position >= start else start
            for position, record_id in self._latest_changes(data, begin, stop, deleted=phase == "d"):
                items.append((phase, position, record_id))
                if len(items) > page_size:
                    break
            if len(items) > page_size:
                break
        more = len(items) > page_size
        items = items[:page_size]
        base_context = f"{request.base}$metadata#{table.entity_set}"
        values: list[Row] = []
        for phase, _position, record_id in items:
            if phase == "u":
                values.append(self.project(table, data.rows[record_id], select, prefer))
            else:
                values.append(
                    {"@odata.context": f"{base_context}/$deletedEntity", "id": record_id, "reason": "deleted"}
                )
        body: dict[str, Any] = {"@odata.context": self._context(request, table, query.get("$select"), []) + "/$delta"}
        body["value"] = values
        if more:
            last_phase, last_position, _ = items[-1]
            cookie = Cookie(
                page=cookie.page + 1, since=cookie.since, until=cookie.until, phase=last_phase, position=last_position
            )
            body["@odata.nextLink"] = self._link(request, table, query, "$skiptoken", cookie.encode(table.primary_id))
        else:
            body["@odata.deltaLink"] = self._link(
                request, table, {"$select": query.get("$select", "")}, "$deltatoken", self._delta_token(cookie.until)
            )
        headers = self._applied(prefer, True, page_size)
        return ApiResponse.json(
            200, body, headers, operation="RetrieveEntityChanges", table=table.logical_name, records=len(values)
        )

    @staticmethod
    def _latest_changes(data: TableData, begin: int, stop: int, *, deleted: bool) -> Iterator[tuple[int, str]]:
        versions, ids, rows, tombstones = data.log_versions, data.log_ids, data.rows, data.tombstones
        for position in range(begin, stop):
            record_id = ids[position]
            row = rows.get(record_id)
            if deleted:
                if row is None and tombstones.get(record_id) == versions[position]:
                    yield position, record_id
            elif row is not None and row["versionnumber"] == versions[position]:
                yield position, record_id

    # ------------------------------------------------------------------------------------------------------------
    # writing

    def write_context(self, request: ApiRequest) -> WriteContext:
        return WriteContext(
            tables=self.tables,
            entity_sets=self.entity_sets,
            find=self.find,
            content_ids=request.content_ids,
            caller_user_id=request.caller.systemuser_id,
            now=self.now_json(),
        )

    def _check_writable(self, table: Table, message: str) -> None:
        if table.read_only:
            # (unverified) code and text for messages an intersect table does not support
            raise errors.bad_request(
                f"The '{message}' method does not support entities of type '{table.logical_name}'.", code="0x80040800"
            )

    def create_row(self, ctx: WriteContext, table: Table, body: Any) -> Row:
        self._check_writable(table, "Create")
        row: Row = {}
        touched = apply_body(ctx, table, body, row, creating=True, record_id=None)
        record_id = row.get(table.primary_id) or self._new_id()
        row[table.primary_id] = record_id
        data = self.store[table.logical_name]
        if record_id in data.rows:
            raise errors.duplicate_key()
        finish_row(ctx, table, None, row, touched)
        check_keys(data.find_by_key, table, row)
        self.store.put(table.logical_name, row)
        self._after_write(ctx, table, None, row)
        return row

    def update_row(self, ctx: WriteContext, table: Table, old: Row, body: Any) -> Row:
        self._check_writable(table, "Update")
        row = dict(old)
        record_id = old[table.primary_id]
        touched = apply_body(ctx, table, body, row, creating=False, record_id=record_id)
        finish_row(ctx, table, old, row, touched)
        check_keys(self.store[table.logical_name].find_by_key, table, row)
        self.store.put(table.logical_name, row)
        self._after_write(ctx, table, old, row)
        return row

    def _after_write(self, ctx: WriteContext, table: Table, old: Row | None, row: Row) -> None:
        if table.logical_name == "connection" and old is None and row.get("_relatedconnectionid_value") is None:
            self._reciprocal_connection(ctx, table, row)

    def _reciprocal_connection(self, ctx: WriteContext, table: Table, row: Row) -> None:
        """Dataverse creates the reverse connection with every connection."""
        other = dict(row)
        other["connectionid"] = self._new_id()
        for a, b in (("record1id", "record2id"), ("record1roleid", "record2roleid")):
            other[f"_{a}_value"], other[f"_{b}_value"] = row.get(f"_{b}_value"), row.get(f"_{a}_value")
            other["~" + a], other["~" + b] = row.get("~" + b), row.get("~" + a)
        other["ismaster"] = False
        other["_relatedconnectionid_value"] = row["connectionid"]
        other["~relatedconnectionid"] = "connection"
        row["_relatedconnectionid_value"] = other["connectionid"]
        row["~relatedconnectionid"] = "connection"
        row["ismaster"] = True
        self.store.put("connection", other)
        self.store.put("connection", row)

    def _new_id(self) -> str:
        return self.store.new_id()

    def _entity_id_header(self, request: ApiRequest, table: Table, record_id: str) -> tuple[str, str]:
        return ("OData-EntityId", f"{request.base}{table.entity_set}({record_id})")

    def _representation(self, request: ApiRequest, table: Table, row: Row, status: int, operation: str) -> ApiResponse:
        select = parse_select(table, request.query.get("$select"))
        expand = parse_expand(table, request.query.get("$expand"))
        prefer = request.prefer
        body = {"@odata.context": self._context(request, table, request.query.get("$select"), expand) + "/$entity"}
        body.update(self.project(table, row, select, prefer, expand))
        headers = [
            ("Preference-Applied", "return=representation"),
            self._entity_id_header(request, table, row[table.primary_id]),
            ("ETag", f'W/"{row["versionnumber"]}"'),
        ]
        return ApiResponse.json(status, body, headers, operation=operation, table=table.logical_name, records=1)

    def create(self, request: ApiRequest, table: Table) -> ApiResponse:
        body = request.json(table.entity_set)
        with self.store.transaction():
            row = self.create_row(self.write_context(request), table, body)
        if request.prefer.return_representation:
            return self._representation(request, table, row, 201, "Create")
        return ApiResponse.empty(
            204,
            [self._entity_id_header(request, table, row[table.primary_id])],
            operation="Create",
            table=table.logical_name,
            records=1,
        )

    def update_or_upsert(self, request: ApiRequest, table: Table, key: str | dict[str, Any]) -> ApiResponse:
        body = request.json(table.entity_set)
        if_match = request.headers.get("if-match")
        if_none_match = request.headers.get("if-none-match")
        ctx = self.write_context(request)
        with self.store.transaction():
            old = self.find(table.logical_name, key)
            if old is None:
                if if_match is not None:
                    raise self._missing(table, key)
                body = dict(body) if isinstance(body, dict) else body
                if isinstance(body, dict):
                    self._key_into_body(table, key, body)
                row = self.create_row(ctx, table, body)
                created = True
            else:
                if if_none_match == "*":
                    raise errors.duplicate_key()
                if if_match not in (None, "*") and if_match != f'W/"{old["versionnumber"]}"':
                    raise errors.version_mismatch()
                row = self.update_row(ctx, table, old, body)
                created = False
        operation = "Upsert" if if_match is None else "Update"
        if request.prefer.return_representation:
            return self._representation(request, table, row, 201 if created else 200, operation)
        return ApiResponse.empty(
            204,
            [self._entity_id_header(request, table, row[table.primary_id])],
            operation=operation,
            table=table.logical_name,
            records=1,
        )

    @staticmethod
    def _key_into_body(table: Table, key: str | dict[str, Any], body: dict[str, Any]) -> None:
        """An upsert that creates takes its key values from the URL."""
        if isinstance(key, str):
            body[table.primary_id] = key
            return
        for name, value in key.items():
            column = table.columns.get(name)
            if column is not None and name not in body:
                body[name] = value

    def delete(self, request: ApiRequest, table: Table, key: str | dict[str, Any]) -> ApiResponse:
        self._check_writable(table, "Delete")
        row = self.find(table.logical_name, key)
        if row is None:
            raise self._missing(table, key)
        if_match = request.headers.get("if-match")
        if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
            raise errors.version_mismatch()
        with self.store.transaction():
            self.store.delete(table.logical_name, row[table.primary_id])
            related = row.get("_relatedconnectionid_value") if table.logical_name == "connection" else None
            if related is not None:
                self.store.delete("connection", related)  # a connection and its reciprocal go together
        return ApiResponse.empty(204, operation="Delete", table=table.logical_name, records=1)

    def property_request(
        self, request: ApiRequest, table: Table, key: str | dict[str, Any], rest: list[str]
    ) -> ApiResponse:
        row = self.find(table.logical_name, key)
        if row is None:
            raise self._missing(table, key)
        name = rest[0]
        if len(rest) == 2 and rest[1] == "$ref" and name in table.nav_props and request.method == "DELETE":
            with self.store.transaction():
                self.update_row(self.write_context(request), table, row, {f"{name}@odata.bind": None})
            return ApiResponse.empty(204, operation="Disassociate", table=table.logical_name)
        if len(rest) == 2 and rest[1] == "$ref" and name in table.nav_props and request.method == "PUT":
            target = request.json(table.entity_set)
            reference = target.get("@odata.id") if isinstance(target, dict) else None
            with self.store.transaction():
                self.update_row(self.write_context(request), table, row, {f"{name}@odata.bind": reference})
            return ApiResponse.empty(204, operation="Associate", table=table.logical_name)
        if len(rest) != 1 or name not in table.attributes:
            raise errors.segment_not_found(name)
        if request.method == "GET":
            value = row.get(name)
            if value is None:
                return ApiResponse.empty(204, operation="Retrieve", table=table.logical_name)
            context = f"{request.base}$metadata#{table.entity_set}({row[table.primary_id]})/{name}"
            return ApiResponse.json(
                200, {"@odata.context": context, "value": value}, operation="Retrieve", table=table.logical_name
            )
        if request.method in ("PUT", "DELETE"):
            value = None
            if request.method == "PUT":
                payload = request.json(table.entity_set)
                value = payload.get("value") if isinstance(payload, dict) else None
            with self.store.transaction():
                self.update_row(self.write_context(request), table, row, {name: value})
            return ApiResponse.empty(204, operation="Update", table=table.logical_name, records=1)
        raise errors.method_not_allowed(f"The HTTP method '{request.method}' is not allowed on this property.")

    # --- bulk messages

    def bulk(self, request: ApiRequest, table: Table, action: str) -> ApiResponse:
        self._check_writable(table, action)
        payload = request.json(table.entity_set)
        targets = payload.get("Targets") if isinstance(payload, dict) else None
        if not isinstance(targets, list):
            raise errors.query_error(
                f"The parameter 'Targets' of the action '{action}' is missing or not a collection."
            )
        if not targets:
            raise errors.bad_request(f"The Targets collection of {action} is empty.")  # (unverified)
        ctx = self.write_context(request)
        ids: list[str] = []
        created_flags: list[bool] = []
        data = self.store[table.logical_name]
        with self.store.transaction():  # one failing target rolls back the whole call (standard tables)
            for target in targets:
                if not isinstance(target, dict):
                    raise errors.payload_error(table.entity_set, "Each target must be a JSON object.")
                body = {k: v for k, v in target.items() if k != "@odata.id"}
                if action == "CreateMultiple":
                    ids.append(self.create_row(ctx, table, body)[table.primary_id])
                    continue
                key = self._target_key(ctx, table, target)
                if key is None:
                    if action == "UpdateMultiple":
                        raise errors.bad_request(
                            f"The primary key '{table.primary_id}' is required for UpdateMultiple."
                        )
                    row = self.create_row(ctx, table, body)
                    created_flags.append(True)
                else:
                    old = self.find(table.logical_name, key)
                    if old is None:
                        if action == "UpdateMultiple":
                            raise self._missing(table, key)
                        self._key_into_body(table, key, body)
                        row = self.create_row(ctx, table, body)
                        created_flags.append(True)
                    else:
                        row = self.update_row(ctx, table, old, body)
                        created_flags.append(False)
                ids.append(row[table.primary_id])
        del data
        if action == "CreateMultiple":
            context = f"{request.base}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
            return ApiResponse.json(
                200,
                {"@odata.context": context, "Ids": ids},
                operation=action,
                table=table.logical_name,
                records=len(ids),
            )
        if action == "UpsertMultiple":
            # (unverified) response body: the ids, plus whether each target was created
            context = f"{request.base}$metadata#Microsoft.Dynamics.CRM.UpsertMultipleResponse"
            results = [
                {
                    "RecordCreated": created,
                    "Target": {"@odata.type": f"#{table.type_name}", table.primary_id: record_id},
                }
                for record_id, created in zip(ids, created_flags, strict=True)
            ]
            return ApiResponse.json(
                200,
                {"@odata.context": context, "Ids": ids, "Results": results},
                operation=action,
                table=table.logical_name,
                records=len(ids),
            )
        return ApiResponse.empty(204, operation=action, table=table.logical_name, records=len(ids))

    def _target_key(self, ctx: WriteContext, table: Table, target: Row) -> str | dict[str, Any] | None:
        reference = target.get("@odata.id")
        if isinstance(reference, str):
            match = re.match(r"^(?:.*/)?([A-Za-z0-9_]+)\((.*)\)$", reference)
            if not match or match.group(1) != table.entity_set:
                raise errors.payload_error(
                    table.entity_set, f"The @odata.id '{reference}' does not address a {table.logical_name}."
                )
            key = parse_key_segment(match.group(2))
            if key is None:
                raise errors.query_error("Bad Request - Error in query syntax.")
            return key
        value = target.get(table.primary_id)
        if isinstance(value, str):
            return value.lower()
        return None

    # --- QualifyLead

    def qualify_lead(self, request: ApiRequest, table: Table, key: str | dict[str, Any]) -> ApiResponse:
        lead = self.find("lead", key)
        if lead is None:
            raise self._missing(table, key)
        params = request.json(table.entity_set)
        if not isinstance(params, dict) or "CreateAccount" not in params or "CreateContact" not in params:
            raise errors.query_error(
                "The parameters 'CreateAccount', 'CreateContact', 'CreateOpportunity' and 'Status' are required."
            )
        status = params.get("Status", 3)
        if status not in (self.tables["lead"].columns["statuscode"].status_state or {}) or status != 3:
            raise errors.option_out_of_range("statuscode", "lead", status, [3])  # a qualified lead's status
        if lead.get("statecode") != 0:
            # (unverified) code and text
            raise errors.bad_request(
                "The lead is closed. You cannot convert or qualify a lead that is already closed.", code="0x8004d26b"
            )
        ctx = self.write_context(request)
        created: list[Row] = []
        lead_ref = f"/leads({lead['leadid']})"
        with self.store.transaction():
            account = contact = opportunity = None
            if params.get("CreateAccount"):
                if not lead.get("companyname"):
                    raise errors.bad_request(
                        "Cannot create an account from a lead without a company name."
                    )  # (unverified)
                account = self.create_row(
                    ctx,
                    self.tables["account"],
                    {
                        "name": lead["companyname"],
                        "telephone1": lead.get("telephone1"),
                        "websiteurl": lead.get("websiteurl"),
                        "originatingleadid@odata.bind": lead_ref,
                    },
                )
                created.append({"@odata.type": "#Microsoft.Dynamics.CRM.account", "accountid": account["accountid"]})
            if params.get("CreateContact"):
                body = {
                    "firstname": lead.get("firstname"),
                    "lastname": lead.get("lastname"),
                    "emailaddress1": lead.get("emailaddress1"),
                    "jobtitle": lead.get("jobtitle"),
                    "telephone1": lead.get("telephone1"),
                    "mobilephone": lead.get("mobilephone"),
                    "originatingleadid@odata.bind": lead_ref,
                }
                if account is not None:
                    body["parentcustomerid_account@odata.bind"] = f"/accounts({account['accountid']})"
                contact = self.create_row(ctx, self.tables["contact"], body)
                created.append({"@odata.type": "#Microsoft.Dynamics.CRM.contact", "contactid": contact["contactid"]})
            if params.get("CreateOpportunity"):
                body = {
                    "name": lead.get("subject") or lead.get("fullname") or "Opportunity",
                    "originatingleadid@odata.bind": lead_ref,
                }
                customer = params.get("OpportunityCustomerId")
                if account is not None:
                    body["customerid_account@odata.bind"] = f"/accounts({account['accountid']})"
                elif contact is not None:
                    body["customerid_contact@odata.bind"] = f"/contacts({contact['contactid']})"
                elif isinstance(customer, dict):
                    for logical in ("account", "contact"):
                        if customer.get(f"{logical}id"):
                            body[f"customerid_{logical}@odata.bind"] = f"/{logical}s({customer[f'{logical}id']})"
                opportunity = self.create_row(ctx, self.tables["opportunity"], body)
                created.append(
                    {
                        "@odata.type": "#Microsoft.Dynamics.CRM.opportunity",
                        "opportunityid": opportunity["opportunityid"],
                    }
                )
            update: dict[str, Any] = {"statecode": 1, "statuscode": status}
            if account is not None:
                update["parentaccountid@odata.bind"] = f"/accounts({account['accountid']})"
            if contact is not None:
                update["parentcontactid@odata.bind"] = f"/contacts({contact['contactid']})"
            if opportunity is not None:
                update["qualifyingopportunityid@odata.bind"] = f"/opportunities({opportunity['opportunityid']})"
            self.update_row(ctx, table, lead, update)
        context = f"{request.base}$metadata#Collection(Microsoft.Dynamics.CRM.crmbaseentity)"
        return ApiResponse.json(
            200,
            {"@odata.context": context, "value": created},
            operation="QualifyLead",
            table="lead",
            records=len(created),
        )
