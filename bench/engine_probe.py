"""Per-phase timers around the engine's steps, for bench_incremental.py (the engine itself is not edited).

`install()` wraps methods of the engine, the state store and both connectors in place: each wrapped call adds its
inclusive wall time and a count to a shared table. Calls made from worker threads add up across threads (their sum
can exceed the wall time of the phase that ran them). Methods that return iterators are timed per `next()`, so the
consumer's work in between is not charged to them.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Phase:
    calls: int = 0
    seconds: float = 0.0


@dataclass
class Probe:
    phases: dict[str, Phase] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _undo: list[tuple[Any, str, Any]] = field(default_factory=list)

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            phase = self.phases.setdefault(name, Phase())
            phase.calls += 1
            phase.seconds += seconds

    def reset(self) -> None:
        with self.lock:
            self.phases.clear()

    def snapshot(self) -> dict[str, Phase]:
        with self.lock:
            return {name: Phase(p.calls, p.seconds) for name, p in self.phases.items()}

    def wrap(self, owner: Any, attribute: str, label: str | None = None) -> None:
        original = inspect.getattr_static(owner, attribute)
        function = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original
        name = label or f"{getattr(owner, '__name__', owner)}.{attribute}"
        probe = self

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            finally:
                probe.add(name, time.perf_counter() - started)
            if isinstance(result, Iterator) and not isinstance(result, (list, dict, str)):
                return probe._timed_iterator(name + " [pages]", result)
            return result

        wrapped: Any = timed
        if isinstance(original, staticmethod):
            wrapped = staticmethod(timed)
        elif isinstance(original, classmethod):
            wrapped = classmethod(timed)
        setattr(owner, attribute, wrapped)
        self._undo.append((owner, attribute, original))

    def _timed_iterator(self, name: str, inner: Iterator[Any]) -> Iterator[Any]:
        while True:
            started = time.perf_counter()
            try:
                item = next(inner)
            except StopIteration:
                self.add(name, time.perf_counter() - started)
                return
            self.add(name, time.perf_counter() - started)
            yield item

    def uninstall(self) -> None:
        for owner, attribute, original in reversed(self._undo):
            setattr(owner, attribute, original)
        self._undo.clear()


# What is timed, in the order the report lists it. (owner module path, class or None, attribute, label)
TARGETS: list[tuple[str, str | None, str, str]] = [
    ("sync.engine.cycle", "IncrementalCycle", "run", "cycle.run (total)"),
    ("sync.engine.cycle", None, "read_marketo_changes", "  marketo: read lead changes + deletes"),
    ("sync.connectors.marketo.client", "MarketoClient", "lead_changes", "    MarketoClient.lead_changes"),
    ("sync.connectors.marketo.client", "MarketoClient", "deleted_leads", "    MarketoClient.deleted_leads"),
    ("sync.connectors.dynamics.client", "DataverseClient", "read_changes", "  dynamics: read_changes"),
    ("sync.engine.pairs", "PairBuilder", "dynamics_batch", "  pairs for Dynamics pages (dynamics_batch)"),
    ("sync.engine.pairs", "PairBuilder", "marketo_batch", "  pairs for Marketo changes (marketo_batch)"),
    ("sync.engine.pairs", "PairBuilder", "links_by_dynamics_id", "    link lookups by Dynamics id, wall"),
    ("sync.engine.pairs", "PairBuilder", "links_by_marketo_id", "    link lookups by Marketo id, wall"),
    ("sync.engine.pairs", "PairBuilder", "_linked_anywhere", "    persons linked by any entity"),
    ("sync.engine.pairs", "PairBuilder", "fetch_persons", "    Marketo get_leads by id (fetch_persons)"),
    ("sync.engine.pairs", "PairBuilder", "fetch_dynamics", "    Dataverse get_by_ids (fetch_dynamics)"),
    ("sync.engine.pair_matching", "PairMatcher", "match_dynamics", "    match unlinked Dynamics records"),
    ("sync.engine.pair_matching", "PairMatcher", "match_marketo", "    match unlinked Marketo persons"),
    ("sync.engine.pairs", "PairBuilder", "_plan", "    plan_pair for every pair (_plan)"),
    ("sync.engine.pairs", "PairBuilder", "run_batch", "  execute + commit (run_batch)"),
    ("sync.engine.execute", "Executor", "_create_dynamics", "    Dataverse creates"),
    ("sync.engine.execute", "Executor", "_write_marketo", "    Marketo writes (sync_leads)"),
    ("sync.engine.execute", "Executor", "_update_dynamics", "    Dataverse updates (UpdateMultiple)"),
    ("sync.engine.execute", "Executor", "_deletes", "    deletes"),
    ("sync.engine.execute", "Executor", "commit", "    commit links/snapshots/errors"),
    ("sync.state.links", "LinkStore", "save", "      LinkStore.save"),
    ("sync.engine.cycle", "IncrementalCycle", "_advance", "  watermark advances"),
    ("sync.state.errors", "RecordErrorStore", "list", "  record errors listed"),
    ("sync.connectors.marketo.client", "MarketoClient", "get_leads", "MarketoClient.get_leads (anywhere)"),
    ("sync.connectors.marketo.client", "MarketoClient", "sync_leads", "MarketoClient.sync_leads (anywhere)"),
    ("sync.connectors.dynamics.client", "DataverseClient", "update_multiple", "DataverseClient.update_multiple"),
    ("sync.connectors.dynamics.client", "DataverseClient", "get_by_ids", "DataverseClient.get_by_ids"),
    ("sync.connectors.dynamics.client", "DataverseClient", "find_by_any", "DataverseClient.find_by_any (lookups)"),
]


def install(targets: list[tuple[str, str | None, str, str]] | None = None) -> Probe:
    """A probe timing every target (TARGETS by default)."""
    import importlib

    probe = Probe()
    for module_name, class_name, attribute, label in targets if targets is not None else TARGETS:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        probe.wrap(owner, attribute, label)
    return probe


def phase_lines(
    phases: dict[str, Phase], wall: float, targets: list[tuple[str, str | None, str, str]] | None = None
) -> list[str]:
    """One line per timed target that ran (in `targets` order, TARGETS by default): calls, seconds, share of wall."""
    lines = []
    for _, _, _, label in targets if targets is not None else TARGETS:
        for name in (label, label + " [pages]"):
            phase = phases.get(name)
            if phase is None or phase.calls == 0:
                continue
            share = 100 * phase.seconds / wall if wall else 0.0
            lines.append(f"  {name:<60} {phase.calls:>7,} calls {phase.seconds:>8.2f} s  {share:5.1f}% of wall")
    return lines


def call_timer(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started
