"""Benchmark (issue 12's acceptance): one incremental cycle of N changed accounts and their N contacts.

Starts Azurite and both emulators, seeds N+1 Dynamics accounts owned by the directory's users and teams, and N+1
contacts, one per account (the Dataverse emulator's seed `refs`: contact i's parentcustomerid is account i), and lets
the sync create and link everything under the `fast` profile: users and teams as sales persons, accounts as companies,
contacts as persons linked to their company and owner. That sets every stream's watermark. One more account and
contact warm up the timer's context (tokens, metadata, option sets).

Then a salesperson changes the N accounts (telephone1 -> the company's mainPhone) and the N contacts (jobtitle ->
title), both emulators switch to the chosen profile (`realistic` by default), and the account cycle, then the contact
cycle run, as their timers would (accounts first: contacts point at them). Per stream it prints wall time, Marketo
calls per object (the emulator's `by_object`) against the minimum ceil(N/300) per object written (aim: within 10%),
Dataverse calls, whether any per-record read resolved a reference (aim: none), and peak RSS. Then the contact's echo
cycle and an idle cycle of every stream (aim for a one-way stream: 1 Dataverse call, 0 Marketo calls). Checks the
final state on a sample through the emulators' uncounted controls. Asserts nothing about time. Writes only to a
temporary directory.

    .venv/bin/python bench/bench_streams.py --records 1000 --profile fast     # development
    .venv/bin/python bench/bench_streams.py                                   # 10,000 records, realistic profile
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_probe  # helpers next to this script
from bench_incremental import (
    DATAVERSE_PAGE,
    MARKETO_BATCH,
    Bench,
    Measured,
    bench_services,
    measure,
    setup_context,
    verdict,
    wait_for_marketo_window,
    writes_of,
)

from sync.demo import salesperson_client
from sync.engine.context import SyncContext, build_context
from sync.engine.cycle import run_cycle
from sync.settings import load_settings
from sync.state import StateStore
from sync.state.tables import service_client

OWNERS = ["systemuser", "team"]
OPTED_IN = {"new_synctomkto": True}  # the seed opts a few rows out otherwise: every account and contact syncs here
MEASURED = ("account", "contact")  # the order their timers run in: contacts point at accounts
# What a reference resolution could read per record: Dataverse rows by id, or Marketo sales persons and companies.
REFERENCE_TABLES = ("account", "systemuser", "team")
REFERENCE_OBJECTS = ("companies", "salespersons")

# Timers around a one-way stream's steps, next to engine_probe's (the persons' steps). (module, class, attribute, label)
ONE_WAY_TARGETS: list[tuple[str, str | None, str, str]] = [
    ("sync.engine.cycle", "OneWayCycle", "run", "one-way cycle.run (total)"),
    ("sync.engine.crm_stream", "CrmBatches", "inputs", "  inputs: links, references, canonical values"),
    ("sync.state.links", "LinkStore", "get_many_by_dynamics_id", "    LinkStore.get_many_by_dynamics_id"),
    ("sync.engine.references", "ReferenceResolver", "resolve", "    ReferenceResolver.resolve"),
    ("sync.engine.crm_stream", "CrmBatches", "_write", "  Marketo writes (CRM object sync)"),
    ("sync.engine.crm_stream", "CrmBatches", "_commit", "  commit links, snapshots, errors"),
    ("sync.engine.cycle", "OneWayCycle", "_advance", "  watermark advances (one-way)"),
]
PROBE_TARGETS = [*ONE_WAY_TARGETS, *engine_probe.TARGETS]


@dataclass
class Seeded:
    accounts: list[str]
    contacts: list[str]  # contacts[i] belongs to accounts[i]


def seed(bench: Bench, total: int) -> Seeded:
    started = time.perf_counter()
    for table, refs in (
        ("account", {"ownerid": OWNERS}),
        ("contact", {"parentcustomerid": "account", "ownerid": OWNERS}),
    ):
        body = {"table": table, "count": total, "fast": True, "values": OPTED_IN, "refs": refs}
        bench.control("dataverse", "POST", "/seed", json=body)
    # The seed control answers at most 1,000 ids: read the pairs back (as the salesperson, outside the sync's log).
    rows = bench.sales.query("contact", ["contactid", "_parentcustomerid_value"])
    pairs = sorted((str(r.values["_parentcustomerid_value"]), r.id) for r in rows)
    if len(pairs) != total or len({account for account, _ in pairs}) != total:
        raise SystemExit(f"setup: {len(pairs)} contacts over {len({a for a, _ in pairs})} accounts, want {total} each")
    print(f"setup: seeded {total:,} accounts and their {total:,} contacts in {time.perf_counter() - started:.1f} s")
    return Seeded([account for account, _ in pairs], [contact for _, contact in pairs])


def sync_everything(bench: Bench) -> None:
    """Every stream's cycles in dependency order (fast profile) until one writes nothing: links and watermarks set."""
    ctx = setup_context(bench)
    for stream in ctx.mapping.ordered_entities():
        for number in range(1, 6):
            t0 = time.perf_counter()
            report = run_cycle(ctx, stream.name)
            if report.outcome == "failed":
                raise SystemExit(f"setup: {stream.name} cycle {number} failed: {report.error}")
            c = report.counts
            print(
                f"setup: {stream.name} cycle {number}: {report.outcome}, created={c.created:,} updated={c.updated:,} "
                f"skipped={c.skipped:,} failed={c.failed} in {time.perf_counter() - t0:.1f} s"
            )
            if report.complete and writes_of(report) == 0:
                break
        else:
            raise SystemExit(f"setup: {stream.name} did not settle: the sync kept writing")
        errors = bench.state.errors.count(stream.name)
        if errors:
            raise SystemExit(f"setup: {stream.name} has {errors} record errors")
    ctx.marketo.close()


