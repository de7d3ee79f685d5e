"""`python -m sync`: the operator's command line. Every command accepts `--env-file PATH` (dotenv) for the settings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from rich.console import Console
from rich.markup import escape

from sync.engine.cycle import CycleReport
from sync.engine.plan import PairPlan
from sync.mapping.model import MappingError, load_mapping
from sync.record_errors import ErrorQuery
from sync.settings import Settings, SettingsError, load_settings
from sync.state import RecordError, StateStore
from sync.status import StatusReport, collect_status
from sync.status import duration as _duration
from sync.status import when as _when

Command = Callable[[argparse.Namespace, Console], int]


def _state(args: argparse.Namespace) -> StateStore:
    return StateStore.from_settings(_settings(args))


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.env_file)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    settings = _settings(args)
    state = StateStore.from_settings(settings)
    ctx = None
    if not args.no_backlog:
        from sync.engine.context import build_context

        ctx = build_context(settings, state)
    report = collect_status(
        state, stream_names(settings), ctx=ctx, marketo_call_budget=settings.marketo_daily_call_budget
    )
    if args.json:
        console.print_json(report.model_dump_json())
        return 0
    print_status(report, console)
    return 0


def print_status(report: StatusReport, console: Console) -> None:
    """Stacked lines rather than a wide table: every value whole at 80 columns and in a log (no terminal)."""
    out = partial(console.print, highlight=False)
    budget = report.marketo_call_budget
    share = f" of {budget} ({100 * report.marketo_calls_today / budget:.0f}%)" if budget else ""
    out(f"[bold]Sync status[/] at {_when(report.generated_at)}")
    for halt in report.halts:
        out(
            f"[red]WRITING STOPPED[/] ({halt.system}, {_when(halt.detected_at)}): {escape(halt.reason)}; "
            "run `python -m sync relink --after-refresh`"
        )
    out(f"Marketo calls today: {report.marketo_calls_today}{share}, by this sync since 00:00 US Central")
    out(f"Dataverse 429s today: {report.dynamics_429s_today}")
    if not report.backlog_measured:
        out("Backlog: not measured (--no-backlog)")
    for job in report.jobs:
        eta = f", ETA {_duration(job.eta_seconds)}" if job.eta_seconds is not None else ""
        out(f"Full sync {job.job_id}: {job.state}{eta} ({job.direction}{', dry run' if job.dry_run else ''})")
        for t in job.tasks:
            of = f" of {t.expected_records} ({t.percent}%)" if t.expected_records else ""
            out(f"  {t.entity} {t.direction}: {t.state}, read {t.read}{of}, {t.pages_done} pages")
        if job.error:
            out(f"  [red]{escape(job.error)}[/]")
    for e in report.entities:
        out("")
        out(f"[bold]{e.entity}[/]: {e.state}, {e.error_count} record errors")
        for b in e.backlog:
            oldest = f", oldest {_when(b.oldest_at)}" if b.oldest_at and b.count else ""
            out(f"  waiting in {b.system} ({b.direction}): {b.label}{oldest}")
            out(f"    {escape(b.note)}; {b.calls} calls")
        if e.backlog:
            age = _duration(e.oldest_waiting_age_seconds) + " ago" if e.oldest_waiting_at else "none"
            out(f"  oldest waiting change: {age}; ETA {_duration(e.eta_seconds)}")
        out(f"  synced: {e.synced_last_hour} in the last hour, {e.synced_last_24h} in 24 h")
        out(f"  last run: {_when(e.last_run_at)}")
        out(f"  last successful cycle: {_when(e.last_success_at)}")
        for cursor in e.cursors:
            state = "set" if cursor.has_cursor else "none"
            out(f"  {cursor.system} watermark: {state}, advanced {_when(cursor.updated_at)}")
        if e.lease_holder:
            out(f"  lease: {escape(e.lease_holder)} until {_when(e.lease_expires_at)}")
        if e.dynamics_429s_24h:
            out(f"  Dataverse 429s in 24 h: {e.dynamics_429s_24h}")
        newest = next((run for run in e.last_runs if run.skipped_reasons), None)
        for reason, count in (newest.skipped_reasons if newest else {}).items():
            out(f"  skipped ({_when(newest.started_at) if newest else ''}): {count} {escape(reason)}")
        if e.resumes_at:
            out(f"  the day's Marketo calls are spent: resumes at {e.resumes_at.isoformat()}")
        if e.last_runs:
            out("  recent runs:")
        for run in e.last_runs:
            c = run.counts
            out(f"    {_when(run.started_at)} {run.kind} {run.outcome}")
            calls = ", ".join(f"{k} {v}" for k, v in sorted(run.api_calls.items())) or "none"
            out(
                f"      read {c.read}, created {c.created}, updated {c.updated}, deleted {c.deleted}, failed {c.failed}"
            )
            out(f"      calls: {calls}")
            if run.error:
                out(f"      {escape(run.error)}")


def stream_names(settings: Settings) -> list[str]:
    return [stream.name for stream in load_mapping(settings.sync_mapping_file).ordered_entities()]


def _error_query(args: argparse.Namespace) -> ErrorQuery:
    return ErrorQuery(stream=args.stream, system=args.system, code=args.code, text=args.text, record_id=args.record)


def cmd_errors(args: argparse.Namespace, console: Console) -> int:
    from sync import record_errors

    state = _state(args)
    query = _error_query(args)
    if args.dismiss:
        removed = record_errors.dismiss(state, query)
        console.print(f"dismissed {removed} record errors")
        return 0
    if args.retry:
        from sync.engine.context import build_context

        outcomes = record_errors.retry(build_context(_settings(args), state), query)
        for o in outcomes:
            line = f"{o.stream}: retried {o.selected}, resolved {o.resolved} (cycle {o.cycle})"
            console.print(line + (f": {escape(o.detail)}" if o.detail else ""))
        if not outcomes:
            console.print("no record errors match")
        return 0 if all(o.selected == o.resolved for o in outcomes) else 1
    errors = record_errors.find(state, query, args.limit)
    if args.json:
        console.print_json(json.dumps([e.model_dump(mode="json") for e in errors]))
        return 0
    if args.csv:
        sys.stdout.write(record_errors.to_csv(errors))
        return 0
    print_errors(errors, console)
    return 0


def print_errors(errors: list[RecordError], console: Console) -> None:
    """One stacked block per error, so that ids, codes and messages read whole at 80 columns and in a log."""
    console.print(f"[bold]{len(errors)} record errors[/]")
    for e in errors:
        last = e.last_seen.isoformat(timespec="seconds") if e.last_seen else "never"
        console.print(f"{e.entity} {e.system} record {escape(e.record_id)} ({e.direction})", highlight=False)
        console.print(
            f"  {e.operation} failed, code {escape(e.code or 'none')}, {e.attempts} attempts, last seen {last}",
            highlight=False,
        )
        console.print(f"  {escape(e.message)}", highlight=False)


def print_cycle(report: CycleReport, console: Console) -> None:
    c = report.counts
    colour = {"succeeded": "green", "partial": "yellow", "skipped": "yellow"}.get(report.outcome, "red")
    console.print(
        f"[bold]{report.entity}[/]: [{colour}]{report.outcome}[/]  read {c.read}  created {c.created}  "
        f"updated {c.updated}  deleted {c.deleted}  unchanged {c.unchanged}  skipped {c.skipped}  failed {c.failed}  "
        f"conflicts {len(report.conflicts)}  API calls: "
        + ", ".join(f"{system} {n}" for system, n in sorted(report.api_calls.items()))
    )
    if report.error:
        console.print(f"  [red]{report.error}[/]")
    if not report.complete:
        console.print("  stopped at its time budget; the next run continues where this one stopped")


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    """Exactly what the timers run: one incremental cycle per entity, under its lease."""
    from sync.engine.context import build_context
    from sync.metrics import run_cycle_counted

    settings = _settings(args)
    ctx = build_context(settings)
    names = [e.name for e in ctx.mapping.ordered_entities()] if args.entity == "all" else [args.entity]
    worst = 0
    for name in names:
        report = run_cycle_counted(ctx, name, dry_run=args.dry_run)
        print_cycle(report, console)
        if args.dry_run:
            for plan in report.plans:
                if plan.writes or plan.error:
                    shown = (
                        plan.shown()
                        if isinstance(plan, PairPlan)
                        else plan.model_dump(exclude_none=True, exclude_defaults=True)
                    )
                    console.print(f"  would {plan.outcome}: {shown}")
        worst = max(worst, {"succeeded": 0, "skipped": 0, "partial": 1}.get(report.outcome, 2))
    return worst


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    """Everything the sync needs, on both systems and in storage (metadata calls only); 1 if anything is missing."""
    from sync.check import print_report, run_check

    report = run_check(_settings(args))
    if args.json:
        console.print_json(report.model_dump_json())
    else:
        print_report(report, console)
    return report.exit_code


def cmd_full(args: argparse.Namespace, console: Console) -> int:
    """The full sync, in-process: start the job (or resume one) and drain its queue here with a progress display."""
    from sync.engine.context import build_context
    from sync.engine.fullsync import FullSyncConflict, FullSyncRejected, FullSyncRequest, start_full_sync
    from sync.fulljob import run_job_locally
    from sync.state.queue import WorkQueue

    settings = _settings(args)
    ctx = build_context(settings)
    queue = WorkQueue.from_settings(settings)
    if args.resume:
        job_id = args.resume
    else:
        request = FullSyncRequest(
            entities=args.entity or None, direction=args.direction, dry_run=args.dry_run, since=args.since
        )
        try:
            job_id = start_full_sync(ctx, queue, request).job_id
        except FullSyncRejected as exc:
            console.print(f"[red]error:[/] {exc}")
            return 2
        except FullSyncConflict as exc:
            console.print(f"[red]{exc}[/]; resume it with --resume <job id>, or cancel it first")
            return 1
    return run_job_locally(ctx, queue, job_id, console)


def cmd_relink(args: argparse.Namespace, console: Console) -> int:
    """Re-baseline after a Dynamics sandbox refresh or a Marketo sandbox reset (sync/relink.py), then run the full
    sync it starts here (or leave it to the queue worker with --no-wait)."""
    from sync.engine.context import build_context
    from sync.fulljob import run_job_locally
    from sync.relink import RelinkRejected, relink_after_refresh
    from sync.state.queue import WorkQueue

    if not args.after_refresh:
        console.print("[red]error:[/] relink re-baselines every link; confirm with --after-refresh")
        return 2
    settings = _settings(args)
    ctx = build_context(settings)
    queue = WorkQueue.from_settings(settings)
    try:
        report = relink_after_refresh(ctx, queue)
    except RelinkRejected as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    if args.json:
        console.print_json(report.model_dump_json())
    else:
        for halt in report.halts:
            console.print(f"was stopped: {halt.system}: {halt.reason}")
        for s in report.persons:
            console.print(
                f"{s.entity}: {s.records} records; paired {s.proven} by proven link values, {s.by_email} by e-mail, "
                f"{s.unpaired} unpaired; Dynamics {s.dynamics_rewritten} rewritten, {s.dynamics_cleared} cleared; "
                f"Marketo {s.marketo_rewritten} rewritten, {s.marketo_cleared} cleared"
            )
            for error in s.errors:
                console.print(f"  [red]{error}[/]")
        for o in report.orphans:
            console.print(
                f"{o.entity}: {o.count} {o.marketo_object} keyed on ids gone from Dynamics are kept ({o.key_field})"
            )
        console.print(f"dropped {sum(report.links_dropped.values())} links, {report.watermarks_dropped} watermarks")
        console.print(f"full sync {report.job_id} started")
    if args.no_wait or report.job_id is None:
        return 0
    return run_job_locally(ctx, queue, report.job_id, console)


def cmd_reconcile(args: argparse.Namespace, console: Console) -> int:
    """Drift of a one-way stream: Dataverse's keys read back from Marketo; --repair writes the difference.
    0: no drift (or all of it repaired), 1: drift left."""
    from sync.engine.context import build_context
    from sync.engine.reconcile import reconcile

    ctx = build_context(_settings(args))
    report = reconcile(ctx, args.entity, repair=args.repair)
    if args.json:
        console.print_json(report.model_dump_json())
    else:
        counts = report.counts()
        summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("missing", "extra", "different"))
        console.print(f"[bold]{report.entity}[/]: {report.compared} compared; {summary}")
        for drift in report.drift[: args.limit]:
            console.print(f"  {drift.kind.upper():9} {drift.key}")
            for name, (dynamics, marketo) in drift.fields.items():
                console.print(f"            {name}: Dynamics {dynamics!r}, Marketo {marketo!r}")
        if len(report.drift) > args.limit:
            console.print(f"  ... and {len(report.drift) - args.limit} more (--limit, or --json for all)")
        for why, count in report.not_compared.items():
            console.print(f"  not compared: {count} ({why})")
        if report.repair:
            console.print(f"repaired {report.repaired}; kept {report.kept} (on_delete: keep)")
        for failure in report.failed:
            console.print(f"  [red]{failure}[/]")
    if report.failed:
        return 1
    return 0 if report.repair or not report.drift else 1


def cmd_migrate_links(args: argparse.Namespace, console: Console) -> int:
    """Move links from the old table (either earlier layout) into their hash buckets' tables (sync/state/links.py):
    idempotent and resumable, so after a crash it is run again. 0: nothing left in the old layout (or, with --dry-run,
    nothing to move); 1: a dry run found rows to move."""
    from sync.state.links import BUCKETS

    settings = _settings(args)
    state = StateStore.from_settings(settings)
    names = list(dict.fromkeys([*stream_names(settings), *(args.entity or [])]))
    verb = "would move" if args.dry_run else "moved"
    found = 0
    for name in names:
        migration = state.links.migrate_legacy(name, dry_run=args.dry_run)
        rows = migration.dynamics_rows + migration.marketo_rows
        found += rows
        if rows:
            console.print(
                f"{name}: {verb} {migration.dynamics_rows} Dynamics-keyed and {migration.marketo_rows} "
                f"Marketo-keyed link rows into {BUCKETS} buckets per side",
                highlight=False,
            )
        else:
            console.print(f"{name}: nothing in the old layout", highlight=False)
    if args.dry_run:
        console.print(f"dry run: nothing written; {found} rows to move", highlight=False)
        return 1 if found else 0
    console.print(f"done: {found} rows moved", highlight=False)
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from sync.demo import run_demo

    return run_demo(console)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", default=argparse.SUPPRESS, help="dotenv file with the app settings")
    parser = argparse.ArgumentParser(prog="python -m sync", description=__doc__, parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)

    status = commands.add_parser("status", parents=[common], help="backlog, throughput, last runs, quota, jobs")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--no-backlog", action="store_true", help="do not read Dataverse and Marketo to measure the backlog"
    )
    status.set_defaults(handler=cmd_status)

    errors = commands.add_parser("errors", parents=[common], help="find, export, retry or dismiss record errors")
    errors.add_argument("--stream", "--entity", dest="stream", help="only this stream's errors (e.g. lead)")
    errors.add_argument("--system", choices=["dynamics", "marketo"], help="the system holding the failing record")
    errors.add_argument("--code", help="the service's error code, e.g. 1006 or 0x80040237")
    errors.add_argument("--text", help="a piece of the message, record id or code (any case)")
    errors.add_argument("--record", help="one record id (with --stream and --system: one error)")
    errors.add_argument("--limit", type=int, help="at most this many, the most recently seen first")
    output = errors.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="export as CSV on stdout")
    output.add_argument("--retry", action="store_true", help="retry the matching errors now (runs their streams)")
    output.add_argument("--dismiss", "--clear", dest="dismiss", action="store_true", help="remove the matching errors")
    errors.set_defaults(handler=cmd_errors)

    run = commands.add_parser("run", parents=[common], help="one incremental cycle, as the timers run it")
    run.add_argument("--entity", default="all", help="a stream of the mapping (e.g. account, lead) or all (default)")
    run.add_argument("--dry-run", action="store_true", help="plan and print, write nothing")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check", parents=[common], help="verify the columns, fields and access the sync needs")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_check)

    full = commands.add_parser("full", parents=[common], help="the initial full sync, run here with a progress bar")
    full.add_argument("--entity", action="append", help="a stream to sync (repeat; default: all, in dependency order)")
    full.add_argument("--direction", choices=["both", "to_marketo", "to_dynamics"], default="both")
    full.add_argument("--dry-run", action="store_true", help="report what would be written, write nothing")
    full.add_argument(
        "--since",
        type=datetime.fromisoformat,
        help="oldest Marketo person to read, by Bulk Extract from that date (default: all)",
    )
    full.add_argument("--resume", metavar="JOB_ID", help="continue a job that was interrupted")
    full.set_defaults(handler=cmd_full)

    relink = commands.add_parser(
        "relink", parents=[common], help="re-baseline after a Dynamics sandbox refresh or a Marketo sandbox reset"
    )
    relink.add_argument("--after-refresh", action="store_true", help="required: confirms the re-baseline")
    relink.add_argument("--no-wait", action="store_true", help="leave the full sync it starts to the queue worker")
    relink.add_argument("--json", action="store_true")
    relink.set_defaults(handler=cmd_relink)

    reconcile = commands.add_parser(
        "reconcile", parents=[common], help="drift of a one-way stream (companies, opportunities, ...) in Marketo"
    )
    reconcile.add_argument("--entity", required=True, help="a one-way stream of the mapping, e.g. account")
    reconcile.add_argument("--repair", action="store_true", help="write the difference to Marketo")
    reconcile.add_argument("--json", action="store_true")
    reconcile.add_argument("--limit", type=int, default=50, help="drift lines to print (default 50)")
    reconcile.set_defaults(handler=cmd_reconcile)

    migrate = commands.add_parser(
        "migrate-links",
        parents=[common],
        help="move links of earlier versions (one links table) into a table per hash bucket",
    )
    migrate.add_argument("--dry-run", action="store_true", help="count the rows to move, write nothing")
    migrate.add_argument(
        "--entity", action="append", help="also an entity no longer in the mapping (repeat; the mapping's always)"
    )
    migrate.set_defaults(handler=cmd_migrate_links)

    demo = commands.add_parser("demo", parents=[common], help="run everything locally on Azurite and the emulators")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "env_file"):
        args.env_file = None
    console = console or Console()
    handler: Command = args.handler
    try:
        return handler(args, console)
    except (SettingsError, MappingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
