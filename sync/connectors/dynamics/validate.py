"""Which column of a record is at fault, judged from table metadata. Pure.

Used when Dataverse's error message does not name the column (e.g. "Cannot convert a primitive value to the
expected type 'Edm.Int32'"), so the error stored for the record still points at the column to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sync.connectors.dynamics.errors import DataverseError
from sync.connectors.dynamics.models import ColumnMetadata, TableMetadata
from sync.connectors.dynamics.odata import guid

_BIND = re.compile(
    r"^/?[A-Za-z_]\w*\((?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z_]\w*=.+)\)$"
)
# Characters XML 1.0 cannot carry (C0 controls but tab, LF and CR; U+FFFE, U+FFFF; lone surrogates): Dataverse
# refuses them in text columns.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_INTEGER_TYPES = {"Integer", "BigInt", "Picklist", "State", "Status"}
_NUMBER_TYPES = {"Decimal", "Double", "Money"}
_STRING_TYPES = {"String", "Memo", "EntityName"}


def column_problems(table: TableMetadata, record: Mapping[str, Any], *, creating: bool) -> list[tuple[str, str]]:
    """(column, problem) for every column the service would refuse, in the record's column order."""
    problems: list[tuple[str, str]] = []
    for name, value in record.items():
        if name.endswith("@odata.bind"):
            if value is not None and not _BIND.match(str(value)):
                problems.append((name.split("@", 1)[0], "not a record URL like /accounts(<guid>)"))
            continue
        if "@" in name:  # annotations
            continue
        column = table.columns.get(name)
        if column is None:
            problems.append((name, "unknown column"))
            continue
        problem = _value_problem(column, value)
        if problem:
            problems.append((name, problem))
    if creating:
        bound = {name.split("@", 1)[0] for name in record if "@" in name}
        for column in table.columns.values():
            if (
                column.required_level == "SystemRequired"
                and column.valid_for_create
                and column.name != table.primary_id_attribute
                and record.get(column.name) is None
                and column.name not in bound
                and column.type not in ("Owner", "State", "Status", "Uniqueidentifier")
            ):
                problems.append((column.name, "required column missing"))
    return problems


def _value_problem(column: ColumnMetadata, value: Any) -> str | None:
    if value is None:
        return "required column set to null" if column.required_level == "SystemRequired" else None
    kind = column.type
    if kind in _STRING_TYPES:
        if not isinstance(value, str):
            return f"expects text, got {type(value).__name__}"
        if column.max_length is not None and utf16_length(value) > column.max_length:
            return f"longer than {column.max_length} characters"  # UTF-16 code units, as Dataverse counts
        bad = _XML_INVALID.search(value)
        if bad is not None:
            return f"holds the control character U+{ord(bad.group()):04X}, which Dataverse refuses"
    elif kind in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expects a whole number, got {type(value).__name__}"
        if column.options is not None and value not in column.options:
            return f"{value} is not one of its options"
    elif kind in _NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expects a number, got {type(value).__name__}"
    elif kind == "Boolean":
        if not isinstance(value, bool):
            return f"expects true or false, got {type(value).__name__}"
    elif kind in ("Uniqueidentifier", "Lookup", "Customer", "Owner"):
        try:
            guid(value)
        except DataverseError:
            return "not a GUID"
    return None


def utf16_length(text: str) -> int:
    """A string's length as Dataverse (.NET) counts it: UTF-16 code units, so an emoji counts 2."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def suspect_column(table: TableMetadata, record: Mapping[str, Any], *, creating: bool) -> str | None:
    problems = column_problems(table, record, creating=creating)
    return problems[0][0] if problems else None
