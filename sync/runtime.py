"""Per-process wiring for the Functions host: settings and clients are built once, on first use, and reused.

Settings are read lazily so that indexing the function app never needs them; a missing setting then fails the
first invocation with a SettingsError naming it.
"""

from __future__ import annotations

from functools import cache

from sync.settings import Settings, load_settings
from sync.state import StateStore


@cache
def settings() -> Settings:
    return load_settings()


@cache
def state() -> StateStore:
    return StateStore.from_settings(settings())
