"""Throughput of the Marketo emulator itself (it must never be the bottleneck of the sync's benchmarks).

Raw `requests` over HTTPS against `python -m emulators --only marketo` (fast profile) in a subprocess. Prints numbers;
asserts nothing about time.

    .venv/bin/python bench/bench_marketo_emulator.py [--count 100000] [--threads 4]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulators.marketo.seed import fast_persons
from emulators.process import RunningEmulators, start_emulators
from sync.connectors.http import build_session


class Client:
    def __init__(self, running: RunningEmulators) -> None:
        self.running = running
        self.base = running.base_url("marketo")
        self.ca = running.ca_file
        self.local = build_session(Path(self.ca))
        settings = running.settings
        token = self.local.get(
            f"{self.base}/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": settings["MARKETO_CLIENT_ID"],
                "client_secret": settings["MARKETO_CLIENT_SECRET"],
            },
            verify=self.ca,
            timeout=30,
        ).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def session(self) -> requests.Session:
        session = build_session(Path(self.ca))  # pinned trust: REQUESTS_CA_BUNDLE cannot override it
        session.headers.update(self.headers)
        return session

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.running.control("marketo", method, path, **kwargs).json()


def report(name: str, records: int, calls: int, seconds: float) -> None:
    print(
        f"{name:<44} {records:>8} records {calls:>6} calls {seconds:8.2f} s "
        f"{records / seconds:>10,.0f} records/s {calls / seconds:>8,.1f} calls/s"
    )


def sync_all(client: Client, records: list[dict[str, Any]], threads: int) -> int:
    batches = [records[i : i + 300] for i in range(0, len(records), 300)]

    def work(chunk: list[list[dict[str, Any]]]) -> int:
        session = client.session()
        for batch in chunk:
            body = session.post(f"{client.base}/rest/v1/leads.json", json={"input": batch}, timeout=120).json()
            assert body["success"], body
            assert all(item["status"] in ("created", "updated") for item in body["result"]), body["result"][:3]
        return len(chunk)

    chunks = [batches[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(work, chunks))


def bench_rest(client: Client, count: int, threads: int) -> None:
    people = list(fast_persons(count, start=10_000_000))
    for workers in (1, threads):
        client.control("POST", "/reset")
        started = time.perf_counter()
        calls = sync_all(client, people, workers)
        report(f"sync leads create, 300/call, {workers} thread(s)", count, calls, time.perf_counter() - started)
    changed = [{"email": person["email"], "title": "Chief Benchmark Officer"} for person in people]
    started = time.perf_counter()
    calls = sync_all(client, changed, threads)
    report(f"sync leads update, 300/call, {threads} thread(s)", count, calls, time.perf_counter() - started)

    session = client.session()
    emails = [person["email"] for person in people[: min(count, 30_000)]]
    started = time.perf_counter()
    calls = 0
    for i in range(0, len(emails), 300):
        body = session.post(
            f"{client.base}/rest/v1/leads.json?_method=GET",
            data={"filterType": "email", "filterValues": ",".join(emails[i : i + 300]), "fields": "email,title"},
            timeout=60,
        ).json()
        assert len(body["result"]) == len(emails[i : i + 300])
        calls += 1
    report("get leads by email, 300/call, 1 thread", len(emails), calls, time.perf_counter() - started)

    token = session.get(
        f"{client.base}/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": "2000-01-01T00:00:00Z"}
    ).json()["nextPageToken"]
    started = time.perf_counter()
    calls = changes = 0
    while True:
        body = session.get(
            f"{client.base}/rest/v1/activities/leadchanges.json",
            params={"nextPageToken": token, "fields": "title,email", "batchSize": 300},
            timeout=60,
        ).json()
        calls += 1
        changes += len(body["result"])
        token = body["nextPageToken"]
        if not body["moreResult"]:
            break
    report("lead changes paging, 300/page, 1 thread", changes, calls, time.perf_counter() - started)


def bench_seed(client: Client, count: int) -> None:
    client.control("POST", "/reset")
    started = time.perf_counter()
    client.control("POST", "/seed", json={"count": count, "fast": True, "days": 20})
    report("seed control (fast generator)", count, 1, time.perf_counter() - started)


def wait(session: requests.Session, url: str, done: set[str], calls: list[int]) -> dict[str, Any]:
    while True:
        calls[0] += 1
        status = session.get(url, timeout=60).json()["result"][0]
        if status["status"] in done:
            return status
        time.sleep(0.05)


def bench_bulk(client: Client, count: int) -> None:
    client.control("POST", "/reset")
    # Measure what the emulator can do, not its simulated pace: no start-up delay, no rows-per-second cap.
    client.control(
        "PATCH", "/config", json={"bulk_min_seconds": 0, "bulk_pickup_seconds": 0, "bulk_rows_per_second": 1e9}
    )
    session = client.session()
    fields = ["email", "firstName", "lastName", "company", "title", "phone", "city", "country"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for person in fast_persons(count, start=20_000_000):
        writer.writerow([person.get(name) or "" for name in fields])
    lines = out.getvalue().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    files: list[str] = []
    current: list[str] = []
    size = 0
    for line in rows:  # files under 10 MB each
        if size + len(line) > 9_500_000:
            files.append(header + "".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    files.append(header + "".join(current))
    calls = [0]
    started = time.perf_counter()
    batch_ids = []
    for content in files:
        calls[0] += 1
        body = session.post(
            f"{client.base}/bulk/v1/leads.json",
            params={"format": "csv"},
            files={"file": ("leads.csv", content.encode(), "text/csv")},
            timeout=300,
        ).json()
        assert body["success"], body
        batch_ids.append(body["result"][0]["batchId"])
    imported = 0
    for batch_id in batch_ids:
        status = wait(session, f"{client.base}/bulk/v1/leads/batch/{batch_id}.json", {"Complete", "Failed"}, calls)
        assert status["status"] == "Complete", status
        imported += status["numOfLeadsProcessed"]
    report(
        f"bulk import ({len(files)} file(s), {sum(map(len, files)) / 1e6:.1f} MB)",
        imported,
        calls[0],
        time.perf_counter() - started,
    )

    now = client.control("GET", "/clock")["now"]
    window = {
        "startAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86400)),
        "endAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)),
    }
    calls = [0]
    started = time.perf_counter()
    job = session.post(
        f"{client.base}/bulk/v1/leads/export/create.json",
        json={"fields": ["id", *fields, "updatedAt"], "format": "CSV", "filter": {"createdAt": window}},
        timeout=60,
    ).json()["result"][0]
    session.post(f"{client.base}/bulk/v1/leads/export/{job['exportId']}/enqueue.json", timeout=60)
    calls[0] += 2
    status = wait(session, f"{client.base}/bulk/v1/leads/export/{job['exportId']}/status.json", {"Completed"}, calls)
    data = session.get(f"{client.base}/bulk/v1/leads/export/{job['exportId']}/file.json", timeout=300).content
    calls[0] += 1
    assert len(data) == status["fileSize"]
    report(
        f"bulk extract ({len(data) / 1e6:.1f} MB file)",
        status["numberOfRecords"],
        calls[0],
        time.perf_counter() - started,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    running = start_emulators("--profile", "fast", "--only", "marketo")
    try:
        client = Client(running)
        print(f"Marketo emulator at {client.base}, {args.count:,} persons")
        bench_seed(client, args.count)
        bench_rest(client, args.count, args.threads)
        bench_bulk(client, args.count)
    finally:
        running.stop()


if __name__ == "__main__":
    main()
