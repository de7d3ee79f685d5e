"""Links sharded over hash buckets, a table per side and bucket, against a real Azurite: where rows land, reads across
buckets, and the migration of an old deployment's rows (in its one links table: one partition per entity and side, or
the bucket partitions), written here directly with the table client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableClient

from emulators.azurite import Azurite
from sync.state import Link, StateStore
from sync.state import links as links_module
from sync.state.keys import encode_key
from sync.state.links import (
    BUCKETS,
    LegacyLayout,
    LinkStore,
    link_bucket,
    link_table_name,
    link_table_names,
    submit_transactions,
)
from sync.state.tables import service_client

SYNCED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class CountingRequests:
    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, request: object) -> None:
        self.requests.append(request.http_request.url)  # type: ignore[attr-defined]

    def point_reads(self) -> int:
        return sum(1 for url in self.requests if "RowKey=" in url)


def links_table(azurite: Azurite, prefix: str) -> TableClient:
    """The one links table of earlier versions (the state store never creates it: an old deployment has it)."""
    service = service_client(azurite.connection_string)
    service.create_table_if_not_exists(f"{prefix}links")
    return service.get_table_client(f"{prefix}links")


def raw_rows(table: TableClient) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["PartitionKey"], row["RowKey"]): dict(row) for row in table.list_entities()}


def bucket_rows(azurite: Azurite, prefix: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every row of the link tables of the current layout: (table, PartitionKey, RowKey) -> row."""
    service = service_client(azurite.connection_string)
    return {
        (name, key[0], key[1]): row
        for name in link_table_names(prefix)
        for key, row in raw_rows(service.get_table_client(name)).items()
    }


def some_links(entity: str, count: int, start: int = 0) -> list[Link]:
    return [
        Link(
            entity=entity,
            dynamics_id=f"0000{n:04d}-aaaa-bbbb-cccc-{entity[:4]:0>12}",
            marketo_id=str(1000 + n),
            snapshot={"email": f"p{n}@example.com", "n": n},
            synced_at=SYNCED,
        )
        for n in range(start, start + count)
    ]


def write_old_layout(table: TableClient, links: list[Link], bucketed: bool = False) -> None:
    """Rows as the versions before the tables per bucket wrote them into the one links table: PartitionKey
    <entity>|D and <entity>|M (before the buckets), or `bucketed`: <entity>|D|<bucket> and <entity>|M|<bucket>."""

    def partition(entity: str, side: str, record_id: str) -> str:
        if bucketed:
            return encode_key(f"{entity}|{side}|{link_bucket(record_id):02x}")
        return encode_key(f"{entity}|{side}")

    d_rows = [
        {
            "PartitionKey": partition(link.entity, "D", link.dynamics_id),
            "RowKey": encode_key(link.dynamics_id),
            "Entity": link.entity,
            "DynamicsId": link.dynamics_id,
            "MarketoId": link.marketo_id,
            "Snapshot": json.dumps(link.snapshot, sort_keys=True),
            "SyncedAt": SYNCED,
        }
        for link in links
    ]
    m_rows = [
        {
            "PartitionKey": partition(link.entity, "M", link.marketo_id),
            "RowKey": encode_key(link.marketo_id),
            "Entity": link.entity,
            "DynamicsId": link.dynamics_id,
            "MarketoId": link.marketo_id,
        }
        for link in links
    ]
    submit_transactions(table, [("upsert", row) for row in d_rows + m_rows])


