"""Reading Marketo's Merge Leads activities: which persons lost, and cursors saved before merges were read."""

from __future__ import annotations

import pytest

from sync.engine.changes import MarketoCursor, merge_losers


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
