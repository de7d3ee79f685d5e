"""Typed errors carrying Dataverse's own error code and message, and the table, record and column when known.

`error_from_response` is pure (status, headers, body) -> exception, so every shape Dataverse answers with is tested
as a table of cases. Error text comes from the service or from us; it never holds a token or a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sync.connectors.dynamics.models import WriteError

DUPLICATE_KEY = "0x80040237"
NOT_FOUND = "0x80040217"

# Dataverse names the offending column in these message shapes (the first match wins).
_COLUMN_PATTERNS = [
    re.compile(p)
    for p in (
        r"The length of the '(?P<column>[\w.]+)' attribute",  # 0x80044331 over-long string
        r"The property '(?P<column>[\w.@]+)' does not exist on type",  # unknown column in a payload
        r"[Cc]ould not find a property named '(?P<column>[\w.]+)'",  # unknown column in $select/$filter/$orderby
        r"Invalid property '(?P<column>[\w.]+)'",
        r"The value (?:\S+ )?of '(?P<column>\w+)' on record",  # required (0x80040200), out of range (0x8004431a)
        r"is not a valid value for '(?P<column>\w+)'",
        r"[Aa]ttribute '(?P<column>\w+)'",  # "Attribute 'x' cannot be NULL", "... attribute 'x' ..."
        r"'(?P<column>\w+)' attribute",
        r"[Pp]roperty '(?P<column>\w+)'",
        r"[Cc]olumn '(?P<column>\w+)'",
        r"[Ff]ield '(?P<column>\w+)'",
    )
]
_EXPIRED_TOKEN = re.compile(r"[Vv]ersion stamp.*expired", re.DOTALL)


class DataverseError(Exception):
    """A Dataverse Web API error. `status` is None when the error was found before anything was sent."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        column: str | None = None,
        *,
        table: str | None = None,
        record: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.column = column
        self.table = table
        self.record = record
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ", ".join(
            f"{name} {value}"
            for name, value in (("table", self.table), ("record", self.record), ("column", self.column))
            if value
        )
        status = f"HTTP {self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}" + (f" ({where})" if where else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status!r}, {self.code!r}, {self.message!r}, column={self.column!r})"

    def with_context(self, *, table: str | None = None, record: str | None = None) -> DataverseError:
        self.table = self.table or table
        self.record = self.record or record
        self.args = (str(self),)
        return self

    def to_write_error(self, record: str | None = None) -> WriteError:
        return WriteError(
            status=self.status, code=self.code, message=self.message, column=self.column, record=record or self.record
        )


class AuthenticationError(DataverseError):
    """The token endpoint refused us, or the Web API answered 401 even with a fresh token."""


class ServiceProtectionError(DataverseError):
    """429 after the retries ran out (or Retry-After was longer than we will wait). `retry_after` is in seconds."""

    def __init__(self, status: int | None, code: str, message: str, column: str | None = None, **kwargs: Any) -> None:
        self.retry_after: float | None = kwargs.pop("retry_after", None)
        super().__init__(status, code, message, column, **kwargs)


class NotFoundError(DataverseError):
    pass


class PreconditionFailedError(DataverseError):
    pass


class DuplicateRecordError(PreconditionFailedError):
    """0x80040237: a record with matching key values already exists."""


class ChangeTokenExpiredError(DataverseError):
    """The delta token is too old ("Version stamp ... expired"): the client falls back to a full read."""


class InvalidRequestError(DataverseError):
    """The 400 family: malformed OData, unknown columns, wrong types, over-long strings, missing columns, bad GUIDs."""


class TransportError(DataverseError):
    """No HTTP answer at all (connection refused or dropped, timeout, TLS failure)."""


def column_named_in(message: str) -> str | None:
    for pattern in _COLUMN_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group("column").split("@", 1)[0]
    return None


def parse_error_body(status: int, body: bytes | str | Mapping[str, Any] | None) -> tuple[str, str]:
    """(code, message) from `{"error": {"code", "message"}}`, or a readable fallback for non-JSON bodies."""
    data: Any = body
    if isinstance(body, bytes | str) and not body.strip():
        return f"HTTP{status}", f"HTTP {status} without a body"
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except ValueError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return f"HTTP{status}", (text.strip()[:500] or f"HTTP {status} without a body")
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping):
        code = str(error.get("code") or f"HTTP{status}")
        message = str(error.get("message") or "")
        return code, message
    if isinstance(data, Mapping) and "error_description" in data:  # Entra ID token endpoint
        return str(data.get("error") or f"HTTP{status}"), str(data["error_description"]).splitlines()[0]
    return f"HTTP{status}", f"HTTP {status}"


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | None,
    *,
    table: str | None = None,
    record: str | None = None,
) -> DataverseError:
    code, message = parse_error_body(status, body)
    column = column_named_in(message)
    kwargs: dict[str, Any] = {"table": table, "record": record}
    cls: type[DataverseError]
    if code == DUPLICATE_KEY:
        cls = DuplicateRecordError
    elif _EXPIRED_TOKEN.search(message):
        cls = ChangeTokenExpiredError
    elif status == 401:
        cls = AuthenticationError
    elif status == 429:
        cls = ServiceProtectionError
        kwargs["retry_after"] = retry_after_seconds(headers.get("Retry-After"))
    elif status == 404:
        cls = NotFoundError
    elif status == 412:
        cls = PreconditionFailedError
    elif 400 <= status < 500:
        cls = InvalidRequestError
    else:
        cls = DataverseError
    return cls(status, code, message, column, **kwargs)


def retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: Dataverse sends seconds; urllib3 already honoured it while retrying
