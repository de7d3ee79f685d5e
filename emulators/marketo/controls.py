"""Test controls under /_emulator (not part of the Marketo API; no token, not counted, not logged)."""

from __future__ import annotations

import random
from typing import Any

import orjson

from emulators.marketo.activities import FILL_OUT_FORM, FORM_SOURCE, UI_SOURCE, VISIT_WEBPAGE
from emulators.marketo.clock import iso
from emulators.marketo.config import parse_fault_spec
from emulators.marketo.errors import RequestError
from emulators.marketo.persons import ChangeSource
from emulators.marketo.schema import InvalidValue, coerce
from emulators.marketo.seed import persons as generate
from emulators.marketo.web import Call, Router

FORM = ChangeSource(source=FORM_SOURCE, reason="Form fill: Contact Us", api_method=None, form_name="Contact Us")
MARKETER = "marketer@emulator.local"


def _body(call: Call) -> dict[str, Any]:
    if not call.body:
        return {}
    body = call.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _clean_values(call: Call, values: dict[str, Any]) -> dict[str, Any]:
    clean = {}
    for name, value in values.items():
        definition = call.state.schema.get(name)
        if definition is None:
            raise ValueError(f"Field '{name}' not found")
        try:
            clean[name] = coerce(definition, value)
        except InvalidValue as problem:
            raise ValueError(problem.message) from None
    return clean


async def reset(call: Call) -> dict[str, Any]:
    call.state.reset()
    return {"ok": True}


async def get_config(call: Call) -> dict[str, Any]:
    return call.state.config.as_dict()


async def patch_config(call: Call) -> dict[str, Any]:
    call.state.config.patch(_body(call))
    call.state.gate.reseed()
    return call.state.config.as_dict()


async def seed(call: Call) -> dict[str, Any]:
    """{"count": N, "fast": bool?, "days": 30, "activities": true, "values": {field: value}} -> created ids."""
    body = _body(call)
    count = int(body.get("count", 10))
    if count < 0 or count > 2_000_000:
        raise ValueError("count must be between 0 and 2,000,000")
    state = call.state
    store = state.persons
    extra = _clean_values(call, body.get("values") or {})
    days = float(body.get("days", 30))
    with_activities = bool(body.get("activities", True))
    now = state.clock.now()
    rng = random.Random(int(body.get("seed", 11)))
    source = ChangeSource(source="List import", reason="List import", api_method=None, user=MARKETER)
    first = store.next_id
    start = int(body.get("start", first))
    for values in generate(count, start=start, fast=body.get("fast")):
        values.update(extra)
        created = now - rng.random() * days * 86400
        store.create(values, source, at=now, created_at=created, quiet=not with_activities)
    return {"created": count, "firstId": first, "lastId": store.next_id - 1}


async def form_fill(call: Call) -> dict[str, Any]:
    """A person fills out a form: creates or updates by e-mail (activities with Source "Web form fill"), then a
    Fill Out Form activity."""
    body = _body(call)
    values = _clean_values(call, body.get("values") or {k: v for k, v in body.items() if k != "values"})
    email = values.get("email")
    if not email:
        raise ValueError("a form fill needs an email")
    store = call.state.persons
    matches = store.find("email", email)
    if matches:
        ident, status = matches[-1], "updated"
        store.update(ident, values, FORM)
    else:
        ident, status = store.create(values, FORM), "created"
    form_fields = orjson.dumps({name: value for name, value in values.items() if value is not None}).decode()
    store.log.append(
        ident,
        call.state.clock.now(),
        FILL_OUT_FORM,
        primary_id=1001,
        primary_value=f"Website.{FORM.form_name}",
        attributes=(
            ("Client IP Address", "203.0.113.7"),
            ("Form Fields", form_fields),
            ("Webpage ID", 1001),
            ("Referrer URL", "https://www.example.com/contact"),
            ("User Agent", "Mozilla/5.0 (emulated)"),
        ),
    )
    return {"id": ident, "status": status}


async def visit(call: Call) -> dict[str, Any]:
    """A person browses the website: {"id"|"email", "count": 1} Visit Webpage activities (noise in the log that
    activity readers must skip), or {"random": N} visits by random persons."""
    body = _body(call)
    state = call.state
    store = state.persons
    if "random" in body:
        rng = random.Random(int(body.get("seed", 5)))
        ids = list(store.persons)
        targets = [rng.choice(ids) for _ in range(int(body["random"]))] if ids else []
    else:
        targets = [_person(call, body)] * int(body.get("count", 1))
    now = state.clock.now()
    for number, ident in enumerate(targets):
        page = f"/products/page-{number % 20}.html"
        store.log.append(
            ident,
            now,
            VISIT_WEBPAGE,
            primary_id=100 + number % 20,
            primary_value=f"www.example.com{page}",
            attributes=(("Client IP Address", "203.0.113.7"), ("Webpage URL", page), ("User Agent", "Mozilla/5.0")),
        )
    return {"visits": len(targets)}


