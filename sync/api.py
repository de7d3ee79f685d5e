"""The HTTP API's logic, apart from the Functions trigger types: request in, (status, JSON body, headers) out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from sync.engine.context import SyncContext
from sync.engine.fullsync import (
    FullSyncConflict,
    FullSyncRejected,
    FullSyncRequest,
    cancel_job,
    start_full_sync,
    view_job,
)
from sync.record_errors import ErrorQuery, ErrorQueryError
from sync.state import StateStore
from sync.state.queue import WorkQueue


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # a body that is not JSON (CSV, HTML), sent as `mimetype`
    mimetype: str = "application/json"

    def json(self) -> str:
        return self.text if self.text is not None else json.dumps(self.body, default=str)


def _error(status: int, message: str) -> ApiResponse:
    return ApiResponse(status, {"error": message})


def start_full(ctx: SyncContext, queue: WorkQueue, body: bytes | None, base_url: str) -> ApiResponse:
    """POST /api/sync/full -> 202 {jobId, statusUrl} with Location; 400 bad request; 409 already running."""
    try:
        request = FullSyncRequest.parse(body)
        job = start_full_sync(ctx, queue, request)
    except FullSyncRejected as exc:
        return _error(400, str(exc))
    except FullSyncConflict as exc:
        return _error(409, str(exc))
    status_url = f"{base_url.rstrip('/')}/api/sync/jobs/{job.job_id}"
    body_out = {
        "jobId": job.job_id,
        "statusUrl": status_url,
        "entities": job.entities,
        "direction": job.direction,
        "dryRun": job.dry_run,
    }
    return ApiResponse(202, body_out, {"Location": status_url})


def job_status(ctx: SyncContext, job_id: str) -> ApiResponse:
    view = view_job(ctx, job_id)
    if view is None:
        return _error(404, f"no job {job_id}")
    return ApiResponse(200, view.model_dump(mode="json"))


def cancel(ctx: SyncContext, job_id: str) -> ApiResponse:
    job = cancel_job(ctx, job_id)
    if job is None:
        return _error(404, f"no job {job_id}")
    state = job.state if job.state in ("succeeded", "failed", "cancelled") else "cancelling"
    return ApiResponse(202, {"jobId": job.job_id, "state": state})


# --- record errors ----------------------------------------------------------------------------------------------------
ERROR_FILTERS = "stream, system, error_code, text, record_id"


def request_values(body: bytes | None, content_type: str | None) -> dict[str, Any]:
    """The fields of a POST body: a JSON object or an HTML form (the status page's buttons)."""
    if not body:
        return {}
    if (content_type or "").startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    try:
        values = json.loads(body)
    except ValueError as exc:
        raise ErrorQueryError(f"the body is not JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ErrorQueryError("the body must be a JSON object of filters")
    return values


def list_errors(state: StateStore, params: Mapping[str, str]) -> ApiResponse:
    """GET /api/sync/errors?stream=&system=&error_code=&text=&limit=&format=csv"""
    from sync import record_errors

    values = dict(params)
    fmt = values.pop("format", "json")
    limit_text = values.pop("limit", None)
    try:
        limit = int(limit_text) if limit_text else None
        if limit is not None and limit < 1:
            raise ValueError
    except ValueError:
        return _error(400, f"limit: not a positive whole number: {limit_text!r}")
    if fmt not in ("json", "csv"):
        return _error(400, f"format: json or csv, not {fmt!r}")
    try:
        query = ErrorQuery.parse(values, http=True)
    except ErrorQueryError as exc:
        return _error(400, str(exc))
    errors = record_errors.find(state, query, limit)
    if fmt == "csv":
        headers = {"Content-Disposition": 'attachment; filename="sync-errors.csv"'}
        return ApiResponse(200, {}, headers, text=record_errors.to_csv(errors), mimetype="text/csv")
    return ApiResponse(200, {"count": len(errors), "errors": [e.model_dump(mode="json") for e in errors]})


def _action_query(values: Mapping[str, Any]) -> ErrorQuery:
    every = str(values.get("all", "")).lower() in ("1", "true", "yes", "on")
    query = ErrorQuery.parse({k: v for k, v in values.items() if k != "all"}, http=True)
    if not every and query == ErrorQuery():
        raise ErrorQueryError(f"name the errors: at least one of {ERROR_FILTERS}, or all=true for every error")
    return query


def retry_errors(ctx: SyncContext, body: bytes | None, content_type: str | None) -> ApiResponse:
    """POST /api/sync/errors/retry {filters} -> 200 {streams: [{stream, selected, resolved, cycle, detail}]}"""
    from sync import record_errors

    try:
        query = _action_query(request_values(body, content_type))
    except ErrorQueryError as exc:
        return _error(400, str(exc))
    outcomes = record_errors.retry(ctx, query)
    return ApiResponse(200, {"streams": [o.model_dump() for o in outcomes]})


def dismiss_errors(state: StateStore, body: bytes | None, content_type: str | None) -> ApiResponse:
    """POST /api/sync/errors/dismiss {filters} -> 200 {dismissed: n}"""
    from sync import record_errors

    try:
        query = _action_query(request_values(body, content_type))
    except ErrorQueryError as exc:
        return _error(400, str(exc))
    return ApiResponse(200, {"dismissed": record_errors.dismiss(state, query)})


def relink(ctx: SyncContext, queue: WorkQueue, body: bytes | None, base_url: str) -> ApiResponse:
    """POST /api/sync/relink {"afterRefresh": true} -> 202 with the re-baseline's report and its full sync's jobId;
    400 without the confirmation; 409 while a full sync runs."""
    from sync.relink import RelinkRejected, relink_after_refresh

    try:
        confirmed = bool(json.loads(body or b"{}").get("afterRefresh"))
    except (ValueError, AttributeError):
        confirmed = False
    if not confirmed:
        return _error(400, 'relink re-baselines every link: send {"afterRefresh": true} to confirm')
    try:
        report = relink_after_refresh(ctx, queue)
    except RelinkRejected as exc:
        return _error(409, str(exc))
    status_url = f"{base_url.rstrip('/')}/api/sync/jobs/{report.job_id}"
    body_out = {"jobId": report.job_id, "statusUrl": status_url, "report": report.model_dump(mode="json")}
    return ApiResponse(202, body_out, {"Location": status_url})
