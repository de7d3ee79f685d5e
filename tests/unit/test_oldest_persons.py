"""How the oldest persons are found: the first 300 ids, then one sparse probe of the next ones and further out."""

from __future__ import annotations

import itertools
from collections.abc import Container
from datetime import UTC, datetime
from typing import Any

import pytest

from sync.connectors.marketo.models import MarketoPerson
from sync.engine.person_ids import DENSE_IDS, FAR_TOP, MARKETO_EPOCH, OldestPersons, oldest_persons, probe_ids

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Persons:
    """Marketo's get_leads by id over a set of person ids, counting calls (300 ids at most each, as the API)."""

    def __init__(self, ids: Container[int]) -> None:
        self.ids, self.calls = ids, 0

    def get_leads(self, filter_type: str, values: list[int], fields: list[str]) -> list[MarketoPerson]:
        assert filter_type == "id" and len(values) <= 300 and fields == ["id", "createdAt"]
        self.calls += 1
        return [
            MarketoPerson(id=i, values={"createdAt": f"2024-0{1 + i % 9}-01T10:20:30Z"})
            for i in values
            if i in self.ids
        ]


class Between:
    """Every id in [low, high] holds a person but every `gap`-th (deleted), as a purged Marketo: too many for a set."""

    def __init__(self, low: int, high: int, gap: int = 3) -> None:
        self.low, self.high, self.gap = low, high, gap

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high and value % self.gap != 0


PROBES = probe_ids()
LONE_FAR = next(i for i in range(10_001, 20_000) if i not in PROBES)  # between two probes
LONE_NEAR = next(i for i in range(1301, DENSE_IDS) if i not in PROBES)


def test_the_probe_is_one_call_whose_ids_are_never_more_than_7_percent_apart_past_the_dense_ids() -> None:
    assert len(PROBES) == 300 and sorted(set(PROBES)) == PROBES
    assert PROBES[0] == 301 and PROBES[-1] == FAR_TOP
    gaps = [b / a for a, b in itertools.pairwise(PROBES) if a > DENSE_IDS]
    assert max(gaps) < 1.07


@pytest.mark.parametrize(
    ("ids", "expected", "calls"),
    [
        (set(), OldestPersons(NOW, None), 2),  # an empty Marketo: the first 300 ids, then the probe further out
        ({1, 2, 3}, OldestPersons(datetime(2024, 2, 1, 10, 20, tzinfo=UTC), 1), 1),
        # the first 300 deleted: the probe's sample of the next ids finds some, and those are read in full
        (set(range(1300, 1311)), OldestPersons(datetime(2024, 1, 1, 10, 20, tzinfo=UTC), 1300), 6),
        ({1300, 1309} | {10_000}, OldestPersons(datetime(2024, 5, 1, 10, 20, tzinfo=UTC), 1300), 6),
        ({PROBES[150]}, OldestPersons(MARKETO_EPOCH, None), 2),  # early persons deleted: every window is read
        ({FAR_TOP}, OldestPersons(MARKETO_EPOCH, None), 2),
        # persons only between two powers of ten, every id below 12M deleted: seen (the old probe missed them)
        (Between(12_000_000, 30_000_000), OldestPersons(MARKETO_EPOCH, None), 2),
        (Between(150_000, 175_000), OldestPersons(MARKETO_EPOCH, None), 2),  # a stretch 17% wide
        ({LONE_FAR}, OldestPersons(NOW, None), 2),  # a lone person between two probes: not seen
        ({LONE_NEAR}, OldestPersons(NOW, None), 2),  # nor between the sample's ids
    ],
)
def test_oldest_persons(ids: Container[int], expected: OldestPersons, calls: int) -> None:
    marketo: Any = Persons(ids)
    assert oldest_persons(marketo, NOW) == expected
    assert marketo.calls == calls