def _person(call: Call, body: dict[str, Any]) -> int:
    store = call.state.persons
    if "id" in body:
        ident = int(body["id"])
        if ident not in store.persons:
            raise KeyError(f"person {ident} not found")
        return ident
    if "email" in body:
        matches = store.find("email", body["email"])
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} persons with email {body['email']!r}")
        return matches[0]
    raise ValueError("give the person's id or email")


async def edit(call: Call) -> dict[str, Any]:
    """A marketer edits a person in the UI: {"id"|"email", "values": {...}, "source": "Person detail page"}."""
    body = _body(call)
    ident = _person(call, body)
    values = _clean_values(call, body.get("values") or {})
    source_name = body.get("source") or UI_SOURCE
    source = ChangeSource(source=source_name, reason=body.get("reason") or source_name, api_method=None, user=MARKETER)
    changed = call.state.persons.update(ident, values, source)
    return {"id": ident, "changed": changed}


async def delete_person(call: Call) -> dict[str, Any]:
    body = _body(call)
    ident = _person(call, body)
    source = ChangeSource(source=body.get("source") or UI_SOURCE, reason=None, api_method=None, user=MARKETER)
    call.state.persons.delete(ident, source)
    return {"id": ident, "status": "deleted"}


async def merge_persons(call: Call) -> dict[str, Any]:
    body = _body(call)
    winner = int(body["winner"])
    losers = [int(value) for value in body["losers"]]
    source = ChangeSource(source=UI_SOURCE, reason="Merge leads", api_method=None, user=MARKETER)
    try:
        call.state.persons.merge(winner, losers, source)
    except RequestError as error:
        raise KeyError(error.message) from None
    return {"id": winner, "merged": losers}


async def get_person(call: Call) -> dict[str, Any]:
    ident = int(call.path_args["id"])
    if ident not in call.state.persons.persons:
        raise KeyError(f"person {ident} not found")
    return dict(call.state.persons.view(ident))


async def find_persons(call: Call) -> dict[str, Any]:
    """?email=.. or ?field=..&value=..: the persons as Marketo shows them (a linked company's fields included),
    for assertions that must not count as API calls."""
    store = call.state.persons
    if call.param("email"):
        ids = store.find("email", call.param("email"))
    elif call.param("field"):
        ids = store.find(call.param("field") or "", call.param("value"))
    else:
        limit = int(call.param("limit") or 100)
        ids = sorted(store.persons)[:limit]
    return {"count": len(store.persons), "persons": [dict(store.view(ident)) for ident in ids]}


async def stats(call: Call) -> dict[str, Any]:
    state = call.state
    return {
        "persons": len(state.persons.persons),
        "activities": len(state.log),
        "deleted": len(state.persons.deleted),
        "usedToday": state.gate.used_today(),
        "inFlight": state.gate.in_flight,
        "crm": state.crm.counts(),
    }


async def get_faults(call: Call) -> dict[str, Any]:
    return {"rates": call.state.config.fault_rates, "next": list(call.state.gate.forced)}


async def set_faults(call: Call) -> dict[str, Any]:
    """{"rates": {"606": 0.2}} or {"spec": "marketo:606=0.2"}, {"next": ["606", "615", "drop"]} (one-shot, in order),
    {"expire_tokens": true}, {"latency_ms": 20}, {"seed": 1}, {"clear": true},
    {"import_fail_after": N} (the next bulk import fails after N rows),
    {"export_fail": true} (the next export fails)."""
    body = _body(call)
    state = call.state
    if body.get("clear"):
        state.config.fault_rates = {}
        state.gate.forced.clear()
    if "spec" in body:
        state.config.apply_fault_spec(str(body["spec"]))
    for code, rate in (body.get("rates") or {}).items():
        parse_fault_spec(f"marketo:{code}={rate}")  # validates
        state.config.fault_rates[str(code)] = float(rate)
    for code in body.get("next") or []:
        parse_fault_spec(f"marketo:{code}=1")
        state.gate.forced.append(str(code))
    for name in ("latency_ms", "latency_per_record_ms"):
        if name in body:
            setattr(state.config, name, float(body[name]))
    if "seed" in body:
        state.config.fault_seed = int(body["seed"])
        state.gate.reseed()
    if "import_fail_after" in body:
        state.bulk.fail_next_import_after = int(body["import_fail_after"])
    if body.get("export_fail"):
        state.bulk.fail_next_export = True
    expired = state.tokens.expire_all() if body.get("expire_tokens") else 0
    return {"rates": state.config.fault_rates, "next": list(state.gate.forced), "expiredTokens": expired}


