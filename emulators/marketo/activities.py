"""The activity log: every person change appends activities in id order; paging tokens point into it.

A paging token is base32 text (as Marketo's are, with `=` padding, so clients must URL-encode it) of
`<since datetime>,<position>,<page number>,<flags>`. Pages scan at most `activity_scan_limit` activities, so a
filtered page can be short or empty while `moreResult` is true; on top of that a deterministic share of pages is
cut short or returned empty on purpose (Config.short_page_every / empty_page_every), as Marketo's pages sometimes are.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from emulators.marketo.clock import iso, parse_datetime

VISIT_WEBPAGE = 1
FILL_OUT_FORM = 2
NEW_LEAD = 12
CHANGE_DATA_VALUE = 13
MERGE_LEADS = 32
DELETE_LEAD = 37

API_SOURCE = "Web service API"
FORM_SOURCE = "Web form fill"  # (unverified) the Source Marketo records for a form fill
UI_SOURCE = "Person detail page"  # (unverified) the Source of a marketer's edit in the person detail page

ACTIVITY_TYPES: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "Visit Webpage",
        "description": "User visits a web page",
        "primaryAttribute": {"name": "Webpage ID", "dataType": "integer"},
        "attributes": [
            {"name": "Client IP Address", "dataType": "string"},
            {"name": "Query Parameters", "dataType": "string"},
            {"name": "Referrer URL", "dataType": "string"},
            {"name": "User Agent", "dataType": "string"},
            {"name": "Webpage URL", "dataType": "string"},
        ],
    },
    {
        "id": 2,
        "name": "Fill Out Form",
        "description": "User fills out and submits form on web page",
        "primaryAttribute": {"name": "Webform ID", "dataType": "integer"},
        "attributes": [
            {"name": "Client IP Address", "dataType": "string"},
            {"name": "Form Fields", "dataType": "text"},
            {"name": "Query Parameters", "dataType": "string"},
            {"name": "Referrer URL", "dataType": "string"},
            {"name": "User Agent", "dataType": "string"},
            {"name": "Webpage ID", "dataType": "integer"},
        ],
    },
    {
        "id": NEW_LEAD,
        "name": "New Lead",
        "description": "New person",
        "attributes": [
            {"name": "API Method Name", "dataType": "string"},
            {"name": "Created Date", "dataType": "date"},
            {"name": "Form Name", "dataType": "string"},
            {"name": "Lead Source", "dataType": "string"},
            {"name": "List Name", "dataType": "string"},
            {"name": "Modifying User", "dataType": "string"},
            {"name": "Source Type", "dataType": "string"},
        ],
    },
    {
        "id": CHANGE_DATA_VALUE,
        "name": "Change Data Value",
        "description": "Changed attribute value for a person",
        "primaryAttribute": {"name": "Attribute Name", "dataType": "integer"},
        "attributes": [
            {"name": "API Method Name", "dataType": "string"},
            {"name": "Modifying User", "dataType": "string"},
            {"name": "New Value", "dataType": "text"},
            {"name": "Old Value", "dataType": "text"},
            {"name": "Reason", "dataType": "text"},
            {"name": "Request Id", "dataType": "string"},
            {"name": "Source", "dataType": "string"},
        ],
    },
    {
        "id": MERGE_LEADS,
        "name": "Merge Leads",
        "description": "Merge two or more persons",
        "primaryAttribute": {"name": "Lead ID", "dataType": "integer"},
        "attributes": [
            {"name": "Master Updated", "dataType": "boolean"},
            {"name": "Merge Source", "dataType": "string"},
            {"name": "Merged in Sales", "dataType": "boolean"},
            {"name": "Merge IDs", "dataType": "text"},
        ],
    },
    {
        "id": DELETE_LEAD,
        "name": "Delete Lead",
        "description": "Delete a person",
        "primaryAttribute": {"name": "Lead ID", "dataType": "integer"},
        "attributes": [
            {"name": "Campaign", "dataType": "string"},
            {"name": "Delete from CRM", "dataType": "boolean"},
            {"name": "Source", "dataType": "string"},
        ],
    },
]
KNOWN_TYPE_IDS = frozenset(entry["id"] for entry in ACTIVITY_TYPES)


def activity_text(value: Any) -> str | None:
    """Activity values are stored as text (booleans as true/false); None stays null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(slots=True)
