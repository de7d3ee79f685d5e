from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from sync.connectors.marketo.batching import map_results, plan_batches, send_isolating, write_all
from sync.connectors.marketo.errors import DailyQuotaExceededError, InvalidRequestError, RequestTooLargeError


def test_batches_hold_at_most_300_records_and_keep_input_indices() -> None:
    records = [{"email": f"p{i}@x.com"} for i in range(701)]
    batches, rejected = plan_batches(records)
    assert rejected == []
    assert [len(b.indices) for b in batches] == [300, 300, 101]
    assert batches[2].indices[0] == 600 and batches[2].payloads[0] == {"email": "p600@x.com"}


def test_batches_stay_under_the_1mb_body_limit() -> None:
    records = [{"email": f"p{i}@x.com", "notes": "x" * 10_000} for i in range(300)]
    batches, rejected = plan_batches(records)
    assert rejected == [] and len(batches) > 1
    for batch in batches:
        body = json.dumps({"action": "createOrUpdate", "lookupField": "email", "input": batch.payloads})
        assert len(body.encode()) < 1_048_576
    assert sorted(i for b in batches for i in b.indices) == list(range(300))


def test_records_that_cannot_be_sent_fail_alone_with_a_code() -> None:
    records: list[Any] = [
        {"email": "ok@x.com"},
        {"email": "big@x.com", "notes": "y" * 1_100_000},
        {"email": "obj@x.com", "when": object()},
        "not a dict",
        {"email": "nan@x.com", "score": float("nan")},
        {"email": "ok2@x.com", "born": date(2000, 1, 2), "seen": datetime(2026, 1, 1, tzinfo=UTC), "n": Decimal("3")},
    ]
    batches, rejected = plan_batches(records)
    assert [b.indices for b in batches] == [[0, 5]]
    assert batches[0].payloads[1] == {
        "email": "ok2@x.com",
        "born": "2000-01-02",
        "seen": "2026-01-01T00:00:00+00:00",
        "n": 3,
    }
    by_index = {r.index: r for r in rejected}
    assert set(by_index) == {1, 2, 3, 4}
    assert by_index[1].reasons[0].code == "sync.too_large"
    assert "most of it in field 'notes'" in by_index[1].reasons[0].message  # names the field to fix
    assert {by_index[i].reasons[0].code for i in (2, 3, 4)} == {"sync.not_serializable"}
    assert all(r.status == "failed" for r in rejected)


def test_results_map_by_position_for_leads() -> None:
    items = [
        {"id": 50, "status": "created"},
        {"status": "skipped", "reasons": [{"code": "1005", "message": "Lead already exists"}]},
        {"id": 51, "status": "Updated"},
    ]
    results = map_results([10, 11, 12], items)
    assert [(r.index, r.id, r.status) for r in results] == [
        (10, 50, "created"),
        (11, None, "skipped"),
        (12, 51, "updated"),
    ]
    assert results[1].reasons[0].code == "1005" and not results[1].ok and results[0].ok


def test_results_map_by_seq_for_crm_objects_even_out_of_order() -> None:
    items = [{"seq": 1, "status": "updated", "marketoGUID": "g1"}, {"seq": 0, "status": "created", "marketoGUID": "g0"}]
    results = map_results([4, 9], items, id_keys=("marketoGUID",))
    assert [(r.index, r.id) for r in results] == [(4, "g0"), (9, "g1")]


def test_a_record_without_a_result_is_reported_not_dropped() -> None:
    results = map_results([0, 1, 2], [{"id": 1, "status": "created"}])
    assert [r.status for r in results] == ["created", "failed", "failed"]
    assert results[2].reasons[0].code == "sync.no_result"


def test_a_data_error_on_a_batch_is_bisected_down_to_the_bad_record() -> None:
    calls: list[int] = []

    def send(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(payloads))
        if any(p.get("bad") for p in payloads):
            raise InvalidRequestError("609", "Invalid JSON")
        return [{"id": p["n"], "status": "created"} for p in payloads]

    records = [{"n": i, "bad": i == 5} for i in range(8)]
    results = write_all(records, send)
    assert [r.index for r in results] == list(range(8))
    assert [r.status for r in results] == ["created"] * 5 + ["failed"] + ["created"] * 2
    assert results[5].reasons[0].code == "609"
    assert results[7].id == 7
    assert calls[0] == 8 and len(calls) <= 8


def test_413_is_split_too() -> None:
    def send(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(payloads) > 2:
            raise RequestTooLargeError("413", "too large")
        return [{"id": p["n"], "status": "updated"} for p in payloads]

    results = write_all([{"n": i} for i in range(5)], send)
    assert [r.status for r in results] == ["updated"] * 5


def test_systemic_errors_propagate_instead_of_failing_records() -> None:
    def send(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise DailyQuotaExceededError("607", "Daily quota reached")

    batches, _ = plan_batches([{"n": 1}, {"n": 2}])
    with pytest.raises(DailyQuotaExceededError):
        send_isolating(batches[0], send)


def test_write_all_returns_one_result_per_input_in_order() -> None:
    records: list[Any] = [{"n": i} for i in range(650)]
    records[3] = {"n": 3, "bad": object()}

    def send(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"id": p["n"], "status": "created"} for p in payloads]

    results = write_all(records, send)
    assert [r.index for r in results] == list(range(650))
    assert results[3].status == "failed" and results[4].id == 4 and results[649].id == 649
