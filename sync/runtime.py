"""Per-process wiring for the Functions host: settings and clients are built once, on first use, and reused.

Settings are read lazily so that indexing the function app never needs them; a missing setting then fails the
first invocation with a SettingsError naming it.
"""

from __future__ import annotations

from functools import cache

from sync.engine.context import SyncContext, build_context
from sync.engine.cycle import CycleReport, run_cycle
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


def run_incremental(entity: str) -> CycleReport:
    return run_cycle(context(), entity)


@cache
def queue() -> WorkQueue:
    return WorkQueue.from_settings(settings())
