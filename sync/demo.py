"""`python -m sync demo` (what `make demo` runs): the whole product on embedded defaults.

Starts Azurite and both emulators on free loopback ports, loads demo data into both systems (with people who are
already in both; users, teams and accounts that own and hold the contacts), runs the initial full sync of every
stream, shows the sales persons, companies and persons linked to them in Marketo, then plays a salesperson and a
marketer making changes (one of them a conflict, one a contact moved to another account and a team) and runs
incremental cycles, showing what each did and what it cost. Local development only: it imports
the emulators package, which is never deployed. Nothing is kept: Azurite runs in memory and the emulators too.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from sync.settings import Settings, load_settings

if TYPE_CHECKING:
    from sync.connectors.dynamics import DataverseClient

DEMO_LEADS = 200
DEMO_CONTACTS = 40
DEMO_PERSONS = 60
DEMO_USERS = 6  # the seed mixes in application and disabled users, and access teams: the sync skips those
DEMO_TEAMS = 3
DEMO_ACCOUNTS = 5
OWNERS = ["systemuser", "team"]  # the seed spreads ownership over the users and teams that can own records
DEMO_OPPORTUNITIES = 8  # customers are contacts, so each has a primary role; a few stakeholders add more
DEMO_PRODUCTS = 10


def salesperson_client(emulators: Any, settings: Settings) -> DataverseClient:
    """Dataverse as the emulator's salesperson app sees it: changes made by someone other than the sync."""
    from sync.connectors.dynamics import DataverseClient

    app = emulators.control("dataverse", "GET", "/apps/salesperson").json()
    return DataverseClient(
        settings.dynamics_url,
        settings.authority,
        app["client_id"],
        SecretStr(app["client_secret"]),
        extra_ca=settings.sync_ca_bundle,
    )


def _step(console: Console, text: str) -> None:
    console.print(Rule(text, align="left"))


def run_demo(console: Console, workdir: Path | None = None, leads: int = DEMO_LEADS) -> int:
    from emulators.azurite import Azurite
    from emulators.process import start_emulators

    workdir = workdir or Path(tempfile.mkdtemp(prefix="sync-demo-"))
    _step(console, "1. Local services")
    with Azurite() as azurite:
        console.print(f"Azurite (in memory, telemetry off): tables on port {azurite.ports['table']}")
        emulators = start_emulators("--profile", "fast", directory=workdir)
        try:
            console.print(f"Dataverse emulator: {emulators.base_url('dataverse')}")
            console.print(f"Marketo emulator:   {emulators.base_url('marketo')}")
            env_file = emulators.sync_env_file(workdir, azurite.connection_string, "demo")
            console.print(f"settings for the sync: {env_file}")
            return _play(console, emulators, env_file, leads)
        finally:
            emulators.stop()


