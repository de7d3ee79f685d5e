"""Test controls under /_emulator (not part of the Dataverse API). See the package docstring for the list."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from emulators.dataverse.limits import Faults, FaultSpecError
from emulators.dataverse.schema import TYPE_INFO, Column

if TYPE_CHECKING:
    from emulators.dataverse.app import DataverseEmulator

Result = tuple[int, Any]


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def handle_control(emulator: DataverseEmulator, method: str, path: str, query: str, body: bytes) -> Result:
    try:
        payload = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        return 400, {"error": "the body must be JSON"}
    params = dict(parse_qsl(query))
    parts = [p for p in path.split("/") if p]
    try:
        return _route(emulator, method, parts, params, payload)
    except ControlError as error:
        return error.status, {"error": error.message}
    except (FaultSpecError, ValueError, TypeError, KeyError) as error:
        return 400, {"error": str(error)}


def _table(emulator: DataverseEmulator, name: str) -> Any:
    table = emulator.tables.get(name)
    if table is None:
        raise ControlError(404, f"no table '{name}' (known: {', '.join(emulator.tables)})")
    return table


def _route(emulator: DataverseEmulator, method: str, parts: list[str], params: dict[str, str], payload: Any) -> Result:
    head = parts[0] if parts else ""
    if head == "reset" and method == "POST":
        emulator.reset(demo_records=int(payload.get("demo_records", 0)))
        return 200, {"reset": True}
    if head == "seed" and method == "POST":
        return _seed(emulator, payload)
    if head == "apps":
        apps = {app.name: app.public() for app in emulator.authority.apps.values()}
        if len(parts) == 2:
            if parts[1] not in apps:
                raise ControlError(404, f"no app '{parts[1]}'")
            return 200, apps[parts[1]]
        return 200, apps
    if head == "requests":
        if method == "DELETE" or (method == "POST" and parts[1:] == ["clear"]):
            emulator.request_log.clear()
            return 200, {"cleared": True}
        client = params.get("client")
        if client is not None:
            app = emulator.authority.by_name(client)
            client = app.client_id if app else client
        return 200, emulator.request_log.summary(client, int(params.get("entries", 200)))
    if head == "faults":
        return _faults(emulator, method, payload)
    if head == "limits":
        if method == "POST":
            emulator.limits.update(payload)
            emulator.protection.reset()
        return 200, emulator.limits.__dict__
    if head == "profile" and method == "POST":
        profile = payload.get("profile")
        if profile not in ("fast", "realistic"):
            raise ControlError(400, "profile must be 'fast' or 'realistic'")
        emulator.limits.enabled = profile == "realistic"
        emulator.faults.latency_ms = float(payload.get("latency_ms", 20.0 if profile == "realistic" else 0.0))
        emulator.protection.reset()
        return 200, {"profile": profile, "latency_ms": emulator.faults.latency_ms}
    if head == "tokens" and method == "POST":
        action = parts[1] if len(parts) > 1 else ""
        if action == "revoke":
            client = payload.get("client_id")
            app = emulator.authority.by_name(payload.get("app", "")) if payload.get("app") else None
            emulator.authority.revoke(app.client_id if app else client)
            return 200, {"revoked": app.client_id if app else (client or "*")}
        if action == "lifetime":
            emulator.authority.token_lifetime = int(payload["seconds"])
            return 200, {"lifetime": emulator.authority.token_lifetime}
        raise ControlError(404, "use /tokens/revoke or /tokens/lifetime")
    if head == "clock":
        if method == "POST":
            emulator.clock_offset += float(payload.get("advance_seconds", 0))
            emulator.authority.clock_offset = emulator.clock_offset
        return 200, {"now": emulator.now(), "offset_seconds": emulator.clock_offset}
    if head == "change-tracking" and method == "POST":
        if "expiry_seconds" in payload:
            emulator.web_api.delta_expiry_seconds = float(payload["expiry_seconds"])
        if payload.get("expire_all"):
            emulator.web_api.expired_before = emulator.now() + 1
        return 200, {"expiry_seconds": emulator.web_api.delta_expiry_seconds}
    if head == "sandbox-refresh" and method == "POST":
        from emulators.dataverse.refresh import sandbox_refresh

        return 200, sandbox_refresh(emulator, payload)
    if head == "schema" and len(parts) >= 2:
        return _schema(emulator, method, parts[1:], payload)
    if head == "records" and len(parts) >= 2:
        table = _table(emulator, parts[1])
        data = emulator.store[table.logical_name]
        if len(parts) == 3:
            row = data.rows.get(parts[2].lower())
            if row is None:
                raise ControlError(404, f"no {table.logical_name} {parts[2]}")
            stored = dict.fromkeys(table.output_attributes)
            stored.update((k, v) for k, v in row.items() if not k.startswith("~"))
            return 200, stored
        return 200, {"count": len(data.rows), "version": emulator.store.version}
    raise ControlError(404, f"no control {method} /{'/'.join(parts)}")


def _seed(emulator: DataverseEmulator, payload: dict[str, Any]) -> Result:
    table = _table(emulator, str(payload.get("table", "")))
    count = int(payload.get("count", 1))
    if count < 0 or count > 5_000_000:
        raise ControlError(400, "count must be between 0 and 5,000,000")
    owner = None
    if payload.get("as"):
        app = emulator.authority.by_name(payload["as"])
        if app is None:
            raise ControlError(404, f"no app '{payload['as']}'")
        owner = app.systemuser_id
    started = time.monotonic()
    fast = payload.get("fast")
    refs = payload.get("refs")
    if refs is not None and not isinstance(refs, dict):
        raise ControlError(400, 'refs must map lookup columns to tables, e.g. {"parentcustomerid": "account"}')
    ids = emulator.seeder(owner).seed(
        table.logical_name, count, payload.get("values"), use_faker=None if fast is None else not fast, refs=refs
    )
    return 200, {
        "table": table.logical_name,
        "count": count,
        "ids": ids[:1000],
        "seconds": time.monotonic() - started,
        "version": emulator.store.version,
    }


def _faults(emulator: DataverseEmulator, method: str, payload: dict[str, Any]) -> Result:
    faults = emulator.faults
    if method == "DELETE":
        faults.queue.clear()
        faults.rates.clear()
        faults.latency_ms = faults.jitter_ms = 0.0
        return 200, {"cleared": True}
    if method == "POST":
        if "spec" in payload:
            values = Faults.parse_spec(payload["spec"])
            if "token_lifetime" in values:
                emulator.authority.token_lifetime = int(values.pop("token_lifetime"))
            faults.configure(values)
        settings = {k: v for k, v in payload.items() if k not in ("spec", "queue")}
        if settings:
            faults.configure(settings)
        for item in payload.get("queue", []):
            if not isinstance(item, dict) or not ("status" in item or item.get("drop") or "delay_ms" in item):
                raise ControlError(400, "each queued fault needs 'status', 'drop': true or 'delay_ms'")
            faults.queue.append(dict(item))
    return 200, {
        "rates": faults.rates,
        "latency_ms": faults.latency_ms,
        "jitter_ms": faults.jitter_ms,
        "queue": faults.queue,
        "token_lifetime": emulator.authority.token_lifetime,
    }


def _schema(emulator: DataverseEmulator, method: str, parts: list[str], payload: dict[str, Any]) -> Result:
    table = _table(emulator, parts[0])
    data = emulator.store[table.logical_name]
    if len(parts) == 1 and method in ("PATCH", "POST"):
        if "change_tracking" in payload:
            enabled = bool(payload["change_tracking"])
            if enabled and not table.change_tracking:
                data.tracking_since = emulator.store.version + 1  # tokens from before are no longer valid
            table.change_tracking = enabled
        return 200, {"table": table.logical_name, "change_tracking": table.change_tracking}
    if len(parts) >= 2 and parts[1] == "columns":
        if method == "POST" and len(parts) == 2:
            name = str(payload["name"]).lower()
            if name in table.columns:
                raise ControlError(409, f"column '{name}' already exists on {table.logical_name}")
            ctype = payload.get("type", "String")
            if ctype not in TYPE_INFO or ctype in ("Lookup", "Customer", "Owner", "State", "Status"):
                raise ControlError(400, f"unsupported column type '{ctype}'")
            options = {int(k): str(v) for k, v in payload.get("options", {}).items()} if ctype == "Picklist" else None
            column = Column(
                name,
                ctype,
                max_length=int(payload.get("max_length", 100)) if ctype in ("String", "Memo") else None,
                required=payload.get("required", "None"),
                options=options,
                default=payload.get("default"),
                custom=True,
                display_name=payload.get("display_name", name),
            )
            table.columns[name] = column
            table.refresh()
            for row in data.rows.values():  # existing rows hold null in a new column
                row.setdefault(column.attribute, None)
            _invalidate(emulator, data, payload)
            return 200, {"table": table.logical_name, "column": name}
        if len(parts) == 3:
            name = parts[2].lower()
            column = table.columns.get(name)
            if column is None:
                raise ControlError(404, f"no column '{name}' on {table.logical_name}")
            if method == "DELETE":
                if name == table.primary_id or not column.custom:
                    raise ControlError(400, "only custom columns can be deleted")
                for key_name, key_columns in list(table.alternate_keys.items()):
                    if name in key_columns:
                        del table.alternate_keys[key_name]
                del table.columns[name]
                table.refresh()
                for row in data.rows.values():
                    row.pop(column.attribute, None)
                data.rebuild_key_index()
                _invalidate(emulator, data, payload)
                return 200, {"table": table.logical_name, "removed": name}
            if method in ("PATCH", "POST"):
                if "required" in payload:
                    column.required = payload["required"]
                    table.refresh()
                if "max_length" in payload:
                    column.max_length = int(payload["max_length"])
                return 200, {
                    "table": table.logical_name,
                    "column": name,
                    "required": column.required,
                    "max_length": column.max_length,
                }
    if len(parts) == 2 and parts[1] == "keys" and method == "POST":
        name = str(payload["name"])
        columns = tuple(payload["columns"])
        for column in columns:
            if column not in table.columns:
                raise ControlError(400, f"no column '{column}' on {table.logical_name}")
        table.alternate_keys[name] = columns
        data.rebuild_key_index()
        return 200, {"table": table.logical_name, "key": name, "columns": list(columns)}
    raise ControlError(
        404,
        "schema controls: PATCH /schema/<table>, POST /schema/<table>/columns, "
        "PATCH|DELETE /schema/<table>/columns/<name>, POST /schema/<table>/keys",
    )


def _invalidate(emulator: DataverseEmulator, data: Any, payload: dict[str, Any]) -> None:
    """A metadata change can expire the table's delta tokens, as Dataverse may (opt in with "expire_tokens")."""
    if payload.get("expire_tokens"):
        data.tracking_since = emulator.store.version + 1
