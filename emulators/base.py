"""What every emulator provides to `python -m emulators` and to the tests.

An emulator is an ASGI app plus the settings a client needs to reach it. Test controls live under
`/_emulator/...` on the same server: a path that is not part of the emulated API (reset, seed, faults, schema
changes, request log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Profile = Literal["fast", "realistic"]
CONTROL_PREFIX = "/_emulator"


@dataclass(frozen=True)
class EmulatorOptions:
    profile: Profile = "fast"
    demo_records: int = 0
    faults: str | None = None  # emulator-specific fault spec, e.g. "dataverse:429@0.1,marketo:606@0.05"
    extra: dict[str, Any] = field(default_factory=dict)


class Emulator(Protocol):
    name: str  # "dataverse" or "marketo"
    app: Any  # the ASGI application

    def settings(self, base_url: str) -> dict[str, str]:
        """The app settings (names as in sync.settings) that point the sync at this emulator at `base_url`."""
        ...
