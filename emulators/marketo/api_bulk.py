"""Bulk API handlers: /bulk/v1/leads.json (import), /bulk/v1/{leads,activities}/export/... (extract)."""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from emulators.marketo.bulk import ExportJob
from emulators.marketo.errors import RequestError
from emulators.marketo.web import Call, Router

FILE_RETENTION_DAYS = 7
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MEDIA_TYPES = {"CSV": "text/csv;charset=UTF-8", "TSV": "text/tab-separated-values;charset=UTF-8"}


async def _multipart(call: Call) -> tuple[dict[str, str], bytes | None]:
    content_type = call.request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError("612", "Invalid Content Type")
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": call.body, "more_body": False}

    request = Request(call.request.scope, replay)
    try:
        form = await request.form(max_part_size=call.state.config.max_bulk_body_bytes)
    except Exception:
        raise RequestError("613", "Invalid multipart request") from None
    fields: dict[str, str] = {}
    content: bytes | None = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key == "file":
                content = await value.read()
        else:
            fields[key] = value
    await form.close()
    return fields, content


async def import_leads(call: Call) -> dict[str, Any]:
    fields, content = await _multipart(call)
    if content is None:
        raise RequestError("1003", "file cannot be blank")  # (unverified) code
    merged = {**fields, **{key: values[-1] for key, values in call.params.items()}}
    job = call.state.bulk.submit_import(
        content,
        (merged.get("format") or "csv").lower(),
        merged.get("lookupField") or "email",
        merged.get("partitionName"),
    )
    call.records = len(job.rows)
    return {"result": [{"batchId": job.batch_id, "importId": str(job.batch_id), "status": job.status}]}


async def import_status(call: Call) -> dict[str, Any]:
    job = call.state.bulk.get_import(call.path_args["id"])
    return {"result": [job.status_dict()]}


def _report(which: str) -> Any:
    async def handler(call: Call) -> Response:
        job = call.state.bulk.get_import(call.path_args["id"])
        media = "text/csv;charset=UTF-8" if job.format == "csv" else "text/plain;charset=UTF-8"
        return Response(job.report(which), media_type=media)

    return handler


def _export_kind(path: str) -> str:
    return "activities" if path.startswith("/bulk/v1/activities/") else "leads"


async def create_export(call: Call) -> dict[str, Any]:
    job = call.state.bulk.create_export(_export_kind(call.path), call.json_object())
    return {"result": [job.status_dict()]}


def _job(call: Call) -> ExportJob:
    return call.state.bulk.get_export(_export_kind(call.path), call.path_args["id"])


async def enqueue_export(call: Call) -> dict[str, Any]:
    job = _job(call)
    call.state.bulk.enqueue(job)
    return {"result": [job.status_dict()]}


async def export_status(call: Call) -> dict[str, Any]:
    return {"result": [_job(call).status_dict()]}


async def cancel_export(call: Call) -> dict[str, Any]:
    job = _job(call)
    call.state.bulk.cancel(job)
    return {"result": [job.status_dict()]}


async def list_exports(call: Call) -> dict[str, Any]:
    kind = _export_kind(call.path)
    wanted = set(call.array("status"))
    jobs = [
        job for job in call.state.bulk.exports.values() if job.kind == kind and (not wanted or job.status in wanted)
    ]
    return {"result": [job.status_dict() for job in jobs], "moreResult": False}


async def export_file(call: Call) -> Response:
    """The file, whole or by `Range: bytes=a-b` (206); plain-text 404 until the job has completed."""
    try:
        job = _job(call)
    except RequestError:
        return PlainTextResponse("Export job not found", status_code=404)
    if job.status != "Completed" or job.file is None:
        return PlainTextResponse(f"Export job is {job.status}: the file is not ready", status_code=404)
    if job.finished_at is not None and call.state.clock.now() - job.finished_at > FILE_RETENTION_DAYS * 86400:
        return PlainTextResponse("The export file has expired", status_code=404)
    data = job.file
    media = MEDIA_TYPES.get(job.format, "text/plain;charset=UTF-8")
    header = call.request.headers.get("range")
    call.records = job.number_of_records
    if not header:
        return Response(data, media_type=media, headers={"Accept-Ranges": "bytes"})
    match = _RANGE.match(header.replace(" ", ""))
    size = len(data)
    if match is None or (not match.group(1) and not match.group(2)):
        return PlainTextResponse("Invalid range", status_code=416, headers={"Content-Range": f"bytes */{size}"})
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:
        start, end = max(0, size - int(match.group(2))), size - 1
    if start >= size or start > end:
        return PlainTextResponse("Range not satisfiable", status_code=416, headers={"Content-Range": f"bytes */{size}"})
    headers = {"Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{size}"}
    return Response(data[start : end + 1], status_code=206, media_type=media, headers=headers)


def add_routes(router: Router) -> None:
    router.add("POST", "/bulk/v1/leads.json", import_leads, bulk_upload=True)
    router.add("GET", "/bulk/v1/leads/batch/{id}.json", import_status)
    router.add("GET", "/bulk/v1/leads/batch/{id}/failures.json", _report("failures"))
    router.add("GET", "/bulk/v1/leads/batch/{id}/warnings.json", _report("warnings"))
    for kind in ("leads", "activities"):
        base = f"/bulk/v1/{kind}/export"
        router.add("POST", f"{base}/create.json", create_export)
        router.add("GET", f"{base}.json", list_exports)
        router.add("POST", f"{base}/{{id}}/enqueue.json", enqueue_export)
        router.add("GET", f"{base}/{{id}}/status.json", export_status)
        router.add("POST", f"{base}/{{id}}/cancel.json", cancel_export)
        router.add("GET", f"{base}/{{id}}/file.json", export_file)
