"""Shared fixtures: a real Azurite (started once per test session) and a fresh state store per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from emulators.azurite import Azurite
from sync.state import StateStore
from sync.state.tables import service_client
from tests.emulated import RunningEmulators, start_emulators


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture
def table_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def state(azurite: Azurite, table_prefix: str) -> StateStore:
    return StateStore(service_client(azurite.connection_string), prefix=table_prefix)


@pytest.fixture(scope="session")
def emulators() -> Iterator[RunningEmulators]:
    """Both emulators (fast profile) in one subprocess for the whole test session; reset them between tests."""
    running = start_emulators("--profile", "fast")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def dataverse_emulator() -> Iterator[RunningEmulators]:
    """The Dataverse emulator alone (fast profile), for the Dataverse connector and emulator tests."""
    running = start_emulators("--profile", "fast", "--only", "dataverse")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def marketo_emulator() -> Iterator[RunningEmulators]:
    """The Marketo emulator alone (fast profile), for the Marketo connector and emulator tests."""
    running = start_emulators("--profile", "fast", "--only", "marketo")
    yield running
    running.stop()
