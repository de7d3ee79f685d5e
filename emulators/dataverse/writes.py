"""Turning a request body into a row: column types, lengths, option values, lookups by @odata.bind, statecode
and statuscode rules, required columns, and the columns the server maintains."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from emulators.dataverse import errors
from emulators.dataverse.odata import format_datetime, parse_datetime, parse_guid, parse_key_segment
from emulators.dataverse.schema import ACCESS_TEAM, DEFAULT_STATUS_FOR_STATE, STRING_TYPES, Column, Table

Row = dict[str, Any]
INT32 = (-(2**31), 2**31 - 1)
_REFERENCE = re.compile(r"^(?:https?://[^/]+)?/?(?:api/data/v9\.\d/)?([A-Za-z0-9_]+)\((.*)\)$")


@dataclass
class WriteContext:
    """What a write needs from its surroundings."""

    tables: dict[str, Table]
    entity_sets: dict[str, Table]
    find: Callable[[str, str | dict[str, Any]], Row | None]  # (logical name, id or key values) -> row
    content_ids: dict[str, str]  # "$1" -> URL of the record created by that part of a changeset
    caller_user_id: str
    now: str  # the write's timestamp, JSON form


def resolve_reference(ctx: WriteContext, text: str, entity_set_for_errors: str) -> tuple[Table, Row]:
    """`/accounts(<guid>)`, `accounts(key='v')`, a full URL, or `$1` -> (table, row). Raises 400/404."""
    if text.startswith("$") and text in ctx.content_ids:
        text = ctx.content_ids[text]
    elif text.startswith("$"):
        raise errors.query_error(f"Content-ID Reference: '{text}' does not exist in the batch context.")
    match = _REFERENCE.match(unquote(text) if "%" in text else text)
    if not match:
        raise errors.payload_error(entity_set_for_errors, f"The URI '{text}' is not valid for an entity reference.")
    entity_set, key_text = match.group(1), match.group(2)
    table = ctx.entity_sets.get(entity_set)
    if table is None:
        raise errors.segment_not_found(entity_set)
    key = parse_key_segment(key_text)
    if key is None:
        raise errors.query_error("Bad Request - Error in query syntax.")
    row = ctx.find(table.logical_name, key)
    if row is None:
        if isinstance(key, str):
            raise errors.not_found(table.logical_name, key)
        raise errors.not_found_by_key(table.logical_name, key_text)
    return table, row


def _type_error(table: Table, column: Column, value: Any) -> errors.DataverseFault:
    return errors.payload_error(
        table.entity_set, f"Cannot convert the literal '{value}' to the expected type '{column.edm_type}'."
    )


# Characters XML 1.0 cannot carry: Dataverse's pipeline serializes records as XML (plug-ins, audit) and refuses them.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def utf16_length(text: str) -> int:
    """A string's length as Dataverse (.NET) counts it: UTF-16 code units, so an emoji counts 2."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def coerce(table: Table, column: Column, value: Any) -> Any:
    """A JSON value for one column, checked as Dataverse checks it, in its stored form."""
    if value is None:
        return None
    ctype = column.type
    if ctype in STRING_TYPES:
        if not isinstance(value, str):
            raise _type_error(table, column, value)
        if column.max_length is not None and utf16_length(value) > column.max_length:
            raise errors.max_length(column.name, table.logical_name, column.max_length)
        bad = _XML_INVALID.search(value)
        if bad is not None:
            raise errors.invalid_character(bad.group())
        return value
    if ctype in ("Integer", "BigInt", "Picklist", "State", "Status"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(table, column, value)
        if ctype != "BigInt" and not INT32[0] <= value <= INT32[1]:
            raise _type_error(table, column, value)
        if ctype == "Picklist" and column.options is not None and value not in column.options:
            raise errors.option_out_of_range(column.name, table.logical_name, value, sorted(column.options))
        return value
    if ctype in ("Money", "Decimal", "Double"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _type_error(table, column, value)
        try:
            return float(value)
        except ValueError:
            raise _type_error(table, column, value) from None
    if ctype == "Boolean":
        if not isinstance(value, bool):
            raise _type_error(table, column, value)
        return value
    if ctype == "DateTime":
        if not isinstance(value, str):
            raise _type_error(table, column, value)
        try:
            return format_datetime(parse_datetime(value))
        except ValueError:
            raise _type_error(table, column, value) from None
    if ctype == "Uniqueidentifier":
        guid = parse_guid(value) if isinstance(value, str) else None
        if guid is None:
            raise _type_error(table, column, value)
        return guid
    raise _type_error(table, column, value)


def apply_body(
    ctx: WriteContext, table: Table, body: Any, row: Row, *, creating: bool, record_id: str | None
) -> set[str]:
    """Write `body` into `row` (a copy of the current row, or a new one). Returns the columns the body set."""
    if not isinstance(body, dict):
        raise errors.payload_error(table.entity_set, "The request body is not a JSON object.")
    touched: set[str] = set()
    for key, value in body.items():
        if key == "@odata.type":
            expected = {table.type_name, "#" + table.type_name}
            if value not in expected:
                raise errors.payload_error(
                    table.entity_set,
                    f"A type named '{str(value).lstrip('#')}' could not be resolved by the model. When a model is "
                    "available, each type name must resolve to a valid type.",
                )
            continue
        if key.endswith("@odata.bind"):
            nav = key[: -len("@odata.bind")]
            _bind(ctx, table, row, nav, value)
            touched.add(table.nav_props[nav][0].name)
            continue
        if key.startswith("@") or "@" in key:
            continue  # instance annotations (@odata.id, @odata.etag, x@OData.Community...) are ignored
        column = table.attributes.get(key)
        if column is None or column.is_lookup:
            if column is not None:
                raise errors.entity_reference_direct()
            if key in table.nav_props:
                raise errors.payload_error(
                    table.entity_set,
                    f"A node of type 'PrimitiveValue' was read from the JSON reader when trying to read the contents "
                    f"of the navigation property '{key}'; however, a 'StartObject' node was expected.",
                )
            raise errors.payload_error(
                table.entity_set,
                f"The property '{key}' does not exist on type '{table.type_name}'. Make sure to only use property "
                "names that are defined by the type or mark the type as open type.",
            )
        if column.name == table.primary_id:
            guid = coerce(table, column, value)
            if not creating and record_id is not None and guid != record_id:
                raise errors.bad_request("The primary key in the request body does not match the record in the URL.")
            row[column.name] = guid
            continue
        if column.read_only:
            continue  # server-maintained columns are ignored on write (unverified: Dataverse drops them silently)
        row[column.attribute] = coerce(table, column, value)
        touched.add(column.name)
    return touched


def _bind(ctx: WriteContext, table: Table, row: Row, nav: str, value: Any) -> None:
    if nav not in table.nav_props:
        raise errors.payload_error(
            table.entity_set,
            f"An undeclared property '{nav}' which only has property annotations in the payload but no property "
            "value was found in the payload. In OData, only declared navigation properties and declared named "
            "streams can be represented as properties without values.",
        )
    column, target = table.nav_props[nav]
    if column.read_only:
        raise errors.bad_request(f"The navigation property '{nav}' cannot be set.")
    if value is None:
        row[column.attribute] = None
        row.pop("~" + column.name, None)
        return
    if not isinstance(value, str):
        raise errors.payload_error(table.entity_set, f"The value of '{nav}@odata.bind' must be an entity URL.")
    ref_table, ref_row = resolve_reference(ctx, value, table.entity_set)
    allowed = column.targets if target == "principal" else (target,)
    if ref_table.logical_name not in allowed:
        raise errors.payload_error(
            table.entity_set,
            f"The entity with the name '{ref_table.logical_name}' cannot be bound to the navigation property "
            f"'{nav}' of type '{table.type_name}'.",
        )  # (unverified) text
    if column.type == "Owner" and ref_table.logical_name == "team" and ref_row.get("teamtype") == ACCESS_TEAM:
        raise errors.cannot_assign_to_access_team()
    row[column.attribute] = ref_row[ref_table.primary_id]
    row["~" + column.name] = ref_table.logical_name


def apply_state_rules(table: Table, old: Row | None, row: Row, touched: set[str]) -> None:
    """statecode/statuscode consistency; closed leads are read-only; statecode is not settable on create."""
    columns = table.columns
    if "statecode" not in columns or "statuscode" not in columns:
        return
    status_state = columns["statuscode"].status_state or {}
    state_options = columns["statecode"].options or {}
    defaults = DEFAULT_STATUS_FOR_STATE.get(table.logical_name, {0: 1, 1: 2})
    if old is None and "statecode" in touched and row.get("statecode") not in (None, 0):
        # (unverified) text; documented that statecode can't be set on create for most tables
        raise errors.bad_request(
            f"{row.get('statecode')} is not a valid state code on {table.logical_name} when it is created. "
            "Create the record, then change its state."
        )
    old_state = old.get("statecode") if old is not None else None
    if table.logical_name == "lead" and old_state is not None and old_state != 0:
        reopening = "statecode" in touched and row.get("statecode") == 0
        if not reopening:
            # (unverified) code and text for editing a qualified or disqualified lead
            state = state_options.get(old_state, old_state)
            raise errors.bad_request(
                f"The lead is {str(state).lower()} and cannot be edited. Reactivate the lead before you change it.",
                code="0x80040225",
            )
    state, status = row.get("statecode"), row.get("statuscode")
    if "statecode" in touched and state not in state_options:
        raise errors.option_out_of_range("statecode", table.logical_name, state, sorted(state_options))
    if "statuscode" in touched and status is not None and status not in status_state:
        raise errors.option_out_of_range("statuscode", table.logical_name, status, sorted(status_state))
    if "statuscode" in touched and "statecode" not in touched and status is not None:
        row["statecode"] = status_state[status]
    elif state is None:  # statecode untouched (a touched one passed the range check above)
        pass
    elif "statecode" in touched and "statuscode" not in touched:
        row["statuscode"] = defaults.get(state, status)
    elif "statecode" in touched and "statuscode" in touched and status is not None and status_state[status] != state:
        # (unverified) text
        raise errors.bad_request(
            f"{status} is not a valid status code for state code {table.logical_name.title()}State."
            f"{state_options.get(state, state)} on {table.logical_name} with Id {row.get(table.primary_id)}.",
            code="0x8004431a",
        )
    if row.get("statecode") is None:
        row["statecode"] = 0
    if row.get("statuscode") is None:
        row["statuscode"] = defaults.get(row["statecode"], 1)


def finish_row(ctx: WriteContext, table: Table, old: Row | None, row: Row, touched: set[str]) -> None:
    """Defaults, required columns, computed and server-maintained columns."""
    if old is None:
        # Only defaults are stored: a column missing from the row reads as null.
        for column in table.defaulted:
            attribute = column.attribute
            if attribute not in row and column.name not in touched:
                if column.default is not None:
                    row[attribute] = column.default
                else:
                    row[attribute] = ctx.caller_user_id
                    row["~" + column.name] = "systemuser"
        row["createdon"] = ctx.now
        if "createdby" in table.columns:
            row["_createdby_value"] = ctx.caller_user_id
            row["~createdby"] = "systemuser"
    apply_state_rules(table, old, row, touched)
    if "ownerid" in table.columns:
        set_owning_columns(row)
    for column in table.system_required:
        if row.get(column.attribute) is None:
            raise errors.required_missing(column.name, table.logical_name)
    if "fullname" in table.columns and table.columns["fullname"].read_only:
        row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p) or None
    if "modifiedon" in table.columns:
        row["modifiedon"] = ctx.now
    if "modifiedby" in table.columns:
        row["_modifiedby_value"] = ctx.caller_user_id
        row["~modifiedby"] = "systemuser"


def set_owning_columns(row: Row) -> None:
    """owninguser or owningteam names the owner, the other is null, as Dataverse keeps them."""
    owner, kind = row.get("_ownerid_value"), row.get("~ownerid", "systemuser")
    user, team = (owner, None) if kind == "systemuser" else (None, owner)
    row["_owninguser_value"], row["_owningteam_value"] = user, team
    row["~owninguser"], row["~owningteam"] = "systemuser", "team"


def check_keys(find_by_key: Callable[[str, tuple[Any, ...]], str | None], table: Table, row: Row) -> None:
    """A row must not share an alternate key's values with another row."""
    for name, key_columns in table.alternate_keys.items():
        values = tuple(row.get(table.columns[c].attribute) for c in key_columns)
        if any(v is None for v in values):
            continue
        other = find_by_key(name, values)
        if other is not None and other != row[table.primary_id]:
            raise errors.duplicate_key()
