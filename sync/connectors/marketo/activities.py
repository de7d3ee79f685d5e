"""Change detection: paging tokens, lead changes (12/13), deleted leads (37), any activity types.

Each page is yielded with its `nextPageToken` (the watermark after it), empty pages included: a page may hold no
records while `moreResult` is true, and the caller still wants to checkpoint the token it carries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sync.connectors.marketo.envelope import Envelope
from sync.connectors.marketo.errors import CODE_PROTOCOL, MarketoError
from sync.connectors.marketo.models import ActivityPage, ActivityType, FieldChange, LeadActivity
from sync.connectors.marketo.transport import Transport

MAX_ACTIVITY_TYPES = 10
MAX_LEAD_IDS = 30
NEW_LEAD, CHANGE_DATA_VALUE, MERGE_LEADS, DELETE_LEAD = 12, 13, 32, 37


def marketo_datetime(value: datetime) -> str:
    """ISO 8601 with an offset (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def activity(item: Any) -> LeadActivity:
    """One activity record as Marketo sends it -> LeadActivity (attributes as a name -> value dict)."""
    if not isinstance(item, dict):
        raise MarketoError(CODE_PROTOCOL, f"activity is not an object: {str(item)[:200]}")
    guid = item.get("marketoGUID")
    raw_id = item.get("id", guid)
    if raw_id is None:
        raise MarketoError(CODE_PROTOCOL, f"activity has neither an id nor a marketoGUID: {str(item)[:200]}")
    try:
        return LeadActivity(
            id=int(raw_id),
            marketo_guid=str(guid if guid is not None else raw_id),
            lead_id=int(item["leadId"]),
            activity_date=item["activityDate"],
            activity_type_id=int(item["activityTypeId"]),
            primary_attribute_value=item.get("primaryAttributeValue"),
            primary_attribute_value_id=_int_or_none(item.get("primaryAttributeValueId")),
            fields=[FieldChange.model_validate(f) for f in item.get("fields") or []],
            attributes={
                str(a.get("name")): a.get("value") for a in item.get("attributes") or [] if isinstance(a, dict)
            },
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise MarketoError(CODE_PROTOCOL, f"activity {guid or raw_id} can't be read: {exc}") from None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def activity_page(envelope: Envelope, token: str) -> ActivityPage:
    return ActivityPage(
        activities=[activity(item) for item in envelope.result],
        next_page_token=envelope.next_page_token or token,
        more_result=bool(envelope.more_result),
    )


class ActivitiesApi:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def paging_token(self, since: datetime) -> str:
        params = {"sinceDatetime": marketo_datetime(since)}
        envelope = self._t.get("paging_token", "/rest/v1/activities/pagingtoken.json", params)
        if not envelope.next_page_token:
            raise MarketoError(CODE_PROTOCOL, "pagingtoken.json returned no nextPageToken")
        return envelope.next_page_token

    def _pages(self, operation: str, path: str, token: str, params: dict[str, Any]) -> Iterator[ActivityPage]:
        current = token
        for envelope in self._t.pages(operation, path, params, token=token):
            page = activity_page(envelope, current)
            current = page.next_page_token
            yield page

    def lead_changes(
        self,
        token: str,
        fields: Sequence[str],
        batch_size: int = 300,
        list_id: int | None = None,
        lead_ids: Sequence[int] = (),
    ) -> Iterator[ActivityPage]:
        if not fields:
            raise ValueError("lead_changes needs at least one field name (Marketo requires `fields`)")
        if len(lead_ids) > MAX_LEAD_IDS:
            raise ValueError(f"lead_changes takes at most {MAX_LEAD_IDS} lead ids per call, got {len(lead_ids)}")
        params = {"fields": list(fields), "batchSize": _batch(batch_size), "listId": list_id, "leadIds": list(lead_ids)}
        return self._pages("lead_changes", "/rest/v1/activities/leadchanges.json", token, _drop_empty(params))

    def deleted_leads(self, token: str, batch_size: int = 300) -> Iterator[ActivityPage]:
        params = {"batchSize": _batch(batch_size)}
        return self._pages("deleted_leads", "/rest/v1/activities/deletedleads.json", token, params)

    def activities(
        self, token: str, activity_type_ids: Sequence[int], batch_size: int = 300, lead_ids: Sequence[int] = ()
    ) -> Iterator[ActivityPage]:
        if not 1 <= len(activity_type_ids) <= MAX_ACTIVITY_TYPES:
            raise ValueError(
                f"activities takes 1 to {MAX_ACTIVITY_TYPES} activity type ids, got {len(activity_type_ids)}"
            )
        if len(lead_ids) > MAX_LEAD_IDS:
            raise ValueError(f"activities takes at most {MAX_LEAD_IDS} lead ids per call, got {len(lead_ids)}")
        params = {
            "activityTypeIds": [int(t) for t in activity_type_ids],
            "batchSize": _batch(batch_size),
            "leadIds": list(lead_ids),
        }
        return self._pages("activities", "/rest/v1/activities.json", token, _drop_empty(params))

    def types(self) -> list[ActivityType]:
        result = self._t.get("activity_types", "/rest/v1/activities/types.json").result
        return [
            ActivityType(id=int(t["id"]), name=str(t.get("name", "")), description=t.get("description")) for t in result
        ]


def _batch(batch_size: int) -> int:
    return min(max(1, int(batch_size)), 300)


def _drop_empty(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v not in (None, [], ())}


def change_data_value(item: LeadActivity, names_by_id: dict[int, str]) -> FieldChange | None:
    """A Change Data Value activity as activities.json sends it (the field by id in primaryAttributeValueId, its
    display name in primaryAttributeValue, the values as New Value / Old Value attributes) in leadchanges.json's
    shape, named by REST name; None when its field is not among `names_by_id`."""
    if item.activity_type_id != CHANGE_DATA_VALUE or item.primary_attribute_value_id is None:
        return None
    name = names_by_id.get(item.primary_attribute_value_id)
    if name is None:
        return None
    attributes = item.attributes
    return FieldChange(name=name, new_value=attributes.get("New Value"), old_value=attributes.get("Old Value"))