class Activity:
    id: int
    lead_id: int
    date: float
    type_id: int
    primary_id: int | None = None
    primary_value: str | None = None
    field_id: int | None = None
    field: str | None = None
    new_value: str | None = None
    old_value: str | None = None
    attributes: tuple[tuple[str, Any], ...] = ()

    def attribute(self, name: str) -> Any:
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    def base(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "marketoGUID": str(self.id),
            "leadId": self.lead_id,
            "activityDate": iso(self.date),
            "activityTypeId": self.type_id,
        }

    def as_activity(self) -> dict[str, Any]:
        """The shape of /rest/v1/activities.json and deletedleads.json."""
        entry = self.base()
        if self.primary_id is not None:
            entry["primaryAttributeValueId"] = self.primary_id
        if self.primary_value is not None:
            entry["primaryAttributeValue"] = self.primary_value
        attributes = []
        if self.type_id == CHANGE_DATA_VALUE:
            attributes.append({"name": "New Value", "value": self.new_value})
            attributes.append({"name": "Old Value", "value": self.old_value})
        attributes.extend({"name": key, "value": value} for key, value in self.attributes if value is not None)
        entry["attributes"] = attributes
        return entry

    def as_lead_change(self) -> dict[str, Any]:
        """The shape of /rest/v1/activities/leadchanges.json."""
        entry = self.base()
        changes = []
        if self.type_id == CHANGE_DATA_VALUE:
            changes.append(
                {"id": self.field_id, "name": self.field, "newValue": self.new_value, "oldValue": self.old_value}
            )
        entry["fields"] = changes
        attributes = [{"name": key, "value": value} for key, value in self.attributes if value is not None]
        attributes.append({"name": "Lead ID", "value": self.lead_id})
        entry["attributes"] = attributes
        return entry


class BadToken(ValueError):
    pass


def encode_token(since: float, position: int, page: int = 0, flags: int = 0) -> str:
    return base64.b32encode(f"{iso(since)},{position},{page},{flags}".encode()).decode()


def decode_token(token: str) -> tuple[str, int, int, int]:
    text = token.strip()
    text += "=" * (-len(text) % 8)
    try:
        since, position, page, flags = base64.b32decode(text.upper()).decode().split(",")
        return since, int(position), int(page), int(flags)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadToken(f"Invalid next page token '{token}'") from None


@dataclass
class ActivityPage:
    activities: list[Activity]
    next_token: str
    more: bool


class ActivityLog:
    def __init__(self, first_id: int = 1000) -> None:
        self.first_id = first_id
        self.items: list[Activity] = []
        self.dates: list[float] = []
        self.by_lead: dict[int, list[Activity]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def append(self, lead_id: int, date: float, type_id: int, **values: Any) -> Activity:
        if self.dates and date < self.dates[-1]:
            date = self.dates[-1]  # keep dates in id order, so a token from a datetime is one bisect away
        activity = Activity(self.first_id + len(self.items), lead_id, date, type_id, **values)
        self.items.append(activity)
        self.dates.append(date)
        self.by_lead.setdefault(lead_id, []).append(activity)
        return activity

    def move_lead(self, loser: int, winner: int) -> None:
        """A merge moves the losing person's history to the winner."""
        moved = self.by_lead.pop(loser, [])
        for activity in moved:
            activity.lead_id = winner
        if moved:
            merged = self.by_lead.setdefault(winner, []) + moved
            merged.sort(key=lambda item: item.id)
            self.by_lead[winner] = merged

    def token_since(self, since: float) -> str:
        return encode_token(since, bisect.bisect_left(self.dates, since))

    def page(
        self,
        token: str,
        batch_size: int,
        keep: Callable[[Activity], bool],
        scan_limit: int,
        short_every: int,
        empty_every: int,
    ) -> ActivityPage:
        since_text, position, page, flags = decode_token(token)
        total = len(self.items)
        position = max(0, min(position, total))
        since = _parse_iso_or_zero(since_text)
        next_page = page + 1
        roll = zlib.crc32(f"{position}:{page}".encode())
        if position < total and empty_every > 0 and not flags & 1 and roll % empty_every == 0:
            return ActivityPage([], encode_token(since, position, next_page, 1), True)
        limit = batch_size
        if short_every > 0 and (roll // 7) % short_every == 0:
            limit = max(1, batch_size // 3)
        found: list[Activity] = []
        index = position
        end = min(total, position + max(scan_limit, batch_size))
        while index < end and len(found) < limit:
            activity = self.items[index]
            index += 1
            if keep(activity):
                found.append(activity)
        if index > position:
            since = self.dates[index - 1]
        return ActivityPage(found, encode_token(since, index, next_page, 0), index < total)

    def in_range(self, start: float, end: float) -> Iterable[Activity]:
        low = bisect.bisect_left(self.dates, start)
        high = bisect.bisect_right(self.dates, end)
        return self.items[low:high]


def _parse_iso_or_zero(text: str) -> float:
    try:
        return parse_datetime(text)
    except ValueError:
        return 0.0
