"""Throughput of the Dataverse emulator: paged reads (5,000 per page) and UpsertMultiple writes over HTTPS.

Runs the emulator in a subprocess (`python -m emulators --only dataverse`, fast profile) and talks raw HTTP.
Prints numbers; asserts nothing about time.

    .venv/bin/python -m bench.bench_dataverse_emulator [--records 100000] [--chunk 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script or with -m

from emulators.process import start_emulators
from sync.connectors.http import build_session

PAGE = 5000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    running = start_emulators("--profile", "fast", "--only", "dataverse")
    try:
        settings = running.settings
        session = build_session(Path(running.ca_file), pool_maxsize=args.workers + 2)
        api = f"{settings['DYNAMICS_URL']}/api/data/v9.2/"
        token = session.post(
            f"{settings['DYNAMICS_AUTHORITY']}/oauth2/v2.0/token",
            data={"client_id": settings["DYNAMICS_CLIENT_ID"], "client_secret": settings["DYNAMICS_CLIENT_SECRET"],
                  "grant_type": "client_credentials", "scope": f"{settings['DYNAMICS_URL']}/.default"},
        ).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-Version": "4.0"}

        # --- UpsertMultiple by alternate key: creates, then the same keys again as updates
        def upsert(chunk_start: int, suffix: str) -> None:
            targets = [
                {"@odata.type": "Microsoft.Dynamics.CRM.lead", "@odata.id": f"leads(new_marketopersonid='{i}')",
                 "firstname": f"First{i}", "lastname": f"Last{i}{suffix}", "emailaddress1": f"p{i}@example.com",
                 "companyname": "Contoso", "jobtitle": "Buyer"}
                for i in range(chunk_start, min(chunk_start + args.chunk, args.records))
            ]  # fmt: skip
            response = session.post(api + "leads/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets},
                                    headers=headers, timeout=300)  # fmt: skip
            response.raise_for_status()

        for label, suffix in (("UpsertMultiple (create)", ""), ("UpsertMultiple (update)", "x")):
            started = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(lambda s, x=suffix: upsert(s, x), range(0, args.records, args.chunk)))
            elapsed = time.perf_counter() - started
            print(f"{label}: {args.records:,} records in {elapsed:.2f}s = {args.records / elapsed:,.0f} records/s "
                  f"({args.chunk} per call, {args.workers} workers)")  # fmt: skip

        # --- paged reads: a change-tracking initial read and a plain query, 5,000 per page
        for label, prefer in (("paged read (track-changes)", f"odata.track-changes,odata.maxpagesize={PAGE}"),
                              ("paged read (query)", f"odata.maxpagesize={PAGE}")):  # fmt: skip
            url = api + "leads?$select=firstname,lastname,emailaddress1,companyname,jobtitle,modifiedon"
            rows = calls = 0
            started = time.perf_counter()
            while url:
                page = session.get(url, headers={**headers, "Prefer": prefer}, timeout=300).json()
                rows += len(page["value"])
                calls += 1
                url = page.get("@odata.nextLink")
            elapsed = time.perf_counter() - started
            print(f"{label}: {rows:,} records in {calls} calls, {elapsed:.2f}s = {rows / elapsed:,.0f} records/s")

        started = time.perf_counter()
        seeded = running.control("dataverse", "POST", "/seed", json={"table": "contact", "count": 1_000_000}).json()
        print(f"seed 1,000,000 contacts: {time.perf_counter() - started:.2f}s (server side {seeded['seconds']:.2f}s)")
    finally:
        running.stop()


if __name__ == "__main__":
    main()
