"""Links between a Dynamics record and a Marketo record of one entity, each with its last-synced snapshot.

Partition design
----------------
A link is stored as two rows, one per direction of lookup, so that finding the counterpart of either id is a single
point read. The rows of each (entity, side) are sharded over BUCKETS buckets by a stable hash of the id, and each
(side, bucket) has a table of its own, which holds that bucket of every entity, one partition per entity:

    table <prefix>linksd<bucket>: PartitionKey = encode("<entity>|D|<bucket>"), RowKey = encode(dynamics id)
                                  -> marketo id, snapshot, synced at
    table <prefix>linksm<bucket>: PartitionKey = encode("<entity>|M|<bucket>"), RowKey = encode(marketo id)
                                  -> dynamics id                      (a Marketo id that is no integer)
                                  PartitionKey = encode("<entity>|P|<bucket of the pack>"), RowKey = pack label
                                  -> L<marketo id> = dynamics id, for each linked id of the pack  (an index pack)
                                  PartitionKey = encode("<entity>|U|<bucket of the label>"), RowKey = unit label
                                  -> S<slot> = marketo id, for each proven slot of the unit  (a unit map)

    bucket = crc32(id.lower() as UTF-8) mod BUCKETS, two lower-case hex digits ("00" .. "07")
    pack label = marketo id // PACK_SPAN, 13 digits; the pack's bucket is that of its label

Index packs. Marketo's person ids are integers, handed out in order, so the persons one import creates have
consecutive ids. Their index entries share rows: the pack of a hundred ids holds each linked id as a property (its
Dynamics id the value). A save merges (insert-or-merge, one entity-group operation) each pack it touches with the
links it has for it, so two saves of one pack, even at the same time (two imports run at once and their ids
interleave), each add their own properties and neither loses the other's. Azurite's time follows the entities
written far more than their size: `bench/bench_full_sync.py --records 100000` spent 24.4 s in LinkStore.save to
Dynamics with an index row per link and 14.5 s with the packs (the same sitting); to Marketo 16.5 s and 10.5 s. Ids
that are no integers (another object's), or longer than 15 digits, keep an index row of their own. Rows written
before the packs stay readable: a lookup reads the pack first and, for the ids it does not name, the M rows.

Staged rows. A full sync to Marketo creates persons by Bulk Import and learns their ids only once Marketo has
imported them and exported the ids (sync/engine/staging.py): a wait of many seconds, after which every link used to
be written at the storage's pace, a D row each. So the D row of such a create is written during that wait, staged:
without MarketoId, with Unit (a random id of its import unit) and Slot (its place in the unit). Once its id is
proven, the save writes no D row for it, only the id into its unit's map (unit label = "<unit>.<slot // 100>", 7
digits; a hundred slots a row, each a property, merged like the packs) and the index pack. A reader of D rows
resolves a staged row through its unit map (one read per map row, batched like the rest); a row whose slot holds no
id yet (a run that crashed, an import that failed or rejected it) is no link, to every reader and to `count`:
the next attempt matches the record again and writes its row whole, which replaces the staged one. `has_any`
counts such a row as "maybe": it is only a hint to look. So a 100k full sync ends by writing about 1,000 unit-map and
1,000 pack entities, not 100,000 D rows: in `bench/bench_full_sync.py`, 0.2 s a save of 10,000 links where a save
of whole rows took 1.0-1.4 s. The maps cost 1 entity per 100 links, as the packs do, and `delete_all` removes them.

crc32 (zlib) is fixed by its definition, so a bucket never changes between runs, processes or Python versions (Python's
`hash()` of a str is salted per process). Ids are lower-cased first so that the same GUID spelt in either case lands in
one bucket (its RowKey still keeps the case it was written with).

Why a table per bucket: on Azure it changes nothing; its tables scale by partition, and a partition is the same
whichever table holds it. On Azurite (development, the tests, the benchmarks) a table is one in-memory LokiJS
collection with a sorted index on PartitionKey and one on RowKey, and every insert splices both, so an insert costs
time in proportion to the rows already in its table: of a profile of Azurite saving 100,000 links into one table,
8.8 of its 25 s went to inserting into those indices. With a table per bucket, `bench/bench_full_sync.py --records
100000` spent 12.2 s in LinkStore.save to Marketo (19.7 s in one table) and 15.8 s to Dynamics (24.4 s), and a full
sync's wall ends in these saves.

A save's rows go out in entity-group transactions of at most 100 operations on one partition (bucket), the D rows of
every bucket first, then the M rows, WRITE_THREADS transactions at once, taken round-robin over the buckets so the
transactions in flight hit different partitions.

The D row is the authority and is written first; the M row or pack entry is an index. If a crash falls between the two,
the index entry is missing and a lookup by Marketo id falls back to matching by link fields, which finds the same pair
again; a stale entry (pointing at a D row that no longer points back: the link was deleted or relinked) is treated as
absent. `delete` removes the D row and any M row; a pack entry it leaves is such a stale one until a save replaces it.

The snapshot is the value of every synced field as both systems held it after the last successful sync of the pair: the
merge base and the echo filter. It lives on the D row so a link and its snapshot always commit together.

Reading many ids (`get_many_by_*`) groups them by bucket. With at least SCAN_AT_LEAST ids, the buckets that hold wanted
ids are read whole, all at once (a partition query each), for as long as that costs less than point reads would (a
page of 1,000 rows costs about POINT_READS_PER_PAGE point reads; the rows this pays for are shared out among the
buckets, and no bucket's page is larger than its share): a bucket read whole is settled, and the ids of a bucket
that gave up are read by point reads on threads. A small table is thus read in a request a bucket; a large one (10M
links: 625,000 rows per bucket) by point reads, as before. `list` reads the side's buckets one after another;
`count` and `has_any` (one row each) ask every bucket at once.

Why 8 buckets
-------------
Azure's published targets for Table storage [1]: a single table partition serves up to 2,000 entities/s (1 KiB
entities); a storage account up to 20,000 transactions/s. A link is written on both sides, so one side never needs
more than half of what the account serves: 10,000 entities/s, 5 partitions. 8 buckets give a side 8 x 2,000 = 16,000
entities/s of partition capacity, both sides together 32,000: with 8, the account, not a partition, is the ceiling,
and more buckets buy no throughput. They do cost transactions: a save spreads over more partitions, and a transaction
holds one partition. A page of 5,000 links is 56 D transactions with 8 buckets (625 links a bucket: 7 each;
64 with 16 buckets; 50 unsharded), and its index, when the Marketo ids are consecutive, 50 packs in at most 8
transactions (56 with an index row per link); a 50-link incremental save about 8 D transactions (1 unsharded) and
at most as many for its index, all going out WRITE_THREADS at a time. On Azurite, where a transaction of 100 rows
costs about the same whatever its rows' size, the D side's sharding is 12% more
storage time for a full sync than unsharded (28% with 16 buckets). Changing BUCKETS moves every row: it needs a
migration like `migrate-links`.

Sizing (full sync; per record: one D and one M row written, and at most one lookup on each side, so 4 entities; the
account target counted as if every entity were a transaction, which is conservative for batched writes, and more so
with the index packs, which write a hundredth of an entity per record on the M side):

    records  full sync in  records/s  link entities/s  per side, unsharded  per bucket (8 a side)
    1M       8 h                  35              139                   69                       9
    1M       1 h                 278            1,111                  556                      69
    10M      8 h                 347            1,389                  694                      87
    10M      4 h                 694            2,778                1,389                     174
    10M      1 h               2,778           11,111                5,556                     694

    buckets: 125,000 links per bucket and side at 1M, 1,250,000 at 10M (one partition held 1M / 10M before)
    transactions per page of 5,000 links: 56 D + at most 8 for the ~50 index packs of consecutive ids (56 for index
      rows of their own; 100 in all unsharded); 10M links: 2,000 pages, about 128,000 transactions (224,000 with an
      index row per link, 200,000 unsharded), each at most 100 operations on one partition

One partition per side (the first layout) caps a side at 2,000 entities/s, i.e. 1,000 records/s: a 10M full sync needs
at least 2.8 h for its link rows alone, and 10M in 1 h needs 5,556/s per side, 2.8 times the target. Sharded, the same
hour needs 694/s per bucket (35% of a partition's target) and 11,111 entities/s of the account (56% of its target,
shared with everything else in it). The buckets of a side are adjacent keys; Azure can spread partitions (never one
partition) over servers as load grows, which is what the buckets allow.

[1] "Scalability and performance targets for Table storage",
    https://learn.microsoft.com/azure/storage/tables/scalability-targets ("Maximum request rate per storage account:
    20,000 transactions per second, which assumes a 1-KiB entity size"; "Target throughput for a single table
    partition (1 KiB-entities): Up to 2,000 entities per second").

The old layouts
---------------
Earlier versions kept every link row in one table, `<prefix>links`: first in one partition per side (`<entity>|D`,
`<entity>|M`), then in the bucket partitions above. `python -m sync migrate-links [--dry-run]`
(`LinkStore.migrate_legacy`) moves both: partition by partition, page by page (1,000 rows, resuming after the last
row key handled), it copies each old row, unchanged but for its PartitionKey (its bucket's), into its bucket's table
(upserts, in transactions), and only then deletes the old rows of that page; the two sides of an entity at once. A
crash leaves old rows that were maybe copied already: running the command again copies them again (the same values)
and deletes them, so it is idempotent and resumable. `--dry-run` counts the old rows and writes nothing. Each old row
is read once and deleted once in its old partition, 2 entities per link and side: at one partition's 2,000
entities/s, at least 17 min for 1M links in one partition per side and 2.8 h for 10M (that layout's own ceiling,
once; the bucket partitions move 8 times as fast). Measured on Azurite (in memory, one Node process, whose
transactions are the bound: more threads do not help): 20,000 links in 72 s, 276 links/s, which would be an hour for
1M. A stream does not sync while its links are being moved (below); each stream resumes as soon as its own are moved
(the command takes the mapping's streams one after another).

The store refuses rather than guesses: while an entity still has rows in the old table, every LinkStore call on it
(but `delete_all`, which removes every layout, and `has_legacy_rows`) raises LegacyLayout ("links of lead are in the
old layout: run python -m sync migrate-links"), so a cycle fails with that message instead of treating every linked
record as unlinked and matching it again without its snapshot. `python -m sync check` reports the same. Reading the
old table as a fallback was rejected: it doubles the cost of every miss (a full sync of new records is all misses)
for as long as the fallback lives, and list/count/delete would have to merge two layouts. The check costs one one-row
query per entity (the key range of the entity's partitions in the old table), once per LinkStore (process) after it
comes back empty; nothing writes the old table any more, so run the migration after the old version of the app has
stopped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby, zip_longest
from typing import Any, Literal, TypeVar

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
PACK_SPAN = 100  # consecutive Marketo ids per index pack row (an entity holds at most 252 properties of its own)
UNIT_SPAN = 100  # consecutive slots of an import unit per unit-map row (likewise)
SCAN_PAGE = 1000  # rows per page when a partition is read whole
POINT_READS_PER_PAGE = 15  # what a page of 1,000 rows costs, in point reads (measured on Azurite)
SCAN_AT_LEAST = 64  # fewer ids than this: point reads, always
READ_THREADS = 16  # point reads in flight at once
WRITE_THREADS = 8  # transactions in flight at once
TRANSACTION_ATTEMPTS = 4

Side = Literal["D", "M"]
SIDES: tuple[Side, Side] = ("D", "M")
Part = Literal["D", "M", "P", "U"]  # a side's rows, the index packs or the unit maps (both kept in the M tables)
_T = TypeVar("_T")


def link_bucket(record_id: str) -> int:
    """The bucket of an id: crc32 of its lower-cased UTF-8 bytes, modulo BUCKETS (stable across runs and hosts)."""
    return zlib.crc32(record_id.lower().encode()) % BUCKETS


def bucket_label(bucket: int) -> str:
    return f"{bucket:02x}"


def pack_label(marketo_id: str) -> str | None:
    """The index pack of a Marketo id: its integer value // PACK_SPAN, fixed-width; None for an id that is not a
    plain integer (Marketo's person ids are: a CRM object's may not be), whose index row is a row of its own."""
    if not (marketo_id.isascii() and marketo_id.isdigit()) or len(marketo_id) > 15:
        return None
    return f"{int(marketo_id) // PACK_SPAN:013d}"


def pack_property(marketo_id: str) -> str:
    """The property of a pack row that holds the Dynamics id linked to `marketo_id`."""
    return f"L{marketo_id}"


@dataclass(frozen=True)
class Staged:
    """Where a staged D row waits for its Marketo id: slot `slot` of import unit `unit` (see "Staged rows")."""

    unit: str
    slot: int

    @property
    def label(self) -> str:
        """The unit-map row that holds this slot's Marketo id, once it is proven."""
        return f"{self.unit}.{self.slot // UNIT_SPAN:07d}"

    @property
    def property(self) -> str:
        return f"S{self.slot}"

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Staged | None:
        """The slot a D row was staged in, if it has no Marketo id of its own."""
        if row.get("MarketoId") or not row.get("Unit") or row.get("Slot") is None:
            return None
        return cls(str(row["Unit"]), int(row["Slot"]))


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
    if kind == "merge":
        return ("upsert", entity, {"mode": UpdateMode.MERGE})
    return (kind, entity)


