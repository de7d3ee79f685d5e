"""The connector's pydantic models: what a read yields and what a write returns. No raw response dicts past here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DataverseRecord(BaseModel):
    """One row as read. `values` holds the columns as JSON gives them (lookups as `_x_value`); annotations such as
    FormattedValue are kept apart, by column, and only when asked for."""

    id: str
    etag: str | None = None
    values: dict[str, Any]
    annotations: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ChangePage(BaseModel):
    """One page of a change-tracking read."""

    records: list[DataverseRecord]
    deleted_ids: list[str]
    cursor: str  # the nextLink if more pages follow, else the deltaLink: store it and pass it back to resume
    is_last: bool  # this page carried the deltaLink
    full_resync: bool = False  # the stored token had expired: this is a full re-read, not a delta


class WriteError(BaseModel):
    """Why one record was not written, as Dataverse said it (code and message), with the column when known."""

    model_config = ConfigDict(frozen=True)

    status: int | None = None
    code: str
    message: str
    column: str | None = None
    record: str | None = None  # the record's id or key, e.g. "(new_marketopersonid='7')", when it had one


class WriteResult(BaseModel):
    index: int  # position in the input list
    id: str | None = None  # the record's id on success (when known: UpsertMultiple by alternate key returns none)
    created: bool | None = None  # None when the service did not say
    error: WriteError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class OptionSet(BaseModel):
    options: dict[int, str]  # value -> label


class ColumnMetadata(BaseModel):
    name: str  # LogicalName
    type: str  # AttributeType: String, Memo, Integer, Picklist, Lookup, Uniqueidentifier, DateTime, Boolean, ...
    max_length: int | None = None  # strings and memos
    required_level: str = "None"  # None | Recommended | ApplicationRequired | SystemRequired
    valid_for_create: bool = True
    valid_for_update: bool = True
    targets: list[str] = Field(default_factory=list)  # lookups: the tables it may point to
    options: dict[int, str] | None = None  # choice columns, when the option set was read

    @property
    def required(self) -> bool:
        return self.required_level in ("ApplicationRequired", "SystemRequired")


class AlternateKey(BaseModel):
    name: str
    columns: list[str]


class TableMetadata(BaseModel):
    logical_name: str
    entity_set_name: str
    primary_id_attribute: str
    primary_name_attribute: str | None = None
    change_tracking: bool = False
    columns: dict[str, ColumnMetadata] = Field(default_factory=dict)
    keys: list[AlternateKey] = Field(default_factory=list)
