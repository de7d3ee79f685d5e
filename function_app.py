"""Azure Functions triggers: parse the trigger, call into sync/, shape the response. Nothing else lives here."""

from __future__ import annotations

import json
import logging

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


def _log_cycle(entity: str) -> None:
    report = runtime.run_incremental(entity)
    c = report.counts
    message = (
        f"sync {entity}: {report.outcome}; read {c.read}, created {c.created}, updated {c.updated}, "
        f"deleted {c.deleted}, unchanged {c.unchanged}, skipped {c.skipped}, failed {c.failed}; "
        f"conflicts {len(report.conflicts)}; calls {report.api_calls}"
    )
    if report.outcome == "failed":
        logging.error("%s; error: %s", message, report.error)
        raise RuntimeError(f"sync {entity} failed: {report.error}")  # surfaces as a failed invocation
    logging.info(message)


@app.function_name("sync_lead")
@app.timer_trigger(schedule="%SYNC_SCHEDULE_LEAD%", arg_name="timer", run_on_startup=False, use_monitor=True)
def sync_lead(timer: func.TimerRequest) -> None:
    _log_cycle("lead")


@app.function_name("sync_contact")
@app.timer_trigger(schedule="%SYNC_SCHEDULE_CONTACT%", arg_name="timer", run_on_startup=False, use_monitor=True)
def sync_contact(timer: func.TimerRequest) -> None:
    _log_cycle("contact")
