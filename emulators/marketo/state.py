"""Everything the emulator holds, in one object the API handlers and the test controls share.

All handlers run on the server's one event loop and never await while they change state, so no locks are needed.
"""

from __future__ import annotations

import copy
from collections import Counter, deque
from typing import Any

from emulators.marketo.activities import ActivityLog
from emulators.marketo.clock import Clock
from emulators.marketo.config import Config
from emulators.marketo.gate import Gate, Tokens
from emulators.marketo.persons import PersonStore
from emulators.marketo.schema import PersonSchema

API_USER = "sync-api@emulator.local"


class RequestLog:
    """Every call to the emulated API (not the test controls), with counts per endpoint."""

    def __init__(self, keep: int = 50_000) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self.by_endpoint: Counter[str] = Counter()
        self.by_code: Counter[str] = Counter()
        self.total = 0
        self.identity = 0

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        self.total += 1
        if entry.get("identity"):
            self.identity += 1
        self.by_endpoint[entry["endpoint"]] += 1
        self.by_code[str(entry.get("code") or entry.get("status"))] += 1

    def summary(self, limit: int = 200) -> dict[str, Any]:
        entries = list(self.entries)[-limit:] if limit else []
        return {
            "total": self.total,
            "identity_calls": self.identity,
            "api_calls": self.total - self.identity,
            "by_endpoint": dict(self.by_endpoint),
            "by_code": dict(self.by_code),
            "entries": entries,
        }


class MarketoState:
    def __init__(self, config: Config, client_id: str, client_secret: str, custom_objects: Any = None) -> None:
        self.config = config
        self.initial_config = copy.deepcopy(config)
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = Clock()
        self.tokens = Tokens(self.clock, config)
        self.gate = Gate(self.clock, config)
        self.gate.reseed()
        self.requests = RequestLog()
        self.custom_object_spec = custom_objects
        self.reset_data()

    def reset_data(self) -> None:
        from emulators.marketo.bulk import BulkJobs
        from emulators.marketo.crm import CrmStore

        self.schema = PersonSchema.default()
        self.log = ActivityLog()
        self.persons = PersonStore(self.schema, self.log, self.clock)
        self.crm = CrmStore(self.clock, self.custom_object_spec)
        self.bulk = BulkJobs(self)

    def reset(self) -> None:
        """Data, settings, clock, jobs, usage, faults and the request log as at start; issued tokens stay valid."""
        for name, value in copy.deepcopy(self.initial_config).as_dict().items():
            setattr(self.config, name, value)
        self.clock.reset()
        horizon = self.clock.now() + self.config.token_lifetime_s
        for token, expiry in self.tokens.issued.items():
            self.tokens.issued[token] = min(expiry, horizon)
        self.reset_data()
        self.gate.usage.clear()
        self.gate.window.clear()
        self.gate.forced.clear()
        self.gate.reseed()
        self.requests = RequestLog()
