"""The status page, `GET /api/sync/dashboard`: one server-rendered HTML page (a Jinja2 template, autoescaped; no
front-end build, no script) of the streams, the newest record errors and the full-sync jobs.

Its buttons are forms that post back to the page's own URL (`POST /api/sync/dashboard`, the same function key in the
query string, so the page never writes the key into its HTML); the answer is the page again, with what was done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape

from sync import record_errors
from sync.record_errors import ErrorQuery, ErrorQueryError
from sync.state import RecordError, StateStore
from sync.status import StatusReport, collect_status, duration, when

if TYPE_CHECKING:
    from sync.engine.context import SyncContext

NEWEST_ERRORS = 20
CHART_WIDTH, CHART_HEIGHT = 120, 28

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Marketo - Dynamics sync status</title>
{% if refresh %}<meta http-equiv="refresh" content="300">{% endif %}
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1f24; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } th, td { padding: .3em .6em; border-bottom: 1px solid #d0d7de; text-align: left;
  vertical-align: top; } th { background: #f6f8fa; }
.state-idle { color: #1a7f37; } .state-failing, .state-partial { color: #cf222e; } .state-running { color: #0969da; }
.notice { background: #ddf4ff; padding: .5em .8em; border-radius: 4px; }
.halt { background: #ffebe9; color: #cf222e; padding: .5em .8em; border-radius: 4px; }
.state-writing-stopped { color: #cf222e; font-weight: bold; }
.muted { color: #57606a; } form { display: inline; }
svg.chart { display: block; background: #eef2f6; } svg.chart rect { fill: #0969da; }
</style>
</head>
<body>
<h1>Marketo - Dynamics sync</h1>
{% if notice %}<p class="notice" id="notice">{{ notice }}</p>{% endif %}
{% for halt in report.halts %}<p class="halt">Writing stopped ({{ halt.system }}, {{ when(halt.detected_at) }}):
{{ halt.reason }}. Run <code>python -m sync relink --after-refresh</code> (or POST /api/sync/relink).</p>{% endfor %}
<p id="summary">Generated {{ when(report.generated_at) }}.
Marketo calls today: <strong id="marketo-calls">{{ report.marketo_calls_today }}</strong>
{% if report.marketo_call_budget %} of {{ report.marketo_call_budget }}{% endif %} (this sync).
Dataverse 429s today: <strong id="dynamics-429s">{{ report.dynamics_429s_today }}</strong>.</p>

<h2>Streams</h2>
<table id="streams">
<tr><th>Stream</th><th>State</th><th>Waiting</th><th>Oldest waiting</th><th>Last hour</th><th>24 h</th>
<th>ETA</th><th>Last run</th><th>Last success</th><th>Errors</th></tr>
{% for e in report.entities %}
<tr data-stream="{{ e.entity }}">
<td class="stream">{{ e.entity }}</td>
<td class="state state-{{ e.state.replace(' ', '-') }}">{{ e.state }}{% if e.lease_holder %}
<div class="muted">lease: {{ e.lease_holder }}</div>{% endif %}{% if e.resumes_at %}
<div class="muted">resumes {{ when(e.resumes_at) }}</div>{% endif %}</td>
<td class="backlog">{% for b in e.backlog %}<div data-system="{{ b.system }}" title="{{ b.note }}">
{{ b.direction }}: {{ b.label }}</div>{% else %}<span class="muted">not measured</span>{% endfor %}</td>
<td class="oldest">{{ age(e.oldest_waiting_age_seconds) if e.oldest_waiting_at else "none" }}</td>
<td class="throughput"><svg class="chart" width="{{ chart_width }}" height="{{ chart_height }}" role="img"
aria-label="records synced per 5 minutes in the last hour" data-values="{{ e.throughput_last_hour | join(',') }}">
{% for b in bars(e.throughput_last_hour) %}<rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.w }}" height="{{ b.h }}">
<title>{{ b.v }} records</title></rect>{% endfor %}</svg><div class="synced-hour">{{ e.synced_last_hour }}</div></td>
<td class="synced-day">{{ e.synced_last_24h }}</td>
<td class="eta">{{ age(e.eta_seconds) }}</td>
<td class="last-run">{{ when(e.last_run_at) }}{% if e.last_runs %}<div class="muted">{{ e.last_runs[0].outcome }}</div>
{% endif %}</td>
<td class="last-success">{{ when(e.last_success_at) }}</td>
<td class="errors">{{ e.error_count }}</td>
</tr>
{% endfor %}
</table>

<h2>Newest record errors</h2>
{% if errors %}
<table id="errors">
<tr><th>Stream</th><th>System</th><th>Record</th><th>Operation</th><th>Code</th><th>Message</th><th>Attempts</th>
<th>Last seen</th><th></th></tr>
{% for e in errors %}
<tr class="error" data-record="{{ e.record_id }}">
<td>{{ e.entity }}</td><td>{{ e.system }}</td><td class="record">{{ e.record_id }}</td><td>{{ e.operation }}</td>
<td class="code">{{ e.code or "" }}</td><td class="message">{{ e.message }}</td><td>{{ e.attempts }}</td>
<td>{{ when(e.last_seen) }}</td>
<td>{% for action, label in (("retry", "Retry"), ("dismiss", "Dismiss")) %}<form method="post">
<input type="hidden" name="action" value="{{ action }}"><input type="hidden" name="stream" value="{{ e.entity }}">
<input type="hidden" name="system" value="{{ e.system }}">
<input type="hidden" name="record_id" value="{{ e.record_id }}">
<button type="submit" class="{{ action }}">{{ label }}</button></form>{% endfor %}</td>
</tr>
{% endfor %}
</table>
{% else %}<p id="no-errors" class="muted">No record errors.</p>{% endif %}

<h2>Full-sync jobs</h2>
{% if report.jobs %}
<table id="jobs">
<tr><th>Job</th><th>State</th><th>Streams</th><th>Progress</th><th>ETA</th></tr>
{% for job in report.jobs %}
<tr class="job" data-job="{{ job.job_id }}">
<td>{{ job.job_id }}{% if job.dry_run %} <span class="muted">(dry run)</span>{% endif %}</td>
<td class="job-state">{{ job.state }}</td><td>{{ job.entities | join(", ") }} ({{ job.direction }})</td>
<td>{% for t in job.tasks %}<div class="task">{{ t.entity }} {{ t.direction }}: {{ t.state }}, read {{ t.read }}
{% if t.expected_records %}<progress max="{{ t.expected_records }}" value="{{ t.read }}"></progress>
{{ t.percent }}%{% endif %}</div>{% endfor %}</td>
<td>{{ age(job.eta_seconds) if job.eta_seconds is not none else "" }}</td>
</tr>
{% endfor %}
</table>
{% else %}<p id="no-jobs" class="muted">No full-sync jobs.</p>{% endif %}
</body>
</html>
"""


