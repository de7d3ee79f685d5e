"""The initial full sync end to end: HTTP start, queue fan-out drained in-process, both emulators, Azurite."""

from __future__ import annotations

import json

import azure.functions as func

from sync import api
from sync.engine.fullsync import JobView, view_job
from tests.e2e.world import World


def start(world: World, body: dict | None = None) -> str:
    response = api.start_full(world.ctx, world.queue, json.dumps(body or {}).encode(), "https://sync.example.test")
    assert response.status == 202, response.body
    assert response.headers["Location"] == response.body["statusUrl"]
    return str(response.body["jobId"])


def run_job(world: World, body: dict | None = None) -> JobView:
    """Start a job through the HTTP function, drain its queue, and see it succeed."""
    job_id = start(world, body)
    world.drain()
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
    return view


def seed_both_systems(world: World) -> dict[str, str]:
    leads = {
        f"lead{i}@example.com": world.dv_create(
            "lead", lastname=f"L{i}", emailaddress1=f"lead{i}@example.com", companyname="Co"
        )
        for i in range(7)
    }
    account = world.dv_create("account", name="Fabrikam")
    for i in range(3):
        world.dv_create(
            "contact",
            lastname=f"C{i}",
            emailaddress1=f"contact{i}@example.com",
            **{"parentcustomerid_account@odata.bind": f"/accounts({account})"},
        )
    world.mk_form_fill(email="LEAD1@example.com", firstName="Already", title="In Marketo")  # matched, not duplicated
    world.mk_form_fill(email="contact2@example.com", firstName="Cee")
    world.mk_form_fill(email="new@example.com", firstName="Nova", syncToDynamics=True)  # becomes a lead
    world.mk_form_fill(email="stay@example.com", firstName="Stay")  # Marketo-only
    return leads


def test_full_sync_links_creates_and_hands_over_to_the_incremental_sync(world: World) -> None:
    leads = seed_both_systems(world)
    view = run_job(world)
    # exactly one person per address, the existing ones linked
    for i in range(7):
        [person] = world.mk_by_email(f"lead{i}@example.com")
        assert person["dynamicsLeadId"] == leads[f"lead{i}@example.com"]
    assert world.mk_by_email("lead1@example.com")[0]["firstName"] == "Already"
    assert world.dv_get("lead", leads["lead1@example.com"])["firstname"] == "Already"  # first link fills blanks
    for i in range(3):
        [person] = world.mk_by_email(f"contact{i}@example.com")
        assert person["dynamicsType"] == "Contact" and person["company"] == "Fabrikam"
    [nova] = world.dv_find("lead", "emailaddress1", "new@example.com")
    assert nova["firstname"] == "Nova" and world.mk_by_email("new@example.com")[0]["dynamicsLeadId"] == nova["leadid"]
    assert world.dv_find("lead", "emailaddress1", "stay@example.com") == []
    assert world.mk_count() == 7 + 3 + 2  # 7 leads, 3 contacts (2 of them already there), Nova, Stay
    # the incremental sync takes over from the watermarks the job left, with nothing to do
    for entity in ("lead", "contact"):
        assert world.ctx.state.watermarks.get(entity, "dynamics").cursor
        assert world.ctx.state.watermarks.get(entity, "marketo").cursor
        report = world.cycle(entity)
        assert report.counts.created == report.counts.updated == 0, report
    lead_row = next(t for t in view.tasks if t["entity"] == "lead" and t["direction"] == "to_marketo")
    assert lead_row["read"] == 7 and lead_row["created"] == 6 and lead_row["pages_done"] == 1


def test_http_functions_answer_every_status(world: World, monkeypatch) -> None:
    from sync import runtime
    from tests.e2e.functions import BY_NAME

    monkeypatch.setattr(runtime, "context", lambda: world.ctx)
    monkeypatch.setattr(runtime, "queue", lambda: world.queue)
    functions = {name: f.get_user_function() for name, f in BY_NAME.items()}

    def call(name: str, method: str, url: str, body: bytes = b"", route: dict | None = None) -> func.HttpResponse:
        return functions[name](func.HttpRequest(method, url, body=body, route_params=route or {}))

    base = "https://app.example.test/api"
    bad_json = call("sync_full_start", "POST", f"{base}/sync/full", b"{not json")
    assert bad_json.status_code == 400 and "not valid JSON" in json.loads(bad_json.get_body())["error"]
    unknown = call("sync_full_start", "POST", f"{base}/sync/full", b'{"entities": ["lead", "widget"]}')
    assert unknown.status_code == 400 and "widget" in json.loads(unknown.get_body())["error"]
    bad_direction = call("sync_full_start", "POST", f"{base}/sync/full", b'{"direction": "sideways"}')
    assert bad_direction.status_code == 400 and "direction" in json.loads(bad_direction.get_body())["error"]
    contact_in = call(
        "sync_full_start", "POST", f"{base}/sync/full", b'{"entities": ["contact"], "direction": "to_dynamics"}'
    )
    assert contact_in.status_code == 400

    started = call("sync_full_start", "POST", f"{base}/sync/full", b'{"entities": ["lead"], "dryRun": true}')
    assert started.status_code == 202
    body = json.loads(started.get_body())
    assert started.headers["Location"] == body["statusUrl"] == f"https://app.example.test/api/sync/jobs/{body['jobId']}"
    again = call("sync_full_start", "POST", f"{base}/sync/full", b'{"entities": ["lead", "contact"]}')
    assert again.status_code == 409 and body["jobId"] in json.loads(again.get_body())["error"]

    status = call("sync_job_status", "GET", body["statusUrl"], route={"jobId": body["jobId"]})
    assert status.status_code == 200 and json.loads(status.get_body())["state"] == "queued"
    missing = call("sync_job_status", "GET", f"{base}/sync/jobs/nope", route={"jobId": "nope"})
    assert missing.status_code == 404
    cancelled = call("sync_job_cancel", "DELETE", body["statusUrl"], route={"jobId": body["jobId"]})
    assert cancelled.status_code == 202
    world.drain()
    final = json.loads(call("sync_job_status", "GET", body["statusUrl"], route={"jobId": body["jobId"]}).get_body())
    assert final["state"] == "cancelled"
    assert (
        call("sync_full_start", "POST", f"{base}/sync/full", b'{"entities": ["lead"]}').status_code == 202
    )  # released


