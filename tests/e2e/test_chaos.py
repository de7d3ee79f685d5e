"""The chaos suite's short version (bench/chaos.py): edits on both sides, faulted runs, a SIGKILL, then zero in
every count."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.e2e.world import World

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def load_chaos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos", CHAOS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_chaos_ends_with_nothing_lost_duplicated_or_stuck(world: World) -> None:
    chaos_module = load_chaos()
    chaos = chaos_module.Chaos(world, records=30, rounds=4, fault_rate=0.05, kill_rate=0.5, seed=13)
    counts = chaos.run()
    print(chaos_module.report(chaos, counts, 0))
    figures = chaos.figures
    assert (figures.rounds, figures.runs) == (4, 4) and figures.edits > 0 and figures.kills >= 1
    assert sum(figures.faults.values()) > 0 and figures.linked_at_start == 60  # 30 a side
    assert counts.total == 0, "\n".join(counts.details)
