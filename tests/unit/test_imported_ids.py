"""The ids of imported persons: exports over consecutive windows (each starting where the ones before it ended),
sized for their polls, shared by the imports of one run, then lookups for what no export held."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.connectors.marketo.models import MarketoPerson
from sync.engine.imported_ids import SKEW, ImportedIds, uncovered_start

SINCE = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(seconds=30)


def at(seconds: float) -> datetime:
    return SINCE + timedelta(seconds=seconds)


class Marketo:
    """A Marketo whose persons carry a createdAt (seconds after SINCE): an export holds those in its window. The
    calls are recorded; `now` is what server_time answers."""

    def __init__(self) -> None:
        self.persons: list[tuple[float, dict[str, str]]] = []
        self.now = UNTIL
        self.calls: list[tuple[str, Any]] = []
        self.exports: dict[str, tuple[datetime, datetime]] = {}
        self.fail_export = False

    def create(self, links: list[str], created: float, first_id: int) -> None:
        self.persons += [(created, {"id": str(first_id + i), "link": d.upper()}) for i, d in enumerate(links)]

    def server_time(self) -> datetime:
        return self.now

    def imported_rows_in_window(self, start: datetime, end: datetime) -> int:
        self.calls.append(("imported_rows_in_window", (start, end)))
        return sum(start <= at(created) < end for created, _ in self.persons)

    def queue_lead_export(self, fields: list[str], start: datetime, end: datetime, date_field: str) -> str:
        self.calls.append(("queue_lead_export", (fields, start, end, date_field)))
        export_id = f"e{len(self.exports) + 1}"
        self.exports[export_id] = (start, end)
        return export_id

    def wait_lead_export(self, export_id: str, rows: int | None = None) -> None:
        self.calls.append(("wait_lead_export", rows))
        if self.fail_export:
            raise RuntimeError("export failed")

    def lead_export_rows(self, export_id: str) -> Iterator[tuple[dict[str, str], int]]:
        start, end = self.exports[export_id]
        yield from ((row, 0) for created, row in self.persons if start <= at(created) < end)

    def get_leads(self, filter_type: str, values: list[str], fields: list[str]) -> list[MarketoPerson]:
        self.calls.append(("get_leads", sorted(values)))
        held = {row["link"].lower(): row["id"] for _, row in self.persons}
        return [MarketoPerson(id=int(held[v]), values={"link": v}) for v in sorted(values) if v in held]

    def exported_windows(self) -> list[tuple[datetime, datetime]]:
        return [args[1:3] for name, args in self.calls if name == "queue_lead_export"]


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def two_imports(second_rows: int = 3_000, second_created: float = 25) -> tuple[Any, ImportedIds, list[str], list[str]]:
    """Import "a" (3,000 persons created 10 s after SINCE) and import "b" (created at `second_created`), both
    expected by a fresh resolver."""
    marketo: Any = Marketo()
    first, second = ids("a", 3_000), ids("b", second_rows)
    marketo.create(first, created=10, first_id=1)
    marketo.create(second, created=second_created, first_id=10_001)
    resolver = ImportedIds(marketo, "link")
    resolver.expect(first + second)
    return marketo, resolver, first, second


def test_one_export_over_the_imports_window_sized_with_the_rows_beside_them() -> None:
    marketo: Any = Marketo()
    wanted = ids("d", 2_000)
    marketo.create([d for d in wanted if d != "d-7"], created=5, first_id=1)
    marketo.create(ids("other", 3_000), created=6, first_id=10_000)  # another import's, in the window
    marketo.create(["d-7"], created=-3_600, first_id=90_000)  # created earlier: the import updated it
    resolver = ImportedIds(marketo, "link")
    resolver.expect(wanted)
    found = resolver.resolve(wanted, SINCE)
    assert len(found) == 2_000 and found["d-0"] == "1" and found["d-7"] == "90000"  # the one missing: looked up
    window = (["id", "link"], SINCE - SKEW, UNTIL + SKEW, "createdAt")
    assert marketo.calls == [
        ("queue_lead_export", window),
        ("imported_rows_in_window", (SINCE - SKEW, UNTIL + SKEW)),
        ("wait_lead_export", 4_999),  # its own 1,999 and the 3,000 another import made in the window
        ("get_leads", ["d-7"]),
    ]


def test_an_export_is_sized_for_the_rows_it_is_for_when_no_import_span_is_known() -> None:
    marketo: Any = Marketo()
    wanted = ids("d", 2_000)
    marketo.create(wanted, created=5, first_id=1)
    marketo.imported_rows_in_window = lambda start, end: 0  # imports it never saw run (another process made them)
    resolver = ImportedIds(marketo, "link")
    resolver.expect(wanted)
    assert len(resolver.resolve(wanted, SINCE)) == 2_000
    assert ("wait_lead_export", 2_000) in marketo.calls


def test_two_imports_that_ran_side_by_side_export_each_person_once() -> None:
    """Import 1 ran 0-30 s, import 2 20-50 s: the second export starts where the first ended, and the rows of
    import 2 that the first export held are its ids all the same."""
    marketo: Any = Marketo()
    first, second = ids("a", 3_000), ids("b", 3_000)
    marketo.create(first, created=10, first_id=1)
    marketo.create(second[:1_000], created=25, first_id=10_001)  # before the first resolve: in its window
    marketo.create(second[1_000:], created=40, first_id=20_001)
    resolver = ImportedIds(marketo, "link")
    resolver.expect(first)
    resolver.expect(second)
    found_first = resolver.resolve(first, SINCE)
    marketo.now = at(50)
    found_second = resolver.resolve(second, at(20))
    assert found_first == {d: str(1 + i) for i, d in enumerate(first)}
    assert found_second["b-0"] == "10001" and found_second["b-2999"] == "22000" and len(found_second) == 3_000
    assert marketo.exported_windows() == [(SINCE - SKEW, UNTIL + SKEW), (UNTIL + SKEW, at(51))]
    assert not any(name == "get_leads" for name, _ in marketo.calls)  # no person looked up one by one
    exported = sum(start <= at(c) < end for start, end in marketo.exported_windows() for c, _ in marketo.persons)
    assert exported == 6_000  # each person once (overlapping windows would have held 7,000)


def test_an_import_whose_span_earlier_exports_cover_whole_needs_no_export_of_its_own() -> None:
    marketo, resolver, first, second = two_imports(second_rows=2_000, second_created=15)
    resolver.resolve(first, SINCE)
    found = resolver.resolve(second, at(10))  # Marketo's clock has not moved past the first window's end
    assert len(found) == 2_000 and found["b-0"] == "10001"
    assert len(marketo.exported_windows()) == 1


def test_rows_of_an_import_not_expected_are_not_collected() -> None:
    """Only the persons of imports announced before their export was read are kept (bounded memory)."""
    marketo: Any = Marketo()
    first, later = ids("a", 3_000), ids("z", 2_000)
    marketo.create(first, created=5, first_id=1)
    marketo.create(later, created=6, first_id=10_001)
    resolver = ImportedIds(marketo, "link")
    resolver.expect(first)
    resolver.resolve(first, SINCE)
    assert resolver._seen == {} and resolver._expected == set()


def test_an_import_that_failed_is_forgotten_and_its_rows_no_longer_kept() -> None:
    marketo: Any = Marketo()
    first, failed = ids("a", 3_000), ids("f", 2_000)
    marketo.create(first + failed, created=5, first_id=1)
    resolver = ImportedIds(marketo, "link")
    resolver.expect(first + failed)
    resolver.resolve(first, SINCE)
    assert len(resolver._seen) == 2_000  # the other import's rows, held for it
    resolver.forget(failed)
    assert resolver._seen == {} and resolver._expected == set()


def test_when_an_earlier_export_failed_the_rows_it_would_have_held_are_looked_up() -> None:
    marketo, resolver, first, second = two_imports()  # all of "b" inside the first window
    marketo.fail_export = True
    with pytest.raises(RuntimeError):
        resolver.resolve(first, SINCE)
    marketo.fail_export = False
    found = resolver.resolve(second, at(20))
    assert len(found) == 3_000 and found["b-0"] == "10001"
    lookups = [values for name, values in marketo.calls if name == "get_leads"]
    assert sum(len(v) for v in lookups) == 3_000  # nothing lost: all of them by the link field


def test_a_later_import_waits_for_the_earlier_export_that_holds_part_of_its_span() -> None:
    """The finishers resolve on their own threads: the second must not answer before the first export is read."""
    marketo, resolver, first, second = two_imports()
    gate, waiting = threading.Event(), threading.Event()
    wait_first = marketo.wait_lead_export

    def slow_wait(export_id: str, rows: int | None = None) -> None:
        if export_id == "e1":
            waiting.set()
            gate.wait(5)
        wait_first(export_id, rows)

    marketo.wait_lead_export = slow_wait
    results: dict[str, dict[str, str]] = {}
    one = threading.Thread(target=lambda: results.update(first=resolver.resolve(first, SINCE)))
    one.start()
    assert waiting.wait(5)
    marketo.now = at(50)
    two = threading.Thread(target=lambda: results.update(second=resolver.resolve(second, at(20))))
    two.start()
    two.join(0.3)
    assert two.is_alive()  # held until the first export is read
    gate.set()
    one.join(5)
    two.join(5)
    assert len(results["first"]) == 3_000 and len(results["second"]) == 3_000
    assert not any(name == "get_leads" for name, _ in marketo.calls)


@pytest.mark.parametrize(
    ("start", "end", "windows", "expected"),
    [
        (0, 10, [], 0),
        (0, 10, [(0, 4)], 4),
        (2, 10, [(0, 4), (4, 7)], 7),
        (2, 10, [(4, 7)], 2),  # a gap at the start: nothing before it counts
        (2, 10, [(0, 3), (5, 7)], 3),  # a gap in the middle: the export starts there
        (2, 10, [(0, 12)], 12),  # all covered
        (5, 10, [(4, 7), (0, 5)], 7),  # in any order
    ],
)
def test_where_a_window_stops_being_covered(
    start: int, end: int, windows: list[tuple[int, int]], expected: int
) -> None:
    got = uncovered_start(at(start), at(end), [(at(a), at(b)) for a, b in windows])
    assert got == at(expected)


def test_the_last_import_whose_rows_the_export_before_holds_needs_no_export_and_looks_up_the_few_left() -> None:
    """Import "b" ran past the first export's window by a few rows: with no other import still making rows, it
    waits for that export, then looks up the 200 it did not hold (one call) instead of exporting its tail."""
    marketo, resolver, first, second = two_imports(second_rows=3_000, second_created=25)
    marketo.create(ids("c", 200), created=40, first_id=30_001)  # the tail of "b": after the first window
    resolver.expect(ids("c", 200))
    resolver.resolve(first, SINCE)
    marketo.now = at(50)
    found = resolver.resolve(second + ids("c", 200), at(20))
    assert len(found) == 3_200 and found["c-0"] == "30001" and found["b-0"] == "10001"
    assert len(marketo.exported_windows()) == 1
    assert [len(values) for name, values in marketo.calls if name == "get_leads"] == [200]
    assert resolver._windows and all(w.read.is_set() for w in resolver._windows)


def test_the_last_import_exports_its_tail_when_many_rows_are_left() -> None:
    marketo, resolver, first, second = two_imports(second_rows=3_000, second_created=40)  # all after the first
    resolver.resolve(first, SINCE)
    marketo.now = at(50)
    found = resolver.resolve(second, at(20))
    assert len(found) == 3_000 and len(marketo.exported_windows()) == 2
    assert not any(name == "get_leads" for name, _ in marketo.calls)


def test_an_import_with_another_still_importing_exports_without_waiting() -> None:
    """Another import is expected and has not ended: it may be making rows in this window, so the export goes."""
    marketo, resolver, first, second = two_imports(second_rows=3_000, second_created=25)
    running = ids("r", 1_000)
    resolver.expect(running)  # announced, still importing (never resolved here)
    resolver.resolve(first, SINCE)
    marketo.now = at(50)
    resolver.resolve(second, at(20))
    assert len(marketo.exported_windows()) == 2


def test_the_last_import_whose_tail_pays_exports_it_beside_the_export_before_it() -> None:
    """Import "b" made 3,000 rows after the window of the export still running for "a": by its own progress its
    tail pays for an export, so that export is queued at once, not after the one before it was read; the import's
    ids are still only given once both exports were read."""
    marketo, resolver, first, second = two_imports(second_rows=3_000, second_created=40)
    first_read = threading.Event()
    read_first = marketo.lead_export_rows

    def rows(export_id: str) -> Iterator[tuple[dict[str, str], int]]:
        if export_id == "e1":
            first_read.wait(10)
        yield from read_first(export_id)

    marketo.lead_export_rows = rows
    earlier = threading.Thread(target=resolver.resolve, args=(first, SINCE))
    earlier.start()
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while not marketo.exported_windows() and datetime.now(UTC) < deadline:
        threading.Event().wait(0.01)
    marketo.now = at(50)
    found: dict[str, str] = {}
    later = threading.Thread(target=lambda: found.update(resolver.resolve(second, at(20))))
    later.start()
    while len(marketo.exported_windows()) < 2 and datetime.now(UTC) < deadline:
        threading.Event().wait(0.01)
    assert len(marketo.exported_windows()) == 2 and not first_read.is_set()  # queued while the first is unread
    assert later.is_alive()  # ... but the ids wait for it
    first_read.set()
    earlier.join(5)
    later.join(5)
    assert len(found) == 3_000 and found["b-0"] == "10001"
    assert not any(name == "get_leads" for name, _ in marketo.calls)