def emails_of_leads(world: World) -> list[str]:
    """The e-mails of the leads that sync (seeded data has some with the sync filter off)."""
    found = world.sales.query("lead", ["emailaddress1", "new_synctomkto"])
    return [r.values["emailaddress1"] for r in found if r.values.get("new_synctomkto") is not False]


def one_person_each(world: World, emails: list[str]) -> None:
    for email in emails:
        persons = world.mk_by_email(email)
        assert len(persons) == 1, (email, persons)


def test_a_duplicated_message_changes_nothing(world: World) -> None:
    world.emulators.control("dataverse", "POST", "/seed", json={"table": "lead", "count": 12, "fast": True})
    world.ctx.dynamics.page_size = 5
    world.ctx.message_seconds = 0  # a page per message: every message is delivered twice below
    world.upstream("lead")
    seen: list = []
    job_id = start(world, {"entities": ["lead"], "direction": "to_marketo"})
    world.drain(on_message=seen.append)
    assert view_job(world.ctx, job_id).state == "succeeded"  # type: ignore[union-attr]
    assert [d.message.page for d in seen] == [0, 1, 2]
    before = view_job(world.ctx, job_id)
    world.clear_request_logs()
    for delivery in seen:  # every message delivered once more
        world.queue.send(delivery.message)
    world.drain()
    assert world.dv_sync_calls() == 0 and world.mk_api_calls() == 0
    assert view_job(world.ctx, job_id) == before
    one_person_each(world, emails_of_leads(world))


def test_changes_made_during_the_full_sync_reach_the_other_side_next_cycle(world: World) -> None:
    world.emulators.control("dataverse", "POST", "/seed", json={"table": "lead", "count": 9, "fast": True})
    world.ctx.dynamics.page_size = 3
    world.ctx.message_seconds = 0  # a page per message: the changes below are made between two pages
    first = next(iter(world.sales.query("lead", ["leadid", "emailaddress1"], top=1)))
    changed: dict = {}

    def change_once(delivery) -> None:
        if delivery.message.page == 1 and not changed:  # the first page is synced; the job goes on
            [person] = world.mk_by_email(first.values["emailaddress1"])
            world.dv_update("lead", first.id, jobtitle="Changed in Dynamics")
            world.mk_edit(person["id"], phone="555-0142")
            changed["person"] = person["id"]

    job_id = start(world, {"entities": ["lead"]})
    world.drain(on_message=change_once)
    assert view_job(world.ctx, job_id).state == "succeeded"  # type: ignore[union-attr]
    world.cycle("lead")
    assert world.mk_get(changed["person"])["title"] == "Changed in Dynamics"
    assert world.dv_get("lead", first.id)["telephone1"] == "555-0142"


def test_dry_run_reports_and_writes_nothing(world: World) -> None:
    world.emulators.control("dataverse", "POST", "/seed", json={"table": "lead", "count": 6, "fast": True})
    world.mk_form_fill(email="only@example.com", firstName="Only", syncToDynamics=True)
    persons_before, leads_before = world.mk_count(), world.dv_count("lead")
    view = run_job(world, {"entities": ["lead"], "dryRun": True})
    assert view.dry_run
    by_direction = {t["direction"]: t for t in view.tasks}
    assert by_direction["to_marketo"]["created"] == len(emails_of_leads(world))  # would create a person each
    assert by_direction["to_dynamics"]["created"] == 1  # and one lead
    assert (world.mk_count(), world.dv_count("lead")) == (persons_before, leads_before)
    assert world.ctx.state.links.count("lead") == 0
    assert world.ctx.state.watermarks.get("lead", "dynamics").cursor is None


