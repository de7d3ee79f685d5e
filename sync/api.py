"""The HTTP API's logic, apart from the Functions trigger types: request in, (status, JSON body, headers) out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sync.engine.context import SyncContext
from sync.engine.fullsync import (
    FullSyncConflict,
    FullSyncRejected,
    FullSyncRequest,
    cancel_job,
    start_full_sync,
    view_job,
)
from sync.state.queue import WorkQueue


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, default=str)


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
