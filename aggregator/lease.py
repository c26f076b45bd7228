"""Which process fetches: a `Candidate` runs the scheduler while its process holds the
scheduler's lease (store/lease.py: the database's own lock), and stops it when the lease is
lost. Every process that may fetch is a candidate; one leads at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aggregator.store.lease import Lease

log = logging.getLogger(__name__)


class Candidate:
    """Runs `start`ed work (the scheduler) while this process holds the lease: asks for it
    every third of the lease, confirms it as often once held, and stops the work when it
    is lost (or the candidate is stopped). `start` gives back how to stop the work."""

    def __init__(
        self,
        lease: Lease,
        lease_seconds: float,
        start: Callable[[], Awaitable[Callable[[], Awaitable[None]]]],
    ) -> None:
        self.lease = lease
        self.every = lease_seconds / 3
        self.start = start
        self._stop_work: Callable[[], Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        """This process holds the lease and runs the work."""
        return self._stop_work is not None

    async def try_lead(self) -> bool:
        """Ask for the lease once; when it is ours, start the work. Whether this leads."""
        if self.leading or not await self.lease.acquire():
            return self.leading
        log.info("this process holds the scheduler's lease: it fetches")
        try:
            self._stop_work = await self.start()
        except Exception:
            log.exception("the scheduler could not start; its lease is let go")
            await self.lease.release()
        return self.leading

    def run(self) -> None:
        """Lead from now on whenever the lease is free (in the background)."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            if not self.leading:
                await self.try_lead()
            elif not await self.lease.held():
                log.warning("the scheduler's lease was lost: fetching stops here")
                await self._step_down()

    async def _step_down(self) -> None:
        stop, self._stop_work = self._stop_work, None
        try:
            if stop is not None:
                await stop()
        finally:
            await self.lease.release()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._step_down()