def test_many_creates_go_through_bulk_import_and_rejected_rows_become_record_errors(world: World) -> None:
    world.emulators.control("dataverse", "POST", "/seed", json={"table": "lead", "count": 8, "fast": True})
    bad = world.dv_create("lead", lastname="Bad", emailaddress1="not-an-email", companyname="X")
    world.ctx.bulk_import_threshold = 5
    run_job(world, {"entities": ["lead"], "direction": "to_marketo"})
    endpoints = world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    assert any("/bulk/v1/leads.json" in e for e in endpoints), endpoints
    assert not any(e.startswith("POST /rest/v1/leads.json") for e in endpoints), endpoints
    emails = [e for e in emails_of_leads(world) if e != "not-an-email"]
    one_person_each(world, emails)
    for email in emails:
        assert world.mk_by_email(email)[0]["dynamicsLeadId"]
    errors = list(world.ctx.state.errors.list("lead"))
    assert [(e.system, e.record_id) for e in errors] == [("dynamics", bad)], errors
    assert "Bulk Import" in errors[0].message


def test_marketo_persons_are_read_by_bulk_extract_in_windows_of_31_days_at_most(world: World) -> None:
    world.ctx.bulk_extract_threshold = 0  # never by REST
    world.emulators.control(
        "marketo", "POST", "/seed", json={"count": 30, "days": 75, "values": {"syncToDynamics": True}}
    )
    world.emulators.control("marketo", "POST", "/seed", json={"count": 10, "days": 75})
    view = run_job(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert view.tasks[0]["read"] == 40 and view.tasks[0]["created"] == 30
    assert world.dv_count("lead") == 30
    endpoints = world.emulators.control("marketo", "GET", "/requests").json()["by_endpoint"]
    creates = sum(n for e, n in endpoints.items() if e.endswith("/bulk/v1/leads/export/create.json"))
    assert creates == 3  # 75 days: three windows, one export each
    log = world.emulators.control("marketo", "GET", "/requests?limit=1000").json()["entries"]
    order = [e["endpoint"].rsplit("/", 1)[-1] for e in log if "/bulk/v1/leads/export" in e["endpoint"]]
    steps = [step for step in order if step in ("create.json", "file.json")]
    # the next windows' exports (up to 3) are created before the first window's file is read: they overlap
    assert steps == ["create.json"] * 3 + ["file.json"] * 3, steps


def test_a_first_lead_sync_from_marketo_leaves_persons_linked_to_contacts_alone(world: World) -> None:
    account = world.dv_create("account", name="Fabrikam")
    contact = world.dv_create(
        "contact",
        lastname="Cole",
        emailaddress1="cole@example.com",
        **{"parentcustomerid_account@odata.bind": f"/accounts({account})"},
    )
    world.mk_form_fill(email="cole@example.com", firstName="Cole", syncToDynamics=True)
    world.mk_form_fill(email="nova@example.com", firstName="Nova", syncToDynamics=True)
    start(world, {"entities": ["contact"], "direction": "to_marketo"})
    world.drain()
    assert world.mk_by_email("cole@example.com")[0]["dynamicsContactId"] == contact
    # no lead link exists yet: the lead job's pages skip their own entity's links, never the contacts'
    run_job(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert world.dv_find("lead", "emailaddress1", "cole@example.com") == []
    [nova] = world.dv_find("lead", "emailaddress1", "nova@example.com")
    nova_id = str(world.mk_by_email("nova@example.com")[0]["id"])
    link = world.ctx.state.links.get_by_marketo_id("lead", nova_id)
    assert link is not None and link.dynamics_id == nova["leadid"]  # a one-way job writes nothing to Marketo
    assert world.dv_count("lead") == 1


def test_an_export_queued_ahead_that_fails_is_made_again_and_nothing_is_missed(world: World, monkeypatch) -> None:
    world.emulators.control(
        "marketo", "POST", "/seed", json={"count": 30, "days": 75, "values": {"syncToDynamics": True}}
    )
    world.ctx.bulk_extract_threshold = 0  # never by REST
    marketo = world.ctx.marketo
    queue_export = marketo.queue_lead_export
    queued: list[str] = []

    def second_one_fails(*args, **kwargs) -> str:
        if len(queued) == 1:  # the first export queued ahead (for the second window)
            world.emulators.control("marketo", "POST", "/faults", json={"export_fail": True})
        queued.append(queue_export(*args, **kwargs))
        return queued[-1]

    monkeypatch.setattr(marketo, "queue_lead_export", second_one_fails)
    view = run_job(world, {"entities": ["lead"], "direction": "to_dynamics"})
    assert view.tasks[0]["read"] == 30 and view.tasks[0]["created"] == 30
    assert world.dv_count("lead") == 30
    statuses = [marketo.exporter.jobs[i].status for i in range(len(marketo.exporter.jobs))]
    assert len(queued) == 4 and statuses.count("Failed") == 1, (queued, statuses)
