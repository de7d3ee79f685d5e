"""Full-sync jobs: the job, its tasks (one per entity and direction) with their checkpoints, and entity claims.

Rows:
    PartitionKey = job id, RowKey = "job"                    -> the job: entities, direction, dry run, state, error
    PartitionKey = job id, RowKey = "task~<entity>~<phase>"  -> a task: state, cursor, pages done, counts, API calls
    PartitionKey = "claim", RowKey = <entity>                -> the job that holds the entity

A job's rows share a partition, so reading a job's status is one partition query. A task's checkpoint is replaced
with its ETag (compare-and-swap): of two deliveries of the same queue message only one can record the page, and
the other sees the page already done. A claim is an insert that fails when another job holds the entity: two
concurrent starts of a full sync of one entity cannot both succeed.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode
from pydantic import BaseModel, Field

from sync.mapping.model import Direction
from sync.state.keys import encode_key

JobState: TypeAlias = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Phase: TypeAlias = Literal["to_marketo", "to_dynamics"]
_CLAIMS = "claim"


class CheckpointConflict(Exception):
    """The task's checkpoint moved since it was read (another delivery of the same message recorded it)."""


class EntityClaimed(Exception):
    def __init__(self, entity: str, job_id: str) -> None:
        super().__init__(f"a full sync of {entity} is already running (job {job_id})")
        self.entity = entity
        self.job_id = job_id


class TaskCounts(BaseModel):
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: int = 0

    def add(self, other: dict[str, int]) -> TaskCounts:
        merged = self.model_dump()
        for key, value in other.items():
            if key in merged:
                merged[key] += value
        return TaskCounts(**merged)


class Task(BaseModel):
    job_id: str
    entity: str
    phase: Phase
    state: JobState = "queued"
    cursor: str | None = None
    pages_done: int = 0
    next_enqueued: bool = False
    counts: TaskCounts = Field(default_factory=TaskCounts)
    api_calls: dict[str, int] = Field(default_factory=dict)
    expected_records: int | None = None  # when known, for the ETA
    marketo_start: str | None = None  # the Marketo watermark taken when the job started
    fresh: bool = False  # no link of this entity existed when the task was planned: a page read once finds none
    index_from: str | None = None  # to_marketo: "" no match index, else where its export windows start (ISO)
    dynamics_index: bool | None = None  # to_dynamics: False once Dataverse proved too big for a match index to pay
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    etag: str | None = None

    @property
    def row_key(self) -> str:
        return f"task~{encode_key(self.entity)}~{self.phase}"


class Job(BaseModel):
    job_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    entities: list[str]
    direction: Direction
    dry_run: bool = False
    state: JobState = "queued"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    error: str | None = None
    etag: str | None = None


class JobStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    # --- claims -------------------------------------------------------------------------------------------------
    def claim(self, job_id: str, entities: list[str]) -> None:
        """Claim every entity for the job, or none: raise EntityClaimed naming the job that holds one."""
        taken: list[str] = []
        for entity in entities:
            try:
                self._table.create_entity(
                    {"PartitionKey": _CLAIMS, "RowKey": encode_key(entity), "JobId": job_id, "Entity": entity}
                )
                taken.append(entity)
            except ResourceExistsError:
                holder = self._table.get_entity(_CLAIMS, encode_key(entity))["JobId"]
                self.release(job_id, taken)
                raise EntityClaimed(entity, holder) from None

    def release(self, job_id: str, entities: list[str]) -> None:
        for entity in entities:
            try:
                row = self._table.get_entity(_CLAIMS, encode_key(entity))
            except ResourceNotFoundError:
                continue
            if row["JobId"] == job_id:
                with contextlib.suppress(ResourceNotFoundError, HttpResponseError):
                    self._table.delete_entity(
                        _CLAIMS,
                        encode_key(entity),
                        etag=row.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )

    def holder(self, entity: str) -> str | None:
        try:
            return str(self._table.get_entity(_CLAIMS, encode_key(entity))["JobId"])
        except ResourceNotFoundError:
            return None

    # --- jobs ---------------------------------------------------------------------------------------------------
    def create(self, job: Job, tasks: list[Task]) -> None:
        rows = [("create", self._job_row(job))] + [("create", self._task_row(task)) for task in tasks]
        self._table.submit_transaction(rows)

    def get(self, job_id: str) -> tuple[Job, list[Task]] | None:
        rows = list(self._table.query_entities("PartitionKey eq @pk", parameters={"pk": encode_key(job_id)}))
        header = next((r for r in rows if r["RowKey"] == "job"), None)
        if header is None:
            return None
        tasks = [self._task_from_row(r) for r in rows if r["RowKey"].startswith("task~")]
        return self._job_from_row(header), tasks

    def update_job(self, job: Job) -> Job:
        job.updated_at = datetime.now(UTC)
        meta = self._table.update_entity(self._job_row(job), mode=UpdateMode.REPLACE)
        return job.model_copy(update={"etag": meta["etag"]})

    def get_task(self, job_id: str, entity: str, phase: Phase) -> Task:
        row = self._table.get_entity(encode_key(job_id), f"task~{encode_key(entity)}~{phase}")
        return self._task_from_row(row)

    def save_task(self, task: Task) -> Task:
        """Replace the task's row if it is unchanged since read (ETag); else raise CheckpointConflict."""
        task = task.model_copy(update={"updated_at": datetime.now(UTC)})
        try:
            meta = self._table.update_entity(
                self._task_row(task),
                mode=UpdateMode.REPLACE,
                etag=task.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if isinstance(exc, HttpResponseError) and exc.status_code not in (404, 412):
                raise
            raise CheckpointConflict(f"task {task.entity}/{task.phase} of job {task.job_id} moved") from exc
        return task.model_copy(update={"etag": meta["etag"]})

    def list_jobs(self, limit: int = 20) -> list[Job]:
        rows = self._table.query_entities("RowKey eq 'job'")
        jobs = [self._job_from_row(r) for r in rows]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)[:limit]

    # --- rows ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _job_row(job: Job) -> dict[str, Any]:
        row = {
            "PartitionKey": encode_key(job.job_id),
            "RowKey": "job",
            "JobId": job.job_id,
            "Entities": json.dumps(job.entities),
            "Direction": job.direction,
            "DryRun": job.dry_run,
            "State": job.state,
            "CreatedAt": job.created_at,
            "UpdatedAt": job.updated_at,
            "FinishedAt": job.finished_at,
            "CancelRequested": job.cancel_requested,
            "Error": (job.error or "")[:8000] or None,
        }
        return {k: v for k, v in row.items() if v is not None}

    @staticmethod
    def _job_from_row(row: TableEntity) -> Job:
        return Job(
            job_id=row["JobId"],
            entities=json.loads(row["Entities"]),
            direction=row["Direction"],
            dry_run=row.get("DryRun", False),
            state=row["State"],
            created_at=row["CreatedAt"],
            updated_at=row.get("UpdatedAt"),
            finished_at=row.get("FinishedAt"),
            cancel_requested=row.get("CancelRequested", False),
            error=row.get("Error"),
            etag=row.metadata["etag"],
        )

    @staticmethod
    def _task_row(task: Task) -> dict[str, Any]:
        row = {
            "PartitionKey": encode_key(task.job_id),
            "RowKey": task.row_key,
            "JobId": task.job_id,
            "Entity": task.entity,
            "Phase": task.phase,
            "State": task.state,
            "Cursor": task.cursor,
            "PagesDone": task.pages_done,
            "NextEnqueued": task.next_enqueued,
            "CountsJson": task.counts.model_dump_json(),
            "ApiCallsJson": json.dumps(task.api_calls, sort_keys=True),
            "ExpectedRecords": task.expected_records,
            "MarketoStart": task.marketo_start,
            "Fresh": task.fresh,
            "IndexFrom": task.index_from,
            "DynamicsIndex": task.dynamics_index,
            "StartedAt": task.started_at,
            "UpdatedAt": task.updated_at,
            "FinishedAt": task.finished_at,
            "Error": (task.error or "")[:8000] or None,
        }
        return {k: v for k, v in row.items() if v is not None}

    @staticmethod
    def _task_from_row(row: TableEntity) -> Task:
        return Task(
            job_id=row["JobId"],
            entity=row["Entity"],
            phase=row["Phase"],
            state=row["State"],
            cursor=row.get("Cursor"),
            pages_done=row.get("PagesDone", 0),
            next_enqueued=row.get("NextEnqueued", False),
            counts=TaskCounts.model_validate_json(row.get("CountsJson") or "{}"),
            api_calls=json.loads(row.get("ApiCallsJson") or "{}"),
            expected_records=row.get("ExpectedRecords"),
            marketo_start=row.get("MarketoStart"),
            fresh=row.get("Fresh", False),
            index_from=row.get("IndexFrom"),
            dynamics_index=row.get("DynamicsIndex"),
            started_at=row.get("StartedAt"),
            updated_at=row.get("UpdatedAt"),
            finished_at=row.get("FinishedAt"),
            error=row.get("Error"),
            etag=row.metadata["etag"],
        )
