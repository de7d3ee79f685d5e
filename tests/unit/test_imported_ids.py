"""The ids of imported persons: one export over the window the import ran in, sized for its polls, then lookups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.connectors.marketo.models import MarketoPerson
from sync.engine.imported_ids import SKEW, imported_person_ids

SINCE = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(seconds=30)


class Marketo:
    """The calls imported_person_ids makes, recorded; the export holds every wanted row but `missing`, and rows of
    another import beside them."""

    def __init__(self, wanted: list[str], missing: set[str], beside: int) -> None:
        self.rows = [{"id": str(i + 1), "link": d.upper()} for i, d in enumerate(wanted) if d not in missing]
        self.rows += [{"id": str(10_000 + i), "link": f"other-{i}"} for i in range(beside)]
        self.missing = missing
        self.calls: list[tuple[str, Any]] = []

    def server_time(self) -> datetime:
        return UNTIL

    def imported_rows_between(self, start: datetime, end: datetime) -> int:
        self.calls.append(("imported_rows_between", (start, end)))
        return len(self.rows) + len(self.missing)

    def queue_lead_export(self, fields: list[str], start: datetime, end: datetime, date_field: str) -> str:
        self.calls.append(("queue_lead_export", (fields, start, end, date_field)))
        return "e1"

    def wait_lead_export(self, export_id: str, rows: int | None = None) -> None:
        self.calls.append(("wait_lead_export", rows))

    def lead_export_rows(self, export_id: str) -> Iterator[tuple[dict[str, str], int]]:
        yield from ((row, 0) for row in self.rows)

    def get_leads(self, filter_type: str, values: list[str], fields: list[str]) -> list[MarketoPerson]:
        self.calls.append(("get_leads", sorted(values)))
        return [MarketoPerson(id=90_000 + i, values={"link": v}) for i, v in enumerate(sorted(values))]


def test_one_export_over_the_imports_window_sized_with_the_rows_beside_them() -> None:
    wanted = [f"d-{i}" for i in range(2_000)]
    marketo: Any = Marketo(wanted, missing={"d-7"}, beside=3_000)
    found = imported_person_ids(marketo, "link", wanted, SINCE)
    assert len(found) == 2_000 and found["d-0"] == "1" and found["d-7"] == "90000"  # the one missing: looked up
    window = (["id", "link"], SINCE - SKEW, UNTIL + SKEW, "createdAt")
    assert marketo.calls == [
        ("queue_lead_export", window),
        ("imported_rows_between", (SINCE - SKEW, UNTIL + SKEW)),
        ("wait_lead_export", 5_000),  # its own 2,000 and the 3,000 another import made in the window
        ("get_leads", ["d-7"]),
    ]


def test_an_export_is_sized_at_least_for_the_rows_it_is_for() -> None:
    wanted = [f"d-{i}" for i in range(2_000)]
    marketo: Any = Marketo(wanted, missing=set(), beside=0)
    marketo.imported_rows_between = lambda start, end: 0  # imports it never saw run (another process made them)
    imported_person_ids(marketo, "link", wanted, SINCE)
    assert ("wait_lead_export", 2_000) in marketo.calls
