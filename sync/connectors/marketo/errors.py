"""Typed errors carrying Marketo's own code (a string, as Marketo sends it) and message.

`error_for(code, message)` is the one place that maps a code to its exception class. Codes we invent for problems found
before anything reaches Marketo start with "sync." so they can never be mistaken for Marketo's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.connectors.marketo.models import BulkImportResult

RETRYABLE_CODES = frozenset({"502", "604", "606", "608", "611", "615", "713"})
TOKEN_CODES = frozenset({"601", "602"})
# Response-level codes that say nothing about the records of a batch: the whole run must stop (or retry), never
# mark the batch's records as failed and go on.
SYSTEMIC_CODES = RETRYABLE_CODES | TOKEN_CODES | frozenset({"603", "605", "607", "610", "612", "613", "614"})

# Our own codes (never sent by Marketo).
CODE_BUDGET = "sync.budget"
CODE_TOO_LARGE = "sync.too_large"
CODE_NOT_SERIALIZABLE = "sync.not_serializable"
CODE_NO_RESULT = "sync.no_result"
CODE_UNKNOWN_COLUMN = "sync.unknown_column"
CODE_HTTP = "sync.http"
CODE_PROTOCOL = "sync.protocol"


class MarketoError(Exception):
    """Base class: `code` is Marketo's code as a string (e.g. "606"), or a "sync.*" code of ours."""

    def __init__(self, code: str, message: str, *, request_id: str | None = None, status: int | None = None) -> None:
        self.code = str(code)
        self.message = message
        self.request_id = request_id
        self.status = status
        super().__init__(f"Marketo error {self.code}: {message}" + (f" (requestId {request_id})" if request_id else ""))

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    @property
    def systemic(self) -> bool:
        """True when the error is about the connection, quota or service, not about the records sent."""
        return self.code in SYSTEMIC_CODES or isinstance(self, SystemicError)


class SystemicError(MarketoError):
    """Marker base: errors that stop a run rather than fail a batch."""

    partial_result: BulkImportResult | None = None  # set when it stops a bulk import: what was known by then


class MarketoAuthError(SystemicError):
    """Bad client credentials (identity 401), or 601/602 again right after a fresh token; 603 access denied."""


class RateLimitError(SystemicError):
    """606 (100 calls per 20 s) or 615 (10 concurrent calls) still returned after the bounded retries."""


class TransientError(SystemicError):
    """502/604/608/611/713 (or a dropped connection) still failing after the bounded retries."""


class DailyQuotaExceededError(SystemicError):
    """607: the subscription's daily quota is used up; it resets at 00:00 US Central."""


class CallBudgetExhaustedError(SystemicError):
    """Our own daily call budget would be exceeded by the next call: raised BEFORE that call is made."""

    def __init__(self, used: int, budget: int) -> None:
        self.used = used
        self.budget = budget
        super().__init__(
            CODE_BUDGET,
            f"daily Marketo call budget of {budget} reached ({used} calls made today; MARKETO_DAILY_CALL_BUDGET)",
        )


class RequestTooLargeError(MarketoError):
    """HTTP 413 (body over 1 MB, 10 MB for bulk import) or 414 (URI over 8 KB), or a record too big to send."""


class NotFoundError(MarketoError):
    """610 resource not found, or an HTTP 404 for a bulk file that is not ready or gone."""


class InvalidRequestError(MarketoError):
    """Any other response-level error: bad JSON, blank or invalid parameter, business rule, unsupported filter..."""


class BulkJobFailedError(MarketoError):
    """A bulk import or export job ended Failed or Cancelled, or could not be queued (1016, 1029)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        job_id: str | None = None,
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        self.job_id = job_id
        super().__init__(code, message, request_id=request_id, status=status)


class ExportQuotaExceededError(BulkJobFailedError, SystemicError):
    """1029 "Export daily quota 500MB exceeded": no export can run until the quota resets."""


_BY_CODE: dict[str, type[MarketoError]] = {
    "601": MarketoAuthError,
    "602": MarketoAuthError,
    "603": MarketoAuthError,
    "606": RateLimitError,
    "615": RateLimitError,
    "607": DailyQuotaExceededError,
    "610": NotFoundError,
    "1016": BulkJobFailedError,
    "1029": BulkJobFailedError,
}


def error_for(code: str, message: str, *, request_id: str | None = None, status: int | None = None) -> MarketoError:
    """The typed exception for a Marketo code."""
    code = str(code)
    if code == "1029" and "quota" in message.lower():
        return ExportQuotaExceededError(code, message, request_id=request_id, status=status)
    if code in RETRYABLE_CODES and code not in _BY_CODE:
        return TransientError(code, message, request_id=request_id, status=status)
    if code in SYSTEMIC_CODES and code not in _BY_CODE:
        return _SystemicInvalidRequest(code, message, request_id=request_id, status=status)
    cls = _BY_CODE.get(code, InvalidRequestError)
    return cls(code, message, request_id=request_id, status=status)


class _SystemicInvalidRequest(InvalidRequestError, SystemicError):
    """605, 612, 613, 614: a request the connector itself got wrong or a broken subscription; retrying won't help."""
