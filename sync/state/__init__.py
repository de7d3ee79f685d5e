"""Durable sync state in Azure Table Storage: watermarks, links with snapshots, run history, record errors, leases.

`StateStore` creates the tables (named `<prefix><kind>`, and the links' `<prefix>linksd00` .. `<prefix>linksm07`, one
per side and bucket: sync/state/links.py) once and hands out one small repository per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableServiceClient

from sync.settings import Settings
from sync.state.errors import RecordError, RecordErrorStore
from sync.state.jobs import CheckpointConflict, EntityClaimed, Job, JobStore, Task
from sync.state.leases import Lease, LeaseHeld, LeaseStore
from sync.state.links import BUCKETS, SIDES, Link, LinkStore, link_table_name, link_table_names, old_table_name
from sync.state.runs import RunCounts, RunHistory, RunRecord
from sync.state.systems import Halt, SystemStore
from sync.state.tables import ensure_table, service_client
from sync.state.watermarks import Watermark, WatermarkConflict, WatermarkStore

TABLE_KINDS = ("watermarks", "runs", "errors", "leases", "jobs", "systems")  # and the link tables (links.py)
CREATE_THREADS = 8  # the tables are created at once: 22 round trips at a process's start


def table_names(prefix: str) -> list[str]:
    """Every table the state store creates."""
    return [f"{prefix}{kind}" for kind in TABLE_KINDS] + link_table_names(prefix)


class StateStore:
    def __init__(
        self,
        service: TableServiceClient,
        prefix: str = "sync",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.prefix = prefix
        names = table_names(prefix)
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            tables = dict(zip(names, pool.map(lambda name: ensure_table(service, name), names), strict=True))
        self.watermarks = WatermarkStore(tables[f"{prefix}watermarks"])
        self.links = LinkStore(
            {(side, b): tables[link_table_name(prefix, side, b)] for side in SIDES for b in range(BUCKETS)},
            old=service.get_table_client(old_table_name(prefix)),  # only read and emptied: never created
        )
        self.runs = RunHistory(tables[f"{prefix}runs"])
        self.errors = RecordErrorStore(tables[f"{prefix}errors"])
        self.leases = LeaseStore(tables[f"{prefix}leases"], clock=clock)
        self.jobs = JobStore(tables[f"{prefix}jobs"])
        self.systems = SystemStore(tables[f"{prefix}systems"])

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
    "table_names",
]
