"""When each source is fetched: one APScheduler job per source, never two runs of one at once.

The store remembers next_check_at per source, so the schedule survives a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aggregator.fetch import Fetcher
from aggregator.model import Settings, Source
from aggregator.refresh import publish, refresh_source
from aggregator.store import Store

log = logging.getLogger(__name__)


def interval_of(source: Source, settings: Settings) -> timedelta:
    return source.refresh_interval or settings.network.refresh_interval


def jitter_of(interval: timedelta) -> int:
    """Up to a tenth of the interval, at most 5 minutes: members' servers see no thundering herd."""
    return int(min(interval.total_seconds() / 10, 300))


class Scheduler:
    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        settings: Settings,
        clock: Callable[[], datetime],
        on_published: Callable[[], None],
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.settings = settings
        self.clock = clock
        self.on_published = on_published
        self._locks = {source.id: asyncio.Lock() for source in settings.sources}
        self._publish_lock = asyncio.Lock()
        self._scheduler = AsyncIOScheduler(timezone="UTC")

    async def start(self) -> None:
        now = self.clock()
        await self.store.sync_sources(
            self.settings.sources, now=now, allow_removals=self.settings.allow_removals
        )
        states = await self.store.source_states()
        for index, source in enumerate(self.settings.sources):
            interval = interval_of(source, self.settings)
            due = states[source.id].next_check_at
            # stagger the first round so a restart does not fetch everything at once
            first = max(due, now) if due else now + timedelta(seconds=index * 0.5)
            self._scheduler.add_job(
                self.run_source,
                IntervalTrigger(seconds=interval.total_seconds(), jitter=jitter_of(interval)),
                args=[source.id],
                id=source.id,
                name=source.name,
                max_instances=1,
                coalesce=True,
                next_run_time=first,
                misfire_grace_time=None,
            )
        self._scheduler.add_job(
            self.prune, IntervalTrigger(hours=24), id="prune-history", next_run_time=now
        )
        self._scheduler.start()

    async def prune(self) -> None:
        await self.store.prune_history(
            self.clock(), removed_source_days=self.settings.limits.removed_source_days
        )

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def run_source(self, source_id: str) -> None:
        """Refresh one source if it is due, and publish if it changed.

        A second call for the same source waits for the first. A source in backoff (failures
        in a row, Retry-After, 410 Gone) is skipped until the store says it is due.
        """
        source = self.settings.source(source_id)
        async with self._locks[source_id]:
            now = self.clock()
            state = await self.store.source_state(source_id)
            # the trigger's jitter may fire a little before next_check_at: that is due too
            slack = timedelta(seconds=jitter_of(interval_of(source, self.settings)) + 60)
            if state.next_check_at is not None and state.next_check_at > now + slack:
                return
            try:
                report = await refresh_source(self.store, self.fetcher, source, self.settings, now)
            except Exception:
                log.exception("refreshing %s failed unexpectedly", source_id)
                return
            log.info("%s", report.line())
            if report.outcome != "updated":
                return
        async with self._publish_lock:
            if await publish(self.store, self.settings, self.clock()):
                self.on_published()
