"""Access tokens, and what stands between a call and its handler: faults, 606/607/615 limits and usage counts."""

from __future__ import annotations

import random
import secrets
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date

from emulators.marketo.clock import Clock
from emulators.marketo.config import Config

# Codes whose calls do not count against the quota or the rate window (Marketo's starred codes, plus the limit
# errors themselves: a refused call was never run).
NOT_COUNTED = frozenset({"601", "602", "604", "605", "606", "607", "608", "611", "615"})
FAULT_MESSAGES = {
    "502": "Bad Gateway",
    "604": "Request timed out",
    "606": "Max rate limit '{calls}' exceeded with in '{window}' secs",
    "607": "Daily quota reached",
    "608": "API Temporarily Unavailable",
    "611": "System error",
    "615": "Concurrent access limit '{concurrency}' reached",
    "713": "Transient Error",
}


@dataclass
class Tokens:
    clock: Clock
    config: Config
    issued: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch seconds)
    current: str | None = None

    def grant(self) -> tuple[str, int]:
        """The same token until it expires, with the lifetime that remains (Marketo's behaviour)."""
        now = self.clock.now()
        if self.current is not None and self.issued.get(self.current, 0.0) - now >= 1:
            return self.current, int(self.issued[self.current] - now)
        token = f"{uuid.uuid4()}:lo"
        self.issued[token] = now + self.config.token_lifetime_s
        self.current = token
        return token, int(self.config.token_lifetime_s)

    def check(self, token: str | None) -> tuple[str, str] | None:
        """None when valid, else (code, message)."""
        if not token:
            return "601", "Access token not specified"  # (unverified) message
        expiry = self.issued.get(token)
        if expiry is None:
            return "601", "Access token invalid"
        if expiry <= self.clock.now():
            return "602", "Access token expired"
        return None

    def expire_all(self) -> int:
        """A test control: every issued token expires now (the next call gets 602)."""
        now = self.clock.now()
        for token in self.issued:
            self.issued[token] = min(self.issued[token], now)
        self.current = None
        return len(self.issued)


@dataclass
class Gate:
    clock: Clock
    config: Config
    in_flight: int = 0
    window: deque[float] = field(default_factory=deque)
    usage: dict[date, int] = field(default_factory=Counter)
    forced: deque[str] = field(default_factory=deque)  # one-shot faults for the next calls, in order
    rng: random.Random = field(default_factory=random.Random)

    def reseed(self) -> None:
        self.rng = random.Random(self.config.fault_seed if self.config.fault_seed is not None else secrets.randbits(32))

    def message(self, code: str) -> str:
        return FAULT_MESSAGES.get(code, "Error").format(
            calls=self.config.rate_limit_calls or 100,
            window=int(self.config.rate_limit_window_s),
            concurrency=self.config.max_concurrency or 10,
        )

    def fault(self) -> str | None:
        """A fault to inject into this call: a forced one first, else one drawn from the configured rates."""
        if self.forced:
            return self.forced.popleft()
        for code, rate in self.config.fault_rates.items():
            if rate > 0 and self.rng.random() < rate:
                return code
        return None

    def limit(self) -> str | None:
        """607, 606 or 615 when this call is over a limit; None to let it through."""
        now = self.clock.now()
        config = self.config
        if config.daily_quota and self.usage[self.clock.central_date(now)] >= config.daily_quota:
            return "607"
        if config.rate_limit_calls:
            horizon = now - config.rate_limit_window_s
            while self.window and self.window[0] <= horizon:
                self.window.popleft()
            if len(self.window) >= config.rate_limit_calls:
                return "606"
        if config.max_concurrency and self.in_flight >= config.max_concurrency:
            return "615"
        return None

    def count(self) -> None:
        now = self.clock.now()
        self.usage[self.clock.central_date(now)] += 1
        if self.config.rate_limit_calls:
            self.window.append(now)

    def used_today(self) -> int:
        return self.usage[self.clock.central_date()]
