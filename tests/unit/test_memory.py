"""The malloc arena cap: glibc's arenas counted in a process of its own, with and without it."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sync import memory

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import ctypes, sys, threading
from sync.memory import cap_malloc_arenas
if sys.argv[1] == "cap":
    assert cap_malloc_arenas()
start = threading.Barrier(8)
def allocate():
    start.wait()
    for _ in range(200):
        blocks = [bytearray(4096) for _ in range(100)]  # above pymalloc's 512 bytes: glibc's malloc
        del blocks
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018 (present only in glibc)
    except AttributeError:
        return False
    return True


@pytest.mark.skipif(not glibc(), reason="malloc arenas are glibc's")
def test_eight_threads_allocating_at_once_share_two_arenas_when_capped() -> None:
    assert arenas("none") > 2  # the default: an arena per thread that met a busy one (up to 8 per core)
    assert arenas("cap") <= memory.ARENAS


def test_the_operators_own_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    called: list[object] = []
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: called.append(name))
    assert memory.cap_malloc_arenas() is False and called == []


def test_off_glibc_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)

    class NoMallopt:
        def __init__(self, name: object) -> None:
            pass

    monkeypatch.setattr(memory.ctypes, "CDLL", NoMallopt)
    assert memory.cap_malloc_arenas() is False