def _play(console: Console, emulators: Any, env_file: Path, leads: int) -> int:
    from sync import dashboard
    from sync.cli import print_cycle, print_status
    from sync.engine.context import build_context
    from sync.engine.cycle import run_cycle
    from sync.engine.fullsync import FullSyncRequest, start_full_sync
    from sync.fulljob import run_job_locally
    from sync.state.queue import WorkQueue
    from sync.status import collect_status

    settings = load_settings(env_file)
    ctx = build_context(settings)
    queue = WorkQueue.from_settings(settings)
    sales = salesperson_client(emulators, settings)

    _step(console, "2. Demo data")
    emulators.control("dataverse", "POST", "/seed", json={"table": "lead", "count": leads, "fast": True})
    emulators.control("dataverse", "POST", "/seed", json={"table": "systemuser", "count": DEMO_USERS})
    emulators.control("dataverse", "POST", "/seed", json={"table": "team", "count": DEMO_TEAMS})
    owned = {"ownerid": OWNERS}
    accounts = emulators.control(
        "dataverse", "POST", "/seed", json={"table": "account", "count": DEMO_ACCOUNTS, "refs": owned}
    ).json()["ids"]
    # contact i belongs to account i (round robin) and to the i-th user or team that can own records
    emulators.control(
        "dataverse",
        "POST",
        "/seed",
        json={"table": "contact", "count": DEMO_CONTACTS, "refs": {**owned, "parentcustomerid": "account"}},
    )
    opportunities = emulators.control(
        "dataverse",
        "POST",
        "/seed",
        json={"table": "opportunity", "count": DEMO_OPPORTUNITIES, "refs": {"customerid": "contact"}},
    ).json()["ids"]
    products = emulators.control("dataverse", "POST", "/seed", json={"table": "new_product", "count": DEMO_PRODUCTS})
    customer_contacts = [r.id for r in sales.query("contact", ["contactid"], top=DEMO_OPPORTUNITIES + 1)]
    [influencer] = sales.query("connectionrole", ["connectionroleid"], filter="name eq 'Influencer'")
    stakeholders = [  # the next contact is a stakeholder of each of the first three opportunities
        {
            "record1id_opportunity@odata.bind": f"/opportunities({opportunity})",
            "record2id_contact@odata.bind": f"/contacts({customer_contacts[i + 1]})",
            "record2roleid@odata.bind": f"/connectionroles({influencer.id})",
        }
        for i, opportunity in enumerate(opportunities[:3])
    ]
    sales.create_multiple("connection", stakeholders)
    users, teams = (len(list(sales.query(table, [f"{table}id"]))) for table in ("systemuser", "team"))
    emulators.control("marketo", "POST", "/seed", json={"count": DEMO_PERSONS, "days": 60})
    shared = [r.values["emailaddress1"] for r in sales.query("lead", ["emailaddress1"], top=5)]
    for email in shared:  # people already in both systems: the full sync links them, it does not duplicate them
        emulators.control("marketo", "POST", "/act/form-fill", json={"email": email.upper(), "title": "Webinar guest"})
    marked = emulators.control(
        "marketo",
        "POST",
        "/act/form-fill",
        json={"email": "ready.for.sales@example.com", "firstName": "Rae", "syncToDynamics": True},
    ).json()["id"]
    persons_before = emulators.control("marketo", "GET", "/stats").json()["persons"]
    console.print(
        f"Dynamics: {users} users, {teams} teams, {len(accounts)} accounts (owned by users and teams), {leads} leads,"
    )
    console.print(f"  {DEMO_CONTACTS} contacts (each with an account and an owner: a user or a team)")
    console.print(
        f"  {len(opportunities)} opportunities (3 with a stakeholder), {len(products.json()['ids'])} products"
    )
    console.print(
        f"Marketo: {persons_before} persons, {len(shared)} of them sharing an e-mail (in other case) with a Dynamics "
        "lead, 1 marked to sync to Dynamics"
    )

    _step(console, "3. Initial full sync (queue fan-out, drained here)")
    job = start_full_sync(ctx, queue, FullSyncRequest())
    outcome = run_job_locally(ctx, queue, job.job_id, console)
    persons_after = emulators.control("marketo", "GET", "/stats").json()["persons"]
    duplicates = [e for e in shared if len(_persons(emulators, e)) != 1]
    console.print(
        f"Marketo now holds {persons_after} persons; the {len(shared)} shared e-mails have "
        f"{'one person each' if not duplicates else 'DUPLICATES: ' + ', '.join(duplicates)}"
    )

    _step(console, "4. What reached Marketo: sales persons, companies, linked persons")
    contacts = _show_streams(console, ctx, emulators, (users, teams, len(accounts)))

    _step(console, "5. People at work: a salesperson in Dynamics, a marketer in Marketo")
    lead_rows = list(sales.query("lead", ["leadid", "emailaddress1", "new_synctomkto"], top=12))
    lead_rows = [r for r in lead_rows if r.values.get("new_synctomkto") is not False][:3]
    person_of = {r.id: ctx.state.links.get_by_dynamics_id("lead", r.id) for r in lead_rows}
    sales.update_multiple("lead", [{"leadid": lead_rows[0].id, "jobtitle": "VP Sales (from Dynamics)"}])
    _edit(emulators, person_of[lead_rows[1].id], {"phone": "+1 555 0100 (from Marketo)"})
    sales.update_multiple("lead", [{"leadid": lead_rows[2].id, "firstname": "Dyn", "telephone1": "555-0199"}])
    _edit(emulators, person_of[lead_rows[2].id], {"firstName": "Mark", "title": "Buyer"})
    console.print("- a salesperson changed a lead's job title;  a marketer changed another person's phone")
    console.print("- both changed the first name of a third (a conflict: for leads Marketo wins, as the native sync),")
    console.print("  and each changed one more field of it, which both survive")
    moved = _move_contact(console, ctx, sales, contacts, accounts)

    _step(console, "6. Incremental cycles (what the timers run every minute)")
    streams = [e.name for e in ctx.mapping.ordered_entities()]  # users, teams, accounts, then persons
    for name in streams:
        print_cycle(run_cycle(ctx, name), console)
    _show_moved(console, ctx, emulators, *moved)
    third = sales.get_by_ids("lead", [lead_rows[2].id], ["firstname", "jobtitle", "telephone1"])[lead_rows[2].id]
    console.print(escape(f"the conflicted lead now reads: {third.values}"))
    rae = sales.find_by("lead", "new_marketopersonid", [str(marked)], ["firstname", "lastname"])[str(marked)]
    console.print(escape(f"the person marked for Dynamics is now a lead: {[r.values for r in rae]}"))

    _step(console, "7. The same again, with nothing new: the echo of our own writes, then idle")
    for label in ("echo", "idle"):
        reports = [run_cycle(ctx, e) for e in streams]
        writes = sum(r.counts.created + r.counts.updated + r.counts.deleted for r in reports)
        calls = {s: sum(r.api_calls.get(s, 0) for r in reports) for s in ("dynamics", "marketo")}
        console.print(f"{label} cycle of the {len(streams)} streams: {writes} writes; API calls {calls}")

    _step(console, "8. Opportunities, their contact roles and the products, in Marketo")
    found = ctx.marketo.crm("opportunities").query("externalOpportunityId", opportunities, ["name", "amount"])
    roles = ctx.marketo.crm("opportunities/roles").query(
        "externalOpportunityId", opportunities, ["leadId", "role", "isPrimary"]
    )
    product_ids = products.json()["ids"]
    custom = ctx.marketo.crm("customobjects/product_c").query("productCode", product_ids, ["productName"])
    console.print(
        f"{len(found)} of {len(opportunities)} opportunities (the others opted out with new_synctomkto), "
        f"{len(roles)} contact roles ({sum(1 for r in roles if r.values.get('isPrimary'))} customer contacts, "
        f"{sum(1 for r in roles if not r.values.get('isPrimary'))} stakeholders; "
        "an opted-out contact has no person, so no role), "
        f"{len(custom)} of {len(product_ids)} products"
    )

    _step(console, "9. Status, as `python -m sync status` shows it")
    print_status(
        collect_status(ctx.state, streams, ctx=ctx, marketo_call_budget=settings.marketo_daily_call_budget), console
    )
    page = env_file.parent / "status.html"  # the status page as GET /api/sync/dashboard serves it
    page.write_text(dashboard.page(ctx.state, streams, ctx, settings.marketo_daily_call_budget), encoding="utf-8")
    console.print(f"status page: {page.as_uri()}")
    console.print("deployed, it is https://<app>/api/sync/dashboard?code=<function key>")
    return outcome


