"""bench/full_sync_ceiling.py: the API floor's strategies, the storage floor, and which binds."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def ceiling() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("full_sync_ceiling")
    finally:
        sys.path.remove(str(BENCH))


def realistic(ceiling: Any) -> tuple[Any, Any]:
    mk = ceiling.MarketoLimits(100, 20.0, 10, 25.0, 0.05, 300, 2.0, 3.0, 5000.0, 2, 10 * 2**20, 31, 50_000)
    dv = ceiling.DataverseLimits(6000, 300.0, 52, 20.0, True)
    return mk, dv


def test_to_marketo_counts_the_job_level_match_index_as_the_fewest_calls(ceiling: Any) -> None:
    mk, dv = realistic(ceiling)
    small = ceiling.to_marketo(10_000, mk, dv)
    assert small.fewest.name == "Bulk Import + job-level match index"
    assert small.fewest.marketo_total == 4 + 2 + 4  # index export, one import (create + status), its ids' export
    big = ceiling.to_marketo(100_000, mk, dv)  # 25 MB of rows: 3 import units, each with its ids' export
    assert big.fewest.marketo_total == 4 + 3 * 2 + 3 * 4
    assert big.best is big.fewest  # 334 e-mail lookups cost the other strategies the rate window


def test_the_ids_wait_for_the_export_file_whose_read_the_emulator_charges_per_row(ceiling: Any) -> None:
    mk, dv = realistic(ceiling)
    free = ceiling.MarketoLimits(**{**mk.__dict__, "per_record_ms": 0.0, "latency_ms": 0.0})
    rows = ceiling.import_jobs(100_000, ceiling.IMPORT_ROW_BYTES, mk)
    charged = ceiling.to_marketo(100_000, mk, dv).best.seconds - ceiling.to_marketo(100_000, free, dv).best.seconds
    # the last import unit's file (its ids' export) and the match index's empty file, each a call of 25 ms
    assert charged == pytest.approx((2 * 25 + 0.05 * rows[-1]) / 1000)
    windows = ceiling.to_dynamics(100_000, 12, mk, dv).strategies[0].seconds
    assert windows - ceiling.to_dynamics(100_000, 12, free, dv).strategies[0].seconds == pytest.approx(
        (25 + 0.05 * (100_000 // 12)) / 1000, abs=1e-3
    )


def test_to_dynamics_lists_a_dataverse_match_index_as_a_lower_bound(ceiling: Any) -> None:
    mk, dv = realistic(ceiling)
    result = ceiling.to_dynamics(10_000, 12, mk, dv)
    assert result.fewest.dataverse_total == 10 + 1
    assert result.fewest.marketo_total == min(s.marketo_total for s in result.strategies)


def test_the_storage_floor_uses_the_best_measured_parallelism_and_binds_when_larger(ceiling: Any) -> None:
    timings = [
        ceiling.TransactionTiming(kind, p, 2 * p, seconds)
        for kind in ("D", "M", "P")
        for p, seconds in ((1, 0.2), (2, 0.2), (4, 0.3), (8, 0.8), (16, 1.6))
    ]
    costs = ceiling.StorageCosts(timings, point_write_ms=5.0, snapshot_chars=600, measure_seconds=1.0)
    assert costs.best("D").parallelism == 4  # 8 in 0.3 s: the most per second; more in flight did not help
    floor = ceiling.storage_floor(10_000, 3, costs)
    # 10,000 consecutive Marketo ids are 100 index packs: 13 a bucket, one transaction each of the 8 buckets
    assert (floor.d_transactions, floor.m_transactions, floor.job_writes) == (100, 8, 5)
    assert floor.seconds == pytest.approx((100 + 8) / (8 / 0.3) + 5 * 0.005)
    assert ceiling.storage_floor(500, 1, costs).m_transactions == 5  # 5 packs: a transaction each
    assert ceiling.storage_floor(1_000_000, 1, costs).m_transactions == 8 * 13  # 10,000 packs: 1,250 a bucket
    mk, dv = realistic(ceiling)
    result = ceiling.to_marketo(10_000, mk, dv)
    api = result.seconds
    result.storage = floor
    assert result.seconds == max(api, floor.seconds)
    assert result.binding == ("storage" if floor.seconds > api else "API")
    assert any(line.startswith("storage floor:") for line in result.lines())


class FakeTable:
    def __init__(self) -> None:
        self.transactions: list[list[Any]] = []
        self.points = 0

    def submit_transaction(self, operations: list[Any]) -> None:
        assert 0 < len(operations) <= 100 and len({op[1]["PartitionKey"] for op in operations}) == 1
        time.sleep(0.001)
        self.transactions.append(operations)

    def upsert_entity(self, entity: dict[str, Any]) -> None:
        self.points += 1


class FakeService:
    def __init__(self) -> None:
        self.table = FakeTable()
        self.dropped: list[str] = []

    def create_table_if_not_exists(self, name: str) -> FakeTable:
        return self.table

    def delete_table(self, name: str) -> None:
        self.dropped.append(name)


def lean_writer() -> tuple[list[list[dict[str, Any]]], Any]:
    """A `write` for measure_transactions that sends each batch as one transaction and keeps the batches sent."""
    lean: list[list[dict[str, Any]]] = []
    merges.clear()

    def write(table: FakeTable, rows: list[dict[str, Any]], merge: bool = False) -> None:
        table.submit_transaction([("upsert", row) for row in rows])
        lean.append(rows)
        merges.append(merge)

    return lean, write


merges: list[bool] = []  # for each batch lean_writer sent: whether it was a merge


def test_measure_transactions_times_each_parallelism_for_both_kinds_and_drops_its_table(ceiling: Any) -> None:
    service = FakeService()
    lean, write = lean_writer()
    costs = ceiling.measure_transactions(
        service, ceiling.lead_like_snapshot(["email", "title"]), (1, 4), rounds=2, at_least=2, write=write
    )
    assert [(t.kind, t.parallelism, t.transactions) for t in costs.timings] == [
        ("D", 1, 2),
        ("M", 1, 2),
        ("P", 1, 2),
        ("D", 4, 8),
        ("M", 4, 8),
        ("P", 4, 8),
        ("D library", 4, 8),
    ]
    assert len(lean) == 1 + 3 * 2 + 3 * 8  # the warm-up, then every timing but the library's
    assert all(len(batch) == 100 for batch in service.table.transactions)  # full transactions, as LinkStore's
    d_rows = [op[1] for batch in service.table.transactions for op in batch if op[1]["PartitionKey"] == "floor|D"]
    assert all(len(row["Snapshot"]) == costs.snapshot_chars for row in d_rows)
    assert service.table.points == 10 and len(service.dropped) == 1
    packs = [op[1] for batch in service.table.transactions for op in batch if op[1]["PartitionKey"] == "floor|P"]
    assert packs and all(sum(1 for name in row if name.startswith("L")) == 100 for row in packs)
    assert all(merged for merged, batch in zip(merges, lean, strict=True) if batch[0]["PartitionKey"] == "floor|P")
    assert not any(merged for merged, batch in zip(merges, lean, strict=True) if batch[0]["PartitionKey"] != "floor|P")
    head, d_line, m_line, p_line, library_line = costs.lines()
    assert (
        "with 1, 4 in flight" in head and d_line.count(" ms (") == m_line.count(" ms (") == p_line.count(" ms (") == 2
    )
    assert "index packs" in p_line
    assert "library" in library_line and library_line.count(" ms (") == 1


def test_measure_transactions_fills_the_table_first_when_asked(ceiling: Any) -> None:
    """Azurite slows as a table grows: the times are taken on a table holding the rows a job's link table holds."""
    service = FakeService()
    lean, write = lean_writer()
    costs = ceiling.measure_transactions(
        service, ceiling.lead_like_snapshot(["email"]), (1,), rounds=1, at_least=1, write=write, table_rows=250
    )
    fills = [batch for batch in lean if batch[0]["PartitionKey"].startswith("fill|")]
    assert sorted(len(batch) for batch in fills) == [50, 100, 100]
    assert all(len({row["PartitionKey"] for row in batch}) == 1 for batch in fills)  # one partition a transaction
    assert len({row["RowKey"] for batch in fills for row in batch}) == 250
    assert len(lean) == 1 + len(fills) + 3  # the warm-up, the fill, then D, M and P at 1 in flight
    assert costs.table_rows == 250 and "already holding 250 rows" in costs.lines()[0]
