"""`reconcile`: drift of the one-way streams that Marketo cannot list by change, found by reading Dataverse's keys
back from Marketo, and repaired. Both emulators, Azurite; each test asserts Marketo's final state."""

from __future__ import annotations

import io

from rich.console import Console

from sync.cli import main
from sync.engine.reconcile import reconcile
from tests.e2e.test_opportunity_roles import connect, contact, person_id, ready, roles, sync_all
from tests.e2e.world import World


def companies(world: World, *ids: str) -> dict:
    return world.mk_crm("companies", "externalCompanyId", list(ids), ("company", "website"))


def test_missing_different_and_extra_companies_are_reported_field_by_field_and_repaired(world: World) -> None:
    edited = world.dv_create("account", name="Edited", websiteurl="https://edited.example")
    lost = world.dv_create("account", name="Lost")
    gone = world.dv_create("account", name="Gone")
    fine = world.dv_create("account", name="Fine")
    world.upstream("account")
    world.cycle("account")
    companies_api = world.ctx.marketo.crm("companies")
    companies_api.sync([{"externalCompanyId": edited, "website": "https://marketer.example"}])
    companies_api.delete([{"externalCompanyId": lost}])
    world.dv_delete("account", gone)  # no cycle runs: the sync has not seen the delete

    report = reconcile(world.ctx, "account")
    assert report.counts() == {"missing": 1, "different": 1, "extra": 1}, report.drift
    by_key = {d.key: d for d in report.drift}
    assert by_key[lost].kind == "missing" and by_key[gone].kind == "extra"
    assert by_key[edited].fields == {"website": ("https://edited.example", "https://marketer.example")}
    assert report.compared == 3 and fine not in by_key

    world.clear_request_logs()
    repaired = reconcile(world.ctx, "account", repair=True)
    assert repaired.kept == 1  # accounts keep their companies (on_delete: keep)
    found = companies(world, edited, lost, gone, fine)
    assert found[edited]["website"] == "https://edited.example" and found[lost]["company"] == "Lost"
    by_object = world.emulators.control("marketo", "GET", "/requests").json()["by_object"]
    assert by_object.get("companies.sync") == 1, by_object  # both repairs in one call
    assert reconcile(world.ctx, "account").drift == []
    assert world.cycle("account").counts.updated == 0  # the incremental sync agrees with the repair


def test_role_drift_is_repaired_to_exactly_the_roles_dynamics_says(world: World) -> None:
    account = world.dv_create("account", name="Roles Co")
    ready(world)
    buyer = contact(world, "Rbuyer", **{"parentcustomerid_account@odata.bind": f"/accounts({account})"})
    helper = contact(world, "Rhelper")
    contact(world, "Rstranger")
    opportunity = world.dv_create(
        "opportunity", name="Drift", **{"customerid_contact@odata.bind": f"/contacts({buyer})"}
    )
    connect(world, opportunity, helper, "Influencer")
    sync_all(world)
    wanted = {(person_id(world, "Rbuyer"), "Customer", True), (person_id(world, "Rhelper"), "Influencer", False)}
    assert roles(world, opportunity) == wanted

    api = world.ctx.marketo.crm("opportunities/roles")
    api.delete([{"externalOpportunityId": opportunity, "leadId": person_id(world, "Rhelper"), "role": "Influencer"}])
    api.sync(
        [
            {
                "externalOpportunityId": opportunity,
                "leadId": person_id(world, "Rbuyer"),
                "role": "Customer",
                "isPrimary": False,
            }
        ]
    )
    api.sync(
        [
            {
                "externalOpportunityId": opportunity,
                "leadId": person_id(world, "Rstranger"),
                "role": "Bogus",
                "isPrimary": False,
            }
        ]
    )

    report = reconcile(world.ctx, "opportunityrole")
    assert report.counts() == {"missing": 1, "extra": 1, "different": 1}, report.drift
    reconcile(world.ctx, "opportunityrole", repair=True)
    assert roles(world, opportunity) == wanted
    assert reconcile(world.ctx, "opportunityrole").drift == []


def test_the_command_line_prints_the_drift_and_exits_1_until_repaired(world: World) -> None:
    account = world.dv_create("account", name="Cli Co", telephone1="555-0100")
    world.upstream("account")
    world.cycle("account")
    world.ctx.marketo.crm("companies").sync([{"externalCompanyId": account, "mainPhone": "555-9999"}])
    out = io.StringIO()
    code = main(["--env-file", str(world.env_file), "reconcile", "--entity", "account"], Console(file=out, width=200))
    assert code == 1, out.getvalue()
    assert "0 missing, 0 extra, 1 different" in out.getvalue()
    assert "mainPhone: Dynamics '555-0100', Marketo '555-9999'" in out.getvalue()
    code = main(
        ["--env-file", str(world.env_file), "reconcile", "--entity", "account", "--repair"], Console(file=io.StringIO())
    )
    assert code == 0
    assert world.mk_crm("companies", "externalCompanyId", [account], ("mainPhone",))[account]["mainPhone"] == "555-0100"