def _key(value: Any) -> str:
    return str(value or "").lower()


def _show_streams(console: Console, ctx: Any, emulators: Any, counts: tuple[int, int, int]) -> list[Any]:
    """A few sales persons, companies and contacts' persons as Marketo holds them; returns the contacts' links."""
    users, teams, accounts = counts
    ids = {
        kind: [link.dynamics_id for link in ctx.state.links.list(kind)] for kind in ("systemuser", "team", "account")
    }
    console.print(
        f"{users} users -> {len(ids['systemuser'])} sales persons, {teams} teams -> {len(ids['team'])} sales persons"
    )
    console.print("  (application, non-interactive and disabled users and access teams are skipped)")
    sales_persons = ctx.marketo.crm("salespersons").query(
        "externalSalesPersonId", ids["systemuser"] + ids["team"], ["externalSalesPersonId", "firstName", "lastName"]
    )
    owners = {}  # externalSalesPersonId -> the name Marketo shows
    for record in sales_persons:
        v, key = record.values, _key(record.values["externalSalesPersonId"])
        name = " ".join(str(v[f]) for f in ("firstName", "lastName") if v.get(f))
        owners[key] = f"{name} (team)" if key in ids["team"] else name
    for kind, label in (("systemuser", "users"), ("team", "teams")):
        names = ", ".join(owners[i] for i in ids[kind] if i in owners)
        console.print(escape(textwrap.shorten(f"  {label}: {names}", width=78, placeholder=" ...")))
    companies = ctx.marketo.crm("companies").query(
        "externalCompanyId", ids["account"], ["externalCompanyId", "company", "industry", "externalSalesPersonId"]
    )
    console.print(f"{accounts} accounts -> {len(companies)} companies (opted-out accounts are skipped), e.g.:")
    for record in companies[:3]:
        v = record.values
        owner = owners.get(_key(v.get("externalSalesPersonId")), "-")
        console.print(escape(f"  {str(v.get('company'))[:26]:<27} {str(v.get('industry') or '-')[:20]:<21} {owner}"))
    contacts = list(ctx.state.links.list("contact"))
    by_owner: dict[str, dict[str, Any]] = {}  # one person per owner: some owned by users, some by teams
    for link in contacts:
        person = emulators.control("marketo", "GET", f"/persons/{link.marketo_id}").json()
        by_owner.setdefault(_key(person.get("externalSalesPersonId")), person)
    console.print("contacts' persons, with their company (its fields) and owner, e.g.:")
    team_owned = [item for item in by_owner.items() if item[0] in ids["team"]]
    user_owned = [item for item in by_owner.items() if item[0] not in ids["team"]]
    for owner_id, person in user_owned[:2] + team_owned[:2]:
        console.print(
            escape(f"  {str(person.get('email'))[:30]:<31} {str(person.get('company'))[:18]:<19} {owners[owner_id]}")
        )
    return contacts


