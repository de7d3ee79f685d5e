"""Links between a Dynamics record and a Marketo record of one entity, each with its last-synced snapshot.

Partition design
----------------
A link is stored as two rows, one per direction of lookup, so that finding the counterpart of either id is a single
point read. The rows of each (entity, side) are sharded over BUCKETS partitions by a stable hash of the id:

    PartitionKey = encode("<entity>|D|<bucket>"), RowKey = encode(dynamics id)  -> marketo id, snapshot, synced at
    PartitionKey = encode("<entity>|M|<bucket>"), RowKey = encode(marketo id)   -> dynamics id

    bucket = crc32(id.lower() as UTF-8) mod BUCKETS, two lower-case hex digits ("00" .. "07")

crc32 (zlib) is fixed by its definition, so a bucket never changes between runs, processes or Python versions (Python's
`hash()` of a str is salted per process). Ids are lower-cased first so that the same GUID spelt in either case lands in
one bucket (its RowKey still keeps the case it was written with).

A save's rows go out in entity-group transactions of at most 100 operations on one partition (bucket), the D rows of
every bucket first, then the M rows, WRITE_THREADS transactions at once, taken round-robin over the buckets so the
transactions in flight hit different partitions.

The D row is the authority and is written first; the M row is an index. If a crash falls between the two, the M row is
missing and a lookup by Marketo id falls back to matching by link fields, which finds the same pair again; a stale M row
(pointing at a D row that no longer points back) is treated as absent.

The snapshot is the value of every synced field as both systems held it after the last successful sync of the pair: the
merge base and the echo filter. It lives on the D row so a link and its snapshot always commit together.

Reading many ids (`get_many_by_*`) groups them by bucket. With at least SCAN_AT_LEAST ids, the side's buckets are read
in key order as one range query (pages of 1,000 rows) for as long as that costs less than point reads would (a page of
1,000 rows costs about POINT_READS_PER_PAGE point reads): every bucket the scan gets through is settled by it, and the
ids of the buckets it did not reach are read by point reads on threads, each in its own bucket. A small table is thus
read in a request or two; a large one (10M links: 625,000 rows per bucket) by point reads, as before. `list`, `count`
and `has_any` are range queries over the side's buckets too (`has_any` asks for one row).

Why 8 buckets
-------------
Azure's published targets for Table storage [1]: a single table partition serves up to 2,000 entities/s (1 KiB
entities); a storage account up to 20,000 transactions/s. A link is written on both sides, so one side never needs
more than half of what the account serves: 10,000 entities/s, 5 partitions. 8 buckets give a side 8 x 2,000 = 16,000
entities/s of partition capacity, both sides together 32,000: with 8, the account, not a partition, is the ceiling,
and more buckets buy no throughput. They do cost transactions: a save spreads over more partitions, and a transaction
holds one partition. A page of 5,000 links is 56 transactions per side with 8 buckets (625 links a bucket: 7 each;
64 with 16 buckets; 50 unsharded), and a 50-link incremental save about 8 per side (1 unsharded), all going out
WRITE_THREADS at a time. On Azurite, where a transaction costs about the same whatever its size, that is 12% more
storage time for a full sync than unsharded (28% with 16 buckets). Changing BUCKETS moves every row: it needs a
migration like `migrate-links`.

Sizing (full sync; per record: one D and one M row written, and at most one lookup on each side, so 4 entities; the
account target counted as if every entity were a transaction, which is conservative for batched writes):

    records  full sync in  records/s  link entities/s  per side, unsharded  per bucket (8 a side)
    1M       8 h                  35              139                   69                       9
    1M       1 h                 278            1,111                  556                      69
    10M      8 h                 347            1,389                  694                      87
    10M      4 h                 694            2,778                1,389                     174
    10M      1 h               2,778           11,111                5,556                     694

    buckets: 125,000 links per bucket and side at 1M, 1,250,000 at 10M (one partition held 1M / 10M before)
    transactions per page of 5,000 links: 56 D + 56 M = 112 (100 unsharded); 10M links: 2,000 pages, about 224,000
      transactions (200,000 unsharded), each at most 100 operations on one partition

One partition per side (the old layout) caps a side at 2,000 entities/s, i.e. 1,000 records/s: a 10M full sync needs
at least 2.8 h for its link rows alone, and 10M in 1 h needs 5,556/s per side, 2.8 times the target. Sharded, the same
hour needs 694/s per bucket (35% of a partition's target) and 11,111 entities/s of the account (56% of its target,
shared with everything else in it). The buckets of a side are adjacent keys; Azure can spread partitions (never one
partition) over servers as load grows, which is what the buckets allow.

[1] "Scalability and performance targets for Table storage",
    https://learn.microsoft.com/azure/storage/tables/scalability-targets ("Maximum request rate per storage account:
    20,000 transactions per second, which assumes a 1-KiB entity size"; "Target throughput for a single table
    partition (1 KiB-entities): Up to 2,000 entities per second").

The old layout
--------------
Deployments before the buckets hold their links in one partition per side, `<entity>|D` and `<entity>|M`.
`python -m sync migrate-links [--dry-run]` (`LinkStore.migrate_legacy`) moves them: page by page (1,000 rows, resuming
after the last row key handled), it copies each old row, unchanged but for its PartitionKey, into its bucket (upserts,
in transactions), and only then deletes the old rows of that page; the two sides of an entity at once (two
partitions). A crash leaves old rows that were maybe copied already: running the command again copies them again (the
same values) and deletes them, so it is idempotent and resumable. `--dry-run` counts the old rows and writes nothing.
Each old row is read once and deleted once in its old partition, 2 entities per link and side: at that partition's
2,000 entities/s, at least 17 min for 1M links and 2.8 h for 10M (the old layout's own ceiling, once). Measured on
Azurite (in memory, one Node process, whose transactions are the bound: more threads do not help): 20,000 links in
72 s, 276 links/s, which would be an hour for 1M. A stream does not sync while its links are being moved (below); each
stream resumes as soon as its own are moved (the command takes the mapping's streams one after another).

The store refuses rather than guesses: while an entity still has old-layout rows, every LinkStore call on it (but
`delete_all`, which removes both layouts, and `has_legacy_rows`) raises LegacyLayout ("links of lead are in the old
layout: run python -m sync migrate-links"), so a cycle fails with that message instead of treating every linked record
as unlinked and matching it again without its snapshot. `python -m sync check` reports the same. Reading the old
partitions as a fallback was rejected: it doubles the cost of every miss (a full sync of new records is all misses)
for as long as the fallback lives, and list/count/delete would have to merge two layouts. The check costs two one-row
queries per entity, once per LinkStore (process) after they come back empty; nothing writes the old layout any more,
so run the migration after the old version of the app has stopped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby, zip_longest
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.core.paging import ItemPaged
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode
from pydantic import BaseModel, Field
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from sync.state.keys import encode_key
from sync.state.transactions import submit_upserts

MAX_TRANSACTION_OPERATIONS = 100  # Table Storage's limit; Azurite answers more with a malformed response
MAX_SNAPSHOT_CHARS = 30_000  # a string property holds 64 KiB (32K UTF-16 characters)
BUCKETS = 8  # partitions per (entity, side): see "Why 8 buckets" above
SCAN_PAGE = 1000  # rows per page when a partition is read whole
POINT_READS_PER_PAGE = 15  # what a page of 1,000 rows costs, in point reads (measured on Azurite)
SCAN_AT_LEAST = 64  # fewer ids than this: point reads, always
READ_THREADS = 16  # point reads in flight at once
WRITE_THREADS = 8  # transactions in flight at once
TRANSACTION_ATTEMPTS = 4

Side = Literal["D", "M"]


def link_bucket(record_id: str) -> int:
    """The bucket of an id: crc32 of its lower-cased UTF-8 bytes, modulo BUCKETS (stable across runs and hosts)."""
    return zlib.crc32(record_id.lower().encode()) % BUCKETS


def bucket_label(bucket: int) -> str:
    return f"{bucket:02x}"


class Link(BaseModel):
    entity: str
    dynamics_id: str
    marketo_id: str
    snapshot: dict[str, Any] = Field(default_factory=dict)
    snapshot_json: str | None = None  # the snapshot already encoded (encode_snapshot): written instead of `snapshot`
    synced_at: datetime | None = None


def encode_snapshot(snapshot: dict[str, Any]) -> str:
    """A snapshot as the link row's Snapshot property holds it."""
    return json.dumps(snapshot, sort_keys=True, default=str, ensure_ascii=False)


