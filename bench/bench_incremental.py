"""Benchmark (issue 5's acceptance): one incremental lead cycle with N changed records on each side.

Starts Azurite and both emulators, seeds 2N Dynamics leads and lets the sync itself create and link them all in Marketo
(under the `fast` profile, cycles until one writes nothing). Then, per variant:

  distinct  N leads changed in Dynamics by another user (UpdateMultiple from the salesperson app) and N *other* leads'
            persons changed by a marketer in Marketo (the emulator's /act/edit: Change Data Value, "Person detail
            page"): 2N changed pairs.
  overlap   the same N records changed on both sides, different fields (both changes must survive): N pairs.

Both emulators are switched to `realistic`, the request logs cleared, and ONE incremental cycle of the lead entity is
timed, followed by the echo cycle (it reads back the sync's own writes and must write nothing) and an idle cycle.
Prints wall time, API calls per system (emulators' request logs and the connectors' counters, reads vs writes)
against the minimum, peak memory, per-phase timers, and how many times faster than the native sync's ~10,000
updates per hour per object. Asserts nothing about time; checks the final state on a sample through the emulators'
uncounted controls. Writes only to a temporary directory.

    .venv/bin/python bench/bench_incremental.py --records 1000
    .venv/bin/python bench/bench_incremental.py                      # 10,000 records, realistic profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from dotenv import dotenv_values

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine_probe  # a helper next to this script: timers around the engine's phases

from emulators.__main__ import READY_PREFIX
from emulators.azurite import Azurite
from emulators.process import REPO, RunningEmulators
from sync.connectors.dynamics import DataverseClient
from sync.connectors.marketo import MarketoClient
from sync.demo import salesperson_client
from sync.engine.context import SyncContext, build_context
from sync.engine.cycle import CycleReport, run_cycle
from sync.memory import cap_malloc_arenas
from sync.settings import Settings, load_settings
from sync.state import StateStore
from sync.state.tables import service_client

NATIVE_UPDATES_PER_HOUR = 10_000
MARKETO_BATCH = 300
DATAVERSE_PAGE = 5000
DV_WRITE_OPS = {"Create", "Update", "Upsert", "Delete", "CreateMultiple", "UpdateMultiple", "UpsertMultiple", "$batch"}
DV_IDENTITY_OPS = {"token", "discovery", "keys"}
MK_WRITE_OPS = {"sync_leads", "delete_leads", "merge_leads", "import_leads"}


# --- the systems ---------------------------------------------------------------------------------------------------
def start_logged_emulators(directory: Path, *args: str, timeout: float = 60.0) -> RunningEmulators:
    """emulators.process.start_emulators, keeping the emulators' output in `directory`/emulators.log (to diagnose a
    crash under load) instead of discarding it."""
    env_file, log_file = directory / "emulators.env", directory / "emulators.log"
    command = [sys.executable, "-m", "emulators", "--env-file", str(env_file), "--tls-dir", str(directory), *args]
    with log_file.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while READY_PREFIX not in log_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("emulators did not start:\n" + log_file.read_text()[-4000:])
        time.sleep(0.1)
    settings = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    return RunningEmulators(env_file=env_file, settings=settings, process=process)


def emulators_gone(emulators: RunningEmulators, directory: Path) -> str | None:
    """Why the emulators' process is no longer running (exit code and the end of its output), or None."""
    code = emulators.process.poll()
    if code is None:
        return None
    tail = (directory / "emulators.log").read_text()[-3000:]
    return f"the emulators' process exited with code {code}; its last output:\n{tail}"


