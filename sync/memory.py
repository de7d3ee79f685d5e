"""The process's malloc arenas, capped: glibc gives threads that allocate at once arenas of their own (up to 8 per
core), and memory freed in one stays in it. A full sync's page finishers, link writers and readers are such
threads: a 100k-record message left the worker at 260-280 MiB with the default, at 220 MiB with 2 arenas (and the
next 100k message peaked at 226-245 MiB instead of 284-295 MiB; bench/bench_full_sync.py). The Python code holds
the GIL, so threads seldom contend for an arena; the bench's wall times showed no slowdown.

MALLOC_ARENA_MAX, when set, is glibc's own knob and wins; off glibc (musl, macOS) nothing is done."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)
ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number for the arena cap (malloc.h)


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap the arenas glibc creates from now on; whether it did (False: MALLOC_ARENA_MAX is set, or not glibc)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(_M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %s: %s", arenas, done)
    return done
