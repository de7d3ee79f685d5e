"""Staging a full sync's link rows while Marketo imports: the D rows of an import unit's creates, written before
their Marketo ids are known, so that once the ids are proven only the unit maps and the index packs are left to write
(a hundredth of an entity a link each), not a D row a link (links.py, "Staged rows").

To Marketo, the sync spends most of a run waiting: once the pages are planned and the imports sent, Marketo imports,
then exports the new ids, and the link rows could only be written after that, at the storage's pace. Staging moves the
D rows into that wait. It starts once the run's pages are all planned (staging beside the planning would take the
planner's CPU, and so delay the imports), one unit after another, in order.

A unit's commit settles its staging first: if the stager has not begun the unit, it never will, and the commit
writes whole D rows, as without staging; if it is writing, the commit waits for it; if its writes failed, whole rows
again. A staged D row is no link until the unit map holds its Marketo id, so a crash, a failed import or a row the
import rejected leaves a row that reads as absent, and the next attempt writes it whole.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Literal

from sync.state.links import Link, LinkStore, Staged

if TYPE_CHECKING:
    from sync.engine.execute import PairWork

log = logging.getLogger(__name__)
STAGE_ROWS = 2500  # D rows built and written at a time: transactions of up to 100 per bucket, in little memory

STAGED = ""  # a staged create's snapshot once its D row holds it (not None: the commit still links it)

State = Literal["todo", "staging", "staged", "skipped"]


class UnitStaging:
    """The staging of one import unit's creates. Thread-safe: the stager claims it, the committer settles it."""

    def __init__(self) -> None:
        self.unit = uuid.uuid4().hex[:16]
        self.slots: dict[str, int] = {}  # Dynamics id -> slot, of the rows staged (filled by the stager)
        self._state: State = "todo"
        self._changed = threading.Condition()

    @property
    def state(self) -> State:
        return self._state

    def claim(self) -> bool:
        """The stager's: whether it may write the unit's rows (no commit settled it first)."""
        with self._changed:
            if self._state != "todo":
                return False
            self._state = "staging"
            return True

    def written(self, ok: bool) -> None:
        with self._changed:
            self._state = "staged" if ok else "skipped"
            self._changed.notify_all()

    def settle(self) -> bool:
        """The commit's: whether the unit's rows are staged (waiting while they are written); a unit not begun is
        never staged after this."""
        with self._changed:
            if self._state == "todo":
                self._state = "skipped"
            while self._state == "staging":
                self._changed.wait()
            return self._state == "staged"


def stageable(work: PairWork) -> bool:
    """A create whose D row can wait for its Marketo id: a new pair with its snapshot, replacing no link."""
    plan = work.plan
    return (
        work.ok
        and plan.create_marketo is not None
        and bool(plan.dynamics_id)
        and plan.marketo_id is None
        and plan.snapshot_json is not None
        and not plan.remove_links
    )


def mark(works: Sequence[PairWork], staging: UnitStaging) -> None:
    """Tie each create of a unit to its staging (a reference a work, no more: the run's memory peaks here); only
    these may be staged."""
    for work in works:
        if stageable(work):
            work.stage = staging


def stage_unit(links: LinkStore, entity: str, works: Sequence[PairWork], staging: UnitStaging, now: datetime) -> None:
    """Write the D rows of a unit's creates, if no commit settled it first."""
    if not staging.claim():
        return
    ok = False
    try:
        members = [(slot, work) for slot, work in enumerate(works) if work.stage is staging and work.ok]
        rows = (
            (
                Link.model_construct(  # our own values, as the commit's
                    entity=entity,
                    dynamics_id=work.plan.dynamics_id or "",
                    marketo_id="",
                    snapshot={},
                    snapshot_json=work.plan.snapshot_json,
                    synced_at=now,
                ),
                Staged(staging.unit, slot),
            )
            for slot, work in members
        )
        while chunk := list(islice(rows, STAGE_ROWS)):
            links.stage(chunk)
        for slot, work in members:  # written: the commit needs no snapshot of these (a third of a page's memory)
            staging.slots[work.plan.dynamics_id or ""] = slot
            work.plan.snapshot_json = STAGED
        ok = True
    except Exception:  # the unit's links are then written whole, by its commit
        log.warning("staging import unit %s's link rows failed: they are written whole", staging.unit, exc_info=True)
    finally:
        staging.written(ok)


def staged_slots(works: Iterable[PairWork]) -> dict[str, Staged]:
    """Dynamics id -> slot, for the works whose D row is staged (each unit settled once)."""
    settled: dict[int, bool] = {}
    slots: dict[str, Staged] = {}
    for work in works:
        staging, dynamics_id = work.stage, work.plan.dynamics_id
        if staging is None or not dynamics_id:
            continue
        if id(staging) not in settled:
            settled[id(staging)] = staging.settle()
        slot = staging.slots.get(dynamics_id) if settled[id(staging)] else None
        if slot is not None:
            slots[dynamics_id] = Staged(staging.unit, slot)
    return slots
