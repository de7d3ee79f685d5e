"""The figures the Azure Monitor alert rules read (infra/main.bicep), written as log lines with stable names.

Each line is `<NAME> key=value key=value ...`: one name, then fields whose values hold no spaces. The Functions host
sends them to Application Insights as traces; the alert queries match the name and `extract` the fields. Renaming a
line or a field breaks its alert: tests/unit/test_infra.py checks that every query reads only what is written here.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("sync.metrics")

# One line per incremental cycle (timer): stream, outcome, complete (read to the end of the changes), synced
# (created + updated + deleted), failed, record_errors (stored for the stream after the cycle), marketo_calls,
# dynamics_calls.
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
