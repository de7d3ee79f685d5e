"""Every state repository against a real Azurite."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest

from emulators.azurite import Azurite
from sync.state import Link, RecordError, RunCounts, RunRecord, StateStore, WatermarkConflict
from sync.state.leases import LeaseHeld, LeaseStore
from sync.state.links import MAX_TRANSACTION_OPERATIONS, Staged, chunked_transactions, link_bucket
from sync.state.tables import service_client

TRICKY_IDS = [
    "a/b",
    "a\\b",
    "hash#tag",
    "what?",
    "ctrl\x01\x1f\x7f\x9f",
    "tilde~41",
    "üñíçødé-Ωμέγα-漢字-😀",
    "o'brien@example.com",
    ("x" * 288) + "@example.com",  # a 300-character e-mail
    "%2F percent",
]


class TestWatermarks:
    def test_first_advance_creates_and_later_reads_see_it(self, state: StateStore) -> None:
        empty = state.watermarks.get("lead", "dynamics")
        assert empty.cursor is None and empty.etag is None
        moved = state.watermarks.advance(empty, "https://org/api/data/v9.2/leads?$deltatoken=1%2101%2f01%2f2026")
        again = state.watermarks.get("lead", "dynamics")
        assert again.cursor == moved.cursor
        assert again.etag == moved.etag

    def test_stale_etag_is_refused(self, state: StateStore) -> None:
        first = state.watermarks.advance(state.watermarks.get("lead", "marketo"), "token-1")
        state.watermarks.advance(first, "token-2")
        with pytest.raises(WatermarkConflict):
            state.watermarks.advance(first, "token-3")
        assert state.watermarks.get("lead", "marketo").cursor == "token-2"

    @pytest.mark.parametrize("existing", [False, True])
    def test_two_runners_race_and_exactly_one_wins(self, state: StateStore, existing: bool) -> None:
        if existing:
            state.watermarks.advance(state.watermarks.get("contact", "marketo"), "start")
        read = state.watermarks.get("contact", "marketo")
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def runner(name: str) -> None:
            barrier.wait()
            try:
                state.watermarks.advance(read, f"cursor-of-{name}")
                outcomes[name] = "won"
            except WatermarkConflict:
                outcomes[name] = "lost"

        threads = [threading.Thread(target=runner, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes.values()) == ["lost", "won"]
        winner = next(name for name, outcome in outcomes.items() if outcome == "won")
        assert state.watermarks.get("contact", "marketo").cursor == f"cursor-of-{winner}"

    def test_reset_and_list(self, state: StateStore) -> None:
        state.watermarks.advance(state.watermarks.get("lead", "dynamics"), "d")
        state.watermarks.advance(state.watermarks.get("lead", "marketo"), "m")
        assert {(w.system, w.cursor) for w in state.watermarks.list()} == {("dynamics", "d"), ("marketo", "m")}
        state.watermarks.reset("lead", "dynamics")
        assert state.watermarks.get("lead", "dynamics").cursor is None


def one_bucket(pattern: str, count: int, start: int = 0, bucket: int = 0) -> list[str]:
    """`count` ids made from `pattern` that all hash to one link bucket."""
    candidates = (pattern.format(n) for n in itertools.count(start))
    return list(itertools.islice((c for c in candidates if link_bucket(c) == bucket), count))


class CountingTransport:
    """Counts entity-group transactions ($batch requests) that reach Azurite."""

    def __init__(self) -> None:
        self.batches = 0

    def __call__(self, request: object) -> None:
        http_request = request.http_request  # type: ignore[attr-defined]
        if http_request.url.split("?")[0].endswith("/$batch"):
            self.batches += 1


class CountingRequests:
    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, request: object) -> None:
        self.requests.append(request.http_request.url)  # type: ignore[attr-defined]


class TestLinks:
    def test_lookup_either_way_with_snapshot(self, state: StateStore) -> None:
        link = Link(entity="lead", dynamics_id="d-1", marketo_id="101", snapshot={"email": "a@x.com", "score": 3})
        state.links.save([link])
        by_d = state.links.get_by_dynamics_id("lead", "d-1")
        by_m = state.links.get_by_marketo_id("lead", "101")
        assert by_d is not None and by_m is not None
        assert by_d.marketo_id == "101" and by_m.dynamics_id == "d-1"
        assert by_d.snapshot == {"email": "a@x.com", "score": 3}
        assert state.links.get_by_dynamics_id("contact", "d-1") is None

    def test_250_links_are_three_transactions_per_side(self, azurite: Azurite, table_prefix: str) -> None:
        counter = CountingTransport()
        store = StateStore(service_client(azurite.connection_string, raw_request_hook=counter), prefix=table_prefix)
        counter.batches = 0
        # ids of one bucket on each side (a partition): 250 links of one bucket are 3 transactions per side (the
        # Marketo ids are no integers here, so each has an index row of its own, not a pack)
        dynamics_ids, marketo_ids = one_bucket("d-{}", 250), one_bucket("m-{}", 250, start=1000)
        pairs = zip(dynamics_ids, marketo_ids, strict=True)
        links = [Link(entity="contact", dynamics_id=d, marketo_id=m) for d, m in pairs]
        sent = store.links.save(links)
        assert sent == 6  # 3 for the Dynamics-keyed rows, 3 for the Marketo-keyed index
        assert counter.batches == 6
        assert store.links.count("contact") == 250
        last = store.links.get_by_marketo_id("contact", marketo_ids[-1])
        assert last is not None and last.dynamics_id == dynamics_ids[-1]

    def test_transactions_never_exceed_100_operations_or_one_partition(self) -> None:
        ops = [("upsert", {"PartitionKey": f"p{i % 3}", "RowKey": str(i)}) for i in range(450)]
        batches = list(chunked_transactions(ops))
        assert all(len(batch) <= MAX_TRANSACTION_OPERATIONS for batch in batches)
        assert all(len({op[1]["PartitionKey"] for op in batch}) == 1 for batch in batches)
        assert sum(len(batch) for batch in batches) == 450

    def test_many_lookups_either_way(self, azurite: Azurite, table_prefix: str) -> None:
        counter = CountingTransport()
        store = StateStore(service_client(azurite.connection_string, raw_request_hook=counter), prefix=table_prefix)
        ids = [f"d/{i}#" for i in range(40)]
        store.links.save([Link(entity="lead", dynamics_id=d, marketo_id=str(i)) for i, d in enumerate(ids)])
        store.links.save([Link(entity="lead", dynamics_id=ids[0], marketo_id="999")])  # relinked: "0" is stale
        counter.batches = 0
        found = store.links.get_many_by_dynamics_id("lead", [*ids, "missing"])
        assert set(found) == set(ids) and found[ids[5]].marketo_id == "5"
        by_person = store.links.get_many_by_marketo_id("lead", [str(i) for i in range(40)] + ["999", "nope"])
        assert (
            "0" not in by_person and by_person["999"].dynamics_id == ids[0] and by_person["39"].dynamics_id == ids[39]
        )

    @pytest.mark.parametrize("scan_page", [1000, 10])  # a partition read whole; one too long for that: point reads
    def test_many_ids_scan_the_partition_when_it_pays(
        self, azurite: Azurite, table_prefix: str, monkeypatch: pytest.MonkeyPatch, scan_page: int
    ) -> None:
        from sync.state import links as links_module

        monkeypatch.setattr(links_module, "SCAN_PAGE", scan_page)
        counter = CountingRequests()
        store = StateStore(service_client(azurite.connection_string, raw_request_hook=counter), prefix=table_prefix)
        store.links.save([Link(entity="lead", dynamics_id=f"d-{i}", marketo_id=str(i)) for i in range(150)])
        counter.requests.clear()
        wanted = [f"d-{i}" for i in range(0, 150, 2)] + ["d-missing"]
        found = store.links.get_many_by_dynamics_id("lead", wanted)
        assert sorted(found) == sorted(wanted[:-1]) and found["d-148"].marketo_id == "148"
        by_person = store.links.get_many_by_marketo_id("lead", [str(i) for i in range(100)])
        assert len(by_person) == 100 and by_person["7"].dynamics_id == "d-7"
        point_reads = sum(1 for url in counter.requests if "RowKey=" in url)
        if scan_page == 1000:  # a query per bucket read (a table each) for D, twice (the ids, then the pointers);
            # Marketo ids 0..99 are one index pack: one point read for all 100 of them
            assert point_reads == 1 and len(counter.requests) <= 2 * links_module.BUCKETS + 1
        else:
            assert point_reads >= 76  # the scan gave up within its budget, then each id was read

    def test_a_scan_of_many_buckets_reads_no_more_rows_than_point_reads_would_cost(
        self, azurite: Azurite, table_prefix: str
    ) -> None:
        from sync.state import links as links_module

        counter = CountingRequests()
        store = StateStore(service_client(azurite.connection_string, raw_request_hook=counter), prefix=table_prefix)
        store.links.save([Link(entity="lead", dynamics_id=f"d-{i}", marketo_id=str(i)) for i in range(1600)])
        counter.requests.clear()
        wanted = [f"d-{i}" for i in range(0, 1600, 25)]  # 64 ids: 64 // 15 pages of 1,000 rows pay, 4,000 rows
        found = store.links.get_many_by_dynamics_id("lead", wanted)
        assert sorted(found) == sorted(wanted) and found["d-1575"].marketo_id == "1575"
        tops = [int(url.split("$top=")[1].split("&")[0]) for url in counter.requests if "$top=" in url]
        assert tops and max(tops) <= 4000 // links_module.BUCKETS  # each bucket's page within its share
        read = sum(tops)
        assert read <= 4000  # what the scan may read in all, as one table's scan did

    def test_saving_known_pairs_skips_their_index_rows(self, azurite: Azurite, table_prefix: str) -> None:
        counter = CountingTransport()
        store = StateStore(service_client(azurite.connection_string, raw_request_hook=counter), prefix=table_prefix)
        pairs = zip(one_bucket("d-{}", 150), one_bucket("m-{}", 150), strict=True)  # one bucket a side, own rows
        links = [Link(entity="lead", dynamics_id=d, marketo_id=m) for d, m in pairs]
        assert store.links.save(links) == 4
        moved = [link.model_copy(update={"snapshot": {"firstName": "x"}}) for link in links]
        assert store.links.save(moved, indexed={(link.dynamics_id, link.marketo_id) for link in links}) == 2
        last = store.links.get_by_marketo_id("lead", links[-1].marketo_id)
        assert last is not None and last.snapshot == {"firstName": "x"}

    def test_relink_leaves_stale_index_ignored(self, state: StateStore) -> None:
        state.links.save([Link(entity="lead", dynamics_id="d-1", marketo_id="1")])
        state.links.save([Link(entity="lead", dynamics_id="d-1", marketo_id="2")])
        assert state.links.get_by_marketo_id("lead", "1") is None
        assert state.links.get_by_marketo_id("lead", "2").dynamics_id == "d-1"  # type: ignore[union-attr]

    def test_delete_removes_both_rows(self, state: StateStore) -> None:
        link = Link(entity="lead", dynamics_id="d-9", marketo_id="9")
        state.links.save([link])
        state.links.delete([link])
        assert state.links.get_by_dynamics_id("lead", "d-9") is None
        assert state.links.get_by_marketo_id("lead", "9") is None

    def test_saves_into_one_pack_merge_and_lose_no_link(self, state: StateStore) -> None:
        """Two imports run at once, so one hundred of Marketo ids holds persons of two pages, saved apart and at
        the same time: each save merges its own links into the pack row."""
        links = [Link(entity="lead", dynamics_id=f"d-{n}", marketo_id=str(2000 + n)) for n in range(100)]
        halves = [links[0::2], links[1::2]]
        threads = [threading.Thread(target=state.links.save, args=(half,)) for half in halves]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        state.links.save(links[:3])  # saved again: the same entries
        found = state.links.get_many_by_marketo_id("lead", [link.marketo_id for link in links])
        assert {m: link.dynamics_id for m, link in found.items()} == {
            link.marketo_id: link.dynamics_id for link in links
        }
        packs = list(state.links._side_iter("lead", "P"))
        assert len(packs) == 1 and sum(1 for name in packs[0] if name.startswith("L")) == 100

    def test_an_index_row_written_before_the_packs_is_still_read(self, state: StateStore) -> None:
        old = Link(entity="lead", dynamics_id="d-old", marketo_id="3001")
        store = state.links
        store.save([old.model_copy(update={"marketo_id": "m-x"})])  # the D row; its index row is fixed next
        table, partition, key = store._where("lead", "D", "d-old")
        table.upsert_entity({**table.get_entity(partition, key), "MarketoId": "3001"})
        m_table, m_partition, m_key = store._where("lead", "M", "3001")  # as earlier versions indexed it
        m_table.upsert_entity(
            {"PartitionKey": m_partition, "RowKey": m_key, "Entity": "lead", "DynamicsId": "d-old", "MarketoId": "3001"}
        )
        assert store.get_by_marketo_id("lead", "3001").dynamics_id == "d-old"  # type: ignore[union-attr]
        assert store.get_many_by_marketo_id("lead", ["3001", "3002"])["3001"].dynamics_id == "d-old"

        store.save([Link(entity="lead", dynamics_id="d-new", marketo_id="3001")])  # relinked: the pack is newer
        assert store.get_by_marketo_id("lead", "3001").dynamics_id == "d-new"  # type: ignore[union-attr]
        assert store.get_many_by_marketo_id("lead", ["3001"])["3001"].dynamics_id == "d-new"

    def test_delete_all_removes_the_packs_too(self, state: StateStore) -> None:
        links = [Link(entity="lead", dynamics_id=f"d-{n}", marketo_id=str(n)) for n in range(250)]
        links.append(Link(entity="lead", dynamics_id="d-text", marketo_id="m-text"))
        state.links.save([*links, Link(entity="contact", dynamics_id="c-1", marketo_id="7")])
        assert state.links.delete_all("lead") == 251
        for part in ("D", "M", "P"):
            assert list(state.links._side_iter("lead", part)) == []
        assert state.links.get_many_by_marketo_id("lead", [str(n) for n in range(250)]) == {}
        assert state.links.get_by_marketo_id("contact", "7").dynamics_id == "c-1"  # type: ignore[union-attr]


class TestStagedLinks:
    """A full sync writes a create's D row while Marketo imports it (sync/engine/staging.py); its Marketo id comes
    later, into its import unit's map. Until then the row is no link, to every reader."""

    @staticmethod
    def _staged(n: int, unit: str = "u1") -> list[tuple[Link, Staged]]:
        return [
            (
                Link(entity="lead", dynamics_id=f"d-{slot}", marketo_id="", snapshot={"email": f"p{slot}@x.test"}),
                Staged(unit, slot),
            )
            for slot in range(n)
        ]

    def test_a_staged_row_is_no_link_until_its_id_is_proven(self, state: StateStore) -> None:
        store = state.links
        staged = self._staged(250)
        store.stage(staged)
        ids = [link.dynamics_id for link, _ in staged]
        assert store.get_by_dynamics_id("lead", "d-0") is None
        assert store.get_many_by_dynamics_id("lead", ids) == {}
        assert list(store.list("lead")) == []
        assert store.count("lead") == 0
        assert store.has_any("lead")  # a row is there: "any" is a hint to look, and looking finds none
        rows = list(store._side_iter("lead", "D"))
        assert len(rows) == 250 and all("MarketoId" not in row and row["Unit"] == "u1" for row in rows)

        proven = [link.model_copy(update={"marketo_id": str(5000 + where.slot)}) for link, where in staged[:200]]
        store.save(proven, staged={link.dynamics_id: where for link, where in staged[:200]})
        assert list(store._side_iter("lead", "D")) == rows  # the D rows were not written again
        assert len(list(store._side_iter("lead", "U"))) == 2  # slots 0-99 and 100-199: a row each
        found = store.get_many_by_dynamics_id("lead", ids)
        assert {d: link.marketo_id for d, link in found.items()} == {f"d-{n}": str(5000 + n) for n in range(200)}
        assert found["d-7"].snapshot == {"email": "p7@x.test"}
        assert store.get_by_dynamics_id("lead", "d-199").marketo_id == "5199"  # type: ignore[union-attr]
        assert store.get_by_dynamics_id("lead", "d-200") is None  # staged, never proven
        assert store.get_by_marketo_id("lead", "5042").dynamics_id == "d-42"  # type: ignore[union-attr]
        by_marketo = store.get_many_by_marketo_id("lead", [str(5000 + n) for n in range(250)])
        assert sorted(by_marketo) == sorted(str(5000 + n) for n in range(200))
        assert sorted(link.dynamics_id for link in store.list("lead")) == sorted(f"d-{n}" for n in range(200))
        assert store.count("lead") == 200

    def test_a_whole_save_over_a_staged_row_replaces_it(self, state: StateStore) -> None:
        store = state.links
        store.stage(self._staged(3))
        store.save([Link(entity="lead", dynamics_id="d-1", marketo_id="77", snapshot={"a": 1})])
        row = next(r for r in store._side_iter("lead", "D") if r["DynamicsId"] == "d-1")
        assert row["MarketoId"] == "77" and "Unit" not in row and "Slot" not in row
        assert store.get_by_dynamics_id("lead", "d-1").marketo_id == "77"  # type: ignore[union-attr]
        assert store.count("lead") == 1

    def test_two_units_and_saves_apart_share_nothing_and_lose_nothing(self, state: StateStore) -> None:
        store = state.links
        first, second = (
            self._staged(150, "u1"),
            [
                (link.model_copy(update={"dynamics_id": "e" + link.dynamics_id}), Staged("u2", where.slot))
                for link, where in self._staged(150)
            ],
        )
        store.stage(first + second)
        for part in (first[:75], first[75:], second):  # a unit commits over several saves, at its pages' pace
            store.save(
                [link.model_copy(update={"marketo_id": f"{where.unit}-{where.slot}"}) for link, where in part],
                staged={link.dynamics_id: where for link, where in part},
            )
        found = store.get_many_by_dynamics_id("lead", [link.dynamics_id for link, _ in first + second])
        assert len(found) == 300
        assert found["d-80"].marketo_id == "u1-80" and found["ed-80"].marketo_id == "u2-80"

    def test_delete_all_removes_the_unit_maps(self, state: StateStore) -> None:
        store = state.links
        staged = self._staged(120)
        store.stage(staged)
        store.save(
            [link.model_copy(update={"marketo_id": str(where.slot + 1)}) for link, where in staged],
            staged={link.dynamics_id: where for link, where in staged},
        )
        assert store.delete_all("lead") == 120
        for part in ("D", "M", "P", "U"):
            assert list(store._side_iter("lead", part)) == []

    @pytest.mark.parametrize("tricky", TRICKY_IDS)
    def test_tricky_keys_round_trip(self, state: StateStore, tricky: str) -> None:
        state.links.save([Link(entity="lead", dynamics_id=tricky, marketo_id=tricky, snapshot={"email": tricky})])
        found = state.links.get_by_marketo_id("lead", tricky)
        assert found is not None
        assert found.dynamics_id == tricky and found.snapshot == {"email": tricky}
        assert [link.dynamics_id for link in state.links.list("lead")] == [tricky]


