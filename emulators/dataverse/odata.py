"""OData query options over in-memory rows: $select, $filter (parsed by odata-query, compiled to a predicate),
$orderby, $expand, Prefer headers and key segments, with Dataverse's error texts for malformed input."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from odata_query import ast
from odata_query.exceptions import ODataException, ParsingException, TokenizingException
from odata_query.grammar import ODataLexer, ODataParser

from emulators.dataverse.errors import DataverseFault, no_property, query_error
from emulators.dataverse.schema import CHOICE_TYPES, NUMBER_TYPES, STRING_TYPES, Column, Table

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

_LEXER = ODataLexer()
_PARSER = ODataParser()


def parse_guid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text.strip("{}")))
    except ValueError:
        return None


def parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------------------------
# $select


def parse_select(table: Table, text: str | None) -> list[str] | None:
    """The JSON properties to return (the primary key always among them), or None for all columns."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    result: list[str] = []
    for name in names:
        if name == "*":
            return None
        if name not in table.attributes:
            raise no_property(table.type_name, name)
        if name not in result:
            result.append(name)
    if table.primary_id not in result:
        result.append(table.primary_id)
    return result


# ----------------------------------------------------------------------------------------------------------------
# $orderby


def parse_orderby(table: Table, text: str | None) -> list[tuple[str, bool]]:
    if not text:
        return []
    result = []
    for part in text.split(","):
        bits = part.strip().split()
        if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
            raise query_error(f"Syntax error at position {len(text)} in '{text}'.")
        if bits[0] not in table.attributes:
            raise no_property(table.type_name, bits[0])
        result.append((bits[0], len(bits) == 2 and bits[1].lower() == "desc"))
    return result


def sort_key(column: Column | None) -> Callable[[Any], Any]:
    """A key for sorting values of one column; nulls sort first (as SQL Server does ascending)."""
    if column is not None and column.type in STRING_TYPES:
        return lambda v: (v is not None, v.casefold() if v is not None else "")
    return lambda v: (v is not None, v if v is not None else 0)