def submit_transactions(table: TableClient, operations: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Submit operations on one table as entity-group transactions, several at once; see `submit_grouped`."""
    return submit_grouped([(table, operations)])


def submit_grouped(groups: Sequence[tuple[TableClient, Sequence[tuple[str, dict[str, Any]]]]]) -> int:
    """Submit each table's operations as entity-group transactions, WRITE_THREADS at once over all the tables (each
    is a round trip of its own; the service serves them concurrently), taken round-robin over the tables and their
    partitions; returns how many were sent. All are attempted; the first failure is raised."""
    per_table = [[(table, batch) for batch in chunked_transactions(operations)] for table, operations in groups]
    batches = [item for round_ in zip_longest(*per_table) for item in round_ if item is not None]
    for _, batch in batches:
        if len(batch) > MAX_TRANSACTION_OPERATIONS or len({op[1]["PartitionKey"] for op in batch}) != 1:
            raise TransactionTooLarge("a transaction must hold at most 100 operations on one partition")

    def submit(item: tuple[TableClient, list[tuple[Any, ...]]]) -> None:
        table, batch = item
        # azure-core does not retry a POST whose connection dropped (a server closing an idle pooled connection);
        # an entity-group transaction is atomic and its operations are upserts, so sending it again is safe
        for attempt in Retrying(
            retry=retry_if_exception_type((ServiceRequestError, ServiceResponseError)),
            stop=stop_after_attempt(TRANSACTION_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        ):
            with attempt:
                modes = {op[2]["mode"] if op[0] == "upsert" else None for op in batch}
                if len(modes) == 1 and None not in modes:
                    entities = [op[1] for op in batch]
                    if UpdateMode.MERGE in modes:
                        submit_upserts(table, entities, merge=True)
                    else:
                        submit_upserts(table, entities)
                else:
                    table.submit_transaction(batch)

    if len(batches) == 1:
        submit(batches[0])
    elif batches:
        with ThreadPoolExecutor(min(WRITE_THREADS, len(batches))) as pool:
            futures = [pool.submit(submit, item) for item in batches]
        for future in futures:
            future.result()
    return len(batches)


@functools.cache
def _bucket_partition(entity: str, side: Part, bucket: int) -> str:
    """A bucket's PartitionKey (a few per entity: encoded once, not for every row)."""
    return encode_key(f"{entity}|{side}|{bucket_label(bucket)}")


