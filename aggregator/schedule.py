"""When sources are fetched: one tick asks the store what is due, never two fetches of one
source at once, a publish after each update.

    every TICK:   due = store.due_sources(now)
                  the never fetched first (in the order of sources.yaml), then the longest
                  waiting; at most starts_per_tick of them (not those being read), spread
                  over the tick (STAGGER apart at most):
                      each: its lock; store.source_for_update; still due? refresh_source;
                      updated? publish (one publish covers the updates made before it)
    every day:    store.prune_history

When a source is due is decided in one place (decide.py: its interval, backoff, Retry-After,
410 Gone) and kept in the store (next_check_at), so it survives a restart. How many start
per tick follows the network: STARTS_PER_TICK, or more when its sources come due faster
than that (1,000 sources every 5 minutes are 34 a tick), so that every source starts within
its interval. A restart after a long stop finds every source due, as a fresh start does:
they start a few a second, the whole network within (HEADROOM of) its shortest interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aggregator.decide import is_due
from aggregator.errors import Deposed
from aggregator.fetch import Fetcher
from aggregator.model import FetchOutcome, Settings
from aggregator.publish import publish
from aggregator.refresh import refresh_source
from aggregator.store import Store

log = logging.getLogger(__name__)

#: how often the store is asked what is due: a source is fetched at most this late
TICK = timedelta(seconds=10)
#: sources started per tick at least (when that many are due), so a restart does not fetch
#: everything at once
STARTS_PER_TICK = 20
#: between the starts of one tick's sources at most: two a second, the tick's twenty in its
#: ten seconds; more starts in a tick come closer together, spread over the tick
STAGGER = timedelta(seconds=0.5)
#: starts per tick beyond the rate at which sources come due: a backlog (a restart finds
#: every source due) is read within 1 / HEADROOM of the interval, and a late one catches up
HEADROOM = 1.25


def starts_per_tick(settings: Settings) -> int:
    """How many due sources a tick starts: as many as come due per tick (each source once per
    interval), with HEADROOM, and never fewer than STARTS_PER_TICK."""
    default = settings.network.refresh_interval
    # a source comes due at most once a tick, however short its interval
    per_tick = sum(TICK / max(s.refresh_interval or default, TICK) for s in settings.sources)
    return max(STARTS_PER_TICK, math.ceil(per_tick * HEADROOM))


class Scheduler:
    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        settings: Settings,
        clock: Callable[[], datetime],
        on_published: Callable[[], None],
        *,
        stagger: timedelta = STAGGER,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.settings = settings
        self.clock = clock
        self.on_published = on_published
        self.stagger = stagger
        self.starts_per_tick = starts_per_tick(settings)
        self._locks = {source.id: asyncio.Lock() for source in settings.sources}
        #: a source's place in sources.yaml: the never fetched are fetched in that order
        self._places = {source.id: n for n, source in enumerate(settings.sources)}
        self._publish_lock = asyncio.Lock()
        #: an update was written that no publish started since has read
        self._publish_owed = False
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        #: rounds started by a tick and not finished
        self._rounds: set[asyncio.Task] = set()
        #: sources whose cycle could not even be recorded (the store failing): not started
        #: again before this, as if the attempt had been written, so a member's server is
        #: not asked every tick while the database is down
        self._not_before: dict[str, datetime] = {}
        self._stopping = False

    async def start(self) -> None:
        """Sync the configured sources with the store, then tick from now on."""
        now = self.clock()
        await self.store.sync_sources(
            self.settings.sources, now=now, allow_removals=self.settings.allow_removals
        )
        self._scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=TICK.total_seconds()),
            id="tick",
            name="start the sources that are due",
            max_instances=1,
            coalesce=True,
            next_run_time=now,
            misfire_grace_time=None,
        )
        self._scheduler.add_job(
            self.prune, IntervalTrigger(hours=24), id="prune-history", next_run_time=now
        )
        self._scheduler.start()

    async def prune(self) -> None:
        try:
            await self.store.prune_history(
                self.clock(), removed_source_days=self.settings.limits.removed_source_days
            )
        except Deposed as error:
            self._deposed(error)

    def _deposed(self, error: Deposed) -> None:
        """A write was refused: another process holds the scheduler's lease. Said once, and
        no more fetching here (lease.Candidate stops this scheduler at its next look)."""
        if not self._stopping:
            log.warning("the scheduler stops: %s", error)
            self.shutdown()

    def shutdown(self) -> None:
        """Stop ticking; rounds under way are cancelled (a cancelled cycle writes nothing)."""
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in self._rounds:
            task.cancel()

    async def stop(self) -> None:
        """shutdown, and wait until the cancelled rounds have ended: only then may the
        fetcher and the store close under them."""
        self.shutdown()
        await asyncio.gather(*self._rounds, return_exceptions=True)

    async def tick(self) -> list[str]:
        """Start a round of the sources that are due, at most starts_per_tick, leaving out
        those being read; it runs on while the next ticks come. The sources started."""
        now = self.clock()
        due = await self.store.due_sources(now)
        if self._stopping:  # stopped while the store answered
            return []
        free = [
            s
            for s in due
            if s.id in self._locks
            and not self._locks[s.id].locked()
            and self._not_before.get(s.id, now) <= now
        ]
        # the never fetched first, then the longest waiting
        free.sort(
            key=lambda s: (s.next_check_at is not None, s.next_check_at or now, self._places[s.id])
        )
        started = [s.id for s in free[: self.starts_per_tick]]
        if started:
            task = asyncio.create_task(self._round(started))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)
        return started

    async def _round(self, source_ids: Sequence[str]) -> None:
        """Run a tick's sources, spread over the tick: each started `stagger` after the one
        before, or closer when more than fit in the tick so."""
        gap = min(self.stagger, TICK / len(source_ids)).total_seconds()

        async def later(index: int, source_id: str) -> None:
            await asyncio.sleep(index * gap)
            await self._run(source_id)

        # one source's failure is logged where it happens; the others go on
        await asyncio.gather(*(later(n, i) for n, i in enumerate(source_ids)))

    async def run_source(self, source_id: str) -> None:
        """Refresh one source if it is due, and publish if it changed."""
        await self.run_sources([source_id])

    async def run_sources(self, source_ids: Sequence[str]) -> None:
        """Refresh these sources at once, each if it is due and published once updated."""
        await asyncio.gather(*(self._run(i) for i in source_ids))

    async def _run(self, source_id: str) -> None:
        if await self._refresh(source_id):
            await self._publish()

    async def _publish(self) -> None:
        """Publish an update now, unless a publish that started after it was written (and
        so read it) has done so meanwhile: updates that wait on one publish share the next."""
        self._publish_owed = True
        async with self._publish_lock:
            if not self._publish_owed:
                return
            self._publish_owed = False
            try:
                changed = await publish(self.store, self.settings, self.clock())
            except Deposed as error:
                self._deposed(error)
                return
            except Exception:  # a bug, or the store failing: owed still, to the next update
                log.exception("publishing failed")
                self._publish_owed = True
                return
            if changed:
                self.on_published()

    async def _refresh(self, source_id: str) -> bool:
        """Refresh one source if it is due; whether it was updated.

        A second call for the same source waits for the first. A source in backoff (failures
        in a row, Retry-After, 410 Gone) is left until the store says it is due.
        """
        source = self.settings.source(source_id)
        async with self._locks[source_id]:
            now = self.clock()
            try:
                current = await self.store.source_for_update(source_id)
                if not is_due(current.state, now):
                    return False
                report = await refresh_source(
                    self.store, self.fetcher, source, self.settings, now, current
                )
            except Deposed as error:
                self._deposed(error)
                return False
            except Exception:  # not even recorded: the store itself failing
                log.exception("refreshing %s failed unexpectedly", source_id)
                interval = source.refresh_interval or self.settings.network.refresh_interval
                self._not_before[source_id] = now + interval
                return False
            self._not_before.pop(source_id, None)
            log.info("%s", report.line())
            return report.outcome is FetchOutcome.UPDATED
