"""The incremental cycle end to end: both emulators, Azurite, the real connectors."""

from __future__ import annotations

from tests.e2e.world import World


def test_new_dynamics_lead_reaches_marketo_and_an_idle_cycle_writes_nothing(world: World) -> None:
    world.cycles("lead")  # first cycle: watermarks start here
    lead_id = world.dv_create(
        "lead", firstname="Ann", lastname="Lee", emailaddress1="ann@example.com", companyname="Acme"
    )
    report = world.cycle("lead")
    assert report.counts.created == 1, report
    [person] = world.mk_by_email("ann@example.com")
    assert (person["firstName"], person["lastName"], person["company"]) == ("Ann", "Lee", "Acme")
    assert (person["dynamicsLeadId"], person["dynamicsType"]) == (lead_id, "Lead")
    assert world.dv_get("lead", lead_id)["new_marketopersonid"] == str(person["id"])

    world.clear_request_logs()
    second = world.cycle("lead")  # sees its own writes come back, and writes nothing
    assert second.counts.created == second.counts.updated == 0, second
    log = world.emulators.control("dataverse", "GET", "/requests", params={"client": "sync"}).json()
    assert set(log["by_operation"]) <= {"RetrieveEntityChanges", "RetrieveMultiple", "Retrieve", "RetrieveMetadata"}, (
        log
    )
    mk_log = world.emulators.control("marketo", "GET", "/requests").json()
    assert "POST /rest/v1/leads.json" not in mk_log["by_endpoint"], mk_log

    world.clear_request_logs()
    world.cycle("lead")  # idle: nothing changed anywhere
    assert world.dv_sync_calls() <= 1
    assert world.mk_api_calls() <= 2  # lead changes; deletes and merges in one activities call
