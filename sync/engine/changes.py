"""Reading what changed: Marketo lead-change activities, compacted per person, and the watermark that covers them.

A Marketo watermark is two paging tokens, stored as one JSON string: lead changes (types 12, 13), and deletes and
merges (types 37 and 32). When both tokens are the same, the span of the activity log after them is read ONCE, by one
activities.json stream of types 12, 13, 32 and 37 (an idle cycle costs one Marketo call): Change Data Value carries its
field by id there, so the cursor keeps the synced fields' ids (from describe, at most once a day) and changes of other
fields are dropped here. Two streams read the span twice (leadchanges.json filters by field on the server, the deletes
and merges through one activities.json call): that is what a cursor of two different tokens does (a cursor saved
before, or a merge whose link move failed, read again), what a field without an id falls back to, and what a window
mostly of unsynced fields' changes switches to for a day (each such change fills a slot of a 300-activity page that
leadchanges.json would have filtered out; see SPLIT_SHARE). After a complete two-stream read the tokens are joined
again at the lead-change token (deletes and merges seen twice apply once).
A cycle reads the streams to their end (or until its deadline, stopping at a page boundary) before merging, so every
pair is merged once, with both sides' changes in hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from sync.connectors.marketo.activities import change_data_value
from sync.connectors.marketo.models import LeadActivity

if TYPE_CHECKING:
    from sync.connectors.marketo import MarketoClient

NEW_LEAD = 12
CHANGE_DATA_VALUE = 13
MERGE_LEADS = 32
DELETE_LEAD = 37
ONE_STREAM_TYPES = [NEW_LEAD, CHANGE_DATA_VALUE, MERGE_LEADS, DELETE_LEAD]
MERGE_IDS = "Merge IDs"  # the activity's attribute naming the losers (text: "123,456", or "[123, 456]")
DESCRIBE_EVERY = timedelta(days=1)  # the synced fields' ids are read again after this (a field deleted and re-made)
SPLIT_SHARE = 0.5  # a one-stream read whose activities were mostly unsynced fields' changes ...
SPLIT_MIN_PAGES = 3  # ... over at least this many pages: two streams for SPLIT_FOR
SPLIT_FOR = timedelta(days=1)


class CursorField(BaseModel):
    name: str  # the REST name
    id: int | None = None  # None: describe gave it none (then two streams, until describe is read again)
    display: str = ""  # its display name, when describe read it: an unknown field id of that name re-reads describe


class MarketoCursor(BaseModel):
    changes: str
    deletes: str
    merges: str | None = None  # no longer written: `deletes` covers merges too (kept so older cursors still load)
    fields: list[CursorField] | None = None  # the synced fields' ids, for the one-stream read
    described_at: datetime | None = None
    split_until: datetime | None = None  # two streams until then (the one stream was mostly other fields' changes)

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def load(cls, cursor: str) -> MarketoCursor:
        return cls.model_validate(json.loads(cursor))


@dataclass
class MarketoChangeSet:
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # person id -> field -> latest new value
    new: set[str] = field(default_factory=set)  # persons created in the window
    deleted: set[str] = field(default_factory=set)
    merged: dict[str, str] = field(default_factory=dict)  # losing person id -> the person it was merged into
    cursor: MarketoCursor | None = None
    complete: bool = True
    pages: int = 0  # activity pages read (each an API call)
    ignored: int = 0  # one stream: Change Data Value activities of fields that are not synced

    @property
    def persons(self) -> set[str]:
        return set(self.values) | self.new

    def take(self, activity: LeadActivity, names_by_id: dict[int, str] | None = None) -> None:
        """One activity of any of the four types (`names_by_id`: activities.json's Change Data Value, by field id)."""
        person = str(activity.lead_id)
        kind = activity.activity_type_id
        if kind == DELETE_LEAD:
            self.deleted.add(person)
        elif kind == MERGE_LEADS:
            for loser in merge_losers(activity.attributes.get(MERGE_IDS), person):
                self.merged[loser] = person
        elif kind == NEW_LEAD:
            self.new.add(person)
        elif names_by_id is None:
            for change in activity.fields:
                self.values.setdefault(person, {})[change.name] = change.new_value
        else:
            found = change_data_value(activity, names_by_id)
            if found is None:
                self.ignored += 1
            else:
                self.values.setdefault(person, {})[found.name] = found.new_value


def read_marketo_changes(
    client: MarketoClient,
    cursor: MarketoCursor,
    fields: list[str],
    past_deadline: Callable[[], bool],
    now: datetime | None = None,
    recheck_fields: bool = False,
) -> MarketoChangeSet:
    """Every lead change, deletion and merge since `cursor`, compacted: per person, the last value of each changed
    field. A merge moves the loser's activities to the winner, so the loser's changes arrive as the winner's.
    `recheck_fields`: read the fields' ids from describe even when the cursor's are fresh."""
    now = now or datetime.now(UTC)
    if recheck_fields:
        cursor.described_at = None
    result = MarketoChangeSet()
    split = cursor.split_until is not None and now < cursor.split_until
    known = _field_ids(client, cursor, fields, now) if cursor.changes == cursor.deletes and not split else None
    if known is not None:
        next_cursor = _read_one_stream(client, cursor, known, past_deadline, result)
        if result.pages >= SPLIT_MIN_PAGES and result.ignored > SPLIT_SHARE * result.pages * 300:
            next_cursor.split_until = now + SPLIT_FOR
    else:
        next_cursor = _read_two_streams(client, cursor, fields, past_deadline, result)
        if result.complete and not split:
            next_cursor.deletes = next_cursor.changes  # joined: the next cycle reads the span once
        if not split:
            next_cursor.split_until = None
    for loser, winner in list(result.merged.items()):  # merged again later: the link follows to the last winner
        seen = {loser}
        while winner in result.merged and winner not in seen:
            seen.add(winner)
            winner = result.merged[winner]
        result.merged[loser] = winner
    for person in result.deleted:  # a person created or changed, then deleted, is just deleted
        result.values.pop(person, None)
        result.new.discard(person)
    result.cursor = next_cursor
    return result


def _field_ids(
    client: MarketoClient, cursor: MarketoCursor, fields: list[str], now: datetime
) -> list[CursorField] | None:
    """The synced fields' ids: the cursor's, or describe's (once a day, or when the fields changed); None when one
    has none (then two streams: leadchanges.json names fields itself). Kept in `cursor`."""
    wanted = set(fields)
    held = {f.name: f for f in cursor.fields or []}
    fresh = cursor.described_at is not None and now - cursor.described_at < DESCRIBE_EVERY
    if not (fresh and wanted <= set(held)):
        described = {f.name: f for f in client.describe_leads()}
        held = {
            name: CursorField(
                name=name,
                id=described[name].id if name in described else None,
                display=described[name].display_name if name in described else "",
            )
            for name in sorted(wanted)
        }
        cursor.fields, cursor.described_at = list(held.values()), now
    found = [held[name] for name in sorted(wanted)]
    return found if all(f.id is not None for f in found) else None


def _read_one_stream(
    client: MarketoClient,
    cursor: MarketoCursor,
    known: list[CursorField],
    past_deadline: Callable[[], bool],
    result: MarketoChangeSet,
) -> MarketoCursor:
    names_by_id = {f.id: f.name for f in known if f.id is not None}
    displays = {f.display for f in known if f.display}
    described_again = False
    token = cursor.changes
    for page in client.activities(token, ONE_STREAM_TYPES):
        result.pages += 1
        for activity in page.activities:
            if (
                activity.activity_type_id == CHANGE_DATA_VALUE
                and activity.primary_attribute_value_id not in names_by_id
                and activity.primary_attribute_value in displays
                and not described_again
            ):  # a synced field's name with another id: deleted and made again? describe once more
                described_again = True
                cursor.described_at = None
                again = _field_ids(client, cursor, [f.name for f in known], datetime.now(UTC))
                names_by_id = {f.id: f.name for f in again or known if f.id is not None}
            result.take(activity, names_by_id)
        token = page.next_page_token
        if page.more_result and past_deadline():
            result.complete = False
            break
    return cursor.model_copy(update={"changes": token, "deletes": token, "merges": None})


def _read_two_streams(
    client: MarketoClient,
    cursor: MarketoCursor,
    fields: list[str],
    past_deadline: Callable[[], bool],
    result: MarketoChangeSet,
) -> MarketoCursor:
    changes_token, deletes_token = cursor.changes, cursor.deletes
    for page in client.lead_changes(changes_token, fields):
        result.pages += 1
        for activity in page.activities:
            result.take(activity)
        changes_token = page.next_page_token
        if page.more_result and past_deadline():
            result.complete = False
            break
    for page in client.activities(deletes_token, [DELETE_LEAD, MERGE_LEADS]):
        result.pages += 1
        for activity in page.activities:
            result.take(activity)
        deletes_token = page.next_page_token
        if page.more_result and past_deadline():
            result.complete = False
            break
    return cursor.model_copy(update={"changes": changes_token, "deletes": deletes_token, "merges": None})


def merge_losers(merge_ids: Any, winner: str) -> list[str]:
    """The losing person ids a Merge Leads activity names (the winner is the activity's person)."""
    return [ident for ident in re.findall(r"\d+", str(merge_ids or "")) if ident != winner]


def initial_marketo_cursor(client: MarketoClient, since: datetime) -> MarketoCursor:
    token = client.get_paging_token(since)
    return MarketoCursor(changes=token, deletes=token)  # one token: the first cycle reads one stream
