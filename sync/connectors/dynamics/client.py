"""DataverseClient: the Dataverse Web API as the sync needs it (reads, change tracking, bulk writes, metadata)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msal
import orjson
from pydantic import SecretStr

from sync.connectors.dynamics.auth import TokenProvider, read_credential
from sync.connectors.dynamics.bulk import WriteKind
from sync.connectors.dynamics.changes import DELTA_LINK, NEXT_LINK, change_page, prefer, record_from_row
from sync.connectors.dynamics.errors import (
    ChangeTokenExpiredError,
    DataverseError,
    InvalidRequestError,
    NotFoundError,
)
from sync.connectors.dynamics.metadata import (
    DEFINITION_SELECT,
    OPTION_SET_CASTS,
    definition_path,
    describe_table,
    options_from_option_set,
    table_from_definition,
)
from sync.connectors.dynamics.models import ChangePage, DataverseRecord, TableMetadata, WriteResult
from sync.connectors.dynamics.odata import (
    chunks_by_length,
    guid,
    in_filter,
    key_segment,
    odata_identifier,
    odata_literal,
    query_string,
)
from sync.connectors.dynamics.retry import dataverse_retry, token_retry
from sync.connectors.dynamics.transport import Transport
from sync.connectors.dynamics.writer import BulkWriter
from sync.connectors.http import build_session
from sync.settings import Settings

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 5000
IN_FILTER_MAX_VALUES = 100
IN_FILTER_MAX_CHARS = 12_000  # Dataverse refuses URLs over ~32k characters; stay far below
FIND_THREADS = 4  # lookup queries in flight at once
_ORDERBY = re.compile(r"^\s*[A-Za-z_]\w*(\s+(asc|desc))?(\s*,\s*[A-Za-z_]\w*(\s+(asc|desc))?)*\s*$")


class DataverseClient:
    """One Dataverse organization. Thread-safe for concurrent calls; `calls` counts every request by operation."""

    def __init__(
        self,
        url: str,
        authority: str,
        client_id: str,
        credential: SecretStr,
        *,
        extra_ca: Path | None = None,
        page_size: int = MAX_PAGE_SIZE,
        chunk_size: int = 1000,
        pool_maxsize: int = 16,
        max_retries: int = 6,
        max_retry_after: float = 120.0,
        timeout: tuple[float, float] = (10.0, 120.0),
        token_cache: msal.TokenCache | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        self.url = url.rstrip("/")
        self.page_size = page_size
        self.chunk_size = chunk_size
        self.calls: Counter[str] = Counter()
        tokens = TokenProvider(
            authority,
            client_id,
            credential,
            scope=f"{self.url}/.default",
            http_client=build_session(extra_ca, retry=token_retry()),
            calls=self.calls,
            token_cache=token_cache,
        )
        retry = dataverse_retry(max_retries, backoff_factor=0.5, max_retry_after=max_retry_after)
        session = build_session(extra_ca, retry=retry, pool_maxsize=pool_maxsize)
        self._transport = Transport(self.url, tokens, session, calls=self.calls, timeout=timeout)
        retry.on_retry = self._transport.count_retry
        self.retries: Counter[str] = self._transport.retries
        self.throttled: Counter[str] = self._transport.throttled  # 429 answers by operation
        self._definitions: dict[str, TableMetadata] = {}
        self._described: dict[str, TableMetadata] = {}
        self._option_sets: dict[tuple[str, str], dict[int, str]] = {}
        self._writer = BulkWriter(self._transport, self.describe)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> DataverseClient:
        if settings.dynamics_client_certificate is not None:
            credential = read_credential(settings.dynamics_client_certificate)
        else:
            assert settings.dynamics_client_secret is not None  # Settings guarantees one of the two
            credential = settings.dynamics_client_secret
        return cls(
            settings.dynamics_url,
            settings.authority,
            settings.dynamics_client_id,
            credential,
            extra_ca=settings.sync_ca_bundle,
            **{"page_size": settings.dynamics_page_size, **kwargs},
        )

    def __repr__(self) -> str:
        return f"DataverseClient(url={self.url!r})"

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.session.close()
        self._transport.tokens.close()

    @property
    def recommended_parallelism(self) -> int | None:
        """The last `x-ms-dop-hint` Dataverse sent."""
        return self._transport.dop_hint

    # --- metadata -------------------------------------------------------------------------------------------

    def definition(self, logical_name: str) -> TableMetadata:
        """Entity set name, primary key and change tracking of a table (one call, cached; columns not read)."""
        if logical_name in self._described:
            return self._described[logical_name]
        if logical_name not in self._definitions:
            path = f"{definition_path(logical_name)}?$select={DEFINITION_SELECT}"
            body = self._get_json("metadata", path, table=logical_name)
            self._definitions[logical_name] = table_from_definition(body)
        return self._definitions[logical_name]

    def entity_set_name(self, logical_name: str) -> str:
        return self.definition(logical_name).entity_set_name

    def describe(self, logical_name: str, *, refresh: bool = False) -> TableMetadata:
        """Columns (type, max length, required level, options of Picklist columns), keys, change tracking."""
        if refresh:
            self._described.pop(logical_name, None)
            self._definitions.pop(logical_name, None)
            self._option_sets = {k: v for k, v in self._option_sets.items() if k[0] != logical_name}
        if logical_name not in self._described:
            base = definition_path(logical_name)
            definition = self._get_json("metadata", f"{base}?$select={DEFINITION_SELECT}", table=logical_name)
            attributes = self._get_json("metadata", f"{base}/Attributes", table=logical_name).get("value", [])
            keys = self._get_json("metadata", f"{base}/Keys", table=logical_name).get("value", [])
            picklists = self._get_json(
                "metadata",
                f"{base}/Attributes/{OPTION_SET_CASTS['Picklist']}?$select=LogicalName&$expand=OptionSet",
                table=logical_name,
            ).get("value", [])
            options = {row["LogicalName"]: options_from_option_set(row.get("OptionSet") or {}) for row in picklists}
            self._described[logical_name] = describe_table(definition, attributes, keys, options)
            self._definitions[logical_name] = self._described[logical_name]
        return self._described[logical_name]

    def option_set(self, logical_name: str, column: str) -> dict[int, str]:
        """value -> label of a choice column (Picklist, State, Status, Two Options, multi-select), cached."""
        cache_key = (logical_name, column)
        if cache_key not in self._option_sets:
            described = self.describe(logical_name).columns.get(column)
            if described is None:
                raise InvalidRequestError(None, "UnknownColumn", "no such column", column, table=logical_name)
            if described.options is not None:
                self._option_sets[cache_key] = described.options
            else:
                cast = OPTION_SET_CASTS.get(described.type)
                if cast is None:
                    raise InvalidRequestError(
                        None, "NotAChoiceColumn", f"{described.type} column has no options", column, table=logical_name
                    )
                path = (
                    f"{definition_path(logical_name)}/Attributes(LogicalName={odata_literal(odata_identifier(column))})"
                    f"/{cast}?$select=LogicalName&$expand=OptionSet"
                )
                body = self._get_json("option_set", path, table=logical_name)
                self._option_sets[cache_key] = options_from_option_set(body.get("OptionSet") or {})
        return dict(self._option_sets[cache_key])

    # --- reads ----------------------------------------------------------------------------------------------

    def who_am_i(self) -> dict[str, str]:
        """WhoAmI: UserId, BusinessUnitId and OrganizationId (a sandbox refreshed from production has a new one)."""
        body = self._get_json("WhoAmI", "WhoAmI")
        return {k: str(v) for k, v in body.items() if not k.startswith("@")}

    def read_changes(
        self,
        logical_name: str,
        select: list[str],
        cursor: str | None = None,
        page_size: int | None = None,
        *,
        annotations: bool = False,
    ) -> Iterator[ChangePage]:
        """Change-tracking pages. cursor None: the initial read (every row, deltaLink on the last page); else a
        ChangePage.cursor from before. An expired token restarts as a full read whose pages say full_resync=True."""
        table = self.definition(logical_name)
        headers = {"Prefer": prefer(page_size=page_size or self.page_size, track_changes=True, annotations=annotations)}
        initial = f"{table.entity_set_name}?{query_string({'$select': self._select(select, logical_name)})}"
        url: str | None = cursor or initial
        full_resync = False
        while url is not None:
            try:
                body = self._get_json("read_changes", url, headers=headers, table=logical_name)
            except ChangeTokenExpiredError:
                if full_resync or url == initial:
                    raise
                log.warning("dataverse %s: change token expired, starting a full read", logical_name)
                url, full_resync = initial, True
                continue
            if NEXT_LINK not in body and DELTA_LINK not in body:
                raise DataverseError(
                    None,
                    "ChangeTrackingNotEnabled",
                    "the read returned no deltaLink: is change tracking enabled on this table?",
                    table=logical_name,
                )
            page = change_page(body, table.primary_id_attribute, full_resync=full_resync, annotations=annotations)
            yield page
            url = None if page.is_last else page.cursor

    def query(
        self,
        logical_name: str,
        select: list[str],
        filter: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
        expand: str | None = None,
        page_size: int | None = None,
        *,
        annotations: bool = False,
        operation: str = "query",
    ) -> Iterator[DataverseRecord]:
        """Rows one by one, a page at a time (constant memory). Build `filter` with odata_literal / eq / in_filter."""
        table = self.definition(logical_name)
        if orderby is not None and not _ORDERBY.match(orderby):
            raise InvalidRequestError(
                None, "InvalidOrderBy", f"not a valid $orderby: {orderby[:80]!r}", table=logical_name
            )
        params = {
            "$select": self._select(select, logical_name),
            "$filter": filter,
            "$orderby": orderby,
            "$top": str(int(top)) if top is not None else None,
            "$expand": expand,
        }
        # With $top, Dataverse ignores odata.maxpagesize: send only one of them.
        preference = prefer(page_size=None if top else page_size or self.page_size, annotations=annotations)
        headers = {"Prefer": preference} if preference else {}
        url: str | None = f"{table.entity_set_name}?{query_string(params)}"
        remaining = top
        while url is not None:
            body = self._get_json(operation, url, headers=headers, table=logical_name)
            for row in body.get("value") or ():
                if remaining is not None:
                    if remaining <= 0:
                        return
                    remaining -= 1
                yield record_from_row(row, table.primary_id_attribute, annotations=annotations)
            if remaining == 0:
                return
            url = body.get(NEXT_LINK)

    def get_by_ids(
        self, logical_name: str, ids: Sequence[str], select: list[str], *, annotations: bool = False
    ) -> dict[str, DataverseRecord]:
        """id -> record for the ids that exist (batched In() filters). A bad GUID raises InvalidRequestError."""
        table = self.definition(logical_name)
        pk = table.primary_id_attribute
        wanted = list(dict.fromkeys(str(guid(i, table=logical_name, column=pk)) for i in ids))
        found: dict[str, DataverseRecord] = {}
        for chunk in chunks_by_length(wanted, IN_FILTER_MAX_VALUES, IN_FILTER_MAX_CHARS):
            records = self.query(
                logical_name, select, filter=in_filter(pk, chunk), operation="get_by_ids", annotations=annotations
            )
            for record in records:
                found[record.id] = record
        return found

    def find_by(
        self, logical_name: str, column: str, values: Sequence[str], select: list[str], *, annotations: bool = False
    ) -> dict[str, list[DataverseRecord]]:
        """value -> every record whose `column` equals it (case-insensitive, as Dataverse compares strings).
        Every requested value is a key; values without a match map to []."""
        return self.find_by_any(logical_name, {column: values}, select, annotations=annotations)[column]

    def find_by_any(
        self,
        logical_name: str,
        values_by_column: Mapping[str, Sequence[str]],
        select: list[str],
        *,
        annotations: bool = False,
    ) -> dict[str, dict[str, list[DataverseRecord]]]:
        """column -> value -> every record whose `column` equals it, as `find_by` for each column, but in shared
        queries: the i-th In() chunk of every column ORed into one query (matching by two keys costs one lookup)."""
        for column in values_by_column:
            odata_identifier(column, table=logical_name)
        result: dict[str, dict[str, list[DataverseRecord]]] = {}
        folded: dict[str, dict[str, list[str]]] = {}
        column_chunks: dict[str, list[list[str]]] = {}
        max_chars = IN_FILTER_MAX_CHARS // max(1, len(values_by_column))
        for column, values in values_by_column.items():
            result[column] = {value: [] for value in values}
            folded[column] = {}
            for value in result[column]:
                folded[column].setdefault(str(value).casefold(), []).append(value)
            column_chunks[column] = list(chunks_by_length(list(folded[column]), IN_FILTER_MAX_VALUES, max_chars))
        columns = list(dict.fromkeys([*select, *values_by_column]))
        queries = [
            " or ".join(in_filter(column, chunks[i]) for column, chunks in column_chunks.items() if i < len(chunks))
            for i in range(max((len(c) for c in column_chunks.values()), default=0))
        ]

        def read(filter_: str) -> list[DataverseRecord]:
            return list(self.query(logical_name, columns, filter=filter_, operation="find_by", annotations=annotations))

        if len(queries) <= 1:
            answers = [read(query) for query in queries]
        else:  # independent queries: several in flight (Dataverse serves 52 at once per user)
            with ThreadPoolExecutor(max_workers=min(FIND_THREADS, len(queries))) as pool:
                answers = list(pool.map(read, queries))
        seen: set[tuple[str, str, str]] = set()
        for records in answers:
            for record in records:
                for column, by_folded in folded.items():
                    found = record.values.get(column)
                    for value in by_folded.get(str(found).casefold(), ()) if found is not None else ():
                        key = (column, value, str(record.id))
                        if key not in seen:  # a record can answer two of the queries
                            seen.add(key)
                            result[column][value].append(record)
        return result

    # --- writes ---------------------------------------------------------------------------------------------

    def create_multiple(
        self, logical_name: str, records: Sequence[Mapping[str, Any]], chunk_size: int | None = None
    ) -> list[WriteResult]:
        return self._write("create", logical_name, records, chunk_size)

    def update_multiple(
        self, logical_name: str, records: Sequence[Mapping[str, Any]], chunk_size: int | None = None
    ) -> list[WriteResult]:
        """Each record carries its primary key column (e.g. "leadid"); a missing record fails (no upsert)."""
        return self._write("update", logical_name, records, chunk_size)

    def upsert_multiple(
        self,
        logical_name: str,
        records: Sequence[Mapping[str, Any]],
        alternate_key: str | None = None,
        chunk_size: int | None = None,
        *,
        resolve_ids: bool = True,
    ) -> list[WriteResult]:
        """Create or update, addressed by `alternate_key` (e.g. "new_marketopersonid") or by the primary key.
        UpsertMultiple answers 204 without ids: with `resolve_ids` the ids are read back by the alternate key."""
        results = self._write("upsert", logical_name, records, chunk_size, alternate_key)
        if alternate_key and resolve_ids:
            self._resolve_ids(logical_name, records, alternate_key, results)
        return results

    def delete(self, logical_name: str, record_id: str) -> bool:
        """True if deleted, False if it did not exist."""
        table = self.definition(logical_name)
        address = key_segment(guid(record_id, table=logical_name, column=table.primary_id_attribute))
        try:
            self._transport.request(
                "delete", "DELETE", table.entity_set_name + address, table=logical_name, record=str(record_id)
            )
        except NotFoundError:
            return False
        return True

    def qualify_lead(
        self,
        lead_id: str,
        *,
        create_account: bool = True,
        create_contact: bool = True,
        create_opportunity: bool = False,
        status: int = 3,
    ) -> list[str]:
        """QualifyLead: the lead becomes Qualified; returns the ids of the records created from it."""
        address = key_segment(guid(lead_id, table="lead", column="leadid"))
        body = {
            "CreateAccount": create_account,
            "CreateContact": create_contact,
            "CreateOpportunity": create_opportunity,
            "Status": status,
        }
        path = f"{self.entity_set_name('lead')}{address}/Microsoft.Dynamics.CRM.QualifyLead"
        response = self._transport.request("qualify_lead", "POST", path, json=body, table="lead", record=lead_id)
        created = response.json().get("value") or [] if response.content else []
        return [
            str(v.get(k)) for v in created for k in v if k.endswith("id") and not k.startswith("_") and "@" not in k
        ]

    # --- internals ------------------------------------------------------------------------------------------

    def _select(self, select: Sequence[str], table: str) -> str | None:
        return ",".join(odata_identifier(c, table=table) for c in select) or None

    def _get_json(
        self, operation: str, path: str, *, headers: Mapping[str, str] | None = None, table: str | None = None
    ) -> Any:
        response = self._transport.request(operation, "GET", path, headers=headers, table=table)
        return orjson.loads(response.content)

    def _write(
        self,
        kind: WriteKind,
        logical_name: str,
        records: Sequence[Mapping[str, Any]],
        chunk_size: int | None,
        alternate_key: str | None = None,
    ) -> list[WriteResult]:
        table = self.definition(logical_name)
        return self._writer.write(kind, table, records, chunk_size or self.chunk_size, alternate_key)

    def _resolve_ids(
        self, logical_name: str, records: Sequence[Mapping[str, Any]], key: str, results: list[WriteResult]
    ) -> None:
        missing = [r for r in results if r.error is None and r.id is None]
        if not missing:
            return
        pk = self.definition(logical_name).primary_id_attribute
        values = [str(records[r.index][key]) for r in missing]
        found = self.find_by(logical_name, key, values, [pk])
        for result, value in zip(missing, values, strict=True):
            matches = found.get(value) or []
            if len(matches) == 1:
                result.id = matches[0].id
