"""Benchmark: the Marketo connector against the Marketo emulator (in a subprocess), per profile.

Prints, for person sync over REST (300 per call), reads by e-mail, and bulk import / extract of persons: the calls
the connector made per 1,000 records (REST minimum: ceil(N/300) per N), and wall time. Asserts nothing about time.

    .venv/bin/python bench/bench_marketo_connector.py                      # fast profile, 100,000 bulk persons
    .venv/bin/python bench/bench_marketo_connector.py --profile realistic --bulk-persons 20000 --rest-persons 3000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulators.process import RunningEmulators, start_emulators
from sync.connectors.marketo import MarketoClient, PollPolicy, RetryPolicy

FIELDS = ["email", "firstName", "lastName", "company", "title", "dynamicsLeadId"]


def persons(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, start + count):
        yield {
            "email": f"bench{i}@example.com",
            "firstName": f"First{i}",
            "lastName": f"Last{i}",
            "company": f"Company {i % 997}",
            "title": "Buyer",
            "dynamicsLeadId": f"00000000-0000-4000-8000-{i:012d}",
        }


def client_for(running: RunningEmulators) -> MarketoClient:
    s = running.settings
    return MarketoClient(
        s["MARKETO_BASE_URL"],
        s["MARKETO_CLIENT_ID"],
        SecretStr(s["MARKETO_CLIENT_SECRET"]),
        extra_ca=Path(s["SYNC_CA_BUNDLE"]),
        daily_call_budget=1_000_000,
        max_concurrency=4,
        retry=RetryPolicy(attempts=8),
        poll=PollPolicy(initial=0.2, maximum=2.0, timeout=1800),
    )


def measure(label: str, records: int, run: Callable[[MarketoClient], Any], running: RunningEmulators) -> Any:
    client = client_for(running)
    started = time.perf_counter()
    outcome = run(client)
    wall = time.perf_counter() - started
    calls = client.quota_calls
    per_1000 = 1000 * calls / records if records else 0.0
    rest_min = math.ceil(records / 300)
    detail = ", ".join(f"{op}={n}" for op, n in sorted(client.calls.items()))
    print(
        f"  {label:<28} records={records:>7,}  calls={calls:>5} ({per_1000:6.2f} per 1,000; REST minimum "
        f"{1000 * rest_min / records:4.2f})  wall={wall:7.2f} s  ({records / wall:,.0f} records/s)"
    )
    print(f"  {'':<28} by operation: {detail}; waited for rate window {client.limits.window.waited:.1f} s")
    client.close()
    return outcome


def bench(profile: str, rest_persons: int, bulk_persons: int) -> None:
    print(f"\nprofile={profile}: REST {rest_persons:,} persons, bulk {bulk_persons:,} persons")
    running = start_emulators("--profile", profile, "--only", "marketo")
    try:
        running.control("marketo", "POST", "/reset")
        rows = list(persons(rest_persons))

        def sync(client: MarketoClient) -> None:
            results = client.sync_leads(rows)
            assert all(r.status == "created" for r in results), "every bench person is new"

        measure("REST write (sync_leads)", rest_persons, sync, running)
        emails = [r["email"] for r in rows]
        measure("REST read (get_leads email)", rest_persons, lambda c: c.get_leads("email", emails, FIELDS), running)

        since = datetime.now(UTC) - timedelta(minutes=5)

        def changes(client: MarketoClient) -> int:
            token = client.get_paging_token(since)
            return sum(len(p.activities) for p in client.lead_changes(token, ["firstName"]))

        measure("REST read (lead_changes)", rest_persons, changes, running)

        running.control("marketo", "POST", "/reset")
        start = datetime.now(UTC) - timedelta(days=1)

        def bulk_import(client: MarketoClient) -> None:
            result = client.import_leads(persons(bulk_persons), FIELDS)
            print(
                f"  {'':<28} import: {len(result.jobs)} jobs, processed={result.rows_processed:,}, "
                f"failed={result.rows_failed}, failed jobs={len(result.failed_jobs)}"
            )

        measure("bulk import", bulk_persons, bulk_import, running)

        def bulk_export(client: MarketoClient) -> None:
            count = sum(1 for _ in client.export_leads(FIELDS, start, datetime.now(UTC) + timedelta(minutes=1)))
            print(f"  {'':<28} export: {count:,} rows in {len(client.exporter.jobs)} job(s)")

        measure("bulk extract", bulk_persons, bulk_export, running)
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["fast", "realistic", "both"], default="fast")
    parser.add_argument("--rest-persons", type=int, default=10_000)
    parser.add_argument("--bulk-persons", type=int, default=100_000)
    args = parser.parse_args()
    for profile in ("fast", "realistic") if args.profile == "both" else (args.profile,):
        bench(profile, args.rest_persons, args.bulk_persons)


if __name__ == "__main__":
    main()
