"""Durable sync state in Azure Table Storage: watermarks, links with snapshots, run history, record errors, leases.

`StateStore` creates the tables (named `<prefix><kind>`) once and hands out one small repository per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableServiceClient

from sync.settings import Settings
from sync.state.errors import RecordError, RecordErrorStore
from sync.state.jobs import CheckpointConflict, EntityClaimed, Job, JobStore, Task
from sync.state.leases import Lease, LeaseHeld, LeaseStore
from sync.state.links import Link, LinkStore
from sync.state.runs import RunCounts, RunHistory, RunRecord
from sync.state.systems import Halt, SystemStore
from sync.state.tables import ensure_table, service_client
from sync.state.watermarks import Watermark, WatermarkConflict, WatermarkStore

TABLE_KINDS = ("watermarks", "links", "runs", "errors", "leases", "jobs", "systems")


class StateStore:
    def __init__(
        self,
        service: TableServiceClient,
        prefix: str = "sync",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.prefix = prefix
        tables = {kind: ensure_table(service, f"{prefix}{kind}") for kind in TABLE_KINDS}
        self.watermarks = WatermarkStore(tables["watermarks"])
        self.links = LinkStore(tables["links"])
        self.runs = RunHistory(tables["runs"])
        self.errors = RecordErrorStore(tables["errors"])
        self.leases = LeaseStore(tables["leases"], clock=clock)
        self.jobs = JobStore(tables["jobs"])
        self.systems = SystemStore(tables["systems"])

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> StateStore:
        connection = settings.state_connection
        credential = None
        if connection is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_webjobs_storage_client_id)
        service = service_client(
            connection_string=connection.get_secret_value() if connection else None,
            account_name=settings.azure_webjobs_storage_account_name,
            credential=credential,
            **client_options,
        )
        return cls(service, prefix=settings.sync_table_prefix)


__all__ = [
    "CheckpointConflict",
    "EntityClaimed",
    "Halt",
    "Job",
    "JobStore",
    "Lease",
    "LeaseHeld",
    "Link",
    "RecordError",
    "RunCounts",
    "RunRecord",
    "StateStore",
    "Task",
    "Watermark",
    "WatermarkConflict",
]