def change(bench: Bench, table: str, ids: list[str], column: str, tag: str) -> list[str]:
    values = [f"{tag}-{i}" for i in range(len(ids))]
    rows = [{f"{table}id": record_id, column: value} for record_id, value in zip(ids, values, strict=True)]
    failed = [r for r in bench.sales.update_multiple(table, rows) if r.error is not None]
    if failed:
        raise SystemExit(f"salesperson update of {len(failed)} {table} rows failed: {failed[0].error}")
    return values


def warm_up(bench: Bench, ctx: SyncContext, seeded: Seeded) -> None:
    """A new worker's first cycles (fast profile): one account and its contact changed, a cycle of every stream, then
    the persons' echo (tokens, metadata and option sets are cached for the process's life)."""
    change(bench, "account", seeded.accounts[-1:], "telephone1", "warm")
    change(bench, "contact", seeded.contacts[-1:], "jobtitle", "warm")
    streams = ctx.mapping.ordered_entities()
    for stream in [*streams, *(s for s in streams if s.is_persons)]:
        report = run_cycle(ctx, stream.name)
        if report.outcome == "failed":
            raise SystemExit(f"warm-up: {stream.name} failed: {report.error}")
    print("setup: the timer's context warmed up: one changed account and contact, a cycle of every stream")


# --- the report -------------------------------------------------------------------------------------------------------
def by_object(m: Measured) -> dict[str, int]:
    return dict(sorted(m.mk_log.get("by_object", {}).items()))


def dv_reads_of(m: Measured) -> dict[str, int]:
    """Dataverse reads (sync app) by operation and table."""
    return {
        key: n
        for key, n in sorted(m.dv_log["by_table_operation"].items())
        if key.split(":")[0] in ("Retrieve", "RetrieveMultiple", "RetrieveEntityChanges")
    }


def reference_reads(dv_log: dict[str, Any], mk_log: dict[str, Any]) -> tuple[int, int, int]:
    """(Dataverse reads by id of any row, Dataverse queries of a reference target table, Marketo reads of sales persons
    or companies) in one cycle. The references come from the link state: all three should be 0 with every target
    linked; a per-record resolution would show about one call per record."""
    dv_by_id = sum(n for key, n in dv_log["by_table_operation"].items() if key.split(":")[0] == "Retrieve")
    dv_targets = sum(
        n
        for key, n in dv_log["by_table_operation"].items()
        if key in {f"RetrieveMultiple:{t}" for t in REFERENCE_TABLES}
    )
    mk_targets = sum(
        n
        for key, n in mk_log.get("by_object", {}).items()
        if key.split(".")[0] in REFERENCE_OBJECTS and key.split(".")[1] not in ("sync", "delete")
    )
    return dv_by_id, dv_targets, mk_targets


def per_record_resolution(dv_by_id: int, dv_targets: int, mk_targets: int) -> bool:
    """Any read by id or of Marketo's targets, or more than one batched query per target table, is per record."""
    return dv_by_id > 0 or mk_targets > 0 or dv_targets > len(REFERENCE_TABLES)


