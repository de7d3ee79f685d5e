"""Running a full-sync job in this process (the CLI and the demo): drain its queue as the Functions host would, with
a progress display, until the job ends."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column

from sync.engine.context import SyncContext
from sync.engine.fullsync import JobView, process_message, view_job
from sync.state.queue import Delivery, WorkQueue

TERMINAL = ("succeeded", "failed", "cancelled")


def _describe(task: dict) -> str:
    # Folded, not cut, where the console is narrow (a pipe or a log is 80 columns to rich): every figure stays whole.
    return (
        f"{task['entity']} {task['direction']} {task['state']}: {task['pages_done']} pages, read {task['read']}, "
        f"created {task['created']}, updated {task['updated']}, failed {task['failed']}"
    )


def run_job_locally(
    ctx: SyncContext, queue: WorkQueue, job_id: str, console: Console, visibility_timeout: int = 10
) -> int:
    """Process messages until the job ends; 0 when it succeeded. A message a killed run left in flight reappears after
    `visibility_timeout` seconds, so a resumed run waits for it rather than stopping at an empty queue."""
    view = view_job(ctx, job_id)
    if view is None:
        console.print(f"[red]no job {job_id}[/]")
        return 2
    console.print(
        f"full sync job [bold]{job_id}[/]: {', '.join(view.entities)}, {view.direction}"
        + (" (dry run)" if view.dry_run else "")
    )
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", table_column=Column(ratio=1, overflow="fold")),
        BarColumn(bar_width=12),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bars = {(t["entity"], t["direction"]): progress.add_task(_describe(t), total=None) for t in view.tasks}

        def refresh() -> JobView:
            current = view_job(ctx, job_id)
            assert current is not None
            for task in current.tasks:
                bar = bars[(task["entity"], task["direction"])]
                total = task["expected_records"]
                progress.update(bar, description=_describe(task), completed=task["read"], total=total)
            return current

        def handle(delivery: Delivery) -> None:
            process_message(ctx, queue, delivery.message, delivery.dequeue_count)
            refresh()

        def failed(delivery: Delivery, exc: Exception) -> None:
            console.print(
                f"[yellow]{delivery.message.entity}/{delivery.message.phase} page {delivery.message.page}: "
                f"{type(exc).__name__}: {exc} (try {delivery.dequeue_count})[/]"
            )

        while (view := refresh()).state not in TERMINAL:
            if queue.drain(handle, visibility_timeout=visibility_timeout, on_error=failed) == 0:
                time.sleep(1)  # a message in flight elsewhere (or left by a killed run) is not visible yet
    console.print(f"job {job_id}: [bold]{view.state}[/]")
    for t in view.tasks:  # stacked: whole at 80 columns
        calls = ", ".join(f"{k} {v}" for k, v in sorted(t["api_calls"].items())) or "none"
        console.print(f"  {t['entity']} {t['direction']}: {t['state']}, {t['pages_done']} pages", highlight=False)
        console.print(
            f"    read {t['read']}, created {t['created']}, updated {t['updated']}, unchanged {t['unchanged']}",
            highlight=False,
        )
        console.print(f"    skipped {t['skipped']}, failed {t['failed']}; API calls: {calls}", highlight=False)
    if view.error:
        console.print(f"[red]{view.error}[/]")
    return 0 if view.state == "succeeded" else 1
