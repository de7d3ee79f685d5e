"""Reading what changed: Marketo lead-change activities, compacted per person, and the watermark that covers them.

A Marketo watermark is two paging tokens (lead changes and deleted leads are separate streams), stored as one JSON
string. A cycle reads both streams to their end (or until its deadline, stopping at a page boundary) before merging,
so every pair is merged once, with both sides' changes in hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from sync.connectors.marketo import MarketoClient

NEW_LEAD = 12
CHANGE_DATA_VALUE = 13


class MarketoCursor(BaseModel):
    changes: str
    deletes: str

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
    """Every lead change and deletion since `cursor`, compacted: per person, the last value of each changed field."""
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
    for page in client.deleted_leads(deletes_token):
        result.deleted.update(str(activity.lead_id) for activity in page.activities)
        deletes_token = page.next_page_token
        if page.more_result and past_deadline():
            result.complete = False
            break
    for person in result.deleted:  # a person created or changed, then deleted, is just deleted
        result.values.pop(person, None)
        result.new.discard(person)
    result.cursor = MarketoCursor(changes=changes_token, deletes=deletes_token)
    return result


def initial_marketo_cursor(client: MarketoClient, since: datetime) -> MarketoCursor:
    token = client.get_paging_token(since)
    return MarketoCursor(changes=token, deletes=token)
