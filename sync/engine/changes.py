"""Reading what changed: Marketo lead-change activities, compacted per person, and the watermark that covers them.

A Marketo watermark is two paging tokens, stored as one JSON string: lead changes (types 12, 13), and deletes and
merges (types 37 and 32, read together through one activities call, so an idle cycle costs two Marketo calls).
A cycle reads the streams to their end (or until its deadline, stopping at a page boundary) before merging, so every
pair is merged once, with both sides' changes in hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from sync.connectors.marketo import MarketoClient

NEW_LEAD = 12
CHANGE_DATA_VALUE = 13
MERGE_LEADS = 32
DELETE_LEAD = 37
MERGE_IDS = "Merge IDs"  # the activity's attribute naming the losers (text: "123,456", or "[123, 456]")


class MarketoCursor(BaseModel):
    changes: str
    deletes: str
    merges: str | None = None  # no longer written: `deletes` covers merges too (kept so older cursors still load)

    def dump(self) -> str:
        return self.model_dump_json()

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

    @property
    def persons(self) -> set[str]:
        return set(self.values) | self.new


def read_marketo_changes(
    client: MarketoClient,
    cursor: MarketoCursor,
    fields: list[str],
    past_deadline: Callable[[], bool],
) -> MarketoChangeSet:
    """Every lead change, deletion and merge since `cursor`, compacted: per person, the last value of each changed
    field. A merge moves the loser's activities to the winner, so the loser's changes arrive as the winner's."""
    result = MarketoChangeSet()
    changes_token, deletes_token = cursor.changes, cursor.deletes
    for page in client.lead_changes(changes_token, fields):
        for activity in page.activities:
            person = str(activity.lead_id)
            if activity.activity_type_id == NEW_LEAD:
                result.new.add(person)
            for change in activity.fields:
                result.values.setdefault(person, {})[change.name] = change.new_value
        changes_token = page.next_page_token
        if page.more_result and past_deadline():
            result.complete = False
            break
    for page in client.activities(deletes_token, [DELETE_LEAD, MERGE_LEADS]):
        for activity in page.activities:
            person = str(activity.lead_id)
            if activity.activity_type_id == DELETE_LEAD:
                result.deleted.add(person)
                continue
            for loser in merge_losers(activity.attributes.get(MERGE_IDS), person):
                result.merged[loser] = person
        deletes_token = page.next_page_token
        if page.more_result and past_deadline():
            result.complete = False
            break
    for loser, winner in list(result.merged.items()):  # merged again later: the link follows to the last winner
        seen = {loser}
        while winner in result.merged and winner not in seen:
            seen.add(winner)
            winner = result.merged[winner]
        result.merged[loser] = winner
    for person in result.deleted:  # a person created or changed, then deleted, is just deleted
        result.values.pop(person, None)
        result.new.discard(person)
    result.cursor = MarketoCursor(changes=changes_token, deletes=deletes_token)
    return result


def merge_losers(merge_ids: Any, winner: str) -> list[str]:
    """The losing person ids a Merge Leads activity names (the winner is the activity's person)."""
    return [ident for ident in re.findall(r"\d+", str(merge_ids or "")) if ident != winner]


def initial_marketo_cursor(client: MarketoClient, since: datetime) -> MarketoCursor:
    token = client.get_paging_token(since)
    return MarketoCursor(changes=token, deletes=token)
