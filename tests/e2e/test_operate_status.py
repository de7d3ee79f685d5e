"""Status as the native Sync Status tab (issue 15 item 2): every figure against a backlog made in the emulators,
through the real connectors and Azurite; the CLI's rendering at 80 columns (item 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sync import status as status_module
from sync.cli import main
from sync.engine.fullsync import FullSyncRequest, start_full_sync
from sync.metrics import THROTTLED, run_cycle_counted
from sync.status import StatusReport, collect_status
from tests.console import recording_console
from tests.e2e.world import World


def status(world: World) -> StatusReport:
    names = [s.name for s in world.ctx.mapping.ordered_entities()]
    return collect_status(
        world.ctx.state, names, ctx=world.ctx, marketo_call_budget=world.settings.marketo_daily_call_budget
    )


def backlog_of(report: StatusReport, stream: str) -> dict[str, tuple[int | None, bool]]:
    entity = next(e for e in report.entities if e.entity == stream)
    return {b.system: (b.count, b.exact) for b in entity.backlog}


def make_backlog(world: World, leads: int, forms: int) -> datetime:
    started = datetime.now(UTC).replace(microsecond=0)
    for i in range(leads):
        world.dv_create("lead", lastname=f"Back{i}", emailaddress1=f"back{i}@example.com", companyname="B")
    for i in range(forms):
        world.mk_form_fill(email=f"form{i}@example.com", lastName=f"Form{i}", company="F", syncToDynamics=True)
    return started


def test_every_figure_against_a_known_backlog_and_counting_spends_no_watermark(world: World) -> None:
    reports = world.upstream("lead")
    reports.append(world.cycle("lead"))
    world.dv_create("lead", lastname="First", emailaddress1="first@example.com", companyname="F")
    first = world.cycle("lead")  # a cycle that synced something: the processing rate for the ETA
    reports.append(first)
    reports.append(world.cycle("lead"))  # reads the first cycle's own writes back (echoes) and skips them
    started = make_backlog(world, leads=3, forms=2)

    report = status(world)
    lead = next(e for e in report.entities if e.entity == "lead")
    assert backlog_of(report, "lead") == {"dynamics": (3, True), "marketo": (2, True)}
    assert [b.label for b in lead.backlog] == ["3", "2"]
    assert lead.oldest_waiting_at is not None and started - timedelta(seconds=2) <= lead.oldest_waiting_at
    assert 0 <= lead.oldest_waiting_age_seconds < 120
    assert lead.eta_seconds is not None and lead.eta_seconds > 0
    synced = first.counts.created + first.counts.updated + first.counts.deleted
    assert synced >= 1 and lead.synced_last_hour == lead.synced_last_24h == synced
    assert sum(lead.throughput_last_hour) == synced and len(lead.throughput_last_hour) == 12
    assert lead.last_success_at == world.ctx.state.runs.recent("lead", limit=1)[0].ended_at
    assert lead.state == "idle" and lead.lease_holder is None
    assert backlog_of(report, "account") == {"dynamics": (0, True)}  # a one-way stream waits in Dynamics only
    assert report.marketo_calls_today == sum(r.api_calls["marketo"] for r in reports)
    assert report.marketo_call_budget == world.settings.marketo_daily_call_budget
    contact = next(e for e in report.entities if e.entity == "contact")
    assert contact.state == "never run" and [b.label for b in contact.backlog] == ["unknown", "unknown"]

    assert backlog_of(status(world), "lead") == {"dynamics": (3, True), "marketo": (2, True)}  # read twice: same
    world.cycle("lead")  # the backlog was only counted: the cycle still finds and syncs all of it
    for i in range(3):
        assert len(world.mk_by_email(f"back{i}@example.com")) == 1
    for i in range(2):
        assert len(world.dv_find("lead", "emailaddress1", f"form{i}@example.com")) == 1
    world.cycle("lead")  # the echoes of those writes
    after = status(world)
    assert backlog_of(after, "lead") == {"dynamics": (0, True), "marketo": (0, True)}
    assert next(e for e in after.entities if e.entity == "lead").eta_seconds == 0


def test_a_backlog_beyond_the_counting_cap_is_labelled_an_estimate(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.upstream("lead")
    world.cycle("lead")
    make_backlog(world, leads=5, forms=0)
    monkeypatch.setattr(status_module, "DYNAMICS_COUNT_PAGES", 2)
    monkeypatch.setattr(world.ctx.dynamics, "page_size", 2)
    [dynamics, _] = next(e for e in status(world).entities if e.entity == "lead").backlog
    assert (dynamics.count, dynamics.exact, dynamics.label) == (4, False, "at least 4 (estimate)")


def test_lease_holder_and_full_sync_jobs_are_shown(world: World) -> None:
    world.upstream("lead")
    world.ctx.state.leases.acquire("lead", "ops-test-runner", timedelta(minutes=5))
    job = start_full_sync(world.ctx, world.queue, FullSyncRequest(entities=["contact"]))
    report = status(world)
    lead = next(e for e in report.entities if e.entity == "lead")
    assert (lead.state, lead.lease_holder) == ("running", "ops-test-runner")
    [shown] = [j for j in report.jobs if j.job_id == job.job_id]
    assert shown.state in ("queued", "running") and shown.entities == ["contact"]
    first_task = shown.tasks[0]
    assert (first_task.entity, first_task.direction, first_task.state, first_task.read) == (
        "contact",
        "to_marketo",
        "queued",
        0,
    )
    assert next(e for e in report.entities if e.entity == "contact").state == "full sync"


def test_the_cli_table_reads_whole_at_80_columns_and_as_json(world: World) -> None:
    world.upstream("lead")
    world.cycle("lead")
    make_backlog(world, leads=2, forms=1)  # nothing synced yet: no echoes of the sync's own writes
    env = ["--env-file", str(world.env_file)]
    console, out = recording_console(width=80)
    assert main(["status", *env], console) == 0
    text = out()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    run = world.ctx.state.runs.recent("lead", limit=1)[0]
    assert f"{run.started_at.isoformat(timespec='seconds')} incremental succeeded" in text
    assert "waiting in dynamics (to_marketo): 2" in text and "waiting in marketo (to_dynamics): 1" in text
    assert "Marketo calls today:" in text and "last successful cycle: 20" in text

    console, out = recording_console(width=80)
    assert main(["status", "--json", *env], console) == 0
    lead = next(e for e in json.loads(out())["entities"] if e["entity"] == "lead")
    assert [(b["system"], b["count"], b["label"]) for b in lead["backlog"]] == [
        ("dynamics", 2, "2"),
        ("marketo", 1, "1"),
    ]


def test_dataverse_429s_are_counted_per_run_and_shown_for_the_day(world: World) -> None:
    world.upstream("lead")
    world.cycle("lead")
    world.dv_create("lead", lastname="Slow", emailaddress1="slow@example.com", companyname="S")
    world.emulators.control(
        "dataverse", "POST", "/faults", json={"queue": [{"status": 429, "retry_after": 0, "times": 2}]}
    )
    report = run_cycle_counted(world.ctx, "lead")
    assert report.outcome == "succeeded" and report.api_calls[THROTTLED] == 2
    assert len(world.mk_by_email("slow@example.com")) == 1  # retried through, nothing lost
    assert world.ctx.state.runs.recent("lead", limit=1)[0].api_calls[THROTTLED] == 2
    shown = status(world)
    assert shown.dynamics_429s_today == 2
    assert {e.entity: e.dynamics_429s_24h for e in shown.entities}["lead"] == 2
