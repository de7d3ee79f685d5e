"""OData URL pieces. Every literal built from data goes through `odata_literal`; every column name through
`odata_identifier`. Nothing else in the connector puts user data into a URL."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from urllib.parse import quote

from sync.connectors.dynamics.errors import InvalidRequestError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Kept literal in query strings for readability; everything else (space, &, #, +, %, ...) is percent-encoded.
_QUERY_SAFE = "$'(),=:/@!*;[]"


def odata_literal(value: object) -> str:
    """The OData (URL) literal for a Python value: the ONE escaping function.

    str -> 'quoted' with ' doubled; uuid.UUID -> bare GUID; bool/None -> true/false/null; aware datetime -> UTC
    `2024-01-01T00:00:00Z`; date -> `2024-01-01`. A string that looks like a GUID stays a string: pass uuid.UUID
    to compare GUID columns. Percent-encoding for the URL happens later, when the query string is built.
    """
    if value is None:
        return "null"
    if isinstance(value, Enum):
        return odata_literal(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "INF" if value > 0 else "-INF"
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"no OData literal for the decimal {value}")
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give it a time zone (Dataverse compares in UTC)")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + _fraction(value) + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no OData literal for {type(value).__name__}")


def _fraction(value: datetime) -> str:
    return f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""


def odata_identifier(name: str, *, table: str | None = None) -> str:
    """A column or table name, checked so it can be put into a URL as is."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise InvalidRequestError(None, "InvalidIdentifier", f"not a valid column name: {name!r}", table=table)
    return name


def guid(value: object, *, table: str | None = None, column: str | None = None) -> uuid.UUID:
    """Parse a record id, or raise InvalidRequestError naming it (a bad GUID never reaches the service)."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and _GUID.match(value.strip("{}")):
        return uuid.UUID(value.strip("{}"))
    raise InvalidRequestError(
        None, "InvalidGuid", f"not a GUID: {str(value)[:80]!r}", column, table=table, record=str(value)[:80]
    )


def eq(column: str, value: object) -> str:
    return f"{odata_identifier(column)} eq {odata_literal(value)}"


def in_filter(column: str, values: Iterable[object]) -> str:
    """`Microsoft.Dynamics.CRM.In(PropertyName='c',PropertyValues=['a','b'])`: values are passed as strings."""
    literals = ",".join(odata_literal(v if isinstance(v, str) else _in_value(v)) for v in values)
    return (
        f"Microsoft.Dynamics.CRM.In(PropertyName={odata_literal(odata_identifier(column))},PropertyValues=[{literals}])"
    )


def _in_value(value: object) -> str:
    literal = odata_literal(value)
    return literal[1:-1].replace("''", "'") if literal.startswith("'") else literal


def key_segment(key: Mapping[str, object] | uuid.UUID) -> str:
    """`(<guid>)` or `(col='v',col2=1)`: the address of one record by primary or alternate key."""
    if isinstance(key, uuid.UUID):
        return f"({key})"
    return "(" + ",".join(f"{odata_identifier(k)}={odata_literal(v)}" for k, v in key.items()) + ")"


def query_string(params: Mapping[str, str | None]) -> str:
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe=_QUERY_SAFE)}" for k, v in params.items() if v is not None)


def chunks_by_length(values: Sequence[str], max_items: int, max_chars: int) -> Iterator[list[str]]:
    """Split values for In() filters so each URL stays well under Dataverse's URL length limit."""
    chunk: list[str] = []
    size = 0
    for value in values:
        cost = len(quote(odata_literal(value), safe=_QUERY_SAFE)) + 1
        if chunk and (len(chunk) >= max_items or size + cost > max_chars):
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += cost
    if chunk:
        yield chunk


def split_annotations(
    row: Mapping[str, Any], keep: bool
) -> tuple[str | None, dict[str, Any], dict[str, dict[str, Any]]]:
    """(etag, values, annotations by column) from one JSON row; `@odata.*` control data is dropped."""
    etag = row.get("@odata.etag")
    values: dict[str, Any] = {}
    annotations: dict[str, dict[str, Any]] = {}
    for name, value in row.items():
        if "@" not in name:
            values[name] = value
        elif keep and not name.startswith("@"):
            column, _, annotation = name.partition("@")
            annotations.setdefault(column, {})[annotation] = value
    return etag, values, annotations
