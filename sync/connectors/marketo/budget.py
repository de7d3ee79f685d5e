"""What keeps the connector inside Marketo's limits: a daily call budget, a rolling rate window, a concurrency cap.

- `CallBudget` counts every call against MARKETO_DAILY_CALL_BUDGET and refuses (CallBudgetExhaustedError) BEFORE a call
  would exceed it. The day is Marketo's: it resets at 00:00 US Central, as the subscription quota does.
- `RateWindow` spaces calls so this process never sends more than 100 in any rolling 20 s (Marketo's 606 limit); it
  sleeps until the oldest call leaves the window instead of letting Marketo answer 606.
- `Limits` bundles both with a semaphore for the concurrency cap; clients built from the same settings in one process
  share one `Limits` (see `shared_limits`), so threads and function invocations together stay below the cap.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sync.connectors.marketo.errors import CallBudgetExhaustedError

MARKETO_DAY_ZONE = ZoneInfo("America/Chicago")
MARKETO_MAX_CONCURRENCY = 10


def marketo_day(now: datetime) -> date:
    """The quota day `now` falls in (Marketo resets its counters at midnight US Central)."""
    return now.astimezone(MARKETO_DAY_ZONE).date()


def marketo_day_end(now: datetime) -> datetime:
    """When the quota day `now` falls in ends, in UTC: the next 00:00 US Central, when the quota resets."""
    midnight = datetime.combine(marketo_day(now) + timedelta(days=1), datetime.min.time(), tzinfo=MARKETO_DAY_ZONE)
    return midnight.astimezone(UTC)


class CallBudget:
    """A thread-safe daily call counter with a hard ceiling."""

    def __init__(self, limit: int, used: int = 0, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if limit < 1:
            raise ValueError("MARKETO_DAILY_CALL_BUDGET must be at least 1")
        self.limit = limit
        self._now = now
        self._lock = threading.Lock()
        self._day = marketo_day(now())
        self._used = used

    def _roll(self) -> None:
        today = marketo_day(self._now())
        if today != self._day:
            self._day, self._used = today, 0

    def spend(self, calls: int = 1) -> int:
        """Count `calls` about to be made; raise CallBudgetExhaustedError instead if they would exceed the budget."""
        with self._lock:
            self._roll()
            if self._used + calls > self.limit:
                raise CallBudgetExhaustedError(self._used, self.limit)
            self._used += calls
            return self._used

    def observe(self, used_elsewhere: int) -> None:
        """Raise the count to what another source (run history, stats/usage.json) says was already used today."""
        with self._lock:
            self._roll()
            self._used = max(self._used, used_elsewhere)

    @property
    def used(self) -> int:
        with self._lock:
            self._roll()
            return self._used

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def __repr__(self) -> str:
        return f"CallBudget(used={self.used}, limit={self.limit})"


class RateWindow:
    """At most `max_calls` starts in any rolling `seconds`; `acquire` sleeps until a slot frees up."""

    def __init__(
        self,
        max_calls: int = 100,
        seconds: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_calls = max_calls
        self.seconds = seconds
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0  # total seconds spent waiting for the window (a number for benchmarks and logs)

    def acquire(self) -> None:
        if self.max_calls <= 0:
            return
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.seconds:
                    self._starts.popleft()
                if len(self._starts) < self.max_calls:
                    self._starts.append(now)
                    return
                delay = self.seconds - (now - self._starts[0])
            self.waited += delay
            self._sleep(delay)


@dataclass
class Limits:
    budget: CallBudget
    max_concurrency: int = 4
    window: RateWindow = field(default_factory=RateWindow)
    _semaphore: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.max_concurrency < MARKETO_MAX_CONCURRENCY:
            raise ValueError(f"MARKETO_MAX_CONCURRENCY must be 1..{MARKETO_MAX_CONCURRENCY - 1} (Marketo allows 10)")
        self._semaphore = threading.BoundedSemaphore(self.max_concurrency)
        self._active = 0
        self.peak_concurrency = 0
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `max_concurrency` slots for the duration of one HTTP call."""
        with self._semaphore:
            with self._lock:
                self._active += 1
                self.peak_concurrency = max(self.peak_concurrency, self._active)
            try:
                yield
            finally:
                with self._lock:
                    self._active -= 1


_SHARED: dict[tuple[str, str], Limits] = {}
_SHARED_LOCK = threading.Lock()


def shared_limits(base_url: str, client_id: str, daily_call_budget: int, max_concurrency: int) -> Limits:
    """The process-wide Limits for one Marketo instance and API user (created on first use)."""
    key = (base_url.rstrip("/").lower(), client_id)
    with _SHARED_LOCK:
        limits = _SHARED.get(key)
        if limits is None or limits.budget.limit != daily_call_budget or limits.max_concurrency != max_concurrency:
            used = limits.budget.used if limits else 0
            limits = Limits(CallBudget(daily_call_budget, used=used), max_concurrency=max_concurrency)
            _SHARED[key] = limits
        return limits
