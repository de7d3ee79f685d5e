"""Marketo Engage REST connector: token, envelope, budget, persons, activities, bulk jobs, CRM objects.

Use `MarketoClient.from_settings(settings)`; everything it returns is a pydantic model, every failure a typed
`MarketoError` carrying Marketo's code and message.
"""

from sync.connectors.marketo.budget import CallBudget, Limits, RateWindow
from sync.connectors.marketo.bulk_import import PollPolicy
from sync.connectors.marketo.client import MarketoClient
from sync.connectors.marketo.crm import CrmObjectClient
from sync.connectors.marketo.errors import (
    BulkJobFailedError,
    CallBudgetExhaustedError,
    DailyQuotaExceededError,
    ExportQuotaExceededError,
    InvalidRequestError,
    MarketoAuthError,
    MarketoError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    TransientError,
)
from sync.connectors.marketo.models import (
    ActivityPage,
    BulkImportResult,
    BulkJobFailure,
    BulkJobStatus,
    BulkRowIssue,
    CrmRecord,
    FieldChange,
    LeadActivity,
    LeadField,
    MarketoPerson,
    ObjectDescription,
    PersonSchema,
    Reason,
    RecordResult,
    UsageDay,
)
from sync.connectors.marketo.transport import RetryPolicy

__all__ = [
    "ActivityPage",
    "BulkImportResult",
    "BulkJobFailedError",
    "BulkJobFailure",
    "BulkJobStatus",
    "BulkRowIssue",
    "CallBudget",
    "CallBudgetExhaustedError",
    "CrmObjectClient",
    "CrmRecord",
    "DailyQuotaExceededError",
    "ExportQuotaExceededError",
    "FieldChange",
    "InvalidRequestError",
    "LeadActivity",
    "LeadField",
    "Limits",
    "MarketoAuthError",
    "MarketoClient",
    "MarketoError",
    "MarketoPerson",
    "NotFoundError",
    "ObjectDescription",
    "PersonSchema",
    "PollPolicy",
    "RateLimitError",
    "RateWindow",
    "Reason",
    "RecordResult",
    "RequestTooLargeError",
    "RetryPolicy",
    "TransientError",
    "UsageDay",
]