class TestRunHistory:
    def test_newest_first_with_counts_and_calls(self, state: StateStore) -> None:
        base = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        for minute in range(3):
            run = RunRecord(entity="lead", direction="both", started_at=base + timedelta(minutes=minute))
            state.runs.record(run)
            run.ended_at = run.started_at + timedelta(seconds=5)
            run.counts = RunCounts(read=10 + minute, created=1, updated=2, unchanged=7, failed=minute)
            run.api_calls = {"dynamics": 2, "marketo": 3}
            run.outcome = "succeeded" if minute < 2 else "failed"
            run.error = "boom" if minute == 2 else None
            state.runs.record(run)
        recent = state.runs.recent("lead", limit=2)
        assert [r.counts.read for r in recent] == [12, 11]
        assert recent[0].outcome == "failed" and recent[0].error == "boom"
        assert recent[1].api_calls == {"dynamics": 2, "marketo": 3}
        assert len(state.runs.recent("lead")) == 3


class TestRecordErrors:
    def test_repeat_counts_attempts_then_resolve(self, state: StateStore) -> None:
        t0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        error = RecordError(
            entity="lead", system="marketo", record_id="a/b#1", operation="update", code="1006", message="bad field"
        )
        state.errors.record(error, now=t0)
        second = state.errors.record(error, now=t0 + timedelta(minutes=1))
        assert second.attempts == 2
        stored = state.errors.get("lead", "marketo", "a/b#1")
        assert stored is not None
        assert (stored.attempts, stored.first_seen, stored.last_seen) == (2, t0, t0 + timedelta(minutes=1))
        assert stored.code == "1006"
        assert state.errors.resolve("lead", "marketo", "a/b#1") is True
        assert state.errors.get("lead", "marketo", "a/b#1") is None

    def test_list_filter_and_clear(self, state: StateStore) -> None:
        for entity, system, rid in [("lead", "marketo", "1"), ("lead", "dynamics", "2"), ("contact", "marketo", "3")]:
            state.errors.record(
                RecordError(entity=entity, system=system, record_id=rid, operation="create", message="x")
            )
        assert {e.record_id for e in state.errors.list("lead")} == {"1", "2"}
        assert [e.record_id for e in state.errors.list("lead", system="dynamics")] == ["2"]
        assert state.errors.count() == 3
        assert state.errors.clear("lead") == 2
        assert [e.record_id for e in state.errors.list()] == ["3"]


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class TestLeases:
    def _leases(self, state: StateStore, clock: FakeClock) -> LeaseStore:
        return LeaseStore(state.leases._table, clock=clock)

    def test_one_holder_at_a_time(self, state: StateStore) -> None:
        clock = FakeClock()
        leases = self._leases(state, clock)
        lease = leases.acquire("lead", "runner-a", timedelta(minutes=5))
        with pytest.raises(LeaseHeld) as held:
            leases.acquire("lead", "runner-b", timedelta(minutes=5))
        assert held.value.holder == "runner-a"
        assert leases.release(lease) is True
        assert leases.acquire("lead", "runner-b", timedelta(minutes=5)).holder == "runner-b"

    def test_dead_runner_lease_expires_and_is_taken_over(self, state: StateStore) -> None:
        clock = FakeClock()
        leases = self._leases(state, clock)
        dead = leases.acquire("contact", "crashed-runner", timedelta(minutes=5))
        clock.now += timedelta(minutes=5, seconds=1)
        taken = leases.acquire("contact", "runner-b", timedelta(minutes=5))
        assert taken.holder == "runner-b"
        # The crashed runner, coming back, can neither renew nor release the lease it lost.
        with pytest.raises(LeaseHeld):
            leases.renew(dead, timedelta(minutes=5))
        assert leases.release(dead) is False
        assert leases.get("contact").holder == "runner-b"  # type: ignore[union-attr]

    def test_racing_for_a_free_lease_exactly_one_wins(self, state: StateStore) -> None:
        clock = FakeClock()
        barrier = threading.Barrier(4)
        winners: list[str] = []

        def runner(name: str) -> None:
            leases = self._leases(state, clock)
            barrier.wait()
            try:
                leases.acquire("lead", name, timedelta(minutes=5))
                winners.append(name)
            except LeaseHeld:
                pass

        threads = [threading.Thread(target=runner, args=(f"r{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert state.leases.get("lead").holder == winners[0]  # type: ignore[union-attr]


class TestJobs:
    def test_job_with_tasks_round_trips(self, state: StateStore) -> None:
        from sync.state import Job, Task

        job = Job(entities=["lead", "contact"], direction="both")
        tasks = [
            Task(job_id=job.job_id, entity=e, phase=p) for e in job.entities for p in ("to_marketo", "to_dynamics")
        ]
        state.jobs.create(job, tasks)
        found = state.jobs.get(job.job_id)
        assert found is not None
        stored, stored_tasks = found
        assert stored.entities == ["lead", "contact"] and stored.state == "queued"
        assert {(t.entity, t.phase) for t in stored_tasks} == {(t.entity, t.phase) for t in tasks}
        assert state.jobs.get("nope") is None

    def test_checkpoint_is_compare_and_swap(self, state: StateStore) -> None:
        from sync.state import CheckpointConflict, Job, Task

        job = Job(entities=["lead"], direction="to_marketo")
        state.jobs.create(job, [Task(job_id=job.job_id, entity="lead", phase="to_marketo")])
        first_read = state.jobs.get_task(job.job_id, "lead", "to_marketo")
        second_read = state.jobs.get_task(job.job_id, "lead", "to_marketo")
        saved = state.jobs.save_task(first_read.model_copy(update={"pages_done": 1, "cursor": "next-1"}))
        with pytest.raises(CheckpointConflict):
            state.jobs.save_task(second_read.model_copy(update={"pages_done": 1, "cursor": "other"}))
        again = state.jobs.get_task(job.job_id, "lead", "to_marketo")
        assert (again.pages_done, again.cursor, again.etag) == (1, "next-1", saved.etag)

    def test_an_entity_is_claimed_by_one_job_at_a_time(self, state: StateStore) -> None:
        from sync.state import EntityClaimed

        state.jobs.claim("job-a", ["lead", "contact"])
        with pytest.raises(EntityClaimed) as raised:
            state.jobs.claim("job-b", ["account", "contact"])
        assert raised.value.job_id == "job-a" and raised.value.entity == "contact"
        assert state.jobs.holder("account") is None  # all or nothing: job-b's partial claim was rolled back
        state.jobs.release("job-b", ["lead"])  # releasing someone else's claim does nothing
        assert state.jobs.holder("lead") == "job-a"
        state.jobs.release("job-a", ["lead", "contact"])
        state.jobs.claim("job-b", ["contact"])
        assert state.jobs.holder("contact") == "job-b"
