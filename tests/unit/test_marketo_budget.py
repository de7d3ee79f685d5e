from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from sync.connectors.marketo.budget import (
    CallBudget,
    Limits,
    RateWindow,
    marketo_day,
    marketo_day_end,
    shared_limits,
)
from sync.connectors.marketo.errors import CallBudgetExhaustedError


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_budget_refuses_the_call_that_would_exceed_it() -> None:
    budget = CallBudget(3)
    assert [budget.spend() for _ in range(3)] == [1, 2, 3]
    with pytest.raises(CallBudgetExhaustedError) as info:
        budget.spend()
    assert info.value.used == 3 and info.value.budget == 3
    assert budget.used == 3 and budget.remaining == 0


def test_budget_resets_at_midnight_us_central_not_utc() -> None:
    # 05:30 UTC on a winter day is 23:30 the day before in Chicago (UTC-6).
    clock = Clock(datetime(2026, 1, 15, 5, 30, tzinfo=UTC))
    budget = CallBudget(2, now=clock)
    budget.spend(2)
    clock.now += timedelta(minutes=20)  # 05:50 UTC, still 23:50 in Chicago
    with pytest.raises(CallBudgetExhaustedError):
        budget.spend()
    clock.now += timedelta(minutes=15)  # 06:05 UTC = 00:05 in Chicago: a new quota day
    assert budget.spend() == 1


def test_marketo_day_follows_daylight_saving() -> None:
    assert marketo_day(datetime(2026, 7, 1, 4, 59, tzinfo=UTC)).isoformat() == "2026-06-30"  # CDT, UTC-5
    assert marketo_day(datetime(2026, 7, 1, 5, 0, tzinfo=UTC)).isoformat() == "2026-07-01"


def test_budget_observe_only_raises_the_count() -> None:
    budget = CallBudget(100, used=10)
    budget.observe(5)
    assert budget.used == 10
    budget.observe(60)
    assert budget.used == 60 and budget.remaining == 40


def test_budget_is_exact_under_threads() -> None:
    budget = CallBudget(500)
    refused = []

    def worker() -> None:
        for _ in range(100):
            try:
                budget.spend()
            except CallBudgetExhaustedError:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.used == 500 and len(refused) == 300


def test_rate_window_waits_for_the_oldest_call_to_leave_the_window() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    window = RateWindow(3, 20.0, clock=lambda: now[0], sleep=sleep)
    for t in (0.0, 1.0, 2.0):
        now[0] = t
        window.acquire()
    assert slept == []
    now[0] = 5.0
    window.acquire()  # 4th call within 20 s: waits until the call at t=0 is 20 s old
    assert slept == [pytest.approx(15.0)] and now[0] == pytest.approx(20.0)
    assert window.waited == pytest.approx(15.0)


def test_rate_window_zero_means_unlimited() -> None:
    window = RateWindow(0, 20.0, sleep=lambda s: pytest.fail("must not sleep"))
    for _ in range(1000):
        window.acquire()


@pytest.mark.parametrize("concurrency", [0, 10, 11])
def test_concurrency_must_stay_below_marketos_ten(concurrency: int) -> None:
    with pytest.raises(ValueError, match="MARKETO_MAX_CONCURRENCY"):
        Limits(CallBudget(10), max_concurrency=concurrency)


def test_slots_cap_concurrent_holders() -> None:
    limits = Limits(CallBudget(10), max_concurrency=2)
    inside = []
    lock = threading.Lock()
    peak = [0]

    def hold() -> None:
        with limits.slot():
            with lock:
                inside.append(1)
                peak[0] = max(peak[0], len(inside))
            time.sleep(0.02)
            with lock:
                inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2 and limits.peak_concurrency == 2


def test_shared_limits_are_one_object_per_instance_and_user() -> None:
    a = shared_limits("https://X.mktorest.com/", "id1", 100, 3)
    b = shared_limits("https://x.mktorest.com", "id1", 100, 3)
    c = shared_limits("https://x.mktorest.com", "id2", 100, 3)
    assert a is b and a is not c
    a.budget.spend(7)
    d = shared_limits("https://x.mktorest.com", "id1", 200, 3)  # settings changed: new limits, count kept
    assert d is not a and d.budget.limit == 200 and d.budget.used == 7


@pytest.mark.parametrize(
    ("now", "resets"),
    [
        ("2026-12-01T09:00:00+00:00", "2026-12-02T06:00:00+00:00"),  # CST: midnight is 06:00 UTC
        ("2026-12-01T05:59:59+00:00", "2026-12-01T06:00:00+00:00"),  # still the day before in Chicago
        ("2026-07-01T12:00:00+00:00", "2026-07-02T05:00:00+00:00"),  # CDT: 05:00 UTC
        ("2026-03-08T12:00:00+00:00", "2026-03-09T05:00:00+00:00"),  # the day DST starts
        ("2026-11-01T04:00:00+00:00", "2026-11-01T05:00:00+00:00"),  # the night DST ends
    ],
)
def test_the_quota_day_ends_at_the_next_midnight_us_central(now: str, resets: str) -> None:
    assert marketo_day_end(datetime.fromisoformat(now)) == datetime.fromisoformat(resets)
