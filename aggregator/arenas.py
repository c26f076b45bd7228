"""Fewer malloc arenas: the memory a long-running process keeps after its big renders.

glibc gives each thread that allocates its own arena (up to 8 per core), and an arena
hands little back to the system: the renders and writes that run in asyncio.to_thread's
threads leave their freed megabytes in arenas of their own. `serve` at 200 members held
212 MB after bench/serve.py's 10,000 mixed requests with glibc's default, 186 MB with two
arenas (MALLOC_ARENA_MAX=2), at the same speed. Called first thing, before any thread
runs; an operator's own MALLOC_ARENA_MAX wins, and other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: arenas of the whole process: the main one and one shared by every thread
ARENAS = 2
#: mallopt's parameter number of M_ARENA_MAX (glibc's malloc.h)
_M_ARENA_MAX = -8


def fewer_arenas(arenas: int = ARENAS) -> bool:
    """Limit glibc's malloc to `arenas` arenas; whether it was done (not glibc, or
    MALLOC_ARENA_MAX set in the environment: not)."""
    if "MALLOC_ARENA_MAX" in os.environ or not _glibc():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_ARENA_MAX, arenas) == 1


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a name here, or no confstr at all
        return False
