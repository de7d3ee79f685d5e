"""The ceiling of a full sync: the shortest wall time the emulators' `realistic` limits allow, for bench_full_sync.py.

Pure arithmetic over the limits (read from the emulators' own configuration at run time) and a stated minimum number
of calls. Every bound assumes perfect pipelining inside one system (calls spread evenly over the allowed concurrency)
and ignores the servers' CPU time, so it is a lower bound on wall time: the `ceiling` on throughput.

Marketo:   at most `rate_calls` call starts in any rolling `rate_window_s` (the k-th call can start at
           floor(k / rate_calls) * window at the earliest), `concurrency` calls in flight, each taking
           latency_ms + per_record_ms * records; bulk jobs wait `bulk_pickup_s` in the queue, then run
           bulk_min_s + rows / bulk_rows_per_s, `bulk_running` at a time, files of at most `bulk_file_bytes`.
Dataverse: at most `requests` per rolling `window_s`, `concurrency` in flight, `latency_ms` each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

IMPORT_ROW_BYTES = 250  # a person row of the lead mapping in a Bulk Import CSV (10 columns), assumed
DATAVERSE_IN_VALUES = 100  # values per In() filter, as the connector sends them (URL length)


@dataclass(frozen=True)
class MarketoLimits:
    rate_calls: int
    rate_window_s: float
    concurrency: int
    latency_ms: float
    per_record_ms: float
    batch: int
    bulk_pickup_s: float
    bulk_min_s: float
    bulk_rows_per_s: float
    bulk_running: int
    bulk_file_bytes: int
    export_max_days: int
    daily_quota: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MarketoLimits:
        """From the Marketo emulator's GET /_emulator/config."""
        return cls(
            rate_calls=int(config["rate_limit_calls"]),
            rate_window_s=float(config["rate_limit_window_s"]),
            concurrency=int(config["max_concurrency"]),
            latency_ms=float(config["latency_ms"]),
            per_record_ms=float(config["latency_per_record_ms"]),
            batch=int(config["max_batch"]),
            bulk_pickup_s=float(config["bulk_pickup_seconds"]),
            bulk_min_s=float(config["bulk_min_seconds"]),
            bulk_rows_per_s=float(config["bulk_rows_per_second"]),
            bulk_running=int(config["bulk_max_running"]),
            bulk_file_bytes=int(config["max_bulk_body_bytes"]),
            export_max_days=int(config["export_max_days"]),
            daily_quota=int(config["daily_quota"]),
        )

    def describe(self) -> str:
        rate = f"{self.rate_calls} calls / {self.rate_window_s:.0f} s" if self.rate_calls else "no rate limit"
        return (
            f"Marketo: {rate}, {self.concurrency or 'unlimited'} concurrent, {self.latency_ms:g} ms + "
            f"{self.per_record_ms:g} ms/record per call, {self.batch} records per call; bulk jobs: "
            f"{self.bulk_pickup_s:g} s in the queue, then {self.bulk_min_s:g} s + rows / {self.bulk_rows_per_s:,.0f} "
            f"per s, {self.bulk_running} at once, files <= {self.bulk_file_bytes / 2**20:.0f} MB; "
            f"daily quota {self.daily_quota or 'none'}"
        )


@dataclass(frozen=True)
class DataverseLimits:
    requests: int
    window_s: float
    concurrency: int
    latency_ms: float
    enabled: bool
    page: int = 5000
    write_chunk: int = 1000

    @classmethod
    def from_controls(cls, limits: dict[str, Any], faults: dict[str, Any]) -> DataverseLimits:
        """From the Dataverse emulator's GET /_emulator/limits and GET /_emulator/faults."""
        return cls(
            requests=int(limits["requests"]),
            window_s=float(limits["window_seconds"]),
            concurrency=int(limits["concurrent"]),
            latency_ms=float(faults.get("latency_ms") or 0.0),
            enabled=bool(limits["enabled"]),
        )

    def describe(self) -> str:
        protection = (
            f"{self.requests:,} requests / {self.window_s:.0f} s, {self.concurrency} concurrent"
            if self.enabled
            else "no service protection"
        )
        return f"Dataverse: {protection}, {self.latency_ms:g} ms per request"


