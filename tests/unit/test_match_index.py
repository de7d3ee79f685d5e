"""The full sync's match index: lookups by link field and e-mail, twins in flight, and when an index pays."""

from __future__ import annotations

import pytest

from sync.engine.imported_ids import export_pays
from sync.engine.match_index import MatchIndex, index_windows, worth_an_index


def index() -> MatchIndex:
    found = MatchIndex(("dynamicsLeadId", "dynamicsContactId"))
    found.add(1, {"email": "Ann@Example.com", "dynamicsLeadId": "AAAA-1", "firstName": "Ann"})
    found.add(2, {"email": "ann@example.com", "dynamicsContactId": "cccc-2"})
    found.add(3, {"email": None, "dynamicsLeadId": ""})
    return found


def test_lookups_ignore_case_and_keep_only_the_matching_fields() -> None:
    found = index()
    [by_link] = found.by_link_field("dynamicsLeadId", ["aaaa-1"])
    assert (by_link.id, by_link.values) == (1, {"email": "Ann@Example.com", "dynamicsLeadId": "AAAA-1"})
    assert [p.id for p in found.by_emails([" ANN@example.com "])] == [1, 2]
    assert found.by_link_field("dynamicsContactId", ["aaaa-1"]) == []
    assert found.by_emails(["nobody@example.com"]) == []
    assert found.persons[3] == {}


def test_a_create_in_flight_names_its_record_for_a_later_twin() -> None:
    found = index()
    assert found.creator_of("new@example.com") is None
    found.note_create("New@Example.com", "lead-1")
    found.note_create("new@example.com", "lead-2")  # the first one keeps the address
    assert found.creator_of(" NEW@example.com") == "lead-1"
    assert found.creator_of(None) is None and found.creator_of("") is None


@pytest.mark.parametrize(
    ("windows", "rows", "more", "worth"),
    [
        (0, 1, False, True),  # an empty Marketo: nothing to read
        (1, 12, False, False),  # 5 calls of index against 2 lookups
        (1, 600, False, False),  # 5 against 4
        (1, 900, False, True),  # 5 against 6
        (12, 5000, True, True),  # a year of persons against four full pages of lookups (136)
        (60, 5000, True, False),  # five years: 300 calls against 136
    ],
)
def test_an_index_is_read_only_when_it_costs_fewer_calls(windows: int, rows: int, more: bool, worth: bool) -> None:
    assert worth_an_index(windows, rows, more) is worth


def test_index_windows_are_31_days() -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert index_windows(start, start) == 0
    assert index_windows(start, start + timedelta(days=31)) == 1
    assert index_windows(start, start + timedelta(days=31, seconds=1)) == 2


@pytest.mark.parametrize(("rows", "pays"), [(300, False), (1500, False), (1501, True), (5000, True)])
def test_imported_ids_come_from_an_export_only_when_it_saves_lookups(rows: int, pays: bool) -> None:
    assert export_pays(rows) is pays
