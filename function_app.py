"""Azure Functions triggers: parse the trigger, call into sync/, shape the response. Nothing else lives here."""

from __future__ import annotations

import logging

import azure.functions as func

from sync import api, dashboard, metrics, runtime
from sync.engine.fullsync import process_message
from sync.memory import cap_malloc_arenas
from sync.record_errors import ErrorQueryError
from sync.state.queue import WorkMessage
from sync.status import collect_status

cap_malloc_arenas()  # the worker process runs the full sync's threads (sync/memory.py)
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(body: str, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(body, status_code=status, mimetype="application/json", headers=headers)


def _respond(response: api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        response.json(), status_code=response.status, mimetype=response.mimetype, headers=response.headers
    )


def _base_url(req: func.HttpRequest) -> str:
    url: str = req.url  # HttpRequest.url is unannotated; the abstract request it implements declares str
    return url.split("/api/", 1)[0]


@app.function_name("sync_status")
@app.route(route="sync/status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def sync_status(req: func.HttpRequest) -> func.HttpResponse:
    """?backlog=false skips measuring the backlog (which reads both systems: a few calls per stream)."""
    report = collect_status(
        runtime.state(),
        runtime.stream_names(),
        ctx=runtime.context() if _measure_backlog(req) else None,
        marketo_call_budget=runtime.settings().marketo_daily_call_budget,
    )
    return _json(report.model_dump_json())


@app.function_name("sync_errors")
@app.route(route="sync/errors", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def sync_errors(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.list_errors(runtime.state(), dict(req.params)))


@app.function_name("sync_errors_retry")
@app.route(route="sync/errors/retry", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def sync_errors_retry(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.retry_errors(runtime.context(), req.get_body(), req.headers.get("content-type")))


@app.function_name("sync_errors_dismiss")
@app.route(route="sync/errors/dismiss", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def sync_errors_dismiss(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.dismiss_errors(runtime.state(), req.get_body(), req.headers.get("content-type")))


def _measure_backlog(req: func.HttpRequest) -> bool:
    return (req.params.get("backlog") or "true").lower() not in ("0", "false", "no")


def _dashboard(req: func.HttpRequest, notice: str | None = None, status: int = 200) -> func.HttpResponse:
    html = dashboard.page(
        runtime.state(),
        runtime.stream_names(),
        runtime.context() if _measure_backlog(req) else None,
        runtime.settings().marketo_daily_call_budget,
        notice,
    )
    return func.HttpResponse(html, status_code=status, mimetype="text/html", charset="utf-8")


@app.function_name("sync_dashboard")
@app.route(route="sync/dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def sync_dashboard(req: func.HttpRequest) -> func.HttpResponse:
    return _dashboard(req)


@app.function_name("sync_dashboard_action")
@app.route(route="sync/dashboard", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def sync_dashboard_action(req: func.HttpRequest) -> func.HttpResponse:
    """The page's retry and dismiss buttons post here (the page's own URL); the answer is the page again."""
    try:
        values = api.request_values(req.get_body(), req.headers.get("content-type"))
        notice = dashboard.act(runtime.context(), values)
    except ErrorQueryError as exc:
        return _dashboard(req, f"Not done: {exc}", 400)
    return _dashboard(req, notice)


def _log_cycle(entity: str) -> None:
    report = runtime.run_incremental(entity)
    state = runtime.context().state
    state.errors.prune()  # errors are kept 30 days after they were last seen
    c = report.counts
    metrics.write(
        metrics.CYCLE,
        logging.ERROR if report.outcome == "failed" else logging.INFO,
        stream=entity,
        outcome=report.outcome,
        complete=report.complete,
        synced=c.created + c.updated + c.deleted,
        failed=c.failed,
        record_errors=state.errors.count(entity),
        marketo_calls=report.api_calls.get("marketo", 0),
        dynamics_calls=report.api_calls.get("dynamics", 0),
        dynamics_429s=report.api_calls.get(metrics.THROTTLED, 0),
    )
    message = (
        f"sync {entity}: {report.outcome}; read {c.read}, created {c.created}, updated {c.updated}, "
        f"deleted {c.deleted}, unchanged {c.unchanged}, skipped {c.skipped}, failed {c.failed}; "
        f"conflicts {len(report.conflicts)}; calls {report.api_calls}"
    )
    if report.outcome == "failed":
        logging.error("%s; error: %s", message, report.error)
        raise RuntimeError(f"sync {entity} failed: {report.error}")  # surfaces as a failed invocation
    logging.info(message)


def _register_timer(stream: str) -> None:
    """One timer per stream of the mapping; its schedule is the app setting SYNC_SCHEDULE_<STREAM>."""

    def run(timer: func.TimerRequest) -> None:
        _log_cycle(stream)

    run.__name__ = f"sync_{stream}"
    trigger = app.timer_trigger(
        schedule=f"%{runtime.schedule_setting(stream)}%", arg_name="timer", run_on_startup=False, use_monitor=True
    )
    app.function_name(f"sync_{stream}")(trigger(run))


for _stream in runtime.stream_names():
    _register_timer(_stream)


@app.function_name("sync_full_start")
@app.route(route="sync/full", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def sync_full_start(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.start_full(runtime.context(), runtime.queue(), req.get_body(), _base_url(req)))


@app.function_name("sync_relink")
@app.route(route="sync/relink", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def sync_relink(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.relink(runtime.context(), runtime.queue(), req.get_body(), _base_url(req)))


@app.function_name("sync_job_status")
@app.route(route="sync/jobs/{jobId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def sync_job_status(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.job_status(runtime.context(), req.route_params["jobId"]))


@app.function_name("sync_job_cancel")
@app.route(route="sync/jobs/{jobId}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
def sync_job_cancel(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.cancel(runtime.context(), req.route_params["jobId"]))


@app.function_name("sync_full_worker")
@app.queue_trigger(arg_name="msg", queue_name="%SYNC_FULL_SYNC_QUEUE%", connection="AzureWebJobsStorage")
def sync_full_worker(msg: func.QueueMessage) -> None:
    message = WorkMessage.model_validate_json(msg.get_body())
    ctx = runtime.context()
    before = ctx.api_calls()
    try:
        outcome = process_message(ctx, runtime.queue(), message, msg.dequeue_count or 1)
        logging.info("full sync %s: %s", message.job, outcome)
    finally:  # also when the page raised: the host retries it, and its last try may have failed the job
        found = ctx.state.jobs.get(message.job)
        state = found[0].state if found else "missing"
        metrics.write(
            metrics.FULL_SYNC,
            logging.ERROR if state == "failed" else logging.INFO,
            job=message.job,
            stream=message.entity,
            phase=message.phase,
            state=state,
            marketo_calls=ctx.api_calls()["marketo"] - before["marketo"],
        )