# ----------------------------------------------------------------------------------------------------------------
# $expand (single-valued navigation properties only)


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on a separator outside parentheses and string literals (`$expand` items, their `;` options)."""
    parts: list[str] = []
    depth, in_string, current = 0, False, ""
    for char in text:
        if char == "'":
            in_string = not in_string
        elif not in_string and char == "(":
            depth += 1
        elif not in_string and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not in_string:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


@dataclass
class Expand:
    nav: str
    column: Column
    target: str  # table logical name, or "principal" (owner)
    select: str | None = None


def parse_expand(table: Table, text: str | None) -> list[Expand]:
    if not text:
        return []
    parts = split_top_level(text, ",")
    if len(parts) > 15:
        raise query_error("Number of link entities in query exceeded maximum limit.")
    result = []
    for part in parts:
        part = part.strip()
        match = re.fullmatch(r"([A-Za-z0-9_]+)(?:\((.*)\))?", part)
        if not match:
            raise query_error(f"Syntax error at position {len(text)} in '{text}'.")
        nav, options = match.group(1), match.group(2)
        if nav not in table.nav_props:
            raise no_property(table.type_name, nav)
        column, target = table.nav_props[nav]
        select = None
        if options:
            for option in options.split(";"):
                name, _, value = option.partition("=")
                if name.strip() == "$select":
                    select = value
                else:
                    raise query_error(f"The query option '{name.strip()}' is not supported in $expand here.")
        result.append(Expand(nav, column, target, select))
    return result


# ----------------------------------------------------------------------------------------------------------------
# Prefer


@dataclass
class Prefer:
    max_page_size: int | None = None
    track_changes: bool = False
    return_representation: bool = False
    continue_on_error: bool = False
    annotations: list[str] = field(default_factory=list)

    def wants(self, annotation: str) -> bool:
        for pattern in self.annotations:
            if pattern in ("*", annotation) or (pattern.endswith(".*") and annotation.startswith(pattern[:-1])):
                return True
        return False

    @property
    def any_annotations(self) -> bool:
        return bool(self.annotations)


_PREFERENCE = re.compile(r'\s*([A-Za-z][\w.-]*)\s*(?:=\s*("[^"]*"|[^,;]*))?[^,]*(?:,|$)')


def parse_prefer(values: list[str]) -> Prefer:
    """Prefer header values; a quoted value (e.g. a list of annotations) may hold commas."""
    prefer = Prefer()
    for header in values:
        for match in _PREFERENCE.finditer(header):
            name = match.group(1).lower()
            value = (match.group(2) or "").strip().strip('"')
            if name == "odata.maxpagesize":
                try:
                    prefer.max_page_size = int(value)
                except ValueError:
                    continue
            elif name == "odata.track-changes":
                prefer.track_changes = True
            elif name == "return" and value == "representation":
                prefer.return_representation = True
            elif name == "odata.continue-on-error":
                prefer.continue_on_error = True
            elif name == "odata.include-annotations":
                prefer.annotations = [a.strip() for a in value.split(",") if a.strip()]
    return prefer


# ----------------------------------------------------------------------------------------------------------------
# $filter


def _syntax_error(text: str, position: int) -> DataverseFault:
    return query_error(f"Syntax error at position {position} in '{text}'.")


def parse_filter(text: str) -> ast._Node:
    # Dataverse writes In() lists JSON-style (['a','b']); odata-query reads OData lists ('a','b').
    rewritten, in_string = [], False
    for char in text:
        if char == "'":
            in_string = not in_string
        if not in_string and char in "[]":
            char = "(" if char == "[" else ")"
        rewritten.append(char)
    source = "".join(rewritten)
    _check_functions(text)
    try:
        return _PARSER.parse(_LEXER.tokenize(source))
    except TokenizingException as exc:
        token = getattr(exc, "token", None)
        position = getattr(token, "index", len(text))
        value = str(getattr(token, "value", ""))
        if value.startswith("'"):
            raise query_error(f"There is an unterminated string literal at position {position} in '{text}'.") from exc
        raise _syntax_error(text, position) from exc
    except ParsingException as exc:
        token = getattr(exc, "token", None)
        position = getattr(token, "index", None)
        raise _syntax_error(text, len(text) if position is None else position) from exc
    except (ODataException, ValueError) as exc:
        raise _syntax_error(text, len(text)) from exc


KNOWN_FUNCTIONS = {"contains", "startswith", "endswith", "not", "and", "or", "in"}
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")


def _check_functions(text: str) -> None:
    """Name an unknown function the way Dataverse does (the grammar would only call it a syntax error)."""
    outside = re.sub(r"'(?:[^']|'')*'", "''", text)
    for match in _CALL.finditer(outside):
        name = match.group(1)
        if name.lower() in KNOWN_FUNCTIONS or name.startswith("Microsoft.Dynamics.CRM."):
            continue
        raise query_error(
            f"An unknown function with name '{name}' was found. This may also be a function import or a key lookup "
            "on a navigation property, which is not allowed."
        )


_LITERAL_EDM: dict[type[ast._Node], str] = {
    ast.String: "Edm.String",
    ast.Integer: "Edm.Int32",
    ast.Float: "Edm.Double",
    ast.Boolean: "Edm.Boolean",
    ast.GUID: "Edm.Guid",
    ast.DateTime: "Edm.DateTimeOffset",
    ast.Date: "Edm.Date",
}
_OPERATOR_KIND = {
    ast.Eq: "Equal",
    ast.NotEq: "NotEqual",
    ast.Lt: "LessThan",
    ast.LtE: "LessThanOrEqual",
    ast.Gt: "GreaterThan",
    ast.GtE: "GreaterThanOrEqual",
}


class FilterCompiler:
    """Compiles a $filter AST into a predicate over rows of one table."""

    def __init__(self, table: Table, resolve_related: Callable[[str, str], Row | None] | None = None) -> None:
        self.table = table
        self.resolve_related = resolve_related

    def compile(self, text: str) -> Predicate:
        return self._node(parse_filter(text))

    # -- nodes

    def _node(self, node: ast._Node) -> Predicate:
        if isinstance(node, ast.BoolOp):
            left, right = self._node(node.left), self._node(node.right)
            if isinstance(node.op, ast.And):
                return lambda row: left(row) and right(row)
            return lambda row: left(row) or right(row)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._node(node.operand)
            return lambda row: not inner(row)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Identifier):
            column = self._column(node)
            if column.type != "Boolean":
                raise query_error("The $filter expression must evaluate to a single boolean value.")
            attribute = column.attribute
            return lambda row: row.get(attribute) is True
        raise query_error(f"The query node {type(node).__name__} is not supported.")

    def _column(self, node: ast._Node) -> Column:
        if isinstance(node, ast.Identifier) and not node.namespace:
            column = self.table.attributes.get(node.name)
            if column is None:
                raise no_property(self.table.type_name, node.name)
            return column
        raise query_error("Only a property of the entity may be compared here.")

    def _getter(self, node: ast._Node) -> tuple[Callable[[Row], Any], Column]:
        if isinstance(node, ast.Attribute) and isinstance(node.owner, ast.Identifier):
            nav = node.owner.name
            if nav not in self.table.nav_props:
                raise no_property(self.table.type_name, nav)
            column, target = self.table.nav_props[nav]
            if self.resolve_related is None or target == "principal":
                raise query_error(f"Filtering on the related property '{nav}/{node.attr}' is not supported.")
            attribute = column.attribute
            resolve = self.resolve_related

            def related(row: Row) -> Any:
                ref = row.get(attribute)
                if ref is None:
                    return None
                other = resolve(target, ref)
                return None if other is None else other.get(node.attr)

            return related, Column(node.attr, "String")
        column = self._column(node)
        attribute = column.attribute
        return (lambda row: row.get(attribute)), column

    def _literal(self, node: ast._Node, column: Column, operator: str) -> Any:
        if isinstance(node, ast.Null):
            return None
        ctype = column.type
        edm = _LITERAL_EDM.get(type(node), "Edm.Untyped")

        def incompatible() -> DataverseFault:
            return query_error(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{column.edm_type}' and '{edm}' for operator kind '{operator}'."
            )

        if ctype in STRING_TYPES:
            if not isinstance(node, ast.String):
                raise incompatible()
            return node.val.casefold()
        if ctype in ("Uniqueidentifier", "Lookup", "Customer", "Owner"):
            if isinstance(node, ast.GUID):
                return node.val.lower()
            raise incompatible()
        if ctype == "Boolean":
            if isinstance(node, ast.Boolean):
                return node.py_val
            raise incompatible()
        if ctype == "DateTime":
            if isinstance(node, ast.DateTime):
                return parse_datetime(node.val)
            if isinstance(node, ast.Date):
                day = date.fromisoformat(node.val)
                return datetime(day.year, day.month, day.day, tzinfo=UTC)
            raise incompatible()
        if ctype in CHOICE_TYPES or ctype in ("Integer", "BigInt"):
            if isinstance(node, ast.Integer):
                return int(node.val)
            raise incompatible()
        if ctype in NUMBER_TYPES:
            if isinstance(node, ast.Integer | ast.Float):
                return Decimal(node.val)
            raise incompatible()
        raise incompatible()

    @staticmethod
    def _row_value(column: Column) -> Callable[[Any], Any]:
        if column.type in STRING_TYPES:
            return lambda v: v.casefold()
        if column.type == "DateTime":
            return parse_datetime
        if column.type in ("Decimal", "Money", "Double"):
            return lambda v: Decimal(str(v))
        return lambda v: v

    def _compare(self, node: ast.Compare) -> Predicate:
        if isinstance(node.comparator, ast.In):
            getter, column = self._getter(node.left)
            values = node.right.val if isinstance(node.right, ast.List) else [node.right]
            wanted = {self._literal(v, column, "In") for v in values}
            convert = self._row_value(column)
            return lambda row: (v := getter(row)) is not None and convert(v) in wanted
        left, right = node.left, node.right
        comparator = type(node.comparator)
        if isinstance(left, ast._Literal) and not isinstance(right, ast._Literal):
            left, right = right, left
            comparator = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}.get(
                comparator, comparator
            )
        if not isinstance(right, ast._Literal):
            raise query_error("Comparisons between two properties are not supported.")
        operator = _OPERATOR_KIND[comparator]
        getter, column = self._getter(left)
        literal = self._literal(right, column, operator)
        convert = self._row_value(column)
        if literal is None:
            if comparator is ast.Eq:
                return lambda row: getter(row) is None
            if comparator is ast.NotEq:
                return lambda row: getter(row) is not None
            return lambda row: False
        # SQL semantics: a null column matches no comparison with a value, not even `ne` (unverified for ne).
        ops: dict[type, Callable[[Any, Any], bool]] = {
            ast.Eq: lambda a, b: a == b,
            ast.NotEq: lambda a, b: a != b,
            ast.Lt: lambda a, b: a < b,
            ast.LtE: lambda a, b: a <= b,
            ast.Gt: lambda a, b: a > b,
            ast.GtE: lambda a, b: a >= b,
        }
        op = ops[comparator]
        return lambda row: (v := getter(row)) is not None and op(convert(v), literal)

    def _call(self, node: ast.Call) -> Predicate:
        name = node.func.name
        namespace = ".".join(node.func.namespace)
        if not namespace and name in ("contains", "startswith", "endswith"):
            if len(node.args) != 2 or not isinstance(node.args[1], ast.String):
                raise query_error(f"The function '{name}' requires a property and a string literal.")
            getter, column = self._getter(node.args[0])
            if column.type not in STRING_TYPES:
                raise query_error(
                    f"No function signature for the function with name '{name}' matches the specified arguments. "
                    f"The function signatures considered are: {name}(Edm.String Nullable=true, Edm.String)."
                )
            needle = node.args[1].val.casefold()
            if name == "contains":
                return lambda row: (v := getter(row)) is not None and needle in v.casefold()
            if name == "startswith":
                return lambda row: (v := getter(row)) is not None and v.casefold().startswith(needle)
            return lambda row: (v := getter(row)) is not None and v.casefold().endswith(needle)
        if namespace == "Microsoft.Dynamics.CRM" and name in ("In", "NotIn", "Null", "NotNull"):
            params = {p.name.name: p.param for p in node.args if isinstance(p, ast.NamedParam)}
            prop = params.get("PropertyName")
            if not isinstance(prop, ast.String):
                raise query_error(f"The function '{name}' requires the parameter 'PropertyName'.")
            getter, column = self._getter(ast.Identifier(prop.val))
            if name in ("Null", "NotNull"):
                is_null = name == "Null"
                return lambda row: (getter(row) is None) == is_null
            values_node = params.get("PropertyValues")
            if values_node is None:
                raise query_error(f"The function '{name}' requires the parameter 'PropertyValues'.")
            raw = values_node.val if isinstance(values_node, ast.List) else [values_node]
            wanted = {self._in_value(v, column) for v in raw}
            convert = self._row_value(column)
            if name == "In":
                return lambda row: (v := getter(row)) is not None and convert(v) in wanted
            return lambda row: (v := getter(row)) is None or convert(v) not in wanted
        full = f"{namespace}.{name}" if namespace else name
        raise query_error(
            f"An unknown function with name '{full}' was found. This may also be a function import or a key lookup "
            "on a navigation property, which is not allowed."
        )

    def _in_value(self, node: ast._Node, column: Column) -> Any:
        # In() takes its values as strings whatever the column type.
        if not isinstance(node, ast.String):
            return self._literal(node, column, "In")
        text = node.val
        if column.type in STRING_TYPES:
            return text.casefold()
        if column.type in ("Uniqueidentifier", "Lookup", "Customer", "Owner"):
            guid = parse_guid(text)
            if guid is None:
                raise query_error(f"'{text}' is not a valid value for '{column.name}'.")
            return guid
        if column.type in CHOICE_TYPES or column.type in ("Integer", "BigInt"):
            try:
                return int(text)
            except ValueError as exc:
                raise query_error(f"'{text}' is not a valid value for '{column.name}'.") from exc
        if column.type == "DateTime":
            return parse_datetime(text)
        if column.type == "Boolean":
            return text.lower() == "true"
        return Decimal(text)


# ----------------------------------------------------------------------------------------------------------------
# Key segments: (guid) | (name='v') | (a='x',b=2)


def parse_key_segment(text: str) -> str | dict[str, Any] | None:
    """A GUID string, a dict of alternate-key values, or None when the segment is malformed."""
    text = text.strip()
    guid = parse_guid(text)
    if guid is not None and "=" not in text and "'" not in text:
        return guid
    values: dict[str, Any] = {}
    for match in re.finditer(r"\s*([A-Za-z0-9_]+)\s*=\s*('(?:[^']|'')*'|[^,]+)\s*(,|$)", text):
        name, raw = match.group(1), match.group(2).strip()
        if raw.startswith("'"):
            values[name] = raw[1:-1].replace("''", "'")
        elif raw == "null":
            values[name] = None
        elif re.fullmatch(r"-?\d+", raw):
            values[name] = int(raw)
        else:
            parsed = parse_guid(raw)
            values[name] = parsed if parsed is not None else raw
    if not values:
        return None
    rebuilt = ",".join(f"{k}=" for k in values)
    if len(values) != text.count("=") or not rebuilt:
        return None
    return values
