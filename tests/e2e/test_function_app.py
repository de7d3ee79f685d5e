"""The function app as the Functions host sees it: indexing, and triggers called in-process against Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import pytest

from emulators.azurite import Azurite
from sync import runtime
from sync.settings import setting_names
from sync.state import RecordError
from tests.e2e.functions import BY_NAME, FUNCTIONS

HTTP_ROUTES = {
    "sync_status": ("sync/status", ["GET"]),
    "sync_errors": ("sync/errors", ["GET"]),
    "sync_errors_retry": ("sync/errors/retry", ["POST"]),
    "sync_errors_dismiss": ("sync/errors/dismiss", ["POST"]),
    "sync_dashboard": ("sync/dashboard", ["GET"]),
    "sync_dashboard_action": ("sync/dashboard", ["POST"]),
    "sync_full_start": ("sync/full", ["POST"]),
    "sync_job_status": ("sync/jobs/{jobId}", ["GET"]),
    "sync_job_cancel": ("sync/jobs/{jobId}", ["DELETE"]),
    "sync_relink": ("sync/relink", ["POST"]),
}
TIMERS = {
    f"sync_{s}": f"%SYNC_SCHEDULE_{s.upper()}%"
    for s in ("systemuser", "team", "account", "lead", "contact", "opportunity", "opportunityrole", "new_product")
}


def _functions() -> dict[str, func.Function]:
    return BY_NAME


def test_function_names_are_unique_and_each_has_exactly_one_trigger() -> None:
    functions = FUNCTIONS
    names = [f.get_function_name() for f in functions]
    assert len(names) == len(set(names))
    for f in functions:
        triggers = [b for b in f.get_bindings() if b.type.endswith("Trigger")]
        assert len(triggers) == 1, f.get_function_name()


def test_http_routes_and_auth_levels_are_as_documented() -> None:
    functions = _functions()
    for name, (route, methods) in HTTP_ROUTES.items():
        trigger = functions[name].get_trigger().get_dict_repr()
        assert trigger["route"] == route
        assert [str(m.value) if hasattr(m, "value") else str(m) for m in trigger["methods"]] == methods
        assert str(trigger["authLevel"].value) == "function", "no endpoint is anonymous"


def test_the_documented_functions_and_nothing_else() -> None:
    assert set(BY_NAME) == {*HTTP_ROUTES, *TIMERS, "sync_full_worker"}
    for name, schedule in TIMERS.items():
        assert BY_NAME[name].get_trigger().get_dict_repr()["schedule"] == schedule
    worker = BY_NAME["sync_full_worker"].get_trigger().get_dict_repr()
    assert worker["type"] == "queueTrigger"
    assert worker["queueName"] == "%SYNC_FULL_SYNC_QUEUE%" and "SYNC_FULL_SYNC_QUEUE" in setting_names()
    assert worker["connection"] == "AzureWebJobsStorage"


def test_timer_schedules_come_from_app_settings() -> None:
    for f in FUNCTIONS:
        trigger = f.get_trigger().get_dict_repr()
        if trigger["type"] == "timerTrigger":
            schedule = trigger["schedule"]
            assert schedule.startswith("%") and schedule.endswith("%"), f.get_function_name()
            assert schedule.strip("%") in setting_names()


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, azurite: Azurite, table_prefix: str) -> Iterator[None]:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    values = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SYNC_TABLE_PREFIX": table_prefix,
        "DYNAMICS_URL": "https://org.example.test",
        "DYNAMICS_TENANT_ID": "tenant",
        "DYNAMICS_CLIENT_ID": "client",
        "DYNAMICS_CLIENT_SECRET": "secret-value",
        "MARKETO_BASE_URL": "https://mkto.example.test",
        "MARKETO_CLIENT_ID": "client",
        "MARKETO_CLIENT_SECRET": "secret-value",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    runtime.settings.cache_clear()
    runtime.state.cache_clear()
    yield
    runtime.settings.cache_clear()
    runtime.state.cache_clear()


def _call(name: str, req: func.HttpRequest) -> func.HttpResponse:
    user_function = _functions()[name].get_user_function()
    return user_function(req)


def test_status_endpoint_reports_state(app_env: None) -> None:
    runtime.state().errors.record(
        RecordError(entity="lead", system="marketo", record_id="7", operation="update", code="1006", message="x")
    )
    req = func.HttpRequest("GET", "/api/sync/status", body=b"", params={"backlog": "false"})
    response = _call("sync_status", req)
    assert response.status_code == 200
    body = json.loads(response.get_body())
    lead = next(e for e in body["entities"] if e["entity"] == "lead")
    assert lead["error_count"] == 1


def test_errors_endpoint_lists_and_filters(app_env: None) -> None:
    for entity in ("lead", "contact"):
        runtime.state().errors.record(
            RecordError(entity=entity, system="dynamics", record_id="r1", operation="create", message="bad e-mail")
        )
    req = func.HttpRequest("GET", "/api/sync/errors", body=b"", params={"entity": "contact"})
    body = json.loads(_call("sync_errors", req).get_body())
    assert [(e["entity"], e["message"]) for e in body["errors"]] == [("contact", "bad e-mail")]


def test_errors_endpoint_exports_csv_and_dismisses_from_a_form(app_env: None) -> None:
    for record_id in ("r1", "r2"):
        runtime.state().errors.record(
            RecordError(entity="lead", system="marketo", record_id=record_id, operation="update", message="bad")
        )
    req = func.HttpRequest("GET", "/api/sync/errors", body=b"", params={"format": "csv", "code": "key"})
    response = _call("sync_errors", req)
    assert response.mimetype == "text/csv"
    assert response.get_body().decode().splitlines()[0].startswith("stream,system,direction,record_id")
    form = func.HttpRequest(
        "POST",
        "/api/sync/errors/dismiss",
        body=b"stream=lead&system=marketo&record_id=r1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = _call("sync_errors_dismiss", form)
    assert response.status_code == 200 and json.loads(response.get_body()) == {"dismissed": 1}
    assert [e.record_id for e in runtime.state().errors.list()] == ["r2"]
