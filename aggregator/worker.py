"""Member content is read in worker processes, each read on a budget (rule 10).

    parse(read, url=..., limits=..., what="the feed")
        -> a worker process (one per core) runs read() with
           limits.parse_seconds of CPU time and limits.parse_memory MB of memory
        -> its result, or ParseError in words a member can act on

Regular expressions and recurrence expansion hold the GIL, so a thread would not do: the
server's /healthz would stall for the whole read. The event loop only schedules. A worker
that goes over its budget is stopped where it is (a CPU timer for Python code, the kernel's
CPU limit for a loop inside C, a wall-clock limit as the last resort) and replaced; the
next read gets a fresh one. Nothing here knows about feeds: `read` is any picklable callable
(a module-level function, or functools.partial of one).

Like every multiprocessing pool, a new worker imports the program's `__main__` module: a
script that reads feeds keeps its own work under `if __name__ == "__main__":`.

The workers end before the program does (at exit, or when asked: `shutdown`), and none
starts while they are being stopped: see `_stop_pool` for why pebble's own stop is not
enough.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import pebble

from aggregator.errors import ParseError
from aggregator.model import Limits
from aggregator.problems import Problem, problem

__all__ = ["parse", "parse_check", "shutdown"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: modules the worker processes have loaded before they fork: a new worker starts warm
_PRELOAD = ["aggregator.parse", "aggregator.parse.feeds", "aggregator.parse.pages"]
#: a worker is replaced after this many reads, so no memory it kept grows without end
_TASKS_PER_WORKER = 500
_MB = 1024 * 1024
#: how much lower than the server a worker runs (nice(2)); the server's answers come first
_NICENESS = 10


class _OverBudget(BaseException):  # noqa: N818  (raised in a worker, turned into words here)
    """The budget ran out. A BaseException, like KeyboardInterrupt: a reader's own
    `except Exception` (a series skipped, a page skipped) must not swallow it and read on
    without a budget."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Unreadable(Exception):  # noqa: N818
    """An unexpected error of a reader, in words: whatever a library raised goes back as
    text, never as an object that may not unpickle (which would break the pool for every
    other read in flight)."""


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _memory_in_use() -> int:
    """The process's address space now, in bytes (what RLIMIT_AS counts)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _over_cpu(_signum, _frame) -> None:
    raise _OverBudget("cpu")


def _set_soft(limit: int, value: int) -> None:
    _soft, hard = resource.getrlimit(limit)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(limit, (value, hard))


def _reset_soft(limit: int) -> None:
    _soft, hard = resource.getrlimit(limit)
    resource.setrlimit(limit, (hard, hard))


def _run(read: Callable[[], T], seconds: float, memory_mb: int) -> T:
    """In a worker: read() within the budget, then the limits back as they were."""
    used = _cpu_seconds()
    in_use = _memory_in_use()
    signal.signal(signal.SIGPROF, _over_cpu)
    try:
        if in_use:
            _set_soft(resource.RLIMIT_AS, in_use + memory_mb * _MB)
        # the kernel's limit stops a loop inside C code, which the timer's signal cannot
        # interrupt (SIGXCPU ends the worker; a new one takes its place)
        _set_soft(resource.RLIMIT_CPU, math.ceil(used + seconds) + 2)
        signal.setitimer(signal.ITIMER_PROF, seconds)
        try:
            return read()
        except MemoryError:
            raise _OverBudget("memory") from None
        except ParseError:
            raise
        except Exception as e:  # noqa: BLE001  (a reader's bug costs this read, in words)
            text = str(e).strip()
            raise _Unreadable(
                f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__
            ) from None
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    finally:
        _reset_soft(resource.RLIMIT_AS)
        _reset_soft(resource.RLIMIT_CPU)


def _start_worker() -> None:
    # the parent handles Ctrl-C and SIGTERM; a worker only stops when told
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # reading feeds is background work: on a small machine the server answers first
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)


class Workers:
    """A pool of worker processes, started on the first read."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes or max(2, os.cpu_count() or 2)
        self._pool: pebble.ProcessPool | None = None
        #: held while a read is handed to the pool and while the pool starts or stops:
        #: no worker starts while the pool stops
        self._lock = threading.Lock()
        #: closed for good (the program exits): a read after it starts no worker
        self._final = False
        #: the reads handed to the pool and not done: a stop ends them (pebble's leaves
        #: them waiting for ever)
        self._pending: set[Future] = set()

    def _started(self) -> pebble.ProcessPool:
        """The pool, started if it is not (with self._lock held)."""
        if self._final:
            raise BrokenProcessPool("the worker processes were shut down: the program exits")
        if self._pool is None or not self._pool.active:
            if self._pool is not None:  # broken (a worker died between reads): its
                self._stop()  # workers end before a new pool's start
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._pool = pebble.ProcessPool(
                max_workers=self.processes,
                max_tasks=_TASKS_PER_WORKER,
                initializer=_start_worker,
                context=context,
            )
        return self._pool

    async def parse(
        self, read: Callable[[], T], *, url: str, limits: Limits, what: str = "the feed"
    ) -> T:
        """read() in a worker within limits.parse_seconds and limits.parse_memory.

        Raises ParseError (what read raised, or the budget's words); other errors read
        raises come back as they are.
        """
        seconds, memory = limits.parse_seconds, limits.parse_memory
        try:
            # in a thread: the first read starts the pool, and a read after a worker was
            # stopped starts its replacement; both wait on the fork server
            future = await asyncio.to_thread(self._schedule, read, seconds, memory)
        except BrokenProcessPool:  # shut down for good: the program exits
            raise ParseError(url, _over_budget("died", what, seconds, memory)) from None
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # pebble ends the worker that runs it
            raise
        except _OverBudget as e:
            raise ParseError(url, _over_budget(e.kind, what, seconds, memory)) from None
        except (FutureTimeout, FutureCancelled):
            raise ParseError(url, _over_budget("cpu", what, seconds, memory)) from None
        except pebble.ProcessExpired as e:
            kind = "cpu" if e.exitcode in (-signal.SIGXCPU, -signal.SIGKILL) else "died"
            raise ParseError(url, _over_budget(kind, what, seconds, memory)) from None
        except BrokenProcessPool:
            raise ParseError(url, _over_budget("died", what, seconds, memory)) from None
        except _Unreadable as e:
            log.error("reading %s of %s failed: %s", what, url, e)
            raise ParseError(url, problem("reader-failed", what=what, error=e)) from None
        except MemoryError:  # the result was too large to send back
            raise ParseError(url, _over_budget("memory", what, seconds, memory)) from None

    def _schedule(self, read: Callable[[], T], seconds: float, memory: int) -> Future:
        with self._lock:
            # the wall clock is the last resort, for a worker that neither computes nor
            # returns
            future = self._started().schedule(
                _run, args=(read, seconds, memory), timeout=seconds * 3 + 30
            )
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def close(self, *, final: bool = False) -> None:
        """Stop the worker processes and wait for them to end; the next read starts new
        ones, unless `final` (the program exits)."""
        with self._lock:
            self._final = self._final or final
            self._stop()

    def _stop(self) -> None:
        """Stop the pool (with self._lock held); the reads it had not done end as if their
        worker had died."""
        if self._pool is not None:
            _stop_pool(self._pool)
            self._pool = None
        for future in list(self._pending):
            with contextlib.suppress(InvalidStateError):  # done meanwhile
                future.set_exception(BrokenProcessPool("the worker processes were stopped"))