@contextmanager
def bench_services(tmp: Path, profile: str, keep: bool) -> Iterator[tuple[Azurite, RunningEmulators]]:
    """Azurite and the emulators (logging to tmp/emulators) for one bench run. If the run fails, says whether the
    emulators died under it; always stops both and, unless `keep`, removes tmp."""
    (tmp / "emulators").mkdir()
    azurite = Azurite().start()
    emulators = start_logged_emulators(tmp / "emulators", "--profile", profile)
    try:
        yield azurite, emulators
    except Exception:
        gone = emulators_gone(emulators, tmp / "emulators")
        if gone:
            print(f"!! {gone}")
        raise
    finally:
        emulators.stop()
        azurite.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Bench:
    emulators: RunningEmulators
    settings: Settings
    state: StateStore
    sales: DataverseClient
    tmp: Path
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (lead id, person id), the benchmark's leads
    warm_pair: tuple[str, str] = ("", "")  # one more linked lead, changed to warm up the timer's context
    probe: engine_probe.Probe | None = None

    def control(self, emulator: str, method: str, path: str, **kw: Any) -> Any:
        return self.emulators.control(emulator, method, path, **kw).json()

    def set_profile(self, profile: str) -> None:
        self.control("dataverse", "POST", "/profile", json={"profile": profile})
        self.control("marketo", "PATCH", "/config", json={"profile": profile})

    def clear_logs(self) -> None:
        self.control("dataverse", "DELETE", "/requests")
        self.control("marketo", "DELETE", "/requests")

    def dv_log(self) -> dict[str, Any]:
        return self.control("dataverse", "GET", "/requests", params={"client": "sync", "entries": 0})

    def mk_log(self) -> dict[str, Any]:
        return self.control("marketo", "GET", "/requests", params={"limit": 50_000})

    def dv_record(self, record_id: str) -> dict[str, Any]:
        return self.control("dataverse", "GET", f"/records/lead/{record_id}")

    def mk_person(self, person_id: str) -> dict[str, Any]:
        return self.control("marketo", "GET", f"/persons/{person_id}")


def setup_context(bench: Bench) -> SyncContext:
    """The sync's context for setting up, with a Marketo client that does not pace itself (fast profile only)."""
    ctx = build_context(bench.settings, bench.state)
    s = bench.settings
    ctx.marketo = MarketoClient(
        s.marketo_base_url,
        s.marketo_client_id,
        s.marketo_client_secret,
        extra_ca=s.sync_ca_bundle,
        daily_call_budget=1_000_000,
        max_concurrency=8,
        rate_limit_calls=0,
    )
    ctx.time_budget = timedelta(hours=1)
    return ctx


def writes_of(report: CycleReport) -> int:
    c = report.counts
    return c.created + c.updated + c.deleted + c.failed


def link_everything(bench: Bench, total: int) -> None:
    """Seed `total` Dynamics leads and let the sync create and link their Marketo persons (fast profile)."""
    started = time.perf_counter()
    seeded = bench.control(
        "dataverse",
        "POST",
        "/seed",
        json={"table": "lead", "count": total, "fast": True, "values": {"new_synctomkto": True}},
    )
    print(f"setup: seeded {seeded['count']:,} Dynamics leads in {seeded['seconds']:.1f} s")
    ctx = setup_context(bench)
    upstream = set(ctx.mapping.entity("lead").reference_targets())
    for stream in (s.name for s in ctx.mapping.ordered_entities() if s.name in upstream):
        report = run_cycle(ctx, stream)  # the leads' owners (and companies) first, as their timers would
        print(f"setup: {stream}: {report.outcome}, created={report.counts.created:,} calls={report.api_calls}")
    for number in range(1, 6):
        t0 = time.perf_counter()
        report = run_cycle(ctx, "lead")
        if report.outcome == "failed":
            raise SystemExit(f"setup cycle {number} failed: {report.error}")
        print(
            f"setup: cycle {number}: {report.outcome}, created={report.counts.created:,} "
            f"updated={report.counts.updated:,} unchanged={report.counts.unchanged:,} failed={report.counts.failed} "
            f"calls={report.api_calls} in {time.perf_counter() - t0:.1f} s"
        )
        if report.complete and writes_of(report) == 0:
            break
    else:
        raise SystemExit("setup did not settle: the sync kept writing")
    ctx.marketo.close()
    pairs = sorted((link.dynamics_id, link.marketo_id) for link in bench.state.links.list("lead"))
    persons = bench.control("marketo", "GET", "/stats")["persons"]
    errors = bench.state.errors.count("lead")
    if len(pairs) != total or persons != total or errors:
        raise SystemExit(f"setup: {len(pairs)} links, {persons} persons, {errors} record errors (want {total})")
    bench.pairs, bench.warm_pair = pairs[:-1], pairs[-1]
    print(f"setup: {total:,} linked leads in {time.perf_counter() - started:.1f} s")


