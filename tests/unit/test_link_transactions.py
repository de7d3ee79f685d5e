"""How link rows go out as entity-group transactions: chunking, concurrency, and a dropped connection retried."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError

from sync.state import links
from sync.state.links import TransactionTooLarge, submit_transactions


class RecordingTable:
    """Stands in for a TableClient: records each transaction, failing the first attempts of some with `error`."""

    def __init__(self, fail_first: dict[str, int] | None = None, error: Exception | None = None) -> None:
        self.fail_first = dict(fail_first or {})
        self.error = error or ServiceResponseError("Connection aborted.")
        self.sent: list[list[tuple[Any, ...]]] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def submit_transaction(self, batch: list[tuple[Any, ...]]) -> None:
        first_key = batch[0][1]["RowKey"]
        with self._lock:
            self.attempts += 1
            if self.fail_first.get(first_key, 0) > 0:
                self.fail_first[first_key] -= 1
                raise self.error
            self.sent.append(batch)


def upserts(partition: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    return [("upsert", {"PartitionKey": partition, "RowKey": f"{partition}-{n:04d}"}) for n in range(count)]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch) -> None:
    monkeypatch.setattr(links, "wait_exponential", lambda **_: lambda _state: 0)


@pytest.fixture(autouse=True)
def upserts_through_the_recording_table(monkeypatch) -> None:
    """Upserts go out through transactions.submit_upserts (its own tests run against Azurite); here they reach the
    recording table as the transaction they are, so chunking and retries are seen."""
    monkeypatch.setattr(
        links, "submit_upserts", lambda table, rows: table.submit_transaction([("upsert", row) for row in rows])
    )


def test_operations_split_per_partition_in_hundreds_and_all_are_sent() -> None:
    table = RecordingTable()
    count = submit_transactions(table, upserts("a|D", 250) + upserts("b|D", 30))  # type: ignore[arg-type]
    assert count == 4 == len(table.sent)
    assert sorted(len(batch) for batch in table.sent) == [30, 50, 100, 100]
    assert all(len({op[1]["PartitionKey"] for op in batch}) == 1 for batch in table.sent)
    rows = {op[1]["RowKey"] for batch in table.sent for op in batch}
    assert len(rows) == 280


def test_a_dropped_connection_is_retried_and_nothing_is_lost() -> None:
    table = RecordingTable(fail_first={"a|D-0000": 2, "a|D-0100": 1})
    assert submit_transactions(table, upserts("a|D", 250)) == 3  # type: ignore[arg-type]
    assert table.attempts == 3 + 3
    assert len({op[1]["RowKey"] for batch in table.sent for op in batch}) == 250


def test_a_connection_that_keeps_dropping_raises_after_the_last_attempt() -> None:
    table = RecordingTable(fail_first={"a|D-0000": links.TRANSACTION_ATTEMPTS})
    with pytest.raises(ServiceResponseError):
        submit_transactions(table, upserts("a|D", 10))  # type: ignore[arg-type]
    assert table.attempts == links.TRANSACTION_ATTEMPTS and table.sent == []


def test_a_refused_transaction_is_not_retried_and_the_others_still_go_out() -> None:
    table = RecordingTable(fail_first={"a|D-0100": 1}, error=HttpResponseError("InvalidInput"))
    with pytest.raises(HttpResponseError):
        submit_transactions(table, upserts("a|D", 300))  # type: ignore[arg-type]
    assert table.attempts == 3 and len(table.sent) == 2


def test_an_oversized_transaction_is_refused_before_anything_is_sent(monkeypatch) -> None:
    monkeypatch.setattr(links, "chunked_transactions", lambda ops: iter([[("upsert", op[1]) for op in ops]]))
    table = RecordingTable()
    with pytest.raises(TransactionTooLarge):
        submit_transactions(table, upserts("a|D", 101))  # type: ignore[arg-type]
    assert table.attempts == 0
