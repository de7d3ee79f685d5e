"""In-memory rows with the indexes Dataverse reads need: primary-key order, alternate keys, and a version-ordered
change log per table for change tracking.

Rows are plain dicts keyed by JSON property name (`leadid`, `firstname`, `_parentaccountid_value`, ...), values
already in their JSON form (GUIDs lowercase strings, datetimes `YYYY-MM-DDTHH:MM:SSZ`). A lookup's target table is
kept under a private key `~<column>` (never written out).

Every write gets the next org-wide version number (like SQL rowversion). All writes run on the server's one event
loop thread, so a transaction is simply an undo log: `with store.transaction(): ...` rolls every change back if
the block raises.
"""

from __future__ import annotations

import bisect
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList

from emulators.dataverse.schema import Table


def key_value(value: Any) -> Any:
    """Alternate-key values compare case-insensitively for strings, as SQL collation does."""
    return value.casefold() if isinstance(value, str) else value


@dataclass
class TableData:
    table: Table
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: SortedList = field(default_factory=SortedList)  # primary keys, ascending
    log_versions: list[int] = field(default_factory=list)  # change log, version ascending
    log_ids: list[str] = field(default_factory=list)
    tombstones: dict[str, int] = field(default_factory=dict)  # deleted id -> version of the delete
    key_index: dict[str, dict[tuple[Any, ...], str]] = field(default_factory=dict)  # key name -> values -> id
    tracking_since: int = 0  # delta tokens older than this version have expired (tracking re-enabled)

    def key_tuple(self, key_name: str, row: dict[str, Any]) -> tuple[Any, ...] | None:
        values = tuple(row.get(self.table.columns[c].attribute) for c in self.table.alternate_keys[key_name])
        if any(v is None for v in values):
            return None  # rows with a null key value are not indexed
        return tuple(key_value(v) for v in values)

    def rebuild_key_index(self) -> None:
        self.key_index = {name: {} for name in self.table.alternate_keys}
        for record_id, row in self.rows.items():
            for name in self.table.alternate_keys:
                values = self.key_tuple(name, row)
                if values is not None:
                    self.key_index[name][values] = record_id

    def find_by_key(self, key_name: str, values: tuple[Any, ...]) -> str | None:
        return self.key_index.get(key_name, {}).get(tuple(key_value(v) for v in values))

    def changes_since(self, version: int, until: int) -> Iterator[tuple[int, str]]:
        """(version, id) of each record's latest change in (version, until], in version order, each id once."""
        start = bisect.bisect_right(self.log_versions, version)
        stop = bisect.bisect_right(self.log_versions, until)
        rows, tombstones = self.rows, self.tombstones
        for position in range(start, stop):
            changed, record_id = self.log_versions[position], self.log_ids[position]
            row = rows.get(record_id)
            current = row["versionnumber"] if row is not None else tombstones.get(record_id)
            if current == changed:
                yield changed, record_id


class Store:
    def __init__(self, tables: dict[str, Table], first_version: int = 1_000_000) -> None:
        self.data = {name: TableData(table) for name, table in tables.items()}
        for data in self.data.values():
            data.rebuild_key_index()
        self.version = first_version
        self._undo: list[tuple[Any, ...]] | None = None
        self._id_counter = secrets.randbelow(2**40)
        node = uuid.uuid4().hex
        self._id_prefix = f"{node[:8]}-{node[8:12]}-f011-{node[12:16]}-"  # then a 12-digit ascending counter

    def new_id(self) -> str:
        """A sequential GUID, as Dataverse hands out: ascending, so primary-key order stays cheap to maintain."""
        self._id_counter += 1
        return self._id_prefix + format(self._id_counter, "012x")

    def __getitem__(self, logical_name: str) -> TableData:
        return self.data[logical_name]

    def next_version(self) -> int:
        self.version += 1
        return self.version

    # --- writes (each records its undo step when inside a transaction)

    def put(self, logical_name: str, row: dict[str, Any]) -> None:
        """Insert or replace a row; stamps versionnumber and appends to the change log."""
        data = self.data[logical_name]
        record_id = row[data.table.primary_id]
        old = data.rows.get(record_id)
        if self._undo is not None:
            self._undo.append(("put", logical_name, record_id, old, data.tombstones.get(record_id)))
        version = self.next_version()
        row["versionnumber"] = version
        if old is None:
            data.order.add(record_id)
            data.tombstones.pop(record_id, None)
        else:
            self._unindex(data, old)
        data.rows[record_id] = row
        self._index(data, row)
        data.log_versions.append(version)
        data.log_ids.append(record_id)

    def delete(self, logical_name: str, record_id: str) -> bool:
        data = self.data[logical_name]
        old = data.rows.pop(record_id, None)
        if old is None:
            return False
        if self._undo is not None:
            self._undo.append(("delete", logical_name, record_id, old, data.tombstones.get(record_id)))
        version = self.next_version()
        data.order.remove(record_id)
        self._unindex(data, old)
        data.tombstones[record_id] = version
        data.log_versions.append(version)
        data.log_ids.append(record_id)
        return True

    def bulk_load(self, logical_name: str, rows: list[dict[str, Any]]) -> None:
        """Seed many new rows at once (no undo); each gets its own version."""
        data = self.data[logical_name]
        pk = data.table.primary_id
        start = self.version + 1
        versions = range(start, start + len(rows))
        for version, row in zip(versions, rows, strict=True):
            row["versionnumber"] = version
        ids = [row[pk] for row in rows]
        data.rows.update(zip(ids, rows, strict=True))
        data.log_versions.extend(versions)
        data.log_ids.extend(ids)
        self.version += len(rows)
        data.order.update(ids)
        for name, columns in data.table.alternate_keys.items():
            attributes = [data.table.columns[c].attribute for c in columns]
            index = data.key_index.setdefault(name, {})
            for row in rows:
                values = tuple(row.get(a) for a in attributes)
                if None not in values:
                    index[tuple(key_value(v) for v in values)] = row[pk]

    def _index(self, data: TableData, row: dict[str, Any]) -> None:
        for name in data.table.alternate_keys:
            values = data.key_tuple(name, row)
            if values is not None:
                data.key_index.setdefault(name, {})[values] = row[data.table.primary_id]

    def _unindex(self, data: TableData, row: dict[str, Any]) -> None:
        for name in data.table.alternate_keys:
            values = data.key_tuple(name, row)
            if values is not None and data.key_index.get(name, {}).get(values) == row[data.table.primary_id]:
                del data.key_index[name][values]

    # --- transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._undo is not None:  # nested: the outer transaction owns the undo log
            yield
            return
        self._undo = []
        start_version = self.version
        log_lengths = {name: len(data.log_versions) for name, data in self.data.items()}
        try:
            yield
        except BaseException:
            self._rollback(start_version, log_lengths)
            raise
        finally:
            self._undo = None

    def _rollback(self, start_version: int, log_lengths: dict[str, int]) -> None:
        assert self._undo is not None
        for _kind, logical_name, record_id, old, tombstone in reversed(self._undo):
            data = self.data[logical_name]
            current = data.rows.pop(record_id, None)
            if current is not None:
                data.order.discard(record_id)
                self._unindex(data, current)
            if old is not None:
                data.rows[record_id] = old
                data.order.add(record_id)
                self._index(data, old)
            if tombstone is None:
                data.tombstones.pop(record_id, None)
            else:
                data.tombstones[record_id] = tombstone
        for name, length in log_lengths.items():
            data = self.data[name]
            del data.log_versions[length:]
            del data.log_ids[length:]
        self.version = start_version
        self._undo = []