def link_table_name(prefix: str, side: Side, bucket: int) -> str:
    """The table of one side's bucket: `<prefix>linksd00` .. `<prefix>linksm07`."""
    return f"{prefix}links{side.lower()}{bucket_label(bucket)}"


def link_table_names(prefix: str) -> list[str]:
    return [link_table_name(prefix, side, bucket) for side in SIDES for bucket in range(BUCKETS)]


def old_table_name(prefix: str) -> str:
    """The one table every link row lived in before the tables per bucket (see "The old layouts")."""
    return f"{prefix}links"


def _rows_or_none(rows: Iterable[_T]) -> Iterator[_T]:
    """The rows of a query on a table that may not exist (the old table of a deployment that never had one)."""
    try:
        yield from rows
    except ResourceNotFoundError:
        return


class LinkStore:
    def __init__(self, tables: Mapping[tuple[Side, int], TableClient], old: TableClient) -> None:
        """`tables`: the table of each (side, bucket); `old`: the one table of the earlier layouts, which may not
        exist (it is only read, to find rows still to migrate, and emptied)."""
        missing = [(side, b) for side in SIDES for b in range(BUCKETS) if (side, b) not in tables]
        if missing:
            raise ValueError(f"LinkStore needs a table per side and bucket; missing {missing}")
        self._tables = dict(tables)
        self._old = old
        self._current: set[str] = set()  # entities proven free of old-layout rows

    # --- keys -------------------------------------------------------------------------------------------------------
    @staticmethod
    def partition(entity: str, side: Side, record_id: str) -> str:
        """The PartitionKey of the row of `record_id` (a Dynamics id for side D, a Marketo id for side M)."""
        return _bucket_partition(entity, side, link_bucket(record_id))

    @staticmethod
    def partitions(entity: str, side: Side) -> list[str]:
        """Every bucket partition of one side of an entity, in bucket order."""
        return [_bucket_partition(entity, side, b) for b in range(BUCKETS)]

    @staticmethod
    def legacy_partition(entity: str, side: Side) -> str:
        """The one partition of a side in the first layout (in the old table)."""
        return encode_key(f"{entity}|{side}")

    def _table(self, part: Part, bucket: int) -> TableClient:
        """The table of a part's bucket: the packs and the unit maps live in the M tables, beside the M rows."""
        side: Side = "D" if part == "D" else "M"
        return self._tables[side, bucket]

    def _where(self, entity: str, side: Side, record_id: str) -> tuple[TableClient, str, str]:
        """The table, PartitionKey and RowKey of the row of `record_id`."""
        bucket = link_bucket(record_id)
        return self._tables[side, bucket], _bucket_partition(entity, side, bucket), encode_key(record_id)

    def _d_row(self, link: Link, staged: Staged | None = None) -> dict[str, Any]:
        """The authoritative row of a link; staged: without its Marketo id, which its unit's map will hold."""
        snapshot = link.snapshot_json if link.snapshot_json is not None else encode_snapshot(link.snapshot)
        if len(snapshot) > MAX_SNAPSHOT_CHARS:
            raise ValueError(
                f"snapshot of {link.entity} {link.dynamics_id} is {len(snapshot)} characters; "
                f"at most {MAX_SNAPSHOT_CHARS} fit in one table property"
            )
        row = {
            "PartitionKey": self.partition(link.entity, "D", link.dynamics_id),
            "RowKey": encode_key(link.dynamics_id),
            "Entity": link.entity,
            "DynamicsId": link.dynamics_id,
            "MarketoId": link.marketo_id,
            "Snapshot": snapshot,
            "SyncedAt": link.synced_at or datetime.now(UTC),
        }
        if staged is not None:
            del row["MarketoId"]
            row["Unit"], row["Slot"] = staged.unit, staged.slot
        return row

    @staticmethod
    def _unit_row(entity: str, label: str) -> dict[str, Any]:
        """A unit-map row without its slots (each a property: S<slot> = the Marketo id proven for it)."""
        return {
            "PartitionKey": _bucket_partition(entity, "U", link_bucket(label)),
            "RowKey": encode_key(label),
            "Entity": entity,
            "Label": label,
        }

    @staticmethod
    def _pack_row(entity: str, label: str) -> dict[str, Any]:
        """An index pack row without its links (each a property: pack_property(marketo id) = dynamics id)."""
        return {
            "PartitionKey": _bucket_partition(entity, "P", link_bucket(label)),
            "RowKey": encode_key(label),
            "Entity": entity,
            "Pack": label,
        }

    def _m_row(self, link: Link) -> dict[str, Any]:
        return {
            "PartitionKey": self.partition(link.entity, "M", link.marketo_id),
            "RowKey": encode_key(link.marketo_id),
            "Entity": link.entity,
            "DynamicsId": link.dynamics_id,
            "MarketoId": link.marketo_id,
        }

    def _marketo_ids(self, entity: str, rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
        """Each D row's Marketo id: its own, or a staged row's from its unit's map (None while none is proven)."""
        staged = [Staged.of_row(row) for row in rows]
        labels = {where.label for where in staged if where is not None}
        maps = {str(row.get("Label")): row for row in self._many(entity, "U", labels)} if labels else {}
        ids: list[str | None] = []
        for row, where in zip(rows, staged, strict=True):
            if where is None:
                ids.append(row.get("MarketoId") or None)
                continue
            value = maps.get(where.label, {}).get(where.property)
            ids.append(value if isinstance(value, str) and value else None)
        return ids

    def _links_of(self, entity: str, rows: Sequence[Mapping[str, Any]]) -> list[Link]:
        """The links of D rows; a staged row whose Marketo id is not proven yet is no link."""
        return [
            self._from_d_row(row, marketo_id)
            for row, marketo_id in zip(rows, self._marketo_ids(entity, rows), strict=True)
            if marketo_id is not None
        ]

    @staticmethod
    def _from_d_row(row: Mapping[str, Any], marketo_id: str) -> Link:
        return Link(
            entity=row["Entity"],
            dynamics_id=row["DynamicsId"],
            marketo_id=marketo_id,
            snapshot=json.loads(row.get("Snapshot") or "{}"),
            synced_at=row.get("SyncedAt"),
        )

    # --- the old layouts --------------------------------------------------------------------------------------------
    def _old_rows(self, entity: str, **options: Any) -> Iterator[TableEntity]:
        """The entity's rows in the old table, every layout: its PartitionKeys all start with encode("<entity>|")."""
        return _rows_or_none(
            self._old.query_entities(
                "PartitionKey ge @first and PartitionKey lt @after",
                parameters={"first": encode_key(f"{entity}|"), "after": encode_key(f"{entity}}}")},  # "|" + 1 = "}"
                **options,
            )
        )

    def has_legacy_rows(self, entity: str) -> bool:
        """Whether any link row of `entity` is still in the old table (either earlier layout): a one-row query."""
        return next(self._old_rows(entity, select=["RowKey"], results_per_page=1), None) is not None

    def _require_current(self, entity: str) -> None:
        if entity in self._current:
            return
        if self.has_legacy_rows(entity):
            raise LegacyLayout(entity)
        self._current.add(entity)

    def migrate_legacy(self, entity: str, *, dry_run: bool = False) -> Migration:
        """Move the old table's rows of `entity` into their buckets' tables, both sides at once, partition by
        partition and page by page: copy, then delete. Idempotent and resumable: old rows left by a crash are copied
        again (the same values) and deleted."""
        with ThreadPoolExecutor(2) as pool:  # the two sides at once: each at its own partitions' pace
            d_side = pool.submit(self._migrate_side, entity, "D", "DynamicsId", dry_run)
            m_side = pool.submit(self._migrate_side, entity, "M", "MarketoId", dry_run)
        dynamics_rows, marketo_rows = d_side.result(), m_side.result()
        if not dry_run:
            self._current.discard(entity)  # proven again on next use
        return Migration(entity, dynamics_rows, marketo_rows, dry_run)

    def _migrate_side(self, entity: str, side: Side, id_property: str, dry_run: bool) -> int:
        moved = 0
        for old in [self.legacy_partition(entity, side), *self.partitions(entity, side)]:
            moved += self._migrate_partition(entity, side, old, id_property, dry_run)
        return moved

    def _migrate_partition(self, entity: str, side: Side, old: str, id_property: str, dry_run: bool) -> int:
        if dry_run:
            rows = self._old.query_entities("PartitionKey eq @pk", parameters={"pk": old}, select=["RowKey"])
            return sum(1 for _ in _rows_or_none(rows))
        moved = 0
        after = ""  # resume after the last row key handled: a page never depends on a continuation token
        while True:
            query = self._old.query_entities(
                "PartitionKey eq @pk and RowKey gt @after",
                parameters={"pk": old, "after": after},
                results_per_page=SCAN_PAGE,
            )
            page = list(next(_rows_or_none(query.by_page()), []))
            if not page:
                return moved
            copies: dict[int, list[tuple[str, dict[str, Any]]]] = {}
            for row in page:
                record_id = row.get(id_property)
                if not isinstance(record_id, str) or not record_id:
                    raise ValueError(f"old-layout link row {old}/{row['RowKey']} has no {id_property}")
                bucket = link_bucket(record_id)
                copies.setdefault(bucket, []).append(
                    ("upsert", {**row, "PartitionKey": _bucket_partition(entity, side, bucket)})
                )
            submit_grouped([(self._tables[side, bucket], ops) for bucket, ops in copies.items()])
            self._delete_keys(old, [row["RowKey"] for row in page])
            moved += len(page)
            after = page[-1]["RowKey"]

    def _delete_keys(self, partition: str, keys: Sequence[str]) -> None:
        """Delete rows of one partition of the old table."""
        _delete_in(self._old, partition, keys)

    # --- reads ------------------------------------------------------------------------------------------------------
    def get_by_dynamics_id(self, entity: str, dynamics_id: str) -> Link | None:
        self._require_current(entity)
        table, partition, key = self._where(entity, "D", dynamics_id)
        try:
            row = table.get_entity(partition, key)
        except ResourceNotFoundError:
            return None
        links = self._links_of(entity, [row])
        return links[0] if links else None

    def get_by_marketo_id(self, entity: str, marketo_id: str) -> Link | None:
        """The link whose Marketo side is `marketo_id` (index row, then the authoritative row it points at)."""
        self._require_current(entity)
        dynamics_id = self._index_pointers(entity, [marketo_id]).get(marketo_id)
        if dynamics_id is None:
            return None
        link = self.get_by_dynamics_id(entity, dynamics_id)
        if link is None or link.marketo_id != marketo_id:
            return None  # stale index row
        return link

    def get_many_by_dynamics_id(self, entity: str, dynamics_ids: Iterable[str]) -> dict[str, Link]:
        """dynamics id -> link, for the ids that have one. Many ids: the buckets holding them read whole, in pages
        of 1,000, for as long as it pays; the ids of the buckets not reached by point reads on threads (a filter
        ORing row keys would scan the partition once per query, in Azure and in Azurite alike)."""
        self._require_current(entity)
        rows = self._many(entity, "D", dynamics_ids)
        return {link.dynamics_id: link for link in self._links_of(entity, rows)}

    def get_many_by_marketo_id(self, entity: str, marketo_ids: Iterable[str]) -> dict[str, Link]:
        """marketo id -> link, for the ids that have one (stale index rows skipped)."""
        self._require_current(entity)
        pointers = self._index_pointers(entity, marketo_ids)
        links = self.get_many_by_dynamics_id(entity, pointers.values())
        return {
            marketo_id: links[dynamics_id]
            for marketo_id, dynamics_id in pointers.items()
            if dynamics_id in links and links[dynamics_id].marketo_id == marketo_id
        }

    def _index_pointers(self, entity: str, marketo_ids: Iterable[str]) -> dict[str, str]:
        """marketo id -> dynamics id, as the index says (the caller proves each by its D row): the pack rows first,
        then the M rows of the ids no pack names (ids that are no integer, and rows written before the packs)."""
        ids = list(dict.fromkeys(marketo_ids))
        packed: dict[str, list[str]] = {}
        for marketo_id in ids:
            label = pack_label(marketo_id)
            if label is not None:
                packed.setdefault(label, []).append(marketo_id)
        pointers: dict[str, str] = {}
        for row in self._many(entity, "P", packed):
            for marketo_id in packed.get(str(row.get("Pack")), ()):
                dynamics_id = row.get(pack_property(marketo_id))
                if isinstance(dynamics_id, str) and dynamics_id:
                    pointers[marketo_id] = dynamics_id
        rest = [marketo_id for marketo_id in ids if marketo_id not in pointers]
        pointers.update({row["MarketoId"]: row["DynamicsId"] for row in self._many(entity, "M", rest)})
        return pointers

    def _many(self, entity: str, side: Part, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The rows of `side` for the ids that have one (for the packs: their labels), the ids grouped by bucket."""
        wanted: dict[int, set[str]] = {}  # bucket -> row keys
        for record_id in dict.fromkeys(ids):
            wanted.setdefault(link_bucket(record_id), set()).add(encode_key(record_id))
        total = sum(len(keys) for keys in wanted.values())
        found: list[dict[str, Any]] = []
        if total >= SCAN_AT_LEAST:
            found, wanted = self._scan(entity, side, wanted, max_rows=total // POINT_READS_PER_PAGE * SCAN_PAGE)

        def read(key: tuple[int, str]) -> dict[str, Any] | None:
            bucket, row_key = key
            try:
                return dict(self._table(side, bucket).get_entity(_bucket_partition(entity, side, bucket), row_key))
            except ResourceNotFoundError:
                return None

        keys = [(bucket, row_key) for bucket, row_keys in wanted.items() for row_key in row_keys]
        if len(keys) <= 1:
            read_back = [read(k) for k in keys]
        else:
            with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(keys))) as pool:
                read_back = list(pool.map(read, keys))
        return found + [row for row in read_back if row is not None]

    def _scan(
        self, entity: str, side: Part, wanted: dict[int, set[str]], max_rows: int
    ) -> tuple[list[dict[str, Any]], dict[int, set[str]]]:
        """Read the buckets holding wanted ids whole, all at once (a table each), `max_rows` rows in all shared out
        among them: the wanted rows found, and the wanted keys still to be read (of the buckets that gave up)."""
        budget = max(1, max_rows // len(wanted))
        page_rows = min(SCAN_PAGE, budget)  # a bucket never reads past its share, not even with its first page

        def scan(bucket: int) -> tuple[list[dict[str, Any]], set[str]]:
            keys, found, read = wanted[bucket], [], 0
            for page in self._side_rows(entity, side, bucket, results_per_page=page_rows).by_page():
                for row in page:
                    read += 1
                    if row["RowKey"] in keys:
                        found.append(dict(row))
                if len(found) == len(keys):
                    return found, set()  # every wanted row of the bucket is found: the rest is not needed
                if read >= budget:
                    return found, keys - {row["RowKey"] for row in found}  # given up: point reads for the rest
            return found, set()  # read whole: the rest do not exist

        buckets = sorted(wanted)
        with ThreadPoolExecutor(len(buckets)) as pool:
            scanned = list(pool.map(scan, buckets))
        rows = [row for found, _ in scanned for row in found]
        return rows, {bucket: left for bucket, (_, left) in zip(buckets, scanned, strict=True) if left}

    def _side_rows(self, entity: str, side: Part, bucket: int, **options: Any) -> ItemPaged[TableEntity]:
        return self._table(side, bucket).query_entities(
            "PartitionKey eq @pk", parameters={"pk": _bucket_partition(entity, side, bucket)}, **options
        )

    def _side_iter(self, entity: str, side: Part, **options: Any) -> Iterator[TableEntity]:
        """Every row of a part of an entity, bucket after bucket."""
        for bucket in range(BUCKETS):
            yield from self._side_rows(entity, side, bucket, **options)

    def _each_bucket(self, work: Callable[[int], _T]) -> list[_T]:
        """`work(bucket)` for every bucket at once (a query each, on its own table)."""
        with ThreadPoolExecutor(BUCKETS) as pool:
            return list(pool.map(work, range(BUCKETS)))

    # --- writes -----------------------------------------------------------------------------------------------------
    def save(
        self,
        links: Iterable[Link],
        indexed: Iterable[tuple[str, str]] = (),
        staged: Mapping[str, Staged] | None = None,
    ) -> int:
        """Write links and their snapshots; returns the number of transactions sent.

        Authoritative D rows go first, then the index: a Marketo id that is an integer goes into its pack row (one
        insert-or-merge per pack, whatever the links it gets), any other into an M row of its own. `indexed` names
        (dynamics id, marketo id) pairs whose index entry is already right (an existing link whose snapshot moved):
        only their D row is rewritten. `staged` maps the Dynamics ids whose D row `stage` wrote to their slot: their
        Marketo ids go into the unit maps (merged like the packs) instead of a D row each. Relinking a record to a
        new counterpart leaves the old counterpart's index entry stale (ignored by lookups) until a later save
        replaces it.
        """
        links = list(links)
        for entity in {link.entity for link in links}:
            self._require_current(entity)
        known = set(indexed)
        slots = staged or {}
        d_ops: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        u_ops: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        m_ops: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        units: dict[tuple[str, str], dict[str, Any]] = {}
        packs: dict[tuple[str, str], dict[str, Any]] = {}
        for link in links:
            where = slots.get(link.dynamics_id)
            if where is None:
                d_ops.setdefault(link_bucket(link.dynamics_id), []).append(("upsert", self._d_row(link)))
            else:
                unit = units.get((link.entity, where.label))
                if unit is None:
                    unit = units[link.entity, where.label] = self._unit_row(link.entity, where.label)
                    u_ops.setdefault(link_bucket(where.label), []).append(("merge", unit))
                unit[where.property] = link.marketo_id
            if (link.dynamics_id, link.marketo_id) in known:
                continue
            label = pack_label(link.marketo_id)
            if label is None:
                m_ops.setdefault(link_bucket(link.marketo_id), []).append(("upsert", self._m_row(link)))
                continue
            pack = packs.get((link.entity, label))
            if pack is None:
                pack = packs[link.entity, label] = self._pack_row(link.entity, label)
                m_ops.setdefault(link_bucket(label), []).append(("merge", pack))
            pack[pack_property(link.marketo_id)] = link.dynamics_id
        authority = [(self._tables["D", bucket], ops) for bucket, ops in sorted(d_ops.items())]
        authority += [(self._tables["M", bucket], ops) for bucket, ops in sorted(u_ops.items())]
        sent = submit_grouped(authority)
        return sent + submit_grouped([(self._tables["M", bucket], ops) for bucket, ops in sorted(m_ops.items())])

    def stage(self, links: Iterable[tuple[Link, Staged]]) -> int:
        """Write the D rows of links whose Marketo ids are not known yet (their `marketo_id` is ignored), each in its
        slot; a later `save(..., staged=...)` proves them. Until then they are no links. Returns the transactions."""
        ops: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        for link, where in links:
            self._require_current(link.entity)
            ops.setdefault(link_bucket(link.dynamics_id), []).append(("upsert", self._d_row(link, where)))
        return submit_grouped([(self._tables["D", bucket], rows) for bucket, rows in sorted(ops.items())])

    def delete(self, links: Iterable[Link]) -> int:
        """Remove links (both rows); missing rows are ignored. Returns the number of delete calls."""
        sent = 0
        for link in links:
            self._require_current(link.entity)
            sides: tuple[tuple[Side, str], ...] = (("D", link.dynamics_id), ("M", link.marketo_id))
            for side, record_id in sides:
                table, partition, key = self._where(link.entity, side, record_id)
                with contextlib.suppress(ResourceNotFoundError):
                    table.delete_entity(partition, key)
                sent += 1
        return sent

    def delete_all(self, entity: str) -> int:
        """Remove every link of an entity (both sides and the index packs, every bucket, and any rows left in the
        old table, in transactions); returns how many links there were."""
        old = sorted(
            (row["PartitionKey"], row["RowKey"]) for row in self._old_rows(entity, select=["PartitionKey", "RowKey"])
        )
        counts = []
        for side in SIDES:
            rows = sum(1 for partition, _ in old if partition.startswith(self.legacy_partition(entity, side)))
            counts.append(rows + sum(self._delete_part(entity, side, bucket) for bucket in range(BUCKETS)))
        for bucket in range(BUCKETS):  # the index packs and unit maps (their links were counted on the sides)
            self._delete_part(entity, "P", bucket)
            self._delete_part(entity, "U", bucket)
        for partition, group in groupby(old, key=lambda key: key[0]):
            _delete_in(self._old, partition, [row_key for _, row_key in group])
        self._current.discard(entity)
        return counts[0] or counts[1]

    def _delete_part(self, entity: str, part: Part, bucket: int) -> int:
        """Delete every row of one bucket of a part of an entity; how many there were."""
        keys = [row["RowKey"] for row in self._side_rows(entity, part, bucket, select=["RowKey"])]
        _delete_in(self._table(part, bucket), _bucket_partition(entity, part, bucket), keys)
        return len(keys)

    # --- whole entity -----------------------------------------------------------------------------------------------
    def list(self, entity: str) -> Iterator[Link]:
        """Every link of an entity, streamed page by page (bucket by bucket)."""
        self._require_current(entity)
        for bucket in range(BUCKETS):
            for page in self._side_rows(entity, "D", bucket, results_per_page=SCAN_PAGE).by_page():
                yield from self._links_of(entity, list(page))

    def has_any(self, entity: str) -> bool:
        """Whether the entity has a link in any bucket: every bucket asked for one row, all at once."""
        self._require_current(entity)
        return any(
            self._each_bucket(
                lambda b: (
                    next(iter(self._side_rows(entity, "D", b, select=["RowKey"], results_per_page=1)), None) is not None
                )
            )
        )

    def count(self, entity: str) -> int:
        """The links of an entity: staged rows count once their Marketo id is proven."""
        self._require_current(entity)
        columns = ["RowKey", "MarketoId", "Unit", "Slot"]

        def in_bucket(bucket: int) -> int:
            rows = [dict(row) for row in self._side_rows(entity, "D", bucket, select=columns)]
            own = sum(1 for row in rows if row.get("MarketoId"))
            staged = [row for row in rows if not row.get("MarketoId")]
            return own + sum(1 for marketo_id in self._marketo_ids(entity, staged) if marketo_id is not None)

        return sum(self._each_bucket(in_bucket))


def _delete_in(table: TableClient, partition: str, keys: Sequence[str]) -> None:
    """Delete rows of one partition in transactions; a row already gone (a concurrent run) is no failure."""
    if not keys:
        return
    try:
        submit_transactions(table, [("delete", {"PartitionKey": partition, "RowKey": k}) for k in keys])
    except TableTransactionError:
        for key in keys:
            with contextlib.suppress(ResourceNotFoundError):
                table.delete_entity(partition, key)


__all__ = [
    "BUCKETS",
    "LegacyLayout",
    "Link",
    "LinkStore",
    "Migration",
    "Staged",
    "TableTransactionError",
    "TransactionTooLarge",
    "chunked_transactions",
    "link_bucket",
    "link_table_name",
    "link_table_names",
    "old_table_name",
    "submit_grouped",
]
