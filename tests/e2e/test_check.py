"""`python -m sync check` as an operator runs it, in a subprocess, against both emulators and Azurite.

Schema is removed through the emulators' test controls; their /reset rebuilds the built-in schema (Dataverse:
columns, keys, change tracking; Marketo: the person fields), and the fixture resets before and after each test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.azurite import Azurite
from sync.check import run_check
from sync.settings import load_settings
from tests.emulated import RunningEmulators

REPO = Path(__file__).resolve().parents[2]
STATUS_LINE = re.compile(r"^(OK|MISSING|FAIL|INFO) +(dynamics|marketo|storage) +(.+?): (.*)$")


def reset(emulators: RunningEmulators) -> None:
    for name in ("dataverse", "marketo"):
        emulators.control(name, "POST", "/reset")


@pytest.fixture
def env_file(emulators: RunningEmulators, azurite: Azurite, table_prefix: str, tmp_path: Path) -> Iterator[Path]:
    reset(emulators)
    yield emulators.sync_env_file(tmp_path, azurite.connection_string, table_prefix)
    reset(emulators)  # restores any schema a test removed, for the tests after this one


def check(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}  # nothing inherited: settings come from --env-file only
    return subprocess.run(
        [sys.executable, "-m", "sync", "--env-file", str(env_file), "check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def status_lines(stdout: str) -> list[tuple[str, str, str, str]]:
    """(status, system, item, message) of each result line; fix hints and the summary are not result lines."""
    matches = (STATUS_LINE.match(line) for line in stdout.splitlines())
    return [(m[1], m[2], m[3], m[4]) for m in matches if m]


def test_everything_present_exits_0_with_every_line_ok(env_file: Path, table_prefix: str) -> None:
    result = check(env_file)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = status_lines(result.stdout)
    assert [(status, item) for status, _, item, _ in lines if status != "OK"] == [("INFO", "daily usage")]
    assert "fix:" not in result.stdout
    items = {(system, item) for _, system, item, _ in lines}
    assert {
        ("dynamics", "access"),
        ("dynamics", "lead change tracking"),
        ("dynamics", "contact change tracking"),
        ("dynamics", "lead.jobtitle"),
        ("dynamics", "lead.leadsourcecode"),
        ("dynamics", "contact.parentcustomerid"),
        ("dynamics", "contact.originatingleadid"),
        ("dynamics", "lead.new_marketopersonid"),
        ("dynamics", "contact.new_synctomkto"),
        ("dynamics", "lead alternate key"),
        ("dynamics", "contact alternate key"),
        ("marketo", "access"),
        ("marketo", "field dynamicsContactId"),
        ("marketo", "field syncToDynamics"),
        ("marketo", "search by dynamicsLeadId"),
        ("marketo", "search by email"),
        ("storage", "state tables"),
    } <= items
    messages = {item: message for _, _, item, message in lines}
    assert re.search(
        r"\d+ API calls so far today \(all users\), MARKETO_DAILY_CALL_BUDGET is 40,000$", messages["daily usage"]
    )
    assert f"{table_prefix}watermarks" in messages["state tables"]
    assert result.stdout.splitlines()[-1] == f"all {len(lines)} checks passed"


def test_removed_schema_is_named_exactly_and_exits_1(emulators: RunningEmulators, env_file: Path) -> None:
    emulators.control("dataverse", "DELETE", "/schema/contact/columns/new_marketopersonid")
    emulators.control("dataverse", "DELETE", "/schema/lead/columns/new_synctomkto")
    emulators.control("dataverse", "PATCH", "/schema/contact", json={"change_tracking": False})
    emulators.control("marketo", "DELETE", "/schema/fields/dynamicsContactId")

    result = check(env_file)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = {(status, system, item) for status, system, item, _ in status_lines(result.stdout) if status != "OK"}
    assert problems == {
        ("MISSING", "dynamics", "contact.new_marketopersonid"),
        ("MISSING", "dynamics", "contact alternate key"),  # the column's removal took its key along
        ("MISSING", "dynamics", "lead.new_synctomkto"),
        ("MISSING", "dynamics", "contact change tracking"),
        ("MISSING", "marketo", "field dynamicsContactId"),
        ("INFO", "marketo", "daily usage"),
    }
    assert result.stdout.count("fix:") == 5
    assert "fix: Admin > Field Management > New Custom Field: type String, API name dynamicsContactId" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("5 missing, 0 failed, of ")

    reset(emulators)  # the controls' reset rebuilds the schema: the check passes again
    assert run_check(load_settings(env_file)).problems() == []


def test_bad_credentials_fail_naming_the_setting_without_printing_secrets(
    emulators: RunningEmulators, env_file: Path
) -> None:
    bad = {
        "MARKETO_CLIENT_SECRET": "not-the-marketo-secret-42",
        "DYNAMICS_CLIENT_SECRET": "not-the-dynamics-secret-42",
    }
    text = env_file.read_text()
    for name, value in bad.items():
        text = text.replace(f'{name}="{emulators.settings[name]}"', f'{name}="{value}"')
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleQ=="
    text = re.sub(r"AccountKey=[^;\"]+", f"AccountKey={wrong_key}", text)
    env_file.write_text(text)

    result = check(env_file, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    failures = {r["system"]: r for r in report["results"]}
    assert len(report["results"]) == 3 and {r["status"] for r in report["results"]} == {"fail"}
    assert failures["marketo"]["message"].startswith("MARKETO_CLIENT_SECRET")
    assert "LaunchPoint" in failures["marketo"]["hint"]
    assert failures["dynamics"]["message"].startswith("DYNAMICS_CLIENT_SECRET: the token endpoint refused the client")
    assert "AADSTS7000215" in failures["dynamics"]["message"]
    assert failures["storage"]["message"].startswith("AzureWebJobsStorage: the state tables cannot be created")
    output = result.stdout + result.stderr
    for secret in [*bad.values(), wrong_key, emulators.settings["MARKETO_CLIENT_SECRET"]]:
        assert secret not in output
