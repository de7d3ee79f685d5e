"""How the emulator says no: response-level errors and per-record skips, both with Marketo's string codes."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A response-level error: HTTP 200, success:false, errors:[{code, message}]."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def skipped(code: str, message: str) -> dict[str, Any]:
    """A per-record result: status skipped with one reason."""
    return {"status": "skipped", "reasons": [{"code": code, "message": message}]}