def print_measured(m: Measured, stream: str, n: int, written_object: str) -> dict[str, Any]:
    r, c = m.report, m.report.counts
    least = math.ceil(n / MARKETO_BATCH)
    objects = by_object(m)
    writes = sum(v for k, v in objects.items() if k.startswith(f"{written_object}.") and k.split(".")[1] == "sync")
    if written_object == "persons":  # persons are written by Sync Leads, which by_object may not name
        writes = m.mk_writes
    dv_least = max(1, math.ceil(n / DATAVERSE_PAGE))
    dv_total = m.dv_reads + m.dv_writes
    dv_by_id, dv_targets, mk_targets = reference_reads(m.dv_log, m.mk_log)
    per_record = per_record_resolution(dv_by_id, dv_targets, mk_targets)
    print(f"\n== {stream} cycle: {n:,} changed rows ==")
    print(
        f"  outcome={r.outcome} complete={r.complete}  counts: read={c.read:,} created={c.created:,} "
        f"updated={c.updated:,} unchanged={c.unchanged:,} skipped={c.skipped:,} failed={c.failed}"
    )
    print(f"  wall {m.wall:.1f} s; Marketo rate-window wait (client) {m.mk_window_wait:.1f} s")
    print(
        f"  Marketo writes to {written_object}: {writes} vs minimum ceil({n:,}/300) = {least}, "
        f"ratio {writes / least:.2f}  aim (<= 1.10 x): {verdict(writes, 1.1 * least)}"
    )
    print(f"  Marketo calls: {m.mk_reads} reads, {m.mk_writes} writes (identity excluded)")
    print(f"    by object:   {objects}")
    print(f"    by endpoint: {dict(sorted(m.mk_log['by_endpoint'].items()))}  codes {m.mk_log['by_code']}")
    print(
        f"  Dataverse calls: {dv_total} ({m.dv_reads} reads, {m.dv_writes} writes; least {dv_least} change pages)"
        f"  reads: {dv_reads_of(m)}"
    )
    print(
        f"  per-record reads to resolve references: {'YES' if per_record else 'none'} (Dataverse by id {dv_by_id}, "
        f"Dataverse queries of {'/'.join(REFERENCE_TABLES)} {dv_targets}, Marketo reads of "
        f"{'/'.join(REFERENCE_OBJECTS)} {mk_targets})  aim (none): {'met' if not per_record else 'MISSED'}"
    )
    print(
        f"  memory: RSS before {m.rss_before_kib / 1024:.0f} MiB, peak during the cycle {m.rss_peak_kib / 1024:.0f} MiB"
        f" (+{(m.rss_peak_kib - m.rss_before_kib) / 1024:.0f} MiB)"
    )
    if m.phases:
        print("  where the time went (inclusive; thread sums can exceed wall):")
        for line in engine_probe.phase_lines(m.phases, m.wall, PROBE_TARGETS):
            print("  " + line)
    return {
        "stream": stream,
        "wall": m.wall,
        "writes": writes,
        "least": least,
        "dv": dv_total,
        "dv_least": dv_least,
        "per_record": per_record,
        "peak_mib": m.rss_peak_kib / 1024,
        "ok": c.failed == 0 and r.complete,
    }


def print_idle(m: Measured, persons: bool) -> bool:
    dv_total, mk_total = m.dv_reads + m.dv_writes, m.mk_reads + m.mk_writes
    mk_aim = 2 if persons else 0  # a persons stream also reads Marketo's lead changes and deleted leads
    ok = dv_total <= 1 and mk_total <= mk_aim and writes_of(m.report) == 0
    print(
        f"  {m.label:<28} Dataverse {dv_total} (aim 1), Marketo {mk_total} (aim {mk_aim}), writes "
        f"{writes_of(m.report)}, wall {m.wall:.2f} s  {'met' if ok else 'MISSED'}"
        + ("" if ok else f"  {m.dv_log['by_operation']} {m.mk_log['by_endpoint']}")
    )
    return ok


