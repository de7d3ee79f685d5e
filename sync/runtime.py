"""Per-process wiring for the Functions host: settings and clients are built once, on first use, and reused.

Settings are read lazily so that indexing the function app never needs them; a missing setting then fails the
first invocation with a SettingsError naming it.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from sync.engine.context import SyncContext, build_context
from sync.engine.cycle import CycleReport
from sync.mapping.model import load_mapping
from sync.settings import Settings, load_settings
from sync.state import StateStore
from sync.state.queue import WorkQueue


@cache
def settings() -> Settings:
    return load_settings()


@cache
def state() -> StateStore:
    return StateStore.from_settings(settings())


@cache
def context() -> SyncContext:
    """Clients and tokens live as long as the worker process, so warm invocations reuse them."""
    return build_context(settings(), state())


def stream_names() -> list[str]:
    """The streams of the mapping, in dependency order, read when the host indexes the app: only the mapping file's
    path is needed then (SYNC_MAPPING_FILE), not the other settings."""
    path = os.environ.get("SYNC_MAPPING_FILE")
    return [stream.name for stream in load_mapping(Path(path) if path else None).ordered_entities()]


def schedule_setting(stream: str) -> str:
    return f"SYNC_SCHEDULE_{stream.upper()}"


def run_incremental(entity: str) -> CycleReport:
    from sync.metrics import run_cycle_counted

    return run_cycle_counted(context(), entity)


@cache
def queue() -> WorkQueue:
    return WorkQueue.from_settings(settings())
