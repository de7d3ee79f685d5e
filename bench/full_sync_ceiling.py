"""The ceiling of a full sync: the shortest wall time the emulators' `realistic` limits allow, for bench_full_sync.py.

Pure arithmetic over the limits (read from the emulators' own configuration at run time) and a stated minimum number
of calls. Every bound assumes perfect pipelining inside one system (calls spread evenly over the allowed concurrency)
and ignores the servers' CPU time, so it is a lower bound on wall time: the `ceiling` on throughput.

Marketo:   at most `rate_calls` call starts in any rolling `rate_window_s` (the k-th call can start at
           floor(k / rate_calls) * window at the earliest), `concurrency` calls in flight, each taking
           latency_ms + per_record_ms * records; bulk jobs wait `bulk_pickup_s` in the queue, then run
           bulk_min_s + rows / bulk_rows_per_s, `bulk_running` at a time, files of at most `bulk_file_bytes`;
           an export's file is one call, latency_ms + per_record_ms * its rows (the emulator charges a file
           download per row), so the ids of a job are in hand that long after its export ends. An import's upload
           is charged per row too, but after Marketo has queued the job: it delays no import.
Dataverse: at most `requests` per rolling `window_s`, `concurrency` in flight, `latency_ms` each.

Two floors, and the ceiling is the larger one:
API floor      the arithmetic above, for the best strategy each way (its minimum calls are what the bench compares).
storage floor  the link tables' entity-group transactions a job writes (ceil(N/100) for the D rows, with snapshots,
               and the index: Marketo person ids are integers, so ceil(N/PACK_SPAN) pack rows of PACK_SPAN links,
               when the ids are consecutive, at most 100 a transaction in each of the BUCKETS buckets; see
               sync/state/links.py), each at the time it MEASURED on this machine's Azurite (written as LinkStore
               writes them, by sync.state.transactions.submit_upserts, into a table already holding N/16 rows:
               Azurite slows as a table grows, and each of a job's 16 link tables, one per side and bucket, holds
               N/16 rows on average), divided by the number
               of transactions in flight that actually helped (the best throughput over 1, 2, 4, 8, 16 at once); the
               job's own rows (the job, one task checkpoint per queue message) are a few serial point writes, added
               at the measured point-write time. Not counted: link reads (a fresh job reads none), the queue.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync.state.links import BUCKETS, PACK_SPAN, pack_property

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

IMPORT_ROW_BYTES = 250  # a person row of the lead mapping in a Bulk Import CSV (10 columns), assumed
DATAVERSE_IN_VALUES = 100  # values per In() filter, as the connector sends them (URL length)
TRANSACTION_ROWS = 100  # Table Storage's limit of operations per entity-group transaction
PARALLELISMS = (1, 2, 4, 8, 16)


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


def bulk_finish_times(jobs: list[tuple[float, int]], limits: MarketoLimits) -> list[float]:
    """When each bulk job (submitted at, rows) of one kind (imports or exports: Marketo runs them in separate queues)
    finishes, `bulk_running` at a time, in the order they were submitted."""
    slots = [0.0] * max(1, limits.bulk_running)
    done = []
    for submitted, rows in sorted(jobs, key=lambda job: job[0]):
        slot = min(range(len(slots)), key=slots.__getitem__)
        begin = max(slots[slot], submitted + limits.bulk_pickup_s)
        slots[slot] = begin + limits.bulk_min_s + rows / limits.bulk_rows_per_s
        done.append(slots[slot])
    return done


def file_seconds(rows: int, limits: MarketoLimits) -> float:
    """The read of an export's file of `rows` rows: one call, charged per row like any other."""
    return (limits.latency_ms + limits.per_record_ms * rows) / 1000.0


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
    storage: StorageFloor | None = None  # set once the job's link writes and Azurite's costs are known

    @property
    def best(self) -> Strategy:
        """The fastest strategy (fewer calls break a tie): its time is the API floor."""
        return min(self.strategies, key=lambda s: (round(s.seconds, 3), s.marketo_total + s.dataverse_total))

    @property
    def fewest(self) -> Strategy:
        """The strategy of the fewest calls (Marketo's first; they are the scarce ones): the minimum calls compared."""
        return min(self.strategies, key=lambda s: (s.marketo_total, s.dataverse_total, s.seconds))

    @property
    def api_seconds(self) -> float:
        return self.best.seconds

    @property
    def seconds(self) -> float:
        """The ceiling: the larger of the API floor and the storage floor."""
        return max(self.api_seconds, self.storage.seconds if self.storage else 0.0)

    @property
    def binding(self) -> str:
        return "storage" if self.storage and self.storage.seconds > self.api_seconds else "API"

    def lines(self) -> list[str]:
        out = [f"API floor ({self.direction}, N={self.records:,}): minimum calls assumed"]
        out += [f"  - {a}" for a in self.assumptions]
        width = max(len(s.name) for s in self.strategies)
        for s in self.strategies:
            marks = ["the API floor"] * (s is self.best) + ["fewest calls"] * (s is self.fewest)
            mark = f"  <- {', '.join(marks)}" if marks else ""
            out.append(
                f"  {s.name:<{width}} {s.seconds:8.1f} s   Marketo {s.marketo_total:>5} calls {s.marketo_calls}   "
                f"Dataverse {s.dataverse_total:>5} {s.dataverse_calls}{mark}"
            )
            out += [f"      {note}" for note in s.notes]
        out.append(f"  API floor: {self.api_seconds:.1f} s ({self.best.name})")
        if self.storage is not None:
            out.append(
                f"storage floor: {self.storage.seconds:.1f} s for {self.storage.links:,} links "
                f"({self.storage.d_transactions + self.storage.m_transactions:,} link transactions + "
                f"{self.storage.job_writes} job rows)"
            )
            out += [f"  {note}" for note in self.storage.notes]
        per_hour = self.records / self.seconds * 3600 if self.seconds else float("inf")
        out.append(
            f"ceiling = max(floors) = {self.seconds:.1f} s ({self.binding} binds) = {per_hour:,.0f} records/hour"
        )
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
    extracted = bulk_seconds([n], mk, submitted_at=imported) + file_seconds(n, mk)  # the ids, by one export
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
            f"{imported:.1f} s, the export of {n:,} rows read by {extracted:.1f} s"
        ],
    )
    # The job-level match index: ONE Bulk Extract of every person's id, e-mail and link fields at the job's start
    # (Marketo is empty here: 0 rows) replaces the per-batch e-mail lookups; each import file starts once the index
    # is in hand, and each import unit's new ids come back by an export of its own, submitted when it finishes.
    index_done = bulk_finish_times([(0.0, 0)], mk)[0] + file_seconds(0, mk)
    imports_done = bulk_finish_times([(index_done, rows) for rows in jobs], mk)
    exports_done = bulk_finish_times(list(zip(imports_done, jobs, strict=True)), mk)
    ids_read = [done + file_seconds(rows, mk) for done, rows in zip(exports_done, jobs, strict=True)]
    indexed_done = max(ids_read, default=index_done)
    indexed_calls = {
        "match index export (create, enqueue, status, file)": 4,
        "bulk import create + 1 status": 2 * len(jobs),
        "export for ids per import unit (4 each)": 4 * len(jobs),
    }
    indexed = Strategy(
        "Bulk Import + job-level match index",
        max(marketo_rest_seconds([(sum(indexed_calls.values()), 1)], mk), indexed_done, dv_time),
        indexed_calls,
        dv_calls,
        [
            f"match index (an empty Marketo: 0 rows) at {index_done:.1f} s; {len(jobs)} import job(s) done at "
            f"{', '.join(f'{t:.1f}' for t in imports_done)} s; their id exports at "
            f"{', '.join(f'{t:.1f}' for t in exports_done)} s, their files read by "
            f"{', '.join(f'{t:.1f}' for t in ids_read)} s (imports and exports queue apart, "
            f"{mk.bulk_running} running of each)"
        ],
    )
    assumptions = [
        f"Dataverse: ceil(N/{dv.page}) change-tracking pages (a one-way job writes nothing to Dynamics)",
        f"Marketo matching, one of: ceil(N/{mk.batch}) get_leads by e-mail (Marketo may hold these people already; "
        "ambiguous matches must be seen; link-field lookups counted as avoidable), or a job-level match index: ONE "
        "Bulk Extract of id, e-mail and link fields at the job's start (4 calls; on this empty Marketo it holds 0 "
        "rows, on a full one its file grows with the persons Marketo holds and takes longer)",
        f"Marketo writes, the cheaper of: ceil(N/{mk.batch}) sync_leads (ids come back), or Bulk Import files of "
        f"<= {mk.bulk_file_bytes / 2**20:.0f} MB (~{IMPORT_ROW_BYTES} B/row; create + one status poll each, "
        "pipelined) with the new ids read back by bulk export: one for all, or one per import unit (4 calls each; "
        f"a file's read is charged {mk.per_record_ms} ms a row)",
        "the ceiling is the fastest strategy; the minimum calls compared are the fewest of any strategy (the "
        "match-index one); perfect pipelining across pages and systems; servers' CPU time not counted",
    ]
    return Ceiling("Dynamics -> Marketo", n, assumptions, [rest, bulk, indexed])


