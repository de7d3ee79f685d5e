"""`python -m sync demo`: the whole product on embedded defaults, for a first look.

Starts Azurite, prepares the sync state, and shows what the sync would report. Local development only: it imports
the emulators package, which is never deployed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from sync.state import TABLE_KINDS, StateStore
from sync.state.tables import service_client
from sync.status import collect_status


def run_demo(console: Console, workdir: Path | None = None) -> int:
    from emulators.azurite import Azurite

    workdir = workdir or Path(tempfile.mkdtemp(prefix="sync-demo-"))
    console.print("[bold]1.[/] Starting Azurite (in memory, telemetry off) ...")
    with Azurite() as azurite:
        console.print(f"   table endpoint on port {azurite.ports['table']}")
        state = StateStore(service_client(azurite.connection_string), prefix="demo")
        console.print("[bold]2.[/] Created the sync state tables: " + ", ".join(f"demo{k}" for k in TABLE_KINDS))
        report = collect_status(state)
        console.print("[bold]3.[/] Status of a fresh install:")
        for entity in report.entities:
            console.print(f"   {entity.entity}: {len(entity.last_runs)} runs, {entity.error_count} record errors")
    console.print("Azurite stopped; nothing was written outside memory.")
    return 0
