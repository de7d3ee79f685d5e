"""PagePipeline: pages finish on workers in any order, commit strictly in page order, and a failure stops later
pages from committing while earlier ones still do."""

from __future__ import annotations

import threading
import time

import pytest

from sync.engine.pipeline import PagePipeline


def run(pages: list[int], finish_delay: dict[int, float], fail: dict[int, str] | None = None, depth: int = 3):
    committed: list[int] = []
    finished: list[int] = []
    lock = threading.Lock()
    fail = fail or {}

    def finish(page: int) -> None:
        time.sleep(finish_delay.get(page, 0.0))
        if fail.get(page) == "finish":
            raise RuntimeError(f"finish {page}")
        with lock:
            finished.append(page)

    def commit(pages: list[int]) -> None:
        for page in pages:
            if fail.get(page) == "commit":
                raise RuntimeError(f"commit {page}")
        committed.extend(pages)

    error = None
    try:
        with PagePipeline(finish, commit, depth=depth) as pipeline:
            for page in pages:
                pipeline.submit(page)
    except RuntimeError as exc:
        error = str(exc)
    return committed, finished, error


def test_pages_commit_in_order_even_when_later_ones_finish_first() -> None:
    committed, finished, error = run([0, 1, 2, 3], {0: 0.2, 1: 0.05, 2: 0.0, 3: 0.1})
    assert error is None
    assert committed == [0, 1, 2, 3]
    assert finished[0] != 0  # page 0 was the slowest to finish, yet committed first


@pytest.mark.parametrize(
    ("fail", "committed_before", "message"),
    [
        ({2: "finish"}, [0, 1], "finish 2"),
        ({1: "commit"}, [0], "commit 1"),
        ({0: "finish"}, [], "finish 0"),
    ],
)
def test_a_failure_lets_earlier_pages_commit_and_no_later_one(fail, committed_before, message) -> None:
    committed, _finished, error = run([0, 1, 2, 3, 4], {}, fail)
    assert error == message
    assert committed == committed_before


def test_no_more_than_depth_pages_are_in_flight() -> None:
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def finish(page: int) -> None:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.02)

    def commit(pages: list[int]) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= len(pages)

    with PagePipeline(finish, commit, depth=2) as pipeline:
        for page in range(8):
            pipeline.submit(page)
    assert most == 2


def test_the_callers_own_error_wins_after_the_pages_before_it_commit() -> None:
    committed: list[int] = []

    def read_two_pages_then_fail() -> None:
        with PagePipeline(lambda p: None, committed.extend) as pipeline:
            pipeline.submit(0)
            pipeline.submit(1)
            raise ValueError("read failed")

    with pytest.raises(ValueError, match="read failed"):
        read_two_pages_then_fail()
    assert committed == [0, 1]


def test_pages_finished_behind_a_slow_one_commit_with_it_in_one_batch() -> None:
    batches: list[list[int]] = []
    release = threading.Event()

    def finish(page: int) -> None:
        if page == 0:
            release.wait(5)

    with PagePipeline(finish, batches.append, depth=3, merge=3) as pipeline:
        for page in range(3):
            pipeline.submit(page)
        time.sleep(0.1)  # pages 1 and 2 finish while page 0 still waits
        release.set()
    assert batches == [[0, 1, 2]]


def test_without_merge_every_page_commits_alone() -> None:
    batches: list[list[int]] = []
    with PagePipeline(lambda page: None, batches.append, depth=3) as pipeline:
        for page in range(4):
            pipeline.submit(page)
    assert batches == [[0], [1], [2], [3]]