async def clear_faults(call: Call) -> dict[str, Any]:
    call.state.config.fault_rates = {}
    call.state.gate.forced.clear()
    return {"rates": {}, "next": []}


async def expire_tokens(call: Call) -> dict[str, Any]:
    return {"expired": call.state.tokens.expire_all()}


async def add_field(call: Call) -> dict[str, Any]:
    """An admin adds a custom person field: {"name", "dataType"="string", "displayName"?, "length"?, "searchable"?}."""
    body = _body(call)
    definition = call.state.schema.add_custom(
        str(body["name"]),
        str(body.get("dataType", "string")),
        body.get("displayName"),
        body.get("length"),
        body.get("searchable"),
    )
    return definition.describe()


async def remove_field(call: Call) -> dict[str, Any]:
    """An admin deletes a custom person field: its values go with it; the API then answers 1006 for it."""
    name = call.path_args["name"]
    definition = call.state.schema.remove_custom(name)
    call.state.persons.drop_field(name)
    return {"removed": definition.name}


async def define_custom_object(call: Call) -> dict[str, Any]:
    """An admin defines (or redefines, emptying it) a custom object type; see crm.py for the spec."""
    return call.state.crm.define_custom(_body(call)).describe()


async def remove_custom_object(call: Call) -> dict[str, Any]:
    call.state.crm.remove_custom(call.path_args["name"])
    return {"removed": call.path_args["name"]}


async def get_requests(call: Call) -> dict[str, Any]:
    return call.state.requests.summary(int(call.param("limit") or 200))


async def clear_requests(call: Call) -> dict[str, Any]:
    from emulators.marketo.state import RequestLog

    call.state.requests = RequestLog()
    return {"ok": True}


async def advance_clock(call: Call) -> dict[str, Any]:
    body = _body(call)
    seconds = float(body.get("seconds", 0)) + 60 * float(body.get("minutes", 0))
    seconds += 3600 * float(body.get("hours", 0)) + 86400 * float(body.get("days", 0))
    call.state.clock.advance(seconds)
    call.state.bulk.tick()
    return await get_clock(call)


async def get_clock(call: Call) -> dict[str, Any]:
    now = call.state.clock.now()
    return {"now": now, "iso": iso(now), "offset": call.state.clock.offset}


async def set_usage(call: Call) -> dict[str, Any]:
    """{"used": N}: the calls already made today (to reach the daily quota without making them)."""
    body = _body(call)
    gate = call.state.gate
    gate.usage[call.state.clock.central_date()] = int(body["used"])
    return {"usedToday": gate.used_today()}


def add_routes(router: Router) -> None:
    router.add("POST", "/reset", reset)
    router.add("GET", "/config", get_config)
    router.add("PATCH", "/config", patch_config)
    router.add("POST", "/config", patch_config)
    router.add("POST", "/seed", seed)
    router.add("POST", "/act/form-fill", form_fill)
    router.add("POST", "/act/edit", edit)
    router.add("POST", "/act/visit", visit)
    router.add("POST", "/act/delete", delete_person)
    router.add("POST", "/act/merge", merge_persons)
    router.add("GET", "/persons", find_persons)
    router.add("GET", "/persons/{id}", get_person)
    router.add("GET", "/stats", stats)
    router.add("GET", "/faults", get_faults)
    router.add("POST", "/faults", set_faults)
    router.add("DELETE", "/faults", clear_faults)
    router.add("POST", "/tokens/expire", expire_tokens)
    router.add("POST", "/schema/fields", add_field)
    router.add("DELETE", "/schema/fields/{name}", remove_field)
    router.add("POST", "/schema/customobjects", define_custom_object)
    router.add("DELETE", "/schema/customobjects/{name}", remove_custom_object)
    router.add("GET", "/requests", get_requests)
    router.add("DELETE", "/requests", clear_requests)
    router.add("GET", "/clock", get_clock)
    router.add("POST", "/clock/advance", advance_clock)
    router.add("POST", "/usage", set_usage)
