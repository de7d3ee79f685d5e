"""What one sync run works with, passed in whole: the two clients, the state store, the mapping, a clock, a budget."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sync.mapping.model import MappingConfig, load_mapping
from sync.settings import Settings
from sync.state import StateStore

if TYPE_CHECKING:
    from sync.connectors.dynamics import DataverseClient
    from sync.connectors.marketo import MarketoClient


def _default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class SyncContext:
    dynamics: DataverseClient
    marketo: MarketoClient
    state: StateStore
    mapping: MappingConfig
    time_budget: timedelta = timedelta(seconds=240)
    bulk_import_threshold: int = 1000  # full sync: this many Marketo creates in a page go through Bulk Import
    bulk_extract_threshold: int = 25000  # full sync: Marketo id ranges wider than this are read by Bulk Extract
    message_seconds: float = 240.0  # full sync: a queue message starts pages until this long has passed
    import_unit_pages: int = 7  # full sync to Marketo: pages per Bulk Import (fullsync_pages.py, import units)
    match_index: str = "auto"  # full sync: "auto" (when it pays), "always" or "never" (match_index, dynamics_index)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    holder: str = field(default_factory=_default_holder)
    # reference targets found excluded by their stream's filter (application users, access teams), kept for the
    # life of the context so that resolving them costs one Dataverse read, not one per cycle
    excluded_targets: dict[tuple[str, str], str] = field(default_factory=dict)
    # when this process last asked both systems whether they are still the ones the state was built against
    identity_checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    verified_objects: set[str] = field(default_factory=set)  # custom object streams whose type was described

    def api_calls(self) -> dict[str, int]:
        return {"dynamics": self.dynamics.calls.total(), "marketo": self.marketo.calls.total()}


def build_context(settings: Settings, state: StateStore | None = None) -> SyncContext:
    """Clients, state and mapping from the app settings."""
    from sync.connectors.dynamics import DataverseClient
    from sync.connectors.marketo import MarketoClient

    return SyncContext(
        dynamics=DataverseClient.from_settings(settings),
        marketo=MarketoClient.from_settings(settings),
        state=state or StateStore.from_settings(settings),
        mapping=load_mapping(settings.sync_mapping_file),
        time_budget=timedelta(seconds=settings.sync_cycle_time_budget_seconds),
        bulk_import_threshold=settings.sync_bulk_import_threshold,
        bulk_extract_threshold=settings.sync_bulk_extract_threshold,
        message_seconds=settings.sync_full_sync_message_seconds,
        import_unit_pages=settings.sync_full_sync_import_unit_pages,
        match_index=settings.sync_full_sync_match_index,
    )