def _stop_pool(pool: pebble.ProcessPool) -> None:
    """Stop the pool: first its manager (which starts a worker in place of one that ended),
    then every worker, waited for, and only then the channels to them.

    pebble's own stop (pool.stop(); pool.join()) closes the channels first, and closing
    one unlinks the named semaphores of its locks (pebble.pool.channel ChannelMutex.unlink).
    A worker still starting, unpickling those locks in its fork of the fork server, then
    fails (SemLock._rebuild: FileNotFoundError) and prints a traceback to the program's
    stderr: about one `aggregator refresh` in 60 ended so, because the refresh was done
    before its second worker had started. The workers are reached through pebble 5's
    internals, checked here: without them, pebble's own stop (tests/test_worker_shutdown.py
    fails then)."""
    pool.stop()  # its loops end at their next turn; the manager's may start one worker more
    manager_loop = getattr(pool, "_pool_manager_loop", None)
    workers = getattr(getattr(pool, "_pool_manager", None), "worker_manager", None)
    if manager_loop is not None and hasattr(workers, "force_stop_workers"):
        manager_loop.join()  # no worker starts after this
        workers.force_stop_workers()  # SIGTERM, then SIGKILL after 3 s; each waited for
    pool.join()


def _over_budget(kind: str, what: str, seconds: float, memory: int) -> Problem:
    """Why a read was stopped: over its memory or its CPU time, or its worker died."""
    if kind == "memory":
        return problem("over-memory", what=what, memory=memory)
    if kind == "cpu":
        return problem("over-time", what=what, seconds=f"{seconds:g}")
    return problem("reader-died", what=what)


_workers = Workers()
#: feeds a stranger sends to /check (and `aggregator check`) are read in a pool of their own:
#: a queue of hostile checks never holds up the network's refreshes
_check_workers = Workers(processes=1)


async def parse(read: Callable[[], T], *, url: str, limits: Limits, what: str = "the feed") -> T:
    """read() in the shared pool of worker processes; see Workers.parse."""
    return await _workers.parse(read, url=url, limits=limits, what=what)


async def parse_check(
    read: Callable[[], T], *, url: str, limits: Limits, what: str = "the feed"
) -> T:
    """read() for a check, in the checks' own worker process; see Workers.parse."""
    return await _check_workers.parse(read, url=url, limits=limits, what=what)


def shutdown(*, final: bool = False) -> None:
    """Stop the worker processes and wait for them to end (when a test wants a clean
    slate; `final` at exit, after which no read starts a worker again)."""
    _workers.close(final=final)
    _check_workers.close(final=final)


# before multiprocessing's own exit handler (registered earlier, so run later), which
# unlinks the semaphores a worker still starting would need
atexit.register(shutdown, final=True)
