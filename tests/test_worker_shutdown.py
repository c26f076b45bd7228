"""worker.py: the worker processes end before the program does, and none starts while they
are being stopped (issue 25: about one `aggregator refresh` in 60 ended with a traceback of
a worker, `SemLock._rebuild ... FileNotFoundError`).

A worker that is still starting when the pool stops, unpickling the locks of its channel in
its fork of the fork server, found their named semaphores unlinked already: pebble's stop
closes the channels (which unlinks them) before it stops the workers. A refresh of a few
small feeds is done before its second worker has started, so the stop met one now and then;
a pool of many workers closed right after its first read meets one almost every time. The
programs run as real processes: the traceback goes to the stderr that the fork server was
started with, which only a process of its own shows whole."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial

import pytest

from aggregator.errors import ParseError
from aggregator.model import Limits
from aggregator.worker import Workers
from tests.conftest import ROOT

#: what the programs share: the workers still alive, and a read
PRELUDE = r"""
import asyncio, multiprocessing, sys
from functools import partial

# A worker imports the program's main module again before it unpickles its channel: the
# `aggregator` command's imports (SQLAlchemy, aiohttp, ...) are what keep a worker starting
# for most of a second, and so do these.
import aggregator.cli  # noqa: F401
from aggregator.errors import ParseError
from aggregator.model import Limits
from aggregator.worker import Workers

def alive():
    return [p.pid for p in multiprocessing.active_children() if p.name == "pebble_pool_worker"]

def read(workers, i=3):
    return workers.parse(partial(len, "x" * i), url=f"u{i}", limits=Limits())
"""

CLOSE_AFTER_THE_FIRST_READ = r"""
async def once():
    workers = Workers(processes=6)  # some still starting when the first read is done
    assert await read(workers) == 3
    workers.close()
    assert not alive(), alive()

if __name__ == "__main__":
    for _ in range(5):
        asyncio.run(once())
    print("closed cleanly")
"""

CLOSE_WHILE_READS_ARE_HANDED_OVER = r"""
async def once():
    workers = Workers(processes=6)
    reads = [asyncio.ensure_future(read(workers, i)) for i in range(30)]
    # the close races the reads: some handed to the pool before it, some after (to a new one)
    closing = asyncio.to_thread(workers.close)
    *ended, _ = await asyncio.gather(*reads, closing, return_exceptions=True)
    assert all(r == i or isinstance(r, ParseError) for i, r in enumerate(ended)), ended
    workers.close(final=True)
    assert not alive(), alive()
    try:
        await read(workers)
    except ParseError:
        pass
    else:
        raise AssertionError("a read after the final close was done")
    assert not alive(), alive()

if __name__ == "__main__":
    for _ in range(5):
        asyncio.run(once())
    print("closed cleanly")
"""


def run_program(tmp_path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "program.py"
    script.write_text(PRELUDE + body, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's aggregator
    )


@pytest.mark.parametrize(
    "body",
    [CLOSE_AFTER_THE_FIRST_READ, CLOSE_WHILE_READS_ARE_HANDED_OVER],
    ids=["close-after-the-first-read", "close-while-reads-are-handed-over"],
)
def test_closing_the_workers_leaves_none_and_prints_no_traceback(tmp_path, body):
    done = run_program(tmp_path, body)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed cleanly"
    assert "Traceback" not in done.stderr and "FileNotFoundError" not in done.stderr, done.stderr
    assert "leaked semaphore" not in done.stderr, done.stderr


EXIT_AFTER_THE_FIRST_READ = r"""
import aggregator.worker

async def main():
    assert await aggregator.worker.parse(partial(len, "abc"), url="u", limits=Limits()) == 3

if __name__ == "__main__":
    aggregator.worker._workers = Workers(processes=8)  # the shared pool, made larger
    asyncio.run(main())  # and exit at once: at exit, the workers still starting are stopped
"""


def test_a_program_that_exits_as_its_workers_start_prints_no_traceback(tmp_path):
    for _ in range(4):
        done = run_program(tmp_path, EXIT_AFTER_THE_FIRST_READ)

        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr


async def test_a_read_after_the_final_close_starts_no_worker():
    workers = Workers(processes=2)
    assert await workers.parse(partial(len, "ab"), url="u", limits=Limits()) == 2
    workers.close(final=True)

    with pytest.raises(ParseError, match="stopped the reader"):
        await workers.parse(partial(len, "ab"), url="u", limits=Limits())
    assert workers._pool is None


async def test_a_read_after_a_close_starts_new_workers():
    workers = Workers(processes=2)
    try:
        assert await workers.parse(partial(len, "ab"), url="u", limits=Limits()) == 2
        workers.close()
        assert await workers.parse(partial(len, "abc"), url="u", limits=Limits()) == 3
    finally:
        workers.close()
