"""Pydantic models at the edge of the Marketo connector: nothing past it sees Marketo's raw JSON."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Reason(BaseModel):
    code: str
    message: str


class RecordResult(BaseModel):
    """The outcome for one input record, at its position in the input list."""

    index: int
    id: int | str | None = None  # lead id, company id, or marketoGUID
    status: str  # created | updated | skipped | deleted | failed
    reasons: list[Reason] = []

    @property
    def ok(self) -> bool:
        return self.status in ("created", "updated", "deleted")


class MarketoPerson(BaseModel):
    id: int
    values: dict[str, Any]  # REST field name -> value, as Marketo returned it (id included)


class FieldChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    new_value: Any = Field(default=None, alias="newValue")
    old_value: Any = Field(default=None, alias="oldValue")


class LeadActivity(BaseModel):
    id: int
    marketo_guid: str
    lead_id: int
    activity_date: datetime
    activity_type_id: int
    primary_attribute_value: Any = None
    primary_attribute_value_id: int | None = None  # activities.json: Change Data Value's field id, and the like
    fields: list[FieldChange] = []
    attributes: dict[str, Any] = {}


class ActivityPage(BaseModel):
    activities: list[LeadActivity]
    next_page_token: str  # the watermark after this page
    more_result: bool


class ActivityType(BaseModel):
    id: int
    name: str
    description: str | None = None


class LeadField(BaseModel):
    """One person field, from describe (REST name) and, where available, describe2 (updateable, crmManaged)."""

    name: str  # the REST API name
    display_name: str
    data_type: str
    length: int | None = None
    updateable: bool = True
    crm_managed: bool = False
    id: int | None = None
    soap_name: str | None = None


class PersonSchema(BaseModel):
    """describe2: the searchable field sets and every field."""

    name: str
    searchable_fields: list[list[str]]
    fields: list[LeadField]


class UsageUser(BaseModel):
    user_id: str
    count: int


class UsageDay(BaseModel):
    date: date
    total: int
    users: list[UsageUser] = []


class CrmRecord(BaseModel):
    """One company, opportunity, role, sales person or custom object record as read."""

    id: int | str | None  # the object's idField value (id or marketoGUID)
    values: dict[str, Any]


class ObjectField(BaseModel):
    name: str
    display_name: str | None = None
    data_type: str | None = None
    length: int | None = None
    updateable: bool = True


class ObjectDescription(BaseModel):
    name: str
    id_field: str
    dedupe_fields: list[str]
    searchable_fields: list[list[str]]
    fields: list[ObjectField]
    relationships: list[dict[str, Any]] = []


class BulkJobStatus(BaseModel):
    """The status of one bulk import (batchId) or export (exportId) job."""

    job_id: str
    status: str
    rows_processed: int | None = None
    rows_failed: int | None = None
    rows_with_warning: int | None = None
    number_of_records: int | None = None
    file_size: int | None = None
    message: str | None = None
    started_at: datetime | None = None  # Marketo's own clock (exports): when the job left the queue
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status.lower() in ("complete", "completed", "failed", "cancelled", "canceled")

    @property
    def succeeded(self) -> bool:
        return self.status.lower() in ("complete", "completed")


class BulkRowIssue(BaseModel):
    """A row the import rejected (failure) or accepted with a warning, mapped back to the input row."""

    index: int | None  # position in the input rows; None if the row Marketo returned matches no input row
    row: dict[str, str]
    reason: Reason


class BulkJobFailure(BaseModel):
    """A job that ended Failed/Cancelled (or never ran): its input rows' outcome is unknown past `rows_processed`."""

    job_id: str | None
    first_index: int
    row_count: int
    rows_processed: int | None = None
    reason: Reason


class BulkImportResult(BaseModel):
    rows_submitted: int = 0
    rows_processed: int = 0
    rows_failed: int = 0
    rows_with_warning: int = 0
    jobs: list[BulkJobStatus] = []
    failures: list[BulkRowIssue] = []
    warnings: list[BulkRowIssue] = []
    failed_jobs: list[BulkJobFailure] = []

    @property
    def ok(self) -> bool:
        return not self.failures and not self.failed_jobs