# --- final state ------------------------------------------------------------------------------------------------------
def verify(
    bench: Bench, ctx: SyncContext, seeded: Seeded, phones: list[str], titles: list[str], sample: int
) -> list[str]:
    """A sample of companies (through the API, after the measured cycles) and of persons (uncounted controls)."""
    rng = random.Random(12)
    chosen = rng.sample(range(len(phones)), min(sample, len(phones)))
    problems = []
    accounts = [seeded.accounts[i] for i in chosen]
    found = ctx.marketo.crm("companies").query("externalCompanyId", accounts, ["externalCompanyId", "mainPhone"])
    companies = {str(r.values["externalCompanyId"]).lower(): r.values for r in found}
    for i in chosen:
        account, contact = seeded.accounts[i], seeded.contacts[i]
        if companies.get(account, {}).get("mainPhone") != phones[i]:
            problems.append(f"company {account}: mainPhone {companies.get(account, {}).get('mainPhone')!r}")
        link = bench.state.links.get_by_dynamics_id("contact", contact)
        if link is None:
            problems.append(f"contact {contact} has no link")
            continue
        person = bench.mk_person(link.marketo_id)
        if person.get("title") != titles[i] or str(person.get("externalCompanyId") or "").lower() != account:
            problems.append(
                f"contact {contact}: person {link.marketo_id} title {person.get('title')!r}, "
                f"externalCompanyId {person.get('externalCompanyId')!r} (want {titles[i]!r}, {account})"
            )
        if not person.get("externalSalesPersonId"):
            problems.append(f"contact {contact}: person {link.marketo_id} has no externalSalesPersonId")
    for stream in ctx.mapping.ordered_entities():
        errors = bench.state.errors.count(stream.name)
        if errors:
            problems.append(f"{stream.name}: {errors} record errors")
    print(f"\nfinal state: {len(chosen)} sampled accounts and contacts checked in Marketo, {len(problems)} problems")
    for problem in problems[:10]:
        print(f"  !! {problem}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--records", type=int, default=10_000, help="N: changed accounts, and their contacts (default 10,000)"
    )
    parser.add_argument(
        "--profile", choices=["realistic", "fast"], default="realistic", help="the measured cycles' (default realistic)"
    )
    parser.add_argument("--verify-sample", type=int, default=200, help="accounts and contacts checked in Marketo")
    parser.add_argument("--no-phases", action="store_true", help="do not time the engine's phases")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    n = args.records

    tmp = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    print(f"bench_streams: N={n:,} accounts and contacts, profile={args.profile}, tmp={tmp}")
    with bench_services(tmp, "realistic", args.keep) as (azurite, emulators):
        env_file = emulators.sync_env_file(tmp, azurite.connection_string, "bench" + uuid.uuid4().hex[:8])
        settings = load_settings(env_file)
        state = StateStore(service_client(azurite.connection_string), prefix=settings.sync_table_prefix)
        bench = Bench(emulators, settings, state, salesperson_client(emulators, settings), tmp)
        for name in ("dataverse", "marketo"):
            bench.control(name, "POST", "/reset")  # (Marketo's reset restores the start profile: switch after it)
        bench.set_profile("fast")
        seeded = seed(bench, n + 1)  # the last account and contact warm the timer's context up
        sync_everything(bench)
        ctx = build_context(settings, state)  # the timer's context, as a worker process builds it
        warm_up(bench, ctx, seeded)
        if not args.no_phases:
            bench.probe = engine_probe.install(PROBE_TARGETS)

        t0 = time.perf_counter()
        phones = change(bench, "account", seeded.accounts[:n], "telephone1", "p")
        titles = change(bench, "contact", seeded.contacts[:n], "jobtitle", "t")
        print(
            f"\nchanged {n:,} accounts (telephone1) and {n:,} contacts (jobtitle) in {time.perf_counter() - t0:.1f} s"
        )
        bench.set_profile(args.profile)
        wait_for_marketo_window()
        rows = []
        for name, written in zip(MEASURED, ("companies", "persons"), strict=True):
            m = measure(bench, ctx, f"{name} cycle", entity=name)
            rows.append(print_measured(m, name, n, written))
        wait_for_marketo_window()
        print("\n== echo and idle cycles ==")
        for stream in (s for s in ctx.mapping.ordered_entities() if s.is_persons):
            m = measure(bench, ctx, f"{stream.name} echo cycle", entity=stream.name)
            print(
                f"  {m.label:<28} writes {writes_of(m.report)} (aim 0): reads back the persons the contact cycle "
                f"wrote: Dataverse {m.dv_reads + m.dv_writes}, Marketo {m.mk_reads + m.mk_writes} "
                f"{dict(sorted(m.mk_log['by_endpoint'].items()))}"
            )
        idle_ok = [
            print_idle(measure(bench, ctx, f"{s.name} idle cycle", entity=s.name), s.is_persons)
            for s in ctx.mapping.ordered_entities()
        ]
        bench.set_profile("fast")
        problems = verify(bench, ctx, seeded, phones, titles, args.verify_sample)

        print(f"\n=== summary: N={n:,}, profile={args.profile} ===")
        print(
            f"{'stream':<9}{'wall s':>8}{'MK writes':>10}{'min':>5}{'aim':>7}{'DV calls':>9}{'min':>5}{'per-rec':>8}"
            f"{'peak MiB':>9}"
        )
        for row in rows:
            print(
                f"{row['stream']:<9}{row['wall']:>8.1f}{row['writes']:>10}{row['least']:>5}"
                f"{verdict(row['writes'], 1.1 * row['least']):>7}{row['dv']:>9}{row['dv_least']:>5}"
                f"{'YES' if row['per_record'] else 'none':>8}{row['peak_mib']:>9.0f}"
            )
        print(
            f"idle cycles: {sum(idle_ok)} of {len(idle_ok)} streams met their aim; final state "
            f"{'ok' if not problems else 'BAD'}"
        )


if __name__ == "__main__":
    main()