class TransactionTooLarge(ValueError):
    pass


class LegacyLayout(RuntimeError):
    """An entity's links are still in the old one-partition-per-side layout."""

    def __init__(self, entity: str) -> None:
        super().__init__(f"links of {entity} are in the old layout: run python -m sync migrate-links")
        self.entity = entity


@dataclass(frozen=True)
class Migration:
    """What `migrate_legacy` moved (or, in a dry run, would move) of one entity."""

    entity: str
    dynamics_rows: int
    marketo_rows: int
    dry_run: bool


def chunked_transactions(operations: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[list[tuple[Any, ...]]]:
    """Split operations into valid entity-group transactions: one partition each, at most 100 operations; taken
    round-robin over the partitions, so that transactions sent together in this order hit different partitions."""
    # A row may appear once per transaction: the last operation on a key wins.
    last = {(op[1]["PartitionKey"], op[1]["RowKey"]): op for op in operations}
    ordered = sorted(last.values(), key=lambda op: op[1]["PartitionKey"])
    per_partition = []
    for _, group in groupby(ordered, key=lambda op: op[1]["PartitionKey"]):
        ops = list(group)
        per_partition.append(
            [
                [_as_transaction_op(op) for op in ops[start : start + MAX_TRANSACTION_OPERATIONS]]
                for start in range(0, len(ops), MAX_TRANSACTION_OPERATIONS)
            ]
        )
    for round_ in zip_longest(*per_partition):
        yield from (batch for batch in round_ if batch is not None)


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
                if all(op[0] == "upsert" for op in batch):
                    submit_upserts(table, [op[1] for op in batch])
                else:
                    table.submit_transaction(batch)

    if len(batches) == 1:
        submit(batches[0])
    elif batches:
        with ThreadPoolExecutor(min(WRITE_THREADS, len(batches))) as pool:
            futures = [pool.submit(submit, batch) for batch in batches]
        for future in futures:
            future.result()
    return len(batches)


@functools.cache
def _bucket_partition(entity: str, side: Side, bucket: int) -> str:
    """A bucket's PartitionKey (a few per entity: encoded once, not for every row)."""
    return encode_key(f"{entity}|{side}|{bucket_label(bucket)}")


class LinkStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._current: set[str] = set()  # entities proven free of old-layout rows

    # --- keys -------------------------------------------------------------------------------------------------------
    @staticmethod
    def partition(entity: str, side: Side, record_id: str) -> str:
        """The PartitionKey of the row of `record_id` (a Dynamics id for side D, a Marketo id for side M)."""
        return _bucket_partition(entity, side, link_bucket(record_id))

    @staticmethod
    def partitions(entity: str, side: Side) -> list[str]:
        """Every bucket partition of one side of an entity, in key order."""
        return sorted(_bucket_partition(entity, side, b) for b in range(BUCKETS))

    @staticmethod
    def legacy_partition(entity: str, side: Side) -> str:
        """The one partition of a side in the old layout."""
        return encode_key(f"{entity}|{side}")

    def _d_row(self, link: Link) -> dict[str, Any]:
        snapshot = link.snapshot_json if link.snapshot_json is not None else encode_snapshot(link.snapshot)
        if len(snapshot) > MAX_SNAPSHOT_CHARS:
            raise ValueError(
                f"snapshot of {link.entity} {link.dynamics_id} is {len(snapshot)} characters; "
                f"at most {MAX_SNAPSHOT_CHARS} fit in one table property"
            )
        return {
            "PartitionKey": self.partition(link.entity, "D", link.dynamics_id),
            "RowKey": encode_key(link.dynamics_id),
            "Entity": link.entity,
            "DynamicsId": link.dynamics_id,
            "MarketoId": link.marketo_id,
            "Snapshot": snapshot,
            "SyncedAt": link.synced_at or datetime.now(UTC),
        }

    def _m_row(self, link: Link) -> dict[str, Any]:
        return {
            "PartitionKey": self.partition(link.entity, "M", link.marketo_id),
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

    # --- the old layout ---------------------------------------------------------------------------------------------
    def has_legacy_rows(self, entity: str) -> bool:
        """Whether any link row of `entity` is still in the old layout (`<entity>|D` / `<entity>|M`)."""
        return any(self._first_row(self.legacy_partition(entity, side)) for side in ("D", "M"))

    def _first_row(self, partition: str) -> bool:
        rows = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": partition}, select=["RowKey"], results_per_page=1
        )
        return next(iter(rows), None) is not None

    def _require_current(self, entity: str) -> None:
        if entity in self._current:
            return
        if self.has_legacy_rows(entity):
            raise LegacyLayout(entity)
        self._current.add(entity)

    def migrate_legacy(self, entity: str, *, dry_run: bool = False) -> Migration:
        """Move the old-layout rows of `entity` into their buckets, both sides at once, page by page: copy, then
        delete. Idempotent and resumable: old rows left by a crash are copied again (the same values) and deleted."""
        with ThreadPoolExecutor(2) as pool:  # two partitions: each side at its own partition's pace
            d_side = pool.submit(self._migrate_side, entity, "D", "DynamicsId", dry_run)
            m_side = pool.submit(self._migrate_side, entity, "M", "MarketoId", dry_run)
        dynamics_rows, marketo_rows = d_side.result(), m_side.result()
        if not dry_run:
            self._current.discard(entity)  # proven again on next use
        return Migration(entity, dynamics_rows, marketo_rows, dry_run)

    def _migrate_side(self, entity: str, side: Side, id_property: str, dry_run: bool) -> int:
        legacy = self.legacy_partition(entity, side)
        if dry_run:
            rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": legacy}, select=["RowKey"])
            return sum(1 for _ in rows)
        moved = 0
        after = ""  # resume after the last row key handled: a page never depends on a continuation token
        while True:
            page = list(
                next(
                    iter(
                        self._table.query_entities(
                            "PartitionKey eq @pk and RowKey gt @after",
                            parameters={"pk": legacy, "after": after},
                            results_per_page=SCAN_PAGE,
                        ).by_page()
                    ),
                    [],
                )
            )
            if not page:
                return moved
            copies = []
            for row in page:
                record_id = row.get(id_property)
                if not isinstance(record_id, str) or not record_id:
                    raise ValueError(f"old-layout link row {legacy}/{row['RowKey']} has no {id_property}")
                copies.append(("upsert", {**row, "PartitionKey": self.partition(entity, side, record_id)}))
            submit_transactions(self._table, copies)
            self._delete_keys(legacy, [row["RowKey"] for row in page])
            moved += len(page)
            after = page[-1]["RowKey"]

    def _delete_keys(self, partition: str, keys: Sequence[str]) -> None:
        """Delete rows of one partition in transactions; a row already gone (a concurrent run) is no failure."""
        try:
            submit_transactions(self._table, [("delete", {"PartitionKey": partition, "RowKey": k}) for k in keys])
        except TableTransactionError:
            for key in keys:
                with contextlib.suppress(ResourceNotFoundError):
                    self._table.delete_entity(partition, key)

    # --- reads ------------------------------------------------------------------------------------------------------
    def get_by_dynamics_id(self, entity: str, dynamics_id: str) -> Link | None:
        self._require_current(entity)
        try:
            row = self._table.get_entity(self.partition(entity, "D", dynamics_id), encode_key(dynamics_id))
        except ResourceNotFoundError:
            return None
        return self._from_d_row(row)

    def get_by_marketo_id(self, entity: str, marketo_id: str) -> Link | None:
        """The link whose Marketo side is `marketo_id` (index row, then the authoritative row it points at)."""
        self._require_current(entity)
        try:
            index = self._table.get_entity(self.partition(entity, "M", marketo_id), encode_key(marketo_id))
        except ResourceNotFoundError:
            return None
        link = self.get_by_dynamics_id(entity, index["DynamicsId"])
        if link is None or link.marketo_id != marketo_id:
            return None  # stale index row
        return link

    def get_many_by_dynamics_id(self, entity: str, dynamics_ids: Iterable[str]) -> dict[str, Link]:
        """dynamics id -> link, for the ids that have one. Many ids: a scan of the side's buckets in pages of 1,000
        for as long as it pays; the ids of the buckets it did not reach by point reads on threads (a filter ORing row
        keys would scan the partition once per query, in Azure and in Azurite alike)."""
        self._require_current(entity)
        rows = self._many(entity, "D", dynamics_ids)
        return {link.dynamics_id: link for link in map(self._from_d_row, rows)}

    def get_many_by_marketo_id(self, entity: str, marketo_ids: Iterable[str]) -> dict[str, Link]:
        """marketo id -> link, for the ids that have one (stale index rows skipped)."""
        self._require_current(entity)
        pointers = {row["MarketoId"]: row["DynamicsId"] for row in self._many(entity, "M", marketo_ids)}
        links = self.get_many_by_dynamics_id(entity, pointers.values())
        return {
            marketo_id: links[dynamics_id]
            for marketo_id, dynamics_id in pointers.items()
            if dynamics_id in links and links[dynamics_id].marketo_id == marketo_id
        }

    def _many(self, entity: str, side: Side, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The rows of `side` for the ids that have one, the ids grouped by bucket."""
        wanted: dict[str, set[str]] = {}  # partition -> row keys
        for record_id in dict.fromkeys(ids):
            wanted.setdefault(self.partition(entity, side, record_id), set()).add(encode_key(record_id))
        total = sum(len(keys) for keys in wanted.values())
        found: list[dict[str, Any]] = []
        if total >= SCAN_AT_LEAST:
            found, wanted = self._scan(entity, side, wanted, max_rows=total // POINT_READS_PER_PAGE * SCAN_PAGE)

        def read(key: tuple[str, str]) -> dict[str, Any] | None:
            try:
                return dict(self._table.get_entity(*key))
            except ResourceNotFoundError:
                return None

        keys = [(partition, row_key) for partition, row_keys in wanted.items() for row_key in row_keys]
        if len(keys) <= 1:
            read_back = [read(k) for k in keys]
        else:
            with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(keys))) as pool:
                read_back = list(pool.map(read, keys))
        return found + [row for row in read_back if row is not None]

    def _scan(
        self, entity: str, side: Side, wanted: dict[str, set[str]], max_rows: int
    ) -> tuple[list[dict[str, Any]], dict[str, set[str]]]:
        """Read the side's buckets in key order, one range query, until `max_rows` rows are read: the wanted rows of
        every bucket the scan got through, and the wanted keys of the buckets it did not (still to be read)."""
        members = set(self.partitions(entity, side))
        found: dict[tuple[str, str], dict[str, Any]] = {}
        pending = dict(wanted)
        read = 0
        for page in self._side_rows(entity, side, results_per_page=SCAN_PAGE).by_page():
            last = None
            for row in page:
                last = partition = row["PartitionKey"]
                if partition in members and row["RowKey"] in pending.get(partition, ()):
                    found[partition, row["RowKey"]] = dict(row)
                read += 1
            if last is not None:  # every bucket before the last row's is read whole
                for partition in [p for p in pending if p < last]:
                    del pending[partition]
            if read >= max_rows:
                if last in pending:  # the bucket the scan stopped in: what it has not found yet
                    pending[last] = {key for key in pending[last] if (last, key) not in found}
                return list(found.values()), pending
        return list(found.values()), {}

    def _side_rows(self, entity: str, side: Side, **options: Any) -> ItemPaged[TableEntity]:
        """A range query over every bucket of a side (the PartitionKey range they span)."""
        buckets = self.partitions(entity, side)
        return self._table.query_entities(
            "PartitionKey ge @first and PartitionKey le @last",
            parameters={"first": buckets[0], "last": buckets[-1]},
            **options,
        )

    def _side_iter(self, entity: str, side: Side, **options: Any) -> Iterator[dict[str, Any]]:
        members = set(self.partitions(entity, side))
        if "select" in options:
            options["select"] = ["PartitionKey", *options["select"]]
        for row in self._side_rows(entity, side, **options):
            if row["PartitionKey"] in members:
                yield row

    # --- writes -----------------------------------------------------------------------------------------------------
    def save(self, links: Iterable[Link], indexed: Iterable[tuple[str, str]] = ()) -> int:
        """Write links and their snapshots; returns the number of transactions sent.

        Authoritative D rows go first, then the M index rows. `indexed` names (dynamics id, marketo id) pairs whose
        index row is already right (an existing link whose snapshot moved): only their D row is rewritten.
        Relinking a record to a new counterpart leaves the old counterpart's M row stale (ignored by lookups) until
        `delete` or a later save replaces it.
        """
        links = list(links)
        for entity in {link.entity for link in links}:
            self._require_current(entity)
        known = set(indexed)
        d_ops = [("upsert", self._d_row(link)) for link in links]
        m_ops = [("upsert", self._m_row(link)) for link in links if (link.dynamics_id, link.marketo_id) not in known]
        return submit_transactions(self._table, d_ops) + submit_transactions(self._table, m_ops)

    def delete(self, links: Iterable[Link]) -> int:
        """Remove links (both rows); missing rows are ignored. Returns the number of delete calls."""
        sent = 0
        for link in links:
            self._require_current(link.entity)
            for pk, rk in (
                (self.partition(link.entity, "D", link.dynamics_id), encode_key(link.dynamics_id)),
                (self.partition(link.entity, "M", link.marketo_id), encode_key(link.marketo_id)),
            ):
                with contextlib.suppress(ResourceNotFoundError):
                    self._table.delete_entity(pk, rk)
                sent += 1
        return sent

    def delete_all(self, entity: str) -> int:
        """Remove every link of an entity (both sides, every bucket, and any old-layout rows, in transactions);
        returns how many links there were."""
        count = 0
        for side in ("D", "M"):
            keys = [(row["PartitionKey"], row["RowKey"]) for row in self._side_iter(entity, side, select=["RowKey"])]
            legacy = self.legacy_partition(entity, side)
            old = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": legacy}, select=["RowKey"])
            keys += [(legacy, row["RowKey"]) for row in old]
            ops = [("delete", {"PartitionKey": pk, "RowKey": rk}) for pk, rk in keys]
            submit_transactions(self._table, ops)
            count = count or len(keys)
        self._current.discard(entity)
        return count

    # --- whole entity -----------------------------------------------------------------------------------------------
    def list(self, entity: str) -> Iterator[Link]:
        """Every link of an entity, streamed page by page (bucket by bucket)."""
        self._require_current(entity)
        for row in self._side_iter(entity, "D"):
            yield self._from_d_row(row)

    def has_any(self, entity: str) -> bool:
        """Whether the entity has a link in any bucket: one range query asking for one row."""
        self._require_current(entity)
        return next(self._side_iter(entity, "D", select=["RowKey"], results_per_page=1), None) is not None

    def count(self, entity: str) -> int:
        self._require_current(entity)
        return sum(1 for _ in self._side_iter(entity, "D", select=["RowKey"]))


__all__ = [
    "BUCKETS",
    "LegacyLayout",
    "Link",
    "LinkStore",
    "Migration",
    "TableTransactionError",
    "TransactionTooLarge",
    "chunked_transactions",
    "link_bucket",
]
