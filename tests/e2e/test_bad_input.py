# ruff: noqa: RUF001  (the catalogue holds look-alike letters on purpose: they must survive intact)
"""Issue 13's bad-input catalogue: each class of bad input from either side, through both emulators and Azurite.

Each bad record ends as a record error naming the record, the field and the reason, while the rest of its batch
syncs and the watermark moves past the batch; text that is unusual but valid (emoji, right-to-left, tabs) arrives
byte for byte. Classes share batches (one cycle per side and stream) to keep the file fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as default
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from sync.connectors.dynamics import DataverseClient
from sync.connectors.marketo import MarketoClient
from sync.engine.cycle import run_cycle
from sync.engine.execute import Executor
from sync.engine.pairs import PairBuilder
from sync.mapping.model import DEFAULT_MAPPING_FILE, load_mapping
from sync.state import RecordError
from tests.e2e.world import World

# Fields an admin added on each side, mapped on leads, so that every class has a field to arrive through.
MARKETO_FIELDS = [
    {"name": "leadNotes", "dataType": "string", "length": 255},  # Dataverse description holds 2,000
    {"name": "bigNotes", "dataType": "text"},
    {"name": "employeeCount", "dataType": "string"},  # typed by marketers: text
    {"name": "demoDate", "dataType": "string"},
]
DATAVERSE_COLUMNS = [
    {"name": "new_bignotes", "type": "Memo", "max_length": 1_048_576},
    {"name": "new_demodate", "type": "DateTime"},
]
EXTRA_LEAD_FIELDS = [
    {"dynamics": "description", "marketo": "leadNotes"},
    {"dynamics": "new_bignotes", "marketo": "bigNotes"},
    {"dynamics": "industrycode", "marketo": "industry", "transform": "choice"},
    {"dynamics": "numberofemployees", "marketo": "employeeCount", "transform": "number"},
    {"dynamics": "new_demodate", "marketo": "demoDate", "transform": "date"},
]


@dataclass
class Case:
    """One class of bad input. `field`/`reason`: the record error must name them (case-insensitive fragments);
    with no `field`, the record must arrive and hold `arrives` (field -> value) on the other side."""

    name: str
    values: dict[str, Any]
    field: str | None = None
    reason: tuple[str, ...] = ()
    arrives: dict[str, Any] = default(default_factory=dict)
    setup: Callable[[World], dict[str, Any]] | None = None  # more values that need the world (ids)


def bad_world(world: World, tmp_path: Path) -> World:
    for definition in MARKETO_FIELDS:
        world.emulators.control("marketo", "POST", "/schema/fields", json=definition)
    for column in DATAVERSE_COLUMNS:
        world.emulators.control("dataverse", "POST", "/schema/lead/columns", json=column)
    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    raw["entities"]["lead"]["fields"].extend(EXTRA_LEAD_FIELDS)
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    world.ctx.mapping = load_mapping(mapping_file)
    world.upstream("lead")
    world.cycles("lead")  # the watermarks are set: what follows is incremental
    return world


def lead_errors(world: World) -> dict[str, RecordError]:
    return {e.record_id: e for e in world.ctx.state.errors.list("lead")}


def check_error(case: Case, error: RecordError | None, record_id: str) -> list[str]:
    if error is None:
        return [f"{case.name}: no record error for {record_id}"]
    text = error.message.lower()
    wanted = [case.field or "", *case.reason]
    missing = [w for w in wanted if w.lower() not in text]
    return [f"{case.name}: error for {record_id} lacks {missing}: {error.code} {error.message}"] if missing else []


def check_values(case: Case, got: dict[str, Any] | None, where: str) -> list[str]:
    if got is None:
        return [f"{case.name}: never arrived in {where}"]
    wrong = {k: (got.get(k), v) for k, v in case.arrives.items() if got.get(k) != v}
    return [f"{case.name}: {where} holds (got, wanted) {wrong}"] if wrong else []


def persons_of(world: World, link_field: str, record_id: str, fields: list[str]) -> list[dict[str, Any]]:
    """The persons linked to a Dynamics record, read through the public API (as the sync would)."""
    return [p.values for p in world.ctx.marketo.get_leads(link_field, [record_id], ["id", link_field, *fields])]


# --- Dynamics -> Marketo: new leads, one cycle ---------------------------------------------------------------------
def missing_account(world: World) -> dict[str, Any]:
    account = world.dv_create("account", name="Deleted Co")  # never synced: deleted before its timer ran
    return {"parentaccountid@odata.bind": f"/accounts({account})", "_delete_account": account}


def marketo_twins(world: World) -> dict[str, Any]:
    for _ in range(2):  # Marketo allows two persons with one address (Sync Leads' createDuplicate)
        world.ctx.marketo.sync_leads([{"email": "mtwin@example.com"}], action="createDuplicate")
    return {}


DYNAMICS_TO_MARKETO = [
    Case("valid", {"firstname": "Val"}, arrives={"firstName": "Val"}),
    Case("invalid e-mail", {"emailaddress1": "ann at example.com"}, "email", ("invalid", "ann at example.com")),
    Case("too long for Marketo", {"description": "n" * 300}, "leadNotes", ("255",)),
    # Adobe: a text area holds 30,000 bytes; 8,000 emoji are 32,000 bytes in UTF-8 (and 16,000 UTF-16 units: Dataverse
    # holds them)
    Case("Unicode over a Marketo text area's bytes", {"new_bignotes": "😀" * 8000}, "bigNotes", ("30000 bytes",)),
    Case("over the 1 MB call limit", {"new_bignotes": "b" * 1_048_000}, "bigNotes", ("bytes", "1048576")),
    Case(
        "duplicate e-mails in Marketo",
        {"emailaddress1": "mtwin@example.com"},
        "e-mail",
        ("2 persons", "mtwin@example.com"),
        setup=marketo_twins,
    ),
    Case(  # the first of a batch's twins takes the person; the others wait (deterministic: batch order)
        "duplicate e-mails in Dynamics (first)",
        {"emailaddress1": "dtwin@example.com", "lastname": "Twin"},
        arrives={"lastName": "Twin"},
    ),
    Case("duplicate e-mails in Dynamics (second)", {"emailaddress1": "DTwin@example.com"}, "e-mail", ("shared",)),
    Case("lookup to a missing record", {}, "parentaccountid", ("does not exist",), setup=missing_account),
    Case(
        "emoji and other non-BMP text",
        {"firstname": "Zoë 😀", "lastname": "𝒜𝓃𝓃 🇺🇦", "jobtitle": "👩\u200d💻 dev"},
        arrives={"firstName": "Zoë 😀", "lastName": "𝒜𝓃𝓃 🇺🇦", "title": "👩\u200d💻 dev"},
    ),
    Case(
        "right-to-left text",
        {"firstname": "שָׂרָה", "lastname": "\u200fعبد الله", "companyname": "شركة (1) Ltd"},
        arrives={"firstName": "שָׂרָה", "lastName": "\u200fعبد الله", "company": "شركة (1) Ltd"},
    ),
    Case(
        "tabs and line breaks",
        {"jobtitle": "Head\tof Sales", "description": "line 1\r\nline 2\n"},
        arrives={"title": "Head\tof Sales", "leadNotes": "line 1\r\nline 2\n"},
    ),
]


def test_bad_dynamics_input_to_persons_is_a_record_error_each_and_the_rest_arrives(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_world(world, tmp_path)
    created: dict[str, str] = {}
    to_delete: list[str] = []
    for number, case in enumerate(DYNAMICS_TO_MARKETO):
        values = {"lastname": f"L{number}", "emailaddress1": f"d{number}@example.com", "companyname": "C"}
        values.update(case.values)
        if case.setup is not None:
            extra = case.setup(world)
            to_delete.extend([extra.pop("_delete_account")] if "_delete_account" in extra else [])
            values.update(extra)
        created[case.name] = world.dv_create("lead", **values)
    original = PairBuilder.resolve_references

    def account_deleted_mid_run(self: PairBuilder, *args: Any, **kwargs: Any) -> Any:
        for account in to_delete:  # after the lead was read: its lookup now points at nothing
            world.dv_delete("account", account)
        to_delete.clear()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PairBuilder, "resolve_references", account_deleted_mid_run)
    mark = world.ctx.state.watermarks.get("lead", "dynamics")
    report = world.cycle("lead")

    errors = lead_errors(world)
    problems: list[str] = []
    for case in DYNAMICS_TO_MARKETO:
        record_id = created[case.name]
        persons = persons_of(world, "dynamicsLeadId", record_id, list(case.arrives))
        if case.field:
            problems += check_error(case, errors.get(record_id), record_id)
            if persons:
                problems.append(f"{case.name}: written to Marketo anyway")
        else:
            problems += check_values(case, persons[0] if len(persons) == 1 else None, "Marketo")
            if record_id in errors:
                problems.append(f"{case.name}: unexpected error {errors[record_id].message}")
    assert not problems, "\n".join(problems)
    bad = sum(1 for c in DYNAMICS_TO_MARKETO if c.field)
    assert report.counts.failed == bad and report.counts.created == len(DYNAMICS_TO_MARKETO) - bad, report.counts
    assert world.ctx.state.watermarks.get("lead", "dynamics").cursor != mark.cursor  # type: ignore[union-attr]


# --- Marketo -> Dynamics: marketers' edits of linked persons, and a new person, one cycle ---------------------------
MARKETO_TO_DYNAMICS = [
    Case("valid", {"title": "CTO"}, arrives={"jobtitle": "CTO"}),
    Case("too long for Dynamics", {"title": "t" * 150}, "jobtitle", ("maximum allowed length", "100")),
    Case("option label with no value", {"industry": "Basket Weaving"}, "industrycode", ("'Basket Weaving'", "known")),
    Case("text in a number field", {"employeeCount": "fifty"}, "employeeCount", ("'fifty'", "not a number")),
    Case("an impossible date", {"demoDate": "2026-02-30"}, "demoDate", ("'2026-02-30'", "not a date")),
    Case("NUL and control characters", {"firstName": "Ann\x00\x07"}, "firstname", ("0x00",)),
    Case("emoji and other non-BMP text", {"firstName": "Zoë 😀"}, arrives={"firstname": "Zoë 😀"}),
    # Dataverse counts UTF-16 code units, as .NET strings do: 30 emoji are 60 of firstname's 50
    Case("non-BMP text over the limit in UTF-16", {"firstName": "😀" * 30}, "firstname", ("50",)),
    Case("right-to-left text", {"lastName": "\u200fעִברִית"}, arrives={"lastname": "\u200fעִברִית"}),
    Case("tabs and line breaks", {"title": "Head\tof\nSales"}, arrives={"jobtitle": "Head\tof\nSales"}),
]


def test_bad_marketo_input_to_leads_is_a_record_error_each_and_the_rest_arrives(world: World, tmp_path: Path) -> None:
    bad_world(world, tmp_path)
    leads = {
        case.name: world.dv_create(
            "lead", lastname=f"M{n}", emailaddress1=f"m{n}@example.com", companyname="C", jobtitle="J"
        )
        for n, case in enumerate(MARKETO_TO_DYNAMICS)
    }
    world.cycle("lead")
    persons = {name: str(persons_of(world, "dynamicsLeadId", lead, [])[0]["id"]) for name, lead in leads.items()}
    for case in MARKETO_TO_DYNAMICS:
        world.mk_edit(persons[case.name], **case.values)
    # an admin made a column required; a new person without it cannot become a lead
    world.emulators.control("dataverse", "PATCH", "/schema/lead/columns/jobtitle", json={"required": "SystemRequired"})
    newcomer = world.mk_form_fill(email="new@example.com", lastName="New", company="N", syncToDynamics=True)
    mark = world.ctx.state.watermarks.get("lead", "marketo")
    report = world.cycle("lead")

    errors = {e.record_id: e for e in world.ctx.state.errors.list("lead", "marketo")}
    problems: list[str] = []
    required = Case("a missing required field", {}, "jobtitle", ("required",))
    problems += check_error(required, errors.get(str(newcomer)), str(newcomer))
    for case in MARKETO_TO_DYNAMICS:
        person, lead = persons[case.name], world.dv_get("lead", leads[case.name])
        if case.field:
            problems += check_error(case, errors.get(person), person)
        else:
            problems += check_values(case, lead, "Dynamics")
            if person in errors:
                problems.append(f"{case.name}: unexpected error {errors[person].message}")
    assert not problems, "\n".join(problems)
    assert world.dv_find("lead", "emailaddress1", "new@example.com") == []
    bad = 1 + sum(1 for c in MARKETO_TO_DYNAMICS if c.field)
    assert report.counts.failed == bad, report.counts
    assert world.ctx.state.watermarks.get("lead", "marketo").cursor != mark.cursor  # type: ignore[union-attr]


# --- fields deleted by an admin mid-run, on either side --------------------------------------------------------------
def test_a_field_deleted_by_an_admin_mid_run_fails_the_records_that_write_it_and_the_rest_syncs(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_world(world, tmp_path)
    names = ("notes", "day", "title")
    leads = {n: world.dv_create("lead", lastname=n, emailaddress1=f"{n}@example.com", companyname="C") for n in names}
    world.cycle("lead")
    persons = {n: str(persons_of(world, "dynamicsLeadId", lead, [])[0]["id"]) for n, lead in leads.items()}
    world.dv_update("lead", leads["notes"], description="call back in May")  # -> Marketo leadNotes
    world.mk_edit(persons["day"], demoDate="2026-03-01")  # -> Dataverse new_demodate
    world.dv_update("lead", leads["title"], jobtitle="CTO")
    original = Executor.run

    def fields_deleted_after_the_reads(self: Executor, *args: Any, **kwargs: Any) -> Any:
        if not deleted:
            world.emulators.control("marketo", "DELETE", "/schema/fields/leadNotes")
            world.emulators.control("dataverse", "DELETE", "/schema/lead/columns/new_demodate")
            deleted.append(True)
        return original(self, *args, **kwargs)

    deleted: list[bool] = []
    monkeypatch.setattr(Executor, "run", fields_deleted_after_the_reads)
    marks = {s: world.ctx.state.watermarks.get("lead", s) for s in ("dynamics", "marketo")}
    report = world.cycle("lead")

    notes = world.ctx.state.errors.get("lead", "dynamics", leads["notes"])
    day = world.ctx.state.errors.get("lead", "marketo", persons["day"])
    problems = check_error(Case("Marketo field deleted", {}, "leadNotes", ("not found",)), notes, leads["notes"])
    problems += check_error(Case("Dataverse column deleted", {}, "new_demodate", ()), day, persons["day"])
    assert not problems, "\n".join(problems)
    assert world.mk_get(persons["title"])["title"] == "CTO"  # the rest of the batch synced
    assert report.counts.failed == 2 and report.counts.updated == 1, report.counts
    for system, mark in marks.items():
        assert world.ctx.state.watermarks.get("lead", system).cursor != mark.cursor  # type: ignore[union-attr]
    monkeypatch.undo()
    # The mapping still names the field: the next run cannot read Marketo's changes with it, and says so in one line
    after = {s: world.ctx.state.watermarks.get("lead", s) for s in ("dynamics", "marketo")}
    following = run_cycle(world.ctx, "lead")
    assert following.outcome == "failed" and "Field 'leadNotes' not found" in (following.error or ""), following
    assert "\n" not in (following.error or "") and "python -m sync check" in (following.error or "")
    for system, mark in after.items():
        assert world.ctx.state.watermarks.get("lead", system).cursor == mark.cursor  # type: ignore[union-attr]


# --- the one-way streams: users -> sales persons, accounts -> companies ---------------------------------------------
def test_bad_input_in_users_and_accounts_is_a_record_error_each_and_the_rest_arrives(world: World) -> None:
    world.upstream("account")
    world.cycles("account")
    users = {
        "valid": world.dv_create(
            "systemuser", firstname="Val", lastname="Id", internalemailaddress="val@contoso.example", domainname="val"
        ),
        "invalid e-mail": world.dv_create(
            "systemuser", firstname="Bad", lastname="Mail", internalemailaddress="bad at contoso", domainname="bad"
        ),
        "right-to-left": world.dv_create(
            "systemuser", firstname="دانا", lastname="כהן", internalemailaddress="rtl@contoso.example", domainname="rtl"
        ),
    }
    mark = world.ctx.state.watermarks.get("systemuser", "dynamics")
    report = world.cycle("systemuser")
    assert report.counts.failed == 1 and report.counts.created == 2, report.counts
    assert world.ctx.state.watermarks.get("systemuser", "dynamics").cursor != mark.cursor  # type: ignore[union-attr]
    found = world.mk_crm("salespersons", "externalSalesPersonId", list(users.values()), ("firstName", "lastName"))
    assert set(found) == {users["valid"], users["right-to-left"]}
    assert (found[users["right-to-left"]]["firstName"], found[users["right-to-left"]]["lastName"]) == ("دانا", "כהן")
    [error] = world.ctx.state.errors.list("systemuser")
    problems = check_error(Case("invalid e-mail", {}, "email", ("bad at contoso",)), error, users["invalid e-mail"])
    assert not problems and error.record_id == users["invalid e-mail"], problems

    accounts = {
        "emoji": world.dv_create("account", name="Café ☕ 🚀 GmbH", address1_city="Zürich"),
        "right-to-left": world.dv_create("account", name="\u200fشركة الأمل", address1_city="עכו"),
        # owned by the user Marketo refused: it waits for its sales person, never written dangling
        "owner that could not sync": world.dv_create(
            "account", name="Waiting Co", **{"ownerid@odata.bind": f"/systemusers({users['invalid e-mail']})"}
        ),
    }
    mark = world.ctx.state.watermarks.get("account", "dynamics")
    report = world.cycle("account")
    assert report.counts.failed == 1 and report.counts.created == 2, report.counts
    assert world.ctx.state.watermarks.get("account", "dynamics").cursor != mark.cursor  # type: ignore[union-attr]
    found = world.mk_crm("companies", "externalCompanyId", list(accounts.values()), ("company", "billingCity"))
    assert set(found) == {accounts["emoji"], accounts["right-to-left"]}
    assert (found[accounts["emoji"]]["company"], found[accounts["emoji"]]["billingCity"]) == (
        "Café ☕ 🚀 GmbH",
        "Zürich",
    )
    assert found[accounts["right-to-left"]]["company"] == "\u200fشركة الأمل"
    assert found[accounts["right-to-left"]]["billingCity"] == "עכו"
    [error] = world.ctx.state.errors.list("account")
    waits = Case("owner that could not sync", {}, "ownerid", (users["invalid e-mail"],))
    assert not check_error(waits, error, accounts["owner that could not sync"]), error
    assert error.record_id == accounts["owner that could not sync"] and error.code == "reference_waits"


# --- a revoked credential: the run fails with one clear line and moves no watermark ----------------------------------
@pytest.mark.parametrize(
    ("setting", "system", "says"),
    [
        ("dynamics_client_secret", "Dynamics", ("AADSTS7000215",)),
        ("marketo_client_secret", "Marketo", ("refused the client credentials",)),
    ],
)
def test_a_revoked_credential_fails_the_run_in_one_line_and_moves_no_watermark(
    world: World, setting: str, system: str, says: tuple[str, ...]
) -> None:
    world.cycles("lead")
    lead = world.dv_create("lead", lastname="Kept", emailaddress1="kept@example.com", companyname="K")
    secret = "revoked-" + "s3cr3t" * 4
    revoked = world.settings.model_copy(update={setting: SecretStr(secret)})
    ctx = dataclasses.replace(
        world.ctx,
        dynamics=DataverseClient.from_settings(revoked),
        marketo=MarketoClient.from_settings(revoked),
    )
    marks = {s: world.ctx.state.watermarks.get("lead", s) for s in ("dynamics", "marketo")}
    report = run_cycle(ctx, "lead")
    assert report.outcome == "failed", report
    error = report.error or ""
    assert "\n" not in error and system in error and all(s in error for s in says), error
    assert secret not in error and "s3cr3t" not in repr(report)
    for name, mark in marks.items():
        assert world.ctx.state.watermarks.get("lead", name).cursor == mark.cursor  # type: ignore[union-attr]
    assert world.mk_by_email("kept@example.com") == []
    world.cycle("lead")  # the credential renewed: nothing was lost
    assert persons_of(world, "dynamicsLeadId", lead, [])