def _bars(values: list[int]) -> list[dict[str, float]]:
    """The last hour's throughput as SVG bar geometry, one bar per 5 minutes, oldest first."""
    peak = max(values, default=0) or 1
    width = CHART_WIDTH / max(1, len(values))
    bars = []
    for i, value in enumerate(values):
        height = round(CHART_HEIGHT * value / peak, 1)
        bars.append(
            {"x": round(i * width, 1), "y": CHART_HEIGHT - height, "w": round(width - 1, 1), "h": height, "v": value}
        )
    return bars


_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_ENV.globals.update(when=when, age=duration, bars=_bars, chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT)
_PAGE = _ENV.from_string(_TEMPLATE)


def render(report: StatusReport, errors: list[RecordError], notice: str | None = None, refresh: bool = True) -> str:
    return _PAGE.render(report=report, errors=errors, notice=notice, refresh=refresh)


def page(
    state: StateStore,
    streams: list[str],
    ctx: SyncContext | None,
    marketo_call_budget: int | None,
    notice: str | None = None,
) -> str:
    """The whole page from the current state; with a context the backlog is measured (a few reads per stream)."""
    report = collect_status(state, streams, ctx=ctx, marketo_call_budget=marketo_call_budget)
    errors = record_errors.find(state, ErrorQuery(), limit=NEWEST_ERRORS)
    return render(report, errors, notice, refresh=notice is None)


def act(ctx: SyncContext, values: Mapping[str, Any]) -> str:
    """A button of the page: retry or dismiss one error (stream, system, record_id). Returns what was done."""
    action = values.get("action")
    if action not in ("retry", "dismiss"):
        raise ErrorQueryError(f"action: retry or dismiss, not {action!r}")
    query = ErrorQuery.parse(values, http=True)
    if not (query.stream and query.system and query.record_id):
        raise ErrorQueryError("a button names one error: stream, system and record_id")
    if action == "dismiss":
        removed = record_errors.dismiss(ctx.state, query)
        return f"Dismissed {removed} error of {query.stream} record {query.record_id}."
    outcomes = record_errors.retry(ctx, query)
    if not outcomes:
        return f"No error of {query.stream} record {query.record_id} to retry."
    outcome = outcomes[0]
    result = "synced" if outcome.resolved else f"still failing ({outcome.detail or outcome.cycle})"
    return f"Retried {query.stream} record {query.record_id}: {result}."
