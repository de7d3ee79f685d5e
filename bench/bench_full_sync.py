"""Benchmark (issue 6's acceptance): the initial full sync of N persons, each way, run in-process.

For each N (default 10,000 and 100,000) and each direction, on freshly reset emulators and fresh state tables:

  to_marketo   N Dynamics leads (new_synctomkto true) seeded in Dataverse, Marketo empty; the job
               {"entities": ["lead"], "direction": "to_marketo"}.
  to_dynamics  N Marketo persons (syncToDynamics true) seeded in Marketo, created over --days days (oldest first:
               seeded week by week on the emulator's clock, as Marketo ids grow with creation time), Dataverse empty;
               the job {"entities": ["lead"], "direction": "to_dynamics"}.

Seeding goes through the emulators' controls (fast generators, neither counted nor rate-limited); then both emulators
run the chosen profile (`realistic` by default) and the job runs as the queue-triggered function would: start_full_sync,
then WorkQueue.drain with process_message, Azurite holding the state tables and the queue (what sync/fulljob.py does,
without its display). The emulators run in a subprocess; only the sync runs in this process.

Prints, per run: wall time and per-message times (the Functions timeout is 5 minutes); API calls per system from the
emulators' request logs (Dataverse: the sync app only; Marketo: identity excluded) and from the connectors' counters, by
operation; Azurite requests (Table Storage, queue); peak memory of this process (VmHWM reset per run, ru_maxrss, and
tracemalloc's peak over every 8th queue message from the 2nd: tracing all slows the sync ~2.5x); records per hour
against the native sync's ~10,000 per hour per object; the CEILING (bench/full_sync_ceiling.py): the larger of the
API floor (the profile's limits read from the emulators' own configuration, the fastest strategy; the calls are
compared with the fewest of any strategy) and the storage floor (the link tables' transactions at the times measured
on this Azurite before each N's runs: 100-row transactions with 1, 2, 4, 8, 16 in flight, on a table already holding
N/16 rows, a link table's mean size over a job, printed), and wall / max(floors);
timers around the engine's phases. A first lead job also runs the streams the leads point at (owners, teams,
companies): the lead task's counts are checked, the others shown apart. Checks the final state through uncounted
controls (counts, the link table, a sample of pairs in both systems). Asserts nothing about time. Writes only to a
temporary directory.

    .venv/bin/python bench/bench_full_sync.py --records 1000 --profile fast       # development
    .venv/bin/python bench/bench_full_sync.py                                     # 10,000 and 100,000, realistic
    .venv/bin/python bench/bench_full_sync.py --records 100000 --json out.json    # one size, numbers kept
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import random
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_probe  # helpers next to this script
import full_sync_ceiling as ceiling
from bench_incremental import Bench, bench_services, reset_peak_rss, rss_kib

from emulators.azurite import Azurite
from emulators.process import RunningEmulators
from sync.demo import salesperson_client
from sync.engine import fullsync
from sync.engine.context import SyncContext, build_context
from sync.memory import cap_malloc_arenas
from sync.settings import Settings, load_settings
from sync.state import StateStore, table_names
from sync.state import links as link_store
from sync.state.keys import encode_key
from sync.state.queue import Delivery, WorkQueue
from sync.state.tables import service_client

NATIVE_PER_HOUR = 10_000  # the native sync's published rate, per object


def _function_timeout_s() -> int:
    """host.json's functionTimeout (the Flex Consumption plan honours it), in seconds."""
    host = json.loads((Path(__file__).resolve().parent.parent / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    return hours * 3600 + minutes * 60 + seconds


@dataclass
class CpuUse:
    """CPU seconds over one run: the whole machine's (every process: Azurite, the emulators, this one) and this
    process's. Whether the wall is the APIs' waits or the machine's cores: the floors count no CPU."""

    wall: float
    machine: float
    own: float
    cores: int

    @staticmethod
    def now() -> tuple[float, float]:
        """(busy CPU seconds of the machine since boot, CPU seconds of this process)."""
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
        own = os.times()
        return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system

    @classmethod
    def since(cls, before: tuple[float, float], wall: float) -> CpuUse:
        machine, own = cls.now()
        return cls(wall, machine - before[0], own - before[1], os.cpu_count() or 1)

    def line(self) -> str:
        busy, own = self.machine / self.wall, self.own / self.wall
        return (
            f"  CPU over the wall: the machine's {self.cores} cores busy {busy:.2f} on average "
            f"({busy / self.cores:.0%}); this process {own:.2f} core; the others (Azurite, the emulators) "
            f"{max(0.0, busy - own):.2f}"
        )


FUNCTION_TIMEOUT_S = _function_timeout_s()
MEMORY_AIM_MB = 300  # the aim, in MB of 10**6 bytes (286.1 MiB); RSS is printed in MiB and MB
CEILING_AIM = 1.3
OneWay = Literal["to_marketo", "to_dynamics"]
DIRECTIONS: dict[str, OneWay] = {"to_marketo": "to_marketo", "to_dynamics": "to_dynamics"}
TERMINAL = ("succeeded", "failed", "cancelled")
DV_IDENTITY_OPS = {"token", "discovery", "keys"}
TRACE_EVERY = 8  # --tracemalloc sample: messages 1, 9, 17, ... are traced (the first one warms caches up)


# --- timers around the full sync's phases ----------------------------------------------------------------------------
TARGETS: list[tuple[str, str | None, str, str]] = [
    ("sync.engine.fullsync", None, "start_full_sync", "start_full_sync"),
    ("sync.engine.fullsync", None, "oldest_persons", "  oldest_persons (Marketo probes)"),
    ("sync.engine.fullsync_pages", None, "oldest_persons", "  oldest_persons (Marketo probes, match index)"),
    ("sync.engine.fullsync", None, "process_message", "process_message (every queue message)"),
    ("sync.engine.fullsync", None, "process_page", "  the page (process_page)"),
    ("sync.connectors.dynamics.client", "DataverseClient", "read_changes", "    Dataverse read_changes"),
    ("sync.engine.marketo_pages", None, "rest_id_range", "    Marketo id range: REST or Bulk Extract?"),
    ("sync.engine.marketo_pages", "MarketoPages", "_read_ids", "    Marketo REST reads by id"),
    ("sync.connectors.marketo.client", "MarketoClient", "start_lead_export", "    Marketo export: create+enqueue+wait"),
    ("sync.connectors.marketo.bulk_extract", "BulkExporter", "_wait", "      export status polls and sleeps"),
    ("sync.connectors.marketo.client", "MarketoClient", "lead_export_rows", "    Marketo export file, row by row"),
    ("sync.engine.pairs", "PairBuilder", "dynamics_batch", "    pairs for a Dynamics page (dynamics_batch)"),
    ("sync.engine.pairs", "PairBuilder", "marketo_batch", "    pairs for Marketo persons (marketo_batch)"),
    ("sync.engine.pairs", "PairBuilder", "links_by_dynamics_id", "      link lookups by Dynamics id (wall)"),
    ("sync.engine.pairs", "PairBuilder", "links_by_marketo_id", "      link lookups by Marketo id (wall)"),
    ("sync.state.links", "LinkStore", "get_many_by_dynamics_id", "        get_many_by_dynamics_id (thread sum)"),
    ("sync.state.links", "LinkStore", "get_many_by_marketo_id", "        get_many_by_marketo_id (thread sum)"),
    ("sync.engine.pairs", "PairBuilder", "_linked_anywhere", "      persons linked by any entity"),
    ("sync.engine.pair_matching", "PairMatcher", "match_dynamics", "      match Dynamics records (Marketo get_leads)"),
    ("sync.engine.pair_matching", "PairMatcher", "match_marketo", "      match persons (Dataverse find_by)"),
    ("sync.engine.pairs", "PairBuilder", "_plan", "      plan every pair"),
    ("sync.engine.pairs", "PairBuilder", "run_batch", "    execute + commit (run_batch)"),
    ("sync.engine.execute", "Executor", "_create_dynamics", "      Dataverse creates (UpsertMultiple + ids)"),
    ("sync.engine.execute", "Executor", "_write_marketo", "      Marketo writes"),
    ("sync.engine.fullsync", None, "run_pages", "  a run of pages in flight (run_pages)"),
    ("sync.engine.match_index", "MatchIndex", "read", "    match index (Bulk Extract of id, e-mail, links)"),
    ("sync.engine.execute", "Executor", "start", "    page start (caller): Dynamics creates, import submitted"),
    ("sync.engine.execute", "Executor", "finish", "    page finish (finisher threads, sum)"),
    ("sync.engine.execute", "Executor", "_finish_bulk_create", "        Bulk Import end + ids"),
    ("sync.engine.imported_ids", "ImportedIds", "resolve", "          imported ids (exports or link field)"),
    (
        "sync.connectors.marketo.bulk_import",
        "BulkImporter",
        "_poll_until_one_finishes",
        "          import polls+sleeps",
    ),
    ("sync.engine.execute", "Executor", "_update_dynamics", "      Dataverse updates (UpdateMultiple)"),
    ("sync.engine.execute", "Executor", "commit", "      commit links and errors"),
    ("sync.state.links", "LinkStore", "save", "        LinkStore.save"),
    ("sync.state.jobs", "JobStore", "get", "JobStore.get (job + tasks)"),
    ("sync.state.jobs", "JobStore", "save_task", "JobStore.save_task"),
    ("sync.state.queue", "WorkQueue", "send", "WorkQueue.send"),
    ("sync.connectors.marketo.client", "MarketoClient", "get_leads", "MarketoClient.get_leads (anywhere)"),
    ("sync.connectors.marketo.client", "MarketoClient", "sync_leads", "MarketoClient.sync_leads (anywhere)"),
    ("sync.connectors.dynamics.client", "DataverseClient", "find_by_any", "DataverseClient.find_by_any (lookups)"),
    ("sync.connectors.dynamics.client", "DataverseClient", "get_by_ids", "DataverseClient.get_by_ids"),
    ("sync.connectors.dynamics.client", "DataverseClient", "upsert_multiple", "DataverseClient.upsert_multiple"),
    ("sync.connectors.dynamics.client", "DataverseClient", "_resolve_ids", "  ids read back by alternate key"),
    ("sync.connectors.dynamics.client", "DataverseClient", "update_multiple", "DataverseClient.update_multiple"),
]


# --- Azurite requests (Table Storage and the queue), counted at the Azure SDK's HTTP transport ------------------------
class AzuriteCounter:
    def __init__(self, ports: dict[str, int]) -> None:
        self.services = {port: name for name, port in ports.items()}
        self.counts: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def install(self) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        original = RequestsTransport.send
        counter = self

        def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(transport, request, **kwargs)
            finally:
                counter.add(request.method, request.url, time.perf_counter() - started)

        RequestsTransport.send = send

    def add(self, method: str, url: str, seconds: float) -> None:
        kind = self.classify(method, url)
        with self.lock:
            self.counts[kind] += 1
            self.seconds[kind] += seconds

    def classify(self, method: str, url: str) -> str:
        parts = urlparse(url)
        service = self.services.get(parts.port or 0, "other")
        path, query = parts.path, parts.query
        if service == "table":
            if path.endswith("$batch"):
                return "table: transaction ($batch)"
            if method == "GET" and "$filter" in query:
                return "table: query"
            if "(PartitionKey=" in path:
                return f"table: {method} entity"
            return f"table: {method} {path.rsplit('/', 1)[-1].split('(')[0] or '/'}"
        if service == "queue":
            if path.endswith("/messages"):
                return {"POST": "queue: send", "GET": "queue: receive"}.get(method, f"queue: {method} messages")
            if "/messages/" in path:
                return {"DELETE": "queue: delete", "PUT": "queue: update"}.get(method, f"queue: {method} message")
            return f"queue: {method} {query.split('&')[0] if query else 'queue'}"
        return f"{service}: {method}"

    def snapshot(self) -> tuple[Counter[str], dict[str, float]]:
        with self.lock:
            return Counter(self.counts), dict(self.seconds)


# --- one run ---------------------------------------------------------------------------------------------------------
@dataclass
class MessageTime:
    phase: str
    page: int
    seconds: float
    page_seconds: float  # inside _process_page (the rest is job/task reads, checkpoint, enqueue)
    outcome: str
    traced_peak: int | None = None  # tracemalloc's peak over this message, when it was traced
    rss_kib: int = 0  # this process's RSS after the message


@dataclass
class Run:
    direction: OneWay
    records: int
    profile: str
    wall: float = 0.0
    job_id: str = ""
    job_state: str = ""
    job_error: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    messages: list[MessageTime] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dv_log: dict[str, Any] = field(default_factory=dict)
    mk_log: dict[str, Any] = field(default_factory=dict)
    dv_counter: Counter[str] = field(default_factory=Counter)
    mk_counter: Counter[str] = field(default_factory=Counter)
    azurite: Counter[str] = field(default_factory=Counter)
    azurite_seconds: dict[str, float] = field(default_factory=dict)
    mk_window_wait: float = 0.0
    mk_peak_concurrency: int = 0
    rss_before_kib: int = 0
    rss_peak_kib: int = 0
    rss_after_kib: int = 0
    maxrss_kib: int = 0
    traced_peak: int = 0
    cpu: CpuUse | None = None
    phases: dict[str, engine_probe.Phase] = field(default_factory=dict)
    profile_text: str = ""
    ceiling: ceiling.Ceiling | None = None
    seed_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    links_free: bool = False  # --links-free: the lead links were not written (a diagnostic run)
    checked: str = ""

    @property
    def dv_calls(self) -> int:
        return sum(n for op, n in self.dv_log.get("by_operation", {}).items() if op not in DV_IDENTITY_OPS)

    @property
    def dv_identity(self) -> int:
        return sum(n for op, n in self.dv_log.get("by_operation", {}).items() if op in DV_IDENTITY_OPS)

    @property
    def mk_calls(self) -> int:
        return int(self.mk_log.get("api_calls", 0))

    @property
    def tracing_overhead(self) -> float:
        """Seconds the traced messages took beyond the mean of their untraced neighbours (an estimate)."""
        extra = 0.0
        for i, message in enumerate(self.messages):
            if message.traced_peak is None:
                continue
            near = [
                m.seconds
                for m in self.messages[max(0, i - 1) : i + 2]
                if m.traced_peak is None and m.phase == message.phase
            ]
            if near:
                extra += max(0.0, message.seconds - sum(near) / len(near))
        return extra

    @property
    def per_hour(self) -> float:
        return self.records / self.wall * 3600 if self.wall else 0.0

    @property
    def ratio(self) -> float:
        return self.wall / self.ceiling.seconds if self.ceiling and self.ceiling.seconds else float("inf")

    def summary(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "records": self.records,
            "profile": self.profile,
            "wall_s": round(self.wall, 2),
            "tracing_overhead_s": round(self.tracing_overhead, 2),
            "job_state": self.job_state,
            "tasks": self.tasks,
            "messages": len(self.messages),
            "max_message_s": round(max((m.seconds for m in self.messages), default=0.0), 2),
            "message_s": [round(m.seconds, 1) for m in self.messages],
            "rss_after_message_mib": [round(m.rss_kib / 1024) for m in self.messages],
            "dataverse_calls": self.dv_calls,
            "dataverse_by_operation": self.dv_log.get("by_operation", {}),
            "marketo_calls": self.mk_calls,
            "marketo_by_endpoint": self.mk_log.get("by_endpoint", {}),
            "marketo_codes": self.mk_log.get("by_code", {}),
            "connector_dynamics": dict(self.dv_counter),
            "connector_marketo": dict(self.mk_counter),
            "azurite": dict(self.azurite),
            "marketo_window_wait_s": round(self.mk_window_wait, 2),
            "rss_peak_mib": round(self.rss_peak_kib / 1024, 1),
            "rss_before_mib": round(self.rss_before_kib / 1024, 1),
            "maxrss_mib": round(self.maxrss_kib / 1024, 1),
            "tracemalloc_peak_mib": round(self.traced_peak / 2**20, 1),
            "cpu_machine_s": round(self.cpu.machine, 1) if self.cpu else None,
            "cpu_this_process_s": round(self.cpu.own, 1) if self.cpu else None,
            "records_per_hour": round(self.per_hour),
            "ceiling_s": round(self.ceiling.seconds, 2) if self.ceiling else None,
            "api_floor_s": round(self.ceiling.api_seconds, 2) if self.ceiling else None,
            "storage_floor_s": round(self.ceiling.storage.seconds, 2)
            if self.ceiling and self.ceiling.storage
            else None,
            "ratio_to_ceiling": round(self.ratio, 2),
            "phases": {k: {"calls": v.calls, "seconds": round(v.seconds, 2)} for k, v in self.phases.items()},
            "problems": self.problems,
            "links_free": self.links_free,
        }


@dataclass
class Harness:
    args: argparse.Namespace
    emulators: RunningEmulators
    azurite: Azurite
    tmp: Path
    probe: engine_probe.Probe | None
    counter: AzuriteCounter
    storage: ceiling.StorageCosts | None = None  # Azurite's transaction times, measured for each N before its runs
    last_run_end: float = 0.0

    def control(self, emulator: str, method: str, path: str, **kw: Any) -> Any:
        return self.emulators.control(emulator, method, path, **kw).json()

    def fresh_world(self, tag: str) -> tuple[Settings, StateStore, Bench]:
        """Reset emulators; settings with a table prefix and a queue of this run's own."""
        for name in ("dataverse", "marketo"):
            self.control(name, "POST", "/reset")
        prefix = f"bf{tag}{uuid.uuid4().hex[:6]}"
        directory = self.tmp / prefix
        directory.mkdir()
        env_file = self.emulators.sync_env_file(directory, self.azurite.connection_string, prefix)
        with env_file.open("a") as extra:
            extra.write(f"SYNC_FULL_SYNC_QUEUE=q{prefix.lower()}\n")
        settings = load_settings(env_file)
        state = StateStore(service_client(self.azurite.connection_string), prefix=settings.sync_table_prefix)
        sales = salesperson_client(self.emulators, settings)
        return settings, state, Bench(self.emulators, settings, state, sales, directory)

    def limits(self) -> tuple[ceiling.MarketoLimits, ceiling.DataverseLimits]:
        mk = ceiling.MarketoLimits.from_config(self.control("marketo", "GET", "/config"))
        dv = ceiling.DataverseLimits.from_controls(
            self.control("dataverse", "GET", "/limits"), self.control("dataverse", "GET", "/faults")
        )
        return mk, dv


# --- seeding ---------------------------------------------------------------------------------------------------------
def seed_dynamics(h: Harness, n: int) -> None:
    seeded = h.control(
        "dataverse",
        "POST",
        "/seed",
        json={"table": "lead", "count": n, "fast": True, "values": {"new_synctomkto": True}},
    )
    if seeded["count"] != n:
        raise SystemExit(f"seeding Dataverse made {seeded['count']} leads, want {n}")


def seed_marketo(h: Harness, n: int, days: float) -> tuple[float, int]:
    """N persons marked syncToDynamics, created oldest first over `days` days: a seed call per week at the emulator's
    time, then its clock moves a week on. Returns (the emulator clock's offset in seconds, days spanned)."""
    steps = max(1, min(n, math.ceil(days / 7))) if days > 0 else 1
    step_days = days / steps if days > 0 else 0.0
    for i in range(steps):
        count = n // steps + (1 if i < n % steps else 0)
        body = {"count": count, "fast": True, "days": 0, "values": {"syncToDynamics": True}}  # with New Lead activities
        h.control("marketo", "POST", "/seed", json=body)
        if i < steps - 1 and step_days:
            h.control("marketo", "POST", "/clock/advance", json={"days": step_days})
    persons = h.control("marketo", "GET", "/stats")["persons"]
    if persons != n:
        raise SystemExit(f"seeding Marketo made {persons} persons, want {n}")
    offset = float(h.control("marketo", "GET", "/clock")["offset"])
    return offset, math.ceil(step_days * (steps - 1))


def measure_storage(azurite: Azurite, links: int) -> ceiling.StorageCosts:
    """Azurite's entity-group transaction times here, with D rows carrying a snapshot of the lead mapping's size, on
    a table holding as many rows as each link table of a job of `links` links has on average (a table per side and
    bucket: each ends with links / BUCKETS rows, a mean of half that)."""
    from sync.mapping import load_mapping

    keys = [f.key for f in load_mapping().entity("lead").synced_fields]
    snapshot = ceiling.lead_like_snapshot(keys)
    return ceiling.measure_transactions(
        service_client(azurite.connection_string), snapshot, table_rows=links // (2 * link_store.BUCKETS)
    )


# --- running the job -------------------------------------------------------------------------------------------------
def set_profile(h: Harness, profile: str) -> None:
    h.control("dataverse", "POST", "/profile", json={"profile": profile})
    h.control("marketo", "PATCH", "/config", json={"profile": profile})


def run_job(h: Harness, ctx: SyncContext, queue: WorkQueue, direction: OneWay, run: Run) -> None:
    """start_full_sync, then drain the queue in-process until the job ends (as sync/fulljob.py does)."""
    started = time.perf_counter()
    page_time = h.probe.phases if h.probe is not None else {}

    def page_seconds() -> float:
        phase = page_time.get("  the page (_process_page)")
        return phase.seconds if phase is not None else 0.0

    def handle(delivery: Delivery) -> None:
        traced = h.args.tracemalloc == "sample" and len(run.messages) % TRACE_EVERY == 1
        if traced:
            tracemalloc.start(1)
        t0, p0 = time.perf_counter(), page_seconds()
        try:
            outcome = fullsync.process_message(ctx, queue, delivery.message, delivery.dequeue_count)
        finally:
            peak = tracemalloc.get_traced_memory()[1] if traced else None
            if traced:
                tracemalloc.stop()
        took = time.perf_counter() - t0
        message = MessageTime(delivery.message.phase, delivery.message.page, took, page_seconds() - p0, outcome, peak)
        message.rss_kib = rss_kib()[0]
        run.messages.append(message)
        if h.args.progress:
            print(
                f"    [{time.perf_counter() - started:7.1f} s] {message.phase} page {message.page}: "
                f"{took:6.1f} s ({outcome}) RSS {message.rss_kib / 1024:.0f} MiB"
                + (f", traced peak {peak / 2**20:.1f} MiB" if peak is not None else ""),
                flush=True,
            )

    def failed(delivery: Delivery, exc: Exception) -> None:
        text = f"{delivery.message.phase} page {delivery.message.page} try {delivery.dequeue_count}: "
        text += f"{type(exc).__name__}: {exc}"
        run.errors.append(text)
        print(f"    !! {text}", flush=True)

    request = fullsync.FullSyncRequest(entities=["lead"], direction=direction)
    job = fullsync.start_full_sync(ctx, queue, request)
    run.job_id = job.job_id
    while True:
        handled = queue.drain(handle, visibility_timeout=FUNCTION_TIMEOUT_S * 2, on_error=failed)
        found = ctx.state.jobs.get(job.job_id)
        assert found is not None
        if found[0].state in TERMINAL:
            break
        if handled == 0:
            time.sleep(0.5)  # a message made visible again after a failure


def measure(h: Harness, n: int, direction: OneWay) -> Run:
    args = h.args
    run = Run(direction=direction, records=n, profile=args.profile, links_free=args.links_free)
    settings, state, bench = h.fresh_world(f"{direction[3]}{n}")
    t0 = time.perf_counter()
    clock_offset, days_spanned = 0.0, 0
    if direction == "to_marketo":
        seed_dynamics(h, n)
    else:
        clock_offset, days_spanned = seed_marketo(h, n, args.days)
    run.seed_seconds = time.perf_counter() - t0
    set_profile(h, args.profile)
    mk_limits, dv_limits = h.limits()
    if direction == "to_marketo":
        run.ceiling = ceiling.to_marketo(n, mk_limits, dv_limits)
    else:
        windows = max(1, math.ceil((days_spanned + 1) / mk_limits.export_max_days))
        run.ceiling = ceiling.to_dynamics(n, windows, mk_limits, dv_limits)
    print(
        f"\n[{direction} N={n:,}] seeded in {run.seed_seconds:.1f} s"
        + (f" (persons created over {days_spanned} days)" if direction == "to_dynamics" else "")
        + f"; profile {args.profile}: {mk_limits.describe()}; {dv_limits.describe()}",
        flush=True,
    )

    # A new worker process's context and queue, on the Marketo emulator's time (its clock moved while seeding).
    ctx = build_context(settings, state)
    ctx.clock = lambda: datetime.now(UTC) + timedelta(seconds=clock_offset)
    queue = WorkQueue.from_settings(settings)
    idle = 21.0 - (time.monotonic() - h.last_run_end)
    if h.last_run_end and idle > 0:
        time.sleep(idle)  # the client's own 20 s rate window starts empty, as in a new process
    bench.clear_logs()
    dv_before, mk_before = Counter(ctx.dynamics.calls), Counter(ctx.marketo.calls)
    waited_before = ctx.marketo.limits.window.waited
    az_before, az_seconds_before = h.counter.snapshot()
    if h.probe is not None:
        h.probe.reset()
    reset_peak_rss()
    run.rss_before_kib, _ = rss_kib()
    if args.tracemalloc == "all":
        tracemalloc.start(1)
    profiler = cProfile.Profile() if args.cprofile else None
    started, cpu_before = time.perf_counter(), CpuUse.now()
    if profiler is not None:
        profiler.enable()
    try:
        run_job(h, ctx, queue, direction, run)
    except Exception as exc:
        run.problems.append(f"the job raised {type(exc).__name__}: {exc}")
        print(f"  !! the job raised {type(exc).__name__}: {exc}", flush=True)
    finally:
        if profiler is not None:
            profiler.disable()
        run.wall = time.perf_counter() - started
        run.cpu = CpuUse.since(cpu_before, run.wall)
        if args.tracemalloc == "all":
            run.traced_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        else:
            run.traced_peak = max((m.traced_peak or 0 for m in run.messages), default=0)
        run.rss_after_kib, run.rss_peak_kib = rss_kib()
        run.maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        h.last_run_end = time.monotonic()
    run.dv_log = bench.dv_log()
    run.mk_log = bench.mk_log()
    run.dv_counter = Counter(ctx.dynamics.calls) - dv_before
    run.mk_counter = Counter(ctx.marketo.calls) - mk_before
    run.mk_window_wait = ctx.marketo.limits.window.waited - waited_before
    run.mk_peak_concurrency = ctx.marketo.limits.peak_concurrency
    az_after, az_seconds_after = h.counter.snapshot()
    run.azurite = az_after - az_before
    run.azurite_seconds = {k: v - az_seconds_before.get(k, 0.0) for k, v in az_seconds_after.items()}
    if h.probe is not None:
        run.phases = h.probe.snapshot()
    if profiler is not None:
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        run.profile_text = stream.getvalue()
    view = fullsync.view_job(ctx, run.job_id) if run.job_id else None
    if view is not None:
        run.job_state, run.job_error = view.state, view.error
        run.tasks = [{k: v for k, v in t.items() if not k.endswith("_at")} for t in view.tasks]
    if run.ceiling is not None and h.storage is not None:
        run.ceiling.storage = ceiling.storage_floor(n, len(run.messages), h.storage)
    verify(h, bench, state, run)
    print_run(run)
    cleanup(settings, state, queue)
    ctx.marketo.close()
    ctx.dynamics.close()
    return run


def cleanup(settings: Settings, state: StateStore, queue: WorkQueue) -> None:
    """Drop this run's tables and queues (Azurite keeps everything in memory)."""
    for name in table_names(settings.sync_table_prefix):
        state.service.delete_table(name)
    for client in (queue.queue, queue.poison):
        if client is not None:
            client.delete_queue()


@contextlib.contextmanager
def lead_links_free(entity: str = "lead") -> Any:
    """--links-free (a diagnostic): the entity's link transactions are not sent, so its link writes cost nothing and
    the wall time is the APIs' chain and the client's own work alone. Nothing is linked: never for a real sync."""
    prefix = encode_key(f"{entity}|")
    send = link_store.submit_upserts

    def free(table: Any, rows: Any, **options: Any) -> None:
        if not (rows and str(rows[0]["PartitionKey"]).startswith(prefix)):
            send(table, rows, **options)

    link_store.submit_upserts = free  # type: ignore[assignment]
    try:
        yield
    finally:
        link_store.submit_upserts = send


# --- final state -----------------------------------------------------------------------------------------------------
def verify(h: Harness, bench: Bench, state: StateStore, run: Run) -> None:
    """Counts in both systems, the link table in full, and a sample of pairs read back from both emulators."""
    n = run.records
    problems = run.problems
    if run.job_state != "succeeded":
        problems.append(f"job {run.job_state}: {run.job_error}")
    # A first lead job also syncs the streams the leads point at (owners, teams, companies: the job's other tasks);
    # the lead task(s) carry the N records, the others are shown apart and must not fail.
    lead_tasks = [t for t in run.tasks if t.get("entity") == "lead"]
    if not lead_tasks:
        problems.append(f"no lead task among the job's tasks {[t.get('entity') for t in run.tasks]}")
    for task in lead_tasks:
        if task.get("read") != n or task.get("created") != n or task.get("failed"):
            problems.append(
                f"lead task {task.get('direction')} counts read={task.get('read')} created={task.get('created')} "
                f"failed={task.get('failed')}, want {n}"
            )
    for task in run.tasks:
        if task.get("entity") != "lead" and (task.get("failed") or task.get("state") != "succeeded"):
            problems.append(
                f"upstream task {task.get('entity')} {task.get('direction')}: {task.get('state')}, "
                f"failed={task.get('failed')} {task.get('error') or ''}".rstrip()
            )
    persons = h.control("marketo", "GET", "/stats")["persons"]
    leads = h.control("dataverse", "GET", "/records/lead")["count"]
    if persons != n or leads != n:
        problems.append(f"{persons:,} Marketo persons and {leads:,} Dataverse leads, want {n:,} each")
    errors = state.errors.count("lead")
    if errors:
        messages = [e.message for e in list(state.errors.list("lead"))[:3]]
        problems.append(f"{errors} record errors, e.g. {messages}")
    rng = random.Random(6)
    dynamics_ids: set[str] = set()
    marketo_ids: set[str] = set()
    sample: list[tuple[str, str]] = []
    snapshot_chars = 0
    for number, link in enumerate(state.links.list("lead")):
        snapshot_chars += len(json.dumps(link.snapshot, sort_keys=True, default=str, ensure_ascii=False))
        dynamics_ids.add(link.dynamics_id)
        marketo_ids.add(link.marketo_id)
        pair = (link.dynamics_id, link.marketo_id)
        if len(sample) < h.args.verify_sample:
            sample.append(pair)
        elif (slot := rng.randrange(number + 1)) < len(sample):
            sample[slot] = pair
    linked = 0 if h.args.links_free else n  # --links-free stores no lead link: none is what is right
    if not (len(dynamics_ids) == len(marketo_ids) == linked):
        problems.append(f"links: {len(dynamics_ids):,} Dynamics ids, {len(marketo_ids):,} Marketo ids, want {linked:,}")
    # A one-way job writes to one system only (restrict_plan): the link field is checked on the written side; on the
    # other side it is only counted.
    wrong = source_side_set = 0
    for lead_id, person_id in sample:
        lead, person = bench.dv_record(lead_id), bench.mk_person(person_id)
        email = str(lead.get("emailaddress1") or "")
        same_email = h.control("marketo", "GET", "/persons", params={"email": email})["persons"] if email else []
        bad = []
        person_link = str(person.get("dynamicsLeadId") or "").lower()
        lead_link = str(lead.get("new_marketopersonid") or "")
        written, other = (person_link, lead_link) if run.direction == "to_marketo" else (lead_link, person_link)
        if written != (lead_id if run.direction == "to_marketo" else person_id):
            bad.append(f"link field {written or None!r} on the {'person' if run.direction == 'to_marketo' else 'lead'}")
        source_side_set += bool(other)
        if email.casefold() != str(person.get("email") or "").casefold():
            bad.append(f"e-mails {email!r} / {person.get('email')!r}")
        if len(same_email) != 1:
            bad.append(f"{len(same_email)} Marketo persons with that e-mail")
        if bad:
            wrong += 1
            if wrong <= 5:
                problems.append(f"lead {lead_id} / person {person_id}: {', '.join(bad)}")
    if sample and run.direction == "to_dynamics":
        emails = [str(bench.mk_person(p).get("email")) for _, p in sample[:100]]
        found = bench.sales.find_by("lead", "emailaddress1", emails, ["leadid"])
        duplicated = [e for e, records in found.items() if len(records) != 1]
        if duplicated:
            problems.append(
                f"{len(duplicated)} sampled e-mails have {len(found[duplicated[0]])} leads, e.g. {duplicated[0]}"
            )
    run.checked = (
        f"{persons:,} persons, {leads:,} leads, {len(dynamics_ids):,} links (distinct on both sides), "
        f"{errors} record errors; {len(sample)} sampled pairs read back from both systems, {len(sample) - wrong} right "
        f"(the source side's link field set on {source_side_set} of them); the links' snapshots average "
        f"{snapshot_chars / max(1, len(dynamics_ids)):,.0f} chars"
        + (f" (the storage floor measured D rows of {h.storage.snapshot_chars:,})" if h.storage else "")
    )


# --- the report ------------------------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_run(run: Run) -> None:
    n = run.records
    print(f"\n== {run.direction}: N={n:,}, profile {run.profile} ==")
    if run.links_free:
        print("  --links-free (diagnostic): the lead links were not written; the wall time is the APIs and the client")
    print(f"  job {run.job_state}: {len(run.tasks)} task(s)")
    for task in sorted(run.tasks, key=lambda t: t.get("entity") != "lead"):
        counts = ", ".join(
            f"{k}={task.get(k)}" for k in ("read", "created", "updated", "unchanged", "skipped", "failed")
        )
        role = "the lead task" if task.get("entity") == "lead" else "upstream stream"
        print(
            f"    {role:<15} {task.get('entity')} {task['direction']} {task.get('state')} pages={task['pages_done']} "
            f"{counts} calls={task.get('api_calls')}"
        )
    if run.job_error:
        print(f"  job error: {run.job_error}")
    for error in run.errors[:5]:
        print(f"  !! message failed: {error}")
    times = [m.seconds for m in run.messages]
    overhead = sum(m.seconds - m.page_seconds for m in run.messages)
    traced = [m for m in run.messages if m.traced_peak is not None]
    if times:
        print(
            f"  wall {run.wall:.1f} s over {len(times)} queue messages: mean {sum(times) / len(times):.1f} s, "
            f"longest {max(times):.1f} s (Functions timeout {FUNCTION_TIMEOUT_S} s: "
            f"{verdict(max(times) < FUNCTION_TIMEOUT_S / 2)} with 2x margin); outside the page (job reads, "
            f"checkpoints, enqueue) {overhead:.1f} s in all"
        )
    print(
        f"  throughput {run.per_hour:,.0f} records/hour = {run.per_hour / NATIVE_PER_HOUR:,.1f} x the native sync's "
        f"~{NATIVE_PER_HOUR:,}/hour per object"
    )
    dv_ops = dict(sorted(run.dv_log.get("by_operation", {}).items(), key=lambda kv: -kv[1]))
    mk_eps = dict(sorted(run.mk_log.get("by_endpoint", {}).items(), key=lambda kv: -kv[1]))
    print(f"  Dataverse calls (request log, sync app): {run.dv_calls:,} + {run.dv_identity} identity  {dv_ops}")
    tables = run.dv_log.get("by_table_operation", {})
    if tables:
        print(f"    by table: {dict(sorted(tables.items(), key=lambda kv: -kv[1]))}")
    print(f"  Marketo calls (request log, identity excluded): {run.mk_calls:,}  {mk_eps}")
    print(f"    codes {run.mk_log.get('by_code', {})}")
    server_ms = sum(float(e.get("ms", 0.0)) for e in run.mk_log.get("entries", []) if not e.get("identity"))
    print(
        f"    Marketo server time (incl. its latency) {server_ms / 1000:.1f} s; client rate-window wait "
        f"{run.mk_window_wait:.1f} s; client peak concurrency {run.mk_peak_concurrency}"
    )
    mk_conn = sum(v for k, v in run.mk_counter.items() if k != "token")
    print(f"  connector counters: dynamics {sum(run.dv_counter.values()):,} {dict(run.dv_counter)}")
    print(f"                      marketo {mk_conn:,} (+{run.mk_counter['token']} token) {dict(run.mk_counter)}")
    az_total = sum(run.azurite.values())
    peak_mb = run.rss_peak_kib * 1024 / 10**6
    az_seconds = sum(run.azurite_seconds.values())
    print(f"  Azurite requests: {az_total:,} ({az_seconds:.1f} s, thread sum)  {dict(run.azurite.most_common())}")
    print(
        f"  memory (this process): RSS {run.rss_before_kib / 1024:.0f} MiB before, peak {run.rss_peak_kib / 1024:.0f} "
        f"MiB = {peak_mb:.0f} MB (VmHWM, reset at start), {run.rss_after_kib / 1024:.0f} MiB after; ru_maxrss "
        f"{run.maxrss_kib / 1024:.0f} MiB (process lifetime); tracemalloc peak {run.traced_peak / 2**20:.1f} MiB "
        f"-> aim < {MEMORY_AIM_MB} MB: {verdict(peak_mb < MEMORY_AIM_MB)}"
    )
    if run.cpu is not None:
        print(run.cpu.line())
    if run.messages:
        step = max(1, len(run.messages) // 24)
        trail = ", ".join(f"{m.rss_kib / 1024:.0f}" for m in run.messages[::step])
        print(f"    RSS after every {'' if step == 1 else f'{step}th '}message (MiB): {trail}")
    if traced:
        print(
            f"    tracing made {len(traced)} message(s) ~{run.tracing_overhead:.0f} s slower than their neighbours; "
            f"wall without it ~{run.wall - run.tracing_overhead:.0f} s "
            f"(~{run.records / max(1.0, run.wall - run.tracing_overhead) * 3600:,.0f} records/hour)"
        )
        peaks = ", ".join(f"{m.phase} page {m.page}: {(m.traced_peak or 0) / 2**20:.1f}" for m in traced)
        print(f"    tracemalloc peak per traced message (MiB, traced {len(traced)} of {len(times)}): {peaks}")
    if run.ceiling is not None:
        upstream: Counter[str] = Counter()
        for task in run.tasks:
            if task.get("entity") != "lead":
                upstream.update(task.get("api_calls") or {})
        for line in run.ceiling.lines():
            print("  " + line)
        print(
            f"  wall / max(floors) = {run.wall:.1f} / {run.ceiling.seconds:.1f} s = {run.ratio:.2f} x "
            f"(aim <= {CEILING_AIM}): {verdict(run.ratio <= CEILING_AIM)} ({run.ceiling.binding} floor binds); "
            f"calls vs the minimum (fewest calls: {run.ceiling.fewest.name}): Marketo {run.mk_calls:,} / "
            f"{run.ceiling.fewest.marketo_total:,}, Dataverse {run.dv_calls:,} / {run.ceiling.fewest.dataverse_total:,}"
            f" (of which the upstream streams' tasks: Marketo {upstream.get('marketo', 0)}, Dataverse "
            f"{upstream.get('dynamics', 0)}, by the connectors' counters)"
        )
    if run.phases:
        print("  where the time went (inclusive; sums over threads can exceed the wall time):")
        for line in engine_probe.phase_lines(run.phases, run.wall, TARGETS):
            print("  " + line)
    if run.profile_text:
        print("  cProfile (main thread):")
        print("\n".join("    " + line for line in run.profile_text.splitlines()[:100]))
    print(f"  final state: {run.checked}")
    for problem in run.problems[:10]:
        print(f"  !! {problem}")
    if not run.problems:
        print("  final state: right")


def summary_table(runs: list[Run]) -> None:
    print("\n=== summary ===")
    print(
        f"{'direction':<12}{'N':>9}{'wall s':>9}{'rec/hour':>11}{'x native':>9}{'DV calls':>9}{'MK calls':>9}"
        f"{'Azurite':>9}{'peak RSS':>9}{'tracemal':>9}{'API fl s':>9}{'store fl':>9}{'binds':>8}{'ratio':>7}"
        f"{'aim':>7}{'state':>7}"
    )
    for run in runs:
        print(
            f"{run.direction:<12}{run.records:>9,}{run.wall:>9.1f}{run.per_hour:>11,.0f}"
            f"{run.per_hour / NATIVE_PER_HOUR:>9.1f}{run.dv_calls:>9,}{run.mk_calls:>9,}{sum(run.azurite.values()):>9,}"
            f"{run.rss_peak_kib / 1024:>8.0f}M{run.traced_peak / 2**20:>8.0f}M"
            f"{run.ceiling.api_seconds if run.ceiling else 0:>9.1f}"
            f"{run.ceiling.storage.seconds if run.ceiling and run.ceiling.storage else 0:>9.1f}"
            f"{run.ceiling.binding if run.ceiling else '':>8}{run.ratio:>7.2f}"
            f"{verdict(run.ratio <= CEILING_AIM):>7}{'ok' if not run.problems else 'BAD':>7}"
        )
    print(
        "DV = Dataverse request log (sync app, identity excluded); MK = Marketo request log (identity excluded); "
        "peak RSS = VmHWM of this process in MiB (the aim: 300 MB = 286 MiB), reset per run; tracemal = tracemalloc "
        "peak; API fl / store fl = the API and the storage floors (bench/full_sync_ceiling.py); "
        "ratio = wall / max(floors), aim <= 1.3."
    )
    for direction in DIRECTIONS:
        sizes = sorted((r for r in runs if r.direction == direction), key=lambda r: r.records)
        if len(sizes) >= 2:
            small, big = sizes[0], sizes[-1]
            growth = (big.rss_peak_kib - small.rss_peak_kib) / 1024
            print(
                f"memory {direction}: peak RSS {small.rss_peak_kib / 1024:.0f} MiB at N={small.records:,} -> "
                f"{big.rss_peak_kib / 1024:.0f} MiB at N={big.records:,} ({growth:+.0f} MiB for "
                f"{big.records / small.records:.0f}x the records); tracemalloc {small.traced_peak / 2**20:.0f} -> "
                f"{big.traced_peak / 2**20:.0f} MiB"
            )


def main() -> None:
    cap_malloc_arenas()  # as the function app does (sync/memory.py): the worker is measured as deployed
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", default="10000,100000", help="N, or several (comma-separated)")
    parser.add_argument("--directions", default=",".join(DIRECTIONS), help="to_marketo, to_dynamics or both")
    parser.add_argument("--profile", choices=["realistic", "fast"], default="realistic")
    parser.add_argument("--days", type=float, default=365.0, help="Marketo persons' creation dates span this many days")
    parser.add_argument("--verify-sample", type=int, default=200, help="pairs read back from both systems per run")
    parser.add_argument(
        "--tracemalloc",
        choices=["sample", "all", "off"],
        default="sample",
        help=f"trace allocations over every {TRACE_EVERY}th queue message from the 2nd (default), the whole job, or "
        "not at all (tracing slows Python code about 2.5x)",
    )
    parser.add_argument("--no-phases", action="store_true", help="do not time the engine's phases")
    parser.add_argument(
        "--links-free",
        action="store_true",
        help="diagnostic: do not send the lead task's link transactions (none is stored; the final state expects "
        "none), to time the API chain and the client without the link table's storage",
    )
    parser.add_argument("--cprofile", action="store_true", help="also cProfile each run (main thread)")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no line per queue message")
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    sizes = [int(x.replace("_", "")) for x in args.records.split(",") if x.strip()]
    requested = [d.strip() for d in args.directions.split(",") if d.strip()]
    unknown = [d for d in requested if d not in DIRECTIONS]
    if unknown:
        raise SystemExit(f"unknown directions {unknown}: use {', '.join(DIRECTIONS)}")
    directions = [DIRECTIONS[d] for d in requested]

    tmp = Path(tempfile.mkdtemp(prefix="bench-full-sync-"))
    print(f"bench_full_sync: N={sizes}, directions={directions}, profile={args.profile}, tmp={tmp}", flush=True)
    with bench_services(tmp, args.profile, args.keep) as (azurite, emulators):
        counter = AzuriteCounter(azurite.ports)
        counter.install()
        probe = None if args.no_phases else engine_probe.install(TARGETS)
        harness = Harness(args, emulators, azurite, tmp, probe, counter)
        runs: list[Run] = []
        for n in sizes:
            harness.storage = measure_storage(azurite, n)
            for line in harness.storage.lines():
                print(line, flush=True)
            for direction in directions:
                with lead_links_free() if args.links_free else contextlib.nullcontext():
                    runs.append(measure(harness, n, direction))
                if args.json:
                    args.json.write_text(json.dumps([r.summary() for r in runs], indent=1, default=str))
        summary_table(runs)


if __name__ == "__main__":
    main()
