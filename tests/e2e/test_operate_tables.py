"""Tables that read at 80 columns and in a log (issue 15 item 7): with no terminal rich assumes 80 columns; the full
sync's progress lines and summary keep every value whole there (no "…")."""

from __future__ import annotations

from sync.engine.fullsync import FullSyncRequest, start_full_sync
from sync.fulljob import run_job_locally
from tests.console import recording_console
from tests.e2e.world import World


def test_full_sync_progress_reads_whole_at_80_columns(world: World) -> None:
    world.upstream("lead")
    world.emulators.control("dataverse", "POST", "/seed", json={"table": "lead", "count": 1200, "fast": True})
    job = start_full_sync(world.ctx, world.queue, FullSyncRequest(entities=["lead"], direction="to_marketo"))
    console, out = recording_console(width=80)
    assert run_job_locally(world.ctx, world.queue, job.job_id, console, visibility_timeout=1) == 0
    text = out()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines()), text
    view = world.ctx.state.jobs.get(job.job_id)
    assert view is not None
    [task] = view[1]
    assert task.counts.read >= 1200
    flat = " ".join(text.split())  # a folded progress line reads on across its line break
    assert f"lead to_marketo succeeded: {task.pages_done} pages, read {task.counts.read}, created" in flat
    assert f"updated {task.counts.updated}, failed {task.counts.failed}" in flat
    assert f"read {task.counts.read}, created {task.counts.created}, updated {task.counts.updated}" in text
