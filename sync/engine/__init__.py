"""The sync engine: merge and plan (pure), the incremental cycle and the full sync (orchestration)."""