def warm_up(bench: Bench, ctx: SyncContext) -> None:
    """A new worker's first cycles (fast profile): one lead changed on each side, then its echo."""
    lead_id, person_id = bench.warm_pair
    change_dynamics(bench, [lead_id], "jobtitle", ["warm-up dv"])
    change_marketo(bench, [person_id], "phone", ["warm-up mk"])
    first = measure(bench, ctx, "warm-up")
    echo = measure(bench, ctx, "warm-up echo")
    if first.report.counts.updated != 1 or writes_of(echo.report) != 0:
        raise SystemExit(f"warm-up: {first.report.counts} then {echo.report.counts}")
    print(
        f"setup: a new worker's first cycle (1 change each side) made Dataverse {first.dv_log['by_operation']} and "
        f"Marketo {first.mk_log['by_endpoint']} calls (tokens, metadata, option sets: cached afterwards)"
    )


# --- the changes ------------------------------------------------------------------------------------------------------
def change_dynamics(bench: Bench, lead_ids: list[str], column: str, values: list[str]) -> None:
    rows = [{"leadid": lead_id, column: value} for lead_id, value in zip(lead_ids, values, strict=True)]
    results = bench.sales.update_multiple("lead", rows)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise SystemExit(f"salesperson update failed for {len(failed)} leads: {failed[0].error}")


def change_marketo(bench: Bench, person_ids: list[str], field_name: str, values: list[str]) -> None:
    """A marketer edits each person in the UI (uncounted control calls, a few threads with their own sessions)."""
    local = threading.local()
    url = f"{bench.emulators.base_url('marketo')}/_emulator/act/edit"

    def edit(item: tuple[str, str]) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(
            url, json={"id": int(item[0]), "values": {field_name: item[1]}}, verify=bench.emulators.ca_file, timeout=60
        )
        response.raise_for_status()
        if not response.json().get("changed"):
            raise SystemExit(f"the marketer's edit of person {item[0]} changed nothing")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(edit, zip(person_ids, values, strict=True)))


