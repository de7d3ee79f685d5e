"""The Sync Errors tab, actionable (issue 15 item 3): real record errors made through the emulators, then found by
stream, system, code and text, exported as CSV, retried now and dismissed, through the HTTP API's logic and the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from sync import api
from sync.cli import main
from sync.state import RecordError
from tests.console import recording_console
from tests.e2e.world import World


def _waiting_contacts(world: World, n: int) -> list[str]:
    """Contacts whose accounts are not in Marketo yet: each cycle of contact records a reference_waits error."""
    world.upstream("contact")
    world.cycles("contact")
    contacts = []
    for i in range(n):
        account = world.dv_create("account", name=f"Waiting Co {i}")
        contacts.append(
            world.dv_create(
                "contact",
                lastname=f"Wait{i}",
                emailaddress1=f"wait{i}@example.com",
                **{"parentcustomerid_account@odata.bind": f"/accounts({account})"},
            )
        )
    assert world.cycle("contact").counts.failed == n
    return contacts


def _ambiguous_lead(world: World) -> str:
    world.cycles("lead")
    for _ in range(2):  # two persons share an address: the lead cannot be matched, never guessed
        world.ctx.marketo.sync_leads([{"email": "twin@example.com"}], action="createDuplicate")
    lead = world.dv_create("lead", lastname="Twin", emailaddress1="twin@example.com", companyname="T")
    assert world.cycle("lead").counts.failed == 1
    return lead


def _listed(world: World, **params: str) -> list[dict]:
    response = api.list_errors(world.ctx.state, params)
    assert response.status == 200, response.body
    return response.body["errors"]


def test_errors_are_found_by_stream_system_code_and_text_and_export_as_csv(world: World) -> None:
    contacts = _waiting_contacts(world, 2)
    lead = _ambiguous_lead(world)

    assert {e["record_id"] for e in _listed(world, stream="contact")} == set(contacts)
    assert [e["record_id"] for e in _listed(world, error_code="ambiguous_match")] == [lead]
    assert [e["record_id"] for e in _listed(world, text="PERSONS MATCH")] == [lead]  # any case
    assert len(_listed(world, system="dynamics")) == 3 and _listed(world, system="marketo") == []
    assert len(_listed(world, stream="contact", limit="1")) == 1
    [error] = _listed(world, record_id=lead, code="the-function-key")  # `code` is the function key, not a filter
    assert (error["direction"], error["attempts"]) == ("to_marketo", 1)

    bad = api.list_errors(world.ctx.state, {"system": "sap"})
    assert bad.status == 400 and "system" in bad.body["error"]

    export = api.list_errors(world.ctx.state, {"format": "csv"})
    assert export.mimetype == "text/csv" and "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.json())))
    assert sorted((r["stream"], r["record_id"], r["code"]) for r in rows) == sorted(
        [("contact", c, "reference_waits") for c in contacts] + [("lead", lead, "ambiguous_match")]
    )
    assert all(r["direction"] == "to_marketo" and r["message"] and r["last_seen"] for r in rows)


def test_retry_now_runs_the_stream_and_resolves_what_syncs_and_keeps_what_does_not(world: World) -> None:
    contacts = _waiting_contacts(world, 2)
    lead = _ambiguous_lead(world)
    world.cycle("account")  # the accounts reach Marketo: the contacts can follow them now

    body = json.dumps({"stream": "contact", "system": "dynamics", "record_id": contacts[0]}).encode()
    response = api.retry_errors(world.ctx, body, "application/json")
    assert response.status == 200, response.body
    [outcome] = response.body["streams"]
    assert (outcome["stream"], outcome["selected"], outcome["resolved"]) == ("contact", 1, 1)
    for i in range(2):  # the cycle retried the stream's every error first
        [person] = world.mk_by_email(f"wait{i}@example.com")
        assert person["company"] == f"Waiting Co {i}"
    assert list(world.ctx.state.errors.list("contact")) == []

    form = f"error_code=ambiguous_match&code=the-function-key&record_id={lead}".encode()
    [still] = api.retry_errors(world.ctx, form, "application/x-www-form-urlencoded").body["streams"]
    assert (still["stream"], still["selected"], still["resolved"], still["cycle"]) == ("lead", 1, 0, "partial")
    [error] = world.ctx.state.errors.list("lead")
    assert error.attempts == 2


def test_dismiss_removes_only_the_matching_errors_and_an_empty_filter_is_refused(world: World) -> None:
    contacts = _waiting_contacts(world, 2)
    lead = _ambiguous_lead(world)

    refused = api.dismiss_errors(world.ctx.state, b"{}", "application/json")
    assert refused.status == 400 and "all=true" in refused.body["error"]
    assert world.ctx.state.errors.count() == 3

    response = api.dismiss_errors(world.ctx.state, b"stream=lead&text=match", "application/x-www-form-urlencoded")
    assert response.body == {"dismissed": 1}
    assert world.ctx.state.errors.get("lead", "dynamics", lead) is None
    assert {e.record_id for e in world.ctx.state.errors.list()} == set(contacts)
    world.cycle("lead")  # a dismissed record is no longer retried
    assert world.ctx.state.errors.count("lead") == 0

    assert api.dismiss_errors(world.ctx.state, b'{"all": true}', "application/json").body == {"dismissed": 2}


def test_errors_are_kept_30_days_after_they_were_last_seen(world: World) -> None:
    now = datetime.now(UTC)
    for record_id, age in (("old", 31), ("recent", 29)):
        world.ctx.state.errors.record(
            RecordError(entity="lead", system="marketo", record_id=record_id, operation="update", message="x"),
            now=now - timedelta(days=age),
        )
    assert world.ctx.state.errors.prune(now) == 1
    assert [e.record_id for e in world.ctx.state.errors.list()] == ["recent"]


def test_the_cli_filters_exports_retries_and_dismisses(world: World) -> None:
    contacts = _waiting_contacts(world, 1)
    env = ["--env-file", str(world.env_file)]

    console, out = recording_console(width=80)
    assert main(["errors", "--stream", "contact", *env], console) == 0
    text = out()
    assert contacts[0] in text and "reference_waits" in text and "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())

    console, out = recording_console(width=80)
    assert main(["errors", "--code", "nope", *env], console) == 0
    assert "0 record errors" in out()

    console, out = recording_console()
    assert main(["errors", "--retry", "--stream", "contact", *env], console) == 1  # the account is not synced yet
    assert "retried 1, resolved 0" in out()
    world.cycle("account")
    console, out = recording_console()
    assert main(["errors", "--retry", "--stream", "contact", *env], console) == 0
    assert "contact: retried 1, resolved 1 (cycle succeeded)" in out()
    assert world.mk_by_email("wait0@example.com")[0]["company"] == "Waiting Co 0"
