"""The Marketo id range a full sync to Dynamics reads by REST, proved through the connector against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sync.engine.person_ids import SEARCH_CALLS, OldestPersons, newest_person_id, oldest_persons, rest_id_range
from tests.emulated import RunningEmulators
from tests.integration.test_marketo_connector import Marketo


@pytest.fixture
def mkt(marketo_emulator: RunningEmulators) -> Marketo:
    marketo = Marketo(marketo_emulator)
    marketo.control("POST", "/reset")
    return marketo


def seed(mk: Marketo, count: int, days: float = 10, activities: bool = True) -> dict[str, Any]:
    return mk.control("POST", "/seed", json={"count": count, "days": days, "activities": activities})


def now(mk: Marketo) -> datetime:
    return datetime.fromtimestamp(mk.control("GET", "/clock")["now"], UTC)


def activity_calls(client: Any) -> int:
    return client.calls["paging_token"] + client.calls["activities"]


def test_the_newest_id_comes_from_the_shortest_look_back_with_a_new_lead(mkt: Marketo) -> None:
    seeded = seed(mkt, 10)
    client = mkt.client()
    assert newest_person_id(client, now(mkt), now(mkt)) == seeded["lastId"]
    assert client.calls["paging_token"] == 1  # the last day had them

    mkt.control("POST", "/clock/advance", json={"days": 40})
    client = mkt.client()
    assert newest_person_id(client, now(mkt), datetime(2020, 1, 1, tzinfo=UTC)) == seeded["lastId"]
    assert client.calls["paging_token"] == 4  # 1, 7 and 31 days back were empty; 92 days back was not


def test_no_new_lead_activity_proves_nothing(mkt: Marketo) -> None:
    seed(mkt, 5, days=0.5, activities=False)
    client = mkt.client()
    oldest = oldest_persons(client, now(mkt))
    assert oldest.lowest_id == 1 and (now(mkt) - oldest.created).days == 0
    assert newest_person_id(client, now(mkt), oldest.created) is None
    assert client.calls["paging_token"] == 1  # the first look back already covers every person's creation

    seed(mkt, 5, days=0)
    mkt.control("POST", "/clock/advance", json={"days": 400})
    client = mkt.client()
    assert newest_person_id(client, now(mkt), datetime(2020, 1, 1, tzinfo=UTC)) is None
    assert client.calls["paging_token"] == 5 and activity_calls(client) <= SEARCH_CALLS


def test_a_busy_log_stops_the_search_at_its_call_budget(mkt: Marketo) -> None:
    seeded = seed(mkt, 700)  # New Lead pages of 300: three at least
    client = mkt.client()
    assert newest_person_id(client, now(mkt), now(mkt), calls=2) is None
    assert activity_calls(client) == 2
    assert newest_person_id(mkt.client(), now(mkt), now(mkt)) == seeded["lastId"]
    client = mkt.client()
    assert 50 <= newest_person_id(client, now(mkt), now(mkt), enough=50) < seeded["lastId"]
    assert activity_calls(client) == 2  # wide enough after the first page: the rest is not read


@pytest.mark.parametrize(("max_ids", "expected"), [(40, range(1, 41)), (39, None), (0, None)])
def test_the_rest_range_is_the_proved_ids_when_they_fit_the_threshold(mkt: Marketo, max_ids: int, expected) -> None:
    seed(mkt, 40)
    client = mkt.client()
    assert rest_id_range(client, oldest_persons(client, now(mkt)), now(mkt), max_ids) == expected


def test_an_unknown_lowest_id_or_a_person_above_the_proof_means_no_rest_range(mkt: Marketo) -> None:
    seed(mkt, 10)
    client = mkt.client()
    assert rest_id_range(client, OldestPersons(now(mkt), None), now(mkt), 1000) is None
    seed(mkt, 1, activities=False)  # id 11, with no New Lead activity
    assert rest_id_range(client, oldest_persons(client, now(mkt)), now(mkt), 1000) is None
