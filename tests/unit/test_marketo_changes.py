"""Reading Marketo's activities: which persons lost a merge, cursors saved before, one stream or two."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.connectors.marketo.models import ActivityPage, LeadActivity, LeadField
from sync.engine.changes import MarketoCursor, merge_losers, read_marketo_changes

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("merge_ids", "winner", "losers"),
    [
        ("12,34", "7", ["12", "34"]),
        ("[12, 34]", "7", ["12", "34"]),
        ("7,12", "7", ["12"]),  # the winner named among them is not a loser
        ("", "7", []),
        (None, "7", []),
    ],
)
def test_merge_losers_reads_the_merge_ids_attribute(merge_ids: str | None, winner: str, losers: list[str]) -> None:
    assert merge_losers(merge_ids, winner) == losers


def test_a_cursor_saved_before_merges_were_read_loads_without_a_merge_token() -> None:
    cursor = MarketoCursor.load('{"changes": "A", "deletes": "B"}')
    assert (cursor.changes, cursor.deletes, cursor.merges) == ("A", "B", None)


# --- one stream or two ------------------------------------------------------------------------------------------------
def _activity(ident: int, lead: int, kind: int, **extra: Any) -> LeadActivity:
    return LeadActivity(
        id=ident, marketo_guid=str(ident), lead_id=lead, activity_date=NOW, activity_type_id=kind, **extra
    )


def _change(ident: int, lead: int, field_id: int, value: str) -> LeadActivity:
    return _activity(ident, lead, 13, primary_attribute_value_id=field_id, attributes={"New Value": value})


class FakeMarketo:
    """activities.json / leadchanges.json pages from a list, and describe; every call counted by name."""

    def __init__(self, pages: list[list[LeadActivity]]) -> None:
        self.pages = pages
        self.calls: Counter[str] = Counter()
        self.types: list[list[int]] = []

    def _serve(self, token: str) -> Iterator[ActivityPage]:
        start = int(token)
        for number, page in enumerate(self.pages[start:], start=start + 1):
            yield ActivityPage(activities=page, next_page_token=str(number), more_result=number < len(self.pages))
        if start >= len(self.pages):
            yield ActivityPage(activities=[], next_page_token=token, more_result=False)

    def activities(self, token: str, types: list[int]) -> Iterator[ActivityPage]:
        self.types.append(list(types))
        for page in self._serve(token):
            self.calls["activities"] += 1
            yield ActivityPage(
                activities=[a for a in page.activities if a.activity_type_id in types],
                next_page_token=page.next_page_token,
                more_result=page.more_result,
            )

    def lead_changes(self, token: str, fields: list[str]) -> Iterator[ActivityPage]:
        for page in self._serve(token):
            self.calls["lead_changes"] += 1
            yield page

    def describe_leads(self) -> list[LeadField]:
        self.calls["describe"] += 1
        return [
            LeadField(name="title", display_name="Job Title", data_type="string", id=48),
            LeadField(name="phone", display_name="Phone Number", data_type="phone", id=49),
            LeadField(name="score", display_name="Score", data_type="integer", id=50),
        ]


def read(client: FakeMarketo, cursor: MarketoCursor, now: datetime = NOW) -> Any:
    return read_marketo_changes(client, cursor, ["phone", "title"], lambda: False, now=now)  # type: ignore[arg-type]


def test_one_token_reads_the_span_once_by_field_id_and_drops_other_fields() -> None:
    client = FakeMarketo(
        [
            [_activity(1, 7, 12), _change(2, 7, 48, "CEO"), _change(3, 8, 50, "99")],
            [_change(4, 8, 49, "555"), _activity(5, 9, 37), _activity(6, 10, 32, attributes={"Merge IDs": "11"})],
        ]
    )
    changes = read(client, MarketoCursor(changes="0", deletes="0"))
    assert client.calls == {"activities": 2, "describe": 1}
    assert client.types == [[12, 13, 32, 37]]
    assert changes.values == {"7": {"title": "CEO"}, "8": {"phone": "555"}}  # the score change is not synced
    assert (changes.new, changes.deleted, changes.merged, changes.ignored) == ({"7"}, {"9"}, {"11": "10"}, 1)
    assert changes.cursor is not None and (changes.cursor.changes, changes.cursor.deletes) == ("2", "2")

    again = FakeMarketo(client.pages)  # the field ids came with the cursor: no describe for a day
    read(again, MarketoCursor.load(changes.cursor.dump()), NOW + timedelta(hours=23))
    assert again.calls == {"activities": 1}
    later = FakeMarketo(client.pages)
    read(later, MarketoCursor.load(changes.cursor.dump()), NOW + timedelta(hours=25))
    assert later.calls == {"activities": 1, "describe": 1}


def test_two_tokens_read_two_streams_then_join_at_the_lead_change_token() -> None:
    client = FakeMarketo([[_activity(1, 7, 13, fields=[{"name": "title", "newValue": "CFO"}])], [_activity(2, 9, 37)]])
    changes = read(client, MarketoCursor.load('{"changes": "0", "deletes": "1"}'))  # e.g. a cursor saved before
    assert client.calls == {"lead_changes": 2, "activities": 1}
    assert (changes.values, changes.deleted) == ({"7": {"title": "CFO"}}, {"9"})
    assert changes.cursor is not None and (changes.cursor.changes, changes.cursor.deletes) == ("2", "2")


def test_a_window_mostly_of_other_fields_changes_reads_two_streams_for_a_day() -> None:
    pages = [[_change(i * 300 + j, j, 50, "1") for j in range(300)] for i in range(3)]
    first = read(FakeMarketo(pages), MarketoCursor(changes="0", deletes="0"))
    assert first.cursor is not None and first.cursor.split_until == NOW + timedelta(days=1)
    client = FakeMarketo(pages)
    second = read(client, MarketoCursor.load(first.cursor.dump()), NOW + timedelta(hours=1))
    assert client.calls == {"lead_changes": 1, "activities": 1}
    assert second.cursor is not None and second.cursor.split_until == first.cursor.split_until
    client = FakeMarketo(pages)
    read(client, MarketoCursor.load(second.cursor.dump()), NOW + timedelta(days=2))
    assert client.calls == {"activities": 1, "describe": 1}  # the day is over: one stream (ids a day old: read again)


def test_a_field_without_an_id_reads_two_streams_and_describe_is_not_read_every_cycle() -> None:
    client = FakeMarketo([[_change(1, 7, 48, "CEO")]])
    fields = ["title", "nickname"]  # describe has no such field
    changes = read_marketo_changes(client, MarketoCursor(changes="0", deletes="0"), fields, lambda: False, now=NOW)  # type: ignore[arg-type]
    assert client.calls == {"describe": 1, "lead_changes": 1, "activities": 1}
    assert changes.cursor is not None
    again = FakeMarketo(client.pages)
    read_marketo_changes(again, MarketoCursor.load(changes.cursor.dump()), fields, lambda: False, now=NOW)  # type: ignore[arg-type]
    assert again.calls == {"lead_changes": 1, "activities": 1}


def test_a_recheck_reads_describe_again_and_a_field_gone_from_marketo_reads_two_streams() -> None:
    first = read(FakeMarketo([[_change(1, 7, 48, "CEO")]]), MarketoCursor(changes="0", deletes="0"))
    assert first.cursor is not None
    client = FakeMarketo([[_change(1, 7, 48, "CEO")]])
    client.describe_leads = lambda: [  # type: ignore[method-assign]
        LeadField(name="title", display_name="Job Title", data_type="string", id=48)
    ]  # an admin deleted `phone`: leadchanges.json, asked for it, fails the read with 1006 (here: reads it)
    cursor = MarketoCursor.load(first.cursor.dump())
    read_marketo_changes(client, cursor, ["phone", "title"], lambda: False, now=NOW, recheck_fields=True)  # type: ignore[arg-type]
    assert client.calls == {"lead_changes": 1, "activities": 1}