# --- measuring --------------------------------------------------------------------------------------------------------
def rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) of this process, in KiB."""
    status = Path("/proc/self/status").read_text()

    def kib(name: str) -> int:
        found = re.search(rf"{name}:\s+(\d+)", status)
        if found is None:
            raise RuntimeError(f"/proc/self/status has no {name} line")
        return int(found.group(1))

    return kib("VmRSS"), kib("VmHWM")


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


@dataclass
class Measured:
    label: str
    report: CycleReport
    wall: float
    dv_log: dict[str, Any]
    mk_log: dict[str, Any]
    dv_counter: Counter[str]
    mk_counter: Counter[str]
    mk_window_wait: float
    rss_before_kib: int = 0
    rss_peak_kib: int = 0
    phases: dict[str, engine_probe.Phase] = field(default_factory=dict)
    profile_text: str = ""

    # Dataverse request log (sync app only)
    @property
    def dv_reads(self) -> int:
        ops = self.dv_log["by_operation"]
        return sum(n for op, n in ops.items() if op not in DV_WRITE_OPS and op not in DV_IDENTITY_OPS)

    @property
    def dv_writes(self) -> int:
        return sum(n for op, n in self.dv_log["by_operation"].items() if op in DV_WRITE_OPS)

    @property
    def dv_identity(self) -> int:
        return sum(n for op, n in self.dv_log["by_operation"].items() if op in DV_IDENTITY_OPS)

    # Marketo request log (identity excluded)
    @property
    def mk_reads(self) -> int:
        by = self.mk_log["by_endpoint"]
        return sum(n for ep, n in by.items() if ep.startswith("GET ") and "/identity/" not in ep)

    @property
    def mk_writes(self) -> int:
        by = self.mk_log["by_endpoint"]
        return sum(n for ep, n in by.items() if not ep.startswith("GET ") and "/identity/" not in ep)

    @property
    def mk_refused(self) -> int:
        return sum(n for code, n in self.mk_log["by_code"].items() if code in ("606", "615", "607"))

    def mk_server_ms(self) -> float:
        return sum(float(e.get("ms", 0.0)) for e in self.mk_log.get("entries", []) if not e.get("identity"))


def measure(bench: Bench, ctx: SyncContext, label: str, with_cprofile: bool = False, entity: str = "lead") -> Measured:
    dv_before, mk_before = Counter(ctx.dynamics.calls), Counter(ctx.marketo.calls)
    waited_before = ctx.marketo.limits.window.waited
    bench.clear_logs()
    if bench.probe is not None:
        bench.probe.reset()
    reset_peak_rss()
    rss_before, _ = rss_kib()
    profiler = cProfile.Profile() if with_cprofile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = run_cycle(ctx, entity)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    _, peak = rss_kib()
    measured = Measured(
        label=label,
        report=report,
        wall=wall,
        dv_log=bench.dv_log(),
        mk_log=bench.mk_log(),
        dv_counter=Counter(ctx.dynamics.calls) - dv_before,
        mk_counter=Counter(ctx.marketo.calls) - mk_before,
        mk_window_wait=ctx.marketo.limits.window.waited - waited_before,
        rss_before_kib=rss_before,
        rss_peak_kib=peak,
        phases=bench.probe.snapshot() if bench.probe is not None else {},
    )
    if profiler is not None:
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(20)
        measured.profile_text = stream.getvalue()
        profiler.dump_stats(str(bench.tmp / f"{label.replace(' ', '_')}.prof"))
    if report.outcome == "failed":
        print(f"!! {label}: the cycle FAILED: {report.error}")
    return measured


def wait_for_marketo_window(seconds: float = 21.0) -> None:
    """Start a measured cycle with the last 20 s of Marketo calls behind it, as a timer a minute apart would."""
    time.sleep(seconds)


# --- the minimum and the report ---------------------------------------------------------------------------------------
@dataclass
class Minimum:
    dv_reads: int
    dv_writes: int
    mk_reads: int
    mk_writes: int


def minimum(dv_changed: int, mk_changed: int, dv_to_write: int, mk_to_write: int, chunk: int) -> Minimum:
    return Minimum(
        dv_reads=max(1, math.ceil(dv_changed / DATAVERSE_PAGE)),
        dv_writes=math.ceil(dv_to_write / chunk),
        # lead changes, deletes and merges: the span read once, by one activities stream of 300-activity pages
        mk_reads=max(1, math.ceil(mk_changed / MARKETO_BATCH)),
        mk_writes=math.ceil(mk_to_write / MARKETO_BATCH),
    )


def verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "MISSED"


def print_cycle(m: Measured, changed_records: int, mins: Minimum) -> None:
    r = m.report
    c = r.counts
    dv_total, mk_total = m.dv_reads + m.dv_writes, m.mk_reads + m.mk_writes
    per_hour = changed_records / m.wall * 3600 if m.wall else 0.0
    print(f"\n== {m.label}: {changed_records:,} changed records ==")
    print(
        f"  outcome={r.outcome} complete={r.complete}  counts: read={c.read:,} updated={c.updated:,} "
        f"created={c.created} unchanged={c.unchanged:,} skipped={c.skipped} failed={c.failed} "
        f"conflicts={len(r.conflicts)}"
    )
    print(f"  {'':<30}{'reads':>8}{'writes':>8}{'total':>8}{'minimum':>9}{'ratio':>8}  aim (<= 1.10 x minimum)")
    for name, reads, writes, min_reads, min_writes in (
        ("Dataverse (log, sync app)", m.dv_reads, m.dv_writes, mins.dv_reads, mins.dv_writes),
        ("Marketo (log, no identity)", m.mk_reads, m.mk_writes, mins.mk_reads, mins.mk_writes),
    ):
        total, least = reads + writes, min_reads + min_writes
        ratio = total / least if least else float("inf")
        print(
            f"  {name:<30}{reads:>8}{writes:>8}{total:>8}{least:>9}{ratio:>8.2f}  {verdict(total, 1.1 * least)}"
            f"  (reads {reads}/{min_reads}, writes {writes}/{min_writes})"
        )
    print(f"  Dataverse by operation: {dict(sorted(m.dv_log['by_operation'].items()))}")
    print(f"  Marketo by endpoint:    {dict(sorted(m.mk_log['by_endpoint'].items()))}  codes {m.mk_log['by_code']}")
    dv_conn = sum(m.dv_counter.values())
    mk_conn = sum(n for op, n in m.mk_counter.items() if op != "token")
    print(f"  connector counters: dynamics={dv_conn} {dict(m.dv_counter)}")
    print(f"                      marketo={mk_conn} {dict(m.mk_counter)}  (engine report: {r.api_calls})")
    if dv_conn != dv_total + m.dv_identity or mk_conn != mk_total:
        print(
            f"  note: counters differ from the logs (dynamics {dv_conn} vs {dv_total}+{m.dv_identity} identity, "
            f"marketo {mk_conn} vs {mk_total}): retries or refused calls"
        )
    print(
        f"  wall {m.wall:.1f} s; Marketo rate-window wait (client) {m.mk_window_wait:.1f} s; Marketo server time "
        f"{m.mk_server_ms() / 1000:.1f} s over {mk_total} calls; refused (606/607/615) {m.mk_refused}"
    )
    print(
        f"  memory: RSS before {m.rss_before_kib / 1024:.0f} MiB, peak during the cycle {m.rss_peak_kib / 1024:.0f} MiB"
        f" (+{(m.rss_peak_kib - m.rss_before_kib) / 1024:.0f} MiB)"
    )
    print(
        f"  throughput {per_hour:,.0f} records/hour = {per_hour / NATIVE_UPDATES_PER_HOUR:.1f} x the native sync's "
        f"~{NATIVE_UPDATES_PER_HOUR:,}/hour"
    )
    if m.phases:
        print("  where the time went (inclusive; thread sums can exceed wall):")
        for line in engine_probe.phase_lines(m.phases, m.wall):
            print("  " + line)
    if m.profile_text:
        print("  cProfile (main thread):")
        print("\n".join("    " + line for line in m.profile_text.splitlines()[:90]))


def print_quiet_cycle(m: Measured, kind: str, expected_reads: Minimum | None = None) -> None:
    r = m.report
    dv_total, mk_total = m.dv_reads + m.dv_writes, m.mk_reads + m.mk_writes
    print(
        f"\n-- {m.label}: outcome={r.outcome} read={r.counts.read:,} writes={writes_of(r)} "
        f"wall={m.wall:.1f} s peak RSS {m.rss_peak_kib / 1024:.0f} MiB"
    )
    print(
        f"   Dataverse {dv_total} calls (reads {m.dv_reads}, writes {m.dv_writes}) {m.dv_log['by_operation']}; "
        f"Marketo {mk_total} calls (reads {m.mk_reads}, writes {m.mk_writes}) {m.mk_log['by_endpoint']}"
    )
    if kind == "idle":
        ok = dv_total <= 1 and mk_total <= 2 and writes_of(r) == 0
        print(f"   aim (idle: <= 1 Dataverse call, <= 2 Marketo calls, no writes): {'met' if ok else 'MISSED'}")
    else:
        assert expected_reads is not None
        ok = m.dv_writes == 0 and m.mk_writes == 0 and writes_of(r) == 0
        print(
            f"   echo cycle writes nothing: {'met' if ok else 'MISSED'}; reads vs minimum: Dataverse "
            f"{m.dv_reads}/{expected_reads.dv_reads}, Marketo {m.mk_reads}/{expected_reads.mk_reads}"
        )
        if m.phases:
            for line in engine_probe.phase_lines(m.phases, m.wall):
                print("  " + line)


# --- final state ------------------------------------------------------------------------------------------------------
def verify(bench: Bench, expected: list[tuple[str, str, str, str, str]], sample: int) -> tuple[int, int, list[str]]:
    """expected: (lead id, person id, dynamics column, marketo field, value) that both systems must now hold."""
    rng = random.Random(7)
    chosen = expected if len(expected) <= sample else rng.sample(expected, sample)
    problems = []
    bad: set[str] = set()
    for lead_id, person_id, column, field_name, value in chosen:
        lead, person = bench.dv_record(lead_id), bench.mk_person(person_id)
        if lead.get(column) != value or person.get(field_name) != value:
            bad.add(lead_id)
            problems.append(
                f"lead {lead_id} {column}={lead.get(column)!r} / person {person_id} {field_name}="
                f"{person.get(field_name)!r}, want {value!r}"
            )
        if str(person.get("dynamicsLeadId") or "").lower() != lead_id or lead.get("new_marketopersonid") != person_id:
            bad.add(lead_id)
            problems.append(f"lead {lead_id} / person {person_id}: link fields do not point at each other")
    return len(chosen), len(chosen) - len(bad), problems


def verify_totals(bench: Bench, total: int) -> list[str]:
    problems = []
    persons = bench.control("marketo", "GET", "/stats")["persons"]
    leads = bench.control("dataverse", "GET", "/records/lead")["count"]
    errors = bench.state.errors.count("lead")
    links = bench.state.links.count("lead")
    if persons != total or leads != total:
        problems.append(f"{persons} persons and {leads} leads, want {total} each (duplicates or losses)")
    if errors:
        problems.append(f"{errors} record errors: {[e.message for e in list(bench.state.errors.list('lead'))[:3]]}")
    if links != total:
        problems.append(f"{links} links, want {total}")
    return problems


# --- variants ---------------------------------------------------------------------------------------------------------
def run_variant(
    bench: Bench,
    ctx: SyncContext,
    label: str,
    dv_pairs: list[tuple[str, str]],
    mk_pairs: list[tuple[str, str]],
    dv_change: tuple[str, str],
    mk_change: tuple[str, str],
    args: argparse.Namespace,
    tag: str,
) -> dict[str, Any]:
    """Change dv_pairs in Dynamics and mk_pairs in Marketo, then time one realistic cycle, the echo and an idle one."""
    n_dv, n_mk = len(dv_pairs), len(mk_pairs)
    column, mk_same_field = dv_change  # Dynamics column changed by the salesperson, and its Marketo field
    mk_field, dv_same_column = mk_change  # Marketo field changed by the marketer, and its Dynamics column
    dv_values = [f"{tag}-dv-{i}" for i in range(n_dv)]
    mk_values = [f"{tag}-mk-{i}" for i in range(n_mk)]
    t0 = time.perf_counter()
    change_dynamics(bench, [lead for lead, _ in dv_pairs], column, dv_values)
    t1 = time.perf_counter()
    change_marketo(bench, [person for _, person in mk_pairs], mk_field, mk_values)
    t2 = time.perf_counter()
    print(
        f"\n[{label}] changed {n_dv:,} leads in Dynamics ({column}) in {t1 - t0:.1f} s and {n_mk:,} persons in "
        f"Marketo ({mk_field}) in {t2 - t1:.1f} s"
    )
    bench.set_profile(args.profile)
    wait_for_marketo_window()
    changed_records = len({lead for lead, _ in dv_pairs} | {lead for lead, _ in mk_pairs})
    mins = minimum(n_dv, n_mk, n_mk, n_dv, ctx.dynamics.chunk_size)
    measured = measure(bench, ctx, f"{label} cycle", with_cprofile=args.cprofile)
    cycles = [measured]
    while not cycles[-1].report.complete and cycles[-1].report.outcome != "failed" and len(cycles) < 10:
        cycles.append(measure(bench, ctx, f"{label} cycle (continued {len(cycles)})"))
    print_cycle(measured, changed_records, mins)
    if len(cycles) > 1:
        total_wall = sum(m.wall for m in cycles)
        print(
            f"  the cycle stopped at its time budget ({ctx.time_budget.total_seconds():.0f} s); "
            f"{len(cycles)} cycles drained the changes in {total_wall:.1f} s "
            f"({changed_records / total_wall * 3600 / NATIVE_UPDATES_PER_HOUR:.1f} x native)"
        )
    wait_for_marketo_window()
    echo = measure(bench, ctx, f"{label} echo cycle (reads back the sync's own writes)")
    print_quiet_cycle(echo, "echo", minimum(n_mk, n_dv, 0, 0, ctx.dynamics.chunk_size))
    idle = measure(bench, ctx, f"{label} idle cycle")
    print_quiet_cycle(idle, "idle")
    bench.set_profile("fast")

    expected = [(lead, person, column, mk_same_field, v) for (lead, person), v in zip(dv_pairs, dv_values, strict=True)]
    expected += [
        (lead, person, dv_same_column, mk_field, v) for (lead, person), v in zip(mk_pairs, mk_values, strict=True)
    ]
    checked, ok, problems = verify(bench, expected, args.verify_sample)
    problems += verify_totals(bench, len(bench.pairs) + 1)
    print(f"   final state: {checked} sampled pairs checked in both systems, {ok} right; totals checked")
    for problem in problems[:10]:
        print(f"   !! {problem}")
    return {
        "label": label,
        "records": changed_records,
        "measured": measured,
        "cycles": cycles,
        "mins": mins,
        "echo": echo,
        "idle": idle,
        "problems": problems,
    }


def summary_table(results: list[dict[str, Any]], n: int, profile: str) -> None:
    print(f"\n=== summary: N={n:,}, profile={profile} ===")
    head = (
        f"{'variant':<10}{'records':>8}{'wall s':>8}{'x native':>9}{'DV r/w':>9}{'DV min':>8}{'MK r/w':>9}"
        f"{'MK min':>8}{'aim DV/MK':>10}{'echo DV/MK':>11}{'idle DV/MK':>11}{'idle aim':>9}{'peak MiB':>9}{'state':>7}"
    )
    print(head)
    for res in results:
        m: Measured = res["measured"]
        mins: Minimum = res["mins"]
        echo: Measured = res["echo"]
        idle: Measured = res["idle"]
        wall = sum(c.wall for c in res["cycles"])
        times = res["records"] / wall * 3600 / NATIVE_UPDATES_PER_HOUR
        dv_ok = m.dv_reads + m.dv_writes <= 1.1 * (mins.dv_reads + mins.dv_writes)
        mk_ok = m.mk_reads + m.mk_writes <= 1.1 * (mins.mk_reads + mins.mk_writes)
        idle_ok = idle.dv_reads + idle.dv_writes <= 1 and idle.mk_reads + idle.mk_writes <= 2
        print(
            f"{res['label']:<10}{res['records']:>8,}{wall:>8.1f}{times:>9.1f}"
            f"{f'{m.dv_reads}/{m.dv_writes}':>9}{f'{mins.dv_reads}/{mins.dv_writes}':>8}"
            f"{f'{m.mk_reads}/{m.mk_writes}':>9}{f'{mins.mk_reads}/{mins.mk_writes}':>8}"
            f"{('met' if dv_ok else 'MISS') + '/' + ('met' if mk_ok else 'MISS'):>10}"
            f"{f'{echo.dv_reads + echo.dv_writes}/{echo.mk_reads + echo.mk_writes}':>11}"
            f"{f'{idle.dv_reads + idle.dv_writes}/{idle.mk_reads + idle.mk_writes}':>11}"
            f"{'met' if idle_ok else 'MISSED':>9}{m.rss_peak_kib / 1024:>9.0f}"
            f"{'ok' if not res['problems'] else 'BAD':>7}"
        )
    print("DV/MK r/w = reads/writes in the emulators' request logs (Dataverse: sync app; Marketo: identity excluded).")


def main() -> None:
    cap_malloc_arenas()  # as the function app does (sync/memory.py): the worker is measured as deployed
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000, help="N: changed records on each side")
    parser.add_argument("--profile", choices=["realistic", "fast"], default="realistic")
    parser.add_argument("--variants", default="distinct,overlap", help="distinct, overlap or both (comma-separated)")
    parser.add_argument("--verify-sample", type=int, default=300, help="pairs checked in both systems per variant")
    parser.add_argument("--cprofile", action="store_true", help="also cProfile the measured cycle (main thread)")
    parser.add_argument("--no-phases", action="store_true", help="do not time the engine's phases")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    n = args.records
    total = 2 * n if "distinct" in variants else n

    tmp = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    print(f"bench_incremental: N={n:,} per side, {total:,} linked leads, profile={args.profile}, tmp={tmp}")
    with bench_services(tmp, "realistic", args.keep) as (azurite, emulators):
        env_file = emulators.sync_env_file(tmp, azurite.connection_string, "bench" + uuid.uuid4().hex[:8])
        settings = load_settings(env_file)
        state = StateStore(service_client(azurite.connection_string), prefix=settings.sync_table_prefix)
        sales = salesperson_client(emulators, settings)
        bench = Bench(emulators, settings, state, sales, tmp)
        for name in ("dataverse", "marketo"):
            bench.control(name, "POST", "/reset")  # (Marketo's reset restores the start profile: switch after it)
        bench.set_profile("fast")
        link_everything(bench, total + 1)  # one more lead, for warming up the timer's context

        # The timer's context, built from the settings as a worker process builds it, then warmed by one cycle that
        # writes both ways (tokens, table metadata and option sets are cached for the process's life).
        ctx = build_context(settings, state)
        warm_up(bench, ctx)
        if not args.no_phases:
            bench.probe = engine_probe.install()

        results = []
        if "distinct" in variants:
            dv_pairs, mk_pairs = bench.pairs[:n], bench.pairs[n : 2 * n]
            results.append(
                run_variant(
                    bench, ctx, "distinct", dv_pairs, mk_pairs, ("jobtitle", "title"), ("title", "jobtitle"), args, "d"
                )
            )
        if "overlap" in variants:
            same = bench.pairs[:n]
            results.append(
                run_variant(
                    bench, ctx, "overlap", same, same, ("jobtitle", "title"), ("phone", "telephone1"), args, "o"
                )
            )
        summary_table(results, n, args.profile)


if __name__ == "__main__":
    main()