def _move_contact(console: Console, ctx: Any, sales: Any, contacts: list[Any], accounts: list[str]) -> Any:
    """A salesperson moves a contact to another synced account and gives it to a team."""
    contact = contacts[0].dynamics_id
    parent = sales.get_by_ids("contact", [contact], ["_parentcustomerid_value"])[contact].values[
        "_parentcustomerid_value"
    ]
    linked = [a for a in accounts if a != parent and ctx.state.links.get_by_dynamics_id("account", a) is not None]
    team = next(link.dynamics_id for link in ctx.state.links.list("team"))
    move = {
        "contactid": contact,
        "parentcustomerid_account@odata.bind": f"/accounts({linked[0]})",
        "ownerid@odata.bind": f"/teams({team})",
    }
    sales.update_multiple("contact", [move])
    console.print("- a salesperson moved a contact to another account and gave it to a team")
    return contact, linked[0], team


def _show_moved(console: Console, ctx: Any, emulators: Any, contact: str, account: str, team: str) -> None:
    link = ctx.state.links.get_by_dynamics_id("contact", contact)
    person = emulators.control("marketo", "GET", f"/persons/{link.marketo_id}").json()
    moved = _key(person.get("externalCompanyId")) == account
    owned = _key(person.get("externalSalesPersonId")) == team
    console.print(
        escape(
            f"the moved contact's person: company {person.get('company')} "
            f"({'the new account' if moved else 'NOT the new account'}), "
            f"owner {'the team' if owned else 'NOT the team'}"
        )
    )


def _persons(emulators: Any, email: str) -> list[dict[str, Any]]:
    return list(emulators.control("marketo", "GET", "/persons", params={"email": email}).json()["persons"])


def _edit(emulators: Any, link: Any, values: dict[str, Any]) -> None:
    emulators.control("marketo", "POST", "/act/edit", json={"id": int(link.marketo_id), "values": values})
