"""The staging of an import unit's link rows: who may write them, and what a commit then finds."""

from __future__ import annotations

import threading
import time

from sync.engine.staging import UnitStaging


def test_a_unit_its_commit_settled_first_is_never_staged() -> None:
    staging = UnitStaging()
    assert staging.settle() is False
    assert staging.claim() is False  # the stager comes too late: the commit wrote whole rows
    assert staging.state == "skipped" and staging.settle() is False


def test_a_commit_waits_for_the_rows_being_written_and_then_uses_them() -> None:
    staging = UnitStaging()
    assert staging.claim() is True
    assert staging.claim() is False  # once
    settled: list[bool] = []
    commit = threading.Thread(target=lambda: settled.append(staging.settle()))
    commit.start()
    time.sleep(0.05)
    assert commit.is_alive() and settled == []  # waiting for the writes
    staging.written(True)
    commit.join(5)
    assert settled == [True] and staging.state == "staged"


def test_staging_that_failed_leaves_the_commit_to_write_whole_rows() -> None:
    staging = UnitStaging()
    assert staging.claim()
    staging.written(False)
    assert staging.settle() is False and staging.state == "skipped"


def test_units_have_their_own_ids() -> None:
    assert len({UnitStaging().unit for _ in range(100)}) == 100
