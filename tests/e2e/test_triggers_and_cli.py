"""The timer and queue triggers called in-process, the poison path, the CLI's run/status/errors, a custom mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import azure.functions as func
import pytest
import yaml
from azure.functions.timer import TimerRequest

from sync import api, runtime
from sync.engine.fullsync import view_job
from sync.mapping import DEFAULT_MAPPING_FILE, load_mapping
from sync.state.queue import MAX_DEQUEUE_COUNT
from tests.e2e.functions import BY_NAME
from tests.e2e.world import World

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def wired(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(runtime, "context", lambda: world.ctx)
    monkeypatch.setattr(runtime, "queue", lambda: world.queue)
    return world


def test_the_lead_timer_runs_an_incremental_cycle(wired: World) -> None:
    timer = BY_NAME["sync_lead"].get_user_function()
    timer(TimerRequest(past_due=False))  # the first run sets the watermarks
    lead = wired.dv_create("lead", lastname="Timer", emailaddress1="timer@example.com", companyname="T")
    timer(TimerRequest(past_due=True))
    [person] = wired.mk_by_email("timer@example.com")
    assert person["dynamicsLeadId"] == lead
    [run] = wired.ctx.state.runs.recent("lead", limit=1)
    assert run.outcome == "succeeded" and run.counts.created == 1


def test_the_queue_trigger_works_the_full_sync_through(wired: World) -> None:
    wired.dv_create("lead", lastname="Queued", emailaddress1="queued@example.com", companyname="Q")
    started = api.start_full(wired.ctx, wired.queue, b'{"entities": ["lead"]}', "https://app.example.test")
    worker = BY_NAME["sync_full_worker"].get_user_function()
    for _ in range(20):  # what the host does: receive, call the function, delete
        batch = list(wired.queue.queue.receive_messages(max_messages=4, visibility_timeout=30))
        if not batch:
            break
        for raw in batch:
            worker(func.QueueMessage(id=raw.id, body=raw.content.encode()))
            wired.queue.queue.delete_message(raw)
    view = view_job(wired.ctx, started.body["jobId"])
    assert view is not None and view.state == "succeeded", view
    assert len(wired.mk_by_email("queued@example.com")) == 1


def test_a_page_that_keeps_failing_goes_to_the_poison_queue_and_fails_the_job(world: World) -> None:
    world.dv_create("lead", lastname="Poison", emailaddress1="poison@example.com", companyname="P")
    world.upstream("lead")
    started = api.start_full(world.ctx, world.queue, b'{"entities": ["lead"]}', "https://app.example.test")
    world.ctx.dynamics.definition("lead")  # metadata is cached before the outage
    world.emulators.control(
        "dataverse", "POST", "/faults", json={"queue": [{"status": 400, "times": 50, "path": "leads"}]}
    )
    attempts: list[int] = []
    world.drain(on_message=lambda delivery: attempts.append(delivery.dequeue_count))
    world.emulators.control("dataverse", "DELETE", "/faults")
    assert attempts == list(range(1, MAX_DEQUEUE_COUNT + 1))
    view = view_job(world.ctx, started.body["jobId"])
    assert view is not None and view.state == "failed"
    assert view.error and "lead/to_marketo" in view.error and "page 0" in view.error
    poisoned = list(world.queue.poison.receive_messages(max_messages=5))  # type: ignore[union-attr]
    assert [json.loads(m.content)["job"] for m in poisoned] == [started.body["jobId"]]
    assert world.ctx.state.jobs.holder("lead") is None  # a failed job frees the entity for the next one


def run_cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    command = [sys.executable, "-m", "sync", "--env-file", str(world.env_file), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_cli_run_status_and_errors(world: World) -> None:
    assert run_cli(world, "run").returncode == 0
    world.dv_create("lead", lastname="Cli", emailaddress1="cli@example.com", companyname="C")
    world.dv_create("lead", lastname="Bad", emailaddress1="not-an-email", companyname="B")
    ran = run_cli(world, "run", "--entity", "lead")
    assert ran.returncode == 1, ran.stdout + ran.stderr  # partial: one record failed
    assert "created 1" in ran.stdout and "failed 1" in ran.stdout
    status = json.loads(run_cli(world, "status", "--json").stdout)
    lead = next(e for e in status["entities"] if e["entity"] == "lead")
    assert lead["error_count"] == 1 and lead["last_runs"][0]["counts"]["created"] == 1
    assert {c["system"] for c in lead["cursors"]} == {"dynamics", "marketo"}
    errors = json.loads(run_cli(world, "errors", "--json", "--entity", "lead").stdout)
    assert [(e["system"], e["operation"]) for e in errors] == [("dynamics", "create")]
    assert errors[0]["code"] and "not-an-email" not in errors[0]["record_id"]
    dry = run_cli(world, "run", "--entity", "lead", "--dry-run")
    assert dry.returncode in (0, 1) and "lead:" in dry.stdout


def test_a_custom_mapping_file_adds_a_field_and_changes_the_winner(world: World, tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    raw["entities"]["lead"]["conflict_winner"] = "dynamics"
    raw["entities"]["lead"]["fields"].append({"dynamics": "address1_city", "marketo": "city"})
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(yaml.safe_dump(raw))
    world.ctx.mapping = load_mapping(mapping_file)
    world.cycle("lead")
    lead = world.dv_create(
        "lead", lastname="Map", emailaddress1="map@example.com", companyname="M", address1_city="Lisbon", firstname="A"
    )
    world.cycle("lead")
    [person] = world.mk_by_email("map@example.com")
    assert person["city"] == "Lisbon"
    world.dv_update("lead", lead, firstname="FromDynamics")
    world.mk_edit(person["id"], firstName="FromMarketo", city="Porto")
    world.cycle("lead")
    assert world.mk_get(person["id"])["firstName"] == "FromDynamics"  # the configured winner
    assert world.dv_get("lead", lead)["address1_city"] == "Porto"  # the new field flows both ways
