"""How the oldest persons are found: the first 300 ids, then one sparse probe of the next ones and further out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sync.connectors.marketo.models import MarketoPerson
from sync.engine.person_ids import MARKETO_EPOCH, OldestPersons, oldest_persons

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Persons:
    """Marketo's get_leads by id over a set of person ids, counting calls (300 ids at most each, as the API)."""

    def __init__(self, ids: set[int]) -> None:
        self.ids, self.calls = ids, 0

    def get_leads(self, filter_type: str, values: list[int], fields: list[str]) -> list[MarketoPerson]:
        assert filter_type == "id" and len(values) <= 300 and fields == ["id", "createdAt"]
        self.calls += 1
        return [
            MarketoPerson(id=i, values={"createdAt": f"2024-0{1 + i % 9}-01T10:20:30Z"})
            for i in values
            if i in self.ids
        ]


@pytest.mark.parametrize(
    ("ids", "expected", "calls"),
    [
        (set(), OldestPersons(NOW, None), 2),  # an empty Marketo: the first 300 ids, then the probe further out
        ({1, 2, 3}, OldestPersons(datetime(2024, 2, 1, 10, 20, tzinfo=UTC), 1), 1),
        # the first 300 deleted: the probe's sample of the next ids finds some, and those are read in full
        (set(range(1300, 1311)), OldestPersons(datetime(2024, 1, 1, 10, 20, tzinfo=UTC), 1300), 6),
        ({1300, 1309} | {10_000}, OldestPersons(datetime(2024, 5, 1, 10, 20, tzinfo=UTC), 1300), 6),
        ({10_020}, OldestPersons(MARKETO_EPOCH, None), 2),  # early persons deleted: every window is read
        ({100_000_024}, OldestPersons(MARKETO_EPOCH, None), 2),
        ({10_025}, OldestPersons(NOW, None), 2),  # past the probe's 25 ids of that band: not seen
        ({1400}, OldestPersons(NOW, None), 2),  # a lone person between the sample's ids: not seen either
    ],
)
def test_oldest_persons(ids: set[int], expected: OldestPersons, calls: int) -> None:
    marketo: Any = Persons(ids)
    assert oldest_persons(marketo, NOW) == expected
    assert marketo.calls == calls
