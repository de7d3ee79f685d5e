"""Everything the emulator holds, in one object the API handlers and the test controls share.

All handlers run on the server's one event loop and never await while they change state, so no locks are needed.
"""

from __future__ import annotations

import copy
import re
from collections import Counter, deque
from typing import Any

from emulators.marketo.activities import ActivityLog
from emulators.marketo.clock import Clock
from emulators.marketo.config import Config
from emulators.marketo.gate import Gate, Tokens
from emulators.marketo.persons import PersonStore
from emulators.marketo.schema import PersonSchema

API_USER = "sync-api@emulator.local"


_OBJECT_PATH = re.compile(r"^/rest/v1/(?:customobjects/)?([A-Za-z0-9_]+(?:/roles)?)(?:/(delete|describe))?\.json$")


def crm_operation(endpoint: str, path: str) -> str | None:
    """`<object>.<sync|query|delete|describe>` for calls on persons, CRM and custom objects, so a test can count
    the writes per object: "POST /rest/v1/opportunities/roles.json" -> "opportunities/roles.sync"."""
    match = _OBJECT_PATH.match(path)
    if match is None:
        return None
    name, verb = match.groups()
    if name not in OBJECT_NAMES and not path.startswith("/rest/v1/customobjects/"):
        return None
    return f"{name}.{verb or ('sync' if endpoint.startswith('POST ') else 'query')}"


OBJECT_NAMES = frozenset({"leads", "companies", "opportunities", "opportunities/roles", "salespersons"})


class RequestLog:
    """Every call to the emulated API (not the test controls), with counts per endpoint."""

    def __init__(self, keep: int = 50_000) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self.by_endpoint: Counter[str] = Counter()
        self.by_code: Counter[str] = Counter()
        self.by_object: Counter[str] = Counter()  # "companies.sync", "product_c.query", "leads.sync", ...
        self.total = 0
        self.identity = 0

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        self.total += 1
        if entry.get("identity"):
            self.identity += 1
        self.by_endpoint[entry["endpoint"]] += 1
        self.by_code[str(entry.get("code") or entry.get("status"))] += 1
        operation = crm_operation(entry["endpoint"], entry.get("path", ""))
        if operation is not None:
            self.by_object[operation] += 1

    def summary(self, limit: int = 200) -> dict[str, Any]:
        entries = list(self.entries)[-limit:] if limit else []
        return {
            "total": self.total,
            "identity_calls": self.identity,
            "api_calls": self.total - self.identity,
            "by_endpoint": dict(self.by_endpoint),
            "by_code": dict(self.by_code),
            "by_object": dict(self.by_object),
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
        self.persons.company_of = self.crm.company
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
