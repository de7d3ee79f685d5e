"""The initial full sync end to end: HTTP start, queue fan-out drained in-process, both emulators, Azurite."""

from __future__ import annotations

import json

import azure.functions as func

from sync import api
from sync.engine.fullsync import view_job
from tests.e2e.world import World


def start(world: World, body: dict | None = None) -> str:
    response = api.start_full(world.ctx, world.queue, json.dumps(body or {}).encode(), "https://sync.example.test")
    assert response.status == 202, response.body
    assert response.headers["Location"] == response.body["statusUrl"]
    return str(response.body["jobId"])


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
    job_id = start(world)
    world.drain()
    view = view_job(world.ctx, job_id)
    assert view is not None and view.state == "succeeded", view
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
