"""Marketo's response envelope, parsed (pure: no I/O).

Every REST response is HTTP 200 with `{"requestId", "success", "errors", "warnings", "result", "moreResult",
"nextPageToken"}`; failures are `success: false` with `errors: [{"code": "606", "message": ...}]`. Only 413, 414
and identity's 401 come as HTTP errors.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from sync.connectors.marketo.errors import (
    CODE_HTTP,
    CODE_PROTOCOL,
    MarketoError,
    NotFoundError,
    RequestTooLargeError,
    TransientError,
    error_for,
)
from sync.connectors.marketo.models import Reason


class Envelope(BaseModel):
    request_id: str | None = Field(default=None, alias="requestId")
    success: bool = True
    errors: list[Reason] = []
    warnings: list[Any] = []
    result: list[Any] = []
    more_result: bool | None = Field(default=None, alias="moreResult")
    next_page_token: str | None = Field(default=None, alias="nextPageToken")
    raw: dict[str, Any] = {}

    def error(self) -> MarketoError | None:
        """The typed error of a `success: false` envelope (its first error), else None."""
        if self.success:
            return None
        first = self.errors[0] if self.errors else Reason(code=CODE_PROTOCOL, message="success=false without errors")
        return error_for(first.code, first.message, request_id=self.request_id)


def _reason(item: Any) -> Reason:
    if isinstance(item, dict):
        return Reason(code=str(item.get("code", CODE_PROTOCOL)), message=str(item.get("message", "")))
    return Reason(code=CODE_PROTOCOL, message=str(item))


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def http_error(status: int, text: str) -> MarketoError:
    """The typed error for a non-200 HTTP answer (the body is shortened; it never holds a secret of ours)."""
    message = _short(text) or f"HTTP {status}"
    if status == 413:
        return RequestTooLargeError("413", f"request body too large: {message}", status=status)
    if status == 414:
        return RequestTooLargeError("414", f"request URI too long: {message}", status=status)
    if status == 404:
        return NotFoundError("404", message, status=status)
    if status in (502, 503, 504):
        return TransientError(str(status), message, status=status)
    return MarketoError(CODE_HTTP, f"HTTP {status}: {message}", status=status)


def parse_envelope(body: bytes | str | dict[str, Any]) -> Envelope:
    """Parse a JSON envelope. Raises MarketoError(sync.protocol) when the body is not one."""
    if isinstance(body, dict):
        data = body
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            raise MarketoError(CODE_PROTOCOL, f"response is not JSON: {_short(text, 120)!r}") from exc
    if not isinstance(data, dict):
        raise MarketoError(CODE_PROTOCOL, f"response is not a JSON object: {type(data).__name__}")
    result = data.get("result")
    token = data.get("nextPageToken")
    return Envelope.model_validate(
        {
            "requestId": data.get("requestId"),
            "success": bool(data.get("success", True)),
            "errors": [_reason(e) for e in data.get("errors") or []],
            "warnings": list(data.get("warnings") or []),
            "result": result if isinstance(result, list) else ([] if result is None else [result]),
            "moreResult": data.get("moreResult"),
            "nextPageToken": str(token) if token not in (None, "") else None,
            "raw": data,
        }
    )


def first_result(envelope: Envelope, what: str) -> dict[str, Any]:
    """The single object a create/status call returns in `result`."""
    if not envelope.result or not isinstance(envelope.result[0], dict):
        raise MarketoError(CODE_PROTOCOL, f"{what}: no result in the answer")
    return envelope.result[0]


def has_more(envelope: Envelope, previous_token: str | None) -> bool:
    """Whether another page follows.

    `moreResult` decides when present (a page may be short, or empty, while it is true). Endpoints that do not send
    it (leads by filter) signal more pages by a fresh `nextPageToken`.
    """
    if envelope.more_result is not None:
        return envelope.more_result
    return envelope.next_page_token is not None and envelope.next_page_token != previous_token
