"""The full sync's Dynamics match index: lookups by link column and e-mail as Dataverse compares them, and a read
that gives up on a table too big to pay."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sync.connectors.dynamics.models import DataverseRecord
from sync.engine.dynamics_index import DynamicsMatchIndex, folded

COLUMNS = ("new_marketopersonid", "emailaddress1")


class Table:
    """A Dataverse table as DynamicsMatchIndex.read sees it: rows streamed, `read` counting those handed out."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self.read = rows, 0
        self.asked: tuple[str, list[str], str] | None = None

    def query(self, table: str, select: list[str], operation: str) -> Iterator[DataverseRecord]:
        self.asked = (table, select, operation)
        for row in self.rows:
            self.read += 1
            yield DataverseRecord(id=row["leadid"], values=row)


def index() -> DynamicsMatchIndex:
    found = DynamicsMatchIndex(COLUMNS)
    found.add("AAAA-1", {"emailaddress1": "Ann@Example.com", "new_marketopersonid": "17"})
    found.add("bbbb-2", {"emailaddress1": " ann@example.com", "new_marketopersonid": None})
    found.add("cccc-3", {"emailaddress1": "", "new_marketopersonid": ""})
    return found


@pytest.mark.parametrize(
    ("column", "value", "ids"),
    [
        ("emailaddress1", "ANN@example.com", ["aaaa-1", "bbbb-2"]),  # case and blanks ignored; ids lower case
        ("emailaddress1", "nobody@example.com", []),
        ("emailaddress1", "", []),  # a blank value matches nothing, not the records without one
        ("new_marketopersonid", "17", ["aaaa-1"]),
        ("new_marketopersonid", "18", []),
    ],
)
def test_find_answers_every_asked_value(column: str, value: str, ids: list[str]) -> None:
    assert index().find({column: [value]}) == {column: {value: ids}}


def test_find_asks_both_columns_at_once_and_an_unindexed_column_finds_nothing() -> None:
    found = index().find({"new_marketopersonid": ["17"], "emailaddress1": ["ann@example.com"], "other": ["x"]})
    assert found == {
        "new_marketopersonid": {"17": ["aaaa-1"]},
        "emailaddress1": {"ann@example.com": ["aaaa-1", "bbbb-2"]},
        "other": {"x": []},
    }


def test_records_added_later_are_found_and_counted() -> None:
    found = index()
    found.add("dddd-4", {"emailaddress1": "new@example.com", "new_marketopersonid": "99"})
    assert found.records == 4
    assert found.find({"emailaddress1": ["NEW@example.com"]})["emailaddress1"]["NEW@example.com"] == ["dddd-4"]


@pytest.mark.parametrize(("rows", "max_rows", "indexed"), [(3, None, True), (3, 3, True), (4, 3, False), (0, 0, True)])
def test_read_gives_up_on_a_table_bigger_than_it_pays_for(rows: int, max_rows: int | None, indexed: bool) -> None:
    table = Table([{"leadid": f"id-{i}", "emailaddress1": f"p{i}@example.com"} for i in range(rows)])
    found = DynamicsMatchIndex.read(table, "lead", COLUMNS, max_rows)  # type: ignore[arg-type]
    assert table.asked == ("lead", list(COLUMNS), "match_index")
    if indexed:
        assert found is not None and found.records == rows
        assert table.read == rows
    else:
        assert found is None and table.read == (max_rows or 0) + 1  # stopped at the first row over


def test_folded_is_how_the_index_keys_values() -> None:
    assert folded("  Ann@Example.COM ") == "ann@example.com" and folded(None) == "" and folded(17) == "17"
