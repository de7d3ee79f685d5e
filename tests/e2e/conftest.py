from __future__ import annotations

from pathlib import Path

import pytest

from emulators.azurite import Azurite
from sync.state import StateStore
from tests.e2e.world import World
from tests.emulated import RunningEmulators


@pytest.fixture
def world(emulators: RunningEmulators, state: StateStore, tmp_path: Path, table_prefix: str, azurite: Azurite) -> World:
    """Both emulators reset, a fresh state store, and the sync's context built from its settings."""
    return World.build(emulators, state, tmp_path, table_prefix, azurite.connection_string)
