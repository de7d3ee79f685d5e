"""The bulk-write loop: chunks through *Multiple, isolation of failing chunks in `$batch`, per-record results.

The pure planning (targets, payloads, results) is in bulk.py; this is the I/O around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from sync.connectors.dynamics import bulk
from sync.connectors.dynamics.batch import decode_batch, encode_batch
from sync.connectors.dynamics.bulk import Target, WriteKind
from sync.connectors.dynamics.errors import (
    AuthenticationError,
    DataverseError,
    ServiceProtectionError,
    TransportError,
)
from sync.connectors.dynamics.models import TableMetadata, WriteResult
from sync.connectors.dynamics.transport import Transport
from sync.connectors.dynamics.validate import suspect_column

log = logging.getLogger(__name__)

MAX_BATCH_REQUESTS = 1000
WRITE_THREADS = 4  # chunks in flight at once after the first (Dataverse serves 52 requests at once per user)
_STOP_WRITING = (ServiceProtectionError, TransportError, AuthenticationError)


class BulkWriter:
    def __init__(self, transport: Transport, describe: Callable[[str], TableMetadata]) -> None:
        self._transport = transport
        self._describe = describe  # full metadata, to name the column of an error whose message does not
        self._unsupported: set[tuple[str, WriteKind]] = set()  # tables found without a *Multiple message

    def write(
        self,
        kind: WriteKind,
        table: TableMetadata,
        records: Sequence[Mapping[str, Any]],
        chunk_size: int,
        alternate_key: str | None = None,
    ) -> list[WriteResult]:
        """Per-record results in input order. Raises (ServiceProtection/Transport/Authentication) only when
        nothing was written yet; after that, the records not sent are returned as failed, with that error.
        The first chunk goes alone (a throttled or unreachable service raises before anything is written); the
        others go WRITE_THREADS at once, and none starts after one of them stopped the writing."""
        targets, results = bulk.plan_targets(kind, table, records, alternate_key)
        chunks = bulk.chunked(targets, chunk_size)
        stop: list[DataverseError] = []

        def send(number: int, chunk: Sequence[Target]) -> list[WriteResult]:
            if stop:
                return bulk.failed(chunk, stop[0].to_write_error())
            try:
                return self._write_chunk(kind, table, chunk)
            except _STOP_WRITING as exc:
                if number == 0:
                    raise
                log.warning("dataverse %s %s: stopping at chunk %d: %s", kind, table.logical_name, number, exc)
                stop.append(exc)
                return bulk.failed(chunk, exc.to_write_error())
            except DataverseError as exc:  # the chunk could not be isolated (e.g. the $batch itself failed)
                log.warning("dataverse %s %s: a chunk failed as a whole: %s", kind, table.logical_name, exc)
                return bulk.failed(chunk, exc.to_write_error())

        if chunks:
            results += send(0, chunks[0])
        if len(chunks) > 1:
            with ThreadPoolExecutor(min(WRITE_THREADS, len(chunks) - 1)) as pool:
                for answered in pool.map(send, range(1, len(chunks)), chunks[1:]):
                    results += answered
        results.sort(key=lambda r: r.index)
        self._name_columns(kind, table, records, results)
        return results

    def _write_chunk(self, kind: WriteKind, table: TableMetadata, chunk: Sequence[Target]) -> list[WriteResult]:
        if (table.logical_name, kind) not in self._unsupported:
            path = f"{table.entity_set_name}/Microsoft.Dynamics.CRM.{bulk.MESSAGES[kind]}"
            try:
                response = self._transport.request(
                    f"{kind}_multiple",
                    "POST",
                    path,
                    json=bulk.multiple_payload(kind, table, chunk),
                    table=table.logical_name,
                )
                reply = orjson.loads(response.content) if response.content.strip() else None
                return bulk.results_from_multiple(kind, chunk, reply)
            except _STOP_WRITING:
                raise
            except DataverseError as exc:
                if bulk.is_unsupported_message(exc, kind):
                    log.info("dataverse %s: no %s, using $batch", table.logical_name, bulk.MESSAGES[kind])
                    self._unsupported.add((table.logical_name, kind))
                elif len(chunk) == 1:
                    return bulk.failed(chunk, exc.to_write_error())
                else:
                    log.info(
                        "dataverse %s %s: a chunk of %d failed (%s); isolating",
                        kind,
                        table.logical_name,
                        len(chunk),
                        exc.code,
                    )
        results: list[WriteResult] = []
        for start in range(0, len(chunk), MAX_BATCH_REQUESTS):
            results += self._batch_singles(kind, table, chunk[start : start + MAX_BATCH_REQUESTS])
        return results

    def _batch_singles(self, kind: WriteKind, table: TableMetadata, chunk: Sequence[Target]) -> list[WriteResult]:
        api_base = self._transport.api_base
        content_type, body = encode_batch([bulk.single_request(kind, table, t, api_base) for t in chunk])
        response = self._transport.request(
            "batch",
            "POST",
            "$batch",
            data=body,
            table=table.logical_name,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
        )
        try:
            parts = decode_batch(response.headers.get("Content-Type", ""), response.content)
        except ValueError as exc:
            raise DataverseError(response.status_code, "InvalidBatchResponse", str(exc)[:300]) from None
        return [
            bulk.result_from_single(kind, table, target, parts[n] if n < len(parts) else None)
            for n, target in enumerate(chunk)
        ]

    def _name_columns(
        self, kind: WriteKind, table: TableMetadata, records: Sequence[Mapping[str, Any]], results: list[WriteResult]
    ) -> None:
        """Fill in the column of record errors whose message did not name one, judged from metadata."""
        unnamed = [r for r in results if r.error is not None and r.error.column is None and r.error.status in (400,)]
        if not unnamed:
            return
        try:
            described = self._describe(table.logical_name)
        except DataverseError:
            return
        for result in unnamed:
            column = suspect_column(described, records[result.index], creating=kind == "create")
            if column and result.error is not None:
                result.error = result.error.model_copy(update={"column": column})
