"""`python -m sync demo` (what `make demo` runs): the whole product on embedded defaults.

Starts Azurite and both emulators on free loopback ports, loads demo data into both systems (with people who are
already in both), runs the initial full sync, then plays a salesperson and a marketer making changes (one of them a
conflict) and runs incremental cycles, showing what each did and what it cost. Local development only: it imports
the emulators package, which is never deployed. Nothing is kept: Azurite runs in memory and the emulators too.
"""

from __future__ import annotations

import tempfile
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
    account = emulators.control("dataverse", "POST", "/seed", json={"table": "account", "count": 5}).json()["ids"][0]
    emulators.control(
        "dataverse",
        "POST",
        "/seed",
        json={"table": "contact", "count": DEMO_CONTACTS, "values": {"parentcustomerid_account": account}},
    )
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
        f"Dynamics: {leads} leads, {DEMO_CONTACTS} contacts. Marketo: {persons_before} persons, "
        f"{len(shared)} of them sharing an e-mail (in other case) with a Dynamics lead, 1 marked to sync to Dynamics"
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

    _step(console, "4. People at work: a salesperson in Dynamics, a marketer in Marketo")
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

    _step(console, "5. Incremental cycles (what the timers run every minute)")
    for entity in ("lead", "contact"):
        print_cycle(run_cycle(ctx, entity), console)
    third = sales.get_by_ids("lead", [lead_rows[2].id], ["firstname", "jobtitle", "telephone1"])[lead_rows[2].id]
    console.print(escape(f"the conflicted lead now reads: {third.values}"))
    rae = sales.find_by("lead", "new_marketopersonid", [str(marked)], ["firstname", "lastname"])[str(marked)]
    console.print(escape(f"the person marked for Dynamics is now a lead: {[r.values for r in rae]}"))

    _step(console, "6. The same again, with nothing new: the echo of our own writes, then idle")
    for label in ("echo", "idle"):
        reports = [run_cycle(ctx, e) for e in ("lead", "contact")]
        writes = sum(r.counts.created + r.counts.updated + r.counts.deleted for r in reports)
        calls = {s: sum(r.api_calls.get(s, 0) for r in reports) for s in ("dynamics", "marketo")}
        console.print(f"{label} cycle: {writes} writes; API calls {calls}")

    _step(console, "7. Status, as `python -m sync status` shows it")
    streams = [e.name for e in ctx.mapping.ordered_entities()]
    print_status(
        collect_status(ctx.state, streams, ctx=ctx, marketo_call_budget=settings.marketo_daily_call_budget), console
    )
    page = env_file.parent / "status.html"  # the status page as GET /api/sync/dashboard serves it
    page.write_text(dashboard.page(ctx.state, streams, ctx, settings.marketo_daily_call_budget), encoding="utf-8")
    console.print(f"status page: {page.as_uri()}")
    console.print("deployed, it is https://<app>/api/sync/dashboard?code=<function key>")
    return outcome


def _persons(emulators: Any, email: str) -> list[dict[str, Any]]:
    return list(emulators.control("marketo", "GET", "/persons", params={"email": email}).json()["persons"])


def _edit(emulators: Any, link: Any, values: dict[str, Any]) -> None:
    emulators.control("marketo", "POST", "/act/edit", json={"id": int(link.marketo_id), "values": values})
