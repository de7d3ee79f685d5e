"""The Dataverse connector reading N records by change tracking: API calls and peak memory, for growing N.

Runs the Dataverse emulator in a subprocess (fast profile), seeds N leads with its fast seed control, then reads
them all with DataverseClient.read_changes (initial change-tracking read, Prefer odata.maxpagesize) and prints:
the calls the connector counted, the calls the emulator logged, ceil(N / page size), and peak memory of the read
(tracemalloc peak, Python allocations) plus the process's max RSS. Prints numbers; asserts nothing about time.

    .venv/bin/python -m bench.bench_dataverse_connector [--sizes 10000,100000,1000000] [--page-size 5000]
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import sys
import time
import tracemalloc
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script or with -m

from emulators.process import RunningEmulators, start_emulators
from sync.connectors.dynamics import DataverseClient

SELECT = ["firstname", "lastname", "emailaddress1", "companyname", "jobtitle", "modifiedon"]


def control(running: RunningEmulators, method: str, path: str, **json: object) -> dict:
    return running.control("dataverse", method, path, json=json or None).json()


def read_everything(running: RunningEmulators, page_size: int) -> tuple[int, int, str, float, int]:
    s = running.settings
    with DataverseClient(
        s["DYNAMICS_URL"],
        s["DYNAMICS_AUTHORITY"],
        s["DYNAMICS_CLIENT_ID"],
        SecretStr(s["DYNAMICS_CLIENT_SECRET"]),
        extra_ca=Path(s["SYNC_CA_BUNDLE"]),
    ) as client:
        client.entity_set_name("lead")  # metadata and token first: not part of the read
        gc.collect()
        tracemalloc.start()
        started = time.perf_counter()
        records = 0
        cursor = ""
        for page in client.read_changes("lead", SELECT, None, page_size=page_size):
            records += len(page.records)  # the page is dropped here: a consumer keeps only what it needs
            cursor = page.cursor
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return records, client.calls["read_changes"], cursor, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]

    running = start_emulators("--profile", "fast", "--only", "dataverse")
    try:
        print(f"page size {args.page_size}; columns: {', '.join(SELECT)}")
        header = (
            f"{'N':>9} {'read':>9} {'calls':>6} {'ceil(N/p)':>9} {'logged':>6} {'peak MiB':>9} {'maxrss MiB':>10} "
            f"{'seconds':>8} {'rec/s':>8}  delta"
        )
        print(header)
        for n in sizes:
            control(running, "POST", "/reset")
            control(running, "POST", "/seed", table="lead", count=n, fast=True)
            control(running, "DELETE", "/requests")
            records, calls, cursor, seconds, peak = read_everything(running, args.page_size)
            logged = control(running, "GET", "/requests?entries=0")["by_operation"].get("RetrieveEntityChanges", 0)
            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{n:>9,} {records:>9,} {calls:>6} {math.ceil(n / args.page_size):>9} {logged:>6} "
                f"{peak / 2**20:>9.1f} {maxrss:>10.1f} {seconds:>8.1f} {records / seconds:>8,.0f}  "
                f"{'deltaLink' if '$deltatoken=' in cursor else 'NO deltaLink'}",
                flush=True,
            )
    finally:
        running.stop()


if __name__ == "__main__":
    main()
