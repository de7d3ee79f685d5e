"""Building Table Storage clients from the settings: a connection string (Azurite, keys) or the managed identity."""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.data.tables import TableClient, TableEntity, TableServiceClient


def service_client(
    connection_string: str | None = None,
    account_name: str | None = None,
    credential: TokenCredential | None = None,
    **client_options: Any,
) -> TableServiceClient:
    """A TableServiceClient from a connection string, or from an account name and a token credential."""
    if connection_string:
        return TableServiceClient.from_connection_string(connection_string, **client_options)
    if not account_name:
        raise ValueError("AzureWebJobsStorage: neither a connection string nor an account name is configured")
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return TableServiceClient(f"https://{account_name}.table.core.windows.net", credential=credential, **client_options)


def ensure_table(service: TableServiceClient, name: str) -> TableClient:
    service.create_table_if_not_exists(name)
    return service.get_table_client(name)


def row_etag(row: TableEntity) -> str:
    """The ETag of a row read from the service (which always sends one): what a compare-and-swap must match."""
    etag = row.metadata["etag"]
    if etag is None:
        raise ValueError(f"table row {row.get('PartitionKey')!r}/{row.get('RowKey')!r} came back without an ETag")
    return etag
