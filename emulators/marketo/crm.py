"""CRM objects (placeholder until the full implementation lands)."""

from __future__ import annotations

from typing import Any

from emulators.marketo.clock import Clock


class CrmStore:
    def __init__(self, clock: Clock, custom_objects: Any = None) -> None:
        self.clock = clock
