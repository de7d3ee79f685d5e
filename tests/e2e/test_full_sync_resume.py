"""A full sync killed mid-job (SIGKILL, as a crashed or recycled host would be) resumes from its checkpoint."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sync.engine.fullsync import view_job
from tests.e2e.test_full_sync import emails_of_leads, one_person_each
from tests.e2e.world import World

REPO = Path(__file__).resolve().parents[2]


def sync_process(world: World, *args: str) -> subprocess.Popen[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DYNAMICS_PAGE_SIZE": "4"}
    command = [sys.executable, "-m", "sync", "--env-file", str(world.env_file), *args]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_job_resumes_from_its_checkpoint_with_exactly_one_person_each(world: World) -> None:
    world.emulators.control("dataverse", "POST", "/seed", json={"table": "lead", "count": 40, "fast": True})
    world.upstream("lead")
    world.emulators.control("dataverse", "POST", "/faults", json={"latency_ms": 60})  # pages take a moment
    kill_after = random.randint(2, 6)  # pages: a different page each run
    first = sync_process(world, "full", "--entity", "lead", "--direction", "to_marketo")
    deadline = time.monotonic() + 90
    job_id = None
    while time.monotonic() < deadline:
        jobs = world.ctx.state.jobs.list_jobs()
        if jobs:
            job_id = jobs[0].job_id
            view = view_job(world.ctx, job_id)
            if view is not None and view.tasks[0]["pages_done"] >= kill_after:
                break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert job_id is not None
    interrupted = view_job(world.ctx, job_id)
    assert interrupted is not None and interrupted.state == "running", interrupted
    done_before = interrupted.tasks[0]["pages_done"]
    assert kill_after <= done_before < 10

    world.emulators.control("dataverse", "DELETE", "/faults")
    resumed = sync_process(world, "full", "--resume", job_id)
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output
    final = view_job(world.ctx, job_id)
    assert final is not None and final.state == "succeeded"
    assert final.tasks[0]["pages_done"] == 10  # 40 leads, 4 a page: every page checkpointed once
    emails = emails_of_leads(world)
    one_person_each(world, emails)
    assert world.mk_count() == len(emails)
    assert world.ctx.state.links.count("lead") == len(emails)
    assert f"job {job_id}: succeeded" in output
