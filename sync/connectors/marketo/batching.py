"""Batching writes to Marketo's limits and mapping per-record results back to the input (pure, but for `send`).

- At most 300 records per call and a JSON body under 1 MB; a record that cannot be sent at all (not JSON-serialisable,
  or over the body limit alone) fails on its own with a "sync.*" code and is never sent.
- Results come back in input order (leads) or carry `seq` (CRM objects); each maps to its input index. A record with
  no result in the answer is reported failed ("sync.no_result"), never dropped.
- A response-level error about the data (not the connection or quota) fails the batch; then the batch is split in
  halves and resent, until the record(s) at fault stand alone: one bad record never sinks the other 299.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sync.connectors.marketo.errors import (
    CODE_NO_RESULT,
    CODE_NOT_SERIALIZABLE,
    CODE_TOO_LARGE,
    MarketoError,
    RequestTooLargeError,
)
from sync.connectors.marketo.models import Reason, RecordResult

MAX_BATCH = 300
MAX_BODY_BYTES = 1_048_576
BODY_OVERHEAD = 4_096  # room for the action, lookupField, partitionName and the JSON around "input"


def json_value(value: Any) -> Any:
    """A value as Marketo's JSON wants it: dates and datetimes as ISO 8601, Decimals as numbers, Enums by value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    return value


def _encode(record: dict[str, Any]) -> tuple[dict[str, Any], int]:
    payload = {str(k): json_value(v) for k, v in record.items()}
    size = len(json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    return payload, size


@dataclass
class Batch:
    indices: list[int]
    payloads: list[dict[str, Any]]
    size: int = 0


def failed(index: int, code: str, message: str) -> RecordResult:
    return RecordResult(index=index, id=None, status="failed", reasons=[Reason(code=code, message=message)])


def plan_batches(
    records: Iterable[dict[str, Any]],
    max_records: int = MAX_BATCH,
    max_body: int = MAX_BODY_BYTES,
) -> tuple[list[Batch], list[RecordResult]]:
    """Split records into batches of <= max_records and < max_body bytes; records that can't be sent fail here."""
    batches: list[Batch] = []
    rejected: list[RecordResult] = []
    current = Batch([], [])
    budget = max_body - BODY_OVERHEAD
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            rejected.append(failed(index, CODE_NOT_SERIALIZABLE, f"record is a {type(record).__name__}, not a dict"))
            continue
        try:
            payload, size = _encode(record)
        except (TypeError, ValueError) as exc:
            rejected.append(failed(index, CODE_NOT_SERIALIZABLE, f"record can't be sent as JSON: {exc}"))
            continue
        if size + 1 > budget:
            largest = max(payload, key=lambda name: _encode({name: payload[name]})[1], default="?")
            text = f"record is {size} bytes as JSON, most of it in field '{largest}'; a call takes {max_body}"
            rejected.append(failed(index, CODE_TOO_LARGE, text))
            continue
        if current.indices and (len(current.indices) >= max_records or current.size + size + 1 > budget):
            batches.append(current)
            current = Batch([], [])
        current.indices.append(index)
        current.payloads.append(payload)
        current.size += size + 1
    if current.indices:
        batches.append(current)
    return batches, rejected


def map_results(indices: Sequence[int], items: Sequence[Any], id_keys: Sequence[str] = ("id",)) -> list[RecordResult]:
    """Results of one batch -> one RecordResult per input index (by `seq` when given, else by position)."""
    by_position: dict[int, dict[str, Any]] = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        seq = item.get("seq")
        key = int(seq) if isinstance(seq, int | str) and str(seq).isdigit() else position
        by_position.setdefault(key, item)
    results = []
    for position, index in enumerate(indices):
        item = by_position.get(position)
        if item is None:
            results.append(failed(index, CODE_NO_RESULT, "Marketo returned no result for this record"))
            continue
        reasons = [
            Reason(code=str(r.get("code", "")), message=str(r.get("message", "")))
            for r in item.get("reasons") or []
            if isinstance(r, dict)
        ]
        record_id = next((item[k] for k in id_keys if item.get(k) not in (None, "")), None)
        status = str(item.get("status") or "failed").lower()
        if status == "failed" and not reasons:
            reasons = [Reason(code=CODE_NO_RESULT, message="status failed without a reason")]
        results.append(RecordResult(index=index, id=record_id, status=status, reasons=reasons))
    return results


Send = Callable[[list[dict[str, Any]]], Sequence[Any]]


def send_isolating(batch: Batch, send: Send, id_keys: Sequence[str] = ("id",)) -> list[RecordResult]:
    """Send one batch; on a data error, bisect so only the records at fault fail. Systemic errors propagate."""
    try:
        items = send(batch.payloads)
    except MarketoError as exc:
        if exc.systemic:
            raise
        if len(batch.indices) == 1:
            return [failed(batch.indices[0], exc.code, exc.message)]
        if not isinstance(exc, RequestTooLargeError) and exc.code.startswith("sync."):
            raise
        half = len(batch.indices) // 2
        left = Batch(batch.indices[:half], batch.payloads[:half])
        right = Batch(batch.indices[half:], batch.payloads[half:])
        return send_isolating(left, send, id_keys) + send_isolating(right, send, id_keys)
    return map_results(batch.indices, items, id_keys)


def write_all(
    records: Sequence[dict[str, Any]],
    send: Send,
    id_keys: Sequence[str] = ("id",),
    max_records: int = MAX_BATCH,
) -> list[RecordResult]:
    """Batch, send, and return exactly one result per input record, in input order."""
    batches, results = plan_batches(records, max_records=max_records)
    for batch in batches:
        results.extend(send_isolating(batch, send, id_keys))
    results.sort(key=lambda r: r.index)
    assert len(results) == len(records), "every input record has exactly one result"
    return results
