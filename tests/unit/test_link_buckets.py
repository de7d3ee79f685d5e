"""The link bucket: a stable hash of the id (crc32 of the lower-cased id, modulo BUCKETS), and its partitions."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from sync.state import links
from sync.state.links import BUCKETS, LinkStore, chunked_transactions, link_bucket

REPO = Path(__file__).resolve().parents[2]
IDS = ["123456789", "00000000-0000-0000-0000-000000000001", "3F2504E0-4F89-11D3-9A0C-0305E82C3301", "1001", "漢字"]


def test_known_values() -> None:
    assert BUCKETS == 8
    # crc32("123456789") is CRC-32's published check value 0xCBF43926: 0xCBF43926 % 8 == 6
    assert link_bucket("123456789") == 6
    assert [link_bucket(i) for i in IDS] == [6, 7, 6, 1, 7]
    assert LinkStore.partition("lead", "D", "123456789") == "lead~7CD~7C06"
    assert LinkStore.partition("contact", "M", "1001") == "contact~7CM~7C01"


def test_case_does_not_move_an_id_to_another_bucket() -> None:
    guid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert link_bucket(guid) == link_bucket(guid.upper())


def test_stable_across_processes_whatever_the_hash_seed() -> None:
    """Python's hash() of a str changes per process; the bucket must not."""
    code = f"from sync.state.links import link_bucket; print([link_bucket(i) for i in {IDS!r}])"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert outputs == {f"{[link_bucket(i) for i in IDS]}\n"}


def test_10k_ids_spread_about_evenly() -> None:
    rng = random.Random(16)
    guids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(10_000)]
    marketo_ids = [str(n) for n in range(1, 10_001)]
    for ids in (guids, marketo_ids):
        counts = Counter(link_bucket(i) for i in ids)
        assert sorted(counts) == list(range(BUCKETS))
        expected = len(ids) / BUCKETS  # 1,250
        assert all(0.8 * expected <= n <= 1.2 * expected for n in counts.values()), counts


def test_partitions_are_fixed_width_in_bucket_order_and_apart_from_the_old_layout() -> None:
    for side in ("D", "M"):
        partitions = LinkStore.partitions("lead", side)  # type: ignore[arg-type]
        assert partitions == [f"lead~7C{side}~7C{b:02x}" for b in range(BUCKETS)]
        assert LinkStore.legacy_partition("lead", side) not in partitions  # type: ignore[arg-type]
        assert LinkStore.legacy_partition("lead", side) == f"lead~7C{side}"  # type: ignore[arg-type]


def test_transactions_of_a_save_take_turns_over_the_buckets() -> None:
    """Transactions sent together (WRITE_THREADS at once, in this order) hit different partitions."""
    ops = [
        ("upsert", {"PartitionKey": LinkStore.partition("lead", "D", str(n)), "RowKey": str(n)}) for n in range(5000)
    ]
    batches = list(chunked_transactions(ops))
    first_round = [batch[0][1]["PartitionKey"] for batch in batches[:BUCKETS]]
    assert len(set(first_round)) == BUCKETS
    assert all(len(batch) <= links.MAX_TRANSACTION_OPERATIONS for batch in batches)
    assert sum(len(batch) for batch in batches) == 5000
    assert len(batches) <= 7 * BUCKETS  # 5,000 rows: about 625 a bucket, 7 transactions each


def test_integer_marketo_ids_are_packed_by_the_hundred_and_others_are_not() -> None:
    assert links.PACK_SPAN == 100
    cases = {
        "0": f"{0:013d}",
        "99": f"{0:013d}",
        "100": f"{1:013d}",
        "1001": f"{10:013d}",
        "007": f"{0:013d}",  # its own property keeps the spelling: L007
        "999999999999999": f"{9999999999999:013d}",  # 15 digits: the longest packed
        "1000000000000000": None,  # 16 digits
        "abc": None,
        "-5": None,
        "1.5": None,
        "": None,
        "١٢": None,  # digits, but not ASCII ones
        "c-1001": None,
    }
    assert {marketo_id: links.pack_label(marketo_id) for marketo_id in cases} == cases
    assert links.pack_property("1001") == "L1001"
