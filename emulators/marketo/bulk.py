"""Bulk jobs (placeholder until the full implementation lands)."""

from __future__ import annotations

from typing import Any


class BulkJobs:
    def __init__(self, state: Any) -> None:
        self.state = state

    def tick(self) -> None:
        pass
