"""The log lines the alert rules read (issue 15 item 5), written by the real timer and queue functions against the
emulators and Azurite, parsed the way the rules' queries parse them."""

from __future__ import annotations

import logging
import re

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from sync.engine.fullsync import FullSyncRequest, start_full_sync
from sync.state.queue import Delivery
from tests.e2e.function_host import runtime_of
from tests.e2e.functions import BY_NAME
from tests.e2e.test_operate_errors import _waiting_contacts
from tests.e2e.world import World


def _lines(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, str]]:
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if message.startswith(f"{name} "):
            found.append(dict(re.findall(r"([a-z0-9_]+)=([^ ]+)", message)) | {"level": record.levelname})
    return found


def test_each_timer_cycle_writes_a_sync_cycle_line(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    contacts = _waiting_contacts(world, 2)
    world.dv_create("contact", lastname="Fine", emailaddress1="fine@example.com")
    caplog.set_level(logging.INFO, logger="sync.metrics")
    with runtime_of(world.env_file, monkeypatch):
        BY_NAME["sync_contact"].get_user_function()(TimerRequest(past_due=False))
    [line] = _lines(caplog, "SYNC_CYCLE")
    assert line == {
        "stream": "contact",
        "outcome": "partial",
        "complete": "true",
        "synced": line["synced"],
        "failed": "2",
        "record_errors": str(len(contacts)),
        "marketo_calls": line["marketo_calls"],
        "dynamics_calls": line["dynamics_calls"],
        "dynamics_429s": "0",
        "level": "INFO",
    }
    assert int(line["synced"]) >= 1 and int(line["marketo_calls"]) >= 1 and int(line["dynamics_calls"]) >= 1
    assert len(world.mk_by_email("fine@example.com")) == 1


def test_each_full_sync_message_writes_a_sync_full_sync_line(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world.upstream("lead")
    world.dv_create("lead", lastname="Full", emailaddress1="full@example.com", companyname="F")
    job = start_full_sync(world.ctx, world.queue, FullSyncRequest(entities=["lead"], direction="to_marketo"))
    caplog.set_level(logging.INFO, logger="sync.metrics")
    worker = BY_NAME["sync_full_worker"].get_user_function()

    def deliver(delivery: Delivery) -> None:
        body = delivery.message.model_dump_json().encode()
        worker(func.QueueMessage(body=body))

    failures: list[Exception] = []
    with runtime_of(world.env_file, monkeypatch):
        while world.queue.drain(deliver, visibility_timeout=1, on_error=lambda _, exc: failures.append(exc)):
            pass
    assert failures == []
    lines = _lines(caplog, "SYNC_FULL_SYNC")
    assert lines and {(x["job"], x["stream"], x["phase"]) for x in lines} == {(job.job_id, "lead", "to_marketo")}
    assert lines[-1]["state"] == "succeeded" and sum(int(x["marketo_calls"]) for x in lines) >= 1
    assert len(world.mk_by_email("full@example.com")) == 1
