"""Bulk import of persons and bulk extract of persons and activities: jobs that progress on the emulator's clock.

Each job waits in a FIFO queue (2 running at once, 10 queued including the running ones), then runs for
`bulk_min_seconds + rows / bulk_rows_per_second`. Progress is worked out whenever anything reads the state (every API
call and every test control), and on the web app's own tick while a job is queued or running (web.py), so a status
call does not do the work of the seconds before it. An import applies its rows progressively while it
runs; a test fault can make the next import fail after N rows, or the next export fail.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from emulators.marketo.activities import DELETE_LEAD, Activity
from emulators.marketo.clock import iso
from emulators.marketo.errors import RequestError
from emulators.marketo.persons import ChangeSource

DELIMITERS = {"csv": ",", "tsv": "\t", "ssv": ";"}
IMPORT_SOURCE = ChangeSource(api_method="importLead")  # (unverified) Source/method recorded for bulk imports
FAILURE_COLUMN = "Import Failure Reason"  # (unverified) name of the appended column
WARNING_COLUMN = "Import Warning Reason"  # (unverified)
ACTIVITY_EXPORT_FIELDS = (
    "marketoGUID",
    "leadId",
    "activityDate",
    "activityTypeId",
    "campaignId",
    "primaryAttributeValueId",
    "primaryAttributeValue",
    "attributes",
)


@dataclass
class Job:
    """What the scheduler needs of a job."""

    queued_at: float | None = None
    started_at: float | None = None
    finish_at: float | None = None
    finished_at: float | None = None

    @property
    def waiting(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def start(self, at: float, jobs: BulkJobs) -> None:
        raise NotImplementedError

    def progress(self, now: float, jobs: BulkJobs) -> None:
        """Work done up to `now` (not past finish_at)."""

    def finish(self, jobs: BulkJobs) -> None:
        raise NotImplementedError


@dataclass
class ImportJob(Job):
    batch_id: int = 0
    format: str = "csv"
    lookup_field: str = "email"
    partition: str | None = None
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    status: str = "Queued"
    applied: int = 0
    imported: int = 0
    failures: list[tuple[list[str], str]] = field(default_factory=list)
    warnings: list[tuple[list[str], str]] = field(default_factory=list)
    fail_after: int | None = None
    message: str | None = None

    @property
    def waiting(self) -> bool:
        return self.status == "Queued"

    @property
    def running(self) -> bool:
        return self.status == "Importing"

    def start(self, at: float, jobs: BulkJobs) -> None:
        self.status = "Importing"
        self.started_at = at
        config = jobs.state.config
        self.finish_at = at + config.bulk_min_seconds + len(self.rows) / config.bulk_rows_per_second
        schema = jobs.state.schema
        unknown = [name for name in self.header if schema.get(name) is None]
        if unknown:
            self.status, self.finished_at = "Failed", at
            self.message = f"Import failed: field(s) not found: {', '.join(unknown)}"  # (unverified) wording
        elif self.lookup_field not in self.header:
            self.status, self.finished_at = "Failed", at
            self.message = f"Import failed: lookup field '{self.lookup_field}' is not in the file"

    def progress(self, now: float, jobs: BulkJobs) -> None:
        if not self.running or self.started_at is None or self.finish_at is None:
            return
        span = max(self.finish_at - self.started_at, 1e-9)
        target = len(self.rows) if now >= self.finish_at else int(len(self.rows) * (now - self.started_at) / span)
        if self.fail_after is not None:
            target = min(target, self.fail_after)
        while self.applied < target:
            # stamped when the job processed it (evenly over its run), not when a request made the emulator look
            at = min(now, self.started_at + span * (self.applied + 1) / len(self.rows))
            self._apply(self.rows[self.applied], jobs, at)
            self.applied += 1
        if self.fail_after is not None and self.applied >= self.fail_after and now >= self.started_at:
            self.status, self.finished_at = "Failed", now
            self.message = f"Import failed: internal error after {self.applied} rows"  # a test fault

    def _apply(self, row: list[str], jobs: BulkJobs, at: float | None = None) -> None:
        store = jobs.state.persons
        if len(row) != len(self.header):
            self.failures.append((row, f"Invalid row: {len(row)} values for {len(self.header)} columns"))
            return
        record: dict[str, Any] = {}
        truncated: list[str] = []
        for name, value in zip(self.header, row, strict=True):
            if value == "":
                continue  # (unverified) blank cells do not overwrite
            definition = jobs.state.schema.get(name)
            limit = definition.length if definition is not None else None
            if limit and len(value) > limit and definition is not None and definition.data_type != "email":
                value = value[:limit]
                truncated.append(name)
            record[name] = value
        action = "updateOnly" if self.lookup_field == "id" else "createOrUpdate"
        result = store.sync([record], action, self.lookup_field, self.partition, IMPORT_SOURCE, at=at)[0]
        if result["status"] == "skipped":
            reason = result["reasons"][0]
            self.failures.append((row, f"{reason['code']}: {reason['message']}"))
            return
        self.imported += 1
        if truncated:
            fields = ", ".join(truncated)
            self.warnings.append((row, f"Value truncated to the field's length: {fields}"))

    def finish(self, jobs: BulkJobs) -> None:
        self.progress(self.finish_at or 0.0, jobs)
        if self.status == "Importing":
            self.status = "Complete"
            self.finished_at = self.finish_at

    def status_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "batchId": self.batch_id,
            "importId": str(self.batch_id),
            "status": self.status,
            "numOfLeadsProcessed": self.imported,
            "numOfRowsFailed": len(self.failures),
            "numOfRowsWithWarning": len(self.warnings),
        }
        if self.status == "Complete":
            imported = f"{self.imported} records imported ({self.imported} members)"
            if self.failures:
                entry["message"] = f"Import completed with errors, {imported}, {len(self.failures)} failed"
            else:
                entry["message"] = f"Import succeeded, {imported}"
        elif self.status == "Failed":
            entry["message"] = self.message
        elif self.status == "Importing":
            entry["message"] = "Import in progress"  # (unverified)
        else:
            entry["message"] = "Queued for processing"  # (unverified)
        return entry

    def report(self, which: str) -> bytes:
        rows = self.failures if which == "failures" else self.warnings
        column = FAILURE_COLUMN if which == "failures" else WARNING_COLUMN
        return _render([*self.header, column], ([*row, reason] for row, reason in rows), self.format)


@dataclass
class ExportJob(Job):
    kind: str = "leads"  # or "activities"
    export_id: str = ""
    format: str = "CSV"
    fields: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    date_field: str = "createdAt"
    start_at: float = 0.0
    end_at: float = 0.0
    type_ids: set[int] | None = None
    status: str = "Created"
    created_at: float = 0.0
    snapshot: list[Any] = field(default_factory=list)
    file: bytes | None = None
    number_of_records: int = 0
    fail: bool = False

    @property
    def waiting(self) -> bool:
        return self.status == "Queued"

    @property
    def running(self) -> bool:
        return self.status == "Processing"

    def start(self, at: float, jobs: BulkJobs) -> None:
        self.status = "Processing"
        self.started_at = at
        self.snapshot = jobs.select(self)
        config = jobs.state.config
        self.finish_at = at + config.bulk_min_seconds + len(self.snapshot) / config.bulk_rows_per_second

    def finish(self, jobs: BulkJobs) -> None:
        self.finished_at = self.finish_at
        if self.fail:
            self.status = "Failed"
            self.snapshot = []
            return
        self.file = jobs.render(self)
        self.number_of_records = len(self.snapshot)
        self.snapshot = []
        self.status = "Completed"

    def status_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"exportId": self.export_id, "format": self.format, "status": self.status}
        entry["createdAt"] = iso(self.created_at)
        for name, value in (("queuedAt", self.queued_at), ("startedAt", self.started_at)):
            if value is not None:
                entry[name] = iso(value)
        if self.status in ("Completed", "Failed") and self.finished_at is not None:
            entry["finishedAt"] = iso(self.finished_at)
        if self.status == "Completed" and self.file is not None:
            entry["numberOfRecords"] = self.number_of_records
            entry["fileSize"] = len(self.file)
            entry["fileChecksum"] = "sha256:" + hashlib.sha256(self.file).hexdigest()
        if self.status == "Failed":
            entry["errorMsg"] = "Export failed: internal error"  # (unverified) field name
        return entry


def _render(header: list[str], rows: Iterable[list[Any]], file_format: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=DELIMITERS[file_format.lower()], lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class BulkJobs:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.imports: dict[int, ImportJob] = {}
        self.exports: dict[str, ExportJob] = {}
        self.next_batch = 1000
        self.fail_next_import_after: int | None = None
        self.fail_next_export = False

    # ----- the clock
    def tick(self) -> None:
        now = self.state.clock.now()
        self._schedule(list(self.imports.values()), now)
        self._schedule(list(self.exports.values()), now)

    def _schedule(self, jobs: list[Any], now: float) -> None:
        config = self.state.config
        moment = 0.0  # when a slot last became free
        while True:
            running = [job for job in jobs if job.running]
            waiting = sorted((job for job in jobs if job.waiting), key=lambda job: job.queued_at)
            while len(running) < config.bulk_max_running and waiting:
                begin = max(waiting[0].queued_at + config.bulk_pickup_seconds, moment)
                if begin > now:
                    break
                job = waiting.pop(0)
                job.start(begin, self)
                if job.running:
                    running.append(job)
            if not running:
                return
            job = min(running, key=lambda item: item.finish_at)
            if job.finish_at > now:
                for item in running:
                    item.progress(now, self)
                return
            moment = job.finish_at
            job.finish(self)

    def queue_size(self, jobs: Iterable[Any]) -> int:
        return sum(1 for job in jobs if job.waiting or job.running)

    # ----- imports
    def submit_import(self, content: bytes, file_format: str, lookup_field: str, partition: str | None) -> ImportJob:
        config = self.state.config
        if self.queue_size(self.imports.values()) >= config.bulk_max_queued:
            raise RequestError("1016", "Too many imports")
        if file_format not in DELIMITERS:
            raise RequestError("1003", f"Invalid format '{file_format}': csv, tsv or ssv")
        definition = self.state.schema.get(lookup_field)
        if definition is None or not definition.searchable:
            raise RequestError("1003", f"Invalid lookupField '{lookup_field}'")
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RequestError("1003", "Invalid file: not UTF-8") from None
        try:
            parsed = list(csv.reader(io.StringIO(text), delimiter=DELIMITERS[file_format]))
        except csv.Error as problem:
            raise RequestError("1003", f"Invalid file: {problem}") from None
        parsed = [row for row in parsed if row]
        if not parsed:
            raise RequestError("1003", "Empty file")
        job = ImportJob(
            batch_id=self.next_batch,
            format=file_format,
            lookup_field=lookup_field,
            partition=partition,
            header=[name.strip() for name in parsed[0]],
            rows=parsed[1:],
            queued_at=self.state.clock.now(),
            fail_after=self.fail_next_import_after,
        )
        self.fail_next_import_after = None
        self.next_batch += 1
        self.imports[job.batch_id] = job
        self.tick()
        return job

    def get_import(self, raw_id: str) -> ImportJob:
        try:
            return self.imports[int(raw_id)]
        except (KeyError, ValueError):
            raise RequestError("1003", f"Invalid batchId '{raw_id}'") from None  # (unverified) code

    # ----- exports
    def _quota_left(self) -> bool:
        today = self.state.clock.central_date()
        used = sum(
            len(job.file)
            for job in self.exports.values()
            if job.file is not None
            and job.finished_at is not None
            and self.state.clock.central_date(job.finished_at) == today
        )
        return used < self.state.config.export_daily_quota_bytes

    def create_export(self, kind: str, body: dict[str, Any]) -> ExportJob:
        if not self._quota_left():
            raise RequestError("1029", "Export daily quota 500MB exceeded")
        file_format = str(body.get("format") or "CSV").upper()
        if file_format.lower() not in DELIMITERS:
            raise RequestError("1003", f"Invalid format '{file_format}': CSV, TSV or SSV")
        filters = body.get("filter")
        if not isinstance(filters, dict):
            raise RequestError("701", "filter cannot be blank")
        job = ExportJob(kind=kind, export_id=str(uuid.uuid4()), format=file_format, created_at=self.state.clock.now())
        if kind == "leads":
            self._lead_export(job, body, filters)
        else:
            self._activity_export(job, body, filters)
        headers = body.get("columnHeaderNames") or {}
        if not isinstance(headers, dict) or any(name not in job.fields for name in headers):
            raise RequestError("1003", "columnHeaderNames must name fields of the job")
        job.headers = {str(key): str(value) for key, value in headers.items()}
        if job.fail is False and self.fail_next_export:
            job.fail, self.fail_next_export = True, False
        self.exports[job.export_id] = job
        return job

    def _date_range(self, job: ExportJob, name: str, value: Any) -> None:
        from emulators.marketo.clock import parse_datetime

        if not isinstance(value, dict) or "startAt" not in value or "endAt" not in value:
            raise RequestError("1003", f"{name} filter needs startAt and endAt")
        try:
            job.start_at = parse_datetime(str(value["startAt"]))
            job.end_at = parse_datetime(str(value["endAt"]))
        except ValueError:
            raise RequestError("1003", f"Invalid date in {name} filter") from None
        if job.end_at < job.start_at:
            raise RequestError("1003", f"{name}: endAt is before startAt")
        if job.end_at - job.start_at > self.state.config.export_max_days * 86400:
            raise RequestError("1003", f"{name}: date range exceeds {self.state.config.export_max_days} days")
        job.date_field = name

    def _lead_export(self, job: ExportJob, body: dict[str, Any], filters: dict[str, Any]) -> None:
        fields = body.get("fields")
        if not fields or not isinstance(fields, list):
            raise RequestError("701", "fields cannot be blank")
        for name in fields:
            if self.state.schema.get(str(name)) is None:
                raise RequestError("1006", f"Field '{name}' not found")
        job.fields = [str(name) for name in fields]
        kinds = ("createdAt", "updatedAt", "staticListName", "staticListId", "smartListName", "smartListId")
        given = [name for name in filters if name in kinds]
        if len(given) != 1 or len(filters) != 1:
            raise RequestError("1003", f"Exactly one filter of {', '.join(kinds)} is required")
        name = given[0]
        if name.startswith("smartList"):
            raise RequestError("1035", "Unsupported filter type for target subscription")
        if name.startswith("staticList"):
            raise RequestError("1003", f"Static list '{filters[name]}' not found")
        self._date_range(job, name, filters[name])

    def _activity_export(self, job: ExportJob, body: dict[str, Any], filters: dict[str, Any]) -> None:
        fields = body.get("fields") or list(ACTIVITY_EXPORT_FIELDS)
        allowed = (*ACTIVITY_EXPORT_FIELDS, "actionResult")
        for name in fields:
            if name not in allowed:
                raise RequestError("1003", f"Invalid field '{name}'")
        job.fields = [str(name) for name in fields]
        if "createdAt" not in filters:
            raise RequestError("1003", "createdAt filter is required")
        self._date_range(job, "createdAt", filters["createdAt"])
        type_ids = filters.get("activityTypeIds")
        if type_ids is not None:
            try:
                job.type_ids = {int(value) for value in type_ids}
            except (TypeError, ValueError):
                raise RequestError("1003", "Invalid activityTypeIds") from None
            if DELETE_LEAD in job.type_ids:
                raise RequestError("1003", "Delete Lead activities are not supported; use Get Deleted Leads")

    def get_export(self, kind: str, export_id: str) -> ExportJob:
        job = self.exports.get(export_id)
        if job is None or job.kind != kind:
            raise RequestError("1003", f"Export job '{export_id}' not found")  # (unverified) code
        return job

    def enqueue(self, job: ExportJob) -> None:
        if job.status != "Created":
            raise RequestError("1003", f"Job is {job.status}, not Created")  # (unverified)
        if not self._quota_left():
            raise RequestError("1029", "Export daily quota 500MB exceeded")
        if self.queue_size(self.exports.values()) >= self.state.config.bulk_max_queued:
            raise RequestError("1029", "Too many jobs in queue")
        job.status = "Queued"
        job.queued_at = self.state.clock.now()
        self.tick()

    def cancel(self, job: ExportJob) -> None:
        if job.status in ("Completed", "Failed", "Cancelled"):
            raise RequestError("1003", f"Job is {job.status} and cannot be cancelled")  # (unverified)
        job.status = "Cancelled"
        job.snapshot = []
        self.tick()

    def select(self, job: ExportJob) -> list[Any]:
        """What the job exports, fixed when it starts processing."""
        if job.kind == "activities":
            persons = self.state.persons.persons
            types = job.type_ids
            return [
                activity
                for activity in self.state.log.in_range(job.start_at, job.end_at)
                if activity.type_id != DELETE_LEAD
                and (types is None or activity.type_id in types)
                and activity.lead_id in persons
            ]
        low, high = iso(job.start_at), iso(job.end_at)
        name = job.date_field
        return [ident for ident, values in self.state.persons.persons.items() if low <= values.get(name, "") <= high]

    def render(self, job: ExportJob) -> bytes:
        header = [job.headers.get(name, name) for name in job.fields]
        if job.kind == "activities":
            rows = (_activity_row(activity, job.fields) for activity in job.snapshot)
        else:
            store = self.state.persons
            persons, fields = store.persons, job.fields
            rows = (
                [_cell(values.get(name)) for name in fields]
                for values in (store.view(ident) for ident in job.snapshot if ident in persons)
            )
        return _render(header, rows, job.format)


def _activity_row(activity: Activity, fields: list[str]) -> list[str]:
    row = []
    for name in fields:
        if name == "marketoGUID":
            row.append(str(activity.id))
        elif name == "leadId":
            row.append(str(activity.lead_id))
        elif name == "activityDate":
            row.append(iso(activity.date))
        elif name == "activityTypeId":
            row.append(str(activity.type_id))
        elif name == "primaryAttributeValueId":
            row.append(_cell(activity.primary_id))
        elif name == "primaryAttributeValue":
            row.append(_cell(activity.primary_value))
        elif name == "actionResult":
            row.append("succeeded")
        elif name == "attributes":
            attributes = {entry["name"]: entry["value"] for entry in activity.as_activity()["attributes"]}
            row.append(orjson.dumps(attributes).decode() if attributes else "null")
        else:
            row.append("null")  # campaignId: no campaigns here
    return row