# --- bounds ----------------------------------------------------------------------------------------------------------
def marketo_rest_seconds(calls: list[tuple[int, int]], limits: MarketoLimits) -> float:
    """Shortest time for REST calls given as (count, records per call): the rate window or the concurrency-limited
    latency, whichever binds."""
    count = sum(n for n, _ in calls)
    if count == 0:
        return 0.0
    rate = math.floor((count - 1) / limits.rate_calls) * limits.rate_window_s if limits.rate_calls else 0.0
    busy = sum(n * (limits.latency_ms + limits.per_record_ms * records) for n, records in calls) / 1000.0
    return max(rate, busy / max(1, limits.concurrency or count))


def bulk_seconds(rows_per_job: list[int], limits: MarketoLimits, submitted_at: float = 0.0) -> float:
    """When the last of these bulk jobs (all submitted at `submitted_at`) finishes, `bulk_running` at a time."""
    if not rows_per_job:
        return submitted_at
    slots = [submitted_at + limits.bulk_pickup_s] * max(1, limits.bulk_running)
    for rows in rows_per_job:
        slot = min(range(len(slots)), key=slots.__getitem__)
        slots[slot] += limits.bulk_min_s + rows / limits.bulk_rows_per_s
    return max(slots)


def import_jobs(rows: int, row_bytes: int, limits: MarketoLimits) -> list[int]:
    """Rows per Bulk Import job when `rows` rows of `row_bytes` are cut into files of at most bulk_file_bytes."""
    per_file = max(1, limits.bulk_file_bytes // row_bytes)
    jobs = math.ceil(rows / per_file) if rows else 0
    return [len(range(i, min(rows, i + per_file))) for i in range(0, jobs * per_file, per_file)]


def dataverse_seconds(requests: int, limits: DataverseLimits) -> float:
    if requests == 0:
        return 0.0
    rate = math.floor((requests - 1) / limits.requests) * limits.window_s if limits.enabled else 0.0
    return max(rate, requests * limits.latency_ms / 1000.0 / (limits.concurrency if limits.enabled else 52))


# --- the two directions ----------------------------------------------------------------------------------------------
@dataclass
class Strategy:
    name: str
    seconds: float
    marketo_calls: dict[str, int]
    dataverse_calls: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def marketo_total(self) -> int:
        return sum(self.marketo_calls.values())

    @property
    def dataverse_total(self) -> int:
        return sum(self.dataverse_calls.values())


@dataclass
class Ceiling:
    direction: str
    records: int
    assumptions: list[str]
    strategies: list[Strategy]

    @property
    def best(self) -> Strategy:
        return min(self.strategies, key=lambda s: s.seconds)

    @property
    def seconds(self) -> float:
        return self.best.seconds

    def lines(self) -> list[str]:
        out = [f"ceiling ({self.direction}, N={self.records:,}): minimum calls assumed"]
        out += [f"  - {a}" for a in self.assumptions]
        for s in self.strategies:
            mark = "  <- the ceiling" if s is self.best else ""
            out.append(
                f"  {s.name:<34} {s.seconds:8.1f} s   Marketo {s.marketo_total:>5} calls {s.marketo_calls}   "
                f"Dataverse {s.dataverse_total:>5} {s.dataverse_calls}{mark}"
            )
            out += [f"      {note}" for note in s.notes]
        best = self.best
        per_hour = self.records / best.seconds * 3600 if best.seconds else float("inf")
        out.append(f"  ceiling: {best.seconds:.1f} s = {per_hour:,.0f} records/hour")
        return out


def to_marketo(n: int, mk: MarketoLimits, dv: DataverseLimits) -> Ceiling:
    """N Dynamics leads into an empty Marketo by a one-way job (it writes to Marketo only)."""
    batches = math.ceil(n / mk.batch)
    dv_calls = {"read_changes": math.ceil(n / dv.page)}
    dv_time = dataverse_seconds(sum(dv_calls.values()), dv)
    lookups = (batches, mk.batch)
    rest = Strategy(
        "REST sync_leads",
        max(marketo_rest_seconds([lookups, (batches, mk.batch)], mk), dv_time),
        {"get_leads by email": batches, "sync_leads (ids come back)": batches},
        dv_calls,
    )
    jobs = import_jobs(n, IMPORT_ROW_BYTES, mk)
    imported = bulk_seconds(jobs, mk)
    extracted = bulk_seconds([n], mk, submitted_at=imported)  # the new persons' ids, by one export
    bulk_calls = {
        "get_leads by email": batches,
        "bulk import create + 1 status": 2 * len(jobs),
        "export for ids (create, enqueue, status, file)": 4,
    }
    bulk = Strategy(
        "Bulk Import + 1 export for ids",
        max(marketo_rest_seconds([lookups, (sum(bulk_calls.values()) - batches, 1)], mk), extracted, dv_time),
        bulk_calls,
        dv_calls,
        [
            f"{len(jobs)} import job(s) of <= {mk.bulk_file_bytes // IMPORT_ROW_BYTES:,} rows done at "
            f"{imported:.1f} s, the export of {n:,} rows at {extracted:.1f} s"
        ],
    )
    assumptions = [
        f"Dataverse: ceil(N/{dv.page}) change-tracking pages (a one-way job writes nothing to Dynamics)",
        f"Marketo matching: ceil(N/{mk.batch}) get_leads by e-mail (Marketo may hold these people already; ambiguous "
        "matches must be seen); link-field lookups counted as avoidable",
        f"Marketo writes, the cheaper of: ceil(N/{mk.batch}) sync_leads (ids come back), or Bulk Import files of "
        f"<= {mk.bulk_file_bytes / 2**20:.0f} MB (~{IMPORT_ROW_BYTES} B/row; create + one status poll each) with the "
        "new ids read back by one bulk export",
        "perfect pipelining across pages and systems; servers' CPU time not counted",
    ]
    return Ceiling("Dynamics -> Marketo", n, assumptions, [rest, bulk])


def to_dynamics(n: int, windows: int, mk: MarketoLimits, dv: DataverseLimits) -> Ceiling:
    """N Marketo persons (syncToDynamics) spread over `windows` export windows into an empty Dataverse, by a one-way
    job (it writes to Dynamics only)."""
    per_window = [n // windows + (1 if i < n % windows else 0) for i in range(windows)] if windows else []
    extracted = bulk_seconds(per_window, mk)
    in_calls = math.ceil(n / DATAVERSE_IN_VALUES)
    dv_calls = {
        "UpsertMultiple": math.ceil(n / dv.write_chunk),
        f"find_by e-mail (In() of {DATAVERSE_IN_VALUES})": in_calls,
    }
    dv_time = dataverse_seconds(sum(dv_calls.values()), dv)
    reads = {"paging token + oldest-person probe": 2, "export (create, enqueue, status, file) per window": 4 * windows}
    # A window's rows can be written as soon as its file is ready: after the last export, its rows remain.
    tail = dv_time / max(1, windows)
    export = Strategy(
        "Bulk Extract + UpsertMultiple",
        max(marketo_rest_seconds([(sum(reads.values()), 1)], mk), extracted + tail, dv_time),
        reads,
        dv_calls,
        [
            f"{windows} export window(s) of ~{per_window[-1] if per_window else 0:,} rows done at {extracted:.1f} s "
            f"({mk.bulk_running} at once); Dataverse {dv_time:.1f} s in all"
        ],
    )
    by_id = {
        "paging token + oldest-person probe": 2,
        "newest New Lead (paging token + a page) + probe above it": 3,
        "get_leads by id": math.ceil(n / mk.batch),
    }
    rest = Strategy(
        "REST by id range + UpsertMultiple",
        max(marketo_rest_seconds([(5, 1), (by_id["get_leads by id"], mk.batch)], mk), dv_time),
        by_id,
        dv_calls,
        ["when the ids are dense and the newest New Lead activity is recent (else the export is the only way)"],
    )
    assumptions = [
        f"Marketo reads, the cheaper of: per <= {mk.export_max_days}-day window one export job (create, enqueue, one "
        f"status poll, one file read), or ceil(N/{mk.batch}) get_leads by id over a proved id range; both after a "
        "paging token and one probe for the oldest person; a one-way job writes nothing to Marketo",
        f"Dataverse: ceil(N/{dv.write_chunk}) UpsertMultiple on the new_marketopersonid alternate key, "
        f"ceil(N/{DATAVERSE_IN_VALUES}) e-mail lookups for matching (In() filters of {DATAVERSE_IN_VALUES}); they "
        f"cannot bind under {dv.requests:,} / {dv.window_s:.0f} s and {dv.concurrency} concurrent",
        "a window's writes start when its export file is ready; perfect pipelining; servers' CPU time not counted",
    ]
    return Ceiling("Marketo -> Dynamics", n, assumptions, [export, rest])
