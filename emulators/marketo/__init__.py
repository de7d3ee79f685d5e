"""A faithful local Marketo Engage REST emulator: identity, REST and bulk APIs over HTTPS, with test controls.

Settings it gives the sync: MARKETO_BASE_URL (REST under /rest/v1, bulk under /bulk/v1, identity at
/identity/oauth/token), MARKETO_CLIENT_ID, MARKETO_CLIENT_SECRET.

Profiles: `fast` (no rate, concurrency or daily limits, no latency, bulk jobs finish in well under a second) and
`realistic` (100 calls per rolling 20 s -> 606, 10 concurrent -> 615, 50,000 calls a day -> 607, 25 ms per call
plus 0.05 ms per record, bulk jobs at 5,000 rows/s after 3 s). 300 records per call, 413/414 and the activity paging
quirks (short and empty pages with moreResult true) apply in both.

Test controls (JSON in and out, under `/_emulator`; not part of the Marketo API, no token, not counted or logged):

| call | what it does |
|---|---|
| POST /reset | data emptied; settings, clock, faults, jobs, usage, request log as at start (tokens stay valid) |
| GET, PATCH /config | the runtime settings (see config.Config); {"profile": "realistic"} switches profile |
| POST /seed | {"count": N, "fast"?, "days": 30, "activities": true, "values": {..}}: N realistic persons |
| POST /act/form-fill | {"email", ...values}: a person fills a form (Source "Web form fill") |
| POST /act/edit | {"id"or"email", "values", "source"?}: a marketer edits a person (Source "Person detail page") |
| POST /act/delete, /act/merge | {"id"}, {"winner", "losers"}: a marketer deletes or merges persons in the UI |
| POST /act/visit | {"id"or"email", "count"} or {"random": N}: Visit Webpage activities (noise) |
| GET /persons?email=..|field=..&value=.., GET /persons/{id} | persons as shown, linked company's fields included |
| GET, POST, DELETE /faults | {"rates": {"606": 0.2}}, {"spec": "marketo:606=0.2"}, {"next": ["606","drop"]}, |
| | {"expire_tokens": true}, {"latency_ms": 20}, {"seed": 1}, {"clear": true} |
| POST /tokens/expire | every issued token expires now (next call: 602) |
| POST /schema/fields, DELETE /schema/fields/{name} | an admin adds or removes a custom person field |
| POST /schema/customobjects | define a custom object type (see crm.py) |
| GET, DELETE /requests | the request log: total, api_calls (identity excluded), by_endpoint, by_code, |
| | by_object ("companies.sync", "salespersons.delete", "product_c.query", "leads.sync", ...), entries |
| POST /clock/advance | {"seconds"|"minutes"|"hours"|"days"}: move the emulator's clock forward |
| POST /usage | {"used": N}: calls already made today (reach the daily quota quickly) |
| GET /stats | counts of persons, activities, CRM records; calls used today |

Fault spec (--faults, and {"spec": ..} above): `marketo:606=0.05,marketo:latency_ms=20`; see config.py for the keys.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from emulators.base import EmulatorOptions
from emulators.marketo import api_leads, controls
from emulators.marketo.config import Config
from emulators.marketo.state import MarketoState
from emulators.marketo.web import MarketoApp, Router


class MarketoEmulator:
    name = "marketo"

    def __init__(self, options: EmulatorOptions) -> None:
        config = Config.for_profile(options.profile)
        config.apply_fault_spec(options.faults)
        self.client_id = str(uuid.uuid4())
        self.client_secret = secrets.token_urlsafe(24)
        self.state = MarketoState(
            config, self.client_id, self.client_secret, options.extra.get("marketo_custom_objects")
        )
        api = Router()
        api_leads.add_routes(api)
        for module_name in ("api_bulk", "api_crm"):
            module = _optional(module_name)
            if module is not None:
                module.add_routes(api)
        control = Router()
        controls.add_routes(control)
        self.app = MarketoApp(self.state, api, control, api_leads.identity)
        if options.demo_records:
            from emulators.marketo.seed import persons

            for values in persons(options.demo_records):
                self.state.persons.create(values)

    def settings(self, base_url: str) -> dict[str, str]:
        return {
            "MARKETO_BASE_URL": base_url,
            "MARKETO_CLIENT_ID": self.client_id,
            "MARKETO_CLIENT_SECRET": self.client_secret,
        }


def _optional(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"emulators.marketo.{name}")
    except ModuleNotFoundError:
        return None


def create_emulator(options: EmulatorOptions) -> MarketoEmulator:
    return MarketoEmulator(options)