def to_dynamics(n: int, windows: int, mk: MarketoLimits, dv: DataverseLimits) -> Ceiling:
    """N Marketo persons (syncToDynamics) spread over `windows` export windows into an empty Dataverse, by a one-way
    job (it writes to Dynamics only)."""
    per_window = [n // windows + (1 if i < n % windows else 0) for i in range(windows)] if windows else []
    extracted = bulk_seconds(per_window, mk) + (file_seconds(per_window[-1], mk) if per_window else 0.0)
    in_calls = math.ceil(n / DATAVERSE_IN_VALUES)
    dv_calls = {
        "UpsertMultiple": math.ceil(n / dv.write_chunk),
        f"find_by e-mail (In() of {DATAVERSE_IN_VALUES})": in_calls,
    }
    dv_time = dataverse_seconds(sum(dv_calls.values()), dv)
    reads = {"paging token + oldest-person probe": 2, "export (create, enqueue, status, file) per window": 4 * windows}

    def export_seconds(dataverse: float) -> float:
        # A window's rows can be written as soon as its file is ready: after the last export, its rows remain.
        return max(
            marketo_rest_seconds([(sum(reads.values()), 1)], mk), extracted + dataverse / max(1, windows), dataverse
        )

    export = Strategy(
        "Bulk Extract + UpsertMultiple",
        export_seconds(dv_time),
        reads,
        dv_calls,
        [
            f"{windows} export window(s) of ~{per_window[-1] if per_window else 0:,} rows, the last file read by "
            f"{extracted:.1f} s "
            f"({mk.bulk_running} at once); Dataverse {dv_time:.1f} s in all"
        ],
    )
    by_id = {
        "paging token + oldest-person probe": 2,
        "newest New Lead (paging token + a page) + probe above it": 3,
        "get_leads by id": math.ceil(n / mk.batch),
    }

    def rest_seconds(dataverse: float) -> float:
        return max(marketo_rest_seconds([(5, 1), (by_id["get_leads by id"], mk.batch)], mk), dataverse)

    rest = Strategy(
        "REST by id range + UpsertMultiple",
        rest_seconds(dv_time),
        by_id,
        dv_calls,
        ["when the ids are dense and the newest New Lead activity is recent (else the export is the only way)"],
    )
    # The Dataverse side of a job-level match index (sync/engine/dynamics_index.py): ONE paged read of
    # the leads' id, e-mail and link column at the job's start (an empty Dataverse: one page) instead of the lookups.
    indexed_dv = {"UpsertMultiple": dv_calls["UpsertMultiple"], "match index: leads' id, e-mail, link (1 page)": 1}
    indexed_time = dataverse_seconds(sum(indexed_dv.values()), dv)
    indexed = [
        Strategy(
            f"{base.name} + Dataverse match index",
            seconds(indexed_time),
            base.marketo_calls,
            indexed_dv,
            ["the index is read at each queue message's start (one message here); only matches are read whole"],
        )
        for base, seconds in ((export, export_seconds), (rest, rest_seconds))
    ]
    assumptions = [
        f"Marketo reads, the cheaper of: per <= {mk.export_max_days}-day window one export job (create, enqueue, one "
        f"status poll, one file read), or ceil(N/{mk.batch}) get_leads by id over a proved id range; both after a "
        "paging token and one probe for the oldest person; a one-way job writes nothing to Marketo",
        f"Dataverse: ceil(N/{dv.write_chunk}) UpsertMultiple on the new_marketopersonid alternate key, "
        f"ceil(N/{DATAVERSE_IN_VALUES}) e-mail lookups for matching (In() filters of {DATAVERSE_IN_VALUES}); they "
        f"cannot bind under {dv.requests:,} / {dv.window_s:.0f} s and {dv.concurrency} concurrent; or, instead of "
        "the lookups, a Dataverse match index (one paged read of the leads at each message's start)",
        "a window's writes start when its export file is ready; perfect pipelining; servers' CPU time not counted; "
        "the ceiling is the fastest strategy, the minimum calls compared are the fewest of any (Marketo's first)",
    ]
    return Ceiling("Marketo -> Dynamics", n, assumptions, [export, rest, *indexed])


# --- the storage floor: the link table on this machine's Azurite -----------------------------------------------------
@dataclass(frozen=True)
class TransactionTiming:
    kind: str  # "D" (link rows with the snapshot), "M" (index rows), "P" (index packs, merged); "D library": D rows
    # by submit_transaction
    parallelism: int
    transactions: int
    seconds: float  # wall time for all of them

    @property
    def ms_each(self) -> float:
        """Mean time of one transaction, as one of `parallelism` in flight."""
        return self.seconds * 1000.0 * self.parallelism / self.transactions

    @property
    def per_second(self) -> float:
        return self.transactions / self.seconds if self.seconds else float("inf")


@dataclass
class StorageCosts:
    """What Azurite measured here: entity-group transactions of 100 upserts at each parallelism, and point writes."""

    timings: list[TransactionTiming]
    point_write_ms: float
    snapshot_chars: int
    measure_seconds: float
    table_rows: int = 0  # rows the table already held while the times were taken (Azurite slows as a table grows)

    def best(self, kind: str) -> TransactionTiming:
        return max((t for t in self.timings if t.kind == kind), key=lambda t: t.per_second)

    def lines(self) -> list[str]:
        in_flight = sorted({t.parallelism for t in self.timings})
        out = [
            f"Azurite on this machine ({self.measure_seconds:.1f} s to measure): entity-group transactions of "
            f"{TRANSACTION_ROWS} upserts, ms each (transactions/s) with {', '.join(map(str, in_flight))} in flight, "
            f"on a table already holding {self.table_rows:,} rows; point write {self.point_write_ms:.1f} ms"
        ]
        kinds = (
            ("D", f"D rows (snapshot {self.snapshot_chars:,} chars)"),
            ("M", "M rows (index)"),
            ("P", f"index packs ({PACK_SPAN} links, merged)"),
            ("D library", "D rows, library's own body"),
        )
        for kind, label in kinds:
            if not any(t.kind == kind for t in self.timings):
                continue
            best = self.best(kind)
            cells = "  ".join(
                f"{t.parallelism:>2}: {t.ms_each:6.1f} ms ({t.per_second:5.1f}/s)"
                for t in self.timings
                if t.kind == kind
            )
            out.append(f"  {label:<30} {cells}   best at {best.parallelism} in flight")
        return out


def lead_like_snapshot(field_keys: Sequence[str], value_chars: int = 16) -> dict[str, Any]:
    """A snapshot of the mapping's size: every synced field with a value of `value_chars` characters."""
    return {key: f"{key}-{'x' * value_chars}"[:value_chars] for key in field_keys}


def measure_transactions(
    service: TableServiceClient,
    snapshot: dict[str, Any],
    parallelisms: Sequence[int] = PARALLELISMS,
    rounds: int = 2,
    at_least: int = 4,
    write: Callable[[Any, list[dict[str, Any]]], None] | None = None,
    table_rows: int = 0,
) -> StorageCosts:
    """Time entity-group transactions of 100 link-like upserts (as LinkStore.save writes them: one partition per
    side, upsert-replace, by `sync.state.transactions.submit_upserts`) on a scratch table, at each parallelism:
    `rounds` transactions per thread (`at_least` in all), all threads submitting at once. Also the library's own
    `submit_transaction` at 4 in flight (what LinkStore used before; its client CPU bound the floor), and the mean of
    10 serial point upserts. The table is dropped afterwards. `write(table, rows)` replaces submit_upserts (tests).

    `table_rows`: the table is first filled with that many D-like rows (in one partition, as a link table holds one
    per entity; 16 transactions at once), because Azurite's upserts slow as a table grows (a 5,000-link save: ~1 s
    into a new table, ~2.5 s into one of 240,000 rows, here); the bench fills it to a link table's mean over a job."""
    from azure.data.tables import UpdateMode

    from sync.state.transactions import submit_upserts

    started = time.perf_counter()
    name = f"benchfloor{uuid.uuid4().hex[:10]}"
    table = service.create_table_if_not_exists(name)
    text = json.dumps(snapshot, sort_keys=True)
    serial = iter(range(10**9))

    def rows(kind: str) -> list[dict[str, Any]]:
        out = []
        for _ in range(TRANSACTION_ROWS):
            key = f"{next(serial):012d}"
            row: dict[str, Any] = {
                "PartitionKey": f"floor|{kind}",
                "RowKey": key,
                "Entity": "lead",
                "DynamicsId": str(uuid.uuid4()),
                "MarketoId": key,
            }
            if kind == "D":
                row |= {"Snapshot": text, "SyncedAt": datetime.now(UTC)}
            if kind == "P":  # an index pack row as LinkStore.save merges it: a link a property
                row = {"PartitionKey": row["PartitionKey"], "RowKey": key, "Entity": "lead", "Pack": key}
                row |= {pack_property(str(int(key) * PACK_SPAN + n)): str(uuid.uuid4()) for n in range(PACK_SPAN)}
            out.append(row)
        return out

    def lean(batch: list[dict[str, Any]]) -> None:
        merge = batch[0]["PartitionKey"] == "floor|P"  # the packs are merged (insert-or-merge), as LinkStore does
        (write or submit_upserts)(table, batch, **({"merge": True} if merge else {}))

    def library(batch: list[dict[str, Any]]) -> None:
        table.submit_transaction([("upsert", row, {"mode": UpdateMode.REPLACE}) for row in batch])

    def timed(kind: str, label: str, parallelism: int, submit: Any) -> TransactionTiming:
        batches = [rows(kind) for _ in range(max(at_least, parallelism * rounds))]
        with ThreadPoolExecutor(parallelism) as pool:
            t0 = time.perf_counter()
            list(pool.map(submit, batches))
            seconds = time.perf_counter() - t0
        return TransactionTiming(label, parallelism, len(batches), seconds)

    def filler(index: int) -> list[dict[str, Any]]:
        count = min(TRANSACTION_ROWS, table_rows - index * TRANSACTION_ROWS)
        return [
            {"PartitionKey": "fill|lead", "RowKey": f"{index:08d}{i:03d}", "Entity": "lead", "Snapshot": text}
            for i in range(count)
        ]

    timings: list[TransactionTiming] = []
    try:
        lean(rows("D"))  # a first one opens the connection and warms Azurite up
        if table_rows > 0:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: lean(filler(i)), range(math.ceil(table_rows / TRANSACTION_ROWS))))
        t0 = time.perf_counter()
        for i in range(10):
            table.upsert_entity({"PartitionKey": "floor|job", "RowKey": f"p{i}", "Counts": text[:200]})
        point_ms = (time.perf_counter() - t0) * 100.0
        for parallelism in parallelisms:
            timings += [timed(kind, kind, parallelism, lean) for kind in ("D", "M", "P")]
        timings.append(timed("D", "D library", 4, library))
    finally:
        service.delete_table(name)
    return StorageCosts(timings, point_ms, len(text), time.perf_counter() - started, table_rows)


