"""A Dynamics sandbox refresh and a Marketo sandbox reset, end to end with demo-sized data: the sync notices, stops
writing and says so in status; `relink --after-refresh` re-baselines; every pair is linked again, nothing is
duplicated on either side, and the incremental sync runs on."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sync import api
from sync.cli import main as cli
from sync.engine.fullsync import view_job
from sync.engine.identity import CHECK_EVERY
from sync.status import collect_status
from tests.e2e.test_full_sync import run_job
from tests.e2e.world import World

PERSON_KEYS = {"lead": "dynamicsLeadId", "contact": "dynamicsContactId"}
LINK = "new_marketopersonid"


def seed_demo(world: World, people: int = 120) -> None:
    control = world.emulators.control
    control("dataverse", "POST", "/seed", json={"table": "systemuser", "count": 8})
    control("dataverse", "POST", "/seed", json={"table": "team", "count": 4})
    owners = {"ownerid": ["systemuser", "team"]}
    control("dataverse", "POST", "/seed", json={"table": "account", "count": 25, "refs": owners})
    refs = {**owners, "parentcustomerid": "account"}
    control("dataverse", "POST", "/seed", json={"table": "contact", "count": people, "refs": refs})
    control("dataverse", "POST", "/seed", json={"table": "lead", "count": people, "refs": owners})
    control("marketo", "POST", "/seed", json={"count": 40, "activities": False})  # Marketo-only persons


def pairs_by_email(world: World) -> dict[tuple[str, str], str]:
    """(entity, e-mail) -> Marketo person id, for every linked record whose address no other record uses."""
    rows = {e: world.dv_query(e, [f"{e}id", "emailaddress1", LINK]) for e in PERSON_KEYS}
    uses = Counter(str(r["emailaddress1"]).lower() for found in rows.values() for r in found if r["emailaddress1"])
    pairs = {}
    for entity, found in rows.items():
        links = {link.dynamics_id: link.marketo_id for link in world.ctx.state.links.list(entity)}
        for row in found:
            email = str(row["emailaddress1"] or "").lower()
            if email and uses[email] == 1 and row["id"] in links:
                pairs[(entity, email)] = links[row["id"]]
    return pairs


def assert_relinked(world: World, before: dict[tuple[str, str], str], persons_before: int) -> None:
    """Every pair of before is linked again (the same person, the record under its current id, both link values
    rewritten), and neither system holds a duplicate."""
    assert world.mk_count() == persons_before
    for entity, key in PERSON_KEYS.items():
        rows = world.dv_query(entity, [f"{entity}id", "emailaddress1", LINK])
        assert len({str(r["emailaddress1"]).lower() for r in rows}) == len(rows)  # no record created twice
        links = {link.dynamics_id: link.marketo_id for link in world.ctx.state.links.list(entity)}
        by_email = {str(r["emailaddress1"]).lower(): r for r in rows}
        for (pair_entity, email), person_id in before.items():
            if pair_entity != entity:
                continue
            row = by_email[email]
            assert links.get(row["id"]) == person_id, (entity, email)
            assert row[LINK] == person_id, (entity, email, row)
            person = world.mk_get(person_id)
            assert person is not None and str(person[key]).lower() == row["id"], (entity, email, person)
            assert len(world.mk_by_email(email)) == 1


def assert_incremental_runs(world: World) -> None:
    for entity in ("systemuser", "team", "account", "lead", "contact"):
        report = world.cycle(entity)
        assert report.outcome == "succeeded", report
    lead = world.dv_query("lead", ["leadid", LINK], f"{LINK} ne null")[0]
    world.dv_update("lead", lead["id"], jobtitle="Chief Refresh Officer")
    person_id = lead[LINK]
    world.mk_edit(person_id, firstName="Relinked")
    report = world.cycle("lead")
    assert report.outcome == "succeeded", report
    assert world.mk_get(person_id)["title"] == "Chief Refresh Officer"
    assert world.dv_get("lead", lead["id"])["firstname"] == "Relinked"


def marketo_writes(world: World) -> int:
    by_endpoint = world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    return sum(n for endpoint, n in by_endpoint.items() if "leads.json" in endpoint and "POST" in endpoint)


def test_a_dynamics_sandbox_refresh_stops_the_sync_and_relink_rebaselines_it(world: World, capsys: Any) -> None:
    seed_demo(world)
    run_job(world)
    before = pairs_by_email(world)
    persons_before = world.mk_count()
    assert len(before) > 150
    old_accounts = {link.dynamics_id for link in world.ctx.state.links.list("account")}

    # production's copy: new GUIDs, production's Marketo ids (here: each names the next person, a real one)
    refresh = world.emulators.control("dataverse", "POST", "/sandbox-refresh", json={"shift": 1}).json()
    assert refresh["rows"] >= 2 * 120 + 25 and refresh["link_values"] > 150
    world.clear_request_logs()

    # detected from the refused delta token (and WhoAmI's new organization id): nothing is written
    first = world.cycle("lead")
    assert first.outcome == "skipped" and "organization id changed" in (first.error or ""), first
    for entity in ("systemuser", "account", "contact"):
        report = world.cycle(entity)
        assert report.outcome == "skipped" and "relink --after-refresh" in (report.error or ""), report
    assert marketo_writes(world) == 0
    status = collect_status(world.ctx.state, ["lead"])
    assert [h.system for h in status.halts] == ["dynamics"]
    assert "organization id changed" in status.halts[0].reason
    full = api.start_full(world.ctx, world.queue, b"{}", "https://sync.example.test")
    assert full.status == 409 and "relink" in full.body["error"]
    assert cli(["status", "--env-file", str(world.env_file)]) == 0
    assert "WRITING STOPPED (dynamics" in " ".join(capsys.readouterr().out.split())

    # one pair whose link values were fixed by hand meanwhile, and whose person's address changed: proven, it stays
    (entity, email), person_id = next((pair, p) for pair, p in before.items() if pair[0] == "lead")
    [row] = world.dv_query("lead", ["leadid"], f"emailaddress1 eq '{email}'")
    for holder in world.dv_query("lead", ["leadid"], f"{LINK} eq '{person_id}'"):
        world.dv_update("lead", holder["id"], **{LINK: None})
    world.dv_update("lead", row["id"], **{LINK: person_id})
    world.mk_edit(person_id, email=f"moved.{email}", dynamicsLeadId=row["id"])
    before = {k: v for k, v in before.items() if k != (entity, email)}

    # the documented command, over HTTP
    assert api.relink(world.ctx, world.queue, b"{}", "https://x.test").status == 400  # needs the confirmation
    response = api.relink(world.ctx, world.queue, json.dumps({"afterRefresh": True}).encode(), "https://x.test")
    assert response.status == 202, response.body
    report = response.body["report"]
    by_stream = {s["entity"]: s for s in report["persons"]}
    assert by_stream["lead"]["proven"] == 1 and by_stream["lead"]["by_email"] >= len(before) / 2 - 5
    orphans = {o["entity"]: o for o in report["orphans"]}
    assert set(orphans["account"]["keys"]) == old_accounts  # every company was keyed on a GUID that is gone
    world.drain()
    view = view_job(world.ctx, response.body["jobId"])
    assert view is not None and view.state == "succeeded", view

    assert_relinked(world, before, persons_before)
    assert [link.marketo_id for link in world.ctx.state.links.list("lead") if link.dynamics_id == row["id"]] == [
        person_id
    ]
    assert collect_status(world.ctx.state, ["lead"]).halts == []
    # persons moved to the companies under the accounts' new ids; the old companies are kept (reported above)
    contacts = world.dv_query("contact", ["contactid", "_parentcustomerid_value", LINK], f"{LINK} ne null")
    for contact in contacts[:20]:
        person = world.mk_get(contact[LINK])
        assert str(person["externalCompanyId"]).lower() == contact["_parentcustomerid_value"]
    new_accounts = [a["id"] for a in world.dv_query("account", ["accountid"])]
    assert len(world.mk_crm("companies", "externalCompanyId", new_accounts)) == len(old_accounts)  # those that sync
    assert len(world.mk_crm("companies", "externalCompanyId", sorted(old_accounts))) == len(old_accounts)
    assert_incremental_runs(world)


def test_a_marketo_sandbox_reset_is_detected_and_relink_rebaselines_it(world: World, capsys: Any) -> None:
    seed_demo(world, people=100)
    run_job(world)
    before = pairs_by_email(world)
    assert len(before) > 120
    # the Marketo sandbox is reset and its persons come back under new ids (an import of the same people); their
    # dynamicsLeadId/dynamicsContactId came along, Dynamics' new_marketopersonid values now name nobody or others
    persons = [world.mk_get(person_id) for person_id in sorted(set(before.values()), key=int)]
    world.emulators.control("marketo", "POST", "/reset")
    world.emulators.control("marketo", "POST", "/seed", json={"count": 30, "activities": False})  # others first
    fields = ("email", "firstName", "lastName", "dynamicsLeadId", "dynamicsContactId", "dynamicsType")
    for person in persons:
        assert person is not None
        world.mk_form_fill(**{k: person[k] for k in fields if person.get(k) is not None})
    new_ids = {(e, email): str(world.mk_by_email(email)[0]["id"]) for e, email in before}
    assert all(new_ids[pair] != old for pair, old in before.items())  # every stored person id is stale
    persons_before = world.mk_count()

    world.ctx.identity_checked_at -= CHECK_EVERY  # the periodic check is due (this process has run that long)
    report = world.cycle("contact")
    assert report.outcome == "skipped" and "linked Marketo persons sampled" in (report.error or ""), report
    assert world.cycle("lead").outcome == "skipped"

    # the documented command, from the command line (it runs the full sync it starts here)
    assert cli(["relink", "--after-refresh", "--env-file", str(world.env_file)]) == 0
    out = capsys.readouterr().out
    assert "by e-mail" in out and "full sync" in out
    assert_relinked(world, new_ids, persons_before)
    assert_incremental_runs(world)


def test_detection_costs_an_idle_cycle_nothing_and_a_plain_token_expiry_is_no_refresh(world: World) -> None:
    for i in range(5):
        world.dv_create("lead", lastname=f"L{i}", emailaddress1=f"l{i}@example.com", companyname="Co")
    run_job(world)
    world.clear_request_logs()
    assert world.cycle("account").api_calls == {"dynamics": 1, "marketo": 0}  # idle: no WhoAmI, no sample
    world.ctx.identity_checked_at -= CHECK_EVERY
    assert world.cycle("account").api_calls == {"dynamics": 2, "marketo": 1}  # due: WhoAmI and one sample read
    assert world.cycle("account").api_calls == {"dynamics": 1, "marketo": 0}  # and not again for CHECK_EVERY

    world.emulators.control("dataverse", "POST", "/change-tracking", json={"expire_all": True})
    world.clear_request_logs()
    report = world.cycle("lead")  # the token was only too old: WhoAmI says the same organization, the read restarts
    assert report.outcome == "succeeded" and report.counts.read == 5, report
    log = world.emulators.control("dataverse", "GET", "/requests", params={"client": "sync"}).json()
    assert log["by_operation"]["WhoAmI"] == 1
    assert collect_status(world.ctx.state, ["lead"]).halts == []
