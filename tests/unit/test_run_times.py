"""How long bulk jobs are expected to run: fitted from the runs seen, borrowed from another kind until then."""

from __future__ import annotations

import pytest

from sync.connectors.marketo.run_times import ImportSpans, RunTimes, fit


@pytest.mark.parametrize(
    ("runs", "fixed", "per_row"),
    [
        ([(10_000, 5.0)], 0.0, 0.0005),  # one run: all of it per row
        ([(10_000, 5.0), (10_000, 7.0)], 0.0, 0.0006),  # one size: the mean, per row
        ([(5_000, 4.0), (15_000, 6.0)], 3.0, 0.0002),  # a line through both
        ([(5_000, 6.0), (15_000, 4.0)], 5.0, 0.0),  # bigger ran faster: no per-row cost, the mean
        ([(5_000, 1.0), (15_000, 6.0)], 0.0, 0.00035),  # the line would start below zero: per row only
    ],
)
def test_fit(runs: list[tuple[int, float]], fixed: float, per_row: float) -> None:
    got_fixed, got_per_row = fit(runs)
    assert got_fixed == pytest.approx(fixed) and got_per_row == pytest.approx(per_row)


def test_a_kind_borrows_until_it_has_seen_a_run_and_keeps_the_latest() -> None:
    imports = RunTimes()
    exports = RunTimes(prior=imports)
    assert exports.run(1_000) is None
    imports.learn(10_000, 10.0)
    assert exports.run(20_000) == pytest.approx(20.0)  # the imports' pace
    exports.learn(10_000, 4.0)
    assert exports.run(20_000) == pytest.approx(8.0)  # its own, once seen (the imports' runs are of its one size)
    exports.learn(20_000, 6.0)
    assert exports.run(30_000) == pytest.approx(8.0)  # two sizes of its own: 2 s + 0.2 ms a row
    exports.learn(0, 3.0)  # nothing to learn from an empty job
    for _ in range(8):
        exports.learn(10_000, 2.0)
    assert exports.run(10_000) == pytest.approx(2.0)  # only the latest 8 runs count


def _spans(run: float | None) -> ImportSpans:
    runs = RunTimes()
    if run is not None:
        runs.learn(10_000, run)
    return ImportSpans(runs)


@pytest.mark.parametrize(
    ("window", "rows"),
    [
        ((100.0, 109.0), 10_000),  # the whole run: started 100 (half done at 105), ends 110; the end second counts
        ((105.0, 109.0), 5_000),
        ((0.0, 99.0), 0),
        ((108.0, 130.0), 2_000 + 10_000),  # the end of the first, all of the second (seen done at 125: 115-125)
    ],
)
def test_an_export_window_holds_the_rows_of_every_import_that_ran_in_it(window: tuple[float, float], rows: int) -> None:
    spans = _spans(10.0)
    spans.created("1", 10_000, 98.0)
    spans.polled("1", 105.0, running=True, done=False, processed=5_000)
    spans.created("2", 10_000, 104.0)
    spans.polled("2", 125.0, running=False, done=True, processed=10_000)
    assert spans.window_rows(*window) == rows


def test_without_a_run_seen_a_span_is_from_creation_to_the_poll_that_saw_it_done() -> None:
    spans = _spans(None)
    spans.created("1", 4_000, 100.0)
    spans.polled("1", 101.0, running=True, done=False, processed=1_000)  # no pace known: progress says nothing
    spans.polled("1", 104.0, running=False, done=True, processed=4_000)
    spans.polled("1", 109.0, running=False, done=True, processed=4_000)  # the first poll that saw it done counts
    assert spans.window_rows(102.0, 200.0) == 2_000
    spans.polled("unknown", 104.0, running=False, done=True, processed=1)  # a job it never saw created: ignored
    assert spans.window_rows(0.0, 200.0) == 4_000  # a window not after the last: the plain estimate


def test_consecutive_windows_count_each_row_once_when_a_span_moves_between_them() -> None:
    """Import 2 is placed from its creation (110-120) while nobody saw it run; the poll that sees it done at 125
    moves it to 115-125. Each window's estimate plus the boundary second it shares with the window before adds up
    to the rows made, where estimating each window afresh would count 5,000 of them twice."""
    spans = _spans(10.0)
    spans.created("1", 10_000, 100.0)
    spans.polled("1", 110.0, running=False, done=True, processed=10_000)  # ran 100-110
    spans.created("2", 10_000, 110.0)
    first = spans.window_rows(99.0, 114.0)  # all of import 1, and import 2 to 115 as placed then: 5,000
    assert first == 10_000 + 5_000
    spans.polled("2", 125.0, running=False, done=True, processed=10_000)  # it really ran 115-125
    second = spans.window_rows(114.0, 130.0)
    assert second == 5_000  # only what the first did not take; the boundary second (114-115) held none of import 2
    assert spans.window_rows(130.0, 140.0) == 0  # all counted, nothing made since
    afresh = _spans(10.0)
    afresh.created("2", 10_000, 110.0)
    afresh.polled("2", 125.0, running=False, done=True, processed=10_000)
    assert afresh.window_rows(114.0, 130.0) == 10_000  # the plain estimate, for a window with nothing before it


def test_the_second_two_windows_share_counts_in_both() -> None:
    spans = _spans(10.0)
    spans.created("1", 10_000, 100.0)
    spans.polled("1", 105.0, running=True, done=False, processed=5_000)  # 1,000 rows a second, 100-110
    assert spans.window_rows(99.0, 104.0) == 5_000  # 100-105: the end second counts
    assert spans.window_rows(104.0, 120.0) == 1_000 + 5_000  # the second at 104 again, then 105-110


def test_one_size_seen_borrows_the_other_kinds_runs_for_the_fixed_part() -> None:
    """An export of 45,000 rows ran 12 s and the imports ran 35,000 in 10 s: a line through both says 3 s to start
    and 0.2 ms a row, so a 15,000-row export is expected at 6 s, where its own run alone (all per row) says 4 s."""
    imports = RunTimes()
    exports = RunTimes(prior=imports)
    imports.learn(35_000, 10.0)
    exports.learn(45_000, 12.0)
    assert exports.run(15_000) == pytest.approx(6.0)
    assert RunTimes(seen=exports.seen).run(15_000) == pytest.approx(4.0)  # no other kind to borrow from


def test_exports_take_a_third_of_a_one_size_run_as_any_jobs_start() -> None:
    """An export's run is timed start to finish, start included: while the runs seen (its own, or the imports' it
    borrows) are of one size, a third of their run is the fixed start. 35,000 rows in 10 s: a 3,500-row export is
    expected in 4 s, not in 1 s (polled again and again), and a 70,000-row one in 16.7 s, not 20 (polled late)."""
    imports = RunTimes()
    exports = RunTimes(prior=imports, one_size_start=1 / 3)
    imports.learn(35_000, 10.0)
    assert exports.run(3_500) == pytest.approx(10.0 / 3 + 2.0 / 3)
    assert exports.run(70_000) == pytest.approx(10.0 / 3 + 40.0 / 3)
    assert imports.run(3_500) == pytest.approx(1.0)  # an import's own pace stays per row
    exports.learn(45_000, 12.0)  # a second size (with the imports' run): 3 s + 0.2 ms a row, whatever the share
    assert exports.run(3_300) == pytest.approx(3.66)
