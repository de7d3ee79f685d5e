"""The figures the Azure Monitor alert rules read (infra/main.bicep), written as log lines with stable names.

Each line is `<NAME> key=value key=value ...`: one name, then fields whose values hold no spaces. The Functions host
sends them to Application Insights as traces; the alert queries match the name and `extract` the fields. Renaming a
line or a field breaks its alert: tests/unit/test_infra.py checks that every query reads only what is written here.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.engine.context import SyncContext
    from sync.engine.cycle import CycleReport

log = logging.getLogger("sync.metrics")

# One line per incremental cycle (timer): stream, outcome, complete (read to the end of the changes), synced
# (created + updated + deleted), failed, record_errors (stored for the stream after the cycle), marketo_calls,
# dynamics_calls, dynamics_429s (Dataverse's service protection answers).
CYCLE = "SYNC_CYCLE"
CYCLE_FIELDS = (
    "stream",
    "outcome",
    "complete",
    "synced",
    "failed",
    "record_errors",
    "marketo_calls",
    "dynamics_calls",
    "dynamics_429s",
)
# One line per full-sync queue message: job, stream, phase, state (the job's, after the message), marketo_calls.
FULL_SYNC = "SYNC_FULL_SYNC"
FULL_SYNC_FIELDS = ("job", "stream", "phase", "state", "marketo_calls")
LINES = {CYCLE: CYCLE_FIELDS, FULL_SYNC: FULL_SYNC_FIELDS}

_SPACE = re.compile(r"\s+")


def metric_line(name: str, **fields: object) -> str:
    """The line for `name`, with exactly its documented fields in their order."""
    expected = LINES[name]
    if set(fields) != set(expected):
        raise ValueError(f"{name} takes the fields {', '.join(expected)}, got {', '.join(fields)}")
    values = []
    for key in expected:
        value = fields[key]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        values.append(f"{key}={_SPACE.sub('_', text) or '-'}")
    return " ".join([name, *values])


def write(name: str, level: int = logging.INFO, **fields: object) -> str:
    line = metric_line(name, **fields)
    log.log(level, line)
    return line


THROTTLED = "dynamics_429"  # the key of a run's api_calls that counts Dataverse's 429 answers


def run_cycle_counted(ctx: SyncContext, stream: str, dry_run: bool = False) -> CycleReport:
    """run_cycle, and the Dataverse 429s it met added to its run's api_calls (as THROTTLED), where status reads them."""
    from sync.engine.cycle import run_cycle

    before = ctx.dynamics.throttled.total()
    report = run_cycle(ctx, stream, dry_run=dry_run)
    throttled = ctx.dynamics.throttled.total() - before
    if throttled and not dry_run:
        report.api_calls[THROTTLED] = throttled
        run = next((r for r in ctx.state.runs.recent(stream, limit=5) if r.run_id == report.run_id), None)
        if run is not None:
            ctx.state.runs.record(run.model_copy(update={"api_calls": {**run.api_calls, THROTTLED: throttled}}))
    return report
