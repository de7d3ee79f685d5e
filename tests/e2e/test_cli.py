"""`python -m sync` as an operator runs it, in a subprocess, against Azurite."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emulators.azurite import Azurite
from sync.settings import setting_names
from sync.state import RecordError, RunRecord, StateStore
from sync.state.tables import service_client

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env_file(tmp_path: Path, azurite: Azurite, table_prefix: str) -> Path:
    path = tmp_path / "sync.env"
    path.write_text(
        "\n".join(
            [
                f'AzureWebJobsStorage="{azurite.connection_string}"',
                f"SYNC_TABLE_PREFIX={table_prefix}",
                "DYNAMICS_URL=https://org.example.test",
                "DYNAMICS_TENANT_ID=tenant",
                "DYNAMICS_CLIENT_ID=client",
                "DYNAMICS_CLIENT_SECRET=dyn-secret-value",
                "MARKETO_BASE_URL=https://mkto.example.test",
                "MARKETO_CLIENT_ID=client",
                "MARKETO_CLIENT_SECRET=mkto-secret-value",
            ]
        )
    )
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}  # nothing inherited: settings come from --env-file only
    return subprocess.run(
        [sys.executable, "-m", "sync", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_errors_and_status_as_json(env_file: Path, azurite: Azurite, table_prefix: str) -> None:
    state = StateStore(service_client(azurite.connection_string), prefix=table_prefix)
    state.errors.record(
        RecordError(
            entity="lead", system="dynamics", record_id="abc", operation="create", code="0x80040237", message="dup"
        )
    )
    listed = run_cli("--env-file", str(env_file), "errors", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(e["record_id"], e["code"]) for e in json.loads(listed.stdout)] == [("abc", "0x80040237")]

    status = run_cli("status", "--json", "--env-file", str(env_file))  # --env-file also after the command
    assert status.returncode == 0, status.stderr
    lead = next(e for e in json.loads(status.stdout)["entities"] if e["entity"] == "lead")
    assert lead["error_count"] == 1

    cleared = run_cli("errors", "--clear", "--env-file", str(env_file))
    assert cleared.returncode == 0 and "dismissed 1" in cleared.stdout
    assert state.errors.count() == 0


def test_bad_settings_exit_2_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("AzureWebJobsStorage=UseDevelopmentStorage=true\nDYNAMICS_URL=http://insecure\n")
    result = run_cli("--env-file", str(env_file), "status")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "DYNAMICS_URL: must be an https:// URL" in result.stderr
    assert "MARKETO_CLIENT_SECRET: is required but not set" in result.stderr
    assert setting_names()  # the contract is non-empty


def test_status_says_when_an_entity_stopped_by_the_quota_resumes(
    env_file: Path, azurite: Azurite, table_prefix: str
) -> None:
    state = StateStore(service_client(azurite.connection_string), prefix=table_prefix)
    resumes = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    state.runs.record(RunRecord(entity="lead", direction="both", outcome="partial", resumes_at=resumes))
    result = run_cli("--env-file", str(env_file), "status")
    assert result.returncode == 0, result.stderr
    assert f"resumes at {resumes.isoformat()}" in " ".join(result.stdout.split())
