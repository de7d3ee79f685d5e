"""The HTTP shell: request parsing as Marketo does it, the envelope, routing, and the gate every call passes.

- `_method=GET` on a POST, in the URL or in a form-encoded body, makes it a GET whose parameters come from both.
- Array parameters arrive comma-joined (`a,b`) or repeated (`x=a&x=b`); both are read the same.
- HTTP errors only for 413 (body over 1 MB, 10 MB for bulk import), 414 (URI over 8 KB) and 401 from identity;
  everything else is HTTP 200 with `success:false` and string codes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from emulators.base import CONTROL_PREFIX
from emulators.marketo.errors import RequestError
from emulators.marketo.gate import FAULT_MESSAGES, NOT_COUNTED
from emulators.marketo.state import MarketoState

JSON_TYPE = "application/json;charset=UTF-8"


class DropConnection(Exception):
    """Raised after the response has started: uvicorn then closes the connection mid-response."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
log = logging.getLogger(__name__)


def request_id() -> str:
    return f"{secrets.token_hex(2)}#{int(time.time() * 1000):x}"


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON_TYPE)


def envelope_error(code: str, message: str) -> dict[str, Any]:
    return {"requestId": request_id(), "success": False, "errors": [{"code": code, "message": message}], "warnings": []}


@dataclass
class Call:
    """One API call as the handlers see it."""

    request: Request
    state: MarketoState
    method: str
    path: str
    params: dict[str, list[str]]
    body: bytes
    path_args: dict[str, str] = field(default_factory=dict)
    records: int = 0  # input or output records, for the per-record latency
    _json: Any = None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else default

    def array(self, name: str) -> list[str]:
        """Comma-joined or repeated: both give the same list."""
        items: list[str] = []
        for value in self.params.get(name, []):
            items.extend(part.strip() for part in value.split(",") if part.strip())
        return items

    def int_param(self, name: str, default: int | None = None) -> int | None:
        value = self.param(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise RequestError("1001", f"Invalid value '{value}'. Required of type 'integer'") from None

    def json(self) -> Any:
        """The JSON body: 612 if it is not declared as JSON, 609 if it does not parse."""
        if self._json is None:
            content_type = self.request.headers.get("content-type", "").lower()
            if "json" not in content_type and not (content_type == "" and self.body[:1] in (b"{", b"[")):
                raise RequestError("612", "Invalid Content Type")
            try:
                self._json = orjson.loads(self.body) if self.body else {}
            except orjson.JSONDecodeError:
                raise RequestError("609", "Invalid JSON") from None
        return self._json

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise RequestError("609", "Invalid JSON")
        return body


Handler = Callable[[Call], Awaitable[Any]]


@dataclass
class Route:
    method: str
    template: str  # e.g. /rest/v1/lead/{id}.json
    handler: Handler
    bulk_upload: bool = False
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.escape(self.template)
        regex = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+?)", regex)
        self.pattern = re.compile(f"^{regex}$")


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, bulk_upload: bool = False) -> None:
        self.routes.append(Route(method, template, handler, bulk_upload))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path args, path known at all)."""
        known = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                known = True
                if route.method == method:
                    return route, found.groupdict(), True
        return None, {}, known


class MarketoApp:
    """The ASGI application: identity, REST and bulk APIs, and the test controls under /_emulator.

    Every answer's Date header is the emulator's clock (moved by /clock/advance), as a real server's is its own time:
    a client that windows Bulk Extracts on the server's time (the full sync's id exports) sees the same clock as the
    createdAt of the persons.

    Bulk jobs also progress on a tick of the server's own loop while one runs, as Marketo's run in the background:
    a status call answers at once instead of applying the rows imported since the last call."""

    sets_date = True
    tick_seconds = 0.2

    def __init__(
        self,
        state: MarketoState,
        api: Router,
        controls: Router,
        identity: Callable[[Request, MarketoState], Awaitable[Response]],
    ) -> None:
        self.state = state
        self.api = api
        self.controls = controls
        self.identity = identity
        self._ticker: asyncio.Task[None] | None = None

    async def _tick_bulk_jobs(self) -> None:
        """Move running bulk jobs on (the state's own tick, on this loop: no lock needed), every tick_seconds."""
        while True:
            await asyncio.sleep(self.tick_seconds)
            bulk = self.state.bulk
            if any(job.running or job.waiting for job in (*bulk.imports.values(), *bulk.exports.values())):
                try:
                    bulk.tick()
                except Exception:  # a request's tick raises it where it can be answered; the loop goes on
                    log.exception("marketo emulator: a bulk job's background tick failed")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_bulk_jobs())
        request = Request(scope, receive)
        path = scope["path"]
        if path.startswith(CONTROL_PREFIX + "/"):
            response = await self._control(request, path[len(CONTROL_PREFIX) :])
            response.headers["Date"] = formatdate(self.state.clock.now(), usegmt=True)
            await response(scope, receive, send)
            return
        started = time.perf_counter()
        entry: dict[str, Any] = {"time": self.state.clock.now(), "method": request.method, "path": path}
        try:
            response = await self._api(request, path, entry)
        except DropConnection:
            entry.setdefault("endpoint", f"{request.method} {path}")
            entry["dropped"] = True
            self._log(entry, started)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
            raise
        self._log(entry, started)
        response.headers["Date"] = formatdate(self.state.clock.now(), usegmt=True)
        await response(scope, receive, send)

    def _log(self, entry: dict[str, Any], started: float) -> None:
        entry["ms"] = round((time.perf_counter() - started) * 1000, 2)
        self.state.requests.add(entry)

    async def _read_body(self, request: Request, limit: int) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _api(self, request: Request, path: str, entry: dict[str, Any]) -> Response:
        state = self.state
        config = state.config
        query = request.scope["query_string"]
        raw_uri_bytes = len(path.encode()) + (len(query) + 1 if query else 0)
        if path == "/identity/oauth/token":
            entry.update(endpoint=f"{request.method} /identity/oauth/token", identity=True)
            response = await self.identity(request, state)
            entry["status"] = response.status_code
            return response
        if raw_uri_bytes > config.max_uri_bytes:
            entry.update(endpoint=f"{request.method} {path}", status=414)
            return PlainTextResponse("414 Request-URI Too Long", status_code=414)
        method = request.method
        route_for_upload, _, _ = self.api.match("POST", path) if method == "POST" else (None, {}, False)
        limit = (
            config.max_bulk_body_bytes if route_for_upload and route_for_upload.bulk_upload else config.max_body_bytes
        )
        body = await self._read_body(request, limit)
        if body is None:
            entry.update(endpoint=f"{request.method} {path}", status=413)
            return PlainTextResponse("413 Request Entity Too Large", status_code=413)
        params: dict[str, list[str]] = {}
        for key, value in parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True):
            params.setdefault(key, []).append(value)
        content_type = request.headers.get("content-type", "").lower()
        if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
            for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                params.setdefault(key, []).append(value)
        override = (params.get("_method") or [""])[-1].upper()
        if method == "POST" and override == "GET":
            method = "GET"
        route, args, known = self.api.match(method, path)
        if route is None and method == "GET" and request.method == "POST":
            # POST ..?_method=GET with a JSON body is how compound-key queries are sent: the route is the POST one
            route, args, known = self.api.match("POST", path)
        endpoint = route.template if route else path
        entry["endpoint"] = f"{method} {endpoint}"
        if route is None:
            code, message = ("605", "HTTP Method not supported") if known else ("610", "Requested resource not found")
            entry["code"] = code
            return json_response(envelope_error(code, message))
        call = Call(request, state, method, path, params, body, args)
        return await self._run(call, route, entry)

    async def _run(self, call: Call, route: Route, entry: dict[str, Any]) -> Response:
        state = self.state
        gate = state.gate
        problem = state.tokens.check(_bearer(call))
        if problem is not None:
            entry["code"] = problem[0]
            return json_response(envelope_error(*problem))
        fault = gate.fault()  # drawn only for authenticated calls, so a one-shot fault is never lost to a 601
        if fault == "drop":
            raise DropConnection
        if fault == "5xx":
            entry["status"] = 503
            return PlainTextResponse("503 Service Temporarily Unavailable", status_code=503)
        if fault in FAULT_MESSAGES:
            entry["code"] = fault
            if fault not in NOT_COUNTED:
                gate.count()
            return json_response(envelope_error(fault, gate.message(fault)))
        limited = gate.limit()
        if limited is not None:
            entry["code"] = limited
            return json_response(envelope_error(limited, gate.message(limited)))
        gate.count()
        gate.in_flight += 1
        try:
            if state.config.latency_ms:
                await asyncio.sleep(state.config.latency_ms / 1000)
            state.bulk.tick()
            try:
                outcome = await route.handler(call)
            except RequestError as error:
                entry["code"] = error.code
                return json_response(envelope_error(error.code, error.message))
            if state.config.latency_per_record_ms and call.records:
                delay = state.config.latency_per_record_ms * call.records / 1000
                limit = (
                    _timeout(call.method, route.template) * state.config.timeout_scale - state.config.latency_ms / 1000
                )
                if delay > limit:
                    # Marketo gives up on a call that runs past its timeout; the work may have been done (unverified)
                    await asyncio.sleep(max(limit, 0.0))
                    entry["code"] = "604"
                    return json_response(envelope_error("604", gate.message("604")))
                await asyncio.sleep(delay)
        finally:
            gate.in_flight -= 1
        if fault == "drop_after":
            raise DropConnection
        if isinstance(outcome, Response):
            entry["status"] = outcome.status_code
            return outcome
        payload: dict[str, Any] = {"requestId": request_id(), "success": True, "errors": [], "warnings": []}
        payload.update(outcome or {})
        entry["status"] = 200
        return json_response(payload)

    async def _control(self, request: Request, path: str) -> Response:
        route, args, known = self.controls.match(request.method, path)
        if route is None:
            status = 405 if known else 404
            return json_response({"error": f"no test control {request.method} {path}"}, status)
        body = await request.body()
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        call = Call(request, self.state, request.method, path, params, body, args)
        try:
            outcome = await route.handler(call)
        except (ValueError, KeyError, RequestError) as error:
            message = error.message if isinstance(error, RequestError) else str(error)
            return json_response({"error": message}, 400)
        if isinstance(outcome, Response):
            return outcome
        return json_response(outcome if outcome is not None else {"ok": True})


def _timeout(method: str, template: str) -> float:
    """Marketo's documented timeouts: Sync Leads 90 s, Get Leads by Filter 60 s, Merge 180 s, else 30 s."""
    if template == "/rest/v1/leads.json":
        return 90.0 if method == "POST" else 60.0
    if template.endswith("/merge.json"):
        return 180.0
    return 30.0


def _bearer(call: Call) -> str | None:
    header = call.request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if call.state.config.accept_query_token:
        return call.param("access_token")
    return None