class TestBuckets:
    def test_rows_land_in_their_bucket_partitions(self, state: StateStore, azurite: Azurite, table_prefix: str) -> None:
        leads = some_links("lead", 120)  # Marketo ids 1000..1119: integers, indexed by two packs
        contacts = [
            link.model_copy(update={"entity": "contact", "marketo_id": f"c-{link.marketo_id}"}) for link in leads
        ]
        state.links.save(leads + contacts)  # contacts' Marketo ids are no integers: an index row each
        rows = bucket_rows(azurite, table_prefix)
        assert len(rows) == 120 + 120 + 120 + 2
        packs = {}
        for (table, partition, _), row in rows.items():
            if partition.startswith(("lead~7CP~7C", "contact~7CP~7C")):
                packs[row["Pack"]] = row
                bucket = link_bucket(row["Pack"])
                assert partition == encode_key(f"{row['Entity']}|P|{bucket:02x}")
                assert table == link_table_name(table_prefix, "M", bucket)  # beside the M rows of its bucket
                continue
            side = "D" if partition.startswith(("lead~7CD~7C", "contact~7CD~7C")) else "M"
            record_id = row["DynamicsId"] if side == "D" else row["MarketoId"]
            assert partition == LinkStore.partition(row["Entity"], side, record_id)
            assert table == link_table_name(table_prefix, side, link_bucket(record_id))  # its bucket's own table
        assert sorted(packs) == [f"{10:013d}", f"{11:013d}"]
        for link in leads:  # each lead's Dynamics id under its Marketo id, in the pack of its hundred
            pack = packs[f"{int(link.marketo_id) // 100:013d}"]
            assert pack["Entity"] == "lead" and pack[f"L{link.marketo_id}"] == link.dynamics_id
        assert [len([k for k in pack if k.startswith("L")]) for _, pack in sorted(packs.items())] == [100, 20]
        partitions = {partition for _, partition, _ in rows}
        assert {p for p in partitions if p.startswith("contact~7CM")} == set(LinkStore.partitions("contact", "M"))
        assert {p for p in partitions if p.startswith("lead~7CD")} == set(LinkStore.partitions("lead", "D"))
        assert not {p for p in partitions if p.startswith("lead~7CM")}  # a lead's index is its pack
        assert len({table for table, _, _ in rows}) == 2 * BUCKETS  # 120 ids a side fill every bucket
        for link in leads + contacts:
            found = state.links.get_by_marketo_id(link.entity, link.marketo_id)
            assert found is not None and found.dynamics_id == link.dynamics_id
        assert f"{table_prefix}links" not in {t.name for t in state.service.list_tables()}  # the old table: none

    @pytest.mark.parametrize("scan_page", [1000, 10])
    def test_get_many_across_buckets(
        self, azurite: Azurite, table_prefix: str, monkeypatch: pytest.MonkeyPatch, scan_page: int
    ) -> None:
        monkeypatch.setattr(links_module, "SCAN_PAGE", scan_page)
        counter = CountingRequests()
        store = StateStore(service_client(azurite.connection_string, raw_request_hook=counter), prefix=table_prefix)
        saved = some_links("lead", 300)
        store.links.save(saved)
        store.links.save(some_links("leads", 40))  # another entity whose keys sort next to these
        by_d = {link.dynamics_id: link for link in saved}

        counter.requests.clear()
        found = store.links.get_many_by_dynamics_id("lead", [*by_d, "missing"])
        assert found.keys() == by_d.keys()
        assert all(found[d].marketo_id == by_d[d].marketo_id and found[d].snapshot == by_d[d].snapshot for d in by_d)
        if scan_page == 1000:  # one page covers every bucket: no point read
            assert counter.point_reads() == 0
        else:  # 300 ids allow 20 pages of 10 rows: the buckets the scan got through, then point reads for the rest
            assert 0 < counter.point_reads() < 300

        few = [link.marketo_id for link in saved[:20]]  # fewer than SCAN_AT_LEAST: point reads in their buckets
        assert {m: link.dynamics_id for m, link in store.links.get_many_by_marketo_id("lead", few).items()} == {
            link.marketo_id: link.dynamics_id for link in saved[:20]
        }
        many = store.links.get_many_by_marketo_id("lead", [link.marketo_id for link in saved] + ["0"])
        assert len(many) == 300 and many["1299"].dynamics_id == saved[299].dynamics_id

    def test_list_count_has_any_and_delete_all_cover_every_bucket(self, state: StateStore) -> None:
        leads, contacts = some_links("lead", 200), some_links("contact", 50)
        state.links.save(leads + contacts)
        assert state.links.count("lead") == 200 and state.links.count("contact") == 50
        assert {link.dynamics_id for link in state.links.list("lead")} == {link.dynamics_id for link in leads}
        assert state.links.has_any("lead") and not state.links.has_any("account")
        assert state.links.delete_all("lead") == 200
        assert state.links.count("lead") == 0 and not state.links.has_any("lead")
        assert state.links.get_by_marketo_id("lead", leads[7].marketo_id) is None
        assert state.links.count("contact") == 50
        state.links.delete(contacts[:10])
        assert state.links.count("contact") == 40
        assert state.links.get_by_marketo_id("contact", contacts[20].marketo_id) is not None

    def test_has_any_finds_a_link_in_the_last_bucket(self, state: StateStore) -> None:
        last = next(
            link
            for link in some_links("lead", 200)
            if LinkStore.partition("lead", "D", link.dynamics_id) == LinkStore.partitions("lead", "D")[-1]
        )
        state.links.save([last])
        assert state.links.has_any("lead") and state.links.count("lead") == 1


