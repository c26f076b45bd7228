"""Which process fetches: a `Candidate` runs the scheduler while its process holds the
scheduler's lease (store/lease.py: the database's own lock), and stops it when the lease is
lost. Every process that may fetch is a candidate; one leads at a time.

A leader that lost its lease and has not noticed yet must not write beside the next: with a
store, the candidate takes a fencing token when it takes the lease (Store.take_fence, before
the work starts, whose first writes are fenced already) and makes it one that never matches
the moment it knows the lease lost or lets go (Store.depose), so the work's writes are
refused (errors.Deposed) from then on, one under way included."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aggregator.errors import Deposed
from aggregator.store.base import DEPOSED, StoreBase
from aggregator.store.lease import Lease

log = logging.getLogger(__name__)


class Candidate:
    """Runs `start`ed work (the scheduler) while this process holds the lease: asks for it
    every third of the lease, confirms it as often once held, and stops the work when it
    is lost (or the candidate is stopped). `start` gives back how to stop the work.

    `store`: the store the work writes with, whose writes carry the token of this lease
    (None: unfenced). The lease tells of a loss between looks (`Lease.on_lost`): the store is
    deposed at once and the work stopped without waiting for the next look."""

    def __init__(
        self,
        lease: Lease,
        lease_seconds: float,
        start: Callable[[], Awaitable[Callable[[], Awaitable[None]]]],
        *,
        store: StoreBase | None = None,
    ) -> None:
        self.lease = lease
        self.every = lease_seconds / 3
        self.start = start
        self.store = store
        self._stop_work: Callable[[], Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None
        #: the lease told it was lost: the loop stops the work now
        self._lost = asyncio.Event()
        lease.on_lost = self._on_lost

    @property
    def leading(self) -> bool:
        """This process holds the lease and runs the work (until the work is stopped: a
        lease told lost stops it at once, and its writes are refused from that moment)."""
        return self._stop_work is not None

    async def try_lead(self) -> bool:
        """Ask for the lease once; when it is ours, take a token and start the work. Whether
        this leads."""
        if self.leading:
            return True
        self._lost.clear()
        if not await self.lease.acquire():
            return False
        log.info("this process holds the scheduler's lease: it fetches")
        try:
            if self.store is not None:
                await self.store.take_fence()
            self._stop_work = await self.start()
        except Deposed as error:  # another took the lease meanwhile: not an error of ours
            log.warning("the scheduler's lease was lost as it started (%s)", error)
            self._depose()
            await self.lease.release()
        except Exception:
            log.exception("the scheduler could not start; its lease is let go")
            self._depose()
            await self.lease.release()
        return self.leading

    def run(self) -> None:
        """Lead from now on whenever the lease is free (in the background)."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            # a third of the lease, or less when told it is lost
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self._lost.wait()
            if self._stop_work is None:
                await self.try_lead()
            elif self._lost.is_set() or self._refused() or not await self.lease.held():
                log.warning("the scheduler's lease was lost: fetching stops here")
                await self._step_down()

    def _on_lost(self) -> None:
        """Told by the lease that it is lost: no write of the work from now on, and the loop
        stops the work at once."""
        self._depose()
        self._lost.set()

    def _depose(self) -> None:
        """The token taken with the lease (if any) matches no more: the work's writes are
        refused from now on, one under way included."""
        if self.store is not None and self.store.fence is not None:
            self.store.depose()

    def _refused(self) -> bool:
        """A write of the work was refused (the lease's epoch moved on): another leads."""
        return self.store is not None and self.store.fence == DEPOSED

    async def _step_down(self) -> None:
        stop, self._stop_work = self._stop_work, None
        self._depose()  # what the work would write as it stops is refused
        try:
            if stop is not None:
                await stop()
        finally:
            await self.lease.release()
            self._lost.clear()  # the next ask a third of the lease later, as the others'

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._step_down()
