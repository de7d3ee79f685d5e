"""The Dataverse Web API connector (Dynamics 365): MSAL app-only auth, streamed OData reads, change tracking,
bulk writes with per-record results, metadata. See DataverseClient."""

from sync.connectors.dynamics.client import DataverseClient
from sync.connectors.dynamics.errors import (
    AuthenticationError,
    ChangeTokenExpiredError,
    DataverseError,
    DuplicateRecordError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    ServiceProtectionError,
    TransportError,
)
from sync.connectors.dynamics.models import (
    AlternateKey,
    ChangePage,
    ColumnMetadata,
    DataverseRecord,
    TableMetadata,
    WriteError,
    WriteResult,
)
from sync.connectors.dynamics.odata import eq, in_filter, odata_identifier, odata_literal

__all__ = [
    "AlternateKey",
    "AuthenticationError",
    "ChangePage",
    "ChangeTokenExpiredError",
    "ColumnMetadata",
    "DataverseClient",
    "DataverseError",
    "DataverseRecord",
    "DuplicateRecordError",
    "InvalidRequestError",
    "NotFoundError",
    "PreconditionFailedError",
    "ServiceProtectionError",
    "TableMetadata",
    "TransportError",
    "WriteError",
    "WriteResult",
    "eq",
    "in_filter",
    "odata_identifier",
    "odata_literal",
]
