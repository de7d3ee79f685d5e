"""The emulator's clock: wall time plus an offset that test controls can move forward (never back).

Everything time-dependent (token expiry, activity dates, job progress, rolling rate windows, daily quotas, the 14-day
pruning of deletions) reads this clock, so a test can jump a day ahead without sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

try:
    from zoneinfo import ZoneInfo

    CENTRAL: timezone | ZoneInfo = ZoneInfo("America/Chicago")
except Exception:  # no tz database: Central Standard Time all year (unverified DST handling)
    CENTRAL = timezone(timedelta(hours=-6))


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0
        self._last = 0.0

    def now(self) -> float:
        """Seconds since the epoch; never decreases, even if the wall clock steps back."""
        value = time.time() + self.offset
        if value < self._last:
            value = self._last
        self._last = value
        return value

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds

    def reset(self) -> None:
        self.offset = 0.0
        self._last = 0.0

    def central_date(self, at: float | None = None) -> date:
        """The day by which Marketo's daily quotas reset (00:00 US Central)."""
        return datetime.fromtimestamp(self.now() if at is None else at, CENTRAL).date()


_last_iso: list[Any] = [None, ""]


def iso(epoch: float) -> str:
    """Marketo's datetime format in JSON and files: 2014-09-17T22:31:49Z."""
    second = int(epoch)
    if _last_iso[0] != second:  # most calls in a burst fall in the same second
        _last_iso[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _last_iso[0] = second
    return _last_iso[1]


def parse_datetime(value: str) -> float:
    """ISO 8601 with a Z, an offset (+0000 or +00:00) or none (taken as UTC); a plain date is midnight UTC."""
    text = value.strip()
    if not text:
        raise ValueError("empty datetime")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and ":" not in text[-5:]:
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
