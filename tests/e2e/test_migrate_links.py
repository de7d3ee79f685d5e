"""`python -m sync migrate-links` and `check` on a deployment whose links are in the old table (one partition per
entity and side, or the bucket partitions), as an operator runs them: old rows written directly with the table client,
then the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from azure.data.tables import TableClient

from emulators.azurite import Azurite
from sync.check import run_check
from sync.settings import load_settings
from sync.state import StateStore
from sync.state.keys import encode_key
from sync.state.links import link_bucket, submit_transactions
from sync.state.tables import service_client
from tests.emulated import RunningEmulators

REPO = Path(__file__).resolve().parents[2]


def cli(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}  # nothing inherited: settings come from --env-file only
    return subprocess.run(
        [sys.executable, "-m", "sync", "--env-file", str(env_file), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def flat(output: str) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(output.split())


def write_old_layout(table: TableClient, entity: str, count: int, bucketed: bool = False) -> None:
    """Rows as earlier versions wrote them into the one links table: one partition per side (<entity>|D,
    <entity>|M), or `bucketed` (<entity>|D|<bucket>, as the version before the tables per bucket)."""

    def partition(side: str, record_id: str) -> str:
        if bucketed:
            return encode_key(f"{entity}|{side}|{link_bucket(record_id):02x}")
        return encode_key(f"{entity}|{side}")

    rows = []
    for n in range(count):
        dynamics_id, marketo_id = f"{entity}-{n:03d}", str(5000 + n)
        common = {"Entity": entity, "DynamicsId": dynamics_id, "MarketoId": marketo_id}
        rows.append(
            {
                "PartitionKey": partition("D", dynamics_id),
                "RowKey": encode_key(dynamics_id),
                **common,
                "Snapshot": json.dumps({"email": f"{n}@example.com"}),
            }
        )
        rows.append({"PartitionKey": partition("M", marketo_id), "RowKey": encode_key(marketo_id), **common})
    submit_transactions(table, [("upsert", row) for row in rows])


def storage_lines(env_file: Path) -> dict[str, tuple[str, str, str]]:
    results = run_check(load_settings(env_file)).results
    return {r.item: (r.status, r.message, r.hint) for r in results if r.system == "storage"}


def test_check_reports_old_links_and_migrate_links_moves_them(
    emulators: RunningEmulators, azurite: Azurite, table_prefix: str, tmp_path: Path
) -> None:
    env_file = emulators.sync_env_file(tmp_path, azurite.connection_string, table_prefix)
    state = StateStore(service_client(azurite.connection_string), prefix=table_prefix)
    service = service_client(azurite.connection_string)
    service.create_table_if_not_exists(f"{table_prefix}links")  # an earlier version's one links table
    table = service.get_table_client(f"{table_prefix}links")
    write_old_layout(table, "lead", 20)
    write_old_layout(table, "contact", 5, bucketed=True)
    before = sorted((row["PartitionKey"], row["RowKey"]) for row in table.list_entities())

    lines = storage_lines(env_file)
    assert lines["lead links"][0] == "fail" and lines["contact links"][0] == "fail"
    assert lines["lead links"][1].startswith("links of lead are in the old layout")
    assert "python -m sync migrate-links" in lines["lead links"][2]
    assert "link layout" not in lines

    cycle = cli(env_file, "run", "--entity", "lead")  # refused, not run as if nothing were linked
    assert cycle.returncode == 2
    assert "links of lead are in the old layout: run python -m sync migrate-links" in flat(cycle.stdout)

    dry = cli(env_file, "migrate-links", "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "lead: would move 20 Dynamics-keyed and 20 Marketo-keyed link rows into 8 buckets per side" in flat(
        dry.stdout
    )
    assert "account: nothing in the old layout" in dry.stdout
    assert flat(dry.stdout).endswith("dry run: nothing written; 50 rows to move")
    assert sorted((row["PartitionKey"], row["RowKey"]) for row in table.list_entities()) == before

    moved = cli(env_file, "migrate-links")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "contact: moved 5 Dynamics-keyed and 5 Marketo-keyed link rows into 8 buckets per side" in flat(moved.stdout)
    assert flat(moved.stdout).endswith("done: 50 rows moved")
    again = cli(env_file, "migrate-links")
    assert again.returncode == 0 and "lead: nothing in the old layout" in again.stdout
    assert flat(again.stdout).endswith("done: 0 rows moved")

    assert state.links.count("lead") == 20 and state.links.count("contact") == 5
    assert list(table.list_entities()) == []  # the old table is empty
    link = state.links.get_by_marketo_id("lead", "5007")
    assert link is not None and link.dynamics_id == "lead-007" and link.snapshot == {"email": "7@example.com"}
    contact = state.links.get_by_dynamics_id("contact", "contact-003")
    assert contact is not None and contact.marketo_id == "5003" and contact.snapshot == {"email": "3@example.com"}
    lines = storage_lines(env_file)
    assert "lead links" not in lines and lines["link layout"][0] == "ok"
