"""Service protection limits (per user, sliding window), injected faults, and the request log.

Documented limits (api-limits): per user per server over a sliding 5-minute window, 6,000 requests
(0x80072322), 1,200,000 ms of combined execution time (0x80072321), and 52 concurrent requests (0x80072326);
each answered with 429 and Retry-After.
"""

from __future__ import annotations

import collections
import math
import random
from dataclasses import dataclass, field
from typing import Any

from emulators.dataverse.errors import DataverseFault


@dataclass
class LimitSettings:
    enabled: bool = False
    requests: int = 6000
    window_seconds: float = 300.0
    execution_ms: float = 1_200_000.0
    concurrent: int = 52

    def update(self, values: dict[str, Any]) -> None:
        for name in ("enabled", "requests", "window_seconds", "execution_ms", "concurrent"):
            if name in values:
                kind = type(getattr(self, name))
                setattr(self, name, kind(values[name]))


@dataclass
class _UserUsage:
    requests: collections.deque[float] = field(default_factory=collections.deque)
    execution: collections.deque[tuple[float, float]] = field(default_factory=collections.deque)
    execution_total: float = 0.0
    in_flight: int = 0


class ServiceProtection:
    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self.users: dict[str, _UserUsage] = collections.defaultdict(_UserUsage)

    def _prune(self, usage: _UserUsage, now: float) -> None:
        horizon = now - self.settings.window_seconds
        while usage.requests and usage.requests[0] <= horizon:
            usage.requests.popleft()
        while usage.execution and usage.execution[0][0] <= horizon:
            usage.execution_total -= usage.execution.popleft()[1]

    def admit(self, user: str, now: float) -> None:
        """Count a request against `user`'s limits, or raise the 429 Dataverse would answer."""
        limits = self.settings
        if not limits.enabled:
            return
        usage = self.users[user]
        self._prune(usage, now)
        if usage.in_flight >= limits.concurrent:
            raise DataverseFault(
                429,
                "0x80072326",
                f"Number of concurrent requests exceeded the limit of {limits.concurrent}.",
                {"Retry-After": "1"},  # (unverified) the wait Dataverse suggests for this limit
            )
        if len(usage.requests) >= limits.requests:
            wait = usage.requests[0] + limits.window_seconds - now
            raise DataverseFault(
                429,
                "0x80072322",
                f"Number of requests exceeded the limit of {limits.requests} over time window of "
                f"{int(limits.window_seconds)} seconds.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if usage.execution_total >= limits.execution_ms:
            wait = usage.execution[0][0] + limits.window_seconds - now if usage.execution else 1
            raise DataverseFault(
                429,
                "0x80072321",
                f"Combined execution time of incoming requests exceeded limit of {int(limits.execution_ms):,} "
                f"milliseconds over time window of {int(limits.window_seconds)} seconds. Decrease number of "
                "concurrent requests or reduce the duration of requests and try again later.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        usage.requests.append(now)

    def started(self, user: str) -> None:
        self.users[user].in_flight += 1

    def finished(self, user: str, now: float, elapsed_ms: float) -> None:
        usage = self.users[user]
        usage.in_flight -= 1
        if self.settings.enabled:
            usage.execution.append((now, elapsed_ms))
            usage.execution_total += elapsed_ms

    def headers(self, user: str, now: float) -> list[tuple[str, str]]:
        if not self.settings.enabled:
            return []
        usage = self.users[user]
        remaining_requests = max(0, self.settings.requests - len(usage.requests))
        remaining_ms = max(0.0, self.settings.execution_ms - usage.execution_total)
        return [
            ("x-ms-ratelimit-burst-remaining-xrm-requests", str(remaining_requests)),
            ("x-ms-ratelimit-time-remaining-xrm-requests", f"{remaining_ms:,.2f}"),
        ]

    def reset(self) -> None:
        self.users.clear()


# ----------------------------------------------------------------------------------------------------------------
# Faults

FAULT_STATUSES = ("429", "500", "502", "503", "504")
FAULT_KEYS = (*FAULT_STATUSES, "drop", "latency_ms", "jitter_ms", "retry_after", "token_lifetime", "seed")


class FaultSpecError(ValueError):
    pass


@dataclass
class Faults:
    rates: dict[str, float] = field(default_factory=dict)  # "429"/"503"/.../"drop" -> probability per request
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    retry_after: int = 1
    queue: list[dict[str, Any]] = field(default_factory=list)  # next matching requests fail in order
    rng: random.Random = field(default_factory=random.Random)

    @staticmethod
    def parse_spec(spec: str | None, emulator: str = "dataverse") -> dict[str, float]:
        """`dataverse:429=0.05,dataverse:latency_ms=20,marketo:606=0.1` -> {"429": 0.05, "latency_ms": 20}."""
        values: dict[str, float] = {}
        if not spec:
            return values
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            target, _, setting = item.partition(":")
            if not setting:
                raise FaultSpecError(f"fault item '{item}' must look like 'dataverse:429=0.05'")
            if target != emulator:
                continue
            name, _, raw = setting.partition("=")
            name = name.strip()
            if name not in FAULT_KEYS:
                raise FaultSpecError(f"fault item '{item}': unknown setting '{name}' (known: {', '.join(FAULT_KEYS)})")
            try:
                values[name] = float(raw)
            except ValueError:
                raise FaultSpecError(f"fault item '{item}': '{raw}' is not a number") from None
            if name in (*FAULT_STATUSES, "drop") and not 0 <= values[name] <= 1:
                raise FaultSpecError(f"fault item '{item}': a probability must be between 0 and 1")
        return values

    def configure(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name in (*FAULT_STATUSES, "drop"):
                self.rates[name] = float(value)
            elif name == "latency_ms":
                self.latency_ms = float(value)
            elif name == "jitter_ms":
                self.jitter_ms = float(value)
            elif name == "retry_after":
                self.retry_after = int(value)
            elif name == "seed":
                self.rng.seed(int(value))

    def latency(self) -> float:
        if not self.latency_ms and not self.jitter_ms:
            return 0.0
        return max(0.0, self.latency_ms + (self.rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0)) / 1000

    def pick(self, method: str, path: str) -> dict[str, Any] | None:
        """The fault to inject into this request, if any: a queued one first, else a random one."""
        for index, fault in enumerate(self.queue):
            if fault.get("method") and fault["method"].upper() != method:
                continue
            if fault.get("path") and fault["path"] not in path:
                continue
            remaining = int(fault.get("times", 1)) - 1
            if remaining <= 0:
                self.queue.pop(index)
            else:
                fault["times"] = remaining
            return fault
        for name, rate in self.rates.items():
            if rate and self.rng.random() < rate:
                return {"drop": True} if name == "drop" else {"status": int(name)}
        return None


def fault_error(fault: dict[str, Any], default_retry_after: int) -> DataverseFault:
    status = int(fault.get("status", 503))
    retry_after = str(fault.get("retry_after", default_retry_after))
    if status == 429:
        code = fault.get("code", "0x80072322")
        messages = {
            "0x80072322": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            "0x80072321": "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over "
            "time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests "
            "and try again later.",
            "0x80072326": "Number of concurrent requests exceeded the limit of 52.",
        }
        return DataverseFault(429, code, messages.get(code, messages["0x80072322"]), {"Retry-After": retry_after})
    headers = {"Retry-After": retry_after} if status in (503, 504) and "retry_after" in fault else {}
    # (unverified) bodies of server-side failures; gateways (502/504) usually answer without a JSON body
    return DataverseFault(status, "0x80040216", "An unexpected error occurred.", headers)


# ----------------------------------------------------------------------------------------------------------------
# Request log


@dataclass
class LogEntry:
    seq: int
    time: float
    method: str
    path: str
    operation: str
    table: str
    client_id: str
    app: str
    status: int
    records: int
    in_batch: bool = False

    def public(self) -> dict[str, Any]:
        return self.__dict__.copy()


class RequestLog:
    def __init__(self, keep: int = 20_000) -> None:
        self.entries: collections.deque[LogEntry] = collections.deque(maxlen=keep)
        self.seq = 0
        self.counts: collections.Counter[tuple[str, str, str, bool]] = (
            collections.Counter()
        )  # (client, op, table, batch)

    def add(self, entry: LogEntry) -> None:
        self.seq += 1
        entry.seq = self.seq
        self.entries.append(entry)
        self.counts[(entry.client_id, entry.operation, entry.table, entry.in_batch)] += 1

    def clear(self) -> None:
        self.entries.clear()
        self.counts.clear()

    def summary(self, client_id: str | None = None, include_entries: int = 200) -> dict[str, Any]:
        by_operation: collections.Counter[str] = collections.Counter()
        by_table_operation: collections.Counter[str] = collections.Counter()
        by_client: collections.Counter[str] = collections.Counter()
        batch_parts: collections.Counter[str] = collections.Counter()
        total = 0
        for (client, operation, table, in_batch), count in self.counts.items():
            if client_id is not None and client != client_id:
                continue
            if in_batch:
                batch_parts[operation] += count
                continue
            total += count
            by_operation[operation] += count
            if table:
                by_table_operation[f"{operation}:{table}"] += count
            by_client[client] += count
        entries = [e.public() for e in self.entries if client_id is None or e.client_id == client_id]
        return {
            "total": total,
            "by_operation": dict(by_operation),
            "by_table_operation": dict(by_table_operation),
            "by_client": dict(by_client),
            "batch_parts": dict(batch_parts),
            "entries": entries[-include_entries:] if include_entries else [],
        }
