"""Azure Functions triggers: parse the trigger, call into sync/, shape the response. Nothing else lives here."""

from __future__ import annotations

import json

import azure.functions as func

from sync import runtime
from sync.status import collect_status

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(body: str, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(body, status_code=status, mimetype="application/json", headers=headers)


@app.function_name("sync_status")
@app.route(route="sync/status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def sync_status(req: func.HttpRequest) -> func.HttpResponse:
    return _json(collect_status(runtime.state()).model_dump_json())


@app.function_name("sync_errors")
@app.route(route="sync/errors", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def sync_errors(req: func.HttpRequest) -> func.HttpResponse:
    entity = req.params.get("entity") or None
    errors = [e.model_dump(mode="json") for e in runtime.state().errors.list(entity)]
    return _json(json.dumps({"errors": errors}))