class TestOldLayout:
    @pytest.mark.parametrize("bucketed", [False, True], ids=["one partition per side", "bucket partitions"])
    def test_old_rows_are_refused_and_delete_all_removes_them(
        self, state: StateStore, azurite: Azurite, table_prefix: str, bucketed: bool
    ) -> None:
        write_old_layout(links_table(azurite, table_prefix), some_links("lead", 5), bucketed=bucketed)
        assert state.links.has_legacy_rows("lead") and not state.links.has_legacy_rows("contact")
        assert not state.links.has_legacy_rows("lea") and not state.links.has_legacy_rows("leads")  # key neighbours
        with pytest.raises(LegacyLayout, match="links of lead are in the old layout: run python -m sync migrate-links"):
            state.links.get_by_dynamics_id("lead", "x")
        for call in (
            lambda: state.links.get_many_by_marketo_id("lead", ["1000"]),
            lambda: state.links.save(some_links("lead", 1, start=9)),
            lambda: state.links.has_any("lead"),
            lambda: list(state.links.list("lead")),
        ):
            with pytest.raises(LegacyLayout):
                call()
        assert state.links.count("contact") == 0  # another entity is not held up
        assert state.links.delete_all("lead") == 5
        assert not state.links.has_legacy_rows("lead") and state.links.count("lead") == 0
        assert raw_rows(links_table(azurite, table_prefix)) == {}

    def test_a_dry_run_changes_nothing(self, state: StateStore, azurite: Azurite, table_prefix: str) -> None:
        table = links_table(azurite, table_prefix)
        write_old_layout(table, some_links("lead", 30))
        write_old_layout(table, some_links("lead", 12, start=100), bucketed=True)
        before = raw_rows(table)
        migration = state.links.migrate_legacy("lead", dry_run=True)
        assert (migration.dynamics_rows, migration.marketo_rows, migration.dry_run) == (42, 42, True)
        assert raw_rows(table) == before and bucket_rows(azurite, table_prefix) == {}

    def test_migration_moves_every_row_into_its_bucket_and_is_idempotent(
        self, state: StateStore, azurite: Azurite, table_prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(links_module, "SCAN_PAGE", 100)  # pages of 100: 250 rows are 3 pages a side
        table = links_table(azurite, table_prefix)
        leads, contacts = some_links("lead", 250), some_links("contact", 30)
        newer = some_links("lead", 40, start=300)  # the version before: bucket partitions in the one table
        write_old_layout(table, leads + contacts)
        write_old_layout(table, newer, bucketed=True)
        accounts = [link.model_copy(update={"marketo_id": f"a-{link.marketo_id}"}) for link in some_links("account", 3)]
        state.links.save(accounts)  # already in the bucket tables (an index row each: no integer ids): untouched
        migration = state.links.migrate_legacy("lead")
        assert (migration.dynamics_rows, migration.marketo_rows) == (290, 290)
        assert state.links.has_legacy_rows("contact") and not state.links.has_legacy_rows("lead")
        assert state.links.migrate_legacy("contact").dynamics_rows == 30

        assert raw_rows(table) == {}
        rows = bucket_rows(azurite, table_prefix)
        assert len(rows) == 2 * (290 + 30 + 3)
        for (name, partition, _), row in rows.items():  # each in its bucket's partition, in that bucket's table
            side = "D" if partition.endswith(tuple(f"~7CD~7C{b:02x}" for b in range(BUCKETS))) else "M"
            record_id = row["DynamicsId"] if side == "D" else row["MarketoId"]
            assert partition == LinkStore.partition(row["Entity"], side, record_id)
            assert name == link_table_name(table_prefix, side, link_bucket(record_id))
        self.assert_links_intact(state, leads + newer)
        self.assert_links_intact(state, contacts)
        assert state.links.count("account") == 3

        again = state.links.migrate_legacy("lead")  # nothing left: moves nothing, changes nothing
        assert (again.dynamics_rows, again.marketo_rows) == (0, 0)
        assert bucket_rows(azurite, table_prefix) == rows

    def test_a_migration_that_crashed_halfway_is_run_again(
        self, state: StateStore, azurite: Azurite, table_prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(links_module, "SCAN_PAGE", 100)
        table = links_table(azurite, table_prefix)
        leads = some_links("lead", 250)
        write_old_layout(table, leads)
        real_delete = LinkStore._delete_keys
        calls = {"n": 0}

        def crash_on_second_page(self: LinkStore, partition: str, keys: Any) -> None:
            if partition == LinkStore.legacy_partition("lead", "D"):
                calls["n"] += 1
                if calls["n"] == 2:  # the second page of D rows is copied, its old rows not yet deleted
                    raise ConnectionError("killed")
            real_delete(self, partition, keys)

        monkeypatch.setattr(LinkStore, "_delete_keys", crash_on_second_page)
        with pytest.raises(ConnectionError):
            state.links.migrate_legacy("lead")
        old_left = [key for key in raw_rows(table) if key[0] == LinkStore.legacy_partition("lead", "D")]
        assert len(old_left) == 150 and state.links.has_legacy_rows("lead")
        with pytest.raises(LegacyLayout):
            state.links.get_by_dynamics_id("lead", leads[0].dynamics_id)

        monkeypatch.setattr(LinkStore, "_delete_keys", real_delete)
        resumed = state.links.migrate_legacy("lead")
        assert (resumed.dynamics_rows, resumed.marketo_rows) == (150, 0)  # the M side had finished meanwhile
        assert raw_rows(table) == {} and len(bucket_rows(azurite, table_prefix)) == 500
        self.assert_links_intact(state, leads)

    @staticmethod
    def assert_links_intact(state: StateStore, expected: list[Link]) -> None:
        assert state.links.count(expected[0].entity) == len(expected)
        for link in expected[:: max(1, len(expected) // 25)] + expected[-1:]:
            found = state.links.get_by_marketo_id(link.entity, link.marketo_id)
            assert found is not None
            assert (found.dynamics_id, found.snapshot, found.synced_at) == (link.dynamics_id, link.snapshot, SYNCED)
        by_d = state.links.get_many_by_dynamics_id(expected[0].entity, [link.dynamics_id for link in expected])
        assert len(by_d) == len(expected)
