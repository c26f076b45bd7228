"""aggregator.arenas: a process of ours keeps at most two malloc arenas, however many
threads allocate; an operator's MALLOC_ARENA_MAX is left to glibc."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from aggregator.arenas import ARENAS, _glibc

pytestmark = pytest.mark.skipif(not _glibc(), reason="glibc's malloc only")

#: 8 threads allocate at once (each keeps its memory until all have), then glibc's
#: malloc_stats() prints an "Arena N:" block per arena to stderr
PROBE = textwrap.dedent(
    """
    import ctypes, sys, threading
    from aggregator.arenas import fewer_arenas
    print(fewer_arenas() if sys.argv[1] == "limit" else None, flush=True)
    all_allocated = threading.Barrier(9)
    release = threading.Event()

    def work():
        kept = [bytearray(50_000) for _ in range(20)]
        all_allocated.wait()
        release.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    all_allocated.wait()
    ctypes.CDLL("libc.so.6").malloc_stats()
    release.set()
    """
)


def arenas(mode: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
        timeout=60,
    )
    count = sum(line.startswith("Arena ") for line in done.stderr.splitlines())
    return done.stdout.strip(), count


def test_threads_share_two_arenas():
    said, default = arenas("none")
    assert (said, min(default, 5)) == ("None", 5)  # glibc's default: an arena a thread
    assert arenas("limit") == ("True", ARENAS)


def test_the_operators_setting_wins():
    assert arenas("limit", MALLOC_ARENA_MAX="4") == ("False", 4)


def test_main_limits_them(monkeypatch):
    calls = []
    monkeypatch.setattr("aggregator.cli.fewer_arenas", lambda: calls.append(1))
    from aggregator.cli import main  # noqa: PLC0415

    with pytest.raises(SystemExit):
        main(["--version"])
    assert calls == [1]
