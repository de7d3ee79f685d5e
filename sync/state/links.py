"""Links between a Dynamics record and a Marketo record of one entity, each with its last-synced snapshot.

Partition design
----------------
A link is stored as two rows, one per direction of lookup, so that finding the counterpart of either id is a single
point read:

    PartitionKey = "<entity>|D", RowKey = encode(dynamics id)  -> marketo id, snapshot, synced at
    PartitionKey = "<entity>|M", RowKey = encode(marketo id)   -> dynamics id

Each (entity, side) is one partition, so the rows one sync cycle writes for an entity share a partition and go out in
entity-group transactions of at most 100 operations (250 links = 3 transactions on each side). Entities and sides spread
over separate partitions, which Table Storage serves from separate servers as load grows.

The D row is the authority and is written first; the M row is an index. If a crash falls between the two, the M row is
missing and a lookup by Marketo id falls back to matching by link fields, which finds the same pair again; a stale M row
(pointing at a D row that no longer points back) is treated as absent.

The snapshot is the value of every synced field as both systems held it after the last successful sync of the pair: the
merge base and the echo filter. It lives on the D row so a link and its snapshot always commit together.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from pydantic import BaseModel, Field
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from sync.state.keys import encode_key

MAX_TRANSACTION_OPERATIONS = 100  # Table Storage's limit; Azurite answers more with a malformed response
MAX_SNAPSHOT_CHARS = 30_000  # a string property holds 64 KiB (32K UTF-16 characters)
SCAN_PAGE = 1000  # rows per page when a partition is read whole
POINT_READS_PER_PAGE = 15  # what a page of 1,000 rows costs, in point reads (measured on Azurite)
SCAN_AT_LEAST = 64  # fewer ids than this: point reads, always
READ_THREADS = 16  # point reads in flight at once
WRITE_THREADS = 8  # transactions in flight at once
TRANSACTION_ATTEMPTS = 4


class Link(BaseModel):
    entity: str
    dynamics_id: str
    marketo_id: str
    snapshot: dict[str, Any] = Field(default_factory=dict)
    synced_at: datetime | None = None


class TransactionTooLarge(ValueError):
    pass


def chunked_transactions(operations: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[list[tuple[Any, ...]]]:
    """Split operations into valid entity-group transactions: one partition each, at most 100 operations."""
    # A row may appear once per transaction: the last operation on a key wins.
    last = {(op[1]["PartitionKey"], op[1]["RowKey"]): op for op in operations}
    ordered = sorted(last.values(), key=lambda op: op[1]["PartitionKey"])
    for _, group in groupby(ordered, key=lambda op: op[1]["PartitionKey"]):
        ops = list(group)
        for start in range(0, len(ops), MAX_TRANSACTION_OPERATIONS):
            yield [_as_transaction_op(op) for op in ops[start : start + MAX_TRANSACTION_OPERATIONS]]


def _as_transaction_op(op: tuple[str, dict[str, Any]]) -> tuple[Any, ...]:
    kind, entity = op
    if kind == "upsert":
        return ("upsert", entity, {"mode": UpdateMode.REPLACE})
    return (kind, entity)


def submit_transactions(table: TableClient, operations: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Submit operations as entity-group transactions, several at once (each is a round trip of its own; the table
    serves them concurrently); returns how many were sent. All are attempted; the first failure is raised."""
    batches = list(chunked_transactions(operations))
    for batch in batches:
        if len(batch) > MAX_TRANSACTION_OPERATIONS or len({op[1]["PartitionKey"] for op in batch}) != 1:
            raise TransactionTooLarge("a transaction must hold at most 100 operations on one partition")

    def submit(batch: list[tuple[Any, ...]]) -> None:
        # azure-core does not retry a POST whose connection dropped (a server closing an idle pooled connection);
        # an entity-group transaction is atomic and its operations are upserts, so sending it again is safe
        for attempt in Retrying(
            retry=retry_if_exception_type((ServiceRequestError, ServiceResponseError)),
            stop=stop_after_attempt(TRANSACTION_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        ):
            with attempt:
                table.submit_transaction(batch)

    if len(batches) == 1:
        submit(batches[0])
    elif batches:
        with ThreadPoolExecutor(min(WRITE_THREADS, len(batches))) as pool:
            futures = [pool.submit(submit, batch) for batch in batches]
        for future in futures:
            future.result()
    return len(batches)


class LinkStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    @staticmethod
    def _d_partition(entity: str) -> str:
        return encode_key(f"{entity}|D")

    @staticmethod
    def _m_partition(entity: str) -> str:
        return encode_key(f"{entity}|M")

    def _d_row(self, link: Link) -> dict[str, Any]:
        snapshot = json.dumps(link.snapshot, sort_keys=True, default=str, ensure_ascii=False)
        if len(snapshot) > MAX_SNAPSHOT_CHARS:
            raise ValueError(
                f"snapshot of {link.entity} {link.dynamics_id} is {len(snapshot)} characters; "
                f"at most {MAX_SNAPSHOT_CHARS} fit in one table property"
            )
        return {
            "PartitionKey": self._d_partition(link.entity),
            "RowKey": encode_key(link.dynamics_id),
            "Entity": link.entity,
            "DynamicsId": link.dynamics_id,
            "MarketoId": link.marketo_id,
            "Snapshot": snapshot,
            "SyncedAt": link.synced_at or datetime.now(UTC),
        }

    def _m_row(self, link: Link) -> dict[str, Any]:
        return {
            "PartitionKey": self._m_partition(link.entity),
            "RowKey": encode_key(link.marketo_id),
            "Entity": link.entity,
            "DynamicsId": link.dynamics_id,
            "MarketoId": link.marketo_id,
        }

    @staticmethod
    def _from_d_row(row: dict[str, Any]) -> Link:
        return Link(
            entity=row["Entity"],
            dynamics_id=row["DynamicsId"],
            marketo_id=row["MarketoId"],
            snapshot=json.loads(row.get("Snapshot") or "{}"),
            synced_at=row.get("SyncedAt"),
        )

    def get_by_dynamics_id(self, entity: str, dynamics_id: str) -> Link | None:
        try:
            return self._from_d_row(self._table.get_entity(self._d_partition(entity), encode_key(dynamics_id)))
        except ResourceNotFoundError:
            return None

    def get_by_marketo_id(self, entity: str, marketo_id: str) -> Link | None:
        """The link whose Marketo side is `marketo_id` (index row, then the authoritative row it points at)."""
        try:
            index = self._table.get_entity(self._m_partition(entity), encode_key(marketo_id))
        except ResourceNotFoundError:
            return None
        link = self.get_by_dynamics_id(entity, index["DynamicsId"])
        if link is None or link.marketo_id != marketo_id:
            return None  # stale index row
        return link

    def save(self, links: Iterable[Link], indexed: Iterable[tuple[str, str]] = ()) -> int:
        """Write links and their snapshots; returns the number of transactions sent.

        Authoritative D rows go first, then the M index rows. `indexed` names (dynamics id, marketo id) pairs whose
        index row is already right (an existing link whose snapshot moved): only their D row is rewritten.
        Relinking a record to a new counterpart leaves the old counterpart's M row stale (ignored by lookups) until
        `delete` or a later save replaces it.
        """
        links = list(links)
        known = set(indexed)
        d_ops = [("upsert", self._d_row(link)) for link in links]
        m_ops = [("upsert", self._m_row(link)) for link in links if (link.dynamics_id, link.marketo_id) not in known]
        return submit_transactions(self._table, d_ops) + submit_transactions(self._table, m_ops)

    def get_many_by_dynamics_id(self, entity: str, dynamics_ids: Iterable[str]) -> dict[str, Link]:
        """dynamics id -> link, for the ids that have one. Many ids: a scan of the partition in pages of 1,000, unless
        the partition is too large for it to pay; otherwise point reads on threads (a filter ORing row keys would scan
        the partition once per query, in Azure and in Azurite alike)."""
        wanted = {encode_key(i): i for i in dict.fromkeys(dynamics_ids)}
        rows = self._many(self._d_partition(entity), wanted)
        return {link.dynamics_id: link for link in map(self._from_d_row, rows.values())}

    def get_many_by_marketo_id(self, entity: str, marketo_ids: Iterable[str]) -> dict[str, Link]:
        """marketo id -> link, for the ids that have one (stale index rows skipped)."""
        wanted = {encode_key(i): i for i in dict.fromkeys(marketo_ids)}
        pointers = {
            row["MarketoId"]: row["DynamicsId"] for row in self._many(self._m_partition(entity), wanted).values()
        }
        links = self.get_many_by_dynamics_id(entity, pointers.values())
        return {
            marketo_id: links[dynamics_id]
            for marketo_id, dynamics_id in pointers.items()
            if dynamics_id in links and links[dynamics_id].marketo_id == marketo_id
        }

    def _many(self, partition: str, wanted: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Rows of `partition` by row key, for the keys in `wanted` that exist."""
        if len(wanted) >= SCAN_AT_LEAST:
            scanned = self._scan(partition, set(wanted), max_pages=len(wanted) // POINT_READS_PER_PAGE)
            if scanned is not None:
                return scanned

        def read(key: str) -> dict[str, Any] | None:
            try:
                return dict(self._table.get_entity(partition, key))
            except ResourceNotFoundError:
                return None

        keys = list(wanted)
        if len(keys) <= 1:
            found = [read(k) for k in keys]
        else:
            with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(keys))) as pool:
                found = list(pool.map(read, keys))
        return {key: row for key, row in zip(keys, found, strict=True) if row is not None}

    def _scan(self, partition: str, keys: set[str], max_pages: int) -> dict[str, dict[str, Any]] | None:
        """The wanted rows by reading the whole partition, or None once it proves longer than `max_pages` pages."""
        found: dict[str, dict[str, Any]] = {}
        pages = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": partition}, results_per_page=SCAN_PAGE
        ).by_page()
        for number, page in enumerate(pages):
            if number >= max_pages:
                return None
            for row in page:
                if row["RowKey"] in keys:
                    found[row["RowKey"]] = dict(row)
        return found

    def delete(self, links: Iterable[Link]) -> int:
        """Remove links (both rows); missing rows are ignored. Returns the number of delete calls."""
        sent = 0
        for link in links:
            for pk, rk in (
                (self._d_partition(link.entity), encode_key(link.dynamics_id)),
                (self._m_partition(link.entity), encode_key(link.marketo_id)),
            ):
                with contextlib.suppress(ResourceNotFoundError):
                    self._table.delete_entity(pk, rk)
                sent += 1
        return sent

    def delete_all(self, entity: str) -> int:
        """Remove every link of an entity (both sides, in transactions); returns how many links there were."""
        count = 0
        for partition in (self._d_partition(entity), self._m_partition(entity)):
            rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": partition}, select=["RowKey"])
            keys = [{"PartitionKey": partition, "RowKey": row["RowKey"]} for row in rows]
            submit_transactions(self._table, [("delete", key) for key in keys])
            count = count or len(keys)
        return count

    def list(self, entity: str) -> Iterator[Link]:
        """Every link of an entity, streamed page by page."""
        query = "PartitionKey eq @pk"
        for row in self._table.query_entities(query, parameters={"pk": self._d_partition(entity)}):
            yield self._from_d_row(row)

    def has_any(self, entity: str) -> bool:
        rows = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": self._d_partition(entity)}, select=["RowKey"], results_per_page=1
        )
        return next(iter(rows), None) is not None

    def count(self, entity: str) -> int:
        query = "PartitionKey eq @pk"
        return sum(
            1
            for _ in self._table.query_entities(query, parameters={"pk": self._d_partition(entity)}, select=["RowKey"])
        )


__all__ = ["Link", "LinkStore", "TableTransactionError", "TransactionTooLarge", "chunked_transactions"]
