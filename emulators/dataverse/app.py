"""The Dataverse emulator as one ASGI app: Entra endpoints, the Web API behind bearer auth, service protection,
faults and latency, the request log, and the test controls under /_emulator."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from emulators.base import CONTROL_PREFIX, EmulatorOptions
from emulators.dataverse import schema
from emulators.dataverse.auth import Authority, TokenError
from emulators.dataverse.errors import DataverseFault
from emulators.dataverse.limits import (
    Faults,
    LimitSettings,
    LogEntry,
    RequestLog,
    ServiceProtection,
    fault_error,
)
from emulators.dataverse.odata import format_datetime
from emulators.dataverse.seed import Seeder
from emulators.dataverse.store import Store
from emulators.dataverse.webapi import ApiRequest, ApiResponse, WebApi, fault_response

WEB_API = re.compile(r"^/api/data/(v9\.[0-2])(/.*)?$")
ENTRA = re.compile(r"^/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token|discovery/v2\.0/keys)$")
REALISTIC_LATENCY_MS = 20.0
DEFAULT_TENANT = "72f988bf-0000-4000-8000-00000000c0de"


@dataclass
class WebRequest:
    method: str
    full_path: str
    path: str  # below /api/data/<version>/
    query: str
    headers: dict[str, str]
    body: bytes
    origin: str  # https://host:port, as the client addressed us
    version: str  # v9.2 (v9.0 and v9.1 are served the same way)


class DataverseEmulator:
    name = "dataverse"

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.tenant_id = str(options.extra.get("dataverse_tenant_id", uuid.uuid4()))
        self.authority = Authority(self.tenant_id)
        self.clock_offset = 0.0
        # The application users: the sync's app registration, and a salesperson's app acting as another user.
        self.admin_user_id = str(uuid.uuid4())
        self.sync_app = self.authority.register("sync", "Marketo Sync", str(uuid.uuid4()))
        self.sales_app = self.authority.register("salesperson", "Sales App", str(uuid.uuid4()))
        self.request_log = RequestLog()
        self.faults = Faults()
        self.limits = LimitSettings()
        self.protection = ServiceProtection(self.limits)
        self.startup_faults = Faults.parse_spec(options.faults)
        self.reset(demo_records=options.demo_records)
        self.app = self

    # ------------------------------------------------------------------------------------------------------------
    # state

    def now(self) -> float:
        return time.time() + self.clock_offset

    def now_json(self) -> str:
        return format_datetime(datetime.fromtimestamp(self.now(), UTC))

    def reset(self, demo_records: int = 0) -> None:
        self.tables = schema.clone_tables(schema.builtin_tables())
        self.store = Store(self.tables)
        self.web_api = WebApi(self.store, self.tables, self.now)
        from emulators.dataverse.batch import BatchHandler
        from emulators.dataverse.metadata import MetadataHandler

        self.web_api.batch_handler = BatchHandler(self.web_api, self._log_batch_part).handle
        self.web_api.metadata_handler = MetadataHandler(self.tables).handle
        self.clock_offset = 0.0
        self.authority.clock_offset = 0.0
        self.authority.revoked_before.clear()
        self.request_log.clear()
        self.faults.queue.clear()
        self.faults.rates.clear()
        self.faults.latency_ms = self.faults.jitter_ms = 0.0
        self.faults.retry_after = 1
        self.limits.update(asdict(LimitSettings()))  # in place: the service protection holds this object
        self.protection.reset()
        if self.options.profile == "realistic":
            self.limits.enabled = True
            self.faults.latency_ms = REALISTIC_LATENCY_MS
        self.faults.configure({k: v for k, v in self.startup_faults.items() if k != "token_lifetime"})
        self.authority.token_lifetime = int(self.startup_faults.get("token_lifetime", 3599))
        self._seed_directory()
        if demo_records:
            seeder = self.seeder()
            owners: dict[str, str | list[str]] = {"ownerid": ["systemuser", "team"]}
            demo: list[tuple[str, dict[str, str | list[str]] | None]] = [
                ("systemuser", None),
                ("team", None),
                ("account", owners),
                ("contact", {**owners, "parentcustomerid": "account"}),
                ("lead", {**owners, "parentaccountid": "account"}),
                ("opportunity", owners),
                ("new_product", owners),
            ]
            for table, refs in demo:
                seeder.seed(table, demo_records, refs=refs)

    def seeder(self, owner_id: str | None = None) -> Seeder:
        return Seeder(self.store, self.now_json(), owner_id or self.admin_user_id)

    def _seed_directory(self) -> None:
        """The users every organization has: an admin, one application user per app registration, a default team."""
        now = self.now_json()
        users = [
            (self.admin_user_id, "System", "Administrator", "admin@contoso.example", None, 0),
            (
                self.sync_app.systemuser_id,
                "# Marketo",
                "Sync",
                "marketo-sync@contoso.example",
                self.sync_app.client_id,
                4,
            ),
            (
                self.sales_app.systemuser_id,
                "Sally",
                "Salesperson",
                "sally@contoso.example",
                self.sales_app.client_id,
                0,
            ),
        ]
        rows = []
        for user_id, first, last, email, application_id, access_mode in users:
            rows.append(
                {
                    "systemuserid": user_id,
                    "firstname": first,
                    "lastname": last,
                    "fullname": f"{first} {last}",
                    "domainname": email,
                    "internalemailaddress": email,
                    "applicationid": application_id,
                    "isdisabled": False,
                    "accessmode": access_mode,
                    "createdon": now,
                    "modifiedon": now,
                    "_createdby_value": self.admin_user_id,
                    "~createdby": "systemuser",
                    "_modifiedby_value": self.admin_user_id,
                    "~modifiedby": "systemuser",
                }
            )
        self.store.bulk_load("systemuser", rows)
        team_id = str(uuid.uuid4())
        self.store.bulk_load(
            "team",
            [
                {
                    "teamid": team_id,
                    "name": "Contoso Sales",
                    "teamtype": 0,
                    "isdefault": True,
                    "createdon": now,
                    "modifiedon": now,
                    "_administratorid_value": self.admin_user_id,
                    "~administratorid": "systemuser",
                    "_createdby_value": self.admin_user_id,
                    "~createdby": "systemuser",
                    "_modifiedby_value": self.admin_user_id,
                    "~modifiedby": "systemuser",
                }
            ],
        )
        self.store.bulk_load(
            "teammembership",
            [
                {"teammembershipid": str(uuid.uuid4()), "systemuserid": user_id, "teamid": team_id}
                for user_id, *_ in users
            ],
        )
        roles = []
        for name, category in (("Stakeholder", 1), ("Decision Maker", 1), ("Influencer", 1), ("Sales Team Member", 4)):
            roles.append(
                {
                    "connectionroleid": str(uuid.uuid5(schema.NAMESPACE, "role." + name)),
                    "name": name,
                    "category": category,
                    "statecode": 0,
                    "statuscode": 1,
                    "createdon": now,
                    "modifiedon": now,
                    "_createdby_value": self.admin_user_id,
                    "~createdby": "systemuser",
                    "_modifiedby_value": self.admin_user_id,
                    "~modifiedby": "systemuser",
                }
            )
        self.store.bulk_load("connectionrole", roles)

    def settings(self, base_url: str) -> dict[str, str]:
        return {
            "DYNAMICS_URL": base_url,
            "DYNAMICS_TENANT_ID": self.tenant_id,
            "DYNAMICS_CLIENT_ID": self.sync_app.client_id,
            "DYNAMICS_CLIENT_SECRET": self.sync_app.client_secret,
            "DYNAMICS_AUTHORITY": f"{base_url}/{self.tenant_id}",
        }

    # ------------------------------------------------------------------------------------------------------------
    # ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        method, path = scope["method"], scope["path"]
        host = headers.get("host", "127.0.0.1")
        origin = f"https://{host}"
        query = scope.get("query_string", b"").decode("latin-1")
        if path.startswith(CONTROL_PREFIX + "/") or path == CONTROL_PREFIX:
            from emulators.dataverse.controls import handle_control

            status, payload = await handle_control(self, method, path[len(CONTROL_PREFIX) :], query, body)
            await self._send(send, status, [("Content-Type", "application/json")], orjson.dumps(payload))
            return
        match = WEB_API.match(path)
        if match:
            request = WebRequest(method, path, match.group(2) or "", query, headers, body, origin, match.group(1))
            await self._web_api(send, request)
            return
        match = ENTRA.match(path)
        if match:
            await self._entra(send, method, match.group(1), match.group(2), headers, body, origin)
            return
        await self._send(send, 404, [("Content-Type", "text/plain")], b"Not Found")

    @staticmethod
    async def _send(send: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _entra(
        self, send: Any, method: str, tenant: str, endpoint: str, headers: dict[str, str], body: bytes, origin: str
    ) -> None:
        trace = str(uuid.uuid4())
        client_id = ""
        operation = "token" if endpoint.startswith("oauth2") else "discovery"
        try:
            if endpoint.startswith("v2.0/.well-known"):
                payload = self.authority.discovery(origin, tenant)
                status, operation = 200, "discovery"
            elif endpoint.startswith("discovery"):
                self.authority.discovery(origin, tenant)
                payload, status, operation = {"keys": []}, 200, "keys"
            else:
                operation = "token"
                if method != "POST":
                    raise TokenError(
                        400,
                        "invalid_request",
                        900561,
                        "AADSTS900561: The endpoint only accepts POST requests. Received a GET request.",
                    )
                basic = None
                authorization = headers.get("authorization", "")
                if authorization.lower().startswith("basic "):
                    decoded = base64.b64decode(authorization[6:]).decode()
                    user, _, secret = decoded.partition(":")
                    basic = (user, secret)
                payload, app = self.authority.issue(tenant, body, origin, basic)
                client_id = app.client_id
                status = 200
        except TokenError as error:
            payload, status = error.body(trace), error.status
            client_id = dict(parse_qsl(body.decode("utf-8", "replace"))).get("client_id", "")
        self._log(method, f"/{tenant}/{endpoint}", operation, "", client_id, status, 0)
        response_headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Cache-Control", "no-store, no-cache"),
            ("x-ms-request-id", trace),
        ]
        await self._send(send, status, response_headers, orjson.dumps(payload))

    def _app_name(self, client_id: str) -> str:
        app = self.authority.apps.get(client_id)
        return app.name if app else ""

    def _log(
        self,
        method: str,
        path: str,
        operation: str,
        table: str,
        client_id: str,
        status: int,
        records: int,
        in_batch: bool = False,
    ) -> None:
        self.request_log.add(
            LogEntry(
                0,
                self.now(),
                method,
                path,
                operation,
                table,
                client_id,
                self._app_name(client_id),
                status,
                records,
                in_batch,
            )
        )

    def _log_batch_part(self, request: ApiRequest, response: ApiResponse) -> None:
        self._log(
            request.method,
            request.path,
            response.operation or "error",
            response.table,
            request.caller.client_id,
            response.status,
            response.records,
            in_batch=True,
        )

    async def _web_api(self, send: Any, request: WebRequest) -> None:
        method, full_path, path, query = request.method, request.full_path, request.path, request.query
        headers, body, origin, version = request.headers, request.body, request.origin, request.version
        request_id = str(uuid.uuid4())
        base_headers = [("REQ_ID", request_id), ("x-ms-service-request-id", request_id)]
        claims = self.authority.validate(headers.get("authorization"), origin)
        if claims is None:
            challenge = f"Bearer authorization_uri={origin}/{self.tenant_id}/oauth2/authorize, resource_id={origin}/"
            if headers.get("authorization"):
                challenge = (
                    'Bearer error="invalid_token", error_description="Error during token validation!", ' + challenge[7:]
                )
            self._log(method, full_path, "unauthorized", "", "", 401, 0)
            await self._send(send, 401, [*base_headers, ("WWW-Authenticate", challenge)], b"")
            return
        client_id = claims.client_id
        started = time.monotonic()
        now = self.now()
        try:
            self.protection.admit(client_id, now)
        except DataverseFault as fault:
            response = fault_response(fault)
            self._log(method, full_path, "throttled", "", client_id, 429, 0)
            await self._send(send, 429, [*base_headers, *response.headers], response.body)
            return
        self.protection.started(client_id)
        try:
            injected = self.faults.pick(method, full_path + ("?" + query if query else ""))
            delay = (
                self.faults.latency() + float(injected.get("delay_ms", 0)) / 1000 if injected else self.faults.latency()
            )
            if delay:
                await asyncio.sleep(delay)
            if injected is not None and injected.get("drop"):
                self._log(method, full_path, "dropped", "", client_id, 0, 0)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"value":[', "more_body": True})
                raise ConnectionAbortedError("injected dropped connection")
            if injected is not None and "status" in injected:
                response = fault_response(fault_error(injected, self.faults.retry_after))
                self._log(method, full_path, "fault", "", client_id, response.status, 0)
                await self._send(send, response.status, [*base_headers, *response.headers], response.body)
                return
            api_request = ApiRequest(
                method=method,
                path=path.lstrip("/"),
                query=dict(parse_qsl(query, keep_blank_values=True)),
                headers=headers,
                body=body,
                caller=claims.app,
                base=f"{origin}/api/data/{version}/",
            )
            response = self.web_api.handle(api_request)
        finally:
            self.protection.finished(client_id, self.now(), (time.monotonic() - started) * 1000)
        self._log(
            method,
            full_path,
            response.operation or "error",
            response.table,
            client_id,
            response.status,
            response.records,
        )
        extra = self.protection.headers(client_id, self.now())
        await self._send(send, response.status, [*base_headers, *response.headers, *extra], response.body)


def create(options: EmulatorOptions) -> DataverseEmulator:
    return DataverseEmulator(options)