@dataclass
class StorageFloor:
    links: int
    d_transactions: int
    m_transactions: int
    job_writes: int
    seconds: float
    notes: list[str]


def storage_floor(links: int, queue_messages: int, costs: StorageCosts) -> StorageFloor:
    """The link table's share of a job that makes `links` links over `queue_messages` queue messages."""
    d = math.ceil(links / TRANSACTION_ROWS)
    packs = math.ceil(links / PACK_SPAN)  # consecutive Marketo ids (a fresh import's): their packs, over the buckets
    m = BUCKETS * math.ceil(packs / BUCKETS / TRANSACTION_ROWS) if packs >= BUCKETS else packs
    kind = "P" if any(t.kind == "P" for t in costs.timings) else "M"
    best_d, best_m = costs.best("D"), costs.best(kind)
    job_writes = 2 + queue_messages  # the job row at its start and end, a task checkpoint per message
    seconds = d / best_d.per_second + m / best_m.per_second + job_writes * costs.point_write_ms / 1000.0
    notes = [
        f"{d:,} D transactions of <= {TRANSACTION_ROWS} rows + {m:,} of the {packs:,} index packs: D at "
        f"{best_d.ms_each:.0f} ms each / {best_d.parallelism} in flight = {d / best_d.per_second:.1f} s, "
        f"{'packs' if kind == 'P' else 'M'} at {best_m.ms_each:.0f} ms / "
        f"{best_m.parallelism} = {m / best_m.per_second:.1f} s; {job_writes} job/checkpoint point writes at "
        f"{costs.point_write_ms:.1f} ms = {job_writes * costs.point_write_ms / 1000:.1f} s"
    ]
    return StorageFloor(links, d, m, job_writes, seconds, notes)
