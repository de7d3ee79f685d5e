"""How long Marketo's bulk jobs run, learned from the jobs seen: when to poll one next.

Marketo answers a status poll with where a job is (queued, running, done), never when it will end. A poll too early
is a call spent; one too late is time lost. So each kind of job learns `run = fixed + per_row x rows` from the runs
it has seen (an export's startedAt/finishedAt, an import's progress between two polls), and until it has seen one it
borrows what another kind learned (imports and exports run on the same machinery).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

KEEP = 8  # the latest runs fitted: Marketo's pace drifts with its load
# Of an export's run, when only runs of one size were seen, the share taken as the fixed start of any export: an
# export's run is timed from Marketo's startedAt to its finishedAt, and every bulk job pays a start whatever its rows
# (minutes at times on the real service), so all of it per row would poll a small export again and again, and a big
# one late. Two sizes seen, the line through them decides. (An import's run is learned from its pace while it runs,
# rows a second, which is per row by nature.)
EXPORT_ONE_SIZE_START = 1 / 3


@dataclass
class RunTimes:
    prior: RunTimes | None = None
    seen: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=KEEP))
    one_size_start: float = 0.0  # of a run, the fixed start assumed while runs of one size were seen (fit)

    def learn(self, rows: int, seconds: float) -> None:
        if rows > 0 and seconds > 0:
            self.seen.append((rows, seconds))

    def run(self, rows: int) -> float | None:
        """Expected seconds from a job's start to its end for `rows` rows; None before any run was seen. Runs of
        one size cannot tell a job's fixed start from its pace: until it has seen two sizes, the other kind's runs
        of other sizes join the fit (and while they are all of one size, `fit` takes `one_size_start` of their run
        as the start)."""
        runs = list(self.seen)
        sizes = {size for size, _ in runs}
        if self.prior is not None and len(sizes) <= 1:
            runs += [run for run in self.prior.seen if run[0] not in sizes]
        if not runs:
            return None
        fixed, per_row = fit(runs, self.one_size_start)
        return fixed + per_row * max(0, rows)


def fit(runs: list[tuple[int, float]], one_size_start: float = 0.0) -> tuple[float, float]:
    """Least squares `seconds = fixed + per_row x rows`, neither negative; one size seen: `one_size_start` of its
    mean run fixed, the rest per row."""
    n = len(runs)
    mean_rows = sum(r for r, _ in runs) / n
    mean_seconds = sum(s for _, s in runs) / n
    spread = sum((r - mean_rows) ** 2 for r, _ in runs)
    if spread < 1.0 or mean_rows <= 0:
        fixed = one_size_start * mean_seconds
        return fixed, (mean_seconds - fixed) / max(mean_rows, 1.0)
    per_row = sum((r - mean_rows) * (s - mean_seconds) for r, s in runs) / spread
    fixed = mean_seconds - per_row * mean_rows
    if per_row < 0:
        return mean_seconds, 0.0
    if fixed < 0:
        return 0.0, mean_seconds / mean_rows
    return fixed, per_row


@dataclass
class _ImportSpan:
    rows: int
    created: float  # Marketo's time (epoch seconds) when the job was created
    progress: tuple[float, int] | None = None  # the latest poll that saw it running: when, rows processed
    done: float | None = None  # the first poll that saw it ended
    counted: tuple[float, float] | None = None  # consecutive windows asked so far: up to when, rows they took


@dataclass
class ImportSpans:
    """When our imports ran, by Marketo's clock (its Date header: whole seconds), so that an export over a createdAt
    window can be expected to hold the rows of every import that ran inside it, not only the one it is for (Marketo
    runs 2 at once). Without timestamps in an import's status, a span is inferred from its polls and `runs`."""

    runs: RunTimes
    keep: int = 64
    spans: dict[str, _ImportSpan] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the finishers poll on their threads

    def created(self, job_id: str, rows: int, at: float | None) -> None:
        if at is None:
            return
        with self._lock:
            self.spans[job_id] = _ImportSpan(rows, at)
            while len(self.spans) > self.keep:
                del self.spans[next(iter(self.spans))]

    def polled(self, job_id: str, at: float | None, running: bool, done: bool, processed: int) -> None:
        with self._lock:
            span = self.spans.get(job_id)
            if span is None or at is None:
                return
            if done and span.done is None:
                span.done = at
            elif running and processed > 0:
                span.progress = (at, processed)

    def window_rows(self, start: float, end: float) -> int:
        """About how many rows an export over [start, end] will hold, when it starts where the windows asked before
        it ended (the exports of one run: imported_ids.py). Marketo's createdAt has whole seconds and the filter
        holds both ends, so a window holds the rows made in [start, end + 1 s): the second at `start` is in the
        window before it too. Each import's rows count once over the windows: the rows an earlier window took, by
        the estimate of its day, are not expected again, so what that estimate got wrong (a span placed before the
        import was seen running) moves into this window rather than being counted twice or never. A window that
        does not start where an import's counted windows ended takes the plain estimate for that import: its rows
        spread evenly over its span."""
        total = 0.0
        with self._lock:
            for span in self.spans.values():
                begin, finish = self._span(span)
                by_end = _created_by(span.rows, begin, finish, end + 1.0)
                if span.counted is not None and abs(start - span.counted[0]) < 1.0:
                    taken = span.counted[1]
                    boundary = _created_by(span.rows, begin, finish, start + 1.0) - _created_by(
                        span.rows, begin, finish, start
                    )
                    total += max(0.0, by_end - taken) + boundary
                    span.counted = (end, max(taken, by_end))
                else:
                    total += by_end - _created_by(span.rows, begin, finish, start)
                    span.counted = (end, by_end)
        return round(total)

    def _span(self, span: _ImportSpan) -> tuple[float, float]:
        run = self.runs.run(span.rows)
        if span.progress is not None and run is not None:
            at, processed = span.progress
            begin = max(span.created, at - run * processed / max(span.rows, 1))
            finish = begin + run
        elif run is not None:
            finish = span.done if span.done is not None else span.created + run
            begin = max(span.created, finish - run)
        else:
            begin, finish = span.created, span.done if span.done is not None else span.created
        if span.done is not None:
            finish = min(finish, span.done)
        return begin, finish


def _created_by(rows: int, begin: float, finish: float, at: float) -> float:
    """Rows of a job spread evenly over [begin, finish] created by `at` (all at `begin` when it took no time)."""
    if at < begin:
        return 0.0
    if finish <= begin or at >= finish:
        return float(rows)
    return rows * (at - begin) / (finish - begin)
